//! A fake RingCentral platform on loopback, for `register`, `list` and `unregister` to talk to.
//!
//! It speaks HTTP/1.1 (plain, or TLS with a certificate from a throwaway CA) the way the real
//! platform does, per RingCentral's docs and API spec (samples in `tests/data/`): Basic-authenticated token and revoke endpoints,
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
    /// A WebSocket subscription (`connect`'s): no address.
    pub websocket: bool,
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
    /// Message store, call log and their sync tokens (`catchup`; see the section at the end).
    sync: SyncWorld,
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
        let ca = crate::support::TestCa::new();
        let mut fake = Self::launch(Some(ca.server_config()));
        fake.ca_pem = Some(ca.ca_pem);
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
            websocket: false,
        });
        id
    }

    /// Adds a WebSocket subscription of this user and app (as `connect` makes over the socket).
    pub fn add_websocket(&self) -> String {
        let id = self.add_foreign("");
        let mut w = self.lock();
        let sub = w.subs.iter_mut().find(|x| x.id == id).unwrap();
        sub.websocket = true;
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
    if s.websocket {
        v["deliveryMode"] = json!({"transportType": "WebSocket", "encryption": false});
    }
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
    if let Some(a) = sync_route(world, base, req) {
        return a;
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
        websocket: false,
    };
    let v = sub_json(base, &sub);
    w.subs.push(sub);
    Answer::json(200, v)
}

// ==== Message store, call log and their sync APIs (for `catchup`) ===============================
//
// Per RingCentral's Message Sync and Call Log Sync docs (`tests/data/sync/`): Message Sync per extension (FSync with
// `olderRecordsExist`, ISync with a 5 s overlap, `MSG-333` for a token it no longer takes), the
// message-store list and the account call log paged through `navigation.nextPage`, Call Log Sync
// (FSync `recordCount` ≤ 250; ISync refused with `CLG-101` for an invalidated token and with
// "max sync record number limit is exceeded" past 250 records), 403 `InsufficientPermissions` /
// `CMN-401` naming the missing permission, message ids as JSON numbers and a 19-digit
// `conversationId`, answers pretty-printed. Every query is checked against the OpenAPI subset
// (names, repeats, enums, integers, dates): a violation is answered 400 and recorded.

/// A message in the fake's store.
#[derive(Debug, Clone)]
pub struct FakeMessage {
    pub id: u64,
    pub ext: String,
    pub kind: &'static str,
    pub direction: &'static str,
    pub created: SystemTime,
    pub modified: SystemTime,
}

/// A record in the fake's call log.
#[derive(Debug, Clone)]
pub struct FakeCall {
    pub id: String,
    pub session_id: String,
    pub telephony_session_id: String,
    pub ext: String,
    pub start: SystemTime,
    /// When it reached the call log (the call's end).
    pub logged: SystemTime,
}

#[derive(Debug, Clone)]
struct SyncToken {
    /// `None` for the call log, else the extension and the message types of the frame.
    messages: Option<(String, Vec<String>)>,
    time: SystemTime,
    valid: bool,
}

#[derive(Default)]
struct SyncWorld {
    messages: Vec<FakeMessage>,
    calls: Vec<FakeCall>,
    tokens: Vec<(String, SyncToken)>,
    denied: Vec<String>,
    violations: Vec<String>,
    next: u64,
    clock: Option<SystemTime>,
}

impl SyncWorld {
    /// A strictly increasing "now" in whole milliseconds, as the platform's times are.
    fn tick(&mut self) -> SystemTime {
        let since = SystemTime::UNIX_EPOCH.elapsed().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64);
        let t = match self.clock {
            Some(c) if c >= now => c + Duration::from_millis(1),
            _ => now,
        };
        self.clock = Some(t);
        t
    }

    fn token(&mut self, messages: Option<(String, Vec<String>)>, time: SystemTime) -> String {
        self.next += 1;
        let t = format!("AQEAAAAAAwAAAVxD+BXY/{:04}==", self.next);
        self.tokens.push((
            t.clone(),
            SyncToken {
                messages,
                time,
                valid: true,
            },
        ));
        t
    }
}

