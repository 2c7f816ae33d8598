//! `ringhook serve`: one thread, one `mio` poll over the listener, its connections and signals.
//!
//! Each connection is a small state machine around ureq-proto's Sans-IO server (`Reply`): bytes
//! in, request head out; body bytes in, body out; response head in, bytes out. The policy lives
//! in [`super::policy`]; this module owns sockets, clocks, limits and the group commit: the
//! notifications completed while the disk was busy are written and synced together, then
//! acknowledged. The write and the sync run on the log's disk thread (`crate::log`), which wakes
//! the loop when they are done: meanwhile the loop goes on reading, answering handshakes,
//! `/health` and `/metrics`, and gathering the next batch. One batch is with the disk at a time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::input::serve::children::connect::Connector;
use crate::input::serve::children::exec::Runner;
use crate::input::serve::children::reconcile::Reconciler;
use crate::input::serve::children::recover::{RecoverConfig, Recoverer};
use crate::input::serve::children::shipper::Shipper;
use crate::input::serve::config::{Limits, LogTarget, ServeConfig};
use crate::input::serve::exchange::{BodyBudget, Ctx, Exchange, Step};
use crate::input::serve::metrics::{self, Counters, ExecOutcomes, Scrape};
use crate::input::serve::policy::{Health, Policy};
use crate::input::serve::throttle::{Kind, Throttle};
use crate::input::serve::wake::{self, earliest};
use crate::log::{Batch, Commit, EventLog, Finished, Record};

/// The longest a batch waits to gather more after the last one was answered: a quarter of the
/// last sync up to this (a 20 ms SD-card sync waits 5 ms; an 8 s stall does not wait 2 s).
const MAX_GATHER: Duration = Duration::from_millis(10);
/// The fields of `Server` an exchange may use, borrowed apart from `conns`.
macro_rules! ctx {
    ($s:ident) => {
        Ctx {
            policy: &$s.policy,
            limits: &$s.limits,
            log_health: log_health(&$s.log, &$s.limits, $s.connector.as_ref()),
            draining: $s.shutdown_by.is_some(),
            scratch: &mut $s.scratch,
            counters: &mut $s.counters,
            budget: &mut $s.budget,
            throttle: &mut $s.throttle,
        }
    };
}

/// Shared read/write scratch; also bounds how much one read takes from a socket.
const SCRATCH: usize = 32 * 1024;
/// How long a closing connection may keep sending before it is dropped.
const LINGER: Duration = Duration::from_secs(2);
/// While accepting fails for lack of file descriptors, how long to wait before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How often an unhealthy log is probed (see [`Server::probe_log`]).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The event log's health for the health check: unwritable, a sync stalled past
/// `--health-max-sync`, or fine.
fn log_health(log: &EventLog, limits: &Limits, connector: Option<&Connector>) -> Health {
    if !log.is_healthy() {
        Health::Unwritable
    } else if connector.is_some_and(|c| !c.subscribed()) {
        Health::Unsubscribed
    } else if log
        .busy_since()
        .is_some_and(|t| t.elapsed() > limits.health_max_sync)
    {
        Health::Stalled
    } else {
        Health::Ok
    }
}

/// A connection: the socket, its protocol state, and when it last moved.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    exch: Exchange,
    last_activity: Instant,
    /// Set once our side is shut: read and discard until the peer closes or this time passes,
    /// so that closing with unread input does not reset the connection before the client has
    /// read our last answer (the "lingering close" of nginx and Apache).
    linger_until: Option<Instant>,
    /// Waiting in `Server::held` for body budget.
    held: bool,
}

/// What a connection needs from the server after being driven.
enum Driven {
    /// Waiting for the socket (or the commit).
    Wait,
    /// Close it.
    Close,
    /// Add this record to the batch.
    Log(Record),
    /// Its body waits for budget: queue it.
    Held,
    /// Render the metrics for it.
    Metrics,
}

