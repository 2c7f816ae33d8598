//! `catchup` end to end: the real binary against the fake platform's message store and call log,
//! recovering into the log the real `serve` wrote, while the receiver is down.
//!
//! Every run goes through `install::Setup::run` (no secret in any output, the session revoked);
//! every request to the sync endpoints is checked against the OpenAPI subset by the fake.

use std::process::Command;

use serde_json::Value;

use crate::fake_platform::{ACCOUNT_ID, FakeCall, FakeMessage, FakePlatform, OWNER_ID};
use crate::install::{Run, Setup};

/// Inbound SMS, voicemail and the telephony sessions of the token's owner.
const FILTERS: &str = "/restapi/v1.0/account/~/extension/~/message-store/instant?type=SMS \
    /restapi/v1.0/account/~/extension/~/voicemail \
    /restapi/v1.0/account/~/extension/~/telephony/sessions";

/// A registered install whose receiver logs to a file; `since` is a moment before anything.
fn install() -> (Setup, String) {
    let since = humantime::format_rfc3339_millis(
        std::time::SystemTime::now() - std::time::Duration::from_secs(1),
    )
    .to_string();
    let mut s = Setup::new();
    s.set("RINGHOOK_EVENT_FILTERS", FILTERS);
    s.register();
    let log = s.serve.log_path().to_string_lossy().into_owned();
    s.set("RINGHOOK_LOG_FILE", &log);
    (s, since)
}

fn catchup(s: &Setup, args: &[&str]) -> Run {
    let mut all = vec!["catchup"];
    all.extend_from_slice(args);
    let r = s.run(&all);
    assert_eq!(r.code, 0, "catchup failed:\n{}", r.stderr);
    assert_eq!(s.fake.sync_violations(), Vec::<String>::new());
    r
}

/// The recovered lines of the log, parsed, with the raw `record` text.
fn recovered(s: &Setup) -> Vec<(Value, String)> {
    s.serve
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("\"recovered\":"))
        .map(|l| {
            let v: Value = serde_json::from_str(&l).unwrap();
            let at = l.find(",\"record\":").unwrap() + ",\"record\":".len();
            (v, l[at..l.len() - 1].to_string())
        })
        .collect()
}

fn message_ids(lines: &[(Value, String)]) -> Vec<String> {
    let mut ids: Vec<String> = lines
        .iter()
        .filter(|(v, _)| v["record"]["creationTime"].is_string())
        .map(|(v, _)| v["record"]["id"].to_string())
        .collect();
    ids.sort();
    ids
}

