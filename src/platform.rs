//! The RingCentral platform client: OAuth, extensions, subscriptions, and the retry policy.
//!
//! The only module that knows RingCentral's JSON. It hands typed values ([`Subscription`],
//! [`Extension`]) to `register` and turns every failure into a [`PlatformError`] whose `Display`
//! is a one-liner in the platform's own terms (`SUB-505 Subscriptions limit exceeded`).
//!
//! Retry policy, per call: a 429 waits `Retry-After` (30 s when absent) as long as the total
//! waited stays within [`Policy::max_wait`]; 5xx answers and network failures are retried up to
//! [`Policy::retries`] times with doubling backoff — except a create, which is never blindly
//! resent: [`Session::create_subscription`] lists again and adopts what a lost answer created.
//! A call that gets no whole answer within [`Policy::timeout`] is not retried at all: the platform
//! had its chance, and the run (a cron job, `serve --register`) fails in bounded time.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::secret::Secret;

/// Answers larger than this are not read whole (a page of 1000 extensions is about 2 MB).
const MAX_BODY: u64 = 32 * 1024 * 1024;

/// Pages of extensions followed at most; a guard against a `nextPage` that never ends.
const MAX_PAGES: usize = 10_000;

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
    /// No whole answer within [`Policy::timeout`].
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

/// Root certificates for outbound HTTPS: the built-in Mozilla set, plus any from a CA file.
#[derive(Debug, Clone, Default)]
pub struct TrustRoots {
    extra: Option<Arc<Vec<Certificate<'static>>>>,
}

impl TrustRoots {
    /// Reads every certificate of a PEM file; it is an error when there is none.
    pub fn with_pem_file(path: &std::path::Path) -> Result<TrustRoots, String> {
        let pem = std::fs::read(path).map_err(|e| e.to_string())?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            // A key in the same file is not ours to use; skip it like any other section.
            if let PemItem::Certificate(c) = item.map_err(|e| format!("not valid PEM: {e}"))? {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
        }
        Ok(TrustRoots {
            extra: Some(Arc::new(certs)),
        })
    }

    /// The CA file's certificates (DER), for TLS outside the HTTP client (`ship`'s NATS).
    pub fn der_certificates(&self) -> Option<Vec<&[u8]>> {
        self.extra
            .as_ref()
            .map(|c| c.iter().map(|c| c.der()).collect())
    }

    fn root_certs(&self) -> RootCerts {
        match &self.extra {
            None => RootCerts::WebPki,
            // Like curl's --cacert: the file replaces the built-in roots. Behind a TLS-inspecting
            // proxy its CA is the only one that can verify anything; adding Mozilla's set as
            // whole certificates would cost ~200 KB of binary for no such user.
            Some(extra) => RootCerts::Specific(extra.clone()),
        }
    }
}

/// An HTTP agent as every outbound call uses it: our user agent, the roots, no redirects, and
/// error statuses handed back as answers so their bodies can be read.
pub(crate) fn agent(roots: &TrustRoots, connect: Duration, overall: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(connect))
        .timeout_global(Some(overall))
        .user_agent(concat!("ringhook/", env!("CARGO_PKG_VERSION")))
        .tls_config(TlsConfig::builder().root_certs(roots.root_certs()).build())
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        Resolver::default(),
    )
}

/// How long a host name's addresses are reused before it is looked up again.
const RESOLVED_FOR: Duration = Duration::from_secs(30);

/// ureq looks the host up for every call, even one that goes over a kept-alive connection, and
/// with a timeout set each lookup runs on a thread of its own: `ship` into an HTTP sink paid a
/// thread and a DNS query per event (130 µs of CPU each). This resolver answers an address in
/// the URL at once and keeps a name's addresses for [`RESOLVED_FOR`].
#[derive(Default)]
struct Resolver {
    last: Mutex<Option<(String, Instant, ResolvedAddrs)>>,
}

