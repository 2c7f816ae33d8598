//! `serve --register`: the tutorial's one-command flow without blocking the loop.
//!
//! The receiver cannot call the platform and answer the platform's handshake on its one thread,
//! so the reconcile runs beside it: the binary re-executes itself as `ringhook register --json`,
//! the loop keeps answering (including the handshake the create triggers), and the child's JSON
//! answer becomes one line on the operational log. It runs at start, every `--register-every`,
//! at once when a subscription renewal reminder arrives, and (if asked) when notifications have
//! been quiet for `--register-quiet`. Never two at once; failures retry with backoff.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mio::Registry;

use super::{self as child, Running};

use crate::input::serve::metrics::RegisterStatus;
use crate::log::Record;

/// Retries after failures double up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Notifications whose event starts so are the platform's renewal reminders.
const REMINDER: &str = "/restapi/v1.0/subscription/";

/// How `serve --register` keeps the subscription alive.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// ReconcileRun the reconcile this often.
    pub every: Duration,
    /// Also run it when no notification came for this long.
    pub quiet: Option<Duration>,
    /// First retry after a failed run; doubles after each further failure, up to an hour.
    pub retry: Duration,
    /// Delete the subscription at a clean shutdown.
    pub unregister_on_exit: bool,
    /// `--env-file`, passed on to the child.
    pub env_file: Option<PathBuf>,
    /// Defaults chosen for the child (the tutorial's filters, a state file path).
    pub env: Vec<(String, String)>,
}

struct ReconcileRun {
    proc: Running,
    out: Vec<u8>,
    why: &'static str,
}

/// The reconcile child and its schedule.
pub(crate) struct Reconciler {
    cfg: ReconcileConfig,
    run: Option<ReconcileRun>,
    next: Instant,
    why_next: &'static str,
    failures: u32,
    last_event: Instant,
    /// A run succeeded since the last look (the catch-up follows it).
    succeeded: bool,
    /// What the runs reported, for the metrics.
    pub status: RegisterStatus,
}

impl Reconciler {
    /// A reconciler whose first run is due now.
    pub(crate) fn new(cfg: ReconcileConfig, now: Instant) -> Reconciler {
        Reconciler {
            cfg,
            run: None,
            next: now,
            why_next: "start",
            failures: 0,
            last_event: now,
            succeeded: false,
            status: RegisterStatus::default(),
        }
    }

    /// True while a register run is going on.
    pub(crate) fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// True once after each successful run.
    pub(crate) fn take_succeeded(&mut self) -> bool {
        std::mem::take(&mut self.succeeded)
    }

    fn command(&self, subcommand: &str) -> Command {
        let mut cmd = child::ringhook(self.cfg.env_file.as_deref());
        cmd.arg(subcommand).arg("--json");
        for (k, v) in &self.cfg.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// When the loop must wake up for us next (`None` while a run is going on).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.run.is_some() {
            return None;
        }
        let quiet = self.cfg.quiet.map(|q| self.last_event + q);
        Some(quiet.map_or(self.next, |q| q.min(self.next)))
    }

    /// Starts a run when one is due.
    pub(crate) fn tick(&mut self, now: Instant, registry: &Registry) {
        if self.run.is_some() {
            return;
        }
        let mut why = self.why_next;
        if let Some(q) = self.cfg.quiet {
            if now >= self.last_event + q && now < self.next {
                why = "no notification for --register-quiet";
                // Another quiet period before the next such run.
                self.last_event = now;
            } else if now < self.next {
                return;
            }
        } else if now < self.next {
            return;
        }
        let mut cmd = self.command("register");
        cmd.stdin(Stdio::null());
        match Running::spawn(&mut cmd, registry, crate::input::serve::wake::RECONCILE) {
            Ok(proc) => {
                info!("registering ({why})");
                self.run = Some(ReconcileRun {
                    proc,
                    out: Vec::new(),
                    why,
                });
            }
            Err(e) => {
                error!("cannot start the register child: {e}");
                self.failed(now);
            }
        }
    }

    /// A logged notification: reminders make the next run due now; any event resets the quiet
    /// timer.
    pub(crate) fn on_event(&mut self, rec: &Record, now: Instant) {
        self.last_event = now;
        if rec.event().is_some_and(|e| e.starts_with(REMINDER)) {
            info!("subscription renewal reminder received: registering now");
            self.next = now;
            self.why_next = "renewal reminder";
        }
    }

    /// The child's stdout is readable.
    pub(crate) fn on_ready(&mut self, registry: &Registry) {
        if let Some(run) = &mut self.run {
            read_out(run, registry);
        }
    }

    /// Collects the child when it has exited (on SIGCHLD) and schedules the next run.
    pub(crate) fn reap(&mut self, registry: &Registry) {
        let Some(run) = &mut self.run else {
            return;
        };
        let Some(status) = run.proc.exited("cannot collect the register child") else {
            return;
        };
        read_out(run, registry);
        run.proc.stdout.close(registry);
        let run = self.run.take().expect("checked above");
        let now = Instant::now();
        if status.success() {
            self.succeeded = true;
            self.failures = 0;
            self.next = now + self.cfg.every;
            self.why_next = "--register-every";
            let outcome = read_outcome(&run.out);
            learn(&mut self.status, outcome.as_ref(), SystemTime::now());
            info!("{} ({})", summary(outcome.as_ref()), run.why);
        } else {
            self.failed(now);
        }
    }

    fn failed(&mut self, now: Instant) {
        self.failures += 1;
        self.status.failed += 1;
        self.status.failed_in_a_row += 1;
        let backoff = child::doubling(self.cfg.retry, self.failures, 7, MAX_BACKOFF);
        self.next = now + backoff;
        self.why_next = "retry";
        warn!(
            "registration failed ({} in a row; the reason is above); trying again in {backoff:?}",
            self.failures
        );
    }

    /// At shutdown: stops a run in progress.
    pub(crate) fn stop(&mut self) {
        if let Some(mut run) = self.run.take() {
            run.proc.kill();
        }
    }

    /// At a clean shutdown with `--unregister-on-exit`: deletes the subscription (blocking; the
    /// receiver has stopped, and deleting triggers no handshake).
    pub(crate) fn unregister_on_exit(&self) {
        if !self.cfg.unregister_on_exit {
            return;
        }
        let out = self
            .command("unregister")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output();
        match out {
            Ok(o) if o.status.success() => info!("--unregister-on-exit: subscription deleted"),
            Ok(o) => warn!("--unregister-on-exit failed: {}", o.status),
            Err(e) => error!("--unregister-on-exit: cannot start: {e}"),
        }
    }
}

