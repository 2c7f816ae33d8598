//! `serve --register`'s catch-up: after each successful register run and once the log is
//! writable again, the binary re-executes itself as `ringhook catchup --emit`, which prints the
//! recovered lines on stdout; the loop logs them through its own event log (so its group commit,
//! cut-back and torn-tail repair stay the only writer) and answers `ok` on the child's stdin once
//! they are synced, `no` otherwise — then the child moves its sync tokens, or leaves them for the
//! next run. Never while a register run is going on, never two at once, never on the loop's time:
//! the child does the platform calls, the loop only reads lines.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use mio::Registry;
use mio::unix::pipe::Receiver;

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

struct Run {
    child: Child,
    stdout: Option<Receiver>,
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
    run: Option<Run>,
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
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ringhook"));
        let mut cmd = Command::new(exe);
        if let Some(f) = &self.cfg.env_file {
            cmd.arg("--env-file").arg(f);
        }
        cmd.args(["catchup", "--emit", "--log-file"])
            .arg(&self.cfg.log)
            .envs(self.cfg.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match cmd.spawn() {
            Ok(mut child) => {
                let stdout = super::watch_stdout(&mut child, registry, super::token::RECOVER);
                info!("catching up on missed messages and calls ({why})");
                self.run = Some(Run {
                    stdin: child.stdin.take(),
                    child,
                    stdout,
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
        let mut chunk = [0u8; 16 * 1024];
        let mut eof = false;
        while let Some(rx) = &mut run.stdout {
            match rx.read(&mut chunk) {
                Ok(0) => eof = true,
                Ok(n) => run.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => eof = true,
            }
            if eof {
                if let Some(mut rx) = run.stdout.take() {
                    let _ = registry.deregister(&mut rx);
                }
            }
        }
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
        match run.child.try_wait() {
            Ok(Some(status)) => {
                if let Some(mut rx) = run.stdout.take() {
                    let _ = registry.deregister(&mut rx);
                }
                if !status.success() {
                    warn!(
                        "catchup failed ({status}; the reason is above); it runs again after the next register run"
                    );
                }
                self.run = None;
            }
            Ok(None) => {}
            Err(e) => error!("cannot collect the catchup child: {e}"),
        }
    }

    /// At shutdown: stops a run in progress (its tokens stay; the next start catches up). The
    /// child first hears end-of-file where it waits for the answer ("not logged") and gets a
    /// moment to end its platform session (revoke); only then is it killed.
    pub(crate) fn stop(&mut self) {
        if let Some(run) = &mut self.run {
            drop(run.stdin.take());
            let deadline = std::time::Instant::now() + STOP_GRACE;
            while std::time::Instant::now() < deadline {
                match run.child.try_wait() {
                    Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
                    _ => break,
                }
            }
            let _ = run.child.kill();
            let _ = run.child.wait();
        }
        self.run = None;
    }
}

/// How long a catch-up run in progress at shutdown may take to end its session before it is killed.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
