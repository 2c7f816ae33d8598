//! `serve --ship URL`: `ringhook ship` as a child process beside the loop, as `--register` runs
//! `register`. The receiver never waits on the sink: the child follows the log file on its own,
//! with its own cursor. If it dies it is started again, after 1 s doubling to a minute (reset
//! once it has run a minute); at shutdown it gets SIGTERM (it writes its cursor and exits) and,
//! after 5 s, SIGKILL. Its stdout is its status line, kept here for the metrics
//! ([`ShipStatus`]); its stderr is the operational log's, shared. Its stdin is a pipe held here
//! and never written: if serve dies, even by SIGKILL, the child sees its end (beside the
//! parent-death signal it asks for) and stops, so no shipper outlives serve to race the next.
//! The cursor's lock refuses a second shipper anyway (it exits 2 and is started again later).

use std::path::PathBuf;
use std::process::{ChildStdin, Stdio};
use std::time::{Duration, Instant};

use mio::Registry;

use super::{self as child, Running};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A child that ran this long was healthy: the next failure starts the backoff again.
const HEALTHY: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What `serve --ship` runs.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// `--ship`: the sink URL, validated as `ship --to` would.
    pub to: String,
    /// `--log-file`: the file the child follows.
    pub log_file: PathBuf,
    /// `--env-file`, passed on (the sink's secrets may be there).
    pub env_file: Option<PathBuf>,
}

/// The child's last status line: `{"ship":{"delivered":…}}`, counters since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShipStatus {
    /// Records the sink confirmed.
    pub delivered: u64,
    /// Records written to the dead-letter file.
    pub dead_lettered: u64,
    /// Complete lines after the cursor.
    pub lag_events: u64,
    /// Age of the oldest undelivered record, in milliseconds.
    pub lag_millis: u64,
    /// True while the sink is failing.
    pub failing: bool,
}

impl ShipStatus {
    /// Parses one status line; `None` for anything else.
    pub(crate) fn parse(line: &[u8]) -> Option<ShipStatus> {
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        let s = v.get("ship")?;
        let n = |k| s.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        // `lagSeconds` is written as seconds with three decimals; read it without floats.
        let lag = s
            .get("lagSeconds")
            .map(|l| l.to_string())
            .unwrap_or_default();
        let (whole, frac) = lag.split_once('.').unwrap_or((&lag, "0"));
        let frac: String = frac.chars().chain("000".chars()).take(3).collect();
        Some(ShipStatus {
            delivered: n("delivered"),
            dead_lettered: n("deadLettered"),
            lag_events: n("lagEvents"),
            lag_millis: whole.parse::<u64>().unwrap_or(0) * 1000 + frac.parse::<u64>().unwrap_or(0),
            failing: s.get("failing").and_then(serde_json::Value::as_bool) == Some(true),
        })
    }
}

struct ShipperRun {
    proc: Running,
    partial: Vec<u8>,
    /// The child's stdin, kept open while it should run: its end tells the child serve is gone.
    _stdin: Option<ChildStdin>,
}

/// The shipper child and its restarts.
pub(crate) struct Shipper {
    cfg: ShipperConfig,
    run: Option<ShipperRun>,
    next: Instant,
    failures: u32,
    /// The last status line the child printed.
    pub status: Option<ShipStatus>,
    /// Children started (1 + restarts).
    pub starts: u64,
}

impl Shipper {
    /// A shipper whose child starts at once.
    pub(crate) fn new(cfg: ShipperConfig, now: Instant) -> Shipper {
        Shipper {
            cfg,
            run: None,
            next: now,
            failures: 0,
            status: None,
            starts: 0,
        }
    }

