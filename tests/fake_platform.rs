//! A fake RingCentral platform on loopback, for `register`, `list` and `unregister` to talk to.
//!
//! It speaks HTTP/1.1 (plain, or TLS with a certificate from a throwaway CA) the way the real
//! platform does, per `../shared/reference`: Basic-authenticated token and revoke endpoints,
//! the extension list paged through `navigation.nextPage`, subscription CRUD and renew with the
//! real JSON shapes, `~` rewritten to ids in the filters it returns, less lifetime granted than
//! asked, the validation handshake against the address on create (really connecting to it),
//! error bodies `{"errorCode","message","errors"}`, and scripted faults: 429s and 5xx, raw answers
//! (HTML with 200, broken JSON), silence and answers that stall mid-body. Every request is
//! journaled for assertions. No sleeps: the listener is bound before the thread starts.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

pub const CLIENT_ID: &str = "fake-client-id";
pub const CLIENT_SECRET: &str = "fake-client-secret-Zq8w";
pub const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIyMjUzMTY4MDIxIn0.fake-jwt-signature-Kx7";
pub const USERNAME: &str = "+16505550100";
pub const PASSWORD: &str = "fake password Pw9!";
pub const ACCOUNT_ID: &str = "37439510";
pub const OWNER_ID: &str = "2253168021";
/// The lifetime the fake grants at most: far less than the 10 years `register` asks for.
pub const MAX_GRANT: u64 = 90 * 86_400;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A subscription as the fake stores it (filters as sent, `~` included).
#[derive(Debug, Clone)]
pub struct Sub {
    pub id: String,
    pub status: String,
    pub filters: Vec<String>,
    pub address: String,
    pub verification_token: Option<String>,
    pub created: SystemTime,
    pub expires: SystemTime,
    pub granted: u64,
    pub blacklist_reason: Option<String>,
}

#[derive(Debug, Clone)]
struct Ext {
    id: u64,
    kind: &'static str,
    status: &'static str,
}

/// A scripted answer for the next matching request.
#[derive(Debug, Clone)]
struct Scripted {
    method: String,
    prefix: String,
    reply: Reply,
    /// Carry the request out, then answer as scripted anyway (a lost answer).
    after_processing: bool,
}

