//! Integration tests of `ringhook serve`: the real binary, raw bytes over loopback.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::support::{Running, Serve, closed_by_peer, read_response, reference, ringhook};

const TOKEN: &str = "verify-me-0123456789";

fn with_token() -> Serve {
    Serve::new().env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
}

fn notify(s: &Running, body: &[u8]) -> u16 {
    s.exchange(&s.notification_request(body, Some(TOKEN)))
        .status
}

/// The JSON text without insignificant whitespace (an independent re-implementation, so the
/// test does not trust the code under test).
fn compact(json: &str) -> String {
    let mut out = String::new();
    let (mut in_str, mut esc) = (false, false);
    for c in json.chars() {
        match (in_str, esc, c) {
            (true, true, _) => esc = false,
            (true, false, '\\') => esc = true,
            (true, false, '"') => in_str = false,
            (false, _, '"') => in_str = true,
            (false, _, c) if c.is_whitespace() => continue,
            _ => {}
        }
        out.push(c);
    }
    out
}

#[test]
fn handshake_answer_is_exact_and_small() {
    let s = Serve::new().start();
    let r = s.exchange(&s.handshake_request("tok-42"));
    assert_eq!(
        String::from_utf8(r.raw.clone()).unwrap(),
        "HTTP/1.1 200 OK\r\nvalidation-token: tok-42\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"
    );
    assert!(r.raw.len() <= 1024);
}

#[test]
fn handshake_without_content_length_is_answered() {
    // What `curl -X POST -H 'Validation-Token: x'` sends: no body framing at all.
    let s = Serve::new().start();
    let r = s.exchange(b"POST /webhook HTTP/1.1\r\nHost: x\r\nValidation-Token: abc\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("validation-token"), Some("abc"));
}

#[test]
fn handshake_checks_a_verification_token_when_both_sides_have_one() {
    let s = with_token().start();
    let ok = s.exchange(
        format!("POST /webhook HTTP/1.1\r\nHost: x\r\nValidation-Token: v\r\nVerification-Token: {TOKEN}\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(ok.status, 200);
    let bad = s.exchange(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nValidation-Token: v\r\nVerification-Token: nope\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(bad.status, 403);
    assert_eq!(bad.header("validation-token"), None);
}

#[test]
fn untrusted_requests_get_an_empty_403() {
    let s = Serve::new().start();
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET /webhook HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"PUT /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ] {
        let r = s.exchange(raw);
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(raw));
        assert!(r.body.is_empty());
    }
}

#[test]
fn notifications_are_verified_and_only_good_ones_logged() {
    let s = with_token().log_file().start();
    let body = br#"{"uuid":"v-1","event":"/restapi/v1.0/account/~/extension/~/presence"}"#;
    assert_eq!(s.exchange(&s.notification_request(body, None)).status, 403);
    assert_eq!(
        s.exchange(&s.notification_request(body, Some("wrong")))
            .status,
        403
    );
    assert!(s.log_lines().is_empty());
    let r = s.exchange(&s.notification_request(body, Some(TOKEN)));
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "never echo the notification");
    assert_eq!(s.log_lines().len(), 1);
    assert!(!s.stderr().contains(TOKEN), "the token must not be logged");
}

#[test]
fn every_reference_event_is_logged_losslessly() {
    let s = with_token().log_file().start();
    let mut files: Vec<_> = std::fs::read_dir(reference().join("events"))
        .expect("tests/data/events")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 15, "expected the reference samples");
    for f in &files {
        let body = std::fs::read(f).unwrap();
        assert_eq!(notify(&s, &body), 200, "{}", f.display());
    }
    let lines = s.log_lines();
    // Some samples share a uuid (copies in the docs): those are acknowledged, not logged twice.
    let mut seen = std::collections::HashSet::new();
    let mut expected = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let uuid = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["uuid"].as_str().map(str::to_string));
        if uuid.as_ref().is_none_or(|u| seen.insert(u.clone())) {
            expected.push(text);
        }
    }
    assert_eq!(lines.len(), expected.len());
    let mut invalid = 0;
    for (line, original) in lines.iter().zip(&expected) {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Line<'a> {
            received_at: String,
            #[serde(borrow)]
            notification: Option<&'a RawValue>,
            invalid_json: Option<String>,
        }
        let parsed: Line = serde_json::from_str(line).expect("every line is JSON");
        assert!(humantime::parse_rfc3339(&parsed.received_at).is_ok());
        match (serde_json::from_str::<Value>(original), parsed.notification) {
            (Ok(value), Some(raw)) => {
                // Same value, same key order, same number text.
                assert_eq!(serde_json::from_str::<Value>(raw.get()).unwrap(), value);
                assert_eq!(raw.get(), compact(original));
            }
            (Err(_), None) => {
                invalid += 1;
                assert_eq!(parsed.invalid_json.as_deref(), Some(&original[..]));
            }
            (v, n) => panic!(
                "mismatch: valid={} logged-as-json={}",
                v.is_ok(),
                n.is_some()
            ),
        }
    }
    assert_eq!(
        invalid, 2,
        "message.json and instant-message.json are not JSON as published"
    );
}

