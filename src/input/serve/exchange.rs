//! One connection's HTTP exchanges, without the socket (Sans-IO, like ureq-proto under it).
//!
//! The receiver pushes the bytes it read into [`Exchange::input`], calls [`Exchange::advance`],
//! and writes out [`Exchange::output`]. `advance` moves through ureq-proto's states, asks
//! [`super::policy`] what to answer, and stops when it needs more input, has output to flush, has a
//! record for the event log, or wants the connection closed. The fuzz target and the property
//! tests drive this type directly with arbitrary bytes.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use http::StatusCode;
use ureq_proto::server::state::{ProvideResponse, RecvBody, RecvRequest};
use ureq_proto::server::{RecvRequestResult, Reply, SendResponseResult};

use crate::input::serve::config::Limits;
use crate::input::serve::metrics::{self, Counters};
use crate::input::serve::policy::{self as policy, Answer, Framing, Head, Outcome, Policy, Route};
use crate::input::serve::throttle::{Kind, Throttle};
use crate::log::Record;
use crate::log::line::BodyBuffer;
use crate::oplog::Escaped;

/// A chunk-size line or trailer longer than this is refused rather than buffered.
const MAX_FRAMING: usize = 64 * 1024;

/// Bytes of notification bodies held in memory across all connections: a body is read only
/// once its whole size (its `Content-Length`, or `--max-body` when chunked) fits, and holds it
/// until answered. All or nothing per body, so bodies never wait on each other in a circle; the
/// first always fits.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BodyBudget {
    /// Bytes granted to bodies being read or logged.
    pub held: u64,
    /// The most that may be granted at once (`--max-buffered`).
    pub max: u64,
}

impl BodyBudget {
    /// True when `n` more bytes may be granted now.
    pub(crate) fn fits(&self, n: u64) -> bool {
        self.held == 0 || self.held.saturating_add(n) <= self.max
    }
}

/// What an exchange may use while it advances.
pub(crate) struct Ctx<'a> {
    /// The request policy.
    pub policy: &'a Policy,
    /// Size limits.
    pub limits: &'a Limits,
    /// The event log's health (for the health check).
    pub log_health: policy::Health,
    /// True after SIGTERM: close after the answer in flight.
    pub draining: bool,
    /// Scratch space for encoding answers (at least 32 KiB).
    pub scratch: &'a mut [u8],
    /// Counters to bump.
    pub counters: &'a mut Counters,
    /// The budget for bodies held in memory.
    pub budget: &'a mut BodyBudget,
    /// The operational log's rate limit for repeated lines.
    pub throttle: &'a mut Throttle,
}

/// What the connection needs next.
#[derive(Debug)]
pub(crate) enum Step {
    /// More input, up to this many buffered bytes in total.
    Read(usize),
    /// Write out `output` (then advance again).
    Flush,
    /// Write this record to the event log, then call [`Exchange::acknowledge`].
    Log(Record),
    /// Render the metrics, then call [`Exchange::provide_metrics`].
    Metrics,
    /// Nothing to do until the record is acknowledged.
    Wait,
    /// A body waits for [`BodyBudget`]: advance again once some is given back (the socket is
    /// not read meanwhile, so TCP holds the sender back).
    Held,
    /// Close the connection (after flushing `output`).
    Close,
}

enum Phase {
    /// Waiting for (the rest of) a request head.
    Head(Reply<RecvRequest>),
    /// Reading a body.
    Body {
        reply: Reply<RecvBody>,
        route: Route,
        body: BodyBuffer,
    },
    /// The record is with the event log; the answer waits for the commit.
    Logging(Reply<ProvideResponse>),
    /// A scrape of `--metrics-path`: the answer waits for the loop to render it.
    Metrics(Reply<ProvideResponse>),
    /// The answer is in `output`; then the next request, or close.
    Answered { close: bool },
    /// Transient, while a phase is being replaced.
    Taken,
}