/// What a scripted request gets instead of its real answer.
#[derive(Debug, Clone)]
enum Reply {
    /// The platform's error body for `status` (429 carries `Retry-After` when given).
    Error {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Exactly this status, content type and body.
    Raw {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// Nothing at all: the connection is held until the client hangs up.
    Stall,
    /// The status line, headers and half of the real body, then nothing until the client hangs
    /// up.
    StallBody,
}

#[derive(Default)]
struct World {
    subs: Vec<Sub>,
    exts: Vec<Ext>,
    tokens: Vec<String>,
    issued: Vec<String>,
    journal: Vec<Recorded>,
    script: VecDeque<Scripted>,
    next: u64,
}

/// The running fake.
pub struct FakePlatform {
    /// `http://127.0.0.1:PORT` or `https://localhost:PORT`.
    pub url: String,
    /// The test CA's certificate (PEM), when serving TLS.
    pub ca_pem: Option<String>,
    world: Arc<Mutex<World>>,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, v: Value) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(&v).unwrap(),
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Answer {
        Answer::json(
            status,
            json!({"errorCode": code, "message": message, "errors": [{"errorCode": code, "message": message}]}),
        )
    }

    fn empty(status: u16) -> Answer {
        Answer {
            status,
            headers: vec![],
            body: vec![],
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True for a call that changes subscriptions (create, update, renew, delete).
    pub fn changes_subscriptions(&self) -> bool {
        self.method != "GET" && self.path.starts_with("/restapi/v1.0/subscription")
    }
}

impl FakePlatform {
    /// A fake over plain HTTP on 127.0.0.1.
    pub fn start() -> FakePlatform {
        Self::launch(None)
    }

    /// A fake over HTTPS with a certificate for `localhost` from a new test CA.
    pub fn start_tls() -> FakePlatform {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ringhook test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let mut fake = Self::launch(Some(Arc::new(config)));
        fake.ca_pem = Some(ca.pem());
        fake
    }

    fn launch(tls: Option<Arc<rustls::ServerConfig>>) -> FakePlatform {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let mut world = World::default();
        // Eight enabled users, a disabled user and two non-users: {extensionId} must expand to
        // exactly the eight, over three pages at perPage=3.
        for i in 0..8u64 {
            world.exts.push(Ext {
                id: 62_000 + i,
                kind: "User",
                status: "Enabled",
            });
            if i == 3 {
                world.exts.push(Ext {
                    id: 63_001,
                    kind: "User",
                    status: "Disabled",
                });
                world.exts.push(Ext {
                    id: 63_002,
                    kind: "Department",
                    status: "Enabled",
                });
            }
        }
        world.exts.push(Ext {
            id: 63_003,
            kind: "IvrMenu",
            status: "Enabled",
        });
        let world = Arc::new(Mutex::new(world));
        let fake = FakePlatform {
            url: url.clone(),
            ca_pem: None,
            world: world.clone(),
        };
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let world = world.clone();
                let url = url.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    match tls {
                        None => serve_conn(stream, &world, &url),
                        Some(cfg) => {
                            let conn = rustls::ServerConnection::new(cfg).unwrap();
                            serve_conn(rustls::StreamOwned::new(conn, stream), &world, &url);
                        }
                    }
                });
            }
        });
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    /// Every request so far.
    pub fn journal(&self) -> Vec<Recorded> {
        self.lock().journal.clone()
    }

    /// Forgets the journal (between runs of a test).
    pub fn clear_journal(&self) {
        self.lock().journal.clear();
    }

    /// Requests that changed subscriptions, as `METHOD path`.
    pub fn changing_calls(&self) -> Vec<String> {
        self.journal()
            .iter()
            .filter(|r| r.changes_subscriptions())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// How many requests match `method` and start with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.journal()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .count()
    }

    /// The subscriptions as stored.
    pub fn subscriptions(&self) -> Vec<Sub> {
        self.lock().subs.clone()
    }

    /// Every access token issued so far (they must never show in output).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    /// Access tokens not yet revoked.
    pub fn live_tokens(&self) -> Vec<String> {
        self.lock().tokens.clone()
    }

    /// Marks a subscription Blacklisted, as the platform does after failed deliveries.
    pub fn blacklist(&self, id: &str) {
        let mut w = self.lock();
        let s = w.subs.iter_mut().find(|s| s.id == id).unwrap();
        s.status = "Blacklisted".into();
        s.blacklist_reason = Some("I/O operation is failed. Details: [Read timed out]".into());
    }

    /// Sets a subscription to expire `secs` from now.
    pub fn expire_in(&self, id: &str, secs: u64) {
        let mut w = self.lock();
        let s = w.subs.iter_mut().find(|s| s.id == id).unwrap();
        s.expires = SystemTime::now() + Duration::from_secs(secs);
    }

    /// Adds a subscription of someone else (another address).
    pub fn add_foreign(&self, address: &str) -> String {
        let mut w = self.lock();
        let id = new_id(&mut w);
        let now = SystemTime::now();
        w.subs.push(Sub {
            id: id.clone(),
            status: "Active".into(),
            filters: vec!["/restapi/v1.0/glip/posts".into()],
            address: address.into(),
            verification_token: None,
            created: now,
            expires: now + Duration::from_secs(MAX_GRANT),
            granted: MAX_GRANT,
            blacklist_reason: None,
        });
        id
    }

    /// Answers the next `times` requests matching `method` and `prefix` with `status`
    /// (429 carries `Retry-After: retry_after`).
    pub fn script(&self, method: &str, prefix: &str, status: u16, retry_after: Option<u64>) {
        self.push_script(
            method,
            prefix,
            Reply::Error {
                status,
                retry_after,
            },
            false,
        );
    }

    /// Carries out the next matching request but answers `status`: the answer is "lost".
    pub fn script_lost_answer(&self, method: &str, prefix: &str, status: u16) {
        self.push_script(
            method,
            prefix,
            Reply::Error {
                status,
                retry_after: None,
            },
            true,
        );
    }

    /// Answers the next matching request with exactly `status`, `content_type` and `body`
    /// (an HTML error page with 200, truncated JSON, wrong types...), without carrying it out.
    pub fn script_raw(
        &self,
        method: &str,
        prefix: &str,
        status: u16,
        content_type: &str,
        body: &str,
    ) {
        self.push_script(
            method,
            prefix,
            Reply::Raw {
                status,
                content_type: content_type.into(),
                body: body.as_bytes().to_vec(),
            },
            false,
        );
    }

    /// Carries out the next matching request, then answers it with exactly `status`,
    /// `content_type` and `body`: the request succeeded, its answer is unreadable.
    pub fn script_raw_after_processing(
        &self,
        method: &str,
        prefix: &str,
        status: u16,
        content_type: &str,
        body: &str,
    ) {
        self.push_script(
            method,
            prefix,
            Reply::Raw {
                status,
                content_type: content_type.into(),
                body: body.as_bytes().to_vec(),
            },
            true,
        );
    }

    /// Accepts the next matching request and never answers it: the connection stays open, silent,
    /// until the client gives up. With `processed`, the request is carried out first.
    pub fn script_stall(&self, method: &str, prefix: &str, processed: bool) {
        self.push_script(method, prefix, Reply::Stall, processed);
    }

    /// Carries out the next matching request and sends the status line, the headers and half of
    /// the body, then nothing more until the client gives up.
    pub fn script_stall_body(&self, method: &str, prefix: &str) {
        self.push_script(method, prefix, Reply::StallBody, true);
    }

    fn push_script(&self, method: &str, prefix: &str, reply: Reply, after_processing: bool) {
        self.lock().script.push_back(Scripted {
            method: method.into(),
            prefix: prefix.into(),
            reply,
            after_processing,
        });
    }

    /// Delivers a notification to the subscription's address as the platform does; the
    /// receiver's status.
    pub fn deliver(&self, id: &str, event: &str) -> u16 {
        let sub = self
            .subscriptions()
            .into_iter()
            .find(|s| s.id == id)
            .unwrap();
        let body = json!({
            "uuid": format!("{id}-{}", event.len()),
            "event": event,
            "timestamp": rfc3339(SystemTime::now()),
            "subscriptionId": id,
            "ownerId": OWNER_ID,
            "body": {"extensionId": OWNER_ID, "telephonyStatus": "Ringing"}
        })
        .to_string();
        let mut headers = vec![
            (
                "Content-Type".to_string(),
                "application/json; charset=UTF-8".to_string(),
            ),
            ("User-Agent".into(), "RingCentral-Webhook/8.3".into()),
        ];
        if let Some(t) = &sub.verification_token {
            headers.push(("Verification-Token".into(), t.clone()));
        }
        post(
            &sub.address,
            &headers,
            body.as_bytes(),
            Duration::from_secs(10),
        )
        .map(|r| r.status)
        .unwrap_or(0)
    }
}

