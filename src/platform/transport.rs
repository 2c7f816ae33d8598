//! The HTTP side of every platform call, and the retry policy: a 429 waits `Retry-After`, 5xx
//! answers and network failures are retried with doubling backoff, a call is bounded in time.

use std::fmt;
use std::time::Duration;

use super::wire::{Endpoint, TokenAnswer, api_error, bad, parse_json};
use super::{MAX_BODY, PlatformError};
use crate::https::describe_transport;

/// Connect timeout for platform calls (less when [`RetryPolicy::timeout`] is less).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default whole-call timeout for platform calls (a 1000-record page included).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How calls are retried.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    /// Total time a run may spend waiting on 429 answers.
    pub max_wait: Duration,
    /// Retries after a 5xx or a network failure.
    pub retries: u32,
    /// First backoff; it doubles with each retry.
    pub backoff: Duration,
    /// Wait on a 429 without `Retry-After` (the platform's docs: at least 30 s).
    pub default_retry_after: Duration,
    /// Limit on one call, from connecting to the last byte of the answer
    /// (`RINGHOOK_HTTP_TIMEOUT`); connecting alone gets at most [`CONNECT_TIMEOUT`].
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_wait: Duration::from_secs(300),
            retries: 3,
            backoff: Duration::from_millis(500),
            default_retry_after: Duration::from_secs(30),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Retries with doubling backoff: the one place that counts them, pauses and says so.
pub(super) struct Backoff<'a> {
    pub(super) policy: &'a RetryPolicy,
    pub(super) attempt: u32,
}