impl Connection {
    /// Moves the connection as far as it can go without blocking.
    fn drive(&mut self, ctx: &mut Ctx) -> Driven {
        loop {
            if self.linger_until.is_some() {
                return self.discard(ctx.scratch);
            }
            match self.exch.advance(ctx) {
                Step::Flush => match self.flush() {
                    Ok(true) => {}
                    Ok(false) => return Driven::Wait,
                    Err(_) => return Driven::Close,
                },
                Step::Read(limit) => match self.fill(ctx.scratch, limit) {
                    Ok(true) => {}
                    Ok(false) if self.exch.eof => {}
                    Ok(false) => return Driven::Wait,
                    Err(_) => return Driven::Close,
                },
                Step::Log(rec) => return Driven::Log(rec),
                Step::Metrics => return Driven::Metrics,
                Step::Wait => return Driven::Wait,
                Step::Held => return Driven::Held,
                Step::Close if self.exch.eof => return Driven::Close,
                Step::Close => {
                    if self.stream.shutdown(Shutdown::Write).is_err() {
                        return Driven::Close;
                    }
                    self.linger_until = Some(Instant::now() + LINGER);
                }
            }
        }
    }

    /// Reads and drops input while lingering; `Close` once the peer has closed.
    fn discard(&mut self, scratch: &mut [u8]) -> Driven {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Driven::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Driven::Wait,
                Err(_) => return Driven::Close,
            }
        }
    }

    /// Reads what the socket has, up to `limit` buffered bytes. `Ok(false)`: nothing more now.
    fn fill(&mut self, scratch: &mut [u8], limit: usize) -> io::Result<bool> {
        let input = &mut self.exch.input;
        let room = limit.saturating_sub(input.len()).clamp(1, scratch.len());
        loop {
            match self.stream.read(&mut scratch[..room]) {
                Ok(0) => {
                    self.exch.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    input.extend_from_slice(&scratch[..n]);
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
        let out = &mut self.exch.output;
        let mut written = 0;
        let result = loop {
            if written == out.len() {
                break Ok(true);
            }
            match self.stream.write(&out[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    self.last_activity = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) => break Err(e),
            }
        };
        out.drain(..written);
        result
    }

    /// When this connection next needs attention from the clock, if ever.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.linger_until.is_some() {
            return self.linger_until;
        }
        if self.exch.is_logging() {
            return None;
        }
        if !self.exch.output.is_empty() {
            // A client that does not read its answer.
            return Some(self.last_activity + limits.request_timeout);
        }
        Some(match self.exch.started() {
            Some(t) => t + limits.request_timeout,
            None => self.last_activity + limits.idle_timeout,
        })
    }
}

pub(crate) struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: Signals,
    conns: HashMap<usize, Connection, BuildHasherDefault<IdHasher>>,
    next_id: usize,
    log: EventLog,
    policy: Policy,
    limits: Limits,
    scratch: Vec<u8>,
    counters: Counters,
    /// Where a scrape is rendered; kept, so a scrape costs no allocation once warm.
    scrape: Vec<u8>,
    /// The batch being gathered: records, and the connection each came from (same order). Kept
    /// with their capacity, as are the verdicts: a batch allocates nothing once warm.
    pending: Vec<Record>,
    pending_ids: Vec<usize>,
    verdicts: Vec<Commit>,
    /// The connections of the batch with the disk (same order as its records).
    in_flight_ids: Vec<usize>,
    /// Spare buffers for the next batch (the last batch's, once answered).
    spare: Vec<Record>,
    /// Group commit: how long the last batch's write and sync took, how many records the batch
    /// being gathered should wait for, and until when (see [`Server::commit_due`]).
    last_sync: Duration,
    expect: usize,
    gather_until: Option<Instant>,
    /// When the batch with the disk was handed over.
    batch_started: Instant,
    /// SIGHUP came: reopen the log once the disk is free.
    reopen_due: bool,
    /// `/proc/self`, read at most once a second for scrapes.
    process: metrics::ProcessCache,
    /// While the log is unhealthy: when to probe it next (at most once a second), so `/health`
    /// turns 200 when the disk has room again, not at the next notification.
    next_probe: Option<Instant>,
    accept_paused_until: Option<Instant>,
    /// Bytes of bodies held in memory, across connections.
    budget: BodyBudget,
    /// Connections whose body waits for budget, first come first served.
    held: std::collections::VecDeque<usize>,
    /// A descriptor held back for the moment the process runs out: closing it lets one waiting
    /// client be accepted and turned away when no connection can be evicted for it.
    reserve: Option<std::fs::File>,
    /// Set by SIGTERM/SIGINT: the time by which in-flight requests must be done.
    shutdown_by: Option<Instant>,
    /// `--exec`'s children.
    exec: Option<Runner>,
    /// `--register`'s child and schedule.
    reconciler: Option<Reconciler>,
    /// `--register`'s catch-up child (with a log file).
    recoverer: Option<Recoverer>,
    /// `--ship`'s child.
    shipper: Option<Shipper>,
    /// Rate limit for the operational log's repeated lines.
    throttle: Throttle,
    /// `ringhook connect`'s WebSocket session child.
    connector: Option<Connector>,
    /// When the first notification from `connect`'s session was refused by the log (disk full,
    /// I/O error) since it was last writable: nothing resends it, so a catch-up must.
    streamed_lost: Option<SystemTime>,
}

