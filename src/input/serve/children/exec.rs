//! `serve --exec`: run a command for each logged notification, as child processes beside the
//! single-threaded loop.
//!
//! A command runs only after its notification is synced and acknowledged, so a slow or failing
//! command can never cost an event or delay an answer. At most `--exec-max` run at once; behind
//! them waits a bounded queue, and when it is full the new event's command is skipped (and said
//! so: the event itself is in the log). The payload goes to the child's stdin through a
//! non-blocking pipe the loop polls; stderr is read the same way, and its tail is logged with the
//! outcome. A run that outlives `--exec-timeout` is killed with its whole process group. Children
//! are reaped on SIGCHLD, never waited for.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Registry, Token};

use super::Pipe;
use crate::log::Record;
use crate::log::pattern::EventPattern;
use crate::oplog::Escaped;

/// Tokens from here up belong to children's pipes; connections count up from 2 and never get
/// near (this is half the address space, on 32-bit boards too).
const FIRST_TOKEN: usize = crate::input::serve::wake::FIRST_EXEC;
/// How much of a child's stderr is kept for the operational log.
const TAIL: usize = 512;

/// What `--exec` runs, for which events, and how many at once.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// The program and its arguments (split like a shell would, without a shell).
    pub argv: Vec<String>,
    /// ExecRun only for events matching one of these (all events when empty).
    pub filters: Vec<EventPattern>,
    /// Commands running at once, at most.
    pub max_running: usize,
    /// Events waiting for a free slot, at most.
    pub max_queued: usize,
    /// A run taking longer is killed, with its process group.
    pub timeout: Duration,
}

/// One event's command, waiting or running.
struct ExecJob {
    uuid: String,
    payload: Vec<u8>,
    env: Vec<(&'static str, String)>,
}

struct ExecRun {
    child: Child,
    uuid: String,
    started: Instant,
    stdin: Option<(Token, Sender)>,
    payload: Vec<u8>,
    written: usize,
    stderr: Option<(Token, Pipe)>,
    tail: Vec<u8>,
    killed: bool,
}

/// What the runner counted, for the stop line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ExecCounters {
    /// Commands started.
    pub started: u64,
    /// Commands that exited 0.
    pub succeeded: u64,
    /// Commands that failed to start, exited non-zero or were killed by a signal.
    pub failed: u64,
    /// Commands killed after the timeout (or at shutdown).
    pub killed: u64,
    /// Events whose command was skipped because the queue was full.
    pub skipped: u64,
}

/// The children of `--exec`.
pub(crate) struct Runner {
    cfg: ExecConfig,
    queue: VecDeque<ExecJob>,
    running: Vec<ExecRun>,
    next_token: usize,
    /// What happened so far.
    pub counters: ExecCounters,
}

impl Runner {
    /// A runner for `cfg`.
    pub(crate) fn new(cfg: ExecConfig) -> Runner {
        Runner {
            cfg,
            queue: VecDeque::new(),
            running: Vec::new(),
            next_token: FIRST_TOKEN,
            counters: ExecCounters::default(),
        }
    }

    /// True when `token` is one of the children's pipes.
    pub(crate) fn owns(token: Token) -> bool {
        token.0 >= FIRST_TOKEN
    }

    /// True when nothing runs or waits.
    pub(crate) fn is_idle(&self) -> bool {
        self.running.is_empty() && self.queue.is_empty()
    }

    /// True when `rec` should run the command: it is JSON and its event passes the filters.
    pub(crate) fn wants(&self, rec: &Record) -> bool {
        rec.notification().is_some()
            && (self.cfg.filters.is_empty()
                || rec
                    .event()
                    .is_some_and(|e| self.cfg.filters.iter().any(|f| f.matches(e))))
    }

