//! `ringhook serve`: one thread, one `mio` poll over the listener, its connections and signals.
//!
//! Each connection is a small state machine around ureq-proto's Sans-IO server (`Reply`): bytes
//! in, request head out; body bytes in, body out; response head in, bytes out. The policy lives
//! in [`crate::http`]; this module owns sockets, clocks, limits and the group commit: every
//! notification completed in one loop turn is written and synced together, then acknowledged.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use ureq_proto::server::state::{ProvideResponse, RecvBody, RecvRequest};
use ureq_proto::server::{RecvRequestResult, Reply, SendResponseResult};

use crate::config::{Limits, LogTarget, ServeConfig};
use crate::error::Error;
use crate::event_log::{Commit, EventLog, Record};
use crate::http::{self as policy, Answer, Head, Outcome, Policy, Route};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Shared read/write scratch; also bounds how much one read takes from a socket.
const SCRATCH: usize = 32 * 1024;
/// While accepting fails for lack of file descriptors, how long to wait before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Runs the receiver until SIGTERM or SIGINT.
pub fn serve(cfg: ServeConfig) -> Result<(), Error> {
    let (log, log_desc) = open_log(&cfg)?;
    let listener = TcpListener::bind(cfg.listen).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => {
                "another process listens there: stop it or choose another --listen / PORT"
            }
            io::ErrorKind::PermissionDenied => {
                "ports below 1024 need privileges: use a port such as 3000"
            }
            _ => "check --listen / RINGHOOK_LISTEN / PORT",
        };
        Error::runtime_hint(format!("cannot listen on {}: {e}", cfg.listen), hint)
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::runtime(format!("cannot read the listening address: {e}")))?;

    match &cfg.token_origin {
        Some(origin) => info!("verification token from {origin}: notifications without it get 403"),
        None => warn!(
            "no verification token (WEBHOOK_VERIFICATION_TOKEN): any notification posted to {} is logged",
            cfg.path
        ),
    }
    info!(
        "events to {log_desc}; limits: body {} B, head {} B, request {:?}, idle {:?}, {} connections",
        cfg.limits.max_body,
        cfg.limits.max_header,
        cfg.limits.request_timeout,
        cfg.limits.idle_timeout,
        cfg.limits.max_connections
    );
    if let Some(h) = &cfg.health_path {
        info!("health check at GET {h}");
    }

    let mut server = Server::new(cfg, listener, log)
        .map_err(|e| Error::runtime(format!("cannot set up the event loop: {e}")))?;
    // Tests and scripts wait for this exact line: it means the socket accepts.
    info!("listening on http://{local}{}", server.policy.path);
    server
        .run()
        .map_err(|e| Error::runtime(format!("event loop failed: {e}")))?;
    Ok(())
}

fn open_log(cfg: &ServeConfig) -> Result<(EventLog, String), Error> {
    match &cfg.log {
        LogTarget::Stdout => Ok((EventLog::stdout(cfg.dedupe_window), "stdout".to_string())),
        LogTarget::File(path) => {
            let (log, rec) = EventLog::open(path, cfg.dedupe_window).map_err(|e| {
                Error::Config(format!(
                    "--log-file / RINGHOOK_LOG_FILE {}: {e}",
                    path.display()
                ))
            })?;
            if rec.torn_bytes > 0 {
                warn!(
                    "cut a torn last line of {} bytes from {} (a crash mid-write; it was never acknowledged)",
                    rec.torn_bytes,
                    path.display()
                );
            }
            Ok((
                log,
                format!(
                    "{} (fdatasync before each 200; {} recent uuids remembered)",
                    path.display(),
                    rec.seeded
                ),
            ))
        }
    }
}

/// What the loop counts, reported at shutdown.
#[derive(Debug, Default)]
struct Counters {
    connections: u64,
    handshakes: u64,
    logged: u64,
    duplicates: u64,
    rejected: u64,
    unavailable: u64,
    timeouts: u64,
    evicted: u64,
    /// Group commits (one write and one sync each).
    batches: u64,
}