const BIG_CONVERSATION: u64 = 8_031_152_018_338_945_839;

impl FakePlatform {
    fn sync_world(&self) -> std::sync::MutexGuard<'_, World> {
        self.lock()
    }

    /// A new message for extension `ext` (an id such as `OWNER_ID`), created now.
    pub fn add_message(
        &self,
        ext: &str,
        kind: &'static str,
        direction: &'static str,
    ) -> FakeMessage {
        let mut w = self.sync_world();
        let t = w.sync.tick();
        w.sync.next += 1;
        let m = FakeMessage {
            id: 5_475_920_000 + w.sync.next,
            ext: ext.into(),
            kind,
            direction,
            created: t,
            modified: t,
        };
        w.sync.messages.push(m.clone());
        m
    }

    /// A message stored now whose `creationTime` is `created`, earlier (a voicemail reaches
    /// the store when its recording ends, seconds after it was created).
    pub fn add_message_created(
        &self,
        ext: &str,
        kind: &'static str,
        direction: &'static str,
        created: SystemTime,
    ) -> FakeMessage {
        let mut m = self.add_message(ext, kind, direction);
        let ms = created
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        m.created = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let mut w = self.sync_world();
        let stored = w.sync.messages.iter_mut().find(|x| x.id == m.id).unwrap();
        stored.created = m.created;
        m
    }

    /// Marks a message read now: Message Sync's ISync returns it again.
    pub fn touch_message(&self, id: u64) {
        let mut w = self.sync_world();
        let t = w.sync.tick();
        let m = w.sync.messages.iter_mut().find(|m| m.id == id).unwrap();
        m.modified = t;
    }

    /// A call of extension `ext` that ended now and is in the call log.
    pub fn add_call(&self, ext: &str) -> FakeCall {
        let mut w = self.sync_world();
        let t = w.sync.tick();
        w.sync.next += 1;
        let n = w.sync.next;
        let c = FakeCall {
            id: format!("IVWtSyis{n:07}MEA"),
            session_id: format!("{}", 425_008_160_000 + n),
            telephony_session_id: format!("s-a6abd24ca677z{n:08x}"),
            ext: ext.into(),
            start: t - Duration::from_secs(30),
            logged: t,
        };
        w.sync.calls.push(c.clone());
        c
    }

    /// The platform forgets every sync token it gave (an expired token, a reset call log).
    pub fn invalidate_sync_tokens(&self) {
        for (_, t) in &mut self.sync_world().sync.tokens {
            t.valid = false;
        }
    }

    /// The app lacks `permission` (e.g. `ReadCallLog`) from now on.
    pub fn deny(&self, permission: &str) {
        self.sync_world().sync.denied.push(permission.into());
    }

    /// Requests that broke the OpenAPI subset.
    pub fn sync_violations(&self) -> Vec<String> {
        self.sync_world().sync.violations.clone()
    }

    /// The message record exactly as the message store sends it (compact).
    pub fn message_json(&self, id: u64) -> String {
        let w = self.sync_world();
        let m = w.sync.messages.iter().find(|m| m.id == id).unwrap();
        message_json(&self.url, m).to_string()
    }

    /// The call-log record exactly as the call log sends it (compact).
    pub fn call_json(&self, id: &str) -> String {
        let w = self.sync_world();
        let c = w.sync.calls.iter().find(|c| c.id == id).unwrap();
        call_json(&self.url, c).to_string()
    }

    /// Delivers a notification with `body` for `event`, as the platform does; the receiver's
    /// status.
    pub fn deliver_body(&self, id: &str, event: &str, body: Value) -> u16 {
        let sub = self
            .subscriptions()
            .into_iter()
            .find(|s| s.id == id)
            .unwrap();
        let n = {
            let mut w = self.lock();
            w.next += 1;
            w.next
        };
        let raw = json!({
            "uuid": format!("{id}-n{n}"),
            "event": event,
            "timestamp": rfc3339(SystemTime::now()),
            "subscriptionId": id,
            "ownerId": OWNER_ID,
            "body": body,
        })
        .to_string();
        let mut headers = vec![(
            "Content-Type".to_string(),
            "application/json; charset=UTF-8".to_string(),
        )];
        if let Some(t) = &sub.verification_token {
            headers.push(("Verification-Token".into(), t.clone()));
        }
        post(
            &sub.address,
            &headers,
            raw.as_bytes(),
            Duration::from_secs(10),
        )
        .map(|r| r.status)
        .unwrap_or(0)
    }

    /// The instant-SMS notification body for `m`, as the platform pushes it (id a string).
    pub fn instant_body(m: &FakeMessage) -> Value {
        json!({"id": m.id.to_string(), "type": m.kind, "direction": m.direction,
               "creationTime": rfc3339(m.created), "lastModifiedTime": rfc3339(m.modified),
               "from": {"phoneNumber": "+14155550123"}, "to": [{"phoneNumber": "+16505550100"}],
               "readStatus": "Unread", "availability": "Alive", "messageStatus": "Received",
               "conversationId": BIG_CONVERSATION.to_string()})
    }

    /// A telephony-session notification body for `c` (the call's end).
    pub fn session_body(c: &FakeCall) -> Value {
        json!({"sequence": 7, "sessionId": c.session_id, "telephonySessionId": c.telephony_session_id,
               "serverId": "10.13.22.28.TAM", "eventTime": rfc3339(c.logged),
               "parties": [{"extensionId": c.ext, "direction": "Inbound",
                            "status": {"code": "Disconnected", "rcc": false}}],
               "origin": {"type": "Call"}})
    }
}

