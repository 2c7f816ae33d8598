//! `ringhook connect` attacked as a hostile gateway, a failing disk and a careless operator would:
//! the real binary against the fake WebSocket Gateway (`fake_wsg.rs`), loopback only, every wait
//! bounded and on events.

use std::time::{Duration, Instant};

use crate::connect::{Setup, kill, session_child};
use crate::fake_wsg as fake;
use crate::support::{PATIENCE, Serve};

fn body(i: u32) -> String {
    format!(
        "{{\"uuid\":\"u-{i}\",\"event\":\"/restapi/v1.0/account/1/extension/1/message-store\",\"timestamp\":\"2026-12-07T00:00:00.000Z\",\"subscriptionId\":\"s\",\"body\":{{\"n\":{i}}}}}"
    )
}

/// Waits until `done` holds (bounded); false when the time ran out.
fn within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    true
}

/// A `ConnectionDetails` with absurd timeouts (a recovery window of 31,700 years, an absolute
/// timeout of u64::MAX seconds) made the session child panic on a time overflow; the loop then
/// restarted it again and again, a fresh ws token each time, notifications lost in between.
#[test]
fn absurd_connection_details_timeouts_do_not_crash_the_session() {
    for (field, value) in [("recovery", 1_000_000_000_000u64), ("absolute", u64::MAX)] {
        let t = Setup::new();
        t.fake.with(|w| match field {
            "recovery" => w.recovery_timeout = value,
            _ => w.absolute_timeout = value,
        });
        let mut r = t.launch();
        r.wait_for("WebSocket: subscribed");
        let ok = within(PATIENCE, || {
            t.fake.notify(&body(1));
            !t.lines().is_empty() || r.stderr().contains("panicked")
        });
        let err = r.stderr();
        assert!(
            ok && !err.contains("panicked") && !err.contains("session child ended"),
            "{field} timeout {value}: the session child crashed:\n{err}"
        );
        assert!(t.lines()[0].contains("\"u-1\""));
    }
}

/// A 429 storm on `POST /restapi/oauth/wstoken` with `Retry-After: 0`: every answer was
/// "waited out" at once inside the HTTP layer and the request sent again, outside the
/// session's pacing: dozens of ws-token requests a second against a limit of 5 a minute.
#[test]
fn a_429_storm_on_the_ws_token_stays_within_five_a_minute() {
    let t = Setup::new();
    for _ in 0..40 {
        t.fake.script_wstoken(429, Some(0));
    }
    let mut r = t.launch();
    r.wait_for("rate limited (HTTP 429)");
    // The observation window is the point of the test: a rate over time.
    std::thread::sleep(Duration::from_secs(4));
    let calls = t.fake.with(|w| w.ws_token_calls);
    assert!(
        calls <= 5,
        "{calls} ws-token requests in about 4 s (the Auth group allows 5 a minute)"
    );
}

/// A log that cannot be written (the disk full) while notifications arrive: a webhook gets 503
/// and RingCentral sends it again; over the WebSocket nothing is sent again, so the loop must at
/// least catch up the gap once the log is writable. It dropped the notification silently.
#[test]
fn a_full_disk_does_not_silently_lose_websocket_notifications() {
    use std::io::Write as _;
    let t = Setup::new();
    let mut serve = t.serve();
    let disk = serve.tmpfs_disk("64k");
    let log = disk.join("events.log");
    let mut r = serve.args(["--log-file".as_ref(), log.as_os_str()]).start();
    r.wait_for("WebSocket: subscribed");
    let (log, filler) = (r.in_namespace(&log), r.in_namespace(&disk.join("filler")));
    t.fake.notify(&body(0));
    assert!(within(PATIENCE, || std::fs::read_to_string(&log)
        .is_ok_and(|l| l.contains("u-0"))));
    let mut f = std::fs::File::create(&filler).unwrap();
    while f.write_all(&[b'x'; 4096]).is_ok() {}
    drop(f);
    // A body larger than any space left.
    let big = format!(
        "{{\"uuid\":\"u-lost\",\"event\":\"/e\",\"body\":{{\"pad\":\"{}\"}}}}",
        "p".repeat(8192)
    );
    t.fake.notify(&big);
    r.wait_for("event log write failed");
    std::fs::remove_file(&filler).unwrap();
    t.fake.notify(&body(2));
    assert!(within(PATIENCE, || std::fs::read_to_string(&log)
        .is_ok_and(|l| l.contains("u-2"))));
    let logged = std::fs::read_to_string(&log).unwrap().contains("u-lost");
    let caught_up = r.stderr().contains("events may have been missed");
    assert!(
        logged || caught_up,
        "u-lost was neither logged nor caught up:\n{}",
        r.stderr()
    );
}