fn new_id(w: &mut World) -> String {
    w.next += 1;
    format!(
        "{:08x}-e25c-4421-8dd1-{:012x}",
        0x1423_e408u64 + w.next,
        w.next
    )
}

/// The answer to an outbound POST, with its size on the wire.
struct Received {
    status: u16,
    headers: Vec<(String, String)>,
    size: usize,
}

/// POSTs to an `http://` address within `limit`, as the platform's webhook client does.
fn post(
    address: &str,
    headers: &[(String, String)],
    body: &[u8],
    limit: Duration,
) -> Result<Received, String> {
    let rest = address
        .strip_prefix("http://")
        .ok_or("the fake reaches http:// addresses only")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let deadline = Instant::now() + limit;
    let addr = host
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s = TcpStream::connect_timeout(&addr, limit).map_err(|e| e.to_string())?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&raw, b"\r\n\r\n") {
            break i + 4;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        s.set_read_timeout(Some(left)).unwrap();
        let n = s.read(&mut buf).map_err(|_| "timed out".to_string())?;
        if n == 0 {
            return Err("connection closed before an answer".into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while raw.len() < head_end + len {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        s.set_read_timeout(Some(left)).unwrap();
        let n = s.read(&mut buf).map_err(|_| "timed out".to_string())?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    Ok(Received {
        status,
        headers,
        size: raw.len(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The platform's handshake: 200, the token echoed, JSON content type, ≤ 1024 bytes, ≤ 3 s.
fn handshake(address: &str, verification_token: Option<&str>) -> Result<(), Answer> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap_or_default()
        .as_nanos();
    let token = format!("validation-{nanos:x}-{n}");
    let mut headers = vec![
        ("Validation-Token".to_string(), token.clone()),
        ("Content-Type".into(), "application/json".into()),
        ("User-Agent".into(), "RingCentral-Webhook/8.3".into()),
    ];
    if let Some(t) = verification_token {
        headers.push(("Verification-Token".into(), t.into()));
    }
    let invalid_address = || {
        Answer::json(
            400,
            json!({"errorCode": "CMN-101", "message": "Parameter [deliveryMode.address] value is invalid",
                   "errors": [{"errorCode": "CMN-101", "message": "Parameter [deliveryMode.address] value is invalid",
                               "parameterName": "deliveryMode.address", "parameterValue": address}]}),
        )
    };
    let r =
        post(address, &headers, b"", Duration::from_millis(3000)).map_err(|_| invalid_address())?;
    let header = |n: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    if r.status != 200 || header("Validation-Token") != Some(token.as_str()) {
        return Err(Answer::error(
            400,
            "SUB-520",
            "Validation Token is not returned",
        ));
    }
    let json_type = header("Content-Type").is_some_and(|ct| ct.starts_with("application/json"));
    if !json_type || r.size > 1024 {
        return Err(Answer::error(
            400,
            "SUB-525",
            "WebHook server response is invalid",
        ));
    }
    Ok(())
}

fn read_request<R: BufRead>(r: &mut R) -> Option<Recorded> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    Some(Recorded {
        method,
        path,
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Holds a connection open without a word until the client hangs up (bounded by the read
/// timeout set on accept).
fn wait_for_hangup<S: Read>(stream: &mut S) {
    let mut buf = [0u8; 1024];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

fn head(answer: &Answer) -> Vec<u8> {
    let reason = match answer.status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Error",
    };
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
    for (k, v) in &answer.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", answer.body.len()));
    out.into_bytes()
}

fn serve_conn<S: Read + Write>(stream: S, world: &Mutex<World>, base: &str) {
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        let answer = match handle(world, base, &req) {
            Outcome::Answer(a) => a,
            Outcome::Stall => return wait_for_hangup(reader.get_mut()),
            Outcome::StallBody(a) => {
                let s = reader.get_mut();
                let mut bytes = head(&a);
                bytes.extend_from_slice(&a.body[..a.body.len() / 2]);
                if s.write_all(&bytes).and_then(|_| s.flush()).is_ok() {
                    wait_for_hangup(s);
                }
                return;
            }
        };
        let s = reader.get_mut();
        let mut bytes = head(&answer);
        bytes.extend_from_slice(&answer.body);
        if s.write_all(&bytes).and_then(|_| s.flush()).is_err() {
            return;
        }
    }
}

/// What the connection does with a request.
enum Outcome {
    Answer(Answer),
    Stall,
    StallBody(Answer),
}

fn handle(world: &Mutex<World>, base: &str, req: &Recorded) -> Outcome {
    let scripted = {
        let mut w = world.lock().unwrap();
        w.journal.push(req.clone());
        let i = w
            .script
            .iter()
            .position(|s| s.method == req.method && req.path.starts_with(&s.prefix));
        i.and_then(|i| w.script.remove(i))
    };
    let Some(s) = scripted else {
        return Outcome::Answer(route(world, base, req));
    };
    let real = s.after_processing.then(|| route(world, base, req));
    match s.reply {
        Reply::Error {
            status,
            retry_after,
        } => {
            let mut a = match status {
                429 => Answer::error(429, "CMN-301", "Request rate exceeded"),
                503 => Answer::error(503, "CMN-211", "Service Temporary Unavailable"),
                st => Answer::error(st, "CMN-201", "Service Temporary Unavailable"),
            };
            if let Some(secs) = retry_after {
                a.headers.push(("Retry-After".into(), secs.to_string()));
                a.headers
                    .push(("X-Rate-Limit-Group".into(), "Medium".into()));
                a.headers.push(("X-Rate-Limit-Limit".into(), "40".into()));
                a.headers
                    .push(("X-Rate-Limit-Remaining".into(), "0".into()));
                a.headers.push(("X-Rate-Limit-Window".into(), "60".into()));
            }
            Outcome::Answer(a)
        }
        Reply::Raw {
            status,
            content_type,
            body,
        } => Outcome::Answer(Answer {
            status,
            headers: vec![("Content-Type".into(), content_type)],
            body,
        }),
        Reply::Stall => Outcome::Stall,
        Reply::StallBody => Outcome::StallBody(real.unwrap_or_else(|| route(world, base, req))),
    }
}

fn basic_ok(req: &Recorded) -> bool {
    use base64::Engine as _;
    let Some(v) = req
        .header("Authorization")
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(v) else {
        return false;
    };
    raw == format!("{CLIENT_ID}:{CLIENT_SECRET}").as_bytes()
}

fn oauth_error(status: u16, error: &str, code: &str, message: &str) -> Answer {
    Answer::json(
        status,
        json!({"error": error, "errors": [{"errorCode": code, "message": message}], "error_description": message}),
    )
}

/// The filters as the platform returns them: `~` rewritten to real ids.
fn rewrite(filters: &[String], sub_id: &str) -> Vec<String> {
    filters
        .iter()
        .map(|f| {
            f.replace("/account/~", &format!("/account/{ACCOUNT_ID}"))
                .replace("/extension/~", &format!("/extension/{OWNER_ID}"))
                .replace("/subscription/~", &format!("/subscription/{sub_id}"))
        })
        .collect()
}

fn sub_json(base: &str, s: &Sub) -> Value {
    let left = s
        .expires
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs();
    let mut v = json!({
        "uri": format!("{base}/restapi/v1.0/subscription/{}", s.id),
        "id": s.id,
        "creationTime": rfc3339(s.created),
        "status": s.status,
        "eventFilters": rewrite(&s.filters, &s.id),
        "expirationTime": rfc3339(s.expires),
        "expiresIn": left,
        "deliveryMode": {"transportType": "WebHook", "encryption": false, "address": s.address},
    });
    if let Some(r) = &s.blacklist_reason {
        v["blacklistedData"] = json!({"reason": r, "blacklistedAt": rfc3339(SystemTime::now())});
    }
    v
}

fn bad_filters(filters: &[String]) -> Option<Answer> {
    let bad = filters
        .iter()
        .find(|f| !f.starts_with("/restapi/") && !f.starts_with("/team-messaging/"))?;
    Some(Answer::json(
        400,
        json!({"errorCode": "SUB-508", "message": "Invalid event filters",
               "errors": [{"errorCode": "SUB-508", "message": "Invalid event filters",
                           "parameterName": "eventFilters", "parameterValue": bad}]}),
    ))
}

fn route(world: &Mutex<World>, base: &str, req: &Recorded) -> Answer {
    let path = req.path.as_str();
    let method = req.method.as_str();
    if path == "/restapi/oauth/token" && method == "POST" {
        if !basic_ok(req) {
            return oauth_error(
                401,
                "invalid_client",
                "OAU-123",
                "Invalid client: fake-client-id",
            );
        }
        let f = form(&req.body);
        let granted = match get(&f, "grant_type") {
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                get(&f, "assertion") == Some(JWT)
            }
            Some("password") => {
                get(&f, "username") == Some(USERNAME) && get(&f, "password") == Some(PASSWORD)
            }
            _ => {
                return oauth_error(
                    400,
                    "unsupported_grant_type",
                    "OAU-250",
                    "Unsupported grant type",
                );
            }
        };
        if !granted {
            return oauth_error(
                400,
                "invalid_grant",
                "OAU-140",
                "Invalid resource owner credentials",
            );
        }
        let mut w = world.lock().unwrap();
        w.next += 1;
        let token = format!("U1BCMDFUMDRKV1MwMXxzLFSvXdw5PHMsVLEn{:04}_access", w.next);
        w.tokens.push(token.clone());
        w.issued.push(token.clone());
        return Answer::json(
            200,
            json!({"access_token": token, "token_type": "bearer", "expires_in": 3600,
                   "refresh_token": format!("{token}-refresh"), "refresh_token_expires_in": 604800,
                   "scope": "ReadAccounts WebhookSubscriptions", "owner_id": OWNER_ID,
                   "endpoint_id": "8zXq6oaLT7WvwWITlGiA1A", "session_id": "s1"}),
        );
    }
    if path == "/restapi/oauth/revoke" && method == "POST" {
        if !basic_ok(req) {
            return oauth_error(
                401,
                "invalid_client",
                "OAU-123",
                "Invalid client: fake-client-id",
            );
        }
        let f = form(&req.body);
        let mut w = world.lock().unwrap();
        if let Some(t) = get(&f, "token") {
            w.tokens.retain(|x| x != t);
        }
        return Answer::empty(200);
    }
    if !path.starts_with("/restapi/v1.0/") {
        return Answer::error(404, "CMN-102", "Resource not found");
    }
    let authorised = {
        let w = world.lock().unwrap();
        req.header("Authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| w.tokens.iter().any(|x| x == t))
    };
    if !authorised {
        return Answer::error(401, "TokenInvalid", "Access token is invalid");
    }

    let account = format!("/restapi/v1.0/account/{ACCOUNT_ID}/extension");
    if method == "GET" && (path == "/restapi/v1.0/account/~/extension" || path == account) {
        let q = form(&req.query);
        let types: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "type")
            .map(|(_, v)| v.as_str())
            .collect();
        let statuses: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "status")
            .map(|(_, v)| v.as_str())
            .collect();
        let page: usize = get(&q, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let per_page: usize = get(&q, "perPage")
            .and_then(|p| p.parse().ok())
            .unwrap_or(100);
        let w = world.lock().unwrap();
        let all: Vec<&Ext> = w
            .exts
            .iter()
            .filter(|e| types.is_empty() || types.contains(&e.kind))
            .filter(|e| statuses.is_empty() || statuses.contains(&e.status))
            .collect();
        let start = (page - 1) * per_page;
        let records: Vec<Value> = all
            .iter()
            .skip(start)
            .take(per_page)
            .map(|e| {
                json!({"id": e.id, "uri": format!("{base}/restapi/v1.0/account/{ACCOUNT_ID}/extension/{}", e.id),
                       "extensionNumber": format!("{}", 100 + e.id % 1000), "name": format!("User {}", e.id),
                       "type": e.kind, "status": e.status})
            })
            .collect();
        let page_uri = |n: usize| {
            let mut parts: Vec<String> = types.iter().map(|t| format!("type={t}")).collect();
            parts.extend(statuses.iter().map(|s| format!("status={s}")));
            parts.push(format!("page={n}"));
            parts.push(format!("perPage={per_page}"));
            json!({"uri": format!("{base}{account}?{}", parts.join("&"))})
        };
        let mut navigation = json!({"firstPage": page_uri(1)});
        if start + per_page < all.len() {
            navigation["nextPage"] = page_uri(page + 1);
        }
        if page > 1 {
            navigation["previousPage"] = page_uri(page - 1);
        }
        // Like the real one, no totalPages: clients must follow nextPage.
        return Answer::json(
            200,
            json!({"uri": format!("{base}{account}?page={page}&perPage={per_page}"), "records": records,
                   "navigation": navigation, "paging": {"page": page, "perPage": per_page}}),
        );
    }

    if path == "/restapi/v1.0/subscription" {
        return match method {
            "GET" => {
                let w = world.lock().unwrap();
                let records: Vec<Value> = w.subs.iter().map(|s| sub_json(base, s)).collect();
                Answer::json(
                    200,
                    json!({"uri": format!("{base}{path}"), "records": records}),
                )
            }
            "POST" => create(world, base, req),
            _ => Answer::error(405, "CMN-405", "Method not allowed"),
        };
    }
    if let Some(rest) = path.strip_prefix("/restapi/v1.0/subscription/") {
        let (id, renew) = match rest.strip_suffix("/renew") {
            Some(id) => (id, true),
            None => (rest, false),
        };
        let mut w = world.lock().unwrap();
        let Some(i) = w.subs.iter().position(|s| s.id == id) else {
            return Answer::error(
                404,
                "CMN-102",
                "Resource for parameter [subscriptionId] is not found",
            );
        };
        let now = SystemTime::now();
        return match (method, renew) {
            ("POST", true) => {
                let s = &mut w.subs[i];
                s.expires = now + Duration::from_secs(s.granted);
                Answer::json(200, sub_json(base, s))
            }
            ("GET", false) => Answer::json(200, sub_json(base, &w.subs[i])),
            ("PUT", false) => {
                let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
                let s = &mut w.subs[i];
                if let Some(f) = body["eventFilters"].as_array() {
                    let filters: Vec<String> = f
                        .iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect();
                    if let Some(a) = bad_filters(&filters) {
                        return a;
                    }
                    s.filters = filters;
                }
                if let Some(e) = body["expiresIn"].as_u64() {
                    s.granted = e.min(MAX_GRANT);
                }
                s.expires = now + Duration::from_secs(s.granted);
                Answer::json(200, sub_json(base, s))
            }
            ("DELETE", false) => {
                w.subs.remove(i);
                Answer::empty(204)
            }
            _ => Answer::error(405, "CMN-405", "Method not allowed"),
        };
    }
    Answer::error(404, "CMN-102", "Resource not found")
}

fn create(world: &Mutex<World>, base: &str, req: &Recorded) -> Answer {
    let Ok(body) = serde_json::from_str::<Value>(&req.body) else {
        return Answer::error(400, "CMN-100", "Invalid JSON");
    };
    let filters: Vec<String> = body["eventFilters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if filters.is_empty() {
        return Answer::error(400, "CMN-101", "Parameter [eventFilters] value is invalid");
    }
    if let Some(a) = bad_filters(&filters) {
        return a;
    }
    let mode = &body["deliveryMode"];
    if mode["transportType"] != "WebHook" {
        return Answer::error(
            400,
            "CMN-101",
            "Parameter [deliveryMode.transportType] value is invalid",
        );
    }
    let Some(address) = mode["address"].as_str().map(String::from) else {
        return Answer::error(
            400,
            "CMN-101",
            "Parameter [deliveryMode.address] value is invalid",
        );
    };
    let token = mode["verificationToken"].as_str().map(String::from);
    if world.lock().unwrap().subs.len() >= 20 {
        return Answer::error(400, "SUB-505", "Subscriptions limit exceeded");
    }
    // The handshake runs without the lock: the receiver may take its time.
    if let Err(a) = handshake(&address, token.as_deref()) {
        return a;
    }
    let asked = body["expiresIn"].as_u64().unwrap_or(604_800);
    let granted = asked.min(MAX_GRANT);
    let now = SystemTime::now();
    let mut w = world.lock().unwrap();
    let id = new_id(&mut w);
    let sub = Sub {
        id,
        status: "Active".into(),
        filters,
        address,
        verification_token: token,
        created: now,
        expires: now + Duration::from_secs(granted),
        granted,
        blacklist_reason: None,
    };
    let v = sub_json(base, &sub);
    w.subs.push(sub);
    Answer::json(200, v)
}