/// One connection's protocol state.
pub(crate) struct Exchange {
    peer: SocketAddr,
    phase: Phase,
    /// Bytes read but not yet consumed.
    pub input: Vec<u8>,
    /// Bytes to write; the receiver drains it.
    pub output: Vec<u8>,
    /// The peer closed its side: no more input will come.
    pub eof: bool,
    /// When the current request's first byte arrived; `None` between requests.
    started: Option<Instant>,
    /// The current request's framing was ambiguous: close after answering it.
    close_after: bool,
    /// The current request asks for the connection to close after its answer (as ureq-proto
    /// judges it: see [`client_closes`]).
    client_close: bool,
    /// The current request is a `HEAD` (its answers go through ureq-proto, which omits bodies).
    head: bool,
    /// The most the current body may take: what it is granted from the [`BodyBudget`].
    body_need: u64,
    /// Bytes of the budget this connection holds.
    granted: u64,
    /// Body bytes received for the current request.
    received: u64,
}

impl Exchange {
    /// A new connection from `peer`.
    pub(crate) fn new(peer: SocketAddr) -> Exchange {
        Exchange {
            peer,
            phase: Phase::Head(new_reply()),
            input: Vec::new(),
            output: Vec::new(),
            eof: false,
            started: None,
            close_after: false,
            client_close: false,
            head: false,
            body_need: 0,
            granted: 0,
            received: 0,
        }
    }

    /// When the request in progress started, if one is.
    pub(crate) fn started(&self) -> Option<Instant> {
        self.started
    }

    /// The budget a held body waits for.
    pub(crate) fn body_need(&self) -> u64 {
        self.body_need
    }

    /// Gives back the budget this connection holds (its answer is out, or it is closing).
    pub(crate) fn release(&mut self, budget: &mut BodyBudget) {
        budget.held -= self.granted;
        self.granted = 0;
    }

    /// True while a record is with the event log.
    pub(crate) fn is_logging(&self) -> bool {
        matches!(self.phase, Phase::Logging(_))
    }