    /// Runs the command for `rec` now, or queues it, or skips it when the queue is full.
    pub(crate) fn submit(&mut self, rec: &Record, registry: &Registry) {
        let mut payload = rec.notification().unwrap_or_default().to_vec();
        payload.push(b'\n');
        let uuid = rec.uuid().unwrap_or_default().to_owned();
        let field = |v: Option<&str>| v.unwrap_or_default().to_owned();
        let job = ExecJob {
            payload,
            env: vec![
                ("RINGHOOK_EVENT", field(rec.event())),
                ("RINGHOOK_UUID", uuid.clone()),
                ("RINGHOOK_SUBSCRIPTION_ID", field(rec.subscription_id())),
                ("RINGHOOK_TIMESTAMP", field(rec.timestamp())),
            ],
            uuid,
        };
        if self.running.len() < self.cfg.max_running {
            self.spawn(job, registry);
        } else if self.queue.len() < self.cfg.max_queued {
            self.queue.push_back(job);
        } else {
            self.counters.skipped += 1;
            warn!(
                "exec queue full ({} running, {} waiting): command skipped for {} (the event is in the log)",
                self.running.len(),
                self.queue.len(),
                Escaped(&job.uuid)
            );
        }
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        Token(self.next_token)
    }

    fn spawn(&mut self, job: ExecJob, registry: &Registry) {
        let mut cmd = Command::new(&self.cfg.argv[0]);
        cmd.args(&self.cfg.argv[1..])
            .envs(job.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Neither the secrets nor where the files holding them are.
        let files = [
            crate::cli::SHIP_TOKEN_FILE,
            crate::cli::NATS_PASSWORD_FILE,
            crate::cli::NATS_TOKEN_FILE,
            crate::cli::NATS_CREDS,
        ];
        for v in crate::secret::variables().chain(files.into_iter().flatten().copied()) {
            cmd.env_remove(v);
        }
        // Its own process group, so a timeout kills whatever it started too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.counters.failed += 1;
                error!(
                    "exec {}: cannot start {}: {e}",
                    Escaped(&job.uuid),
                    self.cfg.argv[0]
                );
                return;
            }
        };
        self.counters.started += 1;
        let mut run = ExecRun {
            stdin: None,
            stderr: None,
            child,
            uuid: job.uuid,
            started: Instant::now(),
            payload: job.payload,
            written: 0,
            tail: Vec::new(),
            killed: false,
        };
        if let Some(pipe) = run.child.stdin.take() {
            let mut tx = Sender::from(pipe);
            let token = self.token();
            if tx.set_nonblocking(true).is_ok()
                && registry
                    .register(&mut tx, token, Interest::WRITABLE)
                    .is_ok()
            {
                run.stdin = Some((token, tx));
            }
        }
        if let Some(pipe) = run.child.stderr.take() {
            let token = self.token();
            run.stderr = Some((
                token,
                Pipe::watch(Some(Receiver::from(pipe)), registry, token),
            ));
        }
        feed(&mut run, registry);
        self.running.push(run);
    }

    /// A child's pipe is ready.
    pub(crate) fn on_ready(&mut self, token: Token, registry: &Registry) {
        for run in &mut self.running {
            if run.stdin.as_ref().is_some_and(|(t, _)| *t == token) {
                feed(run, registry);
            } else if run.stderr.as_ref().is_some_and(|(t, _)| *t == token) {
                drain(run, registry);
            }
        }
    }

    /// Collects children that have exited (on SIGCHLD), logs how each went, starts queued ones.
    pub(crate) fn reap(&mut self, registry: &Registry) {
        let mut i = 0;
        while i < self.running.len() {
            match self.running[i].child.try_wait() {
                Ok(Some(status)) => {
                    let mut run = self.running.swap_remove(i);
                    drain(&mut run, registry);
                    close_pipes(&mut run, registry);
                    self.report(&run, status);
                }
                Ok(None) => i += 1,
                Err(e) => {
                    error!(
                        "exec {}: cannot collect its exit: {e}",
                        Escaped(&self.running[i].uuid)
                    );
                    i += 1;
                }
            }
        }
        while self.running.len() < self.cfg.max_running {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.spawn(job, registry);
        }
    }

    fn report(&mut self, run: &ExecRun, status: std::process::ExitStatus) {
        let took = run.started.elapsed();
        let tail = String::from_utf8_lossy(&run.tail);
        let tail = tail.trim();
        let stderr = if tail.is_empty() {
            String::new()
        } else {
            format!("; stderr: {tail:?}")
        };
        if run.killed {
            self.counters.killed += 1;
            self.counters.failed += 1;
            warn!(
                "exec {}: killed after {took:.1?} (--exec-timeout {:?}){stderr}",
                Escaped(&run.uuid),
                self.cfg.timeout
            );
        } else if status.success() {
            self.counters.succeeded += 1;
            info!(
                "exec {}: exited 0 after {took:.1?}{stderr}",
                Escaped(&run.uuid)
            );
        } else {
            self.counters.failed += 1;
            warn!(
                "exec {}: {status} after {took:.1?}{stderr}",
                Escaped(&run.uuid)
            );
        }
    }

    /// Kills runs past the timeout; returns when the next one is due.
    pub(crate) fn sweep(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for run in &mut self.running {
            let due = run.started + self.cfg.timeout;
            if run.killed {
                continue;
            }
            if due <= now {
                kill_group(run);
            } else {
                next = crate::input::serve::wake::earliest(next, Some(due));
            }
        }
        next
    }

    /// At shutdown: forget what waits (saying how much) and let what runs finish.
    pub(crate) fn drop_queue(&mut self) {
        if !self.queue.is_empty() {
            warn!(
                "stopping: {} queued commands not run (their events are in the log)",
                self.queue.len()
            );
            self.counters.skipped += self.queue.len() as u64;
            self.queue.clear();
        }
    }

    /// At the end of the shutdown grace: kill what still runs.
    pub(crate) fn kill_all(&mut self) {
        for run in &mut self.running {
            if !run.killed {
                kill_group(run);
            }
        }
    }

    /// Commands running now.
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }
}