/// The loop's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A gateway that floods notifications faster than the log can take them (here: the log is
/// stdout, a pipe nobody reads, so every write blocks): memory stays bounded (held).
#[test]
fn a_flood_faster_than_the_log_keeps_memory_bounded() {
    let t = Setup::new();
    let mut r = t.serve().capture_stdout().start();
    r.wait_for("WebSocket: subscribed");
    t.fake.wait("subscribed", |w| !w.created.is_empty());
    let pid = r.child.id();
    let before = rss_kib(pid);
    let pad = "f".repeat(2000);
    let fake = std::sync::Arc::new(t.fake);
    let sender = {
        let fake = fake.clone();
        std::thread::spawn(move || {
            for i in 0..12_000u32 {
                fake.notify(&format!(
                    "{{\"uuid\":\"flood-{i}\",\"event\":\"/e\",\"body\":{{\"pad\":\"{pad}\"}}}}"
                ));
            }
        })
    };
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut done_at = None;
    while Instant::now() < deadline {
        peak = peak.max(rss_kib(pid));
        if sender.is_finished() && done_at.is_none() {
            done_at = Some(Instant::now());
        }
        if done_at.is_some_and(|d| d.elapsed() > Duration::from_secs(2)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = r.child.kill();
    assert!(
        peak < before + 12 * 1024,
        "the loop grew from {before} KiB to {peak} KiB under a flood it cannot log"
    );
}

/// An operator kills the session child alone: the loop starts it again, the kept OAuth session
/// is refreshed (no new login) and the WebSocket session recovered.
#[test]
fn sigkill_of_the_session_child_alone_restarts_it_without_a_new_login() {
    let t = Setup::new();
    let mut r = t.launch();
    r.wait_for("WebSocket: subscribed");
    assert!(within(PATIENCE, || std::fs::read_to_string(t.state())
        .is_ok_and(|s| s.contains("recoverableUntil"))));
    kill(session_child(r.child.id()));
    r.wait_for("session child ended");
    r.wait_for("session recovered");
    t.fake.notify(&body(7));
    assert!(within(PATIENCE, || t.lines().len() == 1));
    assert_eq!(t.fake.with(|w| w.logins), 1);
}

/// A uuid with CR, LF and ESC in it reaches the operational log escaped (one line, no escape
/// sequence).
#[test]
fn a_hostile_uuid_is_escaped_in_the_operational_log() {
    let t = Setup::new();
    let mut r = t.launch();
    r.wait_for("WebSocket: subscribed");
    let b = r#"{"uuid":"x\r\nFORGED line \u001b[31m","event":"/e"}"#;
    let msg = format!("[{{\"type\":\"ServerNotification\",\"messageId\":\"m\"}},{b}]");
    t.fake.send_raw(&msg);
    t.fake.send_raw(&msg);
    r.wait_for("duplicate notification");
    let err = r.stderr();
    assert!(!err.contains('\u{1b}'), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("FORGED")), "{err}");
    assert_eq!(t.lines().len(), 1);
}

/// The state file's recovery window was saved once per connection (subscribe time + window) and
/// never moved on with the sign of life saved every 10 s: after the first window of a long
/// connection, a SIGKILL (of the child, or of ringhook and a restart) never tried recovery,
/// though the gateway still kept the session; it subscribed again and caught up instead.
#[test]
fn the_saved_recovery_window_follows_the_last_sign_of_life() {
    let t = Setup::new();
    t.fake.with(|w| w.recovery_timeout = 4);
    let mut r = t.launch();
    r.wait_for("WebSocket: subscribed");
    let saved = |key: &str| {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(t.state()).unwrap_or_default())
                .unwrap_or_default();
        v["connect"][key]
            .as_str()
            .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
    };
    assert!(within(PATIENCE, || saved("recoverableUntil").is_some()));
    let first = saved("aliveAt").expect("a sign of life");
    // Notifications flow; the periodic save (every 10 s) records the sign of life.
    let mut n = 0;
    assert!(within(Duration::from_secs(25), || {
        n += 1;
        if n % 20 == 0 {
            t.fake.notify(&body(n));
        }
        saved("aliveAt") > Some(first + Duration::from_secs(5))
    }));
    let alive = saved("aliveAt").unwrap();
    let until = saved("recoverableUntil").expect("a recovery window");
    assert!(
        until >= alive + Duration::from_secs(4),
        "the saved window ends {until:?}, before the last sign of life {alive:?} plus 4 s"
    );
    r.signal("KILL");
    r.wait_exit();
    t.fake.wait("the child left", |w| !w.connected());
    let mut r2 = t.launch();
    r2.wait_for("session recovered");
}