fn message_json(base: &str, m: &FakeMessage) -> Value {
    let uri = format!(
        "{base}/restapi/v1.0/account/{ACCOUNT_ID}/extension/{}/message-store/{}",
        m.ext, m.id
    );
    let attachment = match m.kind {
        "VoiceMail" => {
            json!({"id": m.id, "uri": format!("{uri}/content/{}", m.id), "type": "AudioRecording",
                             "contentType": "audio/x-wav", "vmDuration": 42})
        }
        "Fax" => {
            json!({"id": m.id, "uri": format!("{uri}/content/{}", m.id), "type": "RenderedDocument",
                       "contentType": "application/pdf"})
        }
        _ => json!({"id": m.id, "uri": format!("{uri}/content/{}", m.id), "type": "Text",
                    "contentType": "text/plain"}),
    };
    json!({
        "uri": uri,
        "id": m.id,
        "to": [{"phoneNumber": "+16505550100", "name": "Grüße ☎ \"Desk\""}],
        "from": {"phoneNumber": "+14155550123", "location": "Oakdale, CA"},
        "type": m.kind,
        "creationTime": rfc3339(m.created),
        "readStatus": if m.modified > m.created { "Read" } else { "Unread" },
        "priority": "Normal",
        "attachments": [attachment],
        "direction": m.direction,
        "availability": "Alive",
        "subject": format!("missed {}\n line two", m.id),
        "messageStatus": "Received",
        "conversationId": BIG_CONVERSATION,
        "conversation": {"id": BIG_CONVERSATION.to_string()},
        "lastModifiedTime": rfc3339(m.modified),
    })
}

fn call_json(base: &str, c: &FakeCall) -> Value {
    json!({
        "uri": format!("{base}/restapi/v1.0/account/{ACCOUNT_ID}/call-log/{}?view=Simple", c.id),
        "id": c.id,
        "sessionId": c.session_id,
        "telephonySessionId": c.telephony_session_id,
        "startTime": rfc3339(c.start),
        "duration": 30,
        "durationMs": 30_125,
        "type": "Voice",
        "direction": "Inbound",
        "action": "Phone Call",
        "result": "Missed",
        "to": {"phoneNumber": "+16505550100", "name": "Front desk"},
        "from": {"phoneNumber": "+14155550123", "location": "Oakdale, CA"},
        "extension": {"uri": format!("{base}/restapi/v1.0/account/{ACCOUNT_ID}/extension/{}", c.ext),
                      "id": c.ext.parse::<u64>().unwrap_or(0)},
    })
}

