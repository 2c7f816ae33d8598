//! What serve's children have in common: ringhook itself re-executed beside the loop (the
//! `--register` reconcile, its catch-up, the `--ship` shipper), a pipe the loop reads to its end
//! without ever blocking, the exit collected on SIGCHLD, a stop that gives the child a moment
//! before SIGKILL, and the doubling wait before a failed child runs again. `--exec` commands
//! share [`Pipe`].

#[cfg_attr(not(feature = "connect"), allow(dead_code))]
pub(crate) mod connect;
pub(crate) mod exec;
pub(crate) mod reconcile;
pub(crate) mod recover;
pub(crate) mod shipper;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mio::unix::pipe::Receiver;
use mio::{Interest, Registry, Token};

/// `ringhook [--env-file FILE]`: this very binary (`/proc/self/exe`, so a relative argv[0] or a
/// changed working directory cannot matter), ready for a subcommand and its arguments.
pub(crate) fn ringhook(env_file: Option<&Path>) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ringhook"));
    let mut cmd = Command::new(exe);
    if let Some(f) = env_file {
        cmd.arg("--env-file").arg(f);
    }
    cmd
}

/// `first`, doubled for each failure after the first (at most `2^max_doublings` times), capped
/// at `max`: how long a failed child waits before it runs again.
pub(crate) fn doubling(
    first: Duration,
    failures: u32,
    max_doublings: u32,
    max: Duration,
) -> Duration {
    first
        .saturating_mul(1 << failures.saturating_sub(1).min(max_doublings))
        .min(max)
}

/// A child's pipe, non-blocking and registered with the loop; closed once it reached its end.
pub(crate) struct Pipe(Option<Receiver>);

impl Pipe {
    /// Watches `rx` under `token`; a closed pipe when there is none or it cannot be watched (the
    /// child then runs unheard, as when it has no such pipe).
    pub(crate) fn watch(rx: Option<Receiver>, registry: &Registry, token: Token) -> Pipe {
        let watched = rx.and_then(|mut rx| {
            rx.set_nonblocking(true).ok()?;
            registry.register(&mut rx, token, Interest::READABLE).ok()?;
            Some(rx)
        });
        Pipe(watched)
    }

    /// Reads all the pipe holds now, handing each chunk to `take`; at its end (or an error) the
    /// pipe is deregistered and closed.
    pub(crate) fn read_available(&mut self, registry: &Registry, mut take: impl FnMut(&[u8])) {
        let Some(rx) = &mut self.0 else { return };
        let mut buf = [0u8; 16 * 1024];
        let end = loop {
            match rx.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => take(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if end {
            self.close(registry);
        }
    }

    /// Deregisters and closes the pipe (a no-op when it is closed).
    pub(crate) fn close(&mut self, registry: &Registry) {
        if let Some(mut rx) = self.0.take() {
            let _ = registry.deregister(&mut rx);
        }
    }
}

/// One run of a ringhook child: the process, its stdout as the loop sees it, when it started.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) stdout: Pipe,
    pub(crate) started: Instant,
}

impl Running {
    /// Starts `cmd` with its stdout piped to the loop under `token` (stderr is the operational
    /// log's, shared).
    pub(crate) fn spawn(
        cmd: &mut Command,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Running> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let rx = child.stdout.take().map(Receiver::from);
        Ok(Running {
            stdout: Pipe::watch(rx, registry, token),
            child,
            started: Instant::now(),
        })
    }

    /// The child's exit status once it has exited (looked for on SIGCHLD), `None` while it runs
    /// or when it cannot be collected (`failure` names that in the log: "cannot collect …").
    /// The caller then reads what its stdout still holds and closes it.
    pub(crate) fn exited(&mut self, failure: &str) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(status) => status,
            Err(e) => {
                error!("{failure}: {e}");
                None
            }
        }
    }

    /// Waits up to `grace` for the child to end by itself (it was told to: SIGTERM, or end of
    /// file on its stdin). True when it ended in time.
    pub(crate) fn ends_within(&mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Ok(Some(_)) => return true,
                Err(_) => return false,
            }
        }
        false
    }

    /// SIGKILL, and the zombie collected.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the child finishes what it does and exits.
    pub(crate) fn terminate(&self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_waits() {
        let s = Duration::from_secs;
        let w = |f| doubling(s(1), f, 6, s(60));
        assert_eq!(
            [1, 2, 3, 6, 7, 8, 100].map(w),
            [s(1), s(2), s(4), s(32), s(60), s(60), s(60)]
        );
        // Never panics on a huge first wait or count.
        assert_eq!(doubling(Duration::MAX, u32::MAX, 7, s(3600)), s(3600));
        assert_eq!(doubling(s(5), 0, 7, s(3600)), s(5));
    }
}
