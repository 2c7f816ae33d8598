//! A fake RingCentral for `ringhook connect`: the REST side it needs (the token endpoint with the
//! JWT and refresh_token grants, revoke, `POST /restapi/oauth/wstoken` with single-use tokens,
//! the subscription list catch-up reads, the extension list `{extensionId}` expands over) and a WebSocket Gateway on the same loopback port,
//! following `tests/data/websocket/`: `ConnectionDetails` first (with `wsc`), the subscription
//! `ClientRequest` and its answer (`WSG-SubscriptionId`), `ServerNotification`s, `Heartbeat`
//! answers, the idle timeout (`WSG-902`, only app messages count, pings do not), the close when the
//! OAuth session's access token has expired, recovery with `wsc` (`Successful` with a resend of
//! the buffer plus already-delivered ones, the most recent `recoveryBufferSize` of them, or
//! `Failed`/`WSG-1005`), `WSG-400` for an unknown
//! `wsc`, and scripted 403/429 answers. Everything is journaled; no sleeps as assertions.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const CLIENT_ID: &str = "fake-ws-client-id";
pub const CLIENT_SECRET: &str = "fake-ws-client-secret-Qq2";
pub const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.fake-ws-jwt-Lm4";

/// How the gateway answers a recovery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    Successful,
    Failed,
}

#[derive(Default)]
struct WsSession {
    sub: Option<String>,
    /// Sent while no connection was there, to resend on recovery.
    buffer: Vec<String>,
    /// Delivered on a connection (the last few are resent on recovery too).
    sent: Vec<String>,
    /// When the connection went away (the window runs from here).
    lost_at: Option<Instant>,
    /// The OAuth session the connection belonged to.
    oauth: u64,
}

struct Live {
    stream: TcpStream,
    wsc: String,
    subscribed: bool,
}

pub struct World {
    pub journal: Vec<String>,
    /// access token → (OAuth session, expiry)
    access: HashMap<String, (u64, Instant)>,
    refresh: HashMap<String, u64>,
    pub logins: u64,
    pub refreshes: u64,
    pub revoked: Vec<String>,
    ws_tokens: HashMap<String, bool>,
    pub ws_token_calls: u64,
    /// When each wstoken request came.
    pub ws_token_times: Vec<Instant>,
    wstoken_script: VecDeque<(u16, Option<u64>)>,
    pub subscription_status: u16,
    sessions: HashMap<String, WsSession>,
    live: Option<Live>,
    pub connections: u64,
    pub heartbeats: u64,
    pub deleted: Vec<String>,
    pub created: Vec<String>,
    /// The event filters of each subscription request, in order.
    pub filters: Vec<Vec<String>>,
    /// The account's extension ids (the extension list; one page).
    pub extensions: Vec<String>,
    /// Queries of the extension list.
    pub extension_queries: Vec<String>,
    pub recovery: Recovery,
    pub idle_timeout: u64,
    pub absolute_timeout: u64,
    pub recovery_timeout: u64,
    /// `recoveryBufferSize`: a resend is the most recent this many notifications at most.
    pub recovery_buffer_size: usize,
    /// Fields of `ConnectionDetails`' body replaced as a hostile gateway would (any JSON).
    pub details_override: Vec<(String, Value)>,
    pub access_expires_in: u64,
    pub closes: Vec<String>,
    next: u64,
    /// The gateway's address the wstoken answer gives (`ws://…/ws`, or the TLS proxy's).
    ws_uri: String,
}

impl World {
    /// True while a client is connected.
    pub fn connected(&self) -> bool {
        self.live.is_some()
    }
}

pub struct FakeWsg {
    pub url: String,
    world: Arc<(Mutex<World>, Condvar)>,
}

/// Method, target, headers (lower-case names), body.
type Head = (String, String, Vec<(String, String)>, Vec<u8>);

fn read_head<R: BufRead>(r: &mut R) -> Option<Head> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((method, target, headers, body))
}

fn form(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace('+', " ")))
        .collect()
}

fn query(target: &str) -> HashMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| form(q))
        .unwrap_or_default()
}

fn respond(s: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &str) {
    let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Content-Type: application/json\r\n\r\n");
    out.push_str(body);
    let _ = s.write_all(out.as_bytes());
}