/// The recovery window was counted from the last message *received*, not from when the
/// connection was lost: on a quiet connection (a heartbeat answer every third of the idle
/// timeout, 10 min by default) a drop more than the window (3 min) after the last message never
/// tried recovery; it subscribed again and caught up, presence events in the gap lost.
#[test]
fn a_quiet_connection_dropped_later_than_the_window_still_recovers() {
    let t = Setup::new();
    t.fake.with(|w| {
        w.idle_timeout = 60; // a heartbeat every 20 s
        w.recovery_timeout = 2;
    });
    let mut r = t.launch();
    r.wait_for("WebSocket: subscribed");
    // Quiet for longer than the window, well before the first heartbeat.
    std::thread::sleep(Duration::from_secs(4));
    t.fake.drop_connection();
    let line = r.wait_for("WebSocket: s");
    assert!(
        line.contains("session recovered"),
        "a drop just now is within the window: {line}\n{}",
        r.stderr()
    );
}

/// SIGTERM while the session is between connections (the ws token refused with a 5xx): exit 0
/// soon, the OAuth session revoked.
#[test]
fn sigterm_while_disconnected_exits_0_and_revokes() {
    let t = Setup::new();
    for _ in 0..5 {
        t.fake.script_wstoken(503, None);
    }
    let mut r = t.launch();
    r.wait_for("WebSocket: reconnecting (no WebSocket token");
    let st = r.stop();
    assert!(st.success(), "{st:?}\n{}", r.stderr());
    assert!(t.fake.with(|w| !w.revoked.is_empty()), "{}", r.stderr());
}

