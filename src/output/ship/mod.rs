//! `ringhook ship`: every logged event delivered onward, at least once, in log order.
//!
//! Here: the driver, which follows the log (through `crate::log`'s follower and cursor), keeps
//! a window of records in flight and advances the cursor only over the contiguous prefix the
//! sink confirmed (or that went to the dead-letter file, synced first); `record`, what a line
//! means to a sink; `sink`, the trait every sink implements; one file per sink (`http`, `nats/`
//! with its client). It never writes the event log, and never skips a record: a sink that fails
//! is retried forever with capped, jittered backoff (the log is the buffer; a sink's
//! `Retry-After` can lengthen the wait, never shorten it).
//!
//! One shipper per cursor: it holds the cursor's lock (`crate::log::cursor::lock`) while it runs.
//! Run by `serve --ship` (`--supervised`), it dies with serve: a parent-death signal, and the
//! end of its stdin (a pipe only serve holds) as the second way to notice.
//!
//! Status for a supervisor (`serve --ship`): a JSON line on stdout every 10 s and at exit,
//! `{"ship":{"delivered":N,"deadLettered":N,"lagEvents":N,"lagSeconds":S,"failing":bool}}`.

pub(crate) mod http;
pub(crate) mod nats;
pub(crate) mod record;
mod sink;

use std::fs::OpenOptions;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::cli::{self, Flags};
use crate::config::{Setting, Vars};
use crate::error::Error;
use crate::log::cursor::{self, Cursor};
use crate::log::follow::{self, Follower, Start};
use crate::oplog::Escaped;
use record::Shippable;
pub(crate) use sink::{Outgoing, SMALLEST_LIMIT, Sink, Verdict};

/// First wait after a failure; doubles per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The cursor is written at most this often while records flow (and whenever caught up).
const COMMIT_EVERY: Duration = Duration::from_millis(200);

/// Where events go: one variant per sink, each sink's settings in its own file.
#[derive(Debug, Clone)]
pub(crate) enum SinkConfig {
    /// `http://` or `https://`.
    Http(http::HttpConfig),
    /// `nats://HOST:PORT/SUBJECT` or `tls://…`.
    Nats(nats::NatsConfig),
}

/// `--from`: where to start instead of the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartAt {
    /// The first record of the log file.
    Start,
    /// After the last record now in the log file.
    End,
    /// The first record received at or after this time.
    Time(SystemTime),
    /// The record with this uuid (key).
    Key(String),
}

/// Validated settings of `ringhook ship`.
#[derive(Debug, Clone)]
pub(crate) struct ShipConfig {
    /// The event log followed.
    pub log_file: PathBuf,
    /// The sink.
    pub to: SinkConfig,
    /// The cursor file (default: `FILE.cursor`).
    pub cursor: PathBuf,
    /// Records the sink refused (default: `FILE.dead-letter`).
    pub dead_letter: PathBuf,
    /// `--from`.
    pub from: Option<StartAt>,
    /// `--once`: ship what is there, then exit.
    pub once: bool,
    /// `--supervised`: stop when stdin ends or the parent dies (`serve --ship`).
    pub supervised: bool,
    /// `--dry-run`: print what would be sent; touch nothing.
    pub dry_run: bool,
    /// Records in flight at most (NATS).
    pub window: usize,
    /// Trust roots for TLS (`RINGHOOK_CA_FILE`).
    pub roots: crate::https::TrustRoots,
    /// Wait for one answer (HTTP) or acknowledgement (NATS) at most this long.
    pub timeout: Duration,
    /// Status line and lag report interval.
    pub status_every: Duration,
}

fn credentials_in_url(s: &Setting) -> Error {
    Error::Config(format!(
        "invalid {}: credentials do not belong in a URL (ps shows it); set RINGHOOK_SHIP_TOKEN, \
         NATS_USER and NATS_PASSWORD, NATS_TOKEN (or their _FILE variants), or NATS_CREDS in the \
         environment or the env file",
        s.origin
    ))
}

