//! `serve --exec`: real child processes, run after each logged notification.

use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use crate::support::{PATIENCE, Running, Serve};

const TOKEN: &str = "exec-test-token";

fn serve_exec(script: &str, extra: &[&str]) -> Running {
    let mut args = vec!["--exec".to_string(), format!("sh -c '{script}'")];
    args.extend(extra.iter().map(|s| s.to_string()));
    Serve::new()
        .env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
        .env("RC_CLIENT_SECRET", "must-not-leak")
        .env("NATS_CREDS", "/run/credentials/must-not-leak.creds")
        .log_file()
        .args(args)
        .start()
}

fn notify(s: &Running, body: &str) {
    let r = s.exchange(&s.notification_request(body.as_bytes(), Some(TOKEN)));
    assert_eq!(r.status, 200);
}

fn event(uuid: &str, event: &str) -> String {
    format!(
        "{{\n  \"uuid\": \"{uuid}\",\n  \"event\": \"{event}\",\n  \"subscriptionId\": \"sub-1\",\n  \"timestamp\": \"2026-11-22T10:00:00.000Z\",\n  \"body\": {{\"n\": 1.50}}\n}}"
    )
}

/// Waits until `path` exists (the child writes it last, with a rename).
fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("{} never appeared", path.display());
}

#[test]
fn the_command_gets_the_logged_notification_and_its_fields() {
    let mut s = serve_exec(
        r#"cat > "$PWD/$RINGHOOK_UUID.tmp"; env > "$PWD/$RINGHOOK_UUID.env"; mv "$PWD/$RINGHOOK_UUID.tmp" "$PWD/$RINGHOOK_UUID.json""#,
        &[],
    );
    notify(
        &s,
        &event("e-1", "/restapi/v1.0/account/~/extension/7/presence"),
    );
    let stdin = wait_file(&s.dir.path().join("e-1.json"));
    let logged: Value = serde_json::from_str(&s.log_lines()[0]).unwrap();
    let line = &s.log_lines()[0];
    let logged_text = &line[line.find("\"notification\":").unwrap() + 15..line.len() - 1];
    assert_eq!(
        stdin,
        format!("{logged_text}\n"),
        "stdin is the notification as logged"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&stdin).unwrap(),
        logged["notification"]
    );
    let env = std::fs::read_to_string(s.dir.path().join("e-1.env")).unwrap();
    for want in [
        "RINGHOOK_EVENT=/restapi/v1.0/account/~/extension/7/presence",
        "RINGHOOK_UUID=e-1",
        "RINGHOOK_SUBSCRIPTION_ID=sub-1",
        "RINGHOOK_TIMESTAMP=2026-11-22T10:00:00.000Z",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing from\n{env}");
    }
    assert!(!env.contains("must-not-leak"), "secrets are not passed on");
    assert!(!env.contains(TOKEN));
    s.wait_for("exec e-1: exited 0");
    assert!(s.stop().success());
    assert!(s.stderr().contains("exec: 1 started, 1 succeeded"));
}

#[test]
fn filters_choose_the_events() {
    let mut s = serve_exec(
        r#"touch "$PWD/$RINGHOOK_UUID.ran""#,
        &[
            "--exec-filter",
            "*/voicemail",
            "--exec-filter",
            "/restapi/v1.0/account/~/extension/~/presence",
        ],
    );
    notify(
        &s,
        &event("vm", "/restapi/v1.0/account/~/extension/~/voicemail"),
    );
    notify(
        &s,
        &event(
            "pr",
            "/restapi/v1.0/account/~/extension/12345/presence?detailedTelephonyState=true",
        ),
    );
    notify(
        &s,
        &event(
            "sms",
            "/restapi/v1.0/account/~/extension/~/message-store/instant?type=SMS",
        ),
    );
    notify(&s, "[1, 2, 3]");
    s.wait_until("vm and pr ran", |err| {
        err.contains("exec vm: exited 0") && err.contains("exec pr: exited 0")
    });
    assert!(s.stop().success());
    assert!(s.dir.path().join("vm.ran").exists());
    assert!(s.dir.path().join("pr.ran").exists());
    assert!(!s.dir.path().join("sms.ran").exists());
    assert!(s.stderr().contains("exec: 2 started"), "{}", s.stderr());
    assert_eq!(s.log_lines().len(), 4, "every event is logged, run or not");
}