/// The disk that holds the state file (and the log) fills up: `connect` must go on (the log
/// answers for itself through /health), not stop for good because the state could not be saved.
#[test]
fn a_full_state_disk_does_not_stop_connect() {
    use std::io::Write as _;
    let t = Setup::new();
    let mut serve = Serve::connect()
        .env("RC_SERVER_URL", &t.fake.url)
        .env("RC_CLIENT_ID", fake::CLIENT_ID)
        .env("RC_CLIENT_SECRET", fake::CLIENT_SECRET)
        .env("RC_JWT", fake::JWT);
    let disk = serve.tmpfs_disk("64k");
    let (state, log) = (disk.join("state.json"), disk.join("events.log"));
    let mut r = serve
        .env("RINGHOOK_STATE", &state.to_string_lossy())
        .args(["--log-file".as_ref(), log.as_os_str()])
        .start();
    r.wait_for("WebSocket: subscribed");
    let filler = r.in_namespace(&disk.join("filler"));
    let mut f = std::fs::File::create(&filler).unwrap();
    while f.write_all(&[b'x'; 1024]).is_ok() {}
    drop(f);
    // A notification keeps the connection's sign of life moving; the periodic save (10 s) fails.
    let mut n = 0;
    let stopped = within(Duration::from_secs(14), || {
        n += 1;
        if n % 20 == 0 {
            t.fake.notify(&body(n));
        }
        r.child.try_wait().unwrap().is_some()
    });
    assert!(!stopped, "connect stopped:\n{}", r.stderr());
    std::fs::remove_file(&filler).unwrap();
    t.fake.notify(&body(99_999));
    let log = r.in_namespace(&log);
    assert!(within(PATIENCE, || std::fs::read_to_string(&log)
        .is_ok_and(|l| l.contains("u-99999"))));
}

/// The clock set back (an hour, by hand or by a board without a real-time clock booting on an
/// old time) leaves the state file's ws-token times in the future, some garbage besides: connect
/// still takes its token at once (held: a future time counts as one taken now) and keeps no time
/// in the future.
#[test]
fn ws_token_times_in_the_future_do_not_block_connect() {
    let t = Setup::new();
    let at = |s: u64| std::time::SystemTime::now() + Duration::from_secs(3600 + s);
    let text = |s: u64| humantime::format_rfc3339_millis(at(s)).to_string();
    let state = serde_json::json!({"server": t.fake.url, "connect": {
        "wsTokens": [text(0), text(1), text(2), text(3), "9999-12-31T23:59:59Z", "garbage"]}});
    std::fs::write(t.state(), state.to_string()).unwrap();
    let mut r = t.launch();
    let line = r.wait_for("WebSocket: ");
    assert!(
        line.contains("WebSocket: connected"),
        "{line}\n{}",
        r.stderr()
    );
    r.wait_for("WebSocket: subscribed");
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.state()).unwrap()).unwrap();
    for k in kept["connect"]["wsTokens"].as_array().unwrap() {
        let k = humantime::parse_rfc3339_weak(k.as_str().unwrap()).unwrap();
        assert!(k < at(0) - Duration::from_secs(3000), "{kept}");
    }
}

/// A `ConnectionDetails` with one field of an unexpected type (`recoveryBufferSize` as a string,
/// negative, a float) was read as if it had no fields at all: its `recoveryState: Successful`
/// was lost with it, so a recovered session was taken for "recovery not offered", subscribed
/// again (replacing the recovered subscription) and caught up, every time.
#[test]
fn an_odd_recovery_buffer_size_does_not_hide_a_successful_recovery() {
    for odd in [
        serde_json::json!("5"),
        serde_json::json!(-1),
        serde_json::json!(1.5),
    ] {
        let t = Setup::new();
        t.fake
            .with(|w| w.details_override = vec![("recoveryBufferSize".into(), odd.clone())]);
        let mut r = t.start();
        t.fake.drop_connection();
        t.fake.notify(&body(1));
        let line = r.wait_for("WebSocket: s");
        assert!(
            line.contains("session recovered"),
            "recoveryBufferSize {odd}: {line}\n{}",
            r.stderr()
        );
        assert!(within(PATIENCE, || t.lines().len() == 1));
        assert_eq!(t.fake.with(|w| w.created.len()), 1, "{odd}");
    }
}

