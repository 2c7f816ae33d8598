//! `ringhook connect`'s session child beside the loop: ringhook re-executed with
//! [`crate::cli::CONNECT_SESSION`] set, which holds the WebSocket and prints each notification
//! body as one line (`N <body>`), its state (`S up`, `S down`) and gaps to catch up
//! (`C <time>`). The loop logs the bodies exactly as webhook notifications (same
//! [`Record::new`], same dedupe, same group commit), answers `/health` 200 only while the
//! child is subscribed, and starts the catch-up child for a gap. A child that dies is started
//! again after 1 s doubling to a minute; at shutdown it gets SIGTERM (it deletes the
//! subscription and revokes its session) and, after the grace, SIGKILL.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use mio::Registry;

use super::{self as child, Running};
use crate::log::Record;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A child that ran this long was healthy: the next failure starts the backoff again.
const HEALTHY: Duration = Duration::from_secs(60);
/// A child's exit status meaning "configuration": not started again (the reason is logged).
const CONFIG_EXIT: [i32; 2] = [1, 2];

/// How to run the session child.
#[derive(Debug, Clone)]
pub(crate) struct ConnectorConfig {
    /// `--env-file`, passed on.
    pub env_file: Option<PathBuf>,
    /// Flags passed on (`--state`).
    pub args: Vec<std::ffi::OsString>,
    /// Largest line accepted from the child (the body limit and some).
    pub max_line: usize,
    /// The state file's lock, which the child holds too (the same open file, so the same
    /// `flock`): a child that outlives a killed loop keeps a new `connect` off its session until
    /// it is gone.
    pub lock: Option<std::sync::Arc<std::fs::File>>,
}

/// What the loop learns from one read of the child.
#[derive(Default)]
pub(crate) struct Heard {
    /// Notifications to log.
    pub records: Vec<Record>,
    /// A gap to catch up, since this time (as the child wrote it).
    pub catch_up: Option<String>,
}

/// The session child and its restarts.
pub(crate) struct Connector {
    cfg: ConnectorConfig,
    run: Option<Running>,
    buf: Vec<u8>,
    subscribed: bool,
    failures: u32,
    next_start: Option<Instant>,
    /// The child ended for good (a missing permission, refused credentials): the loop stops.
    pub(crate) gave_up: bool,
    /// The loop was asked to stop for it.
    told: bool,
    stopping: bool,
    /// Times the child said it was subscribed (a new subscription or a recovered session).
    ups: u64,
    /// Gaps it asked to catch up.
    gaps: u64,
    /// Times the child was started again after it ended.
    restarts: u64,
}

impl Connector {
    /// The child starts at the loop's first turn.
    pub(crate) fn new(cfg: ConnectorConfig) -> Connector {
        Connector {
            cfg,
            run: None,
            buf: Vec::new(),
            subscribed: false,
            failures: 0,
            next_start: Some(Instant::now()),
            gave_up: false,
            told: false,
            stopping: false,
            ups: 0,
            gaps: 0,
            restarts: 0,
        }
    }

    /// True while the child says it is subscribed.
    pub(crate) fn subscribed(&self) -> bool {
        self.subscribed && self.run.is_some()
    }

    /// True when no child runs.
    pub(crate) fn is_idle(&self) -> bool {
        self.run.is_none()
    }

    /// True once, when the child ended for good: the loop then stops.
    pub(crate) fn wants_stop(&mut self) -> bool {
        let now = self.gave_up && !self.told;
        self.told |= now;
        now
    }