/// A server frame (unmasked).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Reads one client frame (masked): `(opcode, payload)`.
fn read_frame(s: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b)?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b)?;
        len = u64::from_be_bytes(b);
    }
    assert!(h[1] & 0x80 != 0, "client frames must be masked");
    let mut mask = [0u8; 4];
    s.read_exact(&mut mask)?;
    let mut p = vec![0; len as usize];
    s.read_exact(&mut p)?;
    for (i, b) in p.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok((h[0] & 0x0f, p))
}

fn accept_for(key: &str) -> String {
    use base64::Engine as _;
    let d = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

fn notification(body: &str) -> Vec<u8> {
    let uuid = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["uuid"].as_str().map(str::to_string))
        .unwrap_or_default();
    let text = format!(
        "[{{\"type\":\"ServerNotification\",\"messageId\":{},\"status\":200,\"headers\":{{\"RCRequestId\":\"r-{uuid}\"}}}},\n{body}\n]",
        json!(uuid)
    );
    frame(1, text.as_bytes())
}

impl FakeWsg {
    pub fn start() -> FakeWsg {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let world = Arc::new((
            Mutex::new(World {
                journal: vec![],
                access: HashMap::new(),
                refresh: HashMap::new(),
                logins: 0,
                refreshes: 0,
                revoked: vec![],
                ws_tokens: HashMap::new(),
                ws_token_calls: 0,
                ws_token_times: vec![],
                wstoken_script: VecDeque::new(),
                subscription_status: 200,
                sessions: HashMap::new(),
                live: None,
                connections: 0,
                heartbeats: 0,
                deleted: vec![],
                created: vec![],
                filters: vec![],
                extensions: vec!["2253168021".into()],
                extension_queries: vec![],
                recovery: Recovery::Successful,
                idle_timeout: 1800,
                absolute_timeout: 86400,
                recovery_timeout: 180,
                recovery_buffer_size: 100,
                details_override: vec![],
                access_expires_in: 3600,
                closes: vec![],
                next: 0,
                ws_uri: format!("{}/ws", url.replace("http://", "ws://")),
            }),
            Condvar::new(),
        ));
        let w = world.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                let w = w.clone();
                std::thread::spawn(move || serve(s, &w));
            }
        });
        FakeWsg { url, world }
    }

    /// The same, with the gateway behind TLS (`wss://localhost:PORT/ws`, the certificate from
    /// `ca`): a proxy that terminates TLS and passes the bytes on to the plain gateway.
    pub fn start_tls(ca: &crate::support::TestCa) -> FakeWsg {
        let fake = FakeWsg::start();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        fake.with(|w| w.ws_uri = format!("wss://localhost:{port}/ws"));
        let config = ca.server_config();
        let plain = fake.url.trim_start_matches("http://").to_string();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                let (config, plain) = (config.clone(), plain.clone());
                std::thread::spawn(move || tls_proxy(s, config, &plain));
            }
        });
        fake
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut w = self.world.0.lock().unwrap();
        let r = f(&mut w);
        self.world.1.notify_all();
        r
    }

    /// Waits until `done` holds of the world (bounded).
    pub fn wait(&self, what: &str, done: impl Fn(&World) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut w = self.world.0.lock().unwrap();
        while !done(&w) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "fake WSG: not within 30 s: {what}");
            w = self.world.1.wait_timeout(w, left).unwrap().0;
        }
    }

    /// The next wstoken answers `status` (429 with `Retry-After`).
    pub fn script_wstoken(&self, status: u16, retry_after: Option<u64>) {
        self.with(|w| w.wstoken_script.push_back((status, retry_after)));
    }

    /// True while a connection is subscribed.
    pub fn subscribed(&self) -> bool {
        self.with(|w| w.live.as_ref().is_some_and(|l| l.subscribed))
    }

    /// Sends a notification: on the live subscribed connection, or into the session's buffer
    /// while none is connected (as the gateway keeps them for recovery).
    pub fn notify(&self, body: &str) {
        self.with(|w| {
            if let Some(l) = &mut w.live {
                if l.subscribed && l.stream.write_all(&notification(body)).is_ok() {
                    let wsc = l.wsc.clone();
                    w.sessions
                        .get_mut(&wsc)
                        .unwrap()
                        .sent
                        .push(body.to_string());
                    return;
                }
            }
            for s in w.sessions.values_mut() {
                if s.lost_at.is_some() && s.sub.is_some() {
                    s.buffer.push(body.to_string());
                }
            }
        });
    }

    /// Sends `text` as one text frame on the live connection, whatever it is.
    pub fn send_raw(&self, text: &str) {
        self.with(|w| {
            if let Some(l) = &mut w.live {
                let _ = l.stream.write_all(&frame(1, text.as_bytes()));
            }
        });
    }

    /// Drops the live connection without a close frame (a network loss).
    pub fn drop_connection(&self) {
        self.with(|w| {
            if let Some(l) = w.live.take() {
                let _ = l.stream.shutdown(Shutdown::Both);
                if let Some(s) = w.sessions.get_mut(&l.wsc) {
                    s.lost_at = Some(Instant::now());
                }
            }
        });
    }

    /// Sends an `Error` with `code` and closes, as the gateway does on its timeouts.
    pub fn close_with(&self, code: &str) {
        self.with(|w| close_with(w, code));
    }
}