enum Phase {
    /// Waiting for (the rest of) a request head.
    Head(Reply<RecvRequest>),
    /// Reading a body.
    Body {
        reply: Reply<RecvBody>,
        route: Route,
        body: Vec<u8>,
    },
    /// The record is in this turn's batch; the answer waits for the commit.
    Logging(Reply<ProvideResponse>),
    /// Sending the answer; then the next request, or close.
    Sending { close: bool },
    /// Transient, while a phase is being replaced.
    Taken,
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    phase: Phase,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    /// When the current request's first byte arrived; `None` between requests.
    started: Option<Instant>,
    last_activity: Instant,
    eof: bool,
}

/// What a connection needs after being driven.
enum Step {
    /// Waiting for the socket (or the commit).
    Wait,
    /// Close it.
    Close,
    /// Add this record to the batch.
    Queue(Record),
}

/// The parts of the server a connection needs while it is driven.
struct Ctx<'a> {
    policy: &'a Policy,
    limits: &'a Limits,
    log_healthy: bool,
    draining: bool,
    scratch: &'a mut [u8],
    counters: &'a mut Counters,
}

impl Conn {
    fn new(stream: TcpStream, peer: SocketAddr, now: Instant) -> Conn {
        Conn {
            stream,
            peer,
            phase: Phase::Head(new_reply()),
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            started: None,
            last_activity: now,
            eof: false,
        }
    }