#[test]
fn at_most_exec_max_run_at_once_and_handshakes_stay_prompt() {
    // Each run counts the runs alive beside it (marker files), sleeps, and leaves.
    let script = r#"d="$PWD/alive"; mkdir -p "$d"; touch "$d/$$"; ls "$d" | wc -l > "$PWD/seen.$RINGHOOK_UUID"; sleep 0.3; rm "$d/$$""#;
    let mut s = serve_exec(script, &["--exec-max", "2"]);
    for i in 0..6 {
        notify(&s, &event(&format!("c{i}"), "/e"));
    }
    // While two commands sleep, the receiver answers at once.
    let r = s.exchange(&s.handshake_request("busy"));
    assert_eq!(r.status, 200);
    s.wait_until("six commands exited 0", |err| {
        (0..6).all(|i| err.contains(&format!("exec c{i}: exited 0")))
    });
    let max_seen = (0..6)
        .map(|i| {
            std::fs::read_to_string(s.dir.path().join(format!("seen.c{i}")))
                .unwrap()
                .trim()
                .parse::<u32>()
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(max_seen <= 2, "{max_seen} ran at once");
    assert_eq!(max_seen, 2, "and the cap was used");
    assert!(s.stop().success());
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let mut s = serve_exec(
        r#"sleep 60 & echo $! > "$PWD/grandchild.pid"; echo about to hang >&2; wait"#,
        &["--exec-timeout", "300ms"],
    );
    notify(&s, &event("slow", "/e"));
    let line = s.wait_for("exec slow: killed after");
    assert!(
        line.contains("about to hang"),
        "stderr tail is logged: {line}"
    );
    let pid = wait_file(&s.dir.path().join("grandchild.pid"));
    let stat = format!("/proc/{}/stat", pid.trim());
    // Gone, or a zombie waiting for its new parent: either way, not sleeping any more. SIGKILL
    // is sent by the time the line is logged, but the kernel may not have reaped the grandchild
    // yet on a loaded machine: wait for that (its `sleep 60` would outlast the deadline).
    let alive = || {
        std::fs::read_to_string(&stat)
            .map(|st| !st.split(") ").nth(1).unwrap_or("").starts_with('Z'))
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!alive(), "the grandchild was killed with the group");
    assert!(s.stop().success());
}

#[test]
fn a_full_queue_skips_the_command_and_says_so() {
    let mut s = serve_exec("sleep 0.5", &["--exec-max", "1", "--exec-queue", "1"]);
    for i in 0..4 {
        notify(&s, &event(&format!("q{i}"), "/e"));
    }
    s.wait_until("the queue overflowed and two ran", |err| {
        err.contains("exec queue full")
            && err.contains("exec q0: exited 0")
            && err.contains("exec q1: exited 0")
    });
    assert!(s.stop().success());
    assert!(s.stderr().contains("2 skipped"), "{}", s.stderr());
    assert_eq!(s.log_lines().len(), 4, "skipped commands, not events");
}

#[test]
fn a_failing_command_is_reported_and_changes_nothing_else() {
    let mut s = serve_exec("echo oops >&2; exit 3", &[]);
    notify(&s, &event("f1", "/e"));
    let line = s.wait_for("exec f1:");
    assert!(
        line.contains("exit status: 3") && line.contains("oops"),
        "{line}"
    );
    notify(&s, &event("f2", "/e"));
    s.wait_for("exec f2:");
    assert!(s.stop().success());
}

#[test]
fn sigterm_lets_a_running_command_finish_within_the_grace() {
    let mut s = serve_exec(r#"sleep 0.3; touch "$PWD/finished""#, &[]);
    notify(&s, &event("g", "/e"));
    s.signal("TERM");
    assert_eq!(s.wait_exit().code(), Some(0));
    assert!(s.dir.path().join("finished").exists());
}

#[test]
fn exec_flags_are_validated_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["serve", "--exec", "/nonexistent/led"], "--exec"),
        (vec!["serve", "--exec", "sh -c 'unbalanced"], "--exec"),
        (vec!["serve", "--exec-max", "2"], "--exec-max needs --exec"),
        (
            vec!["serve", "--exec", "true", "--exec-max", "0"],
            "--exec-max",
        ),
        (
            vec!["serve", "--exec", "true", "--exec-timeout", "soon"],
            "--exec-timeout",
        ),
    ] {
        let out = crate::support::ringhook(dir.path())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// A uuid is the sender's text: with escape sequences and CRLF in it, the operational log shows it
/// escaped (no raw ESC or CR reaches stderr) and no forged line appears, in `--exec`'s lines (a
/// failure, a full queue) and serve's duplicate line.
#[test]
fn a_hostile_uuid_cannot_forge_an_operational_log_line() {
    const FORGED: &str = "2026-01-01T00:00:00.000Z ERROR forged";
    let mut s = serve_exec(
        "sleep 0.3; exit 3",
        &["--exec-max", "1", "--exec-queue", "0"],
    );
    let uuid = format!(r"esc\u001b[31m\r\n{FORGED}");
    let body = format!(r#"{{"uuid":"{uuid}","event":"/e","body":{{}}}}"#);
    notify(&s, &body); // runs and fails
    notify(&s, &body); // a duplicate: acknowledged, its command not run again
    let other = body.replace("esc", "other");
    notify(&s, &other); // its command is skipped: the one slot is busy
    s.wait_until(
        "the failure, the duplicate and the skip are reported",
        |err| {
            err.contains("exit status: 3")
                && err.contains("duplicate notification")
                && err.contains("command skipped")
        },
    );
    assert!(s.stop().success());
    let err = s.stderr();
    assert!(!err.contains('\u{1b}') && !err.contains('\r'), "{err:?}");
    assert!(!err.lines().any(|l| l.starts_with(FORGED)), "{err}");
    assert!(err.contains(r"esc\u{1b}[31m\r\n2026"), "{err}");
}