fn close_with(w: &mut World, code: &str) {
    if let Some(mut l) = w.live.take() {
        let msg = json!([{"type": "Error", "messageId": "e", "status": 400},
                         {"errorCode": code, "message": "closed by the fake"}]);
        let _ = l.stream.write_all(&frame(1, msg.to_string().as_bytes()));
        let _ = l.stream.write_all(&frame(8, &1000u16.to_be_bytes()));
        let _ = l.stream.shutdown(Shutdown::Both);
        if let Some(s) = w.sessions.get_mut(&l.wsc) {
            s.lost_at = Some(Instant::now());
        }
        w.closes.push(code.to_string());
    }
}

/// Terminates TLS on `s` and relays both ways to the plain gateway at `plain`.
fn tls_proxy(s: TcpStream, config: Arc<rustls::ServerConfig>, plain: &str) {
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, s);
    let Ok(mut back) = TcpStream::connect(plain) else {
        return;
    };
    let tick = Some(Duration::from_millis(5));
    tls.sock.set_read_timeout(tick).unwrap();
    back.set_read_timeout(tick).unwrap();
    let mut buf = [0u8; 16384];
    let idle = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if back.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
        match back.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
    }
}

fn serve(s: TcpStream, world: &Arc<(Mutex<World>, Condvar)>) {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut s = s;
    while let Some((method, target, headers, body)) = read_head(&mut reader) {
        let path = target.split('?').next().unwrap_or("").to_string();
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = String::from_utf8_lossy(&body).into_owned();
        let (lock, cv) = &**world;
        let mut w = lock.lock().unwrap();
        w.journal.push(format!("{method} {path}"));
        cv.notify_all();
        if path == "/ws" {
            drop(w);
            return websocket(s, reader, &target, header("sec-websocket-key"), world);
        }
        let bearer =
            header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_string));
        let bearer_ok = bearer
            .as_ref()
            .and_then(|b| w.access.get(b))
            .is_some_and(|(_, until)| Instant::now() < *until);
        match (method.as_str(), path.as_str()) {
            ("POST", "/restapi/oauth/token") => {
                let f = form(&body);
                let session = match f.get("grant_type").map(String::as_str) {
                    Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                        if f.get("assertion").map(String::as_str) == Some(JWT) =>
                    {
                        w.logins += 1;
                        w.next += 1;
                        Some(w.next)
                    }
                    Some("refresh_token") => {
                        let r = f.get("refresh_token").cloned().unwrap_or_default();
                        let s = w.refresh.remove(&r);
                        if s.is_some() {
                            w.refreshes += 1;
                        }
                        s
                    }
                    _ => None,
                };
                let Some(session) = session else {
                    respond(
                        &mut s,
                        400,
                        &[],
                        r#"{"error":"invalid_grant","error_description":"bad grant"}"#,
                    );
                    continue;
                };
                w.next += 1;
                let access = format!("acc-{session}-{}", w.next);
                let refresh = format!("ref-{session}-{}", w.next);
                let exp = w.access_expires_in;
                w.access.insert(
                    access.clone(),
                    (session, Instant::now() + Duration::from_secs(exp)),
                );
                w.refresh.insert(refresh.clone(), session);
                let a = json!({"access_token": access, "token_type": "bearer", "expires_in": exp,
                               "refresh_token": refresh, "refresh_token_expires_in": 604800,
                               "owner_id": "2253168021"});
                respond(&mut s, 200, &[], &a.to_string());
            }
            ("POST", "/restapi/oauth/revoke") => {
                let f = form(&body);
                if let Some(t) = f.get("token") {
                    w.revoked.push(t.clone());
                    if let Some((sess, _)) = w.access.remove(t) {
                        w.access.retain(|_, (x, _)| *x != sess);
                        w.refresh.retain(|_, x| *x != sess);
                    }
                }
                respond(&mut s, 200, &[], "");
            }
            ("POST", "/restapi/oauth/wstoken") => {
                w.ws_token_calls += 1;
                w.ws_token_times.push(Instant::now());
                if let Some((st, ra)) = w.wstoken_script.pop_front() {
                    let mut h = vec![];
                    if let Some(r) = ra {
                        h.push(("Retry-After", r.to_string()));
                    }
                    let code = if st == 403 {
                        "InsufficientPermissions"
                    } else {
                        "CMN-301"
                    };
                    respond(
                        &mut s,
                        st,
                        &h,
                        &json!({"errorCode": code, "message": "scripted"}).to_string(),
                    );
                    continue;
                }
                if !bearer_ok {
                    respond(
                        &mut s,
                        401,
                        &[],
                        r#"{"errorCode":"TokenInvalid","message":"Access token is invalid"}"#,
                    );
                    continue;
                }
                w.next += 1;
                let t = format!("wst-{}-{}", w.access[bearer.as_ref().unwrap()].0, w.next);
                w.ws_tokens.insert(t.clone(), false);
                let a = json!({"uri": w.ws_uri, "ws_access_token": t, "expires_in": 60});
                respond(&mut s, 200, &[], &a.to_string());
            }
            ("GET", "/restapi/v1.0/account/~/extension") => {
                if !bearer_ok {
                    respond(
                        &mut s,
                        401,
                        &[],
                        r#"{"errorCode":"TokenInvalid","message":"Access token is invalid"}"#,
                    );
                    continue;
                }
                w.extension_queries
                    .push(target.split_once('?').map(|(_, q)| q).unwrap_or("").into());
                let records: Vec<Value> = w
                    .extensions
                    .iter()
                    .map(|id| json!({"id": id.parse::<u64>().unwrap(), "type": "User", "status": "Enabled"}))
                    .collect();
                let page = json!({"records": records, "paging": {"page": 1},
                                  "navigation": {"firstPage": {"uri": "x"}}});
                respond(&mut s, 200, &[], &page.to_string());
            }
            ("GET", "/restapi/v1.0/subscription") => {
                let records: Vec<Value> = w
                    .sessions
                    .values()
                    .filter_map(|x| x.sub.clone())
                    .map(|id| json!({"id": id, "status": "Active", "eventFilters": ["/restapi/v1.0/account/37439510/extension/2253168021/message-store/instant?type=SMS"], "deliveryMode": {"transportType": "WebSocket"}}))
                    .collect();
                respond(&mut s, 200, &[], &json!({"records": records}).to_string());
            }
            _ => respond(
                &mut s,
                404,
                &[],
                r#"{"errorCode":"CMN-102","message":"Resource not found"}"#,
            ),
        }
    }
}