    /// Reads what the socket has, up to `limit` buffered bytes. `Ok(false)`: nothing more now.
    fn fill(&mut self, scratch: &mut [u8], limit: usize) -> io::Result<bool> {
        let room = limit
            .saturating_sub(self.input.len())
            .clamp(1, scratch.len());
        loop {
            match self.stream.read(&mut scratch[..room]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.input.extend_from_slice(&scratch[..n]);
                    self.last_activity = Instant::now();
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes pending output. `Ok(true)` when all of it is out.
    fn flush(&mut self) -> io::Result<bool> {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.last_activity = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.output.clear();
        self.written = 0;
        Ok(true)
    }

    /// Queues `answer` through ureq-proto and moves to sending it.
    fn answer(
        &mut self,
        reply: Reply<ProvideResponse>,
        answer: &Answer,
        ctx: &mut Ctx,
        force_close: bool,
    ) {
        if let Some(reason) = &answer.reason {
            ctx.counters.rejected += 1;
            info!("{} {}: {reason}", self.peer, answer.status.as_u16());
        }
        let close = match write_answer(reply, answer, &mut self.output, ctx.scratch) {
            Ok(must_close) => must_close || force_close,
            Err(e) => {
                error!("cannot encode an answer for {}: {e}", self.peer);
                self.output
                    .extend_from_slice(&raw_answer(StatusCode::INTERNAL_SERVER_ERROR));
                true
            }
        };
        self.phase = Phase::Sending { close };
    }

    /// Answers outside ureq-proto's states (malformed or abandoned requests), then closes.
    fn answer_raw_and_close(&mut self, status: StatusCode, why: &str, ctx: &mut Ctx) {
        ctx.counters.rejected += 1;
        info!("{} {}: {why}", self.peer, status.as_u16());
        self.output.extend_from_slice(&raw_answer(status));
        self.phase = Phase::Sending { close: true };
    }

    /// Moves the connection as far as it can go without blocking.
    fn drive(&mut self, ctx: &mut Ctx) -> Step {
        loop {
            if self.written < self.output.len() || !self.output.is_empty() {
                match self.flush() {
                    Ok(true) => {}
                    Ok(false) => return Step::Wait,
                    Err(_) => return Step::Close,
                }
            }
            match std::mem::replace(&mut self.phase, Phase::Taken) {
                Phase::Taken => unreachable!("phase is always put back"),
                Phase::Logging(r) => {
                    self.phase = Phase::Logging(r);
                    return Step::Wait;
                }
                Phase::Sending { close } => {
                    if close || ctx.draining {
                        return Step::Close;
                    }
                    self.phase = Phase::Head(new_reply());
                    self.started = (!self.input.is_empty()).then(Instant::now);
                }
                Phase::Head(mut reply) => {
                    if !self.input.is_empty() {
                        self.started.get_or_insert_with(Instant::now);
                        match reply.try_request(&self.input) {
                            Err(ureq_proto::Error::HttpParseTooManyHeaders) => {
                                self.answer_raw_and_close(
                                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                                    "more than 128 request headers",
                                    ctx,
                                );
                                continue;
                            }
                            Err(e) => {
                                self.answer_raw_and_close(
                                    StatusCode::BAD_REQUEST,
                                    &format!("malformed request: {e}"),
                                    ctx,
                                );
                                continue;
                            }
                            Ok((used, Some(req))) if used <= ctx.limits.max_header => {
                                self.input.drain(..used);
                                if let Some(step) = self.on_head(reply, &req, ctx) {
                                    return step;
                                }
                                continue;
                            }
                            Ok(_) if self.input.len() > ctx.limits.max_header => {
                                self.answer_raw_and_close(
                                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                                    "request head exceeds --max-header",
                                    ctx,
                                );
                                continue;
                            }
                            Ok(_) => {}
                        }
                    }
                    self.phase = Phase::Head(reply);
                    if self.eof {
                        return Step::Close;
                    }
                    match self.fill(ctx.scratch, ctx.limits.max_header + 1) {
                        Ok(true) => {}
                        Ok(false) if self.eof => {}
                        Ok(false) => return Step::Wait,
                        Err(_) => return Step::Close,
                    }
                }
                Phase::Body {
                    mut reply,
                    route,
                    mut body,
                } => {
                    if !self.input.is_empty() {
                        let start = body.len();
                        body.resize(start + self.input.len(), 0);
                        match reply.read(&self.input, &mut body[start..]) {
                            Err(e) => {
                                self.answer_raw_and_close(
                                    StatusCode::BAD_REQUEST,
                                    &format!("malformed body: {e}"),
                                    ctx,
                                );
                                continue;
                            }
                            Ok((used_in, used_out)) => {
                                body.truncate(start + used_out);
                                self.input.drain(..used_in);
                            }
                        }
                        if body.len() as u64 > ctx.policy.max_body {
                            self.answer_raw_and_close(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "chunked body exceeds --max-body",
                                ctx,
                            );
                            continue;
                        }
                    }
                    if reply.is_ended() {
                        let reply = match reply.proceed() {
                            Ok(r) => r,
                            Err(e) => {
                                self.answer_raw_and_close(
                                    StatusCode::BAD_REQUEST,
                                    &e.to_string(),
                                    ctx,
                                );
                                continue;
                            }
                        };
                        if let Some(step) = self.complete(reply, route, &body, ctx) {
                            return step;
                        }
                        continue;
                    }
                    // A chunk-size line or trailer that never ends: refuse rather than buffer.
                    if self.input.len() > 64 * 1024 {
                        self.answer_raw_and_close(
                            StatusCode::BAD_REQUEST,
                            "unparsable chunked framing",
                            ctx,
                        );
                        continue;
                    }
                    self.phase = Phase::Body { reply, route, body };
                    if self.eof {
                        return Step::Close;
                    }
                    let limit = self.input.len() + SCRATCH;
                    match self.fill(ctx.scratch, limit) {
                        Ok(true) => {}
                        Ok(false) if self.eof => {}
                        Ok(false) => return Step::Wait,
                        Err(_) => return Step::Close,
                    }
                }
            }
        }
    }

    /// Acts on a parsed request head. `Some(step)` stops driving.
    fn on_head(
        &mut self,
        reply: Reply<RecvRequest>,
        req: &http::Request<()>,
        ctx: &mut Ctx,
    ) -> Option<Step> {
        let decision = policy::on_head(req, ctx.policy);
        let Some(mut next) = reply.proceed() else {
            self.answer_raw_and_close(StatusCode::BAD_REQUEST, "request cannot proceed", ctx);
            return None;
        };
        if let RecvRequestResult::RecvBody(body_reply) = next {
            next = end_unframed_body(body_reply, req);
        }
        match (decision, next) {
            (Head::Answer(a), RecvRequestResult::ProvideResponse(r)) => {
                self.answer(r, &a, ctx, false)
            }
            (Head::Answer(a), RecvRequestResult::Send100(r)) => {
                // The client waits for our word before sending the body: refuse it cleanly.
                self.answer(r.reject(), &a, ctx, true)
            }
            (Head::Answer(a), RecvRequestResult::RecvBody(_)) => {
                // A body is on its way that we will not read: answer and close.
                ctx.counters.rejected += 1;
                if let Some(reason) = &a.reason {
                    info!("{} {}: {reason}", self.peer, a.status.as_u16());
                }
                self.output.extend_from_slice(&raw_answer(a.status));
                self.phase = Phase::Sending { close: true };
            }
            (Head::Read(route), RecvRequestResult::ProvideResponse(r)) => {
                return self.complete(r, route, &[], ctx);
            }
            (Head::Read(route), RecvRequestResult::Send100(r)) => match r.accept(ctx.scratch) {
                Ok((n, reply)) => {
                    self.output.extend_from_slice(&ctx.scratch[..n]);
                    self.phase = Phase::Body {
                        reply,
                        route,
                        body: Vec::new(),
                    };
                }
                Err(e) => self.answer_raw_and_close(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &e.to_string(),
                    ctx,
                ),
            },
            (Head::Read(route), RecvRequestResult::RecvBody(reply)) => {
                self.phase = Phase::Body {
                    reply,
                    route,
                    body: Vec::new(),
                };
            }
        }
        None
    }

    /// Acts on a complete request. `Some(step)` stops driving.
    fn complete(
        &mut self,
        reply: Reply<ProvideResponse>,
        route: Route,
        body: &[u8],
        ctx: &mut Ctx,
    ) -> Option<Step> {
        let handshake = matches!(route, Route::Handshake(_));
        match policy::on_body(route, body, SystemTime::now(), ctx.log_healthy) {
            Outcome::Answer(a) => {
                if handshake {
                    ctx.counters.handshakes += 1;
                    info!("{} handshake answered", self.peer);
                }
                self.answer(reply, &a, ctx, false);
                None
            }
            Outcome::Record(rec) => {
                self.phase = Phase::Logging(reply);
                Some(Step::Queue(rec))
            }
        }
    }

    /// When this connection next needs attention from the clock, if ever.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match &self.phase {
            Phase::Logging(_) | Phase::Taken => None,
            _ if !self.output.is_empty() => Some(self.last_activity + limits.request_timeout),
            Phase::Sending { .. } => Some(self.last_activity + limits.request_timeout),
            _ => match self.started {
                Some(t) => Some(t + limits.request_timeout),
                None => Some(self.last_activity + limits.idle_timeout),
            },
        }
    }

    /// True between requests, with nothing buffered: safe to close at once.
    fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head(_)) && self.started.is_none() && self.output.is_empty()
    }
}

