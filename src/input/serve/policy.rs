//! Request → response, without sockets: the receiver's whole policy in two pure functions.
//!
//! [`on_head`] decides from the request line and headers alone (so an oversized or unwanted body
//! is never read); [`on_body`] decides once the body is in. `receiver` owns sockets and clocks and
//! calls these; the unit tests below call them directly.

use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};

use crate::secret::VerificationToken;
use crate::webhook::{MAX_ANSWER_BYTES, VALIDATION_TOKEN, VERIFICATION_TOKEN};

/// The handshake answer is 90 bytes plus the echoed token; a token that would take it past the
/// platform's limit ([`crate::webhook::MAX_ANSWER_BYTES`]) is refused (400).
pub(crate) const MAX_ECHOED_TOKEN: usize = MAX_ANSWER_BYTES - 90;

/// What the receiver accepts.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The webhook path (`/webhook`).
    pub path: String,
    /// Path answering `GET` with the receiver's health, when enabled.
    pub health_path: Option<String>,
    /// Path answering `GET` with the Prometheus metrics, when enabled.
    pub metrics_path: Option<String>,
    /// Token every notification must carry, when configured.
    pub token: Option<VerificationToken>,
    /// Largest body accepted.
    pub max_body: u64,
}

/// Which kind of request this is, once its head is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// Subscription validation: echo this `Validation-Token`.
    Handshake(HeaderValue),
    /// A notification to log.
    Notification,
    /// The health check.
    Health,
    /// A Prometheus scrape.
    Metrics,
}

/// The decision taken on a request head.
#[derive(Debug)]
pub(crate) enum Head {
    /// Read the body, then call [`on_body`] with this route.
    Read(Route),
    /// Answer now without reading the body (the connection is closed if one was announced).
    Answer(Answer),
}

/// The decision taken on a complete request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Send this answer.
    Answer(Answer),
    /// Log the body (the exchange builds the event log's record), then [`acknowledge`] the
    /// outcome.
    Log,
    /// Answer with the metrics (the loop renders them: they are its state).
    Metrics,
}

/// What the receiver answers, and why (for the operational log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Headers besides `content-length`.
    pub headers: Headers,
    /// Body (empty for everything but the health check).
    pub body: &'static str,
    /// Why a request was rejected, for the operational log; `None` for ordinary answers.
    pub reason: Option<String>,
}

/// An answer's headers besides `content-length`, always in this order: `validation-token` (a
/// handshake's echo), `content-type: application/json`, `connection: close`. Facts, not a list:
/// an answer allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Headers {
    /// The handshake's `Validation-Token`, echoed.
    pub validation_token: Option<HeaderValue>,
    /// `content-type: application/json`.
    pub json: bool,
    /// `connection: close`.
    pub close: bool,
}

// Statics, not consts, so that `iter` can lend them.
static TOKEN_NAME: HeaderName = VALIDATION_TOKEN;
static CONTENT_TYPE_NAME: HeaderName = CONTENT_TYPE;
static CONNECTION_NAME: HeaderName = CONNECTION;
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
static CLOSE: HeaderValue = HeaderValue::from_static("close");

impl Headers {
    /// The headers in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        let token = self.validation_token.as_ref().map(|v| (&TOKEN_NAME, v));
        let json = self.json.then_some((&CONTENT_TYPE_NAME, &APPLICATION_JSON));
        let close = self.close.then_some((&CONNECTION_NAME, &CLOSE));
        token.into_iter().chain(json).chain(close)
    }
}

impl Answer {
    fn empty(status: StatusCode) -> Answer {
        Answer {
            status,
            headers: Headers {
                json: true,
                ..Headers::default()
            },
            body: "",
            reason: None,
        }
    }

    fn reject(status: StatusCode, reason: String) -> Answer {
        Answer {
            status,
            headers: Headers::default(),
            body: "",
            reason: Some(reason),
        }
    }