fn websocket(
    mut s: TcpStream,
    _reader: BufReader<TcpStream>,
    target: &str,
    key: Option<String>,
    world: &Arc<(Mutex<World>, Condvar)>,
) {
    let q = query(target);
    let (lock, cv) = &**world;
    let mut w = lock.lock().unwrap();
    let token = q.get("access_token").cloned().unwrap_or_default();
    let oauth = token
        .strip_prefix("wst-")
        .and_then(|t| t.split('-').next())
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(0);
    match w.ws_tokens.get_mut(&token) {
        Some(used @ false) => *used = true,
        _ => {
            respond(
                &mut s,
                401,
                &[],
                r#"{"errorCode":"WSG-401","message":"bad token"}"#,
            );
            return;
        }
    }
    let Some(key) = key else { return };
    let _ = s.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_for(&key)
        )
        .as_bytes(),
    );
    w.connections += 1;
    // Recovery.
    let mut state = None;
    let mut resend = vec![];
    let (window, mode) = (Duration::from_secs(w.recovery_timeout), w.recovery);
    if let Some(wsc) = q.get("wsc") {
        let Some(sess) = w.sessions.get_mut(wsc) else {
            let e = json!([{"type": "Error", "messageId": "e", "status": 400},
                           {"errorCode": "WSG-400", "message": "Malformed WebSocket session context token"}]);
            let _ = s.write_all(&frame(1, e.to_string().as_bytes()));
            let _ = s.shutdown(Shutdown::Both);
            return;
        };
        let in_window = sess.lost_at.is_some_and(|t| t.elapsed() < window);
        let ok = mode == Recovery::Successful && in_window && sess.oauth == oauth;
        if ok {
            // The buffer, and (as a resend may) the last two already delivered.
            let n = sess.sent.len();
            resend.extend(sess.sent[n.saturating_sub(2)..].iter().cloned());
            resend.append(&mut sess.buffer);
            // "The client will receive only the most recent events."
            let keep = w.recovery_buffer_size;
            let sess = w.sessions.get_mut(wsc).unwrap();
            resend.drain(..resend.len().saturating_sub(keep));
            sess.lost_at = None;
            state = Some((wsc.clone(), true));
        } else {
            sess.buffer.clear();
            state = Some((wsc.clone(), false));
        }
    }
    let (wsc, details) = match state {
        Some((wsc, true)) => (wsc, json!({"recoveryState": "Successful"})),
        Some((_, false)) => {
            w.next += 1;
            (
                format!("wsc-{}", w.next),
                json!({"recoveryState": "Failed", "recoveryErrorCode": "WSG-1005"}),
            )
        }
        None => {
            w.next += 1;
            (format!("wsc-{}", w.next), json!({}))
        }
    };
    if !w.sessions.contains_key(&wsc) {
        w.sessions.insert(
            wsc.clone(),
            WsSession {
                oauth,
                ..Default::default()
            },
        );
    }
    let mut d = json!({"creationTime": "2026-12-07T00:00:00.000+0000", "maxConnectionsPerSession": 50,
        "recoveryBufferSize": w.recovery_buffer_size, "recoveryTimeout": w.recovery_timeout, "idleTimeout": w.idle_timeout,
        "absoluteTimeout": w.absolute_timeout, "maxActiveRequests": 10});
    for (k, v) in details.as_object().unwrap() {
        d[k] = v.clone();
    }
    for (k, v) in &w.details_override {
        d[k] = v.clone();
    }
    let cd = json!([{"type": "ConnectionDetails", "messageId": "cd", "status": 200,
                     "wsc": {"token": wsc, "sequence": 1}, "headers": {"RCRequestId": "x"}}, d]);
    let _ = s.write_all(&frame(1, cd.to_string().as_bytes()));
    let recovered = resend.len()
        + usize::from(matches!(details.get("recoveryState"), Some(v) if v == "Successful"));
    for body in &resend {
        let _ = s.write_all(&notification(body));
        w.sessions.get_mut(&wsc).unwrap().sent.push(body.clone());
    }
    w.live = Some(Live {
        stream: s.try_clone().unwrap(),
        wsc: wsc.clone(),
        subscribed: recovered > 0,
    });
    cv.notify_all();
    let idle = Duration::from_secs(w.idle_timeout);
    let absolute = Duration::from_secs(w.absolute_timeout);
    drop(w);
    let started = Instant::now();
    let mut last_app = Instant::now();
    let mut rd = s.try_clone().unwrap();
    rd.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let mut chunk = [0u8; 8192];
        let got = rd.read(&mut chunk);
        let mut w = lock.lock().unwrap();
        let mine = w.live.as_ref().is_some_and(|l| l.wsc == wsc);
        if !mine {
            return;
        }
        match got {
            Ok(0) => {
                w.live = None;
                w.sessions.get_mut(&wsc).unwrap().lost_at = Some(Instant::now());
                cv.notify_all();
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                w.live = None;
                w.sessions.get_mut(&wsc).unwrap().lost_at = Some(Instant::now());
                cv.notify_all();
                return;
            }
        }
        // Whole frames only.
        while let Some(used) = whole_frame(&buf) {
            let (op, p) = read_frame(&mut &buf[..used]).unwrap();
            buf.drain(..used);
            match op {
                8 => {
                    let _ = s.write_all(&frame(8, &p));
                    w.live = None;
                    w.sessions.get_mut(&wsc).unwrap().lost_at = Some(Instant::now());
                    cv.notify_all();
                    return;
                }
                9 => {
                    let _ = s.write_all(&frame(10, &p));
                }
                1 => {
                    last_app = Instant::now();
                    let v: Value =
                        serde_json::from_slice(&p).expect("the client sends JSON arrays");
                    let meta = &v[0];
                    let id = meta["messageId"].clone();
                    match meta["type"].as_str() {
                        Some("Heartbeat") => {
                            w.heartbeats += 1;
                            let _ = s.write_all(&frame(
                                1,
                                json!([{"type": "Heartbeat", "messageId": id}])
                                    .to_string()
                                    .as_bytes(),
                            ));
                        }
                        Some("ClientRequest") => {
                            let m = meta["method"].as_str().unwrap_or("");
                            if m == "POST" {
                                let f = v[1]["eventFilters"].as_array().map(|a| {
                                    a.iter()
                                        .filter_map(|x| x.as_str().map(str::to_string))
                                        .collect()
                                });
                                w.filters.push(f.unwrap_or_default());
                            }
                            if m == "POST" && w.subscription_status == 200 {
                                assert_eq!(v[1]["deliveryMode"]["transportType"], "WebSocket");
                                w.next += 1;
                                let sub = format!("sub-{}", w.next);
                                w.sessions.get_mut(&wsc).unwrap().sub = Some(sub.clone());
                                w.created.push(sub.clone());
                                if let Some(l) = &mut w.live {
                                    l.subscribed = true;
                                }
                                let a = json!([{"type": "ClientRequest", "messageId": id, "status": 200,
                                    "headers": {"WSG-SubscriptionId": sub, "Content-Type": "application/json"}},
                                    {"id": sub, "status": "Active", "eventFilters": v[1]["eventFilters"],
                                     "expiresIn": 86399, "deliveryMode": {"transportType": "WebSocket", "encryption": false}}]);
                                let _ = s.write_all(&frame(1, a.to_string().as_bytes()));
                            } else if m == "POST" {
                                let st = w.subscription_status;
                                let a = json!([{"type": "ClientRequest", "messageId": id, "status": st},
                                    {"errorCode": "CMN-401", "message": "In order to call this API endpoint, application needs to have [WebSocketsSubscription] permission"}]);
                                let _ = s.write_all(&frame(1, a.to_string().as_bytes()));
                            } else if m == "DELETE" {
                                let sub = meta["path"]
                                    .as_str()
                                    .unwrap_or("")
                                    .rsplit('/')
                                    .next()
                                    .unwrap_or("")
                                    .to_string();
                                w.deleted.push(sub);
                                let a = json!([{"type": "ClientRequest", "messageId": id, "status": 204}]);
                                let _ = s.write_all(&frame(1, a.to_string().as_bytes()));
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
            cv.notify_all();
        }
        // The gateway's clocks: idle (app messages only), absolute, and the OAuth session.
        let oauth_alive = w
            .access
            .values()
            .any(|(sess, until)| *sess == oauth && Instant::now() < *until);
        if last_app.elapsed() > idle {
            close_with(&mut w, "WSG-902");
        } else if started.elapsed() > absolute {
            close_with(&mut w, "WSG-903");
        } else if !oauth_alive {
            close_with(&mut w, "OAUTH-EXPIRED");
        }
        cv.notify_all();
    }
}

fn whole_frame(b: &[u8]) -> Option<usize> {
    if b.len() < 2 {
        return None;
    }
    let (mut at, len) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
        127 if b.len() >= 10 => (
            10,
            u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
        ),
        126 | 127 => return None,
        n => (2, n as usize),
    };
    at += 4 + len;
    (b.len() >= at).then_some(at)
}