#[test]
fn redeliveries_are_acknowledged_once_logged_even_after_restart() {
    let mut s = with_token().log_file().start();
    let body = br#"{"uuid":"dup-1","event":"/x","body":{}}"#;
    assert_eq!(notify(&s, body), 200);
    assert_eq!(notify(&s, body), 200);
    assert_eq!(s.log_lines().len(), 1);
    assert!(s.stop().success());

    // Same log file, new process: the window is seeded from the file's tail.
    let log = s.log_path();
    let s2 = with_token()
        .args(["--log-file".as_ref(), log.as_os_str()])
        .start();
    assert_eq!(notify(&s2, body), 200);
    assert_eq!(notify(&s2, br#"{"uuid":"dup-2"}"#), 200);
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains("dup-2"));
}

#[test]
fn a_huge_declared_body_gets_413_unread_and_the_process_lives() {
    let s = with_token().start();
    let r = s.exchange(
        format!("POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: {TOKEN}\r\nContent-Length: 100000000000000\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 413);
    assert_eq!(s.exchange(&s.handshake_request("alive")).status, 200);
}

#[test]
fn a_chunked_body_over_the_limit_gets_413() {
    let s = Serve::new().args(["--max-body", "1KiB"]).start();
    let mut c = s.connect();
    c.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = format!("800\r\n{}\r\n", "a".repeat(0x800));
    c.write_all(chunk.as_bytes()).unwrap();
    assert_eq!(read_response(&mut c).status, 413);
    assert_eq!(s.exchange(&s.handshake_request("alive")).status, 200);
}

#[test]
fn header_floods_are_refused() {
    let s = Serve::new().start();
    let mut big = b"POST /webhook HTTP/1.1\r\nHost: x\r\n".to_vec();
    while big.len() < 20 * 1024 {
        big.extend_from_slice(
            b"X-Flood: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    let mut c = s.connect();
    c.write_all(&big).unwrap();
    assert_eq!(read_response(&mut c).status, 431);
    assert!(closed_by_peer(&mut c));

    // Many small headers (over ureq-proto's 128) within the byte limit: 431 too.
    let mut many = b"POST /webhook HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(s.exchange(&many).status, 431);
    assert_eq!(s.exchange(&s.handshake_request("alive")).status, 200);
}

#[test]
fn garbage_gets_400_and_the_process_lives() {
    let s = Serve::new().start();
    let mut seed: u64 = 0x9E3779B97F4A7C15;
    for _ in 0..20 {
        let mut junk = Vec::new();
        for _ in 0..300 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            junk.push((seed & 0xff) as u8);
        }
        junk.extend_from_slice(b"\r\n\r\n");
        let mut c = s.connect();
        let _ = c.write_all(&junk);
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    assert_eq!(s.exchange(&s.handshake_request("alive")).status, 200);
}

#[test]
fn slow_clients_do_not_delay_a_handshake() {
    let s = Serve::new().start();
    // Fifty clients that send half a request head and stall.
    let stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Le")
                .unwrap();
            c
        })
        .collect();
    // And one that sends a body slowly, never finishing it.
    let mut slow_body = s.connect();
    slow_body
        .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"uu")
        .unwrap();
    let r = s.exchange(&s.handshake_request("prompt"));
    assert_eq!(r.status, 200);
    drop(stalled);
}

#[test]
fn chunked_bodies_are_decoded_and_logged() {
    let s = with_token().log_file().start();
    let mut c = s.connect();
    c.write_all(
        format!("POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    for part in [&b"{\"uuid\":"[..], b"\"chunked-1\",", b"\"event\":\"/e\"}"] {
        c.write_all(format!("{:x}\r\n", part.len()).as_bytes())
            .unwrap();
        c.write_all(part).unwrap();
        c.write_all(b"\r\n").unwrap();
        c.flush().unwrap();
    }
    c.write_all(b"0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).status, 200);
    let lines = s.log_lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].ends_with(r#""notification":{"uuid":"chunked-1","event":"/e"}}"#));
}

#[test]
fn expect_100_continue_is_honoured() {
    let s = with_token().log_file().start();
    let body = br#"{"uuid":"e100"}"#;
    let mut c = s.connect();
    c.write_all(
        format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: {TOKEN}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let interim = read_response(&mut c);
    assert_eq!(interim.status, 100);
    c.write_all(body).unwrap();
    assert_eq!(read_response(&mut c).status, 200);
    assert_eq!(s.log_lines().len(), 1);

    // Refused before the body is sent: no 100, a 403 instead.
    let mut c = s.connect();
    c.write_all(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut c).status, 403);
}

#[test]
fn keep_alive_pipelining_and_http10() {
    let s = with_token().log_file().start();
    let mut c = s.connect();
    let mut burst = s.handshake_request("one");
    burst.extend(s.notification_request(br#"{"uuid":"p-1"}"#, Some(TOKEN)));
    burst.extend(s.handshake_request("three"));
    c.write_all(&burst).unwrap();
    let a = read_response(&mut c);
    let b = read_response(&mut c);
    let d = read_response(&mut c);
    assert_eq!(
        (
            a.header("validation-token"),
            b.status,
            d.header("validation-token")
        ),
        (Some("one"), 200, Some("three"))
    );
    // Still open for more.
    c.write_all(&s.handshake_request("four")).unwrap();
    assert_eq!(
        read_response(&mut c).header("validation-token"),
        Some("four")
    );

    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut c = s.connect();
    c.write_all(b"POST /webhook HTTP/1.0\r\nValidation-Token: old\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c);
    assert_eq!(r.header("validation-token"), Some("old"));
    assert!(closed_by_peer(&mut c));
}

#[test]
fn a_full_connection_table_evicts_the_longest_idle() {
    let s = Serve::new().args(["--max-connections", "4"]).start();
    let mut idle: Vec<TcpStream> = Vec::new();
    for i in 0..4 {
        let mut c = s.connect();
        // Each completes a request, so the server has surely accepted it, then idles.
        c.write_all(&s.handshake_request(&format!("c{i}"))).unwrap();
        assert_eq!(read_response(&mut c).status, 200);
        idle.push(c);
    }
    let r = s.exchange(&s.handshake_request("newcomer"));
    assert_eq!(r.status, 200);
    // The first (longest idle) was closed to make room.
    assert!(closed_by_peer(&mut idle[0]));
}

#[test]
fn an_incomplete_request_times_out_with_408() {
    let s = Serve::new().args(["--request-timeout", "300ms"]).start();
    let mut c = s.connect();
    c.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).status, 408);
    assert!(closed_by_peer(&mut c));
}

#[test]
fn sigterm_stops_cleanly_with_counters() {
    let mut s = Serve::new().start();
    assert_eq!(s.exchange(&s.handshake_request("x")).status, 200);
    let st = s.stop();
    assert_eq!(st.code(), Some(0));
    assert!(s.stderr().contains("stopped: "), "{}", s.stderr());
    assert!(s.stderr().contains("1 handshakes"));
}

#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    let mut s = with_token().log_file().start();
    let body = br#"{"uuid":"in-flight"}"#;
    let mut c = s.connect();
    let req = s.notification_request(body, Some(TOKEN));
    let (head, tail) = req.split_at(req.len() - 5);
    c.write_all(head).unwrap();
    // Make sure the head has been read before the signal: a handshake on another connection is
    // answered after the server has drained this socket's readiness in the same loop.
    assert_eq!(s.exchange(&s.handshake_request("sync")).status, 200);
    s.signal("TERM");
    s.wait_for("stop signal");
    c.write_all(tail).unwrap();
    assert_eq!(read_response(&mut c).status, 200);
    assert_eq!(s.wait_exit().code(), Some(0));
    assert_eq!(s.log_lines().len(), 1);
}

#[test]
fn sighup_reopens_the_log_for_logrotate() {
    let mut s = with_token().log_file().start();
    assert_eq!(notify(&s, br#"{"uuid":"before"}"#), 200);
    let rotated = s.dir.path().join("events.log.1");
    std::fs::rename(s.log_path(), &rotated).unwrap();
    s.signal("HUP");
    s.wait_for("event log reopened");
    assert_eq!(notify(&s, br#"{"uuid":"after"}"#), 200);
    assert!(
        std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("before")
    );
    let now = s.log_lines();
    assert_eq!(now.len(), 1);
    assert!(now[0].contains("after"));
}

#[test]
fn an_unwritable_log_answers_503_and_keeps_handshaking() {
    let s = with_token()
        .args(["--log-file", "/dev/full", "--health-path", "/health"])
        .start();
    assert_eq!(notify(&s, br#"{"uuid":"lost?"}"#), 503);
    assert_eq!(s.exchange(&s.handshake_request("still")).status, 200);
    let h = s.exchange(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.status, 503);
}

#[test]
fn a_full_disk_answers_503_then_recovers_by_itself() {
    let mut serve = with_token();
    let disk = serve.tmpfs_disk("64k");
    let log = disk.join("events.log");
    let s = serve.args(["--log-file".as_ref(), log.as_os_str()]).start();
    let filler = s.in_namespace(&disk.join("filler"));
    // Fill the disk from outside, as another program would.
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = [b'x'; 4096];
    while f.write_all(&block).is_ok() {}
    drop(f);
    let body = br#"{"uuid":"disk-1","event":"/e"}"#;
    assert_eq!(notify(&s, body), 503);
    assert_eq!(s.exchange(&s.handshake_request("ok")).status, 200);
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(notify(&s, body), 200, "retried delivery must be taken");
    let content = std::fs::read_to_string(s.in_namespace(&log)).unwrap();
    assert_eq!(content.lines().count(), 1);
    for l in content.lines() {
        serde_json::from_str::<Value>(l).unwrap();
    }
}

#[test]
fn a_torn_last_line_is_never_glued_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    std::fs::write(
        &log,
        "{\"receivedAt\":\"2026-01-01T00:00:00.000Z\",\"notification\":{\"uuid\":\"old\"}}\n{\"receivedAt\":\"2026-01-01T00:00:0",
    )
    .unwrap();
    let s = with_token()
        .args(["--log-file".as_ref(), log.as_os_str()])
        .start();
    assert!(s.stderr().contains("torn last line"), "{}", s.stderr());
    assert_eq!(notify(&s, br#"{"uuid":"new"}"#), 200);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for l in lines {
        serde_json::from_str::<Value>(l).unwrap();
    }
}

#[test]
fn stdout_sink_writes_one_line_per_event() {
    let mut s = with_token().capture_stdout().start();
    assert_eq!(notify(&s, b"{\n  \"uuid\": \"out-1\"\n}"), 200);
    let st = s.stop();
    assert!(st.success());
    let mut out = String::new();
    s.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out.lines().count(), 1);
    assert!(
        out.ends_with("\"notification\":{\"uuid\":\"out-1\"}}\n"),
        "{out}"
    );
}

#[test]
fn bad_configuration_exits_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = ringhook(dir.path())
        .args(["serve", "--listen", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));

    let out = ringhook(dir.path())
        .args(["serve"])
        .env("RINGHOOK_MAX_BODY", "huge")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RINGHOOK_MAX_BODY"));

    std::fs::write(dir.path().join(".env"), "WEBHOOK_PATH=no-slash\n").unwrap();
    let out = ringhook(dir.path()).args(["serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WEBHOOK_PATH (in .env)"), "{err}");

    let out = ringhook(dir.path())
        .args(["--env-file", "missing.env", "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.env"));

    let out = ringhook(dir.path())
        .args(["serve", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}

#[test]
fn an_address_in_use_exits_1_naming_it() {
    let s = Serve::new().start();
    let out = ringhook(s.dir.path())
        .args(["serve", "--listen", &s.addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&s.addr.to_string()) && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = ringhook(dir.path()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ringhook "));
    let out = ringhook(dir.path())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--log-file"));
}

/// RFC 9112 §6.1/§6.3 through the socket: framing that leaves the body's end in doubt is refused
/// and the connection closed, so nothing after it (here: a second request, a would-be smuggled
/// handshake) is ever read under a guess, and no such body reaches the log.
#[test]
fn ambiguous_framing_is_refused_and_the_connection_closed() {
    let s = with_token().log_file().start();
    let body = br#"{"uuid":"f-1"}"#;
    let chunked = format!(
        "{:x}\r\n{}\r\n0\r\n\r\n",
        body.len(),
        std::str::from_utf8(body).unwrap()
    );
    let smuggled = "POST /webhook HTTP/1.1\r\nHost: x\r\nValidation-Token: SECOND\r\nContent-Length: 0\r\n\r\n";
    let cases: &[(&str, &str, u16)] = &[
        (
            "HTTP/1.1",
            "Host: x\r\nTransfer-Encoding: xchunked\r\n",
            501,
        ),
        (
            "HTTP/1.1",
            "Host: x\r\nTransfer-Encoding: identity\r\n",
            501,
        ),
        (
            "HTTP/1.1",
            "Host: x\r\nTransfer-Encoding: gzip, chunked\r\n",
            501,
        ),
        (
            "HTTP/1.1",
            "Host: x\r\nTransfer-Encoding: chunked, identity\r\n",
            501,
        ),
        (
            "HTTP/1.1",
            "Host: x\r\nTransfer-Encoding: chunked;q=1\r\n",
            501,
        ),
        (
            "HTTP/1.1",
            "Host: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            400,
        ),
        ("HTTP/1.0", "Transfer-Encoding: chunked\r\n", 400),
        (
            "HTTP/1.1",
            "Host: x\r\nContent-Length: 14\r\nContent-Length: 14\r\n",
            400,
        ),
        ("HTTP/1.1", "Host: x\r\nContent-Length: 14, 14\r\n", 400),
        ("HTTP/1.1", "Host: x\r\nContent-Length: +14\r\n", 400),
        ("HTTP/1.1", "Transfer-Encoding: chunked\r\n", 400),
        (
            "HTTP/1.1",
            "Host: a\r\nHost: b\r\nTransfer-Encoding: chunked\r\n",
            400,
        ),
        (
            "HTTP/1.1",
            "Host: a/b\r\nTransfer-Encoding: chunked\r\n",
            400,
        ),
    ];
    for (version, headers, status) in cases {
        let mut c = s.connect();
        let req = format!(
            "POST /webhook {version}\r\n{headers}Verification-Token: {TOKEN}\r\n\r\n{chunked}{smuggled}"
        );
        c.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut c);
        assert_eq!(r.status, *status, "{req:?}");
        assert!(closed_by_peer(&mut c), "not closed after {req:?}");
    }
    // HTTP/1.0 without a Content-Length: its body cannot be delimited; never a 200 for it.
    let mut c = s.connect();
    c.write_all(
        format!("POST /webhook HTTP/1.0\r\nConnection: keep-alive\r\nVerification-Token: {TOKEN}\r\n\r\n{}",
            std::str::from_utf8(body).unwrap())
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(read_response(&mut c).status, 411);
    assert!(closed_by_peer(&mut c));
    assert!(s.log_lines().is_empty(), "{:?}", s.log_lines());
}

/// `Content-Length` beside `Transfer-Encoding: chunked`: the chunked body is the event (it is
/// logged byte-exact, then 200), and the connection is closed after the answer (RFC 9112 §6.1).
/// The issue's reproduction: a second request behind it is never answered.
#[test]
fn chunked_beside_a_length_is_logged_then_the_connection_closed() {
    let s = with_token().log_file().start();
    let body = r#"{"uuid":"d1"}"#;
    let mut c = s.connect();
    let req = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: {TOKEN}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\nPOST /webhook HTTP/1.1\r\nHost: x\r\nValidation-Token: SECOND\r\nContent-Length: 0\r\n\r\n",
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let r = read_response(&mut c);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        closed_by_peer(&mut c),
        "the second request must not be answered"
    );
    let lines = s.log_lines();
    assert_eq!(lines.len(), 1);
    let v: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["notification"]["uuid"], "d1");
    // `Chunked` in any letter case is chunked, and keeps the connection.
    let mut c = s.connect();
    let req = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: {TOKEN}\r\nTransfer-Encoding: ChUnKeD\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        body.len() + 2,
        r#"{"uuid":"d2"}  "#
    );
    c.write_all(req.as_bytes()).unwrap();
    assert_eq!(read_response(&mut c).status, 200);
    c.write_all(&s.handshake_request("again")).unwrap();
    assert_eq!(
        read_response(&mut c).header("validation-token"),
        Some("again")
    );
    assert_eq!(s.log_lines().len(), 2);
}

/// Peak resident memory of a running receiver, from the kernel (`VmHWM`), in bytes.
fn peak_rss(s: &Running) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

/// 32 clients post a 256 KiB notification each at once, eight times `--max-buffered 1MiB`:
/// every one is logged byte-exact and acknowledged, handshakes are answered meanwhile, and the
/// receiver's peak memory grows by at most 4 MiB, because bodies beyond the budget wait unread in
/// TCP instead of in memory (before: every body buffered at once, ~16 MiB here).
#[test]
fn bodies_beyond_the_buffer_budget_wait_in_tcp_not_in_memory() {
    const CLIENTS: usize = 32;
    const SIZE: usize = 256 * 1024;
    let s = with_token()
        .args(["--max-body", "256KiB", "--max-buffered", "1MiB"])
        .log_file()
        .start();
    let at_rest = peak_rss(&s);
    let body_of = |uuid: &str| {
        let mut body = format!("{{\"uuid\":\"{uuid}\",\"pad\":\"").into_bytes();
        body.resize(SIZE - 2, b'x');
        body.extend_from_slice(b"\"}");
        body
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let req = s.notification_request(&body_of(&format!("big-{i}")), Some(TOKEN));
            let mut c = s.connect();
            std::thread::spawn(move || {
                c.write_all(&req).unwrap();
                read_response(&mut c).status
            })
        })
        .collect();
    // Handshakes carry no body: never held back by the budget.
    for i in 0..5 {
        let r = s.exchange(&s.handshake_request(&format!("meanwhile-{i}")));
        assert_eq!(r.status, 200);
    }
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    let lines = s.log_lines();
    assert_eq!(lines.len(), CLIENTS);
    let mut uuids: Vec<String> = lines
        .iter()
        .map(|l| {
            // `{"receivedAt":"…","notification":BODY}`: the body exactly as sent.
            let at = l.find("\"notification\":").unwrap() + 15;
            let logged = &l[at..l.len() - 1];
            let uuid = logged[9..logged.find("\",").unwrap()].to_string();
            assert_eq!(logged, std::str::from_utf8(&body_of(&uuid)).unwrap());
            uuid
        })
        .collect();
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), CLIENTS);
    let grown = peak_rss(&s).saturating_sub(at_rest);
    eprintln!("peak RSS grew by {grown} B for {CLIENTS} concurrent 256 KiB bodies");
    assert!(grown <= 4 << 20, "peak RSS grew by {grown} B");
}

/// `WEBHOOK_VERIFICATION_TOKEN=` (set, empty) is a usage error naming it, not "no token"; a
/// token file is read with a bound, so `/dev/zero` is an error naming the file.
#[test]
fn an_empty_token_variable_and_an_endless_token_file_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = ringhook(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("WEBHOOK_VERIFICATION_TOKEN", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("WEBHOOK_VERIFICATION_TOKEN is set but empty")
    );
    let out = ringhook(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--verification-token-file",
            "/dev/zero",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/dev/zero: not a regular file (a character device)")
    );
    let out = ringhook(dir.path())
        .args([
            "--env-file",
            "/dev/zero",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--env-file /dev/zero: not a regular file (a character device)")
    );
}

#[test]
fn a_flood_of_one_kind_of_line_is_summarized_and_every_line_counted() {
    let mut s = with_token().start();
    let mut c = s.connect();
    for i in 0..200 {
        c.write_all(&s.handshake_request(&format!("h{i}"))).unwrap();
        assert_eq!(read_response(&mut c).status, 200);
    }
    drop(c);
    assert!(s.stop().success());
    let err = s.stderr();
    let shown = err
        .lines()
        .filter(|l| l.contains(" handshake answered"))
        .count();
    // "… 1,532 more handshakes answered in the last 10 s", one per interval.
    let summarized: usize = err
        .lines()
        .filter_map(|l| l.split_once("… ")?.1.strip_suffix(" s"))
        .filter_map(|rest| {
            let n = rest.split_once(" more handshakes answered in the last ")?.0;
            n.replace(',', "").parse::<usize>().ok()
        })
        .sum();
    assert!(shown < 100, "{shown} handshake lines shown:\n{err}");
    assert!(summarized > 0, "no summary line:\n{err}");
    assert_eq!(shown + summarized, 200, "{err}");
}