type ResolvedAddrs = ureq::unversioned::resolver::ResolvedSocketAddrs;

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl ureq::unversioned::resolver::Resolver for Resolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ResolvedAddrs, ureq::Error> {
        use ureq::unversioned::resolver::DefaultResolver;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return DefaultResolver::default().resolve(uri, config, timeout);
        };
        // "host:port", the port filled in from the scheme as ureq does it.
        let Some(key) = DefaultResolver::host_and_port(scheme, authority) else {
            return DefaultResolver::default().resolve(uri, config, timeout);
        };
        if let Ok(addr) = key.parse::<SocketAddr>() {
            let mut addrs = self.empty();
            addrs.push(addr);
            return Ok(addrs);
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, at, addrs)) = &*last {
            if *k == key && at.elapsed() < RESOLVED_FOR {
                return Ok(addrs.clone());
            }
        }
        let addrs = DefaultResolver::default().resolve(uri, config, timeout)?;
        *last = Some((key, Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// Describes a failed call of the HTTP client; `tls` is true for certificate trouble.
pub(crate) fn describe_transport(e: &ureq::Error) -> (String, bool) {
    match e {
        ureq::Error::Rustls(r) => (format!("TLS: {r}"), true),
        ureq::Error::Tls(t) => (format!("TLS: {t}"), true),
        ureq::Error::Timeout(t) => (format!("timed out ({t})"), false),
        ureq::Error::HostNotFound => ("host not found".into(), false),
        // rustls reports handshake and certificate failures through the stream as InvalidData.
        ureq::Error::Io(io)
            if io.kind() == std::io::ErrorKind::InvalidData && io.get_ref().is_some() =>
        {
            (format!("TLS: {io}"), true)
        }
        ureq::Error::Io(io) => (io.to_string(), false),
        other => (other.to_string(), false),
    }
}

/// How calls are retried.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
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

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            max_wait: Duration::from_secs(300),
            retries: 3,
            backoff: Duration::from_millis(500),
            default_retry_after: Duration::from_secs(30),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Retries with doubling backoff: the one place that counts them, pauses and says so.
struct Backoff<'a> {
    policy: &'a Policy,
    attempt: u32,
}

impl<'a> Backoff<'a> {
    fn new(policy: &'a Policy) -> Backoff<'a> {
        Backoff { policy, attempt: 0 }
    }

    /// True while the policy allows another retry.
    fn left(&self) -> bool {
        self.attempt < self.policy.retries
    }

    /// Logs `what: why; retry n of N in ms` and sleeps that long, doubling the next pause.
    fn pause(&mut self, what: &str, why: impl fmt::Display) {
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

/// Where and as whom to talk to the platform.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `https://platform.ringcentral.com`, without a trailing slash.
    pub server: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: Secret,
    /// Roots to trust.
    pub roots: TrustRoots,
    /// Retry policy.
    pub policy: Policy,
}

/// How the user proves who they are.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    /// The JWT grant (RingCentral's current flow).
    Jwt(Secret),
    /// The password grant, ended by RingCentral on 2024-03-31; kept for old accounts.
    Password {
        /// Phone number or email.
        username: String,
        /// The password.
        password: Secret,
        /// Extension number, when the username is a company number.
        extension: Option<String>,
    },
}

/// An extension of the account, as far as filters need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extension {
    /// Internal id (digits), as used in filters.
    pub id: String,
}

/// A subscription as the platform reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// Its id.
    pub id: String,
    /// `Active`, `Blacklisted` (older docs also `Suspended`).
    pub status: String,
    /// Event filters, including those the platform reports as disabled.
    pub filters: Vec<String>,
    /// Filters the platform disabled, with its reason.
    pub disabled: Vec<(String, String)>,
    /// `WebHook`, `PubNub`, `WebSocket`...
    pub transport: String,
    /// Delivery address (WebHook only).
    pub address: Option<String>,
    /// When it expires, if the platform said in a form we read.
    pub expires_at: Option<SystemTime>,
    /// When it was created.
    pub created_at: Option<SystemTime>,
    /// Why it was blacklisted, when it was.
    pub blacklist_reason: Option<String>,
}