fn read_out(run: &mut ReconcileRun, registry: &Registry) {
    let out = &mut run.out;
    run.proc.stdout.read_available(registry, |chunk| {
        // One JSON object is expected; more than 64 KiB is not it.
        if out.len() < 64 * 1024 {
            out.extend_from_slice(chunk);
        }
    });
}

/// What `register --json` answers (the fields used here).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReconcileOutcome {
    action: Option<String>,
    id: Option<String>,
    status: Option<String>,
    expiration_time: Option<String>,
    filters: Option<u64>,
}

fn read_outcome(out: &[u8]) -> Option<ReconcileOutcome> {
    serde_json::from_slice(out).ok()
}

/// A run succeeded with `outcome`: what the metrics show of the subscription.
fn learn(status: &mut RegisterStatus, outcome: Option<&ReconcileOutcome>, now: SystemTime) {
    status.ok += 1;
    status.failed_in_a_row = 0;
    status.last_success = Some(now);
    let Some(o) = outcome else {
        return;
    };
    if let Some(t) = o.expiration_time.as_deref() {
        status.expiry = humantime::parse_rfc3339_weak(t).ok();
    }
    if let Some(s) = o.status.as_deref() {
        // Blacklisted, Suspended (older docs) or anything new: not delivering.
        status.active = Some(s == "Active");
    }
}

/// One line from `register --json`'s answer: `subscription created 5f1c…, expires …, 2 filters`.
fn summary(outcome: Option<&ReconcileOutcome>) -> String {
    match outcome {
        Some(o) => format!(
            "subscription {} {}, expires {}, {} filters",
            match o.action.as_deref() {
                Some("nothing") => "unchanged",
                Some(a) => a,
                None => "?",
            },
            o.id.as_deref().unwrap_or("?"),
            o.expiration_time.as_deref().unwrap_or("?"),
            o.filters.unwrap_or(0)
        ),
        None => "registered".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reads_registers_json() {
        let outcome = read_outcome(
            br#"{"action":"created","dryRun":false,"id":"5f1c","status":"Active","expirationTime":"2036-01-01T00:00:00.000Z","filters":2,"deleted":[]}"#,
        );
        let line = summary(outcome.as_ref());
        assert_eq!(
            line,
            "subscription created 5f1c, expires 2036-01-01T00:00:00.000Z, 2 filters"
        );
        assert_eq!(summary(read_outcome(b"garbage").as_ref()), "registered");
    }

    #[test]
    fn a_run_teaches_the_metrics_expiry_and_status() {
        let mut st = RegisterStatus::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(7);
        let o = read_outcome(br#"{"status":"Active","expirationTime":"2036-01-01T00:00:00.250Z"}"#);
        learn(&mut st, o.as_ref(), now);
        assert_eq!(
            (st.ok, st.active, st.last_success),
            (1, Some(true), Some(now))
        );
        let expiry = st
            .expiry
            .unwrap()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(expiry.as_millis(), 2_082_758_400_250);
        for status in ["Blacklisted", "Suspended"] {
            let json = format!(r#"{{"status":"{status}"}}"#);
            learn(&mut st, read_outcome(json.as_bytes()).as_ref(), now);
            assert_eq!(st.active, Some(false), "{status}");
        }
        // An answer that cannot be read changes what is known of the subscription not at all.
        learn(&mut st, None, now);
        assert_eq!((st.ok, st.active), (4, Some(false)));
        assert!(st.expiry.is_some());
    }
}