    /// The same answer with `Connection: close` (ureq-proto then closes after it).
    pub(crate) fn closing(&self) -> Answer {
        let mut a = self.clone();
        a.headers.close = true;
        a
    }

    /// The answer as a response head for ureq-proto (which writes it).
    pub(crate) fn to_response(&self) -> Response<()> {
        // Filled in directly rather than through `Response::builder`, which re-validates every
        // header and formats the length into a fresh allocation: one answer per notification.
        let mut res = Response::new(());
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        headers.reserve(4);
        for (k, v) in self.headers.iter() {
            headers.append(k, v.clone());
        }
        let length = match self.body.len() {
            0 => HeaderValue::from_static("0"),
            n => HeaderValue::from(n),
        };
        headers.insert(CONTENT_LENGTH, length);
        res
    }
}

/// How a request's body is delimited, judged before ureq-proto reads it (ureq-proto 0.7 takes
/// `chunked` anywhere in `Transfer-Encoding`, reads a bare HTTP/1.1 `POST` as chunked, ignores
/// `Transfer-Encoding` in HTTP/1.0 and lets agreeing duplicate `Content-Length`s through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Unambiguous: read the body, keep the connection.
    Sound,
    /// `Transfer-Encoding: chunked` beside a `Content-Length`: chunked wins, and the connection
    /// closes after the answer (RFC 9112 §6.1), so nothing after it is read under a guess.
    CloseAfter,
    /// Refuse with this status, unread, and close (RFC 9112 §6.1, §6.3; RFC 9110 §7.2).
    Refuse(StatusCode, &'static str),
}

/// Judges a request head's framing and `Host` by RFC 9112: where the body ends must not be a
/// guess, or a 200 could be given for bytes that are not the event (or a second request could
/// hide in a body).
pub(crate) fn framing(req: &Request<()>) -> Framing {
    use Framing::Refuse;
    let h = req.headers();
    let http10 = req.version() == Version::HTTP_10;
    if !http10 {
        let mut hosts = h.get_all(HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) => return Refuse(StatusCode::BAD_REQUEST, "HTTP/1.1 request without Host"),
            (Some(_), Some(_)) => return Refuse(StatusCode::BAD_REQUEST, "more than one Host"),
            (Some(v), None) if !valid_host(v.as_bytes()) => {
                return Refuse(StatusCode::BAD_REQUEST, "malformed Host");
            }
            _ => {}
        }
    }
    let mut lengths = h.get_all(CONTENT_LENGTH).iter();
    let length = match (lengths.next(), lengths.next()) {
        (Some(_), Some(_)) => {
            return Refuse(StatusCode::BAD_REQUEST, "more than one Content-Length");
        }
        (Some(v), None) => {
            let v = v.as_bytes();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Refuse(StatusCode::BAD_REQUEST, "malformed Content-Length");
            }
            Some(v.iter().any(|&b| b != b'0'))
        }
        (None, _) => None,
    };
    let codings = h.get_all(TRANSFER_ENCODING);
    let chunked = codings.iter().next().is_some();
    // ureq-proto reads no body for these methods: a body would be parsed as the next request.
    let bodiless = req.method() == Method::HEAD || req.method() == Method::CONNECT;
    if bodiless && (chunked || length == Some(true)) {
        return Refuse(StatusCode::BAD_REQUEST, "a body on HEAD or CONNECT");
    }
    if chunked {
        if http10 {
            return Refuse(
                StatusCode::BAD_REQUEST,
                "Transfer-Encoding in an HTTP/1.0 request",
            );
        }
        let mut count = 0;
        for value in codings {
            let Ok(text) = value.to_str() else {
                return Refuse(StatusCode::BAD_REQUEST, "malformed Transfer-Encoding");
            };
            // Empty list elements are allowed and ignored (RFC 9110 §5.6.1).
            for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if !coding.eq_ignore_ascii_case("chunked") {
                    return Refuse(StatusCode::NOT_IMPLEMENTED, "unsupported transfer coding");
                }
                count += 1;
            }
        }
        if count != 1 {
            return Refuse(
                StatusCode::BAD_REQUEST,
                "Transfer-Encoding must be chunked, once",
            );
        }
        if length.is_some() {
            return Framing::CloseAfter;
        }
    } else if http10
        && length.is_none()
        && matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
    {
        return Refuse(
            StatusCode::LENGTH_REQUIRED,
            "HTTP/1.0 POST without Content-Length",
        );
    }
    Framing::Sound
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2; empty is allowed).
fn valid_host(v: &[u8]) -> bool {
    let (host, port) = match v.first() {
        Some(b'[') => match v.iter().position(|&b| b == b']') {
            Some(end) => {
                let inner = &v[1..end];
                let ok = !inner.is_empty()
                    && inner
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || b":.%-_~".contains(b));
                match &v[end + 1..] {
                    [] => return ok,
                    [b':', port @ ..] => (ok, port),
                    _ => return false,
                }
            }
            None => return false,
        },
        _ => {
            let (host, port) = match v.iter().rposition(|&b| b == b':') {
                Some(i) => (&v[..i], &v[i + 1..]),
                None => (v, &[][..]),
            };
            let ok = host
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(b));
            (ok, port)
        }
    };
    host && port.iter().all(u8::is_ascii_digit)
}