/// A request with neither `Content-Length` nor `Transfer-Encoding` has no body (RFC 9112 §6.3),
/// but ureq-proto 0.7 expects a chunked body after a bare `POST` (a client's view). Such a
/// request (`curl -X POST`, many health checkers) would otherwise wait for the request timeout:
/// end its "chunked" body with the terminating chunk ourselves.
fn end_unframed_body(mut reply: Reply<RecvBody>, req: &http::Request<()>) -> RecvRequestResult {
    let framed = req.headers().contains_key(http::header::CONTENT_LENGTH)
        || req.headers().contains_key(http::header::TRANSFER_ENCODING);
    if !framed && reply.read(b"0\r\n\r\n", &mut []).is_ok() && reply.is_ended() {
        if let Ok(r) = reply.proceed() {
            return RecvRequestResult::ProvideResponse(r);
        }
        unreachable!("an ended body always proceeds");
    }
    RecvRequestResult::RecvBody(reply)
}

fn new_reply() -> Reply<RecvRequest> {
    Reply::new().expect("a new Reply cannot fail")
}

/// Encodes `answer` with ureq-proto into `out`; returns whether the connection must close.
fn write_answer(
    reply: Reply<ProvideResponse>,
    answer: &Answer,
    out: &mut Vec<u8>,
    scratch: &mut [u8],
) -> Result<bool, ureq_proto::Error> {
    let mut reply = reply.provide(answer.to_response())?;
    while !reply.is_finished() {
        let n = reply.write(scratch)?;
        out.extend_from_slice(&scratch[..n]);
    }
    let cleanup = match reply.proceed() {
        SendResponseResult::Cleanup(c) => c,
        SendResponseResult::SendBody(mut b) => {
            let mut body = answer.body.as_bytes();
            loop {
                let (used, n) = b.write(body, scratch)?;
                out.extend_from_slice(&scratch[..n]);
                body = &body[used..];
                if b.is_finished() {
                    break;
                }
                if body.is_empty() && used == 0 && n == 0 {
                    // Content-length satisfied is_finished; anything else would loop forever.
                    break;
                }
            }
            b.proceed()
        }
    };
    Ok(cleanup.must_close_connection())
}

