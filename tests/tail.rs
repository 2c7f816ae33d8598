//! `ringhook tail`: the real binary reading a real event log (written by `serve` or by the test).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{Serve, reference, ringhook};

fn tail(dir: &Path, args: &[&str]) -> std::process::Output {
    ringhook(dir).arg("tail").args(args).output().unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A log line as `serve` writes it, for logs made up by the test.
fn record(i: usize, event: &str) -> String {
    format!(
        r#"{{"receivedAt":"2026-12-02T01:02:{:02}.000Z","notification":{{"uuid":"u-{i}","event":"{event}","body":{{"presenceStatus":"Busy","telephonyStatus":"Ringing"}}}}}}"#,
        i % 60
    ) + "\n"
}

#[test]
fn the_reference_samples_read_as_one_line_each_newest_last() {
    // Some samples share a uuid: keep every one.
    let s = Serve::new()
        .log_file()
        .args(["--dedupe-window", "0"])
        .start();
    let mut files: Vec<_> = std::fs::read_dir(reference().join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        let body = std::fs::read(f).unwrap();
        assert_eq!(s.exchange(&s.notification_request(&body, None)).status, 200);
    }
    let log = s.log_path();
    let log = log.to_str().unwrap();
    let all = stdout(&tail(s.dir.path(), &["--log-file", log, "-n", "100"]));
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), files.len(), "{all}");
    // Sorted by name, the samples end with telephony, voicemail: so does the output.
    assert!(
        lines[lines.len() - 2]
            .contains("  call       ext 809646016  Setup  +1 408 338 8064 → +1 904 301 4558"),
        "{all}"
    );
    assert!(
        lines[lines.len() - 1]
            .contains("  voicemail  ext 823476228762  from +1 866 432 0079 (Jane Doe), 3 s"),
        "{all}"
    );
    assert!(
        all.contains("  invalid             not JSON (1209 bytes): "),
        "{all}"
    );
    assert!(!all.contains('\x1b'), "no colour into a pipe");
    // The time is receivedAt's.
    let first_logged = &s.log_lines()[0];
    let at = first_logged.split("\"receivedAt\":\"").nth(1).unwrap();
    assert!(lines[0].starts_with(&at[11..19]), "{} vs {at}", lines[0]);

    // Ten by default; -n and --lines alike.
    let ten = stdout(&tail(s.dir.path(), &["--log-file", log]));
    assert_eq!(ten.lines().collect::<Vec<_>>(), lines[lines.len() - 10..]);
    let two = stdout(&tail(s.dir.path(), &["--log-file", log, "--lines", "2"]));
    assert_eq!(two.lines().collect::<Vec<_>>(), lines[lines.len() - 2..]);
    // The variable serve uses names the same log.
    let env = ringhook(s.dir.path())
        .env("RINGHOOK_LOG_FILE", log)
        .args(["tail", "-n", "1"])
        .output()
        .unwrap();
    assert_eq!(stdout(&env), format!("{}\n", lines[lines.len() - 1]));

    // --json: the records exactly as logged.
    let json = stdout(&tail(
        s.dir.path(),
        &["--log-file", log, "--json", "-n", "100"],
    ));
    assert_eq!(json, std::fs::read_to_string(s.log_path()).unwrap());

    // --filter: the patterns of --exec-filter.
    let some = stdout(&tail(
        s.dir.path(),
        &[
            "--log-file",
            log,
            "-n",
            "100",
            "--filter",
            "*/presence*",
            "--filter",
            "*/voicemail",
        ],
    ));
    let kinds: Vec<&str> = some
        .lines()
        .map(|l| l[10..].split(' ').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["presence", "presence", "presence", "voicemail"],
        "{some}"
    );
    let json_some = stdout(&tail(
        s.dir.path(),
        &["--log-file", log, "--json", "--filter", "*/voicemail"],
    ));
    assert_eq!(json_some.lines().count(), 1);
    assert_eq!(json_some.trim_end(), s.log_lines().last().unwrap());
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    // Far more than a pipe holds, so the writer meets the closed pipe.
    let text: String = (0..20_000)
        .map(|i| record(i, "/restapi/v1.0/account/~/extension/7/presence"))
        .collect();
    std::fs::write(&log, text).unwrap();
    for json in [false, true] {
        let mut cmd = ringhook(dir.path());
        cmd.args(["tail", "--log-file", log.to_str().unwrap(), "-n", "20000"]);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(
            first.contains("u-0") || first.contains("presence"),
            "{first}"
        );
        // The reader is gone (like `| head -1`).
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}: {err}");
        assert_eq!(err, "");
    }
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    std::fs::write(
        &log,
        record(1, "/restapi/v1.0/account/~/extension/7/presence"),
    )
    .unwrap();
    // `script` (util-linux) runs the command on a pseudo-terminal.
    let on_tty = |no_color: Option<&str>| {
        let mut cmd = Command::new("script");
        cmd.args([
            "-qec",
            &format!(
                "{} tail --log-file {}",
                crate::support::bin(),
                log.display()
            ),
            "/dev/null",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .current_dir(dir.path());
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("script (util-linux)");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let coloured = on_tty(None);
    assert!(coloured.contains("\x1b[36mpresence\x1b[0m"), "{coloured:?}");
    assert!(!on_tty(Some("1")).contains('\x1b'));
    // NO_COLOR set but empty does not count (no-color.org).
    assert!(on_tty(Some("")).contains('\x1b'));
    let piped = stdout(&tail(dir.path(), &["--log-file", log.to_str().unwrap()]));
    assert!(!piped.contains('\x1b'));
    assert!(
        piped.contains("presence   ext 7    Busy · Ringing"),
        "{piped}"
    );
}

#[test]
fn bad_invocations_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = tail(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("RINGHOOK_LOG_FILE"),
        "{out:?}"
    );
    let out = tail(dir.path(), &["--log-file", "missing.log"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.log"),
        "{out:?}"
    );
    std::fs::write(dir.path().join("e.log"), "").unwrap();
    let out = tail(dir.path(), &["--log-file", "e.log", "-n", "many"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--lines"),
        "{out:?}"
    );
    assert_eq!(stdout(&tail(dir.path(), &["--log-file", "e.log"])), "");
}

#[test]
fn follow_prints_appends_and_survives_logrotate() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let presence = "/restapi/v1.0/account/~/extension/7/presence";
    std::fs::write(&log, record(1, presence)).unwrap();
    let mut child = ringhook(dir.path())
        .args([
            "tail",
            "-f",
            "-n",
            "1",
            "--json",
            "--log-file",
            log.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(crate::support::PATIENCE)
            .expect("a line from tail -f")
    };
    assert!(next().contains("\"u-1\""));
    let append = |path: &Path, text: String| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    // An append, written in two pieces: printed once whole.
    let two = record(2, presence);
    append(&log, two[..20].to_string());
    append(&log, two[20..].to_string());
    assert!(next().contains("\"u-2\""));
    // logrotate: the file is renamed (a last line still lands in it), a new one takes the path.
    let rotated = dir.path().join("events.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&rotated, record(3, presence));
    append(&log, record(4, presence));
    assert!(next().contains("\"u-3\""));
    assert!(next().contains("\"u-4\""));
}

/// Two renames while `tail -f` is frozen (SIGSTOP): `mv e.log e.log.1; (write B); mv e.log.1
/// e.log.2; mv e.log e.log.1; (write C)`. It finishes its file, then prints `e.log.1`'s lines,
/// then the live file's, in order.
#[test]
fn follow_reads_every_renamed_copy_in_order_after_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    let presence = "/restapi/v1.0/account/~/extension/7/presence";
    std::fs::write(&log, record(1, presence)).unwrap();
    let mut child = ringhook(dir.path())
        .args(["tail", "-f", "-n", "1", "--json", "--log-file", "e.log"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let pid = child.id().to_string();
    let _child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(crate::support::PATIENCE)
            .expect("a line from tail -f")
    };
    assert!(next().contains("\"u-1\""));
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    let append = |path: &Path, i: usize| {
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap()
            .write_all(record(i, presence).as_bytes())
            .unwrap();
    };
    signal("-STOP");
    append(&log, 2);
    std::fs::rename(&log, dir.path().join("e.log.1")).unwrap();
    append(&log, 3);
    append(&log, 4);
    std::fs::rename(dir.path().join("e.log.1"), dir.path().join("e.log.2")).unwrap();
    std::fs::rename(&log, dir.path().join("e.log.1")).unwrap();
    append(&log, 5);
    signal("-CONT");
    for i in 2..=5 {
        let l = next();
        assert!(l.contains(&format!("\"u-{i}\"")), "{i}: {l}");
    }
}

/// A 50 MB line (sparse: no disk) among the last four: `tail -n 4` answers at once with the
/// other lines and a warning giving the long line's size, and never holds it in memory (it
/// cost 25 s and 157 MB when the scan kept it whole). Peak memory is measured with
/// `/usr/bin/time` where it exists.
#[test]
fn a_huge_line_is_skipped_with_a_note_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    let presence = "/restapi/v1.0/account/~/extension/7/presence";
    let mut head = String::new();
    for i in 1..=3 {
        head += &record(i, presence);
    }
    let f = std::fs::File::create(&log).unwrap();
    let big: u64 = 50 << 20;
    f.set_len(head.len() as u64 + big).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, head.as_bytes(), 0).unwrap();
    drop(f);
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(format!("\n{}{}", record(5, presence), record(6, presence)).as_bytes())
            .unwrap();
    }
    let time = Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.args(["-f", "peak %M KB", crate::support::bin()]);
        c
    } else {
        Command::new(crate::support::bin())
    };
    let out = cmd
        .current_dir(dir.path())
        .args(["tail", "-n", "4", "--json", "--log-file", "e.log"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    let uuids: Vec<&str> = text
        .lines()
        .map(|l| {
            l.split("\"uuid\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(uuids, ["u-2", "u-3", "u-5", "u-6"]);
    let at = head.len();
    assert!(
        err.contains(&format!("a line of {big} bytes at byte {at} skipped")),
        "{err}"
    );
    if let Some(kb) = err.lines().find_map(|l| {
        l.strip_prefix("peak ")?
            .strip_suffix(" KB")?
            .parse::<u64>()
            .ok()
    }) {
        eprintln!("tail -n 4 over a 50 MB line: peak RSS {kb} KB");
        assert!(kb < 32 << 10, "peak RSS {kb} KB");
    }
}