/// Decides on a request from its head alone.
pub(crate) fn on_head(req: &Request<()>, policy: &Policy) -> Head {
    let path = req.uri().path();
    let method = req.method();

    if let Some(len) = declared_length(req) {
        if len > policy.max_body {
            return Head::Answer(Answer::reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body of {len} bytes exceeds --max-body {}", policy.max_body),
            ));
        }
    }
    if method == Method::GET {
        if policy.health_path.as_deref() == Some(path) {
            return Head::Read(Route::Health);
        }
        if policy.metrics_path.as_deref() == Some(path) {
            return Head::Read(Route::Metrics);
        }
    }
    if method != Method::POST || path != policy.path {
        return Head::Answer(Answer::reject(
            StatusCode::FORBIDDEN,
            format!("{method} {} is not POST {}", truncate(path), policy.path),
        ));
    }
    let presented = req.headers().get(VERIFICATION_TOKEN);
    if let Some(validation) = req.headers().get(VALIDATION_TOKEN) {
        if validation.len() > MAX_ECHOED_TOKEN {
            // Echoing it would break the platform's limit; no real platform token is this long.
            return Head::Answer(Answer::reject(
                StatusCode::BAD_REQUEST,
                format!(
                    "Validation-Token of {} bytes cannot be echoed within the 1024-byte answer limit",
                    validation.len()
                ),
            ));
        }
        // The handshake may carry the verification token; when both sides have one, they must agree.
        if let (Some(token), Some(p)) = (&policy.token, presented) {
            if !token.matches(p.as_bytes()) {
                return Head::Answer(Answer::reject(
                    StatusCode::FORBIDDEN,
                    "handshake with a wrong Verification-Token".into(),
                ));
            }
        }
        return Head::Read(Route::Handshake(validation.clone()));
    }
    if let Some(token) = &policy.token {
        match presented {
            None => {
                return Head::Answer(Answer::reject(
                    StatusCode::FORBIDDEN,
                    "notification without Verification-Token".into(),
                ));
            }
            Some(p) if !token.matches(p.as_bytes()) => {
                return Head::Answer(Answer::reject(
                    StatusCode::FORBIDDEN,
                    "notification with a wrong Verification-Token".into(),
                ));
            }
            Some(_) => {}
        }
    }
    Head::Read(Route::Notification)
}

