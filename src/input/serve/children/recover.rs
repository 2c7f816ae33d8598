//! `serve --register`'s catch-up: after each successful register run and once the log is
//! writable again, the binary re-executes itself as `ringhook catchup --emit`, which prints the
//! recovered lines on stdout; the loop logs them through its own event log (so its group commit,
//! cut-back and torn-tail repair stay the only writer) and answers `ok` on the child's stdin once
//! they are synced, `no` otherwise — then the child moves its sync tokens, or leaves them for the
//! next run. Never while a register run is going on, never two at once, never on the loop's time:
//! the child does the platform calls, the loop only reads lines.

use std::io::Write;
use std::path::PathBuf;
use std::process::{ChildStdin, Stdio};

use mio::Registry;

use super::{self as child, Running};

/// A recovered line longer than this is not one of ours.
const MAX_LINE: usize = 4 * 1024 * 1024;

/// How to run the catch-up child.
#[derive(Debug, Clone)]
pub(crate) struct RecoverConfig {
    /// The event log file (the child reads it for dedupe).
    pub log: PathBuf,
    /// `--env-file`, passed on.
    pub env_file: Option<PathBuf>,
    /// Defaults chosen for the child (the state file path).
    pub env: Vec<(String, String)>,
}

struct RecoverRun {
    proc: Running,
    stdin: Option<ChildStdin>,
    buf: Vec<u8>,
    /// A line could not be logged (or was not a line): answer `no`.
    failed: bool,
    /// The child printed its end marker (an empty line) and waits for the answer.
    answer_due: bool,
}

/// The catch-up child and when it is due.
pub(crate) struct Recoverer {
    cfg: RecoverConfig,
    run: Option<RecoverRun>,
    due: Option<&'static str>,
}

impl Recoverer {
    /// Nothing due yet: the first run follows the first successful register run.
    pub(crate) fn new(cfg: RecoverConfig) -> Recoverer {
        Recoverer {
            cfg,
            run: None,
            due: None,
        }
    }

    /// Asks for a run as soon as the loop allows.
    pub(crate) fn due(&mut self, why: &'static str) {
        self.due.get_or_insert(why);
    }

    /// True when no child runs.
    pub(crate) fn is_idle(&self) -> bool {
        self.run.is_none()
    }

    /// Starts the child when a run is due (the caller checks that no register run is going on).
    pub(crate) fn tick(&mut self, registry: &Registry) {
        if self.run.is_some() {
            return;
        }
        let Some(why) = self.due.take() else { return };
        let mut cmd = child::ringhook(self.cfg.env_file.as_deref());
        cmd.args(["catchup", "--emit", "--log-file"])
            .arg(&self.cfg.log)
            .envs(self.cfg.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped());
        match Running::spawn(&mut cmd, registry, crate::input::serve::wake::RECOVER) {
            Ok(mut proc) => {
                info!("catching up on missed messages and calls ({why})");
                self.run = Some(RecoverRun {
                    stdin: proc.child.stdin.take(),
                    proc,
                    buf: Vec::new(),
                    failed: false,
                    answer_due: false,
                });
            }
            Err(e) => error!("cannot start the catchup child: {e}"),
        }
    }

    /// The child's stdout is readable: the whole lines it brought, to be logged.
    pub(crate) fn on_ready(&mut self, registry: &Registry) -> Vec<Vec<u8>> {
        let Some(run) = &mut self.run else {
            return Vec::new();
        };
        let buf = &mut run.buf;
        run.proc
            .stdout
            .read_available(registry, |chunk| buf.extend_from_slice(chunk));
        let mut lines = Vec::new();
        while let Some(i) = run.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = run.buf.drain(..=i).take(i).collect();
            if line.is_empty() {
                run.answer_due = true;
            } else if serde_json::from_slice::<&serde_json::value::RawValue>(&line).is_ok() {
                lines.push(line);
            } else {
                run.failed = true;
            }
        }
        if run.buf.len() > MAX_LINE {
            run.buf.clear();
            run.failed = true;
        }
        lines
    }

    /// A recovered line was logged (`true`) or not.
    pub(crate) fn logged(&mut self, ok: bool) {
        if let Some(run) = &mut self.run {
            run.failed |= !ok;
        }
    }

    /// After the loop's commit: answers a child that waits, now that its lines are synced.
    pub(crate) fn after_commit(&mut self) {
        let Some(run) = &mut self.run else { return };
        if !run.answer_due {
            return;
        }
        run.answer_due = false;
        if let Some(mut stdin) = run.stdin.take() {
            // Three bytes into an empty pipe: does not block. A child gone away is reaped.
            let _ = stdin.write_all(if run.failed { b"no\n" } else { b"ok\n" });
        }
    }

    /// Collects the child when it has exited (on SIGCHLD).
    pub(crate) fn reap(&mut self, registry: &Registry) {
        let Some(run) = &mut self.run else { return };
        let Some(status) = run.proc.exited("cannot collect the catchup child") else {
            return;
        };
        run.proc.stdout.close(registry);
        if !status.success() {
            warn!(
                "catchup failed ({status}; the reason is above); it runs again after the next register run"
            );
        }
        self.run = None;
    }

    /// At shutdown: stops a run in progress (its tokens stay; the next start catches up). The
    /// child first hears end-of-file where it waits for the answer ("not logged") and gets a
    /// moment to end its platform session (revoke); only then is it killed.
    pub(crate) fn stop(&mut self) {
        if let Some(mut run) = self.run.take() {
            drop(run.stdin.take());
            run.proc.ends_within(STOP_GRACE);
            run.proc.kill();
        }
    }
}

/// How long a catch-up run in progress at shutdown may take to end its session before it is killed.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