impl<'a> Backoff<'a> {
    pub(super) fn new(policy: &'a RetryPolicy) -> Backoff<'a> {
        Backoff { policy, attempt: 0 }
    }

    /// True while the policy allows another retry.
    pub(super) fn left(&self) -> bool {
        self.attempt < self.policy.retries
    }

    /// Logs `what: why; retry n of N in ms` and sleeps that long, doubling the next pause.
    pub(super) fn pause(&mut self, what: &str, why: impl fmt::Display) {
        let pause = self.policy.backoff * 2u32.pow(self.attempt);
        self.attempt += 1;
        warn!(
            "{what}: {why}; retry {} of {} in {} ms",
            self.attempt,
            self.policy.retries,
            pause.as_millis()
        );
        std::thread::sleep(pause);
    }
}

/// One answer, read whole.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

pub(super) fn retry_after(resp: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// What one try of a call came to.
pub(super) enum Try {
    /// Hand this back: an answer, or a failure not worth another try.
    Done(Result<Reply, PlatformError>),
    /// Failed in a way another try may cure.
    Again(PlatformError),
}

/// The HTTP side shared by the login and the session.
pub(super) struct Transport {
    pub(super) agent: ureq::Agent,
    pub(super) endpoint: Endpoint,
}

impl Transport {
    /// The agent for `endpoint`: its trust roots, connecting within [`CONNECT_TIMEOUT`] (or the
    /// whole call's timeout when that is less).
    pub(super) fn new(endpoint: Endpoint) -> Transport {
        let overall = endpoint.policy.timeout;
        Transport {
            agent: crate::https::agent(&endpoint.roots, CONNECT_TIMEOUT.min(overall), overall),
            endpoint,
        }
    }

    /// `POST /restapi/oauth/token` with the app's Basic credentials and `form` (a grant): the
    /// token answer. A token request changes nothing a second one would duplicate: retried.
    pub(super) fn token(
        &self,
        what: &str,
        form: &[(&str, &str)],
    ) -> Result<TokenAnswer, PlatformError> {
        let url = self.url("/restapi/oauth/token");
        let auth = self.basic();
        let answer = self.send(what, true, |agent| {
            agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .send_form(form.iter().copied())
        })?;
        if answer.status != 200 {
            return Err(api_error(answer.status, &answer.body));
        }
        let token: TokenAnswer = parse_json("the token answer", &answer.body)?;
        if token.access_token.is_empty() {
            return Err(bad("the token answer has an empty access_token"));
        }
        Ok(token)
    }

    /// Performs `call` under the retry policy. `idempotent` false means: do not resend after a
    /// 5xx or a lost answer (the caller decides), only after a 429, which the platform refused.
    pub(super) fn send<F>(
        &self,
        what: &str,
        idempotent: bool,
        call: F,
    ) -> Result<Reply, PlatformError>
    where
        F: Fn(&ureq::Agent) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    {
        let mut waited = Duration::ZERO;
        let mut backoff = Backoff::new(&self.endpoint.policy);
        loop {
            let result = call(&self.agent);
            if let Ok(resp) = &result {
                if resp.status().as_u16() == 429 {
                    self.wait_out_rate_limit(what, resp, &mut waited)?;
                    continue;
                }
            }
            match self.outcome(result, idempotent && backoff.left()) {
                Try::Done(answer) => return answer,
                Try::Again(e) => backoff.pause(what, e),
            }
        }
    }

    /// One try of `call`, never sent again: a 429 comes back at once as
    /// [`PlatformError::RateLimited`] with what `Retry-After` asks, for a caller that paces its
    /// own requests (each try counts against the rate limit).
    #[cfg_attr(not(feature = "connect"), allow(dead_code))]
    pub(super) fn send_once<F>(&self, call: F) -> Result<Reply, PlatformError>
    where
        F: Fn(&ureq::Agent) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    {
        let result = call(&self.agent);
        if let Ok(resp) = &result {
            if resp.status().as_u16() == 429 {
                return Err(PlatformError::RateLimited {
                    waited: Duration::ZERO,
                    retry_after: retry_after(resp)
                        .unwrap_or(self.endpoint.policy.default_retry_after),
                });
            }
        }
        match self.outcome(result, false) {
            Try::Done(answer) => answer,
            Try::Again(e) => Err(e),
        }
    }

    /// A 429: waits what the platform asks (`Retry-After`), unless the run's total wait would
    /// then exceed [`RetryPolicy::max_wait`].
    pub(super) fn wait_out_rate_limit(
        &self,
        what: &str,
        resp: &ureq::http::Response<ureq::Body>,
        waited: &mut Duration,
    ) -> Result<(), PlatformError> {
        let policy = &self.endpoint.policy;
        let wait = retry_after(resp).unwrap_or(policy.default_retry_after);
        // Saturating: a huge Retry-After must fail the call, not overflow.
        if waited.saturating_add(wait) > policy.max_wait {
            return Err(PlatformError::RateLimited {
                waited: *waited,
                retry_after: wait,
            });
        }
        warn!(
            "{what}: rate limited (HTTP 429); waiting {} s as the platform asks",
            wait.as_secs()
        );
        std::thread::sleep(wait);
        *waited = waited.saturating_add(wait);
        Ok(())
    }

    /// What one try came to. `resend` says whether a retry is allowed at all; a timeout or a TLS
    /// failure is final regardless (the platform had its chance; the roots will not change).
    pub(super) fn outcome(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        resend: bool,
    ) -> Try {
        let again = |e: PlatformError| {
            if resend {
                Try::Again(e)
            } else {
                Try::Done(Err(e))
            }
        };
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(MAX_BODY)
                    .read_to_vec()
                    .map_err(|e| self.failed(&e));
                match body {
                    Ok(body) if status >= 500 => again(api_error(status, &body)),
                    Ok(body) => Try::Done(Ok(Reply { status, body })),
                    Err(e @ PlatformError::Timeout { .. }) => Try::Done(Err(e)),
                    Err(e) => again(e),
                }
            }
            Err(e) => {
                match self.failed(&e) {
                    e @ (PlatformError::Transport { tls: true, .. }
                    | PlatformError::Timeout { .. }) => Try::Done(Err(e)),
                    e => again(e),
                }
            }
        }
    }

    /// A failed call of the HTTP client as a [`PlatformError`]: timeouts apart.
    pub(super) fn failed(&self, e: &ureq::Error) -> PlatformError {
        let timed_out = match e {
            ureq::Error::Timeout(t) => {
                Some(matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve))
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Some(false),
            _ => None,
        };
        match timed_out {
            Some(connect) => PlatformError::Timeout {
                after: if connect {
                    CONNECT_TIMEOUT.min(self.endpoint.policy.timeout)
                } else {
                    self.endpoint.policy.timeout
                },
                connect,
            },
            None => {
                let (detail, tls) = describe_transport(e);
                PlatformError::Transport { detail, tls }
            }
        }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.server)
    }

    pub(super) fn basic(&self) -> String {
        use base64::Engine as _;
        let pair = format!(
            "{}:{}",
            self.endpoint.client_id,
            self.endpoint.client_secret.expose()
        );
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}