fn call_ids(lines: &[(Value, String)]) -> Vec<String> {
    let mut ids: Vec<String> = lines
        .iter()
        .filter(|(v, _)| v["record"]["startTime"].is_string())
        .map(|(v, _)| v["record"]["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn ids_of(messages: &[&FakeMessage]) -> Vec<String> {
    let mut ids: Vec<String> = messages.iter().map(|m| m.id.to_string()).collect();
    ids.sort();
    ids
}

fn calls_of(calls: &[&FakeCall]) -> Vec<String> {
    let mut ids: Vec<String> = calls.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    ids
}

fn summary(r: &Run) -> &str {
    r.stderr
        .lines()
        .find(|l| l.contains(" INFO recovered "))
        .unwrap_or_else(|| panic!("no summary line:\n{}", r.stderr))
}

fn sync_queries(s: &Setup, path_end: &str) -> Vec<String> {
    s.fake
        .journal()
        .into_iter()
        .filter(|r| r.path.ends_with(path_end))
        .map(|r| r.query)
        .collect()
}

#[test]
fn recovers_exactly_what_the_receiver_missed_once() {
    let (mut s, since) = install();
    let sub = s.only_subscription().id;
    let sms_event = format!(
        "/restapi/v1.0/account/{ACCOUNT_ID}/extension/{OWNER_ID}/message-store/instant?type=SMS"
    );
    let calls_event =
        format!("/restapi/v1.0/account/{ACCOUNT_ID}/extension/{OWNER_ID}/telephony/sessions");
    // While the receiver is up: an SMS and a call are delivered and logged.
    let delivered = s.fake.add_message(OWNER_ID, "SMS", "Inbound");
    let body = FakePlatform::instant_body(&delivered);
    assert_eq!(s.fake.deliver_body(&sub, &sms_event, body), 200);
    let answered = s.fake.add_call(OWNER_ID);
    let body = FakePlatform::session_body(&answered);
    assert_eq!(s.fake.deliver_body(&sub, &calls_event, body), 200);

    // The receiver is down; the platform goes on receiving.
    s.serve.stop();
    let sms = s.fake.add_message(OWNER_ID, "SMS", "Inbound");
    let voicemail = s.fake.add_message(OWNER_ID, "VoiceMail", "Inbound");
    // Not covered by the filters: an outbound SMS, a fax, another extension's message and call.
    s.fake.add_message(OWNER_ID, "SMS", "Outbound");
    s.fake.add_message(OWNER_ID, "Fax", "Inbound");
    s.fake.add_message("62001", "SMS", "Inbound");
    s.fake.add_call("62001");
    let c1 = s.fake.add_call(OWNER_ID);
    let c2 = s.fake.add_call(OWNER_ID);
    s.fake.touch_message(delivered.id);

    let r = catchup(&s, &["--since", &since, "--json"]);
    assert!(
        summary(&r).contains("recovered 2 messages (1 SMS, 1 voicemail) and 2 calls for "),
        "{}",
        r.stderr
    );
    let out = r.json();
    assert_eq!(
        (out["messages"].as_u64(), out["calls"].as_u64()),
        (Some(2), Some(2))
    );
    let lines = recovered(&s);
    assert_eq!(message_ids(&lines), ids_of(&[&sms, &voicemail]));
    assert_eq!(call_ids(&lines), calls_of(&[&c1, &c2]));
    // Each record exactly as the platform sent it (its pretty-printing aside), marked by source.
    for (v, raw) in &lines {
        let source = v["recovered"]["source"].as_str().unwrap();
        if let Some(id) = v["record"]["id"].as_u64() {
            assert_eq!(raw, &s.fake.message_json(id));
            assert_eq!(source, "message-sync");
            assert_eq!(v["recovered"]["extensionId"], OWNER_ID);
            // 19 digits, beyond 2^53: kept as sent.
            assert!(
                raw.contains("\"conversationId\":8031152018338945839"),
                "{raw}"
            );
        } else {
            assert_eq!(raw, &s.fake.call_json(v["record"]["id"].as_str().unwrap()));
            assert_eq!(source, "call-log-sync");
            assert_eq!(v["recovered"]["accountId"], ACCOUNT_ID);
        }
        assert!(v["receivedAt"].is_string());
    }
    let msg_sync = sync_queries(&s, "/message-sync");
    assert_eq!(msg_sync.len(), 1);
    assert!(msg_sync[0].contains("syncType=FSync"), "{msg_sync:?}");
    assert!(
        msg_sync[0].contains("messageType=SMS&messageType=VoiceMail"),
        "{msg_sync:?}"
    );

    // A second run asks for changes only (ISync), gets the overlap again, writes nothing.
    s.fake.clear_journal();
    let r = catchup(&s, &[]);
    assert!(
        summary(&r).contains("recovered 0 messages and 0 calls"),
        "{}",
        r.stderr
    );
    assert_eq!(recovered(&s).len(), 4);
    for q in sync_queries(&s, "-sync") {
        assert!(q.starts_with("syncType=ISync&syncToken="), "{q}");
    }

    // More missed, and old ones modified (read): only the new ones come in.
    s.fake.touch_message(sms.id);
    let later = s.fake.add_message(OWNER_ID, "VoiceMail", "Inbound");
    let c3 = s.fake.add_call(OWNER_ID);
    let r = catchup(&s, &[]);
    assert!(
        summary(&r).contains("recovered 1 message (1 voicemail) and 1 call"),
        "{}",
        r.stderr
    );
    let lines = recovered(&s);
    assert_eq!(message_ids(&lines), ids_of(&[&sms, &voicemail, &later]));
    assert_eq!(call_ids(&lines), calls_of(&[&c1, &c2, &c3]));

    // The same window again, in full: everything is already in the log.
    let r = catchup(&s, &["--since", &since]);
    assert!(
        summary(&r).contains("recovered 0 messages and 0 calls"),
        "{}",
        r.stderr
    );
    assert_eq!(recovered(&s).len(), 6);

    #[cfg(feature = "ship")]
    {
        // Recovered lines flow through `ship`: keyed `message:<id>` / `call:<id>`, the record's bytes
        // as logged.
        let sink = crate::ship::HttpSink::start(|_, _| crate::ship::Act::Answer(200, None));
        let r = s.run(&["ship", "--once", "--to", &sink.url]);
        assert_eq!(r.code, 0, "ship failed:\n{}", r.stderr);
        let got = sink.delivered();
        for (v, raw) in recovered(&s) {
            let kind = if v["record"]["creationTime"].is_string() {
                "message"
            } else {
                "call"
            };
            let id = match &v["record"]["id"] {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            let key = format!("{kind}:{id}");
            let g = got.iter().find(|g| g.key == key);
            assert_eq!(g.map(|g| g.body.as_str()), Some(raw.as_str()), "{key}");
        }
    }
}

#[test]
fn a_refused_token_means_a_full_sync_without_duplicates() {
    let (mut s, since) = install();
    s.serve.stop();
    let m1 = s.fake.add_message(OWNER_ID, "SMS", "Inbound");
    let c1 = s.fake.add_call(OWNER_ID);
    catchup(&s, &["--since", &since]);
    assert_eq!(recovered(&s).len(), 2);

    s.fake.invalidate_sync_tokens();
    let m2 = s.fake.add_message(OWNER_ID, "VoiceMail", "Inbound");
    let c2 = s.fake.add_call(OWNER_ID);
    s.fake.clear_journal();
    let r = catchup(&s, &[]);
    assert!(r.stderr.contains("wants a full sync"), "{}", r.stderr);
    assert!(
        summary(&r).contains("recovered 1 message (1 voicemail) and 1 call"),
        "{}",
        r.stderr
    );
    // ISync refused (MSG-333, CLG-101), then FSync, for both.
    for end in ["/message-sync", "/call-log-sync"] {
        let q = sync_queries(&s, end);
        assert_eq!(q.len(), 2, "{q:?}");
        assert!(
            q[0].contains("syncType=ISync") && q[1].contains("syncType=FSync"),
            "{q:?}"
        );
    }
    let lines = recovered(&s);
    assert_eq!(message_ids(&lines), ids_of(&[&m1, &m2]));
    assert_eq!(call_ids(&lines), calls_of(&[&c1, &c2]));
    // The new tokens work: the next run is incremental again.
    s.fake.clear_journal();
    catchup(&s, &[]);
    assert!(!s.fake.journal().iter().any(|r| r.query.contains("FSync")));
}

#[test]
fn more_than_250_new_calls_are_all_recovered_once() {
    let (mut s, since) = install();
    s.serve.stop();
    catchup(&s, &["--since", &since]);
    let calls: Vec<FakeCall> = (0..300).map(|_| s.fake.add_call(OWNER_ID)).collect();
    s.fake.clear_journal();
    let r = catchup(&s, &[]);
    assert!(r.stderr.contains("wants a full sync"), "{}", r.stderr);
    assert!(summary(&r).contains("and 300 calls"), "{}", r.stderr);
    let lines = recovered(&s);
    assert_eq!(
        call_ids(&lines),
        calls_of(&calls.iter().collect::<Vec<_>>())
    );
    // FSync brings 250; the older 50 come from the call-log list.
    let fsync = sync_queries(&s, "/call-log-sync");
    assert!(fsync[1].contains("recordCount=250"), "{fsync:?}");
    assert!(!sync_queries(&s, "/call-log").is_empty());
    let r = catchup(&s, &[]);
    assert!(
        summary(&r).contains("recovered 0 messages and 0 calls"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_429_is_waited_out_and_a_long_one_leaves_the_rest_for_the_next_run() {
    let (mut s, since) = install();
    s.serve.stop();
    let m1 = s.fake.add_message(OWNER_ID, "SMS", "Inbound");
    let c1 = s.fake.add_call(OWNER_ID);
    let calls = format!("/restapi/v1.0/account/{ACCOUNT_ID}/call-log-sync");
    s.fake.script("GET", &calls, 429, Some(1));
    let r = catchup(&s, &["--since", &since]);
    assert!(
        r.stderr.contains("waiting 1 s as the platform asks"),
        "{}",
        r.stderr
    );
    assert!(
        summary(&r).contains("recovered 1 message (1 SMS) and 1 call"),
        "{}",
        r.stderr
    );
    assert_eq!(s.fake.count("GET", &calls), 2);

    // Longer than RINGHOOK_MAX_WAIT allows: messages go on, calls wait for the next run.
    let m2 = s.fake.add_message(OWNER_ID, "SMS", "Inbound");
    let c2 = s.fake.add_call(OWNER_ID);
    s.set("RINGHOOK_MAX_WAIT", "2s");
    s.fake.script("GET", &calls, 429, Some(60));
    let r = catchup(&s, &[]);
    assert!(r.stderr.contains("left for the next run"), "{}", r.stderr);
    assert!(
        summary(&r).contains("recovered 1 message (1 SMS) and 0 calls"),
        "{}",
        r.stderr
    );
    let r = catchup(&s, &[]);
    assert!(
        summary(&r).contains("recovered 0 messages and 1 call"),
        "{}",
        r.stderr
    );
    let lines = recovered(&s);
    assert_eq!(message_ids(&lines), ids_of(&[&m1, &m2]));
    assert_eq!(call_ids(&lines), calls_of(&[&c1, &c2]));
}

#[test]
fn without_read_call_log_the_messages_are_still_recovered() {
    let (mut s, since) = install();
    s.serve.stop();
    s.fake.deny("ReadCallLog");
    let m1 = s.fake.add_message(OWNER_ID, "VoiceMail", "Inbound");
    s.fake.add_call(OWNER_ID);
    let r = catchup(&s, &["--since", &since]);
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("ReadCallLog"))
        .unwrap_or_else(|| panic!("no line names the permission:\n{}", r.stderr));
    assert!(
        line.contains("WARN") && line.contains("calls skipped"),
        "{line}"
    );
    assert!(
        summary(&r).contains("recovered 1 message (1 voicemail) and 0 calls"),
        "{}",
        r.stderr
    );
    assert_eq!(message_ids(&recovered(&s)), ids_of(&[&m1]));
}

#[test]
fn bad_input_is_named() {
    let (s, _) = install();
    let r = s.run(&["catchup", "--since", "yesterday"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--since"), "{}", r.stderr);
    let mut s = s;
    s.unset("RINGHOOK_LOG_FILE");
    let r = s.run(&["catchup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("RINGHOOK_LOG_FILE"), "{}", r.stderr);
}

/// Runs `catchup --emit` as `serve --register` does, answering `answer` on its stdin.
fn emit(s: &Setup, answer: &str) -> (i32, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut cmd = crate::support::ringhook(s.dir.path());
    cmd.args(["catchup", "--emit"]);
    for (k, v) in &s.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The child reads its stdin only after printing every line; a closed pipe is its answer too.
    let _ = stdin.write_all(answer.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn emit_hands_the_lines_over_and_moves_the_tokens_only_on_ok() {
    let (mut s, since) = install();
    s.serve.stop();
    catchup(&s, &["--since", &since]);
    let before = std::fs::read_to_string(s.state_path()).unwrap();
    let m1 = s.fake.add_message(OWNER_ID, "SMS", "Inbound");
    let c1 = s.fake.add_call(OWNER_ID);
    // The receiver could not log them: nothing moves, the next run brings them again.
    let (code, out, err) = emit(&s, "");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("did not log the recovered records"), "{err}");
    assert_eq!(out.lines().count(), 3, "two lines and the end mark: {out}");
    assert_eq!(std::fs::read_to_string(s.state_path()).unwrap(), before);
    let (code, out, err) = emit(&s, "ok\n");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(out.ends_with("}\n\n"), "{out}");
    // In the order they happened: the call started before the SMS came.
    assert_eq!(lines[0]["record"]["id"], c1.id.as_str());
    assert_eq!(lines[1]["record"]["id"], m1.id);
    assert_ne!(std::fs::read_to_string(s.state_path()).unwrap(), before);
    // Nothing was appended by the child itself: serve owns the log.
    assert!(recovered(&s).is_empty());
}

/// `serve --register` with a log file in `dir`, listening on `addr`.
fn serve_register(
    fake: &FakePlatform,
    addr: &str,
    dir: &std::path::Path,
) -> crate::support::Running {
    use crate::fake_platform as fake;
    crate::support::Serve::at(addr)
        .env("RC_SERVER_URL", &fake.url)
        .env("RC_CLIENT_ID", fake::CLIENT_ID)
        .env("RC_CLIENT_SECRET", fake::CLIENT_SECRET)
        .env("RC_JWT", fake::JWT)
        .env("WEBHOOK_ADDRESS", &format!("http://{addr}/webhook"))
        .env("WEBHOOK_VERIFICATION_TOKEN", crate::install::TOKEN)
        .env("RINGHOOK_EVENT_FILTERS", FILTERS)
        .env("RINGHOOK_STATE", &dir.join("state.json").to_string_lossy())
        .args(["--register", "--log-file"])
        .args([dir.join("events.log")])
        .start()
}

#[test]
fn serve_register_catches_up_after_a_restart_through_its_own_log() {
    let fake = FakePlatform::start();
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut s = serve_register(&fake, &addr, dir.path());
    s.wait_for("subscription created");
    s.wait_for("INFO recovered 0 messages and 0 calls");
    // While it runs, catchup by itself refuses to write into its log.
    let mut cmd = crate::support::ringhook(dir.path());
    cmd.args(["catchup", "--log-file"])
        .arg(dir.path().join("events.log"));
    for (k, v) in [
        ("RC_SERVER_URL", fake.url.as_str()),
        ("RC_CLIENT_ID", crate::fake_platform::CLIENT_ID),
        ("RC_CLIENT_SECRET", crate::fake_platform::CLIENT_SECRET),
        ("RC_JWT", crate::fake_platform::JWT),
        (
            "RINGHOOK_STATE",
            &dir.path().join("state.json").to_string_lossy(),
        ),
    ] {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("in use by a running receiver"), "{err}");
    s.stop();
    drop(s);

    // Down: an SMS and a call arrive. Back up: the catch-up child finds them, serve logs them.
    let m1 = fake.add_message(OWNER_ID, "SMS", "Inbound");
    let c1 = fake.add_call(OWNER_ID);
    let mut s = serve_register(&fake, &addr, dir.path());
    s.wait_for("subscription unchanged");
    s.wait_for("INFO recovered 1 message (1 SMS) and 1 call");
    let log = std::fs::read_to_string(dir.path().join("events.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let rec: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("\"recovered\":"))
        .collect();
    // The child exits only after serve answered ok, that is after the lines were synced.
    assert_eq!(rec.len(), 2, "{lines:#?}");
    assert!(rec.iter().any(|l| l.contains(&fake.message_json(m1.id))));
    assert!(rec.iter().any(|l| l.contains(&fake.call_json(&c1.id))));
    assert_eq!(fake.sync_violations(), Vec::<String>::new());
    s.stop();
}

// ---- issue 21: late-stored messages, rotated logs, the state file's mode ----------------------

/// Where the last run's message sync reached (the state file's sync point).
fn messages_reached(s: &Setup) -> std::time::SystemTime {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(s.state_path()).unwrap()).unwrap();
    let points = v["sync"]["messages"]
        .as_object()
        .expect("a message sync point");
    let t = points.values().next().unwrap()["time"].as_str().unwrap();
    humantime::parse_rfc3339_weak(t).unwrap()
}

/// A voicemail created 10 s before the last run reached (the voicemail sample's creationTime
/// is 10 s before its lastModifiedTime) but stored after it; then the platform refuses the
/// token: the full sync instead must reach back far enough to bring it.
#[test]
fn a_message_stored_after_the_last_run_survives_a_refused_token() {
    let (mut s, since) = install();
    s.serve.stop();
    let m1 = s.fake.add_message(OWNER_ID, "SMS", "Inbound");
    catchup(&s, &["--since", &since]);
    let reached = messages_reached(&s);
    let late = s.fake.add_message_created(
        OWNER_ID,
        "VoiceMail",
        "Inbound",
        reached - std::time::Duration::from_secs(10),
    );
    s.fake.invalidate_sync_tokens();
    s.fake.clear_journal();
    let r = catchup(&s, &[]);
    assert!(r.stderr.contains("wants a full sync"), "{}", r.stderr);
    assert!(
        summary(&r).contains("recovered 1 message (1 voicemail)"),
        "{}",
        r.stderr
    );
    assert_eq!(message_ids(&recovered(&s)), ids_of(&[&m1, &late]));
    // Once: the next run (a full sync again, the token is gone) writes nothing more.
    s.fake.invalidate_sync_tokens();
    let r = catchup(&s, &[]);
    assert!(summary(&r).contains("recovered 0 messages"), "{}", r.stderr);
}

/// What a rotated copy of the log holds is in the log: after `mv events.log events.log.1`, the
/// ISync's overlap (and a message read since) is not written again.
#[test]
fn after_a_rotation_what_the_rotated_copy_holds_is_not_written_again() {
    let (mut s, since) = install();
    s.serve.stop();
    let m1 = s.fake.add_message(OWNER_ID, "SMS", "Inbound");
    let c1 = s.fake.add_call(OWNER_ID);
    catchup(&s, &["--since", &since]);
    let log = s.serve.log_path();
    let rotated = log.with_file_name(format!("{}.1", log.file_name().unwrap().to_string_lossy()));
    let held = std::fs::read_to_string(&log).unwrap();
    assert_eq!(held.matches("\"recovered\":").count(), 2, "{held}");
    std::fs::rename(&log, &rotated).unwrap();
    // Read since: the ISync brings it back.
    s.fake.touch_message(m1.id);
    let m2 = s.fake.add_message(OWNER_ID, "SMS", "Inbound");
    let r = catchup(&s, &[]);
    assert!(
        summary(&r).contains("recovered 1 message (1 SMS) and 0 calls"),
        "{}",
        r.stderr
    );
    let now = std::fs::read_to_string(&log).unwrap();
    assert_eq!(now.matches("\"recovered\":").count(), 1, "{now}");
    assert!(now.contains(&s.fake.message_json(m2.id)), "{now}");
    assert!(!now.contains(&c1.id), "{now}");
}

/// The state file (subscription, sync tokens) is 0600 whatever the umask, as the event log is.
#[test]
fn the_state_file_is_0600_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let (mut s, since) = install();
    s.serve.stop();
    let mode = |s: &Setup| {
        std::fs::metadata(s.state_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    // Run under `umask 000`, as a service manager might.
    let under_umask_0 = |s: &Setup, args: &[&str]| {
        let mut cmd = Command::new("sh");
        cmd.env_clear()
            .current_dir(s.dir.path())
            .args([
                "-c",
                "umask 000 && exec \"$@\"",
                "sh",
                crate::support::bin(),
            ])
            .args(args);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in &s.env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Written by `register` (under the test's own umask).
    assert_eq!(mode(&s), 0o600, "after register");
    s.fake.add_message(OWNER_ID, "SMS", "Inbound");
    under_umask_0(&s, &["catchup", "--since", &since]);
    assert_eq!(mode(&s), 0o600, "after catchup");
}