/// A gateway that keeps nothing while the client is away (`recoveryBufferSize: 0`) resends
/// nothing on a successful recovery: whatever came meanwhile is lost, so the gap is caught up
/// at once (it was taken as a buffer of 1, caught up only if a notification came in the first
/// seconds).
#[test]
fn a_recovery_buffer_of_zero_catches_up_the_gap() {
    let t = Setup::new();
    t.fake
        .with(|w| w.details_override = vec![("recoveryBufferSize".into(), 0.into())]);
    let mut r = t.start();
    t.fake.drop_connection();
    r.wait_for("session recovered");
    let line = r.wait_for("catching up since");
    assert!(line.contains("keeps no notification"), "{line}");
    r.wait_for("catching up on missed messages and calls");
    assert_eq!(t.fake.with(|w| w.created.len()), 1, "the session is kept");
}

/// A notification whose meta has an odd field (a numeric header, `status` as a string, a
/// numeric `messageId`) was "a message that is not a JSON array": the connection was dropped and
/// the notification, delivered as far as the gateway knows, lost.
#[test]
fn a_notification_with_an_odd_meta_is_logged() {
    let t = Setup::new();
    let mut r = t.start();
    let b = r#"{"uuid":"odd-meta","event":"/e","subscriptionId":7}"#;
    t.fake.send_raw(&format!(
        "[{{\"type\":\"ServerNotification\",\"messageId\":7,\"status\":\"200\",\"headers\":{{\"RCRequestId\":1,\"X\":null}},\"wsc\":{{\"token\":5}}}},{b}]"
    ));
    t.fake.notify(&body(2));
    assert!(
        within(PATIENCE, || t.lines().len() == 2),
        "{:?}\n{}",
        t.lines(),
        r.stderr()
    );
    assert!(t.lines()[0].contains("odd-meta"));
    assert!(!r.stderr().contains("reconnecting"), "{}", r.stderr());
    let _ = r.wait_for("a notification of subscription 7 arrived");
}

/// The gateway's strings reached the operational log whole: a foreign `subscriptionId`, an
/// `Error`'s code and message, a first message's type, each up to `--max-body` (1 MiB) long, one
/// line each, several per connection and again at every reconnect (journald cuts lines at 48 KiB
/// and a terminal scrolls for pages).
#[test]
fn the_gateways_long_strings_are_clipped_in_the_operational_log() {
    let t = Setup::new();
    let mut r = t.start();
    let long = "L".repeat(200_000);
    t.fake.notify(
        &serde_json::json!({"uuid": "f1", "event": "/e", "subscriptionId": long}).to_string(),
    );
    r.wait_for("a notification of subscription");
    t.fake.send_raw(
        &serde_json::json!([{"type": "Error", "messageId": "e"}, {"errorCode": long, "message": long}])
            .to_string(),
    );
    r.wait_for("reconnecting (the gateway said");
    r.wait_for("session recovered");
    assert!(within(PATIENCE, || t.lines().len() == 1));
    let err = r.stderr();
    let longest = err.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2048, "a line of {longest} bytes");
    assert!(err.contains("200000 bytes"), "the length is told");
}

/// A FIFO where the state file belongs (an operator's mistake, or a path reused): the session
/// child's read of the state blocked forever on opening it, with no line said; connect sat there
/// unsubscribed. It now stops with one line naming the file and exit status 1.
#[test]
fn a_fifo_as_the_state_file_stops_connect_with_a_reason() {
    let t = Setup::new();
    let st = std::process::Command::new("mkfifo")
        .arg(t.state())
        .status()
        .unwrap();
    assert!(st.success());
    let mut r = t.launch();
    let line = r.wait_for("state file");
    assert!(line.contains("not a regular file"), "{line}");
    assert_eq!(r.wait_exit().code(), Some(1), "{}", r.stderr());
}