impl Subscription {
    /// True for an active WebHook subscription.
    pub(crate) fn is_active(&self) -> bool {
        self.status.eq_ignore_ascii_case("Active")
    }
}

/// A new subscription.
#[derive(Debug, Clone)]
pub(crate) struct NewSubscription<'a> {
    /// Event filters.
    pub filters: &'a [String],
    /// Delivery address.
    pub address: &'a str,
    /// Sent as `deliveryMode.verificationToken`.
    pub verification_token: Option<&'a str>,
    /// Lifetime asked for, in seconds.
    pub expires_in: u64,
}

// ---- RingCentral JSON -------------------------------------------------------------------------

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    owner_id: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    error_code: Option<String>,
    message: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorEntry {
    error_code: Option<String>,
    message: Option<String>,
    parameter_name: Option<String>,
    parameter_value: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ExtensionPage {
    records: Vec<ExtensionRecord>,
    #[serde(default)]
    navigation: Option<Navigation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExtensionRecord {
    id: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Navigation {
    next_page: Option<PageUri>,
}

#[derive(Deserialize)]
struct PageUri {
    uri: Option<String>,
}

#[derive(Deserialize)]
struct SubscriptionList {
    records: Vec<SubscriptionInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionInfo {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    event_filters: Vec<String>,
    #[serde(default)]
    disabled_filters: Vec<DisabledFilter>,
    #[serde(default)]
    expiration_time: Option<String>,
    #[serde(default)]
    creation_time: Option<String>,
    #[serde(default)]
    delivery_mode: Option<DeliveryMode>,
    #[serde(default)]
    blacklisted_data: Option<BlacklistedData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DisabledFilter {
    filter: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryMode {
    #[serde(default)]
    transport_type: Option<String>,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize)]
struct BlacklistedData {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody<'a> {
    event_filters: &'a [String],
    delivery_mode: DeliveryModeRequest<'a>,
    expires_in: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryModeRequest<'a> {
    transport_type: &'static str,
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification_token: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpdateBody<'a> {
    event_filters: &'a [String],
    expires_in: u64,
}

fn parse_time(text: Option<&str>) -> Option<SystemTime> {
    let t = text?;
    humantime::parse_rfc3339_weak(t)
        .or_else(|_| humantime::parse_rfc3339(t))
        .ok()
        // `+0000` offsets (seen in notifications) are UTC too; humantime wants `Z`.
        .or_else(|| humantime::parse_rfc3339(&t.replace("+0000", "Z")).ok())
}

impl From<SubscriptionInfo> for Subscription {
    fn from(s: SubscriptionInfo) -> Subscription {
        let mode = s.delivery_mode.unwrap_or(DeliveryMode {
            transport_type: None,
            address: None,
        });
        let disabled: Vec<(String, String)> = s
            .disabled_filters
            .into_iter()
            .map(|d| (d.filter, d.reason.unwrap_or_default()))
            .collect();
        let mut filters = s.event_filters;
        for (f, _) in &disabled {
            if !filters.contains(f) {
                filters.push(f.clone());
            }
        }
        Subscription {
            id: s.id,
            status: s.status.unwrap_or_else(|| "Unknown".into()),
            filters,
            disabled,
            transport: mode.transport_type.unwrap_or_default(),
            address: mode.address,
            expires_at: parse_time(s.expiration_time.as_deref()),
            created_at: parse_time(s.creation_time.as_deref()),
            blacklist_reason: s.blacklisted_data.and_then(|b| b.reason),
        }
    }
}

fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Turns an error answer into a one-liner: the first `errors[]` entry's code and message,
/// the parameter it names, and any further entries.
fn api_error(status: u16, body: &[u8]) -> PlatformError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let mut entries = parsed.errors.iter().map(|e| {
        let mut text = e.message.clone().unwrap_or_default();
        if let Some(p) = &e.parameter_name {
            let value = match &e.parameter_value {
                Some(serde_json::Value::String(s)) => format!(" = '{}'", truncate(s, 120)),
                Some(v) => format!(" = {}", truncate(&v.to_string(), 120)),
                None => String::new(),
            };
            text = format!("{text} [{p}{value}]");
        }
        (e.error_code.clone(), text)
    });
    let first = entries.next();
    let code = parsed
        .error_code
        .clone()
        .or_else(|| first.as_ref().and_then(|(c, _)| c.clone()))
        .or_else(|| parsed.error.clone());
    let message = parsed
        .message
        .clone()
        .or_else(|| first.as_ref().map(|(_, m)| m.clone()))
        .or_else(|| parsed.error_description.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error")
                .to_string()
        });
    let mut details: Vec<String> = Vec::new();
    if let Some((_, m)) = &first {
        if m != &message && !m.is_empty() {
            details.push(m.clone());
        }
    }
    details.extend(entries.map(|(c, m)| match c {
        Some(c) => format!("{c} {m}"),
        None => m,
    }));
    PlatformError::Api {
        status,
        code,
        message,
        details,
    }
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn bad(detail: impl Into<String>) -> PlatformError {
    PlatformError::BadAnswer {
        detail: detail.into(),
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(what: &str, body: &[u8]) -> Result<T, PlatformError> {
    serde_json::from_slice(body).map_err(|e| {
        let start = body.trim_ascii_start();
        if start.is_empty() {
            bad(format!("{what} is empty"))
        } else if start.starts_with(b"<") {
            // A proxy's or load balancer's page; its text is not ours to print.
            bad(format!("{what} is an HTML page, not JSON"))
        } else {
            // serde quotes offending strings whole: keep the line short.
            bad(format!(
                "{what} is not the JSON expected: {}",
                truncate(&e.to_string(), 160)
            ))
        }
    })
}

/// One answer, read whole.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

fn retry_after(resp: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// What one try of a call came to.
enum Try {
    /// Hand this back: an answer, or a failure not worth another try.
    Done(Result<Answer, PlatformError>),
    /// Failed in a way another try may cure.
    Again(PlatformError),
}

/// The HTTP side shared by the login and the session.
struct Transport {
    agent: ureq::Agent,
    endpoint: Endpoint,
}

impl Transport {
    /// Performs `call` under the retry policy. `idempotent` false means: do not resend after a
    /// 5xx or a lost answer (the caller decides), only after a 429, which the platform refused.
    fn send<F>(&self, what: &str, idempotent: bool, call: F) -> Result<Answer, PlatformError>
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

    /// A 429: waits what the platform asks (`Retry-After`), unless the run's total wait would
    /// then exceed [`Policy::max_wait`].
    fn wait_out_rate_limit(
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
    fn outcome(
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
                    Ok(body) => Try::Done(Ok(Answer { status, body })),
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
    fn failed(&self, e: &ureq::Error) -> PlatformError {
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.server)
    }

    fn basic(&self) -> String {
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

/// An authenticated session. End it with [`Session::revoke`].
pub(crate) struct Session {
    http: Transport,
    access: Secret,
    owner_id: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.http.endpoint.server)
            .field("owner_id", &self.owner_id)
            .finish_non_exhaustive()
    }
}

/// Connect timeout for platform calls (less when [`Policy::timeout`] is less).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default whole-call timeout for platform calls (a 1000-record page included).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Obtains an access token with Basic client authentication.
pub(crate) fn login(
    endpoint: Endpoint,
    credentials: &Credentials,
) -> Result<Session, PlatformError> {
    let overall = endpoint.policy.timeout;
    let http = Transport {
        agent: agent(&endpoint.roots, CONNECT_TIMEOUT.min(overall), overall),
        endpoint,
    };
    let form: Vec<(&str, &str)> = match credentials {
        Credentials::Jwt(jwt) => vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", jwt.expose()),
        ],
        Credentials::Password {
            username,
            password,
            extension,
        } => {
            let mut f = vec![
                ("grant_type", "password"),
                ("username", username.as_str()),
                ("password", password.expose()),
            ];
            if let Some(ext) = extension {
                f.push(("extension", ext.as_str()));
            }
            f
        }
    };
    let url = http.url("/restapi/oauth/token");
    let auth = http.basic();
    // A token request changes nothing that a second one would duplicate: safe to retry.
    let answer = http.send("authenticate", true, |agent| {
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
    Ok(Session {
        http,
        access: Secret::new(token.access_token),
        owner_id: token.owner_id.as_ref().and_then(id_text),
    })
}

impl Session {
    /// The extension id the token belongs to (`owner_id`), which `~` stands for in filters.
    pub(crate) fn owner_id(&self) -> Option<&str> {
        self.owner_id.as_deref()
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.access.expose())
    }

    fn get(&self, what: &str, url: &str) -> Result<Answer, PlatformError> {
        let auth = self.bearer();
        self.http.send(what, true, |agent| {
            agent
                .get(url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .call()
        })
    }

    fn expect(answer: Answer, ok: u16) -> Result<Vec<u8>, PlatformError> {
        if answer.status == ok || (ok == 200 && answer.status == 201) {
            Ok(answer.body)
        } else {
            Err(api_error(answer.status, &answer.body))
        }
    }

    /// Every extension of the account of the given types and statuses, following
    /// `navigation.nextPage` to the end.
    pub(crate) fn extensions(
        &self,
        types: &[String],
        statuses: &[String],
        per_page: u32,
    ) -> Result<Vec<Extension>, PlatformError> {
        let mut query: Vec<String> = types.iter().map(|t| format!("type={t}")).collect();
        query.extend(statuses.iter().map(|s| format!("status={s}")));
        query.push(format!("perPage={per_page}"));
        query.push("page=1".into());
        let mut url = self.http.url(&format!(
            "/restapi/v1.0/account/~/extension?{}",
            query.join("&")
        ));
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let body = Self::expect(self.get("list extensions", &url)?, 200)?;
            let page: ExtensionPage = parse_json("the extension list", &body)?;
            for r in page.records {
                let id = id_text(&r.id).ok_or_else(|| bad("an extension record without an id"))?;
                out.push(Extension { id });
            }
            let next = page
                .navigation
                .and_then(|n| n.next_page)
                .and_then(|p| p.uri);
            match next {
                None => return Ok(out),
                Some(next) => {
                    // The bearer token goes only to the server we were configured with.
                    let origin = format!("{}/", self.http.endpoint.server);
                    if !next.starts_with(&origin) {
                        return Err(bad(format!(
                            "navigation.nextPage points away from {}: {}",
                            self.http.endpoint.server,
                            truncate(&next, 200)
                        )));
                    }
                    if next == url {
                        return Err(bad("navigation.nextPage repeats the page just read"));
                    }
                    url = next;
                }
            }
        }
        Err(bad(format!(
            "the extension list goes on past {MAX_PAGES} pages"
        )))
    }

    /// The subscriptions of this app and user.
    pub(crate) fn subscriptions(&self) -> Result<Vec<Subscription>, PlatformError> {
        let url = self.http.url("/restapi/v1.0/subscription");
        let body = Self::expect(self.get("list subscriptions", &url)?, 200)?;
        let list: SubscriptionList = parse_json("the subscription list", &body)?;
        Ok(list.records.into_iter().map(Subscription::from).collect())
    }

    /// Creates a subscription, never twice: when the answer is lost, a 5xx or unreadable, lists
    /// again and adopts a new active subscription at the address (one not among `known_ids`).
    /// Only after a 5xx or a failed connection that created nothing is the create sent again; a
    /// timed-out create may still complete on the platform, so it is not (the next run finds it).
    pub(crate) fn create_subscription(
        &self,
        new: &NewSubscription<'_>,
        known_ids: &[String],
    ) -> Result<Subscription, PlatformError> {
        let url = self.http.url("/restapi/v1.0/subscription");
        let body = serde_json::to_vec(&CreateBody {
            event_filters: new.filters,
            delivery_mode: DeliveryModeRequest {
                transport_type: "WebHook",
                address: new.address,
                verification_token: new.verification_token,
            },
            expires_in: new.expires_in,
        })
        .expect("plain structs serialize");
        let auth = self.bearer();
        let mut backoff = Backoff::new(&self.http.endpoint.policy);
        loop {
            let result = self.http.send("create subscription", false, |agent| {
                agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .header("Accept", "application/json")
                    .content_type("application/json")
                    .send(&body[..])
            });
            let err = match result {
                Ok(answer) => {
                    let body = Self::expect(answer, 200)?;
                    match parse_json::<SubscriptionInfo>("the new subscription", &body) {
                        Ok(info) => return Ok(info.into()),
                        // Created, but we cannot tell its id: look it up, never send it again.
                        Err(e) => e,
                    }
                }
                Err(e) if e.maybe_done() => e,
                Err(e) => return Err(e),
            };
            let resend = matches!(
                err,
                PlatformError::Api { .. } | PlatformError::Transport { .. }
            ) && backoff.left();
            // The platform may have created it before the answer was lost: look before resending.
            let adopted = self
                .created_meanwhile(new.address, known_ids)
                .inspect_err(|_| {
                    warn!("create subscription: {err}; whether it was created cannot be told");
                })?;
            if let Some(s) = adopted {
                warn!(
                    "create subscription: {err}; but it was created ({}), so it is not sent again",
                    s.id
                );
                return Ok(s);
            }
            if !resend {
                warn!("create subscription: {err}; the list shows none created; not sent again");
                return Err(err);
            }
            backoff.pause(
                "create subscription",
                format_args!("{err}; none was created"),
            );
        }
    }

    /// A new active subscription at `address` (one not among `known_ids`): what a create whose
    /// answer was lost made.
    fn created_meanwhile(
        &self,
        address: &str,
        known_ids: &[String],
    ) -> Result<Option<Subscription>, PlatformError> {
        Ok(self.subscriptions()?.into_iter().find(|s| {
            s.is_active() && s.address.as_deref() == Some(address) && !known_ids.contains(&s.id)
        }))
    }

    /// Replaces the filters (and asks for a new lifetime) of a subscription, keeping its id.
    pub(crate) fn update_subscription(
        &self,
        id: &str,
        filters: &[String],
        expires_in: u64,
    ) -> Result<Subscription, PlatformError> {
        let url = self.http.url(&format!("/restapi/v1.0/subscription/{id}"));
        let body = serde_json::to_vec(&UpdateBody {
            event_filters: filters,
            expires_in,
        })
        .expect("plain structs serialize");
        let auth = self.bearer();
        // Setting the same filters twice is harmless: an update may be retried.
        let answer = self.http.send("update subscription", true, |agent| {
            agent
                .put(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .content_type("application/json")
                .send(&body[..])
        })?;
        let body = Self::expect(answer, 200)?;
        let info: SubscriptionInfo = parse_json("the updated subscription", &body)?;
        Ok(info.into())
    }

    /// Extends a subscription's life.
    pub(crate) fn renew_subscription(&self, id: &str) -> Result<Subscription, PlatformError> {
        let url = self
            .http
            .url(&format!("/restapi/v1.0/subscription/{id}/renew"));
        let auth = self.bearer();
        let answer = self.http.send("renew subscription", true, |agent| {
            agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .send_empty()
        })?;
        let body = Self::expect(answer, 200)?;
        let info: SubscriptionInfo = parse_json("the renewed subscription", &body)?;
        Ok(info.into())
    }

    /// Deletes a subscription; one that is already gone counts as deleted.
    pub(crate) fn delete_subscription(&self, id: &str) -> Result<(), PlatformError> {
        let url = self.http.url(&format!("/restapi/v1.0/subscription/{id}"));
        let auth = self.bearer();
        let answer = self.http.send("delete subscription", true, |agent| {
            agent
                .delete(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .call()
        })?;
        match answer.status {
            200 | 204 | 404 => Ok(()),
            s => Err(api_error(s, &answer.body)),
        }
    }

    /// Ends the session (best effort, one try: the platform allows few parallel sessions).
    pub(crate) fn revoke(self) -> Result<(), PlatformError> {
        let url = self.http.url("/restapi/oauth/revoke");
        let auth = self.http.basic();
        let result = self
            .http
            .agent
            .post(&url)
            .header("Authorization", &auth)
            .send_form([("token", self.access.expose())]);
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                if status == 200 || status == 204 {
                    Ok(())
                } else {
                    let body = resp
                        .body_mut()
                        .with_config()
                        .limit(MAX_BODY)
                        .read_to_vec()
                        .unwrap_or_default();
                    Err(api_error(status, &body))
                }
            }
            Err(e) => Err(self.http.failed(&e)),
        }
    }
}

// ---- Raw reads (catchup) ----------------------------------------------------------------------

#[cfg(any(feature = "catchup", test))]
impl Session {
    /// GETs `target` (a path, or an absolute URL on the configured server such as a
    /// `navigation.nextPage`) under the retry policy, and hands back the status and the body as
    /// sent: `catchup` keeps records byte for byte and reads error codes itself.
    pub(crate) fn get_bytes(
        &self,
        what: &str,
        target: &str,
    ) -> Result<(u16, Vec<u8>), PlatformError> {
        let url = if target.starts_with('/') {
            self.http.url(target)
        } else if target.starts_with(&format!("{}/", self.http.endpoint.server)) {
            target.to_string()
        } else {
            // The bearer token goes only to the server we were configured with.
            return Err(bad(format!(
                "a link points away from {}: {}",
                self.http.endpoint.server,
                truncate(target, 200)
            )));
        };
        self.get(what, &url).map(|a| (a.status, a.body))
    }

    /// The one-line error an error answer stands for.
    pub(crate) fn error_of(status: u16, body: &[u8]) -> PlatformError {
        api_error(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_one_liners() {
        let e = api_error(
            400,
            br#"{"errorCode":"SUB-505","message":"Subscriptions limit exceeded","errors":[{"errorCode":"SUB-505","message":"Subscriptions limit exceeded"}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "SUB-505 Subscriptions limit exceeded (HTTP 400)"
        );
        assert!(e.hint().unwrap().contains("ringhook list"));

        let e = api_error(
            400,
            br#"{"error":"invalid_grant","errors":[{"errorCode":"OAU-140","message":"Invalid resource owner credentials"}],"error_description":"Invalid resource owner credentials"}"#,
        );
        assert_eq!(
            e.to_string(),
            "OAU-140 Invalid resource owner credentials (HTTP 400)"
        );
        assert!(e.hint().unwrap().contains("RC_JWT"));

        let e = api_error(
            400,
            br#"{"errorCode":"CMN-101","message":"Parameter [expiresIn] value is invalid","errors":[{"errorCode":"CMN-101","message":"Parameter [expiresIn] value is invalid","parameterName":"expiresIn","parameterValue":"9"}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "CMN-101 Parameter [expiresIn] value is invalid; Parameter [expiresIn] value is invalid [expiresIn = '9'] (HTTP 400)"
        );
    }

    #[test]
    fn error_without_a_body_names_the_status() {
        assert_eq!(
            api_error(503, b"<html>").to_string(),
            "Service Unavailable (HTTP 503)"
        );
    }

    #[test]
    fn the_blacklist_sample_parses() {
        let raw = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/events/blacklist.json"),
        )
        .expect("tests/data/events/blacklist.json");
        let list: SubscriptionList = serde_json::from_slice(&raw).unwrap();
        let s: Subscription = list.records.into_iter().next().unwrap().into();
        assert_eq!(s.status, "Blacklisted");
        assert!(!s.is_active());
        assert_eq!(s.transport, "WebHook");
        assert_eq!(s.filters.len(), 3);
        assert!(s.expires_at.is_some());
        assert_eq!(
            s.blacklist_reason.as_deref(),
            Some("I/O operation is failed. Details: [Read timed out]")
        );
    }

    #[test]
    fn times_with_offsets_parse() {
        assert!(parse_time(Some("2014-04-29T14:29:27.408+0000")).is_some());
        assert!(parse_time(Some("2037-03-14T01:45:30.573Z")).is_some());
        assert!(parse_time(Some("soon")).is_none());
    }
}