    /// True between requests with nothing buffered either way: safe to close at once.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head(_))
            && self.started.is_none()
            && self.input.is_empty()
            && self.output.is_empty()
    }

    /// True while a request is partly received (for the request timeout).
    pub(crate) fn is_mid_request(&self) -> bool {
        self.started.is_some() && matches!(self.phase, Phase::Head(_) | Phase::Body { .. })
    }

    /// Moves as far as the buffered input allows. Call again after doing what the step asks.
    pub(crate) fn advance(&mut self, ctx: &mut Ctx) -> Step {
        loop {
            if !self.output.is_empty() {
                return Step::Flush;
            }
            match std::mem::replace(&mut self.phase, Phase::Taken) {
                Phase::Taken => unreachable!("the phase is always put back"),
                Phase::Logging(r) => {
                    self.phase = Phase::Logging(r);
                    return Step::Wait;
                }
                Phase::Metrics(r) => {
                    self.phase = Phase::Metrics(r);
                    return Step::Metrics;
                }
                Phase::Answered { close } => {
                    if close || ctx.draining {
                        self.phase = Phase::Answered { close: true };
                        return Step::Close;
                    }
                    self.phase = Phase::Head(new_reply());
                    self.started = (!self.input.is_empty()).then(Instant::now);
                }
                Phase::Head(reply) => {
                    if let Some(step) = self.advance_head(reply, ctx) {
                        return step;
                    }
                }
                Phase::Body { reply, route, body } => {
                    if let Some(step) = self.advance_body(reply, route, body, ctx) {
                        return step;
                    }
                }
            }
        }
    }

    fn advance_head(&mut self, mut reply: Reply<RecvRequest>, ctx: &mut Ctx) -> Option<Step> {
        if self.input.is_empty() {
            self.phase = Phase::Head(reply);
            return Some(if self.eof {
                Step::Close
            } else {
                Step::Read(ctx.limits.max_header + 1)
            });
        }
        self.started.get_or_insert_with(Instant::now);
        match reply.try_request(&self.input) {
            Err(ureq_proto::Error::HttpParseTooManyHeaders) => self.refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "more than 128 request headers",
                ctx,
            ),
            Err(e) => self.refuse(
                StatusCode::BAD_REQUEST,
                &format!("malformed request: {e}"),
                ctx,
            ),
            Ok((used, Some(req))) if used <= ctx.limits.max_header => {
                self.input.drain(..used);
                self.on_head(reply, &req, ctx)
            }
            Ok(_) if self.input.len() > ctx.limits.max_header => self.refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head exceeds --max-header",
                ctx,
            ),
            Ok(_) => {
                self.phase = Phase::Head(reply);
                // Half a request and the peer is gone: nothing to answer.
                Some(if self.eof {
                    Step::Close
                } else {
                    Step::Read(ctx.limits.max_header + 1)
                })
            }
        }
    }

    fn advance_body(
        &mut self,
        mut reply: Reply<RecvBody>,
        route: Route,
        mut body: BodyBuffer,
        ctx: &mut Ctx,
    ) -> Option<Step> {
        // Only a notification's body is kept; the others are read through the scratch and
        // dropped, so they need no budget.
        let keep = route == Route::Notification;
        if keep && self.granted == 0 {
            if !ctx.budget.fits(self.body_need) {
                self.phase = Phase::Body { reply, route, body };
                return Some(Step::Held);
            }
            ctx.budget.held += self.body_need;
            self.granted = self.body_need;
            body.reserve_exact(self.body_need.min(64 * 1024 * 1024) as usize);
        }
        // Decoded through the scratch, then appended: reading into the body directly meant
        // zero-filling it first (~2,800 instructions for a 600-byte notification).
        while !self.input.is_empty() && !reply.is_ended() {
            let (used_in, used_out) = match reply.read(&self.input, ctx.scratch) {
                Ok(used) => used,
                Err(e) => {
                    ctx.counters.notifications_rejected += u64::from(route == Route::Notification);
                    return self.refuse(
                        StatusCode::BAD_REQUEST,
                        &format!("malformed body: {e}"),
                        ctx,
                    );
                }
            };
            if keep {
                body.extend_from_slice(&ctx.scratch[..used_out]);
            }
            self.received += used_out as u64;
            self.input.drain(..used_in);
            if self.received > ctx.policy.max_body {
                ctx.counters.notifications_rejected += u64::from(route == Route::Notification);
                return self.refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "chunked body exceeds --max-body",
                    ctx,
                );
            }
            if used_in == 0 && used_out == 0 {
                break; // a chunk's framing is not all here yet
            }
        }
        if reply.is_ended() {
            return match reply.proceed() {
                Ok(r) => self.complete(r, route, body, ctx),
                Err(e) => self.refuse(StatusCode::BAD_REQUEST, &e.to_string(), ctx),
            };
        }
        if self.input.len() > MAX_FRAMING {
            return self.refuse(StatusCode::BAD_REQUEST, "unparsable chunked framing", ctx);
        }
        self.phase = Phase::Body { reply, route, body };
        Some(if self.eof {
            Step::Close
        } else {
            Step::Read(self.input.len() + 32 * 1024)
        })
    }

    /// Acts on a parsed request head.
    fn on_head(
        &mut self,
        reply: Reply<RecvRequest>,
        req: &http::Request<()>,
        ctx: &mut Ctx,
    ) -> Option<Step> {
        match policy::framing(req) {
            Framing::Refuse(status, why) => return self.refuse(status, why, ctx),
            Framing::CloseAfter => self.close_after = true,
            Framing::Sound => {}
        }
        self.client_close = client_closes(req);
        self.head = req.method() == http::Method::HEAD;
        self.received = 0;
        self.body_need = policy::declared_length(req).unwrap_or(ctx.policy.max_body);
        let decision = policy::on_head(req, ctx.policy);
        if matches!(decision, Head::Answer(_)) && policy::is_notification(req, ctx.policy) {
            ctx.counters.notifications_rejected += 1;
        }
        let Some(mut next) = reply.proceed() else {
            return self.refuse(StatusCode::BAD_REQUEST, "request cannot proceed", ctx);
        };
        if let RecvRequestResult::RecvBody(body_reply) = next {
            next = end_unframed_body(body_reply, req);
        }
        match (decision, next) {
            (Head::Answer(a), RecvRequestResult::ProvideResponse(r)) => {
                self.answer(r, &a, ctx, false)
            }
            // The client waits for our word before sending the body: refuse it cleanly.
            (Head::Answer(a), RecvRequestResult::Send100(r)) => {
                self.answer(r.reject(), &a, ctx, true)
            }
            // A body is on its way that we will not read: answer and close.
            (Head::Answer(a), RecvRequestResult::RecvBody(_)) => {
                let why = a.reason.clone().unwrap_or_default();
                self.refuse(a.status, &why, ctx);
            }
            (Head::Read(route), RecvRequestResult::ProvideResponse(r)) => {
                return self.complete(r, route, BodyBuffer::default(), ctx);
            }
            (Head::Read(route), RecvRequestResult::Send100(r)) => match r.accept(ctx.scratch) {
                Ok((n, reply)) => {
                    self.output.extend_from_slice(&ctx.scratch[..n]);
                    self.phase = Phase::Body {
                        reply,
                        route,
                        body: BodyBuffer::default(),
                    };
                }
                Err(e) => {
                    self.refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), ctx);
                }
            },
            (Head::Read(route), RecvRequestResult::RecvBody(reply)) => {
                self.phase = Phase::Body {
                    reply,
                    route,
                    body: BodyBuffer::default(),
                };
            }
        }
        None
    }

    /// Acts on a complete request.
    fn complete(
        &mut self,
        reply: Reply<ProvideResponse>,
        route: Route,
        body: BodyBuffer,
        ctx: &mut Ctx,
    ) -> Option<Step> {
        let handshake = matches!(route, Route::Handshake(_));
        match policy::on_body(route, ctx.log_health) {
            Outcome::Answer(a) => {
                if handshake {
                    ctx.counters.handshakes += 1;
                    if ctx.throttle.allow(Kind::Handshake) {
                        info!("{} handshake answered", self.peer);
                    }
                }
                self.answer(reply, &a, ctx, false);
                None
            }
            Outcome::Log => {
                self.phase = Phase::Logging(reply);
                let rec = body.into_record(SystemTime::now());
                // What waits for the disk is the line, not the body: a body that is not JSON is
                // logged escaped (a control byte as six), so the line holds the budget, and the
                // next bodies wait in TCP until it is answered.
                let line = rec.line.len() as u64;
                if line > self.granted {
                    ctx.budget.held += line - self.granted;
                    self.granted = line;
                }
                Some(Step::Log(rec))
            }
            Outcome::Metrics => {
                self.phase = Phase::Metrics(reply);
                Some(Step::Metrics)
            }
        }
    }

    /// Answers the scrape handed out by [`Step::Metrics`] with `body`.
    pub(crate) fn provide_metrics(&mut self, body: &[u8], ctx: &mut Ctx) {
        let Phase::Metrics(reply) = std::mem::replace(&mut self.phase, Phase::Taken) else {
            unreachable!("provide_metrics only after Step::Metrics");
        };
        let mut res = http::Response::builder()
            .header(http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)
            .header(http::header::CONTENT_LENGTH, body.len());
        if self.close_after {
            res = res.header(http::header::CONNECTION, "close");
        }
        let res = res.body(()).expect("valid by construction");
        self.encode(reply, res, body, ctx, false);
    }

    /// Answers the record handed out by [`Step::Log`]: 200 when `logged`, else 503.
    pub(crate) fn acknowledge(&mut self, logged: bool, ctx: &mut Ctx) {
        match std::mem::replace(&mut self.phase, Phase::Taken) {
            Phase::Logging(reply) => {
                self.answer(reply, &policy::acknowledge(logged), ctx, false);
            }
            other => {
                self.phase = other;
                debug_assert!(false, "acknowledge without a record in flight");
            }
        }
    }

    /// Encodes `answer` through ureq-proto into `output`.
    fn answer(
        &mut self,
        reply: Reply<ProvideResponse>,
        answer: &Answer,
        ctx: &mut Ctx,
        force_close: bool,
    ) {
        if let Some(reason) = &answer.reason {
            ctx.counters.rejected += 1;
            if ctx.throttle.allow(Kind::Rejected) {
                info!(
                    "{} {}: {}",
                    self.peer,
                    answer.status.as_u16(),
                    Escaped(reason)
                );
            }
        }
        self.release(ctx.budget);
        let closing;
        let answer = if self.close_after {
            closing = answer.closing();
            &closing
        } else {
            answer
        };
        if force_close || self.head {
            // A refused `100-continue` or a `HEAD`: ureq-proto's own states decide what goes out.
            let body = answer.body.as_bytes();
            self.encode(reply, answer.to_response(), body, ctx, force_close);
            return;
        }
        // Every other answer is written directly, byte for byte what ureq-proto would write (see
        // `direct_answers_are_what_ureq_proto_writes`): building its response types cost about
        // 7,700 instructions and 4 allocations per notification.
        drop(reply);
        write_direct(answer, &mut self.output);
        ctx.counters.responses.count(answer.status.as_u16());
        self.phase = Phase::Answered {
            close: self.client_close || self.close_after,
        };
    }

    fn encode(
        &mut self,
        reply: Reply<ProvideResponse>,
        res: http::Response<()>,
        body: &[u8],
        ctx: &mut Ctx,
        force_close: bool,
    ) {
        let status = res.status();
        let close = match write_answer(reply, res, body, &mut self.output, ctx.scratch) {
            Ok(must_close) => {
                ctx.counters.responses.count(status.as_u16());
                must_close || force_close || self.close_after
            }
            Err(e) => {
                error!("cannot encode an answer for {}: {e}", self.peer);
                ctx.counters.responses.count(500);
                self.output.clear();
                self.output
                    .extend_from_slice(&raw_answer(StatusCode::INTERNAL_SERVER_ERROR));
                true
            }
        };
        self.phase = Phase::Answered { close };
    }

    /// Answers outside ureq-proto's states (malformed or abandoned requests), then closes.
    fn refuse(&mut self, status: StatusCode, why: &str, ctx: &mut Ctx) -> Option<Step> {
        self.release(ctx.budget);
        ctx.counters.rejected += 1;
        ctx.counters.responses.count(status.as_u16());
        if ctx.throttle.allow(Kind::Rejected) {
            info!("{} {}: {}", self.peer, status.as_u16(), Escaped(why));
        }
        self.output.extend_from_slice(&raw_answer(status));
        self.phase = Phase::Answered { close: true };
        None
    }

    /// The request timeout passed mid-request: answer 408 and close.
    pub(crate) fn time_out(&mut self, ctx: &mut Ctx) {
        ctx.counters.timeouts += 1;
        self.refuse(
            StatusCode::REQUEST_TIMEOUT,
            "request not complete within --request-timeout",
            ctx,
        );
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

/// Whether ureq-proto 0.7 closes the connection after answering `req` (its `try_request`): an
/// HTTP/1.0 request without `Connection: keep-alive`, or any with `Connection: close` (list
/// elements, trimmed, compared without case).
fn client_closes(req: &http::Request<()>) -> bool {
    let has = |token: &str| {
        req.headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|e| e.trim_ascii().eq_ignore_ascii_case(token))
    };
    (req.version() == http::Version::HTTP_10 && !has("keep-alive")) || has("close")
}