/// `register` (cron, or `serve --register`) and `connect` share the default state file. register
/// read the file at its start and, seconds later (the platform's calls, the validation
/// handshake), wrote it back whole: whatever connect had saved meanwhile (its refreshed OAuth
/// session's refresh token, a new wsc, its ws-token times) was put back to the old. A restart of
/// connect then refreshed with a spent token: a new login, the WebSocket session lost.
#[test]
fn register_keeps_what_connect_saved_during_its_run() {
    use std::io::{BufRead, BufReader, Write};
    let mut s = crate::install::Setup::new();
    // A receiver that holds the validation handshake until connect has written the file.
    let stub = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    s.set(
        "WEBHOOK_ADDRESS",
        &format!("http://{}/webhook", stub.local_addr().unwrap()),
    );
    let state = s.state_path();
    let connect = |refresh: &str| {
        serde_json::json!({"subscriptionId": "ws-1", "refreshToken": refresh,
            "refreshUntil": "2999-01-01T00:00:00Z", "wsc": "wsc-1"})
    };
    std::fs::write(
        &state,
        serde_json::json!({"server": s.fake.url, "connect": connect("spent")}).to_string(),
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut held = false;
        for c in stub.incoming() {
            let mut c = c.unwrap();
            let (mut token, mut platform) = (String::new(), false);
            let mut r = BufReader::new(c.try_clone().unwrap());
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap() == 0 || l.trim().is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap_or((&l, ""));
                match k.to_ascii_lowercase().as_str() {
                    "validation-token" => token = v.trim().to_string(),
                    "user-agent" => platform = v.contains("RingCentral-Webhook"),
                    _ => {}
                }
            }
            if platform && !held {
                // Connect's child saves while register waits for the platform.
                let mut st: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
                st["connect"] = connect("fresh");
                std::fs::write(&state, st.to_string()).unwrap();
                held = true;
                tx.send(()).unwrap();
            }
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nValidation-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let out = s.register();
    assert_eq!(out["action"], "created", "{out}");
    rx.recv().unwrap();
    drop(holder);
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.state_path()).unwrap()).unwrap();
    assert_eq!(st["id"], out["id"], "{st}");
    assert_eq!(st["connect"]["refreshToken"], "fresh", "{st}");
}

