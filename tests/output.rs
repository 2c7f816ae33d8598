//! Command output to a closed pipe (`ringhook list --json | head -c1`): the real binary, its
//! stdout a pipe whose reader is already gone, so every write gets EPIPE. A closed stdout is not
//! an error: the command stops quietly with status 0 and says nothing on stderr (release builds
//! abort on a panic, so `println!` there would kill the process).

use std::os::fd::OwnedFd;
use std::process::{Command, Output, Stdio};

use crate::install::Setup;
use crate::support;

/// Runs `cmd` with stdout a pipe nobody reads.
fn with_closed_stdout(mut cmd: Command) -> Output {
    let (writer, reader) = mio::unix::pipe::new().expect("pipe");
    drop(reader);
    cmd.stdout(Stdio::from(OwnedFd::from(writer)))
        .stderr(Stdio::piped())
        .output()
        .expect("run ringhook")
}

fn assert_quiet(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(!stderr.contains("error"), "{what}: {stderr}");
}

#[test]
fn help_and_version_to_a_closed_pipe_exit_quietly() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["serve", "--help"], &["--version"], &[]] {
        let mut cmd = support::ringhook(dir.path());
        cmd.args(args);
        let out = with_closed_stdout(cmd);
        assert_quiet(&out, &format!("{args:?}"));
        assert!(out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn list_and_register_to_a_closed_pipe_exit_quietly() {
    let s = Setup::new();
    let run = |args: &[&str]| {
        let mut cmd = support::ringhook(s.dir.path());
        cmd.args(args).envs(s.env.iter().map(|(k, v)| (k, v)));
        with_closed_stdout(cmd)
    };
    // register's work is done before it prints; the state file says so.
    assert_quiet(&run(&["register", "--json"]), "register --json");
    assert!(s.state_path().is_file());
    assert_eq!(s.fake.subscriptions().len(), 1);
    assert_quiet(&run(&["list", "--json"]), "list --json");
    assert_quiet(&run(&["list"]), "list");
    // The output is whole when someone reads it.
    let listed = s.run(&["list", "--json"]).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}