/// A sink URL's scheme and what follows `://`, with no credentials in it.
fn split_url(s: &Setting) -> Result<(&str, &str), Error> {
    let t = s.text.trim();
    let (scheme, rest) = t.split_once("://").ok_or_else(|| {
        crate::config::invalid(s, "expected http://, https://, nats:// or tls://")
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(credentials_in_url(s));
    }
    Ok((scheme, rest))
}

impl SinkConfig {
    /// Checks `--to` / `--ship` alone, as `serve --ship` does at start-up before its child
    /// reads the sink's secrets.
    pub(crate) fn check_url(s: &Setting) -> Result<(), Error> {
        match split_url(s)? {
            ("http" | "https", _) => crate::config::parse_url(s).map(|_| ()),
            (scheme @ ("nats" | "tls"), rest) => {
                nats::NatsConfig::parse_url(s, scheme, rest).map(|_| ())
            }
            _ => Err(crate::config::invalid(
                s,
                "expected http://, https://, nats:// or tls://",
            )),
        }
    }

    /// The sink `s` names, with its secrets from `vars` (only the named sink's are read: an env
    /// file shared with other tools may hold any of the others).
    pub(crate) fn resolve(s: &Setting, vars: &Vars) -> Result<SinkConfig, Error> {
        match split_url(s)? {
            ("http" | "https", _) => Ok(SinkConfig::Http(http::HttpConfig::resolve(s, vars)?)),
            (scheme @ ("nats" | "tls"), rest) => Ok(SinkConfig::Nats(nats::NatsConfig::resolve(
                s, scheme, rest, vars,
            )?)),
            _ => Err(crate::config::invalid(
                s,
                "expected http://, https://, nats:// or tls://",
            )),
        }
    }

    /// The sink, ready to connect on its first record.
    fn open(&self, cfg: &ShipConfig) -> Box<dyn Sink> {
        match self {
            SinkConfig::Http(c) => Box::new(http::HttpSink::new(c, &cfg.roots, cfg.timeout)),
            SinkConfig::Nats(c) => Box::new(nats::NatsSink::new(
                c,
                cfg.roots.clone(),
                cfg.timeout,
                cfg.window,
            )),
        }
    }
}

fn parse_from(s: &Setting) -> Result<StartAt, Error> {
    let t = s.text.trim();
    Ok(match t {
        "start" => StartAt::Start,
        "end" => StartAt::End,
        _ if t.as_bytes().first().is_some_and(u8::is_ascii_digit) && t.contains(':') => {
            StartAt::Time(humantime::parse_rfc3339_weak(t).map_err(|_| {
                crate::config::invalid(s, "expected start, end, an RFC 3339 time or a uuid")
            })?)
        }
        _ if !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()) => {
            StartAt::Key(t.to_string())
        }
        _ => {
            return Err(crate::config::invalid(
                s,
                "expected start, end, an RFC 3339 time or a uuid",
            ));
        }
    })
}

impl ShipConfig {
    /// Validates flags and variables.
    pub(crate) fn resolve(flags: &Flags, vars: &Vars) -> Result<ShipConfig, Error> {
        let need = |opt: &crate::cli::Opt| {
            vars.flag_or(flags, opt).ok_or_else(|| {
                Error::Config(format!(
                    "'ringhook ship' needs {} (or {})",
                    opt.name,
                    opt.env.join(", ")
                ))
            })
        };
        let log = need(&cli::LOG_FILE)?;
        if log.text == "-" {
            return Err(Error::Config(format!(
                "invalid {}: ship follows a file, not stdout",
                log.origin
            )));
        }
        let log_file = PathBuf::from(&log.text);
        let to = SinkConfig::resolve(&need(&cli::TO)?, vars)?;
        let beside = |suffix: &str| {
            let mut p = log_file.clone().into_os_string();
            p.push(suffix);
            PathBuf::from(p)
        };
        let cursor = vars
            .flag_or(flags, &cli::CURSOR)
            .map_or_else(|| beside(".cursor"), |s| PathBuf::from(s.text));
        let dead_letter = vars
            .flag_or(flags, &cli::DEAD_LETTER)
            .map_or_else(|| beside(".dead-letter"), |s| PathBuf::from(s.text));
        for (opt, file, ending) in [
            (&cli::CURSOR, &cursor, ".cursor"),
            (&cli::DEAD_LETTER, &dead_letter, ".dead-letter"),
        ] {
            if crate::log::rotated::taken_for_log(&log_file, file) {
                return Err(Error::Config(format!(
                    "{} {}: in the log's folder and named after {}, it would be read as the log \
                     or a rotated copy of it; end its name in {ending} or put it elsewhere",
                    opt.name,
                    file.display(),
                    log_file.display()
                )));
            }
        }
        let from = vars
            .flag_or(flags, &cli::FROM)
            .map(|s| parse_from(&s))
            .transpose()?;
        let window =
            crate::config::parse_count(&vars.flag_or_default(flags, &cli::WINDOW), 1, 4096)?
                as usize;
        let duration = |names: &[&str], max: u64| match vars.get(names) {
            Some(s) => crate::config::parse_duration_in(
                &s,
                Duration::from_millis(10),
                Duration::from_secs(max),
            ),
            None => Ok(Duration::from_secs(10)),
        };
        let timeout = duration(cli::SHIP_TIMEOUT, 3600)?;
        let status_every = duration(cli::SHIP_STATUS_EVERY, 86400)?;
        Ok(ShipConfig {
            log_file,
            to,
            cursor,
            dead_letter,
            from,
            once: flags.switch(&cli::ONCE),
            supervised: flags.switch(&cli::SUPERVISED),
            dry_run: flags.switch(&cli::DRY_RUN),
            window,
            roots: crate::config::trust_roots(vars)?,
            timeout,
            status_every,
        })
    }
}