/// Runs `connect` on `t`'s state file (with a log of its own: the log's lock is not what is
/// tested) until it exits by itself within the patience: its exit status and stderr.
fn connect_to_end(t: &Setup, state: &std::path::Path) -> (Option<i32>, String) {
    let log = state.with_file_name("other.log");
    let mut c = crate::support::ringhook(state.parent().unwrap())
        .args(["connect", "--log-file"])
        .arg(&log)
        .env("RC_SERVER_URL", &t.fake.url)
        .env("RC_CLIENT_ID", fake::CLIENT_ID)
        .env("RC_CLIENT_SECRET", fake::CLIENT_SECRET)
        .env("RC_JWT", fake::JWT)
        .env("RINGHOOK_STATE", state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = within(PATIENCE, || c.try_wait().unwrap().is_some());
    if !ended {
        let _ = c.kill();
    }
    let out = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(ended, "connect kept running:\n{err}");
    (out.status.code(), err)
}

/// The state file's folder not made yet (the default `~/.local/state/ringhook/` on a fresh
/// machine): the session makes it when it first saves. The lock beside the state file was
/// opened first, in a folder that did not exist: connect refused to start at all.
#[test]
fn a_state_file_in_a_folder_not_made_yet_does_not_stop_connect() {
    let t = Setup::new();
    let state = t.state().with_file_name("not/made/yet/state.json");
    let mut r = t
        .serve()
        .env("RINGHOOK_STATE", state.to_str().unwrap())
        .args(["--log-file".as_ref(), t.log().as_os_str()])
        .start();
    r.wait_for("WebSocket: subscribed");
    t.fake.notify(&body(1));
    assert!(within(PATIENCE, || t.lines().len() == 1));
    assert!(within(PATIENCE, || std::fs::read_to_string(&state)
        .is_ok_and(|s| s.contains("refreshToken"))));
    assert_eq!(r.stop().code(), Some(0));
}

/// A FIFO where the lock file goes (`<state>.lock`): opening it to write waited for a reader
/// forever, before a line was said; connect sat there. A directory there was reported as the
/// state file being one. Both now stop connect with a line naming the lock file.
#[test]
fn a_fifo_or_folder_as_the_lock_file_stops_connect_with_a_reason() {
    for kind in ["fifo", "folder"] {
        let t = Setup::new();
        let lock = t.state().with_file_name("state.json.lock");
        match kind {
            "fifo" => assert!(
                std::process::Command::new("mkfifo")
                    .arg(&lock)
                    .status()
                    .unwrap()
                    .success()
            ),
            _ => std::fs::create_dir(&lock).unwrap(),
        }
        let (code, err) = connect_to_end(&t, &t.state());
        assert_eq!(code, Some(1), "{kind}: {err}");
        assert!(
            err.contains("state.json.lock") && err.contains("not a regular file"),
            "{kind}: {err}"
        );
    }
}

/// The session child outlives a SIGKILLed loop until it notices (a read of up to a minute,
/// a platform call); the loop's lock went with the loop, so a new connect started meanwhile
/// ran a second session child beside it: two refreshing the one OAuth session, and the old
/// one's last save (its spent refresh token, `loopLostAt`) landing on the new one's file.
/// The child now holds the lock with the loop: the new connect waits a moment, then is
/// refused; once the old child is gone the next one recovers and catches up.
#[test]
fn a_session_child_outliving_its_killed_loop_keeps_the_state_file_locked() {
    let t = Setup::new();
    let mut a = t.start();
    t.fake.notify(&body(0));
    assert!(within(PATIENCE, || t.lines().len() == 1));
    let kid = session_child(a.child.id());
    let signal = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &kid.to_string()])
                .status()
                .unwrap()
                .success()
        )
    };
    // Frozen, as in a long blocking call: it cannot notice its loop is gone.
    signal("-STOP");
    a.signal("KILL");
    // Not `wait_exit`: the frozen child holds the stderr it shares.
    assert!(within(PATIENCE, || a.child.try_wait().unwrap().is_some()));
    let (code, err) = connect_to_end(&t, &t.state());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("in use by another ringhook connect"), "{err}");
    assert_eq!(
        t.fake.with(|w| w.refreshes),
        0,
        "nobody spent the refresh token"
    );
    signal("-CONT");
    assert!(within(PATIENCE, || crate::support::exited(kid)));
    let st = std::fs::read_to_string(t.state()).unwrap();
    assert!(st.contains("loopLostAt"), "{st}");
    t.fake.drop_connection();
    let mut b = t.launch();
    b.wait_for("session recovered");
    b.wait_for("catching up on missed messages and calls");
    b.stop();
}

/// The loop killed while the session child waited for its next ws token (four taken this
/// minute, as after a few reconnects): the child took its orphaning for a stop, revoked the
/// OAuth session and forgot it, the kept session and the note for a catch-up both lost; the
/// next start had to sign in again and could not recover. It now leaves as it does from a
/// connection: the session kept, `loopLostAt` noted.
#[test]
fn a_loop_killed_while_the_child_paces_its_ws_tokens_keeps_the_session() {
    let t = Setup::new();
    let ago = |ms: u64| {
        let at = std::time::SystemTime::now() - Duration::from_millis(ms);
        humantime::format_rfc3339_millis(at).to_string()
    };
    let state = serde_json::json!({"server": t.fake.url,
        "connect": {"wsTokens": [ago(40), ago(30), ago(20), ago(10)]}});
    std::fs::write(t.state(), state.to_string()).unwrap();
    let mut a = t.launch();
    a.wait_for("tokens taken this minute");
    kill_loop(&mut a);
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.state()).unwrap()).unwrap();
    assert!(t.fake.with(|w| w.revoked.is_empty()), "revoked: {st}");
    assert!(st["connect"]["refreshToken"].is_string(), "{st}");
    assert!(st["connect"]["loopLostAt"].is_string(), "{st}");
}

