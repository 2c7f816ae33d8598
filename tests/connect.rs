//! `ringhook connect` against the fake WebSocket Gateway (`fake_wsg.rs`): the real binary, its
//! session child, real loopback sockets. Waits are on events (log lines, the fake's world), in
//! bounded loops.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::fake_wsg::{self as fake, FakeWsg, Recovery};
use crate::support::{PATIENCE, Running, Serve, reference};

/// A fake gateway and a folder for `connect`'s log and state (`attack_connect.rs` uses it too).
pub(crate) struct Setup {
    pub(crate) fake: FakeWsg,
    dir: tempfile::TempDir,
}

impl Setup {
    pub(crate) fn new() -> Setup {
        Setup {
            fake: FakeWsg::start(),
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }
    pub(crate) fn log(&self) -> PathBuf {
        self.dir.path().join("events.log")
    }
    /// `connect` with the fake's credentials and this state file, not started.
    pub(crate) fn serve(&self) -> Serve {
        Serve::connect()
            .env("RC_SERVER_URL", &self.fake.url)
            .env("RC_CLIENT_ID", fake::CLIENT_ID)
            .env("RC_CLIENT_SECRET", fake::CLIENT_SECRET)
            .env("RC_JWT", fake::JWT)
            .env("RINGHOOK_STATE", &self.state().to_string_lossy())
    }
    /// `connect` logging to this log, with `extra` flags; not waited for.
    pub(crate) fn launch_with(&self, extra: &[&str]) -> Running {
        self.serve()
            .args(["--log-file".as_ref(), self.log().as_os_str()])
            .args(extra)
            .start()
    }
    /// `connect` logging to this log; not waited for.
    pub(crate) fn launch(&self) -> Running {
        self.launch_with(&[])
    }
    /// `connect`, once subscribed.
    pub(crate) fn start(&self) -> Running {
        let mut r = self.launch();
        r.wait_for("WebSocket: subscribed");
        r
    }
    pub(crate) fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
    /// Waits until the log holds `n` lines (bounded).
    fn wait_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let l = self.lines();
            if l.len() >= n {
                return l;
            }
            assert!(Instant::now() < deadline, "{n} lines not logged: {l:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A notification body, pretty-printed across lines as the gateway's samples are.
fn body(i: u32) -> String {
    format!(
        "{{\n  \"uuid\": \"u-{i}\",\n  \"event\": \"/restapi/v1.0/account/1/extension/1/message-store\",\n  \"timestamp\": \"2026-12-07T00:00:00.000Z\",\n  \"subscriptionId\": \"s\",\n  \"ownerId\": \"1\",\n  \"body\": {{ \"n\": {i}, \"text\": \"a \\\"quoted\\\"\\nline\" }}\n}}"
    )
}

/// JSON with the whitespace outside strings removed: what the log keeps of a body.
fn minify(s: &str) -> String {
    let (mut out, mut in_str, mut esc) = (String::new(), false, false);
    for c in s.chars() {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

fn uuids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["notification"]["uuid"].as_str().unwrap().to_string()
        })
        .collect()
}

fn health(r: &Running) -> u16 {
    r.exchange(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .status
}

/// Waits until `/health` answers `want` (the loop hears the child's state a moment after the
/// child logs it).
fn wait_health(r: &Running, want: u16) {
    let deadline = Instant::now() + PATIENCE;
    while health(r) != want {
        assert!(Instant::now() < deadline, "/health never answered {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn notifications_are_logged_byte_exact_once_and_sigterm_deletes_the_subscription() {
    let t = Setup::new();
    let mut r = t.launch_with(&["--metrics-path", "/metrics"]);
    r.wait_for("WebSocket: subscribed");
    wait_health(&r, 200);
    let m = r.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8_lossy(&m.body).into_owned();
    assert!(
        text.contains("\nringhook_websocket_subscribed 1\n"),
        "{text}"
    );
    // No webhook: a POST is refused, whatever its path.
    let post = r.exchange(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(post.status, 403);
    // The published sample, as the gateway embeds it, and ours.
    let raw = std::fs::read_to_string(reference().join("websocket/docs-server-notification.json"))
        .unwrap();
    let parts: Vec<&serde_json::value::RawValue> = serde_json::from_str(&raw).unwrap();
    let sample = parts[1].get().to_string();
    t.fake.notify(&sample);
    t.fake.notify(&body(1));
    t.fake.notify(&body(1)); // a repeat: dedupe by uuid
    t.fake.notify(&body(2));
    let lines = t.wait_lines(3);
    let notif = |l: &str| {
        let start = l.find("\"notification\":").unwrap() + "\"notification\":".len();
        l[start..l.len() - 1].to_string()
    };
    assert_eq!(notif(&lines[0]), minify(&sample));
    assert_eq!(notif(&lines[1]), minify(&body(1)));
    assert_eq!(notif(&lines[2]), minify(&body(2)));
    r.wait_for("duplicate notification u-1");
    assert_eq!(t.lines().len(), 3);

    let st = r.stop();
    assert!(st.success(), "{st:?}");
    let created = t.fake.with(|w| w.created.clone());
    assert_eq!(t.fake.with(|w| w.deleted.clone()), created);
    assert!(
        t.fake.with(|w| !w.revoked.is_empty()),
        "the session is revoked"
    );
    let err = r.stderr();
    for secret in [fake::CLIENT_SECRET, fake::JWT, "acc-", "ref-", "wst-"] {
        assert!(!err.contains(secret), "a secret leaked: {secret}\n{err}");
    }
    let state = std::fs::read_to_string(t.state()).unwrap();
    assert!(
        !state.contains("ref-"),
        "a revoked session is forgotten: {state}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(t.state()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_dropped_connection_is_recovered_with_nothing_lost_or_doubled() {
    let t = Setup::new();
    let mut r = t.start();
    for i in 0..3 {
        t.fake.notify(&body(i));
    }
    t.wait_lines(3);
    t.fake.drop_connection();
    // Sent while the client is away: kept for recovery.
    for i in 3..6 {
        t.fake.notify(&body(i));
    }
    r.wait_for("session recovered");
    r.wait_for("recovered (");
    t.fake.notify(&body(6));
    let lines = t.wait_lines(7);
    let got = uuids(&lines);
    let want: Vec<String> = (0..7).map(|i| format!("u-{i}")).collect();
    assert_eq!(got, want, "the resend's repeats are dropped by dedupe");
    assert_eq!(t.fake.with(|w| w.logins), 1, "no new login to reconnect");
    assert_eq!(
        t.fake.with(|w| w.created.len()),
        1,
        "the subscription is kept"
    );
}

#[test]
fn a_failed_recovery_subscribes_again_and_catches_up() {
    let t = Setup::new();
    let mut r = t.start();
    t.fake.notify(&body(0));
    t.wait_lines(1);
    t.fake.with(|w| w.recovery = Recovery::Failed);
    t.fake.drop_connection();
    let line = r.wait_for("subscribed again; catching up since");
    assert!(line.contains("WSG-1005"), "{line}");
    r.wait_for("catching up on missed messages and calls");
    // The catch-up child read the subscription list.
    t.fake.wait("catch-up listed the subscriptions", |w| {
        w.journal
            .iter()
            .any(|j| j == "GET /restapi/v1.0/subscription")
    });
    t.fake.wait("subscribed again", |w| w.created.len() == 2);
    let first = t.fake.with(|w| w.created[0].clone());
    t.fake.wait("the lost session's subscription deleted", |w| {
        w.deleted == [first.clone()]
    });
    t.fake.notify(&body(1));
    assert_eq!(uuids(&t.wait_lines(2)), ["u-0", "u-1"]);
}

#[test]
fn sigkill_and_restart_recovers_what_was_sent_meanwhile() {
    let t = Setup::new();
    let mut r = t.start();
    t.fake.notify(&body(0));
    t.wait_lines(1);
    // Let the state file learn the session is alive (it is saved on subscribe already).
    r.signal("KILL");
    r.wait_exit();
    // The session child notices its parent is gone and leaves; the gateway keeps the session.
    t.fake.wait("the connection ended", |w| {
        w.connections == 1 && !w.journal.is_empty()
    });
    t.fake.drop_connection();
    for i in 1..4 {
        t.fake.notify(&body(i));
    }
    let mut r2 = t.launch();
    r2.wait_for("session recovered");
    let got = uuids(&t.wait_lines(4));
    assert_eq!(got, ["u-0", "u-1", "u-2", "u-3"]);
    // "session recovered" already proves the OAuth session was kept: the fake, as the gateway
    // does, fails recovery for a connection of another login. The only login after the first
    // is the catch-up's own (the killed loop may have had notifications in hand).
    r2.wait_for("catching up on missed messages and calls");
    t.fake.wait("the catch-up's login", |w| w.logins == 2);
    r2.stop();
    assert_eq!(t.fake.with(|w| w.logins), 2, "no new login for the session");
}

#[test]
fn heartbeats_keep_an_idle_connection_past_the_idle_timeout() {
    let t = Setup::new();
    t.fake.with(|w| w.idle_timeout = 2);
    let r = t.start();
    t.fake
        .wait("heartbeats for 3 idle timeouts", |w| w.heartbeats >= 9);
    assert_eq!(t.fake.with(|w| w.closes.clone()), Vec::<String>::new());
    assert_eq!(t.fake.with(|w| w.connections), 1);
    // Notifications flowing in do not stop the heartbeats (only what the client sends counts).
    let beats = t.fake.with(|w| w.heartbeats);
    let mut i = 0;
    while t.fake.with(|w| w.heartbeats) < beats + 6 {
        t.fake.notify(&body(i));
        i += 1;
        assert!(i < 400, "no heartbeats while notifications flow");
        std::thread::sleep(Duration::from_millis(50)); // pacing the sender, not an assertion
    }
    assert_eq!(t.fake.with(|w| w.closes.clone()), Vec::<String>::new());
    t.wait_lines(i as usize);
    drop(r);
}

#[test]
fn an_expiring_access_token_is_refreshed_without_losing_the_connection() {
    let t = Setup::new();
    t.fake.with(|w| w.access_expires_in = 3);
    let mut r = t.start();
    t.fake.wait("two refreshes", |w| w.refreshes >= 2);
    for i in 0..3 {
        t.fake.notify(&body(i));
    }
    assert_eq!(uuids(&t.wait_lines(3)), ["u-0", "u-1", "u-2"]);
    assert_eq!(t.fake.with(|w| w.closes.clone()), Vec::<String>::new());
    assert_eq!(t.fake.with(|w| (w.connections, w.logins)), (1, 1));
    r.wait_for("OAuth access token refreshed");
}

#[test]
fn gateway_timeouts_reconnect_with_recovery() {
    let t = Setup::new();
    let mut r = t.start();
    t.fake.close_with("WSG-903");
    r.wait_for("WSG-903");
    r.wait_for("session recovered");
    wait_health(&r, 200);
    t.fake.notify(&body(1));
    assert_eq!(uuids(&t.wait_lines(1)), ["u-1"]);
}

#[test]
fn a_missing_permission_is_one_line_and_exit_1() {
    let t = Setup::new();
    t.fake.script_wstoken(403, None);
    let mut r = t.launch();
    let line = r.wait_for("WebSocket Subscriptions");
    assert!(line.contains("403"), "{line}");
    let st = r.wait_exit();
    assert_eq!(st.code(), Some(1), "{}", r.stderr());
}

#[test]
fn a_rate_limited_ws_token_waits_retry_after() {
    let t = Setup::new();
    t.fake.script_wstoken(429, Some(1));
    let mut r = t.launch();
    r.wait_for("rate limited (HTTP 429); waiting 1 s");
    r.wait_for("WebSocket: subscribed");
    assert_eq!(t.fake.with(|w| w.ws_token_calls), 2);
}

#[test]
fn a_bad_message_or_an_oversized_one_remakes_the_connection() {
    let t = Setup::new();
    let mut r = t.launch_with(&["--max-body", "2KiB"]);
    r.wait_for("WebSocket: subscribed");
    t.fake.send_raw(r#"{"not": "an array"}"#);
    r.wait_for("reconnecting (a message that is not a JSON array");
    r.wait_for("session recovered");
    t.fake.send_raw(&format!(
        "[{{\"type\":\"ServerNotification\"}},\"{}\"]",
        "x".repeat(4096)
    ));
    r.wait_for("reconnecting (a message larger than");
    r.wait_for("session recovered");
    t.fake.notify(&body(1));
    assert_eq!(uuids(&t.wait_lines(1)), ["u-1"]);
    assert_eq!(t.fake.with(|w| w.connections), 3);
}

#[test]
fn an_unknown_session_token_gets_wsg_400_and_a_fresh_session() {
    let t = Setup::new();
    let mut r = t.start();
    r.signal("KILL");
    r.wait_exit();
    t.fake.wait("the child left", |w| !w.connected());
    let state = std::fs::read_to_string(t.state()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    let wsc = v["connect"]["wsc"].as_str().unwrap().to_string();
    std::fs::write(t.state(), state.replace(&wsc, "bogus-wsc")).unwrap();
    let mut r2 = t.launch();
    r2.wait_for("WSG-400");
    r2.wait_for("subscribed again; catching up since");
    assert_eq!(t.fake.with(|w| (w.created.len(), w.logins)), (2, 1));
}

#[test]
fn a_planned_reconnect_comes_before_the_absolute_timeout() {
    let t = Setup::new();
    t.fake.with(|w| w.absolute_timeout = 3);
    let mut r = t.start();
    r.wait_for("reconnecting (planned");
    r.wait_for("session recovered");
    t.fake.wait("a second connection", |w| w.connections >= 2);
    assert_eq!(t.fake.with(|w| w.closes.clone()), Vec::<String>::new());
    t.fake.notify(&body(1));
    assert_eq!(uuids(&t.wait_lines(1)), ["u-1"]);
}

#[test]
fn refused_credentials_stop_with_exit_1() {
    let t = Setup::new();
    let mut r = Serve::connect()
        .env("RC_SERVER_URL", &t.fake.url)
        .env("RC_CLIENT_ID", fake::CLIENT_ID)
        .env("RC_CLIENT_SECRET", fake::CLIENT_SECRET)
        .env("RC_JWT", "not-the-jwt")
        .env("RINGHOOK_STATE", &t.state().to_string_lossy())
        .start();
    r.wait_for("cannot sign in");
    assert_eq!(r.wait_exit().code(), Some(1));
    assert!(!r.stderr().contains("not-the-jwt"));
}

#[test]
fn a_refused_subscription_names_the_permission_and_exits_1() {
    let t = Setup::new();
    t.fake.with(|w| w.subscription_status = 403);
    let mut r = t.launch();
    let line = r.wait_for("WebSocket Subscriptions");
    assert!(
        line.contains("403") && line.contains("subscription"),
        "{line}"
    );
    assert_eq!(r.wait_exit().code(), Some(1));
}

#[test]
fn sighup_reopens_the_log() {
    let t = Setup::new();
    let mut r = t.start();
    t.fake.notify(&body(1));
    t.wait_lines(1);
    let rotated = t.dir.path().join("events.log.1");
    std::fs::rename(t.log(), &rotated).unwrap();
    r.signal("HUP");
    r.wait_for("SIGHUP: event log reopened");
    t.fake.notify(&body(2));
    assert_eq!(uuids(&t.wait_lines(1)), ["u-2"]);
}

#[test]
fn a_restart_after_the_recovery_window_subscribes_again_and_catches_up() {
    let t = Setup::new();
    t.fake.with(|w| w.recovery_timeout = 1);
    let mut r = t.start();
    t.fake.notify(&body(0));
    t.wait_lines(1);
    r.signal("KILL");
    r.wait_exit();
    t.fake.wait("the child left", |w| !w.connected());
    // Bounded wait until the saved window has passed.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(t.state()).unwrap()).unwrap();
        let until = v["connect"]["recoverableUntil"]
            .as_str()
            .unwrap()
            .to_string();
        let until = humantime::parse_rfc3339_weak(&until).unwrap();
        if std::time::SystemTime::now() > until {
            break;
        }
        assert!(Instant::now() < deadline, "the window never passed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut r2 = t.launch();
    let line = r2.wait_for("catching up since");
    assert!(line.contains("could not be recovered"), "{line}");
    r2.wait_for("catching up on missed messages and calls");
    assert_eq!(
        t.fake.with(|w| w.logins),
        1,
        "the OAuth session is still kept"
    );
}

#[test]
fn wss_with_the_ca_file_receives_notifications() {
    let ca = crate::support::TestCa::new();
    let fake = FakeWsg::start_tls(&ca);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let t = Setup { fake, dir };
    let mut r = start_at_with_env(&t, &[("RINGHOOK_CA_FILE", &ca_file.to_string_lossy())]);
    r.wait_for("WebSocket: connected to localhost");
    r.wait_for("WebSocket: subscribed");
    t.fake.notify(&body(1));
    assert_eq!(uuids(&t.wait_lines(1)), ["u-1"]);
}

#[test]
fn wss_without_the_ca_is_refused_and_retried() {
    let ca = crate::support::TestCa::new();
    let t = Setup {
        fake: FakeWsg::start_tls(&ca),
        dir: tempfile::tempdir().unwrap(),
    };
    let mut r = t.launch();
    let line = r.wait_for("WebSocket: reconnecting");
    assert!(line.contains("localhost"), "{line}");
    assert!(!t.fake.subscribed());
}

fn start_at_with_env(t: &Setup, env: &[(&str, &str)]) -> Running {
    let mut s = Serve::connect()
        .env("RC_SERVER_URL", &t.fake.url)
        .env("RC_CLIENT_ID", fake::CLIENT_ID)
        .env("RC_CLIENT_SECRET", fake::CLIENT_SECRET)
        .env("RC_JWT", fake::JWT)
        .env("RINGHOOK_STATE", &t.state().to_string_lossy())
        .args(["--log-file".as_ref(), t.log().as_os_str()]);
    for (k, v) in env {
        s = s.env(k, v);
    }
    s.start()
}

#[test]
fn a_resend_that_fills_the_recovery_buffer_catches_up() {
    let t = Setup::new();
    t.fake.with(|w| w.recovery_buffer_size = 5);
    let mut r = t.start();
    t.fake.notify(&body(0));
    t.wait_lines(1);
    t.fake.drop_connection();
    // Eight while away: the gateway keeps and resends only the last five.
    for i in 1..9 {
        t.fake.notify(&body(i));
    }
    r.wait_for("session recovered");
    let line = r.wait_for("the gateway's whole recovery buffer");
    assert!(line.contains("5 notifications resent"), "{line}");
    assert!(line.contains("catching up since"), "{line}");
    r.wait_for("catching up on missed messages and calls");
    t.fake.wait("catch-up listed the subscriptions", |w| {
        w.journal
            .iter()
            .any(|j| j == "GET /restapi/v1.0/subscription")
    });
    assert_eq!(
        uuids(&t.wait_lines(6)),
        ["u-0", "u-4", "u-5", "u-6", "u-7", "u-8"]
    );
    assert_eq!(t.fake.with(|w| w.created.len()), 1, "the session is kept");
}

#[test]
fn a_resend_short_of_the_recovery_buffer_needs_no_catch_up() {
    let t = Setup::new();
    t.fake.with(|w| w.recovery_buffer_size = 5);
    let mut r = t.start();
    t.fake.drop_connection();
    for i in 0..4 {
        t.fake.notify(&body(i));
    }
    r.wait_for("session recovered");
    let line = r.wait_for("recovered (");
    assert!(line.contains("4 resent"), "{line}");
    assert!(!r.stderr().contains("catching up"), "{}", r.stderr());
}

/// A body of subscription `sub`.
fn body_of(uuid: &str, sub: &str) -> String {
    serde_json::json!({"uuid": uuid, "event": "/restapi/v1.0/account/1/extension/1/presence",
        "timestamp": "2026-12-07T00:00:00.000Z", "subscriptionId": sub, "body": {}})
    .to_string()
}

#[test]
fn a_notification_of_another_subscription_is_logged_and_warned_once() {
    let t = Setup::new();
    let mut r = t.start();
    let ours = t.fake.with(|w| w.created[0].clone());
    t.fake.notify(&body_of("a", &ours));
    t.fake.notify(&body_of("b", "old-sub\u{1b}[31m"));
    t.fake.notify(&body_of("c", "old-sub\u{1b}[31m"));
    t.fake.notify(&body_of("d", "other-sub"));
    assert_eq!(uuids(&t.wait_lines(4)), ["a", "b", "c", "d"]);
    // The child warns in order, so once the second id's warning is in, the first's repeat would
    // have been too.
    r.wait_for("a notification of subscription other-sub arrived");
    let err = r.stderr();
    let warned = err
        .lines()
        .filter(|l| l.contains("a notification of subscription old-sub\\u{1b}[31m arrived"))
        .count();
    assert_eq!(warned, 1, "{err}");
    assert!(!err.contains('\u{1b}'), "the id is escaped: {err}");
    assert!(
        !err.contains(&format!("subscription {ours} arrived")),
        "{err}"
    );
}

/// The session child of `connect` running as `parent` (bounded wait until there is one).
pub(crate) fn session_child(parent: u32) -> u32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`: comm may hold spaces, so read after the last ')'.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let mut fields = after.split(' ');
            let (state, ppid) = (fields.next(), fields.next());
            if ppid == Some(&parent.to_string()) && state != Some("Z") {
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                if env
                    .split(|b| *b == 0)
                    .any(|v| v.starts_with(b"RINGHOOK_CONNECT_SESSION="))
                {
                    return pid;
                }
            }
        }
        assert!(Instant::now() < deadline, "no session child of {parent}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn kill(pid: u32) {
    let st = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn ws_tokens_stay_within_the_limit_across_child_and_process_restarts() {
    let t = Setup::new();
    let mut a = t.start();
    // Two children killed: the loop starts a new one after 1 s, then 2 s.
    for n in 2..4 {
        let child = session_child(a.child.id());
        kill(child);
        a.wait_for("WebSocket session child ended");
        // Connected again (the session recovered): after its ws token.
        a.wait_for("WebSocket: connected to");
        assert_eq!(t.fake.with(|w| w.ws_token_calls), n);
    }
    // Then the whole process, twice, started again at once.
    a.signal("KILL");
    a.wait_exit();
    t.fake.wait("the child left", |w| !w.connected());
    let mut b = t.launch();
    b.wait_for("WebSocket: connected to");
    assert_eq!(t.fake.with(|w| w.ws_token_calls), 4);
    b.signal("KILL");
    b.wait_exit();
    t.fake.wait("the child left", |w| !w.connected());
    // A fifth token within the minute would exceed what connect allows itself: it waits for
    // the first to leave the minute instead, and asks for nothing meanwhile.
    let mut c = t.launch();
    let line = c.wait_for("tokens taken this minute; next in");
    let secs: f64 = line
        .split("next in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let first = t.fake.with(|w| w.ws_token_times[0]);
    let left = Duration::from_secs(60).saturating_sub(first.elapsed());
    assert!(
        (secs - left.as_secs_f64()).abs() < 5.0,
        "waits until the first token is a minute old: {line}, {left:?} left"
    );
    assert_eq!(t.fake.with(|w| w.ws_token_calls), 4);
    assert!(!t.fake.subscribed());
    drop(c);
}

#[test]
fn extension_id_in_a_filter_expands_over_the_accounts_extensions() {
    let t = Setup::new();
    t.fake
        .with(|w| w.extensions = vec!["101".into(), "102".into()]);
    let mut r = t
        .serve()
        .env("RINGHOOK_EXTENSION_TYPES", "User Department")
        .args([
            "--log-file",
            &t.log().to_string_lossy(),
            "--event",
            "/restapi/v1.0/account/~/extension/{extensionId}/presence",
            "--event",
            "/restapi/v1.0/account/~/extension/~/message-store",
        ])
        .start();
    r.wait_for("{extensionId}: 2 extensions");
    r.wait_for("WebSocket: subscribed");
    assert_eq!(
        t.fake.with(|w| w.filters.clone()),
        [[
            "/restapi/v1.0/account/~/extension/101/presence",
            "/restapi/v1.0/account/~/extension/102/presence",
            "/restapi/v1.0/account/~/extension/~/message-store",
        ]]
    );
    let q = t.fake.with(|w| w.extension_queries.clone());
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(
        q[0].contains("type=User") && q[0].contains("type=Department"),
        "{q:?}"
    );
    // A new subscription (a failed recovery) reuses the expansion.
    t.fake.with(|w| w.recovery = Recovery::Failed);
    t.fake.drop_connection();
    r.wait_for("subscribed again");
    assert_eq!(t.fake.with(|w| w.filters.len()), 2);
    assert_eq!(t.fake.with(|w| w.extension_queries.len()), 1);
}

#[test]
fn extension_id_matching_no_extension_stops_with_exit_1() {
    let t = Setup::new();
    t.fake.with(|w| w.extensions.clear());
    let mut r = t.launch_with(&[
        "--event",
        "/restapi/v1.0/account/~/extension/{extensionId}/presence",
    ]);
    r.wait_for("{extensionId} matched no extension");
    assert_eq!(r.wait_exit().code(), Some(1), "{}", r.stderr());
    assert!(t.fake.with(|w| w.filters.is_empty()));
}

/// `register` (a webhook) and `connect` may share one state file (it is the default for both):
/// neither may take the other's subscription for its own. Before, connect kept its id in the
/// file's `id`, register's field, so a restarted connect's SIGTERM deleted register's webhook.
#[test]
fn a_state_file_shared_with_register_keeps_both_subscriptions_apart() {
    let t = Setup::new();
    let mut r = t.start();
    t.fake.notify(&body(0));
    t.wait_lines(1);
    let created = t.fake.with(|w| w.created.clone());
    assert_eq!(created.len(), 1, "{created:?}");
    // What `register` writes beside connect's session: its webhook, at its address.
    let read = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(t.state()).unwrap()).unwrap()
    };
    let mut st = read();
    assert_ne!(
        st["id"],
        created[0].as_str(),
        "connect's id is its own: {st}"
    );
    st["id"] = "wh-1".into();
    st["address"] = "https://hooks.example/webhook".into();
    st["lifetime"] = 315_360_000.into();
    std::fs::write(t.state(), st.to_string()).unwrap();
    r.signal("KILL");
    r.wait_exit();
    t.fake.wait("the connection ended", |w| {
        w.connections == 1 && !w.journal.is_empty()
    });
    t.fake.drop_connection();
    let mut r2 = t.launch();
    r2.wait_for("session recovered");
    t.fake.notify(&body(1));
    t.wait_lines(2);
    let st = read();
    assert_eq!(st["id"], "wh-1", "register's subscription is kept: {st}");
    assert_eq!(st["address"], "https://hooks.example/webhook", "{st}");
    let status = r2.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        t.fake.with(|w| w.deleted.clone()),
        created,
        "SIGTERM deletes connect's subscription, never register's"
    );
    let st = read();
    assert_eq!(
        st["id"], "wh-1",
        "register's subscription outlives connect: {st}"
    );
}

/// Notifications the session child handed to a loop that was then killed (in the pipe, or in a
/// batch not yet synced) are in no log, and the gateway will not resend them: it delivered them.
/// A recovered session after such an end still catches up.
#[test]
fn a_loop_killed_with_notifications_in_hand_is_caught_up_after_recovery() {
    let t = Setup::new();
    let mut r = t.start();
    t.fake.notify(&body(0));
    t.wait_lines(1);
    // The loop stops reading: what the child hands over waits in the pipe.
    r.signal("STOP");
    for i in 1..4 {
        t.fake.notify(&body(i));
    }
    r.signal("KILL");
    r.wait_exit();
    t.fake.wait("the connection ended", |w| {
        w.connections == 1 && !w.journal.is_empty()
    });
    t.fake.drop_connection();
    let mut r2 = t.launch();
    r2.wait_for("session recovered");
    r2.wait_for("catching up on missed messages and calls");
    t.fake.wait("catch-up listed the subscriptions", |w| {
        w.journal
            .iter()
            .any(|j| j == "GET /restapi/v1.0/subscription")
    });
    // The fake resends only the notifications after the last one the gateway counts as
    // delivered; whatever the killed loop had in hand is not among them.
    let got = uuids(&t.lines());
    assert!(
        !got.contains(&"u-1".to_string()),
        "u-1 was lost with the loop: {got:?}"
    );
    let mut once = got.clone();
    once.dedup();
    assert_eq!(got, once, "nothing doubled");
    r2.stop();
}

/// Two `connect`s on one state file would spend each other's single-use refresh tokens: the
/// second is refused, naming the file, and the first goes on. The lock dies with its holder.
#[test]
fn a_second_connect_on_the_same_state_file_is_refused() {
    let t = Setup::new();
    let mut r = t.start();
    let mut out = crate::support::ringhook(t.dir.path())
        .args(["connect", "--log-file"])
        // Its own log: the log's lock would refuse it already.
        .arg(t.dir.path().join("other.log"))
        .env("RC_SERVER_URL", &t.fake.url)
        .env("RC_CLIENT_ID", fake::CLIENT_ID)
        .env("RC_CLIENT_SECRET", fake::CLIENT_SECRET)
        .env("RC_JWT", fake::JWT)
        .env("RINGHOOK_STATE", t.state())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while out.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            out.kill().unwrap();
            panic!("a second connect on the same state file kept running");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = out.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("in use by another ringhook connect") && err.contains("state.json"),
        "{err}"
    );
    t.fake.notify(&body(0));
    assert_eq!(uuids(&t.wait_lines(1)), ["u-0"], "the first one goes on");
    r.signal("KILL");
    r.wait_exit();
    let mut third = t.launch();
    third.wait_for("WebSocket: connected");
    third.stop();
}