fn pretty(status: u16, v: &Value) -> Answer {
    Answer {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::to_vec_pretty(v).unwrap(),
    }
}

/// The OpenAPI subset of the sync endpoints, loaded once.
fn sync_spec() -> &'static Value {
    static SPEC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| {
        let path = crate::support::reference().join("sync/ringcentral-openapi-sync-subset.json");
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&raw).unwrap()
    })
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut at = spec;
            for part in r.trim_start_matches("#/").split('/') {
                at = &at[part];
            }
            resolve(spec, at)
        }
        None => v,
    }
}

/// Checks a value against a parameter schema: enums, integers and their bounds, booleans, dates.
fn value_ok(spec: &Value, schema: &Value, v: &str) -> bool {
    let schema = resolve(spec, schema);
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        return alts.iter().any(|a| value_ok(spec, a, v));
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        return e.iter().any(|x| x.as_str() == Some(v));
    }
    match schema["type"].as_str() {
        Some("array") => value_ok(spec, &schema["items"], v),
        Some("integer") => v.parse::<i64>().is_ok_and(|n| {
            schema["minimum"].as_i64().is_none_or(|m| n >= m)
                && schema["maximum"].as_i64().is_none_or(|m| n <= m)
        }),
        Some("boolean") => v == "true" || v == "false",
        Some("string") if schema["format"] == "date-time" => {
            humantime::parse_rfc3339_weak(v).is_ok()
        }
        _ => true,
    }
}

/// What is wrong with `req` per the subset's operation at `template`, if anything.
fn spec_violation(template: &str, req: &Recorded) -> Option<String> {
    let spec = sync_spec();
    let op = &spec["paths"][template]["get"];
    let params: Vec<&Value> = op["parameters"]
        .as_array()?
        .iter()
        .map(|p| resolve(spec, p))
        .filter(|p| p["in"] == "query")
        .collect();
    let q = form(&req.query);
    for (k, v) in &q {
        let Some(p) = params.iter().find(|p| p["name"] == k.as_str()) else {
            return Some(format!(
                "{}: unknown query parameter {k}",
                op["operationId"]
            ));
        };
        let schema = resolve(spec, &p["schema"]);
        if q.iter().filter(|(n, _)| n == k).count() > 1 && schema["type"] != "array" {
            return Some(format!("{}: {k} given twice", op["operationId"]));
        }
        if !value_ok(spec, schema, v) {
            return Some(format!(
                "{}: {k}={v} does not fit the schema",
                op["operationId"]
            ));
        }
    }
    None
}

fn in_window(t: SystemTime, from: Option<SystemTime>, to: Option<SystemTime>) -> bool {
    from.is_none_or(|f| t >= f) && to.is_none_or(|x| t <= x)
}

fn param_time(q: &[(String, String)], k: &str) -> Option<SystemTime> {
    get(q, k).and_then(|v| humantime::parse_rfc3339_weak(v).ok())
}