/// One record on its way.
#[derive(Debug)]
pub(crate) struct Item {
    /// The log line, `\n` excluded.
    pub line: Vec<u8>,
    /// What to ship, or why it cannot be.
    pub ship: Result<Shippable, &'static str>,
    /// The cursor once this record is done.
    pub after: Cursor,
    done: Option<Verdict>,
}

impl Item {
    /// Why it goes to the dead-letter file without being offered to the sink, if it does.
    fn refusal(&self) -> Option<&'static str> {
        match &self.ship {
            Err(why) => Some(why),
            Ok(s) => s.refusal(),
        }
    }

    /// The key, for the operational log (escaped there: it came from a request).
    fn key(&self) -> Option<&str> {
        self.ship.as_ref().ok().map(|s| s.key.as_str())
    }

    /// What a sink sends for this record; `None` when it goes to the dead-letter file.
    fn outgoing(&self) -> Option<Outgoing<'_>> {
        if self.refusal().is_some() {
            return None;
        }
        let s = self.ship.as_ref().ok()?;
        Some(Outgoing {
            key: &s.key,
            event: &s.event,
            received_at: &s.received_at,
            payload: &self.line[s.payload.clone()],
        })
    }
}

/// The wait before retry number `failures` (1, 2, …): doubling from 200 ms up to 30 s, scaled
/// by `jitter` in `0..1024` to 50–100 %, or the sink's `Retry-After` when that is longer. A
/// `Retry-After` of 0 (or a past date, read as none) never shortens the wait: an overloaded
/// sink saying "now" must not get a retry loop without pause.
/// (Integers only: float formatting and arithmetic would cost the binary ~15 KB.)
pub(crate) fn backoff(failures: u32, retry_after: Option<Duration>, jitter: u32) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let ours = exp.min(MAX_BACKOFF) * (1024 + jitter.min(1023)) / 2048;
    retry_after.map_or(ours, |a| a.max(ours))
}

/// A random number (std's hasher keys are random per process and call).
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// A random number in `0..1024`.
fn jitter() -> u32 {
    (random() >> 54) as u32
}

/// Milliseconds as seconds with three decimals, without float formatting.
fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Counters a supervisor reads from the status line.
#[derive(Debug, Default)]
struct Stats {
    delivered: u64,
    dead_lettered: u64,
}

/// `--supervised` (how `serve --ship` runs ship): SIGTERM when the parent dies
/// (PR_SET_PDEATHSIG), so a SIGKILLed serve leaves no shipper behind to race its successor's.
/// A parent that died before this was set shows as the end of stdin ([`parent_gone`]).
fn die_with_parent() {
    use rustix::process::{Signal, set_parent_process_death_signal};
    if let Err(e) = set_parent_process_death_signal(Some(Signal::TERM)) {
        warn!("--supervised: no signal when the parent ends ({e}); watching stdin only");
    }
}

/// True when stdin (under `--supervised`, a pipe the parent holds and never writes) has
/// reached its end or an error: the parent is gone. Looked at without waiting.
fn parent_gone() -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&now)), Ok(n) if n > 0)
}