fn kill_group(run: &mut ExecRun) {
    run.killed = true;
    if let Some(pid) = rustix::process::Pid::from_raw(run.child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = run.child.kill();
}

/// Writes as much of the payload as the pipe takes; closes stdin once it is all out (or the
/// child stopped reading).
fn feed(run: &mut ExecRun, registry: &Registry) {
    let Some((_, tx)) = &mut run.stdin else {
        return;
    };
    let done = loop {
        if run.written == run.payload.len() {
            break true;
        }
        match tx.write(&run.payload[run.written..]) {
            Ok(n) => run.written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
            Err(_) => break true, // EPIPE: the command does not read its stdin; that is its right
        }
    };
    if done {
        if let Some((_, mut tx)) = run.stdin.take() {
            let _ = registry.deregister(&mut tx);
        }
        run.payload = Vec::new();
    }
}

/// Reads what the child wrote to stderr, keeping the tail.
fn drain(run: &mut ExecRun, registry: &Registry) {
    let Some((_, pipe)) = &mut run.stderr else {
        return;
    };
    let tail = &mut run.tail;
    pipe.read_available(registry, |chunk| {
        tail.extend_from_slice(chunk);
        if tail.len() > TAIL {
            tail.drain(..tail.len() - TAIL);
        }
    });
}

fn close_pipes(run: &mut ExecRun, registry: &Registry) {
    if let Some((_, mut tx)) = run.stdin.take() {
        let _ = registry.deregister(&mut tx);
    }
    if let Some((_, mut pipe)) = run.stderr.take() {
        pipe.close(registry);
    }
}

/// Splits `--exec`'s value into words and checks the program can be run.
pub(crate) fn parse_command(text: &str) -> Result<Vec<String>, String> {
    let argv = shlex::split(text).ok_or("unbalanced quotes")?;
    let Some(program) = argv.first() else {
        return Err("empty command".into());
    };
    if !is_executable(program) {
        return Err(format!(
            "'{program}' is not an executable file (nor on PATH)"
        ));
    }
    Ok(argv)
}

fn is_executable(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return runnable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| runnable(&dir.join(program))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_split_without_a_shell_and_checked() {
        assert_eq!(
            parse_command("sh -c 'echo \"$RINGHOOK_UUID\"'").unwrap(),
            vec!["sh", "-c", "echo \"$RINGHOOK_UUID\""]
        );
        assert!(parse_command("").is_err());
        assert!(parse_command("sh -c 'unbalanced").is_err());
        assert!(parse_command("/nonexistent/led-on").is_err());
        assert!(parse_command("no-such-program-anywhere").is_err());
    }
}