impl Server {
    pub(crate) fn new(
        cfg: ServeConfig,
        mut listener: Option<TcpListener>,
        log: EventLog,
    ) -> io::Result<Server> {
        let max_buffered = cfg.limits.max_buffered;
        let poll = Poll::new()?;
        if let Some(l) = &mut listener {
            poll.registry()
                .register(l, wake::LISTENER, Interest::READABLE)?;
        }
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD])?;
        let mut log = log;
        let waker = mio::Waker::new(poll.registry(), wake::LOG)?;
        // A failed wake only happens when the loop is gone.
        log.start(move || {
            let _ = waker.wake();
        })?;
        poll.registry()
            .register(&mut signals, wake::SIGNALS, Interest::READABLE)?;
        let recoverer = match (&cfg.register, &cfg.log) {
            // Only a build with `catchup` can run the child.
            (Some(r), LogTarget::File(log)) if cfg!(feature = "catchup") => {
                Some(Recoverer::new(RecoverConfig {
                    log: log.clone(),
                    env_file: r.env_file.clone(),
                    env: r.env.clone(),
                }))
            }
            _ => None,
        };
        Ok(Server {
            recoverer,
            poll,
            listener,
            signals,
            conns: HashMap::default(),
            next_id: wake::FIRST_CONN,
            log,
            policy: Policy {
                path: cfg.path,
                health_path: cfg.health_path,
                metrics_path: cfg.metrics_path,
                token: cfg.token,
                max_body: cfg.limits.max_body,
            },
            limits: cfg.limits,
            scratch: vec![0; SCRATCH],
            counters: Counters::default(),
            scrape: Vec::new(),
            pending: Vec::new(),
            pending_ids: Vec::new(),
            verdicts: Vec::new(),
            in_flight_ids: Vec::new(),
            spare: Vec::new(),
            last_sync: Duration::ZERO,
            expect: 0,
            batch_started: Instant::now(),
            gather_until: None,
            reopen_due: false,
            process: metrics::ProcessCache::default(),
            next_probe: None,
            accept_paused_until: None,
            budget: BodyBudget {
                held: 0,
                max: max_buffered,
            },
            held: Default::default(),
            reserve: std::fs::File::open("/dev/null").ok(),
            shutdown_by: None,
            exec: cfg.exec.map(Runner::new),
            reconciler: cfg.register.map(|r| Reconciler::new(r, Instant::now())),
            shipper: cfg.ship.map(|s| Shipper::new(s, Instant::now())),
            throttle: Throttle::default(),
            connector: None,
            streamed_lost: None,
        })
    }

    /// `ringhook connect`: the session child whose notifications the loop logs, and the
    /// catch-up child it asks for after a gap.
    #[cfg(feature = "connect")]
    pub(crate) fn connect(&mut self, connector: Connector, recoverer: Option<Recoverer>) {
        self.connector = Some(connector);
        self.recoverer = recoverer;
    }

    /// True when `connect`'s session child ended for good (the reason is logged).
    #[cfg(feature = "connect")]
    pub(crate) fn gave_up(&self) -> bool {
        self.connector.as_ref().is_some_and(|c| c.gave_up)
    }

    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.sweep(Instant::now());
            if let Some(by) = self.shutdown_by {
                // Connections that only linger have had their last answer: don't wait for them.
                let done = self.conns.values().all(|c| c.linger_until.is_some())
                    && self.exec.as_ref().is_none_or(Runner::is_idle)
                    && self.log.busy_since().is_none()
                    && self.connector.as_ref().is_none_or(Connector::is_idle);
                if done {
                    break;
                }
                if Instant::now() >= by {
                    if let Some(r) = &mut self.exec {
                        if r.running() > 0 {
                            warn!(
                                "shutdown grace over: killing {} running commands",
                                r.running()
                            );
                        }
                        r.kill_all();
                    }
                    if let Some(c) = &mut self.connector {
                        c.kill();
                    }
                    break;
                }
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.dispatch(&events);
            if let Some(t) = self.accept_paused_until {
                if Instant::now() >= t {
                    self.accept_paused_until = None;
                    self.accept();
                }
            }
            if self.reopen_due && self.log.busy_since().is_none() {
                self.reopen_due = false;
                let was_healthy = self.log.is_healthy();
                if let Some(f) = self.log.reopen() {
                    self.finished(f, was_healthy);
                }
            }
            if self.commit_due(Instant::now()) {
                if self.log.syncs() {
                    // What became ready while this turn ran joins the batch rather than wait out
                    // its sync and the next turn: bigger batches, fewer syncs (one poll more).
                    match self.poll.poll(&mut events, Some(Duration::ZERO)) {
                        Ok(()) => self.dispatch(&events),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                self.commit();
            }
            // The catch-up child hears "ok" only once none of its lines waits or is in flight.
            let recovering = |ids: &[usize]| ids.contains(&wake::RECOVERED);
            if !recovering(&self.pending_ids) && !recovering(&self.in_flight_ids) {
                if let Some(r) = &mut self.recoverer {
                    r.after_commit();
                }
            }
            self.wake_held();
        }
        self.throttle.flush(Instant::now(), true);
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
        if let Some(r) = &self.reconciler {
            r.unregister_on_exit();
        }
        if let Some(s) = &mut self.shipper {
            s.finish();
        }
        if let Some(r) = &self.exec {
            let e = r.counters;
            info!(
                "exec: {} started, {} succeeded, {} failed ({} killed), {} skipped",
                e.started, e.succeeded, e.failed, e.killed, e.skipped
            );
        }
        Ok(())
    }

    /// Acts on one poll's readiness events.
    fn dispatch(&mut self, events: &Events) {
        for event in events.iter() {
            match event.token() {
                wake::LISTENER => self.accept(),
                wake::SIGNALS => self.on_signals(),
                wake::LOG => {
                    let was_healthy = self.log.is_healthy();
                    while let Some(f) = self.log.finish() {
                        self.finished(f, was_healthy);
                    }
                }
                wake::RECONCILE => {
                    if let Some(r) = &mut self.reconciler {
                        r.on_ready(self.poll.registry());
                    }
                }
                wake::RECOVER => {
                    if let Some(r) = &mut self.recoverer {
                        for line in r.on_ready(self.poll.registry()) {
                            self.pending.push(Record::recovered(line));
                            self.pending_ids.push(wake::RECOVERED);
                        }
                    }
                }
                wake::CONNECT => self.on_connect(),
                wake::SHIPPER => {
                    if let Some(s) = &mut self.shipper {
                        s.on_ready(self.poll.registry());
                    }
                }
                t if Runner::owns(t) => {
                    if let Some(r) = &mut self.exec {
                        r.on_ready(t, self.poll.registry());
                    }
                }
                Token(id) => self.drive(id),
            }
        }
    }

    fn drive(&mut self, id: usize) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut ctx = ctx!(self);
        match conn.drive(&mut ctx) {
            Driven::Wait => {}
            Driven::Log(rec) => {
                self.pending.push(rec);
                self.pending_ids.push(id);
            }
            Driven::Held if conn.held => {}
            Driven::Held => {
                conn.held = true;
                self.held.push_back(id);
            }
            Driven::Metrics => {
                self.render_metrics();
                let body = std::mem::take(&mut self.scrape);
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.exch.provide_metrics(&body, &mut ctx!(self));
                }
                self.scrape = body;
                self.drive(id);
            }
            Driven::Close => self.close(id),
        }
    }

    /// Drives held bodies, oldest first, while the budget has room for them.
    fn wake_held(&mut self) {
        while let Some(&id) = self.held.front() {
            let Some(conn) = self.conns.get_mut(&id) else {
                self.held.pop_front();
                continue;
            };
            if !self.budget.fits(conn.exch.body_need()) {
                return;
            }
            self.held.pop_front();
            conn.held = false;
            self.drive(id);
        }
    }

    /// Renders the metrics into `self.scrape`.
    fn render_metrics(&mut self) {
        let exec = self.exec.as_ref().map(|r| {
            let c = r.counters;
            ExecOutcomes {
                ok: c.succeeded,
                failed: c.failed.saturating_sub(c.killed),
                timeout: c.killed,
                skipped: c.skipped,
            }
        });
        // The shipper child's last status line (`serve --ship`); the families appear once one came.
        let ship = self
            .shipper
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .map(|st| metrics::ShipFigures {
                delivered: st.delivered,
                dead_lettered: st.dead_lettered,
                lag_events: st.lag_events,
                lag: Duration::from_millis(st.lag_millis),
            });
        let now = Instant::now();
        let scrape = Scrape {
            counters: &self.counters,
            connections_open: self.conns.len(),
            log_writable: self.log.is_healthy(),
            log_sync: &self.log.sync_seconds,
            log_sync_in_flight: self
                .log
                .busy_since()
                .map(|t| now.saturating_duration_since(t)),
            exec,
            register: self.reconciler.as_ref().map(|r| &r.status),
            ship: ship.as_ref(),
            process: self.process.get(now),
        };
        self.scrape.clear();
        metrics::render(&scrape, &mut self.scrape);
        if let Some(c) = &self.connector {
            c.render_metrics(&mut self.scrape);
        }
    }

    fn close(&mut self, id: usize) {
        if let Some(mut conn) = self.conns.remove(&id) {
            conn.exch.release(&mut self.budget);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
    }

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            // Full, and every connection waits for the log (a stuck sync under a flood): none can
            // be evicted, so the next clients wait in the listen backlog, as bodies beyond the
            // budget wait in TCP, rather than be taken in beyond the cap without bound.
            if self.conns.len() >= self.limits.max_connections
                && self.conns.values().all(|c| c.exch.is_logging())
            {
                if self.throttle.allow(Kind::AcceptFailed) {
                    warn!(
                        "connection cap reached and every connection waits for the event log: not accepting for {ACCEPT_PAUSE:?}"
                    );
                }
                self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                return;
            }
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
                    self.conns.insert(
                        id,
                        Connection {
                            stream,
                            peer,
                            exch: Exchange::new(peer),
                            last_activity: Instant::now(),
                            linger_until: None,
                            held: false,
                        },
                    );
                    self.drive(id);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_fds(&e) => {
                    // Free a descriptor per waiting client, oldest quiet connection first, so
                    // what waits behind a flood of idle connections (maybe the platform) gets
                    // in now, not one per pause.
                    if self.evict("out of file descriptors") {
                        continue;
                    }
                    // Nothing to evict: turn one waiting client away with the reserve, rather
                    // than leave it hanging in the backlog, and look again shortly.
                    if self.reserve.take().is_some() {
                        if let Some(Ok((stream, _))) = self.listener.as_ref().map(|l| l.accept()) {
                            drop(stream);
                            self.counters.rejected += 1;
                        }
                        self.reserve = std::fs::File::open("/dev/null").ok();
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
            .filter(|(_, c)| !c.exch.is_logging())
            .min_by_key(|(_, c)| c.last_activity)
            .map(|(id, c)| (*id, c.peer, c.last_activity.elapsed()));
        match victim {
            Some((id, peer, idle)) => {
                self.counters.evicted += 1;
                if self.throttle.allow(Kind::Evicted) {
                    info!("{why}: closed {peer}, quiet for {idle:.1?}");
                }
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
                SIGCHLD => {
                    if let Some(r) = &mut self.exec {
                        r.reap(self.poll.registry());
                    }
                    if let Some(r) = &mut self.reconciler {
                        r.reap(self.poll.registry());
                    }
                    if let Some(r) = &mut self.recoverer {
                        r.reap(self.poll.registry());
                    }
                    if let Some(s) = &mut self.shipper {
                        s.reap(self.poll.registry());
                    }
                    if let Some(c) = &mut self.connector {
                        c.reap(self.poll.registry());
                    }
                }
                // Done once the disk is free: a batch with it is written to the old file.
                SIGHUP => self.reopen_due = true,
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
                    if let Some(r) = &mut self.exec {
                        r.drop_queue();
                    }
                    if let Some(r) = &mut self.reconciler {
                        r.stop();
                    }
                    if let Some(r) = &mut self.recoverer {
                        r.stop();
                    }
                    if let Some(s) = &mut self.shipper {
                        s.terminate();
                    }
                    if let Some(c) = &mut self.connector {
                        c.terminate();
                    }
                    let idle: Vec<usize> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| c.exch.is_idle())
                        .map(|(id, _)| *id)
                        .collect();
                    for id in idle {
                        self.close(id);
                    }
                }
            }
        }
    }

    /// Whether the records gathered so far should be handed to the disk now.
    ///
    /// Never while the disk is busy with a batch (they gather meanwhile). Once it is free: when
    /// as many records wait as expected — those that gathered during the last sync, and one
    /// from each client the last batch answered, which is about to send its next — or a quarter
    /// of the last sync time has passed. Without the wait, the clients just answered would miss
    /// the batch by microseconds and wait out a whole sync: the clients would split into two
    /// groups taking turns, half a batch per sync. No record waits longer than the sync in
    /// progress, a quarter of it, and its own.
    fn commit_due(&mut self, now: Instant) -> bool {
        if self.pending.is_empty() || self.log.busy_since().is_some() {
            return false;
        }
        if self.pending.len() >= self.expect || self.shutdown_by.is_some() {
            return true;
        }
        // A quarter of an ordinary sync lets the clients just answered send again; after a
        // stall the last sync says nothing about the next, so the wait is capped.
        let wait = (self.last_sync / 4).min(MAX_GATHER);
        let until = *self.gather_until.get_or_insert(now + wait);
        now >= until
    }

    /// Hands the gathered records to the event log as one batch (answered in
    /// [`Server::acknowledge`] when the disk is done with it).
    fn commit(&mut self) {
        if self.pending.is_empty() || self.log.busy_since().is_some() {
            return;
        }
        self.gather_until = None;
        let batch = std::mem::replace(&mut self.pending, std::mem::take(&mut self.spare));
        std::mem::swap(&mut self.pending_ids, &mut self.in_flight_ids);
        self.pending_ids.clear();
        let verdicts = std::mem::take(&mut self.verdicts);
        let was_healthy = self.log.is_healthy();
        self.batch_started = Instant::now();
        if let Some(f) = self.log.begin(batch, verdicts) {
            self.finished(f, was_healthy);
        }
    }

    /// Acts on a job of the log's that is done.
    fn finished(&mut self, f: Finished, was_healthy: bool) {
        match f {
            Finished::Batch(batch) => self.acknowledge(batch),
            Finished::Probe => {
                if self.log.is_healthy() {
                    self.next_probe = None;
                }
            }
            Finished::Reopen(Ok(())) => info!("SIGHUP: event log reopened"),
            Finished::Reopen(Err(e)) => {
                error!("SIGHUP: cannot reopen the event log: {e}; still writing to the old file")
            }
        }
        if !was_healthy && self.log.is_healthy() {
            if let Some(since) = self.streamed_lost.take() {
                let since = humantime::format_rfc3339_seconds(since);
                match &self.recoverer {
                    Some(_) => warn!(
                        "connect: events may have been missed since {since} (the event log could \
                         not take them); catching up"
                    ),
                    None => warn!(
                        "connect: events may have been missed since {since} (the event log could \
                         not take them); run 'ringhook catchup' to recover messages and calls"
                    ),
                }
            }
            if let Some(r) = &mut self.recoverer {
                r.due("the event log is writable again");
            }
        }
    }

    /// Answers each connection of a batch the log is done with, then starts its commands.
    fn acknowledge(&mut self, batch: Batch) {
        let Batch {
            records: mut batch,
            verdicts,
        } = batch;
        let ids = std::mem::take(&mut self.in_flight_ids);
        self.last_sync = self.batch_started.elapsed();
        self.counters.batches += 1;
        if verdicts.contains(&Commit::Written) {
            self.counters.last_notification = Some(SystemTime::now());
        }
        let mut to_run = Vec::new();
        let mut answered = 0;
        for ((&id, rec), &verdict) in ids.iter().zip(&batch).zip(&verdicts) {
            match verdict {
                Commit::Written => {
                    self.counters.logged += 1;
                    if let Some(r) = &mut self.reconciler {
                        r.on_event(rec, Instant::now());
                    }
                    if self.exec.as_ref().is_some_and(|r| r.wants(rec)) {
                        to_run.push(rec);
                    }
                }
                Commit::Duplicate => {
                    self.counters.duplicates += 1;
                    if self.throttle.allow(Kind::Duplicate) {
                        info!(
                            "duplicate notification {} acknowledged, not logged again",
                            crate::oplog::Escaped(rec.uuid().unwrap_or("?"))
                        );
                    }
                }
                Commit::Failed => {
                    self.counters.unavailable += 1;
                    // A webhook gets its 503 and the platform sends it again; a notification
                    // from the WebSocket is sent once.
                    if id == wake::STREAMED && self.streamed_lost.is_none() {
                        self.streamed_lost = Some(SystemTime::now());
                        warn!(
                            "connect: a notification could not be logged; what the log could not \
                             take is caught up once it is writable again"
                        );
                    }
                }
            }
            if id == wake::RECOVERED {
                if let Some(r) = &mut self.recoverer {
                    r.logged(verdict != Commit::Failed);
                }
            }
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            answered += 1;
            let mut ctx = ctx!(self);
            conn.exch.acknowledge(verdict != Commit::Failed, &mut ctx);
            self.drive(id);
        }
        // The next batch waits a moment for the clients just answered (see `commit_due`).
        self.expect = self.pending.len() + answered;
        // Commands start only once every answer of the batch is out.
        if let Some(r) = &mut self.exec {
            for rec in to_run {
                r.submit(rec, self.poll.registry());
            }
        }
        // The buffers go back for the next batch.
        let mut verdicts = verdicts;
        verdicts.clear();
        self.verdicts = verdicts;
        batch.clear();
        self.spare = batch;
        let mut ids = ids;
        ids.clear();
        self.in_flight_ids = ids;
    }

    /// Handles expired deadlines; returns how long the next poll may sleep.
    fn sweep(&mut self, now: Instant) -> Option<Duration> {
        let disk_busy = self.log.busy_since().is_some();
        if !self.pending.is_empty() && !disk_busy {
            // Gathering a batch (see `commit_due`): poll until its time is up.
            return Some(
                self.gather_until
                    .map_or(Duration::ZERO, |t| t.saturating_duration_since(now)),
            );
        }
        let mut next: Option<Instant> = self.accept_paused_until;
        if let Some(r) = &mut self.exec {
            // SIGCHLD can coalesce; collecting here too costs one try_wait per running child.
            r.reap(self.poll.registry());
            next = earliest(next, r.sweep(now));
        }
        let mut expired = Vec::new();
        for (id, c) in &self.conns {
            if let Some(d) = c.deadline(&self.limits) {
                if d <= now {
                    expired.push(*id);
                } else {
                    next = earliest(next, Some(d));
                }
            }
        }
        for id in expired {
            self.expire(id);
        }
        next = earliest(next, self.probe_log(now));
        next = earliest(next, self.throttle.flush(now, false));
        next = earliest(next, self.shutdown_by);
        if let Some(r) = &mut self.reconciler {
            if self.shutdown_by.is_none() {
                r.reap(self.poll.registry());
                // Never beside a catch-up run: its end (SIGCHLD) wakes the loop again.
                let catching_up = self.recoverer.as_ref().is_some_and(|c| !c.is_idle());
                if !catching_up {
                    r.tick(now, self.poll.registry());
                    next = earliest(next, r.deadline());
                }
                if let Some(c) = &mut self.recoverer {
                    if r.take_succeeded() {
                        c.due("after register");
                    }
                    c.reap(self.poll.registry());
                    if !r.is_running() {
                        c.tick(self.poll.registry());
                    }
                }
            }
        }
        if let Some(s) = &mut self.shipper {
            if self.shutdown_by.is_none() {
                s.reap(self.poll.registry());
                s.tick(now, self.poll.registry());
                next = earliest(next, s.deadline());
            }
        }
        next = earliest(next, self.sweep_connect(now));
        if !self.pending.is_empty() && !disk_busy {
            return Some(Duration::ZERO);
        }
        next.map(|n| n.saturating_duration_since(now) + Duration::from_millis(1))
    }

    /// Probes an unhealthy log once its time has come, never while a batch is gathered (its
    /// commit tells the log's state anyway); returns when to probe next.
    fn probe_log(&mut self, now: Instant) -> Option<Instant> {
        if self.log.is_healthy() {
            self.next_probe = None;
            return None;
        }
        if self.log.busy_since().is_some() {
            return None; // the disk thread wakes the loop when it is done
        }
        let at = *self.next_probe.get_or_insert(now + PROBE_EVERY);
        if now < at || !self.pending.is_empty() {
            return Some(at);
        }
        // The next try a second after this one (`finished` clears it when this one works).
        let next = now + PROBE_EVERY;
        self.next_probe = Some(next);
        if let Some(f) = self.log.probe() {
            self.finished(f, false);
        }
        self.next_probe
    }

    fn expire(&mut self, id: usize) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.linger_until.is_none() && conn.exch.is_mid_request() && conn.exch.output.is_empty()
        {
            let mut ctx = ctx!(self);
            conn.exch.time_out(&mut ctx);
            // Sends the 408 and starts the lingering close.
            self.drive(id);
            return;
        }
        self.close(id);
    }
}