/// Runs `ringhook ship`.
pub(crate) fn run(cfg: ShipConfig) -> Result<(), Error> {
    let supervised = cfg.supervised && !cfg.dry_run;
    if supervised {
        die_with_parent();
    }
    // Held until the process ends, however it ends: one writer per cursor.
    let _lock = if cfg.dry_run {
        None
    } else {
        let held = cursor::lock(&cfg.cursor)
            .map_err(|e| Error::runtime(format!("cursor {}: {e}", cfg.cursor.display())))?;
        Some(held.ok_or_else(|| {
            Error::Config(format!(
                "cursor {} is in use by another ringhook ship (it holds {}): one shipper per \
                 cursor; give this one its own --cursor, or stop the other",
                cfg.cursor.display(),
                cursor::lock_path(&cfg.cursor).display()
            ))
        })?)
    };
    let stop = Arc::new(AtomicBool::new(false));
    // SIGHUP (logrotate's habit, or a `kill -HUP` meant for serve) is ignored: rotation is
    // followed without it.
    let hup = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGHUP, &hup),
    ] {
        signal_hook::flag::register(sig, flag.clone())
            .map_err(|e| Error::runtime(format!("signal handler: {e}")))?;
    }
    let start = start_point(&cfg)?;
    let mut follower = Follower::open(&cfg.log_file, &start).map_err(|e| match start {
        Start::At(_) => Error::Config(format!("cursor {}: {e}", cfg.cursor.display())),
        _ => Error::runtime(format!("--log-file {e}")),
    })?;
    let mut sink = cfg.to.open(&cfg);
    if cfg.dry_run {
        return dry_run(&cfg, sink.as_ref(), &mut follower);
    }
    if cfg.from.is_some() {
        store_cursor(&cfg, &follower.cursor())?;
    }
    info!(
        "shipping {} to {} from byte {}",
        cfg.log_file.display(),
        sink.describe(),
        follower.cursor().offset
    );
    let stored = follower.cursor();
    Driver {
        cfg: &cfg,
        stored,
        follower,
        sink: sink.as_mut(),
        stop,
        supervised,
        stats: Stats::default(),
    }
    .run()
}

fn store_cursor(cfg: &ShipConfig, c: &Cursor) -> Result<(), Error> {
    cursor::store(&cfg.cursor, c)
        .map_err(|e| Error::runtime(format!("cursor {}: {e}", cfg.cursor.display())))
}

/// Where to begin: `--from`, else the cursor, else the start of the log.
fn start_point(cfg: &ShipConfig) -> Result<Start, Error> {
    let label = || format!("--log-file {}", cfg.log_file.display());
    match &cfg.from {
        Some(StartAt::Start) => Ok(Start::Beginning),
        Some(StartAt::End) => Ok(Start::End),
        Some(from) => {
            let mut f = Follower::open(&cfg.log_file, &Start::Beginning)
                .map_err(|e| Error::runtime(format!("--log-file {e}")))?;
            let mut before = f.cursor();
            while let Some(line) = f
                .next_line()
                .map_err(|e| Error::runtime(format!("{}: {e}", label())))?
            {
                if let Ok(s) = record::parse(&line.bytes) {
                    let hit = match from {
                        StartAt::Time(t) => {
                            humantime::parse_rfc3339_weak(&s.received_at).is_ok_and(|r| r >= *t)
                        }
                        StartAt::Key(k) => s.key == *k,
                        _ => unreachable!(),
                    };
                    if hit {
                        return Ok(Start::At(before));
                    }
                }
                before = line.after;
            }
            Err(Error::Config(format!(
                "--from: no record in {} matches it",
                cfg.log_file.display()
            )))
        }
        None => match cursor::load(&cfg.cursor).map_err(Error::Config)? {
            Some(c) => Ok(Start::At(c)),
            None => Ok(Start::Beginning),
        },
    }
}