/// One page of `all` (newest first) with the platform's `navigation` and `paging`.
fn page_of(base: &str, req: &Recorded, all: Vec<Value>) -> Value {
    let q = form(&req.query);
    let page: usize = get(&q, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let per_page: usize = get(&q, "perPage")
        .and_then(|p| p.parse().ok())
        .unwrap_or(100);
    let start = (page - 1) * per_page;
    let records: Vec<Value> = all.iter().skip(start).take(per_page).cloned().collect();
    let link = |n: usize| {
        let mut parts: Vec<String> = q
            .iter()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.push(format!("page={n}"));
        json!({"uri": format!("{base}{}?{}", req.path, parts.join("&"))})
    };
    let mut navigation = json!({"firstPage": link(1)});
    if start + per_page < all.len() {
        navigation["nextPage"] = link(page + 1);
    }
    json!({"uri": format!("{base}{}?{}", req.path, req.query), "records": records,
           "navigation": navigation, "paging": {"page": page, "perPage": per_page}})
}

fn sync_route(world: &Mutex<World>, base: &str, req: &Recorded) -> Option<Answer> {
    let rest = req.path.strip_prefix("/restapi/v1.0/account/")?;
    let (account, rest) = rest.split_once('/')?;
    if req.method != "GET" || (account != ACCOUNT_ID && account != "~") {
        return None;
    }
    let (template, ext, what) = match rest.strip_prefix("extension/") {
        Some(r) => {
            let (ext, what) = r.split_once('/')?;
            let ext = if ext == "~" { OWNER_ID } else { ext };
            let t = match what {
                "message-sync" => {
                    "/restapi/v1.0/account/{accountId}/extension/{extensionId}/message-sync"
                }
                "message-store" => {
                    "/restapi/v1.0/account/{accountId}/extension/{extensionId}/message-store"
                }
                _ => return None,
            };
            (t, Some(ext.to_string()), what)
        }
        None => match rest {
            "call-log-sync" => (
                "/restapi/v1.0/account/{accountId}/call-log-sync",
                None,
                rest,
            ),
            "call-log" => ("/restapi/v1.0/account/{accountId}/call-log", None, rest),
            _ => return None,
        },
    };
    let mut w = world.lock().unwrap();
    if let Some(v) = spec_violation(template, req) {
        w.sync.violations.push(v.clone());
        return Some(Answer::error(400, "CMN-101", &v));
    }
    let permission = if ext.is_some() {
        "ReadMessages"
    } else {
        "ReadCallLog"
    };
    if w.sync.denied.iter().any(|d| d == permission) {
        let message = format!(
            "In order to call this API endpoint, application needs to have [{permission}] permission"
        );
        return Some(Answer::json(
            403,
            json!({"errorCode": "InsufficientPermissions", "message": message,
                   "errors": [{"errorCode": "CMN-401", "message": message, "permissionName": permission}]}),
        ));
    }
    let q = form(&req.query);
    let now = w.sync.tick();
    let (from, to) = (param_time(&q, "dateFrom"), param_time(&q, "dateTo"));
    let types: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "messageType")
        .map(|(_, v)| v.clone())
        .collect();
    let sync_type = get(&q, "syncType").unwrap_or("FSync").to_string();
    let token = get(&q, "syncToken").map(str::to_string);
    let count: Option<usize> = get(&q, "recordCount").and_then(|c| c.parse().ok());
    let overlap = Duration::from_secs(5);
    let answer = match (what, ext) {
        ("message-sync", Some(ext)) => {
            let mut msgs: Vec<FakeMessage> = w
                .sync
                .messages
                .iter()
                .filter(|m| m.ext == ext)
                .cloned()
                .collect();
            msgs.sort_by_key(|m| std::cmp::Reverse(m.created));
            if sync_type == "ISync" {
                let t = token.and_then(|t| {
                    w.sync
                        .tokens
                        .iter()
                        .find(|(x, _)| *x == t)
                        .map(|(_, v)| v.clone())
                });
                let Some(t) =
                    t.filter(|t| t.valid && t.messages.as_ref().is_some_and(|(e, _)| *e == ext))
                else {
                    return Some(Answer::error(
                        400,
                        "MSG-333",
                        "Invalid message synchronisation request: full synchronization is required",
                    ));
                };
                let kinds = t.messages.clone().unwrap().1;
                let records: Vec<Value> = msgs
                    .iter()
                    .filter(|m| kinds.is_empty() || kinds.iter().any(|k| k == m.kind))
                    .filter(|m| m.modified + overlap >= t.time)
                    .map(|m| message_json(base, m))
                    .collect();
                let tok = w.sync.token(Some((ext, kinds)), now);
                json!({"uri": format!("{base}{}?{}", req.path, req.query), "records": records,
                       "syncInfo": {"syncType": "ISync", "syncToken": tok, "syncTime": rfc3339(now)}})
            } else {
                let from = from.or(Some(now - Duration::from_secs(86_400)));
                let all: Vec<&FakeMessage> = msgs
                    .iter()
                    .filter(|m| types.is_empty() || types.iter().any(|k| k == m.kind))
                    .filter(|m| in_window(m.created, from, to))
                    .collect();
                let n = count.unwrap_or(250);
                let records: Vec<Value> =
                    all.iter().take(n).map(|m| message_json(base, m)).collect();
                let tok = w.sync.token(Some((ext, types)), now);
                json!({"uri": format!("{base}{}?{}", req.path, req.query), "records": records,
                       "syncInfo": {"syncType": "FSync", "syncToken": tok, "syncTime": rfc3339(now),
                                    "olderRecordsExist": all.len() > n}})
            }
        }
        ("message-store", Some(ext)) => {
            let from = from.or(Some(now - Duration::from_secs(86_400)));
            let mut msgs: Vec<&FakeMessage> = w
                .sync
                .messages
                .iter()
                .filter(|m| m.ext == ext && (types.is_empty() || types.iter().any(|k| k == m.kind)))
                .filter(|m| in_window(m.created, from, to))
                .collect();
            msgs.sort_by_key(|m| std::cmp::Reverse(m.created));
            page_of(
                base,
                req,
                msgs.iter().map(|m| message_json(base, m)).collect(),
            )
        }
        ("call-log-sync", None) => {
            let mut calls: Vec<FakeCall> = w.sync.calls.clone();
            calls.sort_by_key(|c| std::cmp::Reverse(c.start));
            if sync_type == "ISync" {
                let t = token.and_then(|t| {
                    w.sync
                        .tokens
                        .iter()
                        .find(|(x, _)| *x == t)
                        .map(|(_, v)| v.clone())
                });
                let Some(t) = t.filter(|t| t.valid && t.messages.is_none()) else {
                    return Some(Answer::error(
                        400,
                        "CLG-101",
                        "Parameter [syncToken] is invalid [Sync token expired, call log was reset]",
                    ));
                };
                let records: Vec<Value> = calls
                    .iter()
                    .filter(|c| c.logged + overlap >= t.time)
                    .map(|c| call_json(base, c))
                    .collect();
                if records.len() > 250 {
                    let message = "Parameter [syncToken] is invalid [max sync record number limit is exceeded]";
                    return Some(Answer::json(
                        400,
                        json!({"errorCode": "CMN-101", "message": message,
                               "errors": [{"errorCode": "CMN-101", "message": message, "parameterName": "syncToken"}]}),
                    ));
                }
                let tok = w.sync.token(None, now);
                json!({"uri": format!("{base}{}?{}", req.path, req.query), "records": records,
                       "syncInfo": {"syncType": "ISync", "syncToken": tok, "syncTime": rfc3339(now)}})
            } else {
                let Some(n) = count.filter(|n| *n <= 250) else {
                    return Some(Answer::error(
                        400,
                        "CMN-101",
                        "Parameter [recordCount] value is invalid",
                    ));
                };
                let records: Vec<Value> = calls
                    .iter()
                    .filter(|c| in_window(c.start, from, None))
                    .take(n)
                    .map(|c| call_json(base, c))
                    .collect();
                let tok = w.sync.token(None, now);
                json!({"uri": format!("{base}{}?{}", req.path, req.query), "records": records,
                       "syncInfo": {"syncType": "FSync", "syncToken": tok, "syncTime": rfc3339(now)}})
            }
        }
        ("call-log", None) => {
            let from = from.or(Some(now - Duration::from_secs(86_400)));
            let mut calls: Vec<&FakeCall> = w
                .sync
                .calls
                .iter()
                .filter(|c| in_window(c.start, from, to))
                .collect();
            calls.sort_by_key(|c| std::cmp::Reverse(c.start));
            page_of(
                base,
                req,
                calls.iter().map(|c| call_json(base, c)).collect(),
            )
        }
        _ => return None,
    };
    Some(pretty(200, &answer))
}
