//! The RingCentral platform client, split by concern:
//! - [`settings`]: where and as whom to talk to the platform, and what a subscription asks for,
//!   from flags, environment and env file;
//! - [`session`]: OAuth login and revoke, and the REST calls;
//! - [`wire`]: RingCentral's JSON, typed;
//! - [`transport`]: the HTTP exchange and the retry policy.
//!
//! HTTPS itself (the agent and its trust roots) is [`crate::https`]'s.
//!
//! The only module that knows RingCentral's JSON. It hands typed values ([`Subscription`],
//! [`Extension`]) to `register` and turns every failure into a [`PlatformError`] whose `Display`
//! is a one-liner in the platform's own terms (`SUB-505 Subscriptions limit exceeded`).
//!
//! Retry policy, per call: a 429 waits `Retry-After` (30 s when absent) as long as the total
//! waited stays within [`RetryPolicy::max_wait`]; 5xx answers and network failures are retried up to
//! [`RetryPolicy::retries`] times with doubling backoff — except a create, which is never blindly
//! resent: [`Session::create_subscription`] lists again and adopts what a lost answer created.
//! A call that gets no whole answer within [`RetryPolicy::timeout`] is not retried at all: the platform
//! had its chance, and the run (a cron job, `serve --register`) fails in bounded time.

use std::fmt;
use std::time::Duration;

pub(crate) mod session;
pub(crate) mod settings;
pub(crate) mod transport;
pub(crate) mod wire;
#[cfg(feature = "connect")]
pub(crate) mod wsauth;

pub(crate) use session::{Session, login};
pub(crate) use transport::RetryPolicy;
pub(crate) use wire::{Credentials, Endpoint, NewSubscription, Subscription};

/// Answers larger than this are not read whole (a page of 1000 extensions is about 2 MB).
pub(crate) const MAX_BODY: u64 = 32 * 1024 * 1024;

/// Pages of extensions followed at most; a guard against a `nextPage` that never ends.
pub(crate) const MAX_PAGES: usize = 10_000;

/// What went wrong talking to the platform.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum PlatformError {
    /// The platform answered with an error status.
    Api {
        /// HTTP status.
        status: u16,
        /// `errorCode` (`SUB-505`), or the OAuth `error` when that is all there is.
        code: Option<String>,
        /// The platform's `message` / `error_description`.
        message: String,
        /// Further entries of `errors[]` that add something, already formatted.
        details: Vec<String>,
    },
    /// No answer: connection refused, TLS failure, timeout, DNS.
    Transport {
        /// What the HTTP client reported.
        detail: String,
        /// True for certificate and handshake failures (not worth retrying).
        tls: bool,
    },
    /// Still answered 429 after waiting as long as allowed.
    RateLimited {
        /// Time already spent waiting.
        waited: Duration,
        /// What the last `Retry-After` asked for.
        retry_after: Duration,
    },
    /// No whole answer within [`RetryPolicy::timeout`].
    Timeout {
        /// The limit that passed.
        after: Duration,
        /// True when not even the connection was made in time.
        connect: bool,
    },
    /// An answer we could not understand (not JSON, missing fields, a foreign `nextPage`).
    BadAnswer {
        /// What was wrong with it.
        detail: String,
    },
}