fn dry_run(cfg: &ShipConfig, sink: &dyn Sink, follower: &mut Follower) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    while let Some(line) = follower
        .next_line()
        .map_err(|e| Error::runtime(format!("--log-file {}: {e}", cfg.log_file.display())))?
    {
        let item = Item {
            ship: record::parse(&line.bytes),
            line: line.bytes,
            after: line.after,
            done: None,
        };
        let text = match (item.outgoing(), item.key()) {
            (Some(r), _) => format!(
                "send {} to {} ({} bytes)",
                Escaped(r.key),
                Escaped(&sink.destination(&r)),
                r.payload.len()
            ),
            (None, Some(key)) => format!(
                "dead-letter {} (the line ending at byte {}): {}",
                Escaped(key),
                item.after.offset,
                item.refusal().unwrap_or("")
            ),
            (None, None) => format!(
                "dead-letter the line ending at byte {}: {}",
                item.after.offset,
                item.refusal().unwrap_or("")
            ),
        };
        if writeln!(out, "{text}").is_err() {
            break;
        }
    }
    Ok(())
}

struct Driver<'a> {
    cfg: &'a ShipConfig,
    follower: Follower,
    sink: &'a mut dyn Sink,
    stop: Arc<AtomicBool>,
    /// `--supervised`: the end of stdin means the parent is gone.
    supervised: bool,
    stats: Stats,
    /// The cursor last written.
    stored: Cursor,
}