/// Writes `answer` as ureq-proto writes a response with these headers and a `content-length`:
/// the status line, the headers in order (names in lower case), `content-length`, the body.
fn write_direct(answer: &Answer, out: &mut Vec<u8>) {
    let status = answer.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in answer.headers.iter() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    let mut digits = [0u8; 20];
    let mut n = answer.body.len();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(answer.body.as_bytes());
}

fn new_reply() -> Reply<RecvRequest> {
    Reply::new().expect("a new Reply cannot fail")
}

/// Encodes `res` and `body` with ureq-proto into `out`; returns whether the connection must close.
fn write_answer(
    reply: Reply<ProvideResponse>,
    res: http::Response<()>,
    mut body: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut [u8],
) -> Result<bool, ureq_proto::Error> {
    let mut reply = reply.provide(res)?;
    while !reply.is_finished() {
        let n = reply.write(scratch)?;
        out.extend_from_slice(&scratch[..n]);
    }
    let cleanup = match reply.proceed() {
        SendResponseResult::Cleanup(c) => c,
        SendResponseResult::SendBody(mut b) => {
            while !b.is_finished() {
                let (used, n) = b.write(body, scratch)?;
                out.extend_from_slice(&scratch[..n]);
                body = &body[used..];
                if used == 0 && n == 0 {
                    break; // nothing moves: never spin
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::serve::oracle::check_invariants;
    use crate::secret::{Secret, VerificationToken};

    fn policy(token: bool) -> Policy {
        Policy {
            path: "/webhook".into(),
            health_path: Some("/health".into()),
            metrics_path: Some("/metrics".into()),
            token: token.then(|| VerificationToken::new(Secret::new("tok"))),
            max_body: 2048,
        }
    }

    /// xorshift64*: deterministic, so a failure names its case and can be replayed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545F4914F6CDD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const TEMPLATES: &[&[u8]] = &[
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nValidation-Token: abc\r\nContent-Length: 0\r\n\r\n",
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: tok\r\nContent-Length: 15\r\n\r\n{\"uuid\":\"u-1\"} ",
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: tok\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n3\r\n1}\n\r\n0\r\n\r\n",
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nVerification-Token: tok\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /webhook HTTP/1.0\r\nValidation-Token: v\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
        // Framing that must be refused, or (chunked beside a length) answered and then closed.
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: tok\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: tok\r\nTransfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: tok\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: tok\r\nTransfer-Encoding: CHUNKED\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /webhook HTTP/1.0\r\nVerification-Token: tok\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /webhook HTTP/1.0\r\nConnection: keep-alive\r\nVerification-Token: tok\r\n\r\n{}",
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: tok\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /webhook HTTP/1.1\r\nVerification-Token: tok\r\nContent-Length: 2\r\n\r\n{}",
        b"HEAD /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    ];

    fn case(rng: &mut Rng) -> Vec<u8> {
        let mut input = Vec::new();
        for _ in 0..1 + rng.below(4) {
            input.extend_from_slice(TEMPLATES[rng.below(TEMPLATES.len())]);
        }
        for _ in 0..rng.below(6) {
            let at = rng.below(input.len() + 1);
            match rng.below(5) {
                0 if at < input.len() => input[at] = rng.next() as u8,
                1 => input.insert(at, rng.next() as u8),
                2 if at < input.len() => {
                    input.remove(at);
                }
                3 => input.truncate(at),
                _ => {
                    let junk: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                    input.splice(at..at, junk);
                }
            }
        }
        input
    }

    #[test]
    fn mutated_requests_keep_every_invariant() {
        crate::oplog::set_quiet(true);
        let policies = [policy(true), policy(false)];
        for seed in 1..=4000u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
            let input = case(&mut rng);
            let cuts: Vec<usize> = (0..1 + rng.below(5)).map(|_| rng.below(40)).collect();
            let p = &policies[seed as usize % 2];
            let result = std::panic::catch_unwind(|| check_invariants(&input, &cuts, p));
            assert!(
                result.is_ok(),
                "seed {seed}: input {:?} cuts {cuts:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn pipelined_templates_are_all_answered_in_order() {
        crate::oplog::set_quiet(true);
        let mut input = Vec::new();
        input.extend_from_slice(TEMPLATES[0]);
        input.extend_from_slice(TEMPLATES[1]);
        input.extend_from_slice(TEMPLATES[4]);
        let out = check_invariants(&input, &[7, 1, 300], &policy(true));
        let text = String::from_utf8_lossy(&out);
        let statuses: Vec<&str> = text.split("HTTP/1.1 ").skip(1).map(|r| &r[..3]).collect();
        // The harness acknowledges the record as logged, then reports the log unhealthy, so the
        // health check that follows answers 503.
        assert_eq!(statuses, ["200", "200", "503"], "{text}");
        assert!(text.contains("validation-token: abc"));
    }

    #[test]
    fn direct_answers_are_what_ureq_proto_writes() {
        let requests = [
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            "POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, CLOSE \r\nContent-Length: 0\r\n\r\n",
            "POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: x,close\r\nContent-Length: 0\r\n\r\n",
            "POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n",
            "POST /webhook HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
            "POST /webhook HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ];
        let Outcome::Answer(handshake) = policy::on_body(
            Route::Handshake(http::HeaderValue::from_static("tok-1")),
            policy::Health::Ok,
        ) else {
            panic!("a handshake is answered")
        };
        let Outcome::Answer(health) = policy::on_body(Route::Health, policy::Health::Unwritable)
        else {
            panic!("a health check is answered")
        };
        let refused = match policy::on_head(
            &http::Request::post("/elsewhere").body(()).unwrap(),
            &policy(true),
        ) {
            policy::Head::Answer(a) => a,
            policy::Head::Read(_) => panic!("refused"),
        };
        let answers = [
            policy::acknowledge(true),
            policy::acknowledge(false),
            handshake,
            health,
            refused,
        ];
        let mut scratch = vec![0u8; 32 * 1024];
        for request in requests {
            for answer in answers.iter().flat_map(|a| [a.clone(), a.closing()]) {
                let mut reply = new_reply();
                let (_, req) = reply.try_request(request.as_bytes()).unwrap();
                let req = req.expect("a whole head");
                let Some(RecvRequestResult::ProvideResponse(reply)) = reply.proceed() else {
                    panic!("{request:?} has no body")
                };
                let mut by_ureq = Vec::new();
                let must_close = write_answer(
                    reply,
                    answer.to_response(),
                    answer.body.as_bytes(),
                    &mut by_ureq,
                    &mut scratch,
                )
                .unwrap();
                let mut direct = Vec::new();
                write_direct(&answer, &mut direct);
                assert_eq!(
                    String::from_utf8_lossy(&direct),
                    String::from_utf8_lossy(&by_ureq),
                    "{request:?}"
                );
                let closes = answer
                    .headers
                    .iter()
                    .any(|(k, _)| k == http::header::CONNECTION);
                assert_eq!(
                    client_closes(&req) || closes,
                    must_close,
                    "{request:?} {answer:?}"
                );
            }
        }
    }

    #[test]
    fn the_longest_echoable_token_fits_exactly() {
        let token = "t".repeat(crate::input::serve::policy::MAX_ECHOED_TOKEN);
        let req = format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nValidation-Token: {token}\r\nContent-Length: 0\r\n\r\n"
        );
        let out = check_invariants(req.as_bytes(), &[], &policy(false));
        assert_eq!(out.len(), crate::webhook::MAX_ANSWER_BYTES);
        let longer = req.replace(&token, &format!("{token}t"));
        let out = check_invariants(longer.as_bytes(), &[], &policy(false));
        assert!(out.starts_with(b"HTTP/1.1 400"));
    }
}