    /// When the loop must wake up for us (`None` while the child runs).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.run.is_none().then_some(self.next)
    }

    /// Starts the child when it is due.
    pub(crate) fn tick(&mut self, now: Instant, registry: &Registry) {
        if self.run.is_some() || now < self.next {
            return;
        }
        let mut cmd = child::ringhook(self.cfg.env_file.as_deref());
        cmd.arg("ship")
            .arg("--log-file")
            .arg(&self.cfg.log_file)
            .arg("--to")
            .arg(&self.cfg.to)
            .arg("--supervised")
            .stdin(Stdio::piped());
        match Running::spawn(&mut cmd, registry, crate::input::serve::wake::SHIPPER) {
            Ok(mut proc) => {
                self.starts += 1;
                info!("--ship: shipper started (pid {})", proc.child.id());
                self.run = Some(ShipperRun {
                    _stdin: proc.child.stdin.take(),
                    proc,
                    partial: Vec::new(),
                });
            }
            Err(e) => {
                error!("--ship: cannot start the shipper: {e}");
                self.failed(now);
            }
        }
    }

    /// The child's stdout is readable: take its status lines.
    pub(crate) fn on_ready(&mut self, registry: &Registry) {
        let Some(run) = &mut self.run else { return };
        if let Some(status) = read_status(run, registry) {
            self.status = Some(status);
        }
    }

    /// Collects the child when it has exited (on SIGCHLD) and schedules a restart.
    pub(crate) fn reap(&mut self, registry: &Registry) {
        let Some(run) = &mut self.run else { return };
        let Some(status) = run.proc.exited("--ship: cannot collect the shipper") else {
            return;
        };
        if let Some(s) = read_status(run, registry) {
            self.status = Some(s);
        }
        run.proc.stdout.close(registry);
        let run = self.run.take().expect("checked above");
        let now = Instant::now();
        if now.duration_since(run.proc.started) >= HEALTHY {
            self.failures = 0;
        }
        warn!("--ship: the shipper exited ({status})");
        self.failed(now);
    }

    fn failed(&mut self, now: Instant) {
        self.failures += 1;
        let wait = child::doubling(FIRST_BACKOFF, self.failures, 6, MAX_BACKOFF);
        self.next = now + wait;
        info!("--ship: starting the shipper again in {wait:?}");
    }

    /// At a stop signal: SIGTERM to the child (it writes its cursor and exits); no restart.
    pub(crate) fn terminate(&mut self) {
        self.next = Instant::now() + Duration::from_secs(86400 * 365);
        if let Some(run) = &self.run {
            run.proc.terminate();
        }
    }

    /// After the loop: waits for the child a few seconds, then SIGKILL (at least once holds:
    /// its cursor only lags).
    pub(crate) fn finish(&mut self) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        if !run.proc.ends_within(STOP_GRACE) {
            warn!("--ship: the shipper did not stop within {STOP_GRACE:?}; killing it");
            run.proc.kill();
        }
    }
}

/// Reads what the pipe holds; returns the last complete status line's status.
fn read_status(run: &mut ShipperRun, registry: &Registry) -> Option<ShipStatus> {
    let mut last = None;
    let partial = &mut run.partial;
    run.proc.stdout.read_available(registry, |chunk| {
        partial.extend_from_slice(chunk);
        while let Some(i) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=i).collect();
            if let Some(s) = ShipStatus::parse(&line) {
                last = Some(s);
            }
        }
        // A status line is short; more without a newline is not one.
        if partial.len() > 4096 {
            partial.clear();
        }
    });
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let s = ShipStatus::parse(
            br#"{"ship":{"delivered":7,"deadLettered":1,"lagEvents":3,"lagSeconds":12.05,"failing":true}}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            ShipStatus {
                delivered: 7,
                dead_lettered: 1,
                lag_events: 3,
                lag_millis: 12_050,
                failing: true
            }
        );
        assert_eq!(
            ShipStatus::parse(br#"{"ship":{"lagSeconds":0}}"#).map(|s| s.lag_millis),
            Some(0)
        );
        assert_eq!(ShipStatus::parse(b"send x to y"), None);
    }
}