impl Driver<'_> {
    /// A stop signal came, or serve (the supervisor) is gone.
    fn stopping(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return true;
        }
        if self.supervised && parent_gone() {
            info!("--supervised: stdin ended (the parent is gone); stopping");
            self.stop.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    fn last_stored(&self) -> Cursor {
        self.stored.clone()
    }

    /// Appends the record to the dead-letter file, synced before the cursor passes it.
    fn dead_letter(&mut self, item: &Item, status: u16, reason: &str) -> Result<(), Error> {
        let key = item.key().unwrap_or("-");
        warn!("dead-lettered {}: {}", Escaped(key), Escaped(reason));
        let mut line = Vec::with_capacity(item.line.len() + 128);
        line.extend_from_slice(b"{\"record\":");
        if serde_json::from_slice::<&serde_json::value::RawValue>(&item.line).is_ok() {
            line.extend_from_slice(&item.line);
        } else {
            serde_json::to_writer(&mut line, &String::from_utf8_lossy(&item.line))
                .expect("a Vec takes any write");
        }
        line.extend_from_slice(format!(",\"status\":{status},\"reason\":").as_bytes());
        serde_json::to_writer(&mut line, reason).expect("a Vec takes any write");
        line.extend_from_slice(
            format!(
                ",\"time\":\"{}\"}}\n",
                humantime::format_rfc3339_millis(SystemTime::now())
            )
            .as_bytes(),
        );
        let label = || format!("--dead-letter {}", self.cfg.dead_letter.display());
        // Whole notifications (SMS text, phone numbers): the owner's eyes only, as the log.
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.cfg.dead_letter)
            .map_err(|e| Error::runtime(format!("{}: {e}", label())))?;
        let mode = f.metadata().map_or(0, |m| m.permissions().mode() & 0o777);
        if mode & 0o077 != 0 {
            match f.set_permissions(std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => warn!("{}: was mode {mode:o}; now 0600", label()),
                Err(e) => warn!("{}: mode {mode:o} (others can read it): {e}", label()),
            }
        }
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::runtime(format!("{}: {e}", label())))?;
        self.stats.dead_lettered += 1;
        Ok(())
    }

    /// Sleeps `d` after a failure, waking early for a stop signal, and writes the status
    /// (failing) whenever it is due meanwhile: a backoff lasts up to 30 s and a `Retry-After` up
    /// to an hour, and a supervisor must not read the line written before the failure all along.
    fn sleep(
        &mut self,
        d: Duration,
        pending: &std::collections::VecDeque<Item>,
        next_status: &mut Instant,
    ) {
        let end = Instant::now() + d;
        while !self.stopping() {
            let now = Instant::now();
            if now >= end {
                break;
            }
            if now >= *next_status {
                *next_status = now + self.cfg.status_every;
                self.status(pending, true, true);
            }
            let wake = end.min(*next_status) - now;
            std::thread::sleep(wake.min(Duration::from_millis(50)));
        }
    }

    /// Complete lines after the committed cursor: those read and not yet confirmed, and those
    /// not yet read, in this file and the later ones (the follower counts them incrementally).
    fn lag_events(&mut self, pending: usize) -> u64 {
        let unread = self.follower.unread().unwrap_or_else(|e| {
            warn!("the lag could not be counted: {e}");
            0
        });
        pending as u64 + unread
    }

    /// The status line on stdout, and the lag on the operational log when there is one.
    fn status(&mut self, pending: &std::collections::VecDeque<Item>, failing: bool, log: bool) {
        let behind = self.lag_events(pending.len());
        // The oldest record with a time of receipt (a line that is not a record has none).
        let lag_secs = pending
            .iter()
            .find_map(|i| i.ship.as_ref().ok())
            .and_then(|s| humantime::parse_rfc3339_weak(&s.received_at).ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        let lag_secs = secs(lag_secs);
        if log && behind > 0 {
            info!("lag: {behind} events, {lag_secs}s");
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{{\"ship\":{{\"delivered\":{},\"deadLettered\":{},\"lagEvents\":{behind},\"lagSeconds\":{lag_secs},\"failing\":{failing}}}}}",
            self.stats.delivered, self.stats.dead_lettered
        );
        let _ = out.flush();
    }

    fn run(mut self) -> Result<(), Error> {
        let mut pending: std::collections::VecDeque<Item> = Default::default();
        // Slot number of pending[0].
        let mut first_slot: u64 = 0;
        let mut submitted = 0usize;
        let mut committed = self.follower.cursor();
        let mut last_commit = Instant::now();
        let mut failures = 0u32;
        let mut failing_since: Option<(SystemTime, Instant)> = None;
        let mut next_status = Instant::now() + self.cfg.status_every;
        let mut batch_start: Option<(Instant, u64)> = None;
        let mut verdicts = Vec::new();
        let mut eof;
        loop {
            if self.stopping() {
                break;
            }
            // Fill the window.
            eof = false;
            while pending.len() < self.sink.window().max(1) {
                let line = self.follower.next_line().map_err(|e| {
                    Error::runtime(format!("--log-file {}: {e}", self.cfg.log_file.display()))
                })?;
                let Some(line) = line else {
                    eof = true;
                    break;
                };
                batch_start.get_or_insert((Instant::now(), self.stats.delivered));
                let mut item = Item {
                    ship: record::parse(&line.bytes),
                    line: line.bytes,
                    after: line.after,
                    done: None,
                };
                item.done = item.refusal().map(|why| Verdict::DeadLetter {
                    status: 0,
                    reason: why.to_string(),
                });
                pending.push_back(item);
            }
            // Here, with the window full, the oldest record not shipped is in it (once records
            // are confirmed, the window may be empty while more wait to be read).
            let now = Instant::now();
            if now >= next_status {
                next_status = now + self.cfg.status_every;
                self.status(&pending, failing_since.is_some(), true);
            }
            // Submit what is not yet in flight.
            let mut trouble = None;
            while submitted < pending.len() {
                let item = &pending[submitted];
                if item.done.is_none() {
                    let record = item.outgoing().expect("only shippable items are submitted");
                    if let Err(e) = self.sink.submit(first_slot + submitted as u64, &record) {
                        trouble = Some((None, e));
                        break;
                    }
                }
                submitted += 1;
            }
            // Collect verdicts.
            if trouble.is_none() && pending.iter().any(|i| i.done.is_none()) {
                let wait = if eof {
                    follow::POLL
                } else {
                    Duration::from_millis(20)
                };
                if let Err(e) = self.sink.poll(wait, &mut verdicts) {
                    trouble = Some((None, e));
                }
            }
            for (slot, v) in verdicts.drain(..) {
                let Some(i) = slot.checked_sub(first_slot).map(|i| i as usize) else {
                    continue;
                };
                let Some(item) = pending.get_mut(i) else {
                    continue;
                };
                match v {
                    Verdict::Retry { after, reason } => {
                        if trouble.is_none() {
                            trouble = Some((after, reason));
                        }
                    }
                    v => {
                        if item.done.is_none() {
                            item.done = Some(v);
                        }
                    }
                }
            }
            // Retire the finished prefix.
            while pending.front().is_some_and(|i| i.done.is_some()) {
                let item = pending.pop_front().expect("checked");
                first_slot += 1;
                submitted = submitted.saturating_sub(1);
                match item.done.as_ref().expect("checked") {
                    Verdict::DeadLetter { status, reason } => {
                        self.dead_letter(&item, *status, reason)?;
                    }
                    _ => self.stats.delivered += 1,
                }
                committed = item.after.clone();
                failures = 0;
            }
            if let Some((since, _)) = failing_since.take_if(|_| trouble.is_none() && failures == 0)
            {
                info!(
                    "sink {} recovered (failing since {})",
                    self.sink.describe(),
                    humantime::format_rfc3339_seconds(since)
                );
            }
            if let Some((after, reason)) = trouble {
                failures += 1;
                if failing_since.is_none() {
                    failing_since = Some((SystemTime::now(), Instant::now()));
                    // The reason may quote the sink (a NATS -ERR, a TLS alert): escaped.
                    warn!(
                        "sink {} failing since {}: {}",
                        self.sink.describe(),
                        humantime::format_rfc3339_seconds(SystemTime::now()),
                        Escaped(&reason)
                    );
                }
                self.sink.reset();
                submitted = 0;
                self.sleep(
                    backoff(failures, after, jitter()),
                    &pending,
                    &mut next_status,
                );
            }
            let caught_up = eof && pending.is_empty();
            let now = Instant::now();
            if committed != self.last_stored() && (caught_up || now >= last_commit + COMMIT_EVERY) {
                store_cursor(self.cfg, &committed)?;
                self.stored = committed.clone();
                last_commit = now;
            }
            if caught_up {
                if let Some((t, n)) = batch_start.take() {
                    info!(
                        "caught up: {} events in {}s",
                        self.stats.delivered - n,
                        secs(t.elapsed())
                    );
                }
            }
            if caught_up {
                if self.cfg.once {
                    break;
                }
                self.sink.idle();
                self.follower.wait();
            }
        }
        if committed != self.last_stored() {
            store_cursor(self.cfg, &committed)?;
        }
        self.status(&pending, failing_since.is_some(), false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_jitters_and_caps() {
        let ms = Duration::from_millis;
        for (failures, after, jitter, want) in [
            (1, None, 1024, ms(200) * 2047 / 2048),
            (1, None, 0, ms(100)),
            (2, None, 512, ms(300)),
            (5, None, 0, ms(1600)),
            (9, None, 0, MAX_BACKOFF / 2),
            (u32::MAX, None, 0, MAX_BACKOFF / 2),
            (3, Some(ms(7000)), 300, ms(7000)),
            // Retry-After: 0 (or shorter than ours) never shortens the backoff.
            (3, Some(Duration::ZERO), 0, ms(400)),
            (3, Some(ms(500)), 1024, ms(800) * 2047 / 2048),
        ] {
            assert_eq!(
                backoff(failures, after, jitter),
                want,
                "{failures} {after:?}"
            );
        }
        assert!(jitter() < 1024);
        assert_eq!(secs(ms(61_005)), "61.005");
    }

    #[test]
    fn sink_urls() {
        let s = |t: &str| Setting {
            text: t.into(),
            origin: "--to".into(),
        };
        let vars = Vars::default();
        let ok = [
            ("https://h/x", "https://h/x"),
            (
                "nats://127.0.0.1:4222/rc.{event}",
                "nats://127.0.0.1:4222/rc.{event}",
            ),
            ("tls://n.example:4443/events", "tls://n.example:4443/events"),
        ];
        for (t, want) in ok {
            SinkConfig::check_url(&s(t)).unwrap();
            let sink = SinkConfig::resolve(&s(t), &vars).unwrap();
            let cfg = ShipConfig {
                log_file: "x".into(),
                to: sink.clone(),
                cursor: "c".into(),
                dead_letter: "d".into(),
                from: None,
                once: false,
                supervised: false,
                dry_run: false,
                window: 1,
                roots: Default::default(),
                timeout: Duration::from_secs(1),
                status_every: Duration::from_secs(1),
            };
            assert_eq!(sink.open(&cfg).describe(), want);
        }
        for bad in [
            "nats://h:4222/a..b",
            "nats://h:4222/a.>",
            "nats://h:0/a",
            "nats://:4222/a",
            "nats://h:4222/a b",
            "tls://user@h:1/a",
            "https://user:pw@h/x",
            "h:4222",
            "ftp://h/x",
        ] {
            assert!(SinkConfig::check_url(&s(bad)).is_err(), "{bad}");
        }
    }
}