/// Connection ids are unique counters chosen by us: they need no hashing, let alone SipHash's.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = n as u64;
    }
}

fn is_out_of_fds(e: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23): per-process and system-wide descriptor limits.
    matches!(e.raw_os_error(), Some(23) | Some(24))
}

// ---- `ringhook connect` -----------------------------------------------------------------------

impl Server {
    /// The session child spoke: its notifications join the batch like a connection's, without a
    /// connection to answer; a gap starts the catch-up child (never two at once).
    fn on_connect(&mut self) {
        let Some(c) = &mut self.connector else { return };
        let heard = c.on_ready(self.poll.registry());
        for rec in heard.records {
            self.pending.push(rec);
            self.pending_ids.push(wake::STREAMED);
        }
        if let (Some(since), Some(r)) = (heard.catch_up, &mut self.recoverer) {
            info!(
                "connect: events may have been missed since {}",
                crate::oplog::Escaped(&since)
            );
            r.due("the WebSocket stream has a gap");
        }
    }

    /// Starts (again) the session child and the catch-up child when due.
    fn sweep_connect(&mut self, now: Instant) -> Option<Instant> {
        let c = self.connector.as_mut()?;
        if self.shutdown_by.is_some() {
            return None;
        }
        if c.wants_stop() {
            // The session cannot go on: stop as a SIGTERM would, by the same path for every part.
            if let Some(me) = rustix::process::Pid::from_raw(std::process::id() as i32) {
                let _ = rustix::process::kill_process(me, rustix::process::Signal::TERM);
            }
            return None;
        }
        c.reap(self.poll.registry());
        c.tick(now, self.poll.registry());
        if let Some(r) = &mut self.recoverer {
            r.reap(self.poll.registry());
            r.tick(self.poll.registry());
        }
        c.deadline()
    }
}
