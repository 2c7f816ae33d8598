//! An attacker's pass (issue 21's follow-up): each test is a defect found by driving the real
//! binary as a careless operator, a failing disk or a hostile peer would; each names it.

use std::process::{Command, Stdio};

use crate::ship::{Act, HttpSink, append, run, ship};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Defect: a `--cursor` or `--dead-letter` whose name extends the log's (`events.log.cursor-http`,
/// `events.log.dlq`, natural when giving each sink its own cursor) was taken for a rotated copy
/// of the log. At the first rotation the follower read the cursor file, dead-lettered it, then
/// read the dead-letter file as the log, dead-lettering each line into itself (15 MB in 3 s,
/// growing without end) and never reaching the new log. Such names are refused at start
/// (exit 2, naming the file); names ending in `.cursor` / `.dead-letter` ship through rotation.
#[test]
fn attack_own_files_named_like_a_rotated_copy_are_refused_not_read_as_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    append(&log, "a", 0..3);
    let sink = HttpSink::start(|_, _: &str| Act::Answer(200, None));
    for (flag, name) in [
        ("--cursor", "events.log.cursor-http"),
        ("--dead-letter", "events.log.dlq"),
    ] {
        let out = run(ship(
            dir.path(),
            &[
                "--log-file",
                "events.log",
                "--to",
                &sink.url,
                flag,
                name,
                "--once",
            ],
            &[],
        ));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {name}: {err}");
        assert!(err.contains(name), "{err}");
        assert!(sink.got.lock().unwrap().is_empty());
    }
    // Names ringhook knows as its own: shipped through a rotation, nothing dead-lettered.
    let mut child = ship(
        dir.path(),
        &[
            "--log-file",
            "events.log",
            "--to",
            &sink.url,
            "--cursor",
            "events.log.http.cursor",
            "--dead-letter",
            "events.log.http.dead-letter",
        ],
        &[],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    sink.wait_delivered(3);
    std::fs::rename(&log, dir.path().join("events.log.1")).unwrap();
    append(&log, "b", 0..3);
    sink.wait_delivered(6);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
    assert!(!dir.path().join("events.log.http.dead-letter").exists());
}

/// Defect: a log reached through a symbolic link (`current.log -> data/events.log`, a volume or
/// a packaged path) is rotated where the file lives, but the rotated copies were looked for only
/// beside the link. After an ordinary rotation while the shipper was stopped, the cursor matched
/// "neither current.log nor a rotated copy beside it": ship refused to start (exit 2, under
/// `serve --ship` for ever), and the records after the cursor in `data/events.log.1` were
/// stranded (`--from start` skips them). The copies beside the link's target are the log's too.
#[test]
fn attack_a_symlinked_log_resumes_into_its_rotated_copy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let real = dir.path().join("data/events.log");
    std::os::unix::fs::symlink("data/events.log", dir.path().join("current.log")).unwrap();
    let mut want = append(&real, "a", 0..3);
    let sink = HttpSink::start(|_, _: &str| Act::Answer(200, None));
    let args = ["--log-file", "current.log", "--to", &sink.url, "--once"];
    let out = run(ship(dir.path(), &args, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    want.extend(append(&real, "a", 3..6));
    std::fs::rename(&real, dir.path().join("data/events.log.1")).unwrap();
    want.extend(append(&real, "b", 0..3));
    let out = run(ship(dir.path(), &args, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<String> = sink.delivered().iter().map(|g| g.key.clone()).collect();
    let want: Vec<String> = want.into_iter().map(|(u, _)| u).collect();
    assert_eq!(got, want);
}