/// What the health check says about the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// It takes writes, and no sync has been running for longer than `--health-max-sync`.
    Ok,
    /// The last write or sync failed.
    Unwritable,
    /// A sync has been running for longer than `--health-max-sync` (a stalled disk): the
    /// notifications in its batch wait for it.
    Stalled,
    /// `ringhook connect` has no live subscription (connecting, reconnecting, resubscribing):
    /// nothing arrives.
    Unsubscribed,
}

/// Decides on a complete request (a notification's body is the exchange's to log). `health` is
/// the event log's.
pub(crate) fn on_body(route: Route, health: Health) -> Outcome {
    match route {
        Route::Handshake(token) => Outcome::Answer(Answer {
            headers: Headers {
                validation_token: Some(token),
                json: true,
                close: false,
            },
            ..Answer::empty(StatusCode::OK)
        }),
        Route::Health => Outcome::Answer(match health {
            Health::Ok => Answer {
                body: "{\"status\":\"ok\"}",
                ..Answer::empty(StatusCode::OK)
            },
            Health::Unwritable => Answer {
                body: "{\"status\":\"event log unwritable\"}",
                ..Answer::empty(StatusCode::SERVICE_UNAVAILABLE)
            },
            Health::Stalled => Answer {
                body: "{\"status\":\"event log sync stalled longer than --health-max-sync\"}",
                ..Answer::empty(StatusCode::SERVICE_UNAVAILABLE)
            },
            Health::Unsubscribed => Answer {
                body: "{\"status\":\"not subscribed\"}",
                ..Answer::empty(StatusCode::SERVICE_UNAVAILABLE)
            },
        }),
        Route::Notification => Outcome::Log,
        Route::Metrics => Outcome::Metrics,
    }
}

/// True for a request that presents itself as a notification (a `POST` to the webhook path that
/// is not a handshake), for `ringhook_notifications_total{result="rejected"}`.
pub(crate) fn is_notification(req: &Request<()>, policy: &Policy) -> bool {
    req.method() == Method::POST
        && req.uri().path() == policy.path
        && !req.headers().contains_key(VALIDATION_TOKEN)
}

/// The answer to a notification once the event log has (or has not) taken it.
pub(crate) fn acknowledge(logged: bool) -> Answer {
    if logged {
        Answer::empty(StatusCode::OK)
    } else {
        // The truth: the event was not taken. RingCentral documents no redelivery, so it is
        // likely lost at the platform; the operational log and the health check say so.
        Answer::reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "event log unwritable".into(),
        )
    }
}

/// The request's `Content-Length`, when it has a valid one.
pub(crate) fn declared_length(req: &Request<()>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        // `to_str` lets only visible ASCII and tabs through: `trim_ascii` trims what `trim` would.
        .and_then(|v| v.trim_ascii().parse().ok())
}