/// A complete answer that closes the connection, for requests ureq-proto cannot carry further.
fn raw_answer(status: StatusCode) -> Vec<u8> {
    format!(
        "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    )
    .into_bytes()
}

struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: Signals,
    conns: HashMap<usize, Conn>,
    next_id: usize,
    log: EventLog,
    policy: Policy,
    limits: Limits,
    scratch: Vec<u8>,
    counters: Counters,
    pending: Vec<(usize, Record)>,
    accept_paused_until: Option<Instant>,
    /// Set by SIGTERM/SIGINT: the time by which in-flight requests must be done.
    shutdown_by: Option<Instant>,
}

impl Server {
    fn new(cfg: ServeConfig, mut listener: TcpListener, log: EventLog) -> io::Result<Server> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener: Some(listener),
            signals,
            conns: HashMap::new(),
            next_id: FIRST_CONN,
            log,
            policy: Policy {
                path: cfg.path,
                health_path: cfg.health_path,
                token: cfg.token,
                max_body: cfg.limits.max_body,
            },
            limits: cfg.limits,
            scratch: vec![0; SCRATCH],
            counters: Counters::default(),
            pending: Vec::new(),
            accept_paused_until: None,
            shutdown_by: None,
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.sweep(Instant::now());
            if let Some(by) = self.shutdown_by {
                if self.conns.is_empty() || Instant::now() >= by {
                    break;
                }
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    SIGNALS => self.on_signals(),
                    Token(id) => self.drive(id),
                }
            }
            if let Some(t) = self.accept_paused_until {
                if Instant::now() >= t {
                    self.accept_paused_until = None;
                    self.accept();
                }
            }
            self.commit();
        }
        let c = &self.counters;
        info!(
            "stopped: {} connections, {} handshakes, {} events logged in {} batches, {} duplicates, {} rejected, {} answered 503, {} timed out, {} evicted",
            c.connections,
            c.handshakes,
            c.logged,
            c.batches,
            c.duplicates,
            c.rejected,
            c.unavailable,
            c.timeouts,
            c.evicted
        );
        Ok(())
    }

    fn drive(&mut self, id: usize) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut ctx = Ctx {
            policy: &self.policy,
            limits: &self.limits,
            log_healthy: self.log.is_healthy(),
            draining: self.shutdown_by.is_some(),
            scratch: &mut self.scratch,
            counters: &mut self.counters,
        };
        match conn.drive(&mut ctx) {
            Step::Wait => {}
            Step::Queue(rec) => self.pending.push((id, rec)),
            Step::Close => self.close(id),
        }
    }

    fn close(&mut self, id: usize) {
        if let Some(mut conn) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
    }

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        let mut evicted_for_fds = false;
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.limits.max_connections {
                        self.evict("connection cap reached");
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    let _ = stream.set_nodelay(true);
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(id),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        error!("cannot watch connection from {peer}: {e}");
                        continue;
                    }
                    self.counters.connections += 1;
                    self.conns
                        .insert(id, Conn::new(stream, peer, Instant::now()));
                    self.drive(id);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_fds(&e) => {
                    // Free a descriptor so the next client (maybe the platform) gets in.
                    if !evicted_for_fds && self.evict("out of file descriptors") {
                        evicted_for_fds = true;
                        continue;
                    }
                    warn!("cannot accept: {e}; trying again in {ACCEPT_PAUSE:?}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
                // A client that went away between SYN and accept, and the like: not ours.
                Err(_) => continue,
            }
        }
    }

    /// Closes the connection idle or stalled longest (never one whose event is being logged).
    fn evict(&mut self, why: &str) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| !matches!(c.phase, Phase::Logging(_)))
            .min_by_key(|(_, c)| c.last_activity)
            .map(|(id, c)| (*id, c.peer, c.last_activity.elapsed()));
        match victim {
            Some((id, peer, idle)) => {
                self.counters.evicted += 1;
                info!("{why}: closed {peer}, quiet for {idle:.1?}");
                self.close(id);
                true
            }
            None => false,
        }
    }

    fn on_signals(&mut self) {
        let signals: Vec<i32> = self.signals.pending().collect();
        for sig in signals {
            match sig {
                SIGHUP => match self.log.reopen() {
                    Ok(()) => info!("SIGHUP: event log reopened"),
                    Err(e) => error!(
                        "SIGHUP: cannot reopen the event log: {e}; still writing to the old file"
                    ),
                },
                _ if self.shutdown_by.is_some() => {
                    info!("second stop signal: stopping now");
                    self.shutdown_by = Some(Instant::now());
                }
                _ => {
                    let grace = self.limits.shutdown_grace;
                    info!(
                        "stop signal: no new connections; {} open, {grace:?} to finish",
                        self.conns.len()
                    );
                    if let Some(mut l) = self.listener.take() {
                        let _ = self.poll.registry().deregister(&mut l);
                    }
                    self.shutdown_by = Some(Instant::now() + grace);
                    let idle: Vec<usize> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| c.is_idle())
                        .map(|(id, _)| *id)
                        .collect();
                    for id in idle {
                        self.close(id);
                    }
                }
            }
        }
    }

    /// Writes this turn's records in one batch, then answers each waiting connection.
    fn commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let records: Vec<&Record> = batch.iter().map(|(_, r)| r).collect();
        let verdicts = self.log.commit(&records);
        self.counters.batches += 1;
        for ((id, rec), verdict) in batch.iter().zip(verdicts) {
            match verdict {
                Commit::Written => self.counters.logged += 1,
                Commit::Duplicate => {
                    self.counters.duplicates += 1;
                    info!(
                        "duplicate notification {} acknowledged, not logged again",
                        rec.uuid.as_deref().unwrap_or("?")
                    );
                }
                Commit::Failed => self.counters.unavailable += 1,
            }
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            let Phase::Logging(reply) = std::mem::replace(&mut conn.phase, Phase::Taken) else {
                unreachable!("only Logging connections are in the batch");
            };
            let answer = policy::acknowledge(verdict != Commit::Failed);
            let mut ctx = Ctx {
                policy: &self.policy,
                limits: &self.limits,
                log_healthy: self.log.is_healthy(),
                draining: self.shutdown_by.is_some(),
                scratch: &mut self.scratch,
                counters: &mut self.counters,
            };
            conn.answer(reply, &answer, &mut ctx, false);
            self.drive(*id);
        }
    }

    /// Handles expired deadlines; returns how long the next poll may sleep.
    fn sweep(&mut self, now: Instant) -> Option<Duration> {
        if !self.pending.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next: Option<Instant> = self.accept_paused_until;
        let mut expired = Vec::new();
        for (id, c) in &self.conns {
            if let Some(d) = c.deadline(&self.limits) {
                if d <= now {
                    expired.push(*id);
                } else {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
        }
        for id in expired {
            self.expire(id);
        }
        if let Some(by) = self.shutdown_by {
            next = Some(next.map_or(by, |n| n.min(by)));
        }
        if !self.pending.is_empty() {
            return Some(Duration::ZERO);
        }
        next.map(|n| n.saturating_duration_since(now) + Duration::from_millis(1))
    }

    fn expire(&mut self, id: usize) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mid_request = conn.started.is_some()
            && conn.output.is_empty()
            && matches!(conn.phase, Phase::Head(_) | Phase::Body { .. });
        if mid_request {
            self.counters.timeouts += 1;
            self.counters.rejected += 1;
            info!(
                "{} 408: request not complete within --request-timeout",
                conn.peer
            );
            conn.output
                .extend_from_slice(&raw_answer(StatusCode::REQUEST_TIMEOUT));
            conn.phase = Phase::Sending { close: true };
            // One attempt to tell the client; a client that does not read is closed next sweep.
            let _ = conn.flush();
        }
        self.close(id);
    }
}

fn is_out_of_fds(e: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23): per-process and system-wide descriptor limits.
    matches!(e.raw_os_error(), Some(23) | Some(24))
}
