//! A FIFO (or any file that is not a regular file) named as a setting's file — `--env-file`,
//! `--verification-token-file`, `NATS_CREDS`, a `*_FILE` secret — is refused at start-up, exit 2,
//! with the flag or variable and the path, at once: it never hangs waiting for a writer.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::support::{PATIENCE, ringhook};

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

fn spawn(mut c: Command) -> Child {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Killed however the test ends (one that hangs must not outlive it).
struct Kill(Option<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every command at once; each must have exited 2 naming `needle` before the deadline.
fn all_refused(cases: Vec<(Command, String)>) {
    let children: Vec<(Kill, String)> = cases
        .into_iter()
        .map(|(c, n)| (Kill(Some(spawn(c))), n))
        .collect();
    let deadline = Instant::now() + PATIENCE;
    for (mut kill, needle) in children {
        let child = kill.0.as_mut().unwrap();
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "still running after {PATIENCE:?}: it hangs on the FIFO ({needle})"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let out = kill.0.take().unwrap().wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{needle}: {err}");
        assert!(err.contains(&needle), "wanted {needle:?} in: {err}");
    }
}

#[test]
fn a_fifo_or_a_folder_as_a_settings_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let f = fifo.to_str().unwrap();
    let serve = |args: &[&str]| {
        let mut c = ringhook(dir.path());
        c.args(args);
        c
    };
    #[cfg_attr(not(feature = "ship"), allow(unused_mut))]
    let mut cases = vec![
        (
            serve(&["--env-file", f, "serve", "--listen", "127.0.0.1:0"]),
            format!("--env-file {f}: not a regular file (a FIFO)"),
        ),
        (
            serve(&[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--verification-token-file",
                f,
            ]),
            format!("--verification-token-file {f}: not a regular file (a FIFO)"),
        ),
        (
            serve(&[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--verification-token-file",
                ".",
            ]),
            "--verification-token-file .: not a regular file (a directory)".to_string(),
        ),
    ];
    let mut check = ringhook(dir.path());
    check
        .args(["check", "https://127.0.0.1:9/webhook"])
        .env("RINGHOOK_CA_FILE", f);
    cases.push((
        check,
        format!("invalid RINGHOOK_CA_FILE: '{f}': not a regular file (a FIFO)"),
    ));
    #[cfg(feature = "ship")]
    {
        std::fs::write(dir.path().join("events.log"), "").unwrap();
        let ship = |to: &str, var: &str| {
            let mut c = ringhook(dir.path());
            c.args(["ship", "--log-file", "events.log", "--to", to, "--once"])
                .env(var, f);
            (c, format!("{var} {f}: not a regular file (a FIFO)"))
        };
        cases.push(ship("http://127.0.0.1:9/e", "RINGHOOK_SHIP_TOKEN_FILE"));
        cases.push(ship("nats://127.0.0.1:9/e", "NATS_CREDS"));
        cases.push(ship("nats://127.0.0.1:9/e", "NATS_PASSWORD_FILE"));
        cases.push(ship("nats://127.0.0.1:9/e", "NATS_TOKEN_FILE"));
    }
    all_refused(cases);
}

/// `ship` follows a file: a FIFO given as its `--log-file` or its `--cursor` (a careless
/// operator: `mkfifo events.log` to pipe it somewhere) is refused at once, naming it, instead
/// of an open that waits for a writer for ever (SIGTERM cannot end it).
#[cfg(feature = "ship")]
#[test]
fn a_fifo_as_ships_log_or_cursor_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    std::fs::write(dir.path().join("events.log"), "").unwrap();
    let ship = |log: &str, cursor: &str| {
        let mut c = ringhook(dir.path());
        c.args(["ship", "--log-file", log, "--cursor", cursor])
            .args(["--to", "http://127.0.0.1:9/e", "--once"]);
        Kill(Some(spawn(c)))
    };
    let cases = [
        (
            ship("fifo", "events.cursor"),
            "fifo: not a regular file (a FIFO)",
        ),
        (
            ship("events.log", "fifo"),
            "cursor fifo: not a regular file (a FIFO)",
        ),
    ];
    let deadline = Instant::now() + PATIENCE;
    for (mut kill, needle) in cases {
        let child = kill.0.as_mut().unwrap();
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "still running after {PATIENCE:?}: it hangs on the FIFO ({needle})"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let out = kill.0.take().unwrap().wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{needle}: {err}");
        assert!(err.contains(needle), "wanted {needle:?} in: {err}");
    }
}