impl PlatformError {
    /// What the user can do about it, when we know.
    pub(crate) fn hint(&self) -> Option<String> {
        let hint = match self {
            PlatformError::Api { status, code, .. } => {
                let code = code.as_deref().unwrap_or("");
                match code {
                    "invalid_client" | "unauthorized_client" => {
                        "check RC_CLIENT_ID and RC_CLIENT_SECRET (the app's credentials in the developer console)"
                    }
                    c if c.starts_with("OAU-") || c == "invalid_grant" => {
                        "check RC_JWT (it must belong to the app and user, and not be expired or revoked); RC_CLIENT_ID and RC_CLIENT_SECRET must be the same app's"
                    }
                    "SUB-505" => {
                        "delete subscriptions you no longer use: 'ringhook list', then 'ringhook unregister --id ID'"
                    }
                    "SUB-508" => {
                        "fix RINGHOOK_EVENT_FILTERS (or --event): each must be a filter the app's permissions allow"
                    }
                    "SUB-520" | "SUB-521" | "SUB-522" | "SUB-523" | "SUB-524" | "SUB-525" => {
                        "the platform's handshake with the address failed: run 'ringhook check ADDRESS'"
                    }
                    "SUB-507" | "CMN-102" => "run 'ringhook register' again to create a new one",
                    // The platform's permission errors (403): the app's or the user's.
                    "CMN-401" | "CMN-408" => {
                        "a permission is missing: give the app WebHook Subscriptions and Read Accounts in the developer console (CMN-408: the user's role must allow reading the extensions)"
                    }
                    // Mostly after the token was granted: TokenInvalid, TokenExpired, AGW-401...
                    _ if *status == 401 => {
                        "the platform refused the access token: check that RC_CLIENT_ID, RC_CLIENT_SECRET and RC_JWT are the same app's and user's, and that the app has the WebHook Subscriptions and Read Accounts permissions"
                    }
                    _ if *status == 403 => {
                        "the app lacks a permission: give it WebHook Subscriptions and Read Accounts"
                    }
                    _ if *status >= 500 => "the platform is having trouble: try again later",
                    _ => return None,
                }
            }
            PlatformError::Transport { tls: true, .. } => {
                "the server's certificate is not trusted: behind a TLS-inspecting proxy, set RINGHOOK_CA_FILE to its CA (PEM)"
            }
            PlatformError::Transport { .. } => {
                "check RC_SERVER_URL, the network and any HTTPS_PROXY setting"
            }
            PlatformError::RateLimited { .. } => {
                "the app is over its API rate limit: run less often, or raise RINGHOOK_MAX_WAIT"
            }
            PlatformError::Timeout { connect: true, .. } => {
                "check RC_SERVER_URL, the network and any HTTPS_PROXY setting"
            }
            PlatformError::Timeout { .. } => {
                "the platform took the connection but did not answer in time: try again later, or raise RINGHOOK_HTTP_TIMEOUT"
            }
            PlatformError::BadAnswer { .. } => {
                "is RC_SERVER_URL a RingCentral platform (https://platform.ringcentral.com)?"
            }
        };
        Some(hint.to_string())
    }

    /// True when the request may have been carried out although no good answer came back.
    fn maybe_done(&self) -> bool {
        match self {
            PlatformError::Api { status, .. } => *status >= 500,
            PlatformError::Transport { tls, .. } => !tls,
            PlatformError::Timeout { connect, .. } => !connect,
            _ => false,
        }
    }
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::Api {
                status,
                code,
                message,
                details,
            } => {
                match code {
                    Some(c) => write!(f, "{c} {message}")?,
                    None => f.write_str(message)?,
                }
                for d in details {
                    write!(f, "; {d}")?;
                }
                write!(f, " (HTTP {status})")
            }
            PlatformError::Transport { detail, .. } => write!(f, "no answer: {detail}"),
            PlatformError::RateLimited {
                waited,
                retry_after,
            } => write!(
                f,
                "rate limited (HTTP 429): waited {} s in all, and the platform asks for {} s more",
                waited.as_secs(),
                retry_after.as_secs()
            ),
            PlatformError::Timeout { after, connect } => write!(
                f,
                "{} within {} (RINGHOOK_HTTP_TIMEOUT)",
                if *connect {
                    "could not connect"
                } else {
                    "no answer"
                },
                humantime::format_duration(*after)
            ),
            PlatformError::BadAnswer { detail } => write!(f, "unexpected answer: {detail}"),
        }
    }
}

impl std::error::Error for PlatformError {}