    /// When the loop must wake to start the child again.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.run.is_some() || self.stopping {
            return None;
        }
        self.next_start
    }

    /// Starts the child when due.
    pub(crate) fn tick(&mut self, now: Instant, registry: &Registry) {
        if self.run.is_some() || self.stopping || self.gave_up {
            return;
        }
        match self.next_start {
            Some(t) if now >= t => {}
            _ => return,
        }
        let mut cmd = child::ringhook(self.cfg.env_file.as_deref());
        cmd.arg("connect")
            .args(&self.cfg.args)
            .env(crate::cli::CONNECT_SESSION[0], "1")
            .stdin(Stdio::null());
        // A copy of the lock's descriptor without close-on-exec, for this child only (the loop
        // is the one thread that starts children): closed here once the child has it.
        let spawned = match self.cfg.lock.as_deref().map(rustix::io::dup).transpose() {
            Ok(held) => {
                let spawned =
                    Running::spawn(&mut cmd, registry, crate::input::serve::wake::CONNECT);
                drop(held);
                spawned
            }
            Err(e) => Err(e.into()),
        };
        match spawned {
            Ok(proc) => {
                self.run = Some(proc);
                self.next_start = None;
            }
            Err(e) => {
                error!("cannot start the WebSocket session child: {e}");
                self.failures += 1;
                self.next_start = Some(now + self.backoff());
            }
        }
    }

    fn backoff(&self) -> Duration {
        child::doubling(FIRST_BACKOFF, self.failures, 6, MAX_BACKOFF)
    }

    /// The child's stdout is readable: what it said.
    pub(crate) fn on_ready(&mut self, registry: &Registry) -> Heard {
        let mut heard = Heard::default();
        let Some(run) = &mut self.run else {
            return heard;
        };
        let buf = &mut self.buf;
        run.stdout
            .read_available(registry, |chunk| buf.extend_from_slice(chunk));
        let now = SystemTime::now();
        let mut start = 0;
        while let Some(i) = memchr::memchr(b'\n', &self.buf[start..]) {
            let line = &self.buf[start..start + i];
            start += i + 1;
            match line {
                [b'N', b' ', body @ ..] => heard.records.push(Record::new(body, now)),
                b"S up" => {
                    self.subscribed = true;
                    self.ups += 1;
                }
                b"S down" => self.subscribed = false,
                [b'C', b' ', since @ ..] => {
                    self.gaps += 1;
                    heard.catch_up = Some(String::from_utf8_lossy(since).into_owned())
                }
                _ => {}
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > self.cfg.max_line {
            // Not one of ours: the child limits a message to the body limit.
            self.buf.clear();
        }
        heard
    }

    /// Collects the child when it has exited (on SIGCHLD).
    pub(crate) fn reap(&mut self, registry: &Registry) {
        let Some(run) = &mut self.run else { return };
        let Some(status) = run.exited("cannot collect the WebSocket session child") else {
            return;
        };
        run.stdout.close(registry);
        let ran = run.started.elapsed();
        self.run = None;
        self.subscribed = false;
        self.buf.clear();
        if self.stopping {
            return;
        }
        if status.code().is_some_and(|c| CONFIG_EXIT.contains(&c)) {
            error!("connect: the WebSocket session cannot go on (the reason is above); stopping");
            self.gave_up = true;
            return;
        }
        if ran >= HEALTHY {
            self.failures = 0;
        }
        self.restarts += 1;
        self.failures += 1;
        let wait = self.backoff();
        warn!(
            "the WebSocket session child ended ({status}); starting it again in {:.1} s",
            wait.as_secs_f64()
        );
        self.next_start = Some(Instant::now() + wait);
    }

    /// The WebSocket families of `/metrics`, in the text exposition format, after serve's.
    pub(crate) fn render_metrics(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let families = [
            (
                "ringhook_websocket_subscribed",
                "gauge",
                "1 while the WebSocket session is subscribed.",
                u64::from(self.subscribed()),
            ),
            (
                "ringhook_websocket_subscribed_total",
                "counter",
                "Connections that got subscribed (a new subscription or a recovered session).",
                self.ups,
            ),
            (
                "ringhook_websocket_gaps_total",
                "counter",
                "Gaps the session could not recover, each caught up.",
                self.gaps,
            ),
            (
                "ringhook_websocket_session_restarts_total",
                "counter",
                "Times the session child ended and was started again.",
                self.restarts,
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
    }

    /// At shutdown: SIGTERM (the child deletes its subscription and revokes its session).
    pub(crate) fn terminate(&mut self) {
        self.stopping = true;
        if let Some(r) = &self.run {
            r.terminate();
        }
    }

    /// The grace is over: SIGKILL.
    pub(crate) fn kill(&mut self) {
        if let Some(mut r) = self.run.take() {
            r.kill();
        }
    }
}