/// A recovered session after a killed loop, from a gateway that keeps nothing while away
/// (`recoveryBufferSize` 0): the child asked for the one gap twice (once for the empty buffer,
/// once for the killed loop), counted as two gaps and, when the two lines reached the loop
/// in two reads, run as two catch-ups one after the other.
#[test]
fn a_killed_loop_and_an_empty_recovery_buffer_are_one_gap() {
    let t = Setup::new();
    t.fake
        .with(|w| w.details_override = vec![("recoveryBufferSize".into(), 0.into())]);
    let mut a = t.start();
    kill_loop(&mut a);
    t.fake.drop_connection();
    let mut b = t.launch_with(&["--metrics-path", "/metrics"]);
    b.wait_for("session recovered");
    let metrics = || {
        let m = b.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        String::from_utf8_lossy(&m.body).into_owned()
    };
    // "S up" follows every gap the child tells of on the connection.
    assert!(within(PATIENCE, || metrics()
        .contains("\nringhook_websocket_subscribed 1\n")));
    let m = metrics();
    assert!(m.contains("\nringhook_websocket_gaps_total 1\n"), "{m}");
    b.wait_for("catching up on missed messages and calls");
}

/// The state file's lock reaches the session child (which holds the session) and no other:
/// an `--exec` command (which may outlive connect) holding it would keep the next connect out.
#[test]
fn the_state_files_lock_is_held_by_the_session_child_and_no_exec_command() {
    let t = Setup::new();
    let fds = t.state().with_file_name("fds.txt");
    let script = format!(
        "sh -c 'for f in /proc/$$/fd/*; do readlink $f; done > {0}.tmp; mv {0}.tmp {0}'",
        fds.display()
    );
    let mut r = t.launch_with(&["--exec", &script]);
    r.wait_for("WebSocket: subscribed");
    let pid = r.child.id();
    let kid = session_child(pid).to_string();
    let holds = |pid: &str| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
            .any(|l| l.to_string_lossy().ends_with("state.json.lock"))
    };
    assert!(holds(&pid.to_string()), "the loop holds the lock");
    assert!(holds(&kid), "the session child holds the lock");
    t.fake.notify(&body(1));
    assert!(within(PATIENCE, || fds.exists()));
    let seen = std::fs::read_to_string(&fds).unwrap();
    assert!(!seen.contains("state.json.lock"), "{seen}");
    r.stop();
}

/// `loopLostAt` is outside text when read back: a line break in it must not reach the
/// child→loop protocol as a line of its own, nor stop the session.
#[test]
fn a_malformed_loop_lost_at_is_one_catch_up_and_no_injected_line() {
    let t = Setup::new();
    let mut a = t.start();
    kill_loop(&mut a);
    t.fake.drop_connection();
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.state()).unwrap()).unwrap();
    assert!(st["connect"]["loopLostAt"].is_string(), "{st}");
    st["connect"]["loopLostAt"] =
        "2026-12-07T00:00:00Z\nC INJECTED\nN {\"uuid\":\"forged\"}".into();
    std::fs::write(t.state(), st.to_string()).unwrap();
    let mut b = t.launch_with(&["--metrics-path", "/metrics"]);
    b.wait_for("session recovered");
    b.wait_for("catching up on missed messages and calls");
    let m = b.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let m = String::from_utf8_lossy(&m.body).into_owned();
    assert!(m.contains("\nringhook_websocket_gaps_total 1\n"), "{m}");
    assert!(!b.stderr().contains("INJECTED"), "{}", b.stderr());
    t.fake.notify(&body(2));
    assert!(within(PATIENCE, || t.lines().len() == 1));
    assert!(!t.lines()[0].contains("forged"));
}

/// Kills connect's loop with SIGKILL, leaving its session child orphaned, and waits until both
/// are gone (the child notices, saves the session and `loopLostAt`, and exits).
fn kill_loop(r: &mut crate::support::Running) {
    let kid = session_child(r.child.id());
    r.signal("KILL");
    r.wait_exit();
    assert!(within(PATIENCE, || crate::support::exited(kid)));
}