/// Keeps hostile paths from flooding the operational log.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn policy(token: Option<&str>) -> Policy {
        Policy {
            path: "/webhook".into(),
            health_path: Some("/health".into()),
            metrics_path: Some("/metrics".into()),
            token: token.map(|t| VerificationToken::new(Secret::new(t))),
            max_body: 1000,
        }
    }

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn status_of(head: Head) -> StatusCode {
        match head {
            Head::Answer(a) => a.status,
            Head::Read(r) => panic!("expected an answer, got Read({r:?})"),
        }
    }

    #[test]
    fn handshake_echoes_token_with_json_content_type() {
        let r = req("POST", "/webhook", &[("Validation-Token", "abc-123")]);
        let Head::Read(route) = on_head(&r, &policy(None)) else {
            panic!()
        };
        let Outcome::Answer(a) = on_body(route, Health::Ok) else {
            panic!()
        };
        assert_eq!(a.status, StatusCode::OK);
        let res = a.to_response();
        assert_eq!(res.headers()["validation-token"], "abc-123");
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(res.headers()["content-length"], "0");
    }

    #[test]
    fn handshake_with_wrong_verification_token_is_refused() {
        let r = req(
            "POST",
            "/webhook",
            &[("Validation-Token", "v"), ("Verification-Token", "nope")],
        );
        assert_eq!(status_of(on_head(&r, &policy(Some("sekrit")))), 403);
        // The platform may omit it on the handshake: then the handshake passes.
        let r = req("POST", "/webhook", &[("Validation-Token", "v")]);
        assert!(matches!(
            on_head(&r, &policy(Some("sekrit"))),
            Head::Read(Route::Handshake(_))
        ));
    }

    #[test]
    fn wrong_method_or_path_is_403() {
        assert_eq!(
            status_of(on_head(&req("GET", "/webhook", &[]), &policy(None))),
            403
        );
        assert_eq!(
            status_of(on_head(&req("POST", "/other", &[]), &policy(None))),
            403
        );
        assert_eq!(
            status_of(on_head(&req("PUT", "/webhook", &[]), &policy(None))),
            403
        );
        assert_eq!(
            status_of(on_head(&req("POST", "/health", &[]), &policy(None))),
            403
        );
    }

    #[test]
    fn notifications_need_the_verification_token() {
        let p = policy(Some("sekrit"));
        assert_eq!(status_of(on_head(&req("POST", "/webhook", &[]), &p)), 403);
        let wrong = req("POST", "/webhook", &[("Verification-Token", "sekriT")]);
        assert_eq!(status_of(on_head(&wrong, &p)), 403);
        let right = req("POST", "/webhook", &[("Verification-Token", "sekrit")]);
        assert!(matches!(
            on_head(&right, &p),
            Head::Read(Route::Notification)
        ));
        // Without a configured token, everything on the path is taken.
        let none = req("POST", "/webhook", &[]);
        assert!(matches!(
            on_head(&none, &policy(None)),
            Head::Read(Route::Notification)
        ));
    }

    #[test]
    fn oversized_body_is_refused_before_reading() {
        let r = req("POST", "/webhook", &[("Content-Length", "100000000000000")]);
        assert_eq!(status_of(on_head(&r, &policy(None))), 413);
        let r = req("POST", "/webhook", &[("Content-Length", "1000")]);
        assert!(matches!(on_head(&r, &policy(None)), Head::Read(_)));
    }

    #[test]
    fn health_reports_the_log() {
        let r = req("GET", "/health", &[]);
        let Head::Read(route) = on_head(&r, &policy(None)) else {
            panic!()
        };
        let Outcome::Answer(ok) = on_body(route.clone(), Health::Ok) else {
            panic!()
        };
        assert_eq!(ok.status, 200);
        let Outcome::Answer(bad) = on_body(route, Health::Unwritable) else {
            panic!()
        };
        assert_eq!(bad.status, 503);
    }

    #[test]
    fn metrics_are_get_only_and_notifications_are_recognised() {
        let get = req("GET", "/metrics", &[]);
        assert!(matches!(
            on_head(&get, &policy(None)),
            Head::Read(Route::Metrics)
        ));
        assert_eq!(
            status_of(on_head(&req("POST", "/metrics", &[]), &policy(None))),
            403
        );
        let mut off = policy(None);
        off.metrics_path = None;
        assert_eq!(status_of(on_head(&get, &off)), 403);
        let p = policy(None);
        assert!(is_notification(&req("POST", "/webhook", &[]), &p));
        let handshake = req("POST", "/webhook", &[("Validation-Token", "v")]);
        assert!(!is_notification(&handshake, &p));
        assert!(!is_notification(&req("POST", "/other", &[]), &p));
        assert!(!is_notification(&get, &p));
    }

    #[test]
    fn notifications_are_logged_and_answers_are_tiny() {
        assert!(matches!(
            on_body(Route::Notification, Health::Ok),
            Outcome::Log
        ));
        // Logged even while the log is unhealthy: the commit's verdict picks 200 or 503.
        assert!(matches!(
            on_body(Route::Notification, Health::Unwritable),
            Outcome::Log
        ));
        assert_eq!(acknowledge(true).status, 200);
        assert_eq!(acknowledge(true).body, "");
        assert_eq!(acknowledge(false).status, 503);
    }

    #[test]
    fn framing_follows_rfc_9112() {
        use Framing::*;
        let (bad, unsupported, length) = (
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_IMPLEMENTED,
            StatusCode::LENGTH_REQUIRED,
        );
        let v10 = Version::HTTP_10;
        let v11 = Version::HTTP_11;
        type Case<'a> = (
            Version,
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<StatusCode>,
            bool,
        );
        #[rustfmt::skip]
        let table: &[Case] = &[
            // version, method, headers, refused with, close after
            (v11, "POST", &[("host", "x"), ("content-length", "5")], None, false),
            (v11, "POST", &[("host", "x")], None, false),
            (v11, "POST", &[("host", "x"), ("transfer-encoding", "chunked")], None, false),
            (v11, "POST", &[("host", "x"), ("transfer-encoding", "Chunked")], None, false),
            (v11, "POST", &[("host", "x"), ("transfer-encoding", "chunked, ")], None, false),
            (v11, "POST", &[("host", "x"), ("transfer-encoding", "chunked"), ("content-length", "5")], None, true),
            (v11, "POST", &[("host", "x"), ("transfer-encoding", "xchunked")], Some(unsupported), false),
            (v11, "POST", &[("host", "x"), ("transfer-encoding", "identity")], Some(unsupported), false),
            (v11, "POST", &[("host", "x"), ("transfer-encoding", "gzip, chunked")], Some(unsupported), false),
            (v11, "POST", &[("host", "x"), ("transfer-encoding", "chunked, identity")], Some(unsupported), false),
            (v11, "POST", &[("host", "x"), ("transfer-encoding", "chunked;q=1")], Some(unsupported), false),
            (v11, "POST", &[("host", "x"), ("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")], Some(bad), false),
            (v11, "POST", &[("host", "x"), ("transfer-encoding", "")], Some(bad), false),
            (v11, "POST", &[("host", "x"), ("content-length", "2"), ("content-length", "2")], Some(bad), false),
            (v11, "POST", &[("host", "x"), ("content-length", "2, 2")], Some(bad), false),
            (v11, "POST", &[], Some(bad), false),
            (v11, "POST", &[("host", "a"), ("host", "b")], Some(bad), false),
            (v11, "POST", &[("host", "a b")], Some(bad), false),
            (v11, "POST", &[("host", "a:8o")], Some(bad), false),
            (v11, "POST", &[("host", "[::1")], Some(bad), false),
            (v11, "GET", &[("host", "")], None, false),
            (v11, "GET", &[("host", "[::1]:3000")], None, false),
            (v11, "GET", &[("host", "example.com:443")], None, false),
            (v11, "HEAD", &[("host", "x"), ("content-length", "5")], Some(bad), false),
            (v11, "HEAD", &[("host", "x"), ("content-length", "0")], None, false),
            (v10, "POST", &[("content-length", "5")], None, false),
            (v10, "POST", &[], Some(length), false),
            (v10, "GET", &[], None, false),
            (v10, "POST", &[("transfer-encoding", "chunked")], Some(bad), false),
            (v10, "POST", &[("transfer-encoding", "chunked"), ("content-length", "5")], Some(bad), false),
        ];
        for (version, method, headers, refused, close) in table {
            let mut r = req(method, "/webhook", headers);
            *r.version_mut() = *version;
            let got = framing(&r);
            let want = match (refused, close) {
                (Some(s), _) => matches!(got, Refuse(g, _) if g == *s),
                (None, true) => got == CloseAfter,
                (None, false) => got == Sound,
            };
            assert!(want, "{version:?} {method} {headers:?}: {got:?}");
        }
    }
}
