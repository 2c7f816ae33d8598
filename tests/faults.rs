//! Proof that the receiver survives: crashes, full disks, descriptor exhaustion, floods,
//! half-closed sockets and a closed stdout — against the real binary.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::support::{Running, Serve, read_response, read_status};

const TOKEN: &str = "crash-test-token";

fn serve_on(log: &std::path::Path) -> Running {
    Serve::new()
        .env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
        .args(["--log-file".as_ref(), log.as_os_str()])
        .start()
}

/// Clients post notifications with unique uuids on keep-alive connections and record every uuid
/// that was answered 200, while the receiver is SIGKILLed at varying points and restarted on the
/// same log. Afterwards: every acknowledged uuid is in the log exactly once, every line parses,
/// no line is glued to another.
#[test]
fn acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut total_sent = 0usize;
    for (round, kill_after) in [150usize, 400, 50, 700, 300, 1].into_iter().enumerate() {
        let mut s = serve_on(&log);
        let stop = Arc::new(AtomicBool::new(false));
        let round_acks = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..4)
            .map(|client| {
                let (addr, path) = (s.addr, s.path.clone());
                let (stop, acked, round_acks, sent) =
                    (stop.clone(), acked.clone(), round_acks.clone(), sent.clone());
                std::thread::spawn(move || {
                    // A round may kill the receiver before a slow thread connects (kill_after 1).
                    let Ok(mut c) = TcpStream::connect(addr) else {
                        return;
                    };
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let uuid = format!("r{round}-c{client}-n{i}");
                        let body = format!(
                            "{{\"uuid\":\"{uuid}\",\"event\":\"/restapi/v1.0/account/~/extension/1/presence\",\"body\":{{\"sequence\":{i},\"pad\":\"{}\"}}}}",
                            "x".repeat(i % 300)
                        );
                        let req = format!(
                            "POST {path} HTTP/1.1\r\nHost: x\r\nVerification-Token: {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        sent.fetch_add(1, Ordering::Relaxed);
                        if c.write_all(req.as_bytes()).is_err() {
                            return;
                        }
                        match read_status(&mut c) {
                            Some(200) => {
                                acked.lock().unwrap().push(uuid);
                                round_acks.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => return, // killed: the answer never came
                        }
                    }
                })
            })
            .collect();
        while round_acks.load(Ordering::Relaxed) < kill_after {
            std::thread::yield_now();
        }
        s.signal("KILL");
        s.wait_exit();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        total_sent += sent.load(Ordering::Relaxed);
    }

    // One last start: it repairs whatever the last kill left.
    let mut s = serve_on(&log);
    assert!(s.stop().success());

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("unparsable line ({e}): {line:?}"));
        let uuid = v["notification"]["uuid"]
            .as_str()
            .expect("a uuid")
            .to_string();
        *counts.entry(uuid).or_default() += 1;
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() >= 1601,
        "the rounds acknowledged {} events",
        acked.len()
    );
    for u in acked.iter() {
        assert_eq!(
            counts.get(u),
            Some(&1),
            "acknowledged {u} must be logged exactly once"
        );
    }
    assert!(counts.values().all(|&n| n == 1), "no event is logged twice");
    assert!(counts.len() <= total_sent);
}

#[test]
fn out_of_file_descriptors_does_not_stop_service() {
    // 16 descriptors: stdio, the listener, epoll, the signal pipe and the log leave ~9 for clients.
    let mut s = Serve::new().max_fds(16).start();
    let hogs: Vec<TcpStream> = (0..40).map(|_| s.connect()).collect();
    let r = s.exchange(&s.handshake_request("still-here"));
    assert_eq!(r.status, 200);
    // The line may reach the stderr reader after the answer reaches us.
    s.wait_until("an out-of-descriptors line", |e| {
        e.contains("out of file descriptors") || e.contains("cannot accept")
    });
    drop(hogs);
    assert_eq!(s.exchange(&s.handshake_request("and-after")).status, 200);
}

#[test]
fn a_thousand_stalled_connections_do_not_block_a_handshake() {
    let s = Serve::new().start();
    let stalled: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut c = s.connect();
            if i % 2 == 0 {
                let _ = c.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n");
            }
            c
        })
        .collect();
    let r = s.exchange(&s.handshake_request("prompt"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("validation-token"), Some("prompt"));
    drop(stalled);
}

#[test]
fn a_half_closed_client_still_gets_its_answer() {
    let s = Serve::new()
        .env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
        .log_file()
        .start();
    let mut c = s.connect();
    c.write_all(&s.notification_request(br#"{"uuid":"half"}"#, Some(TOKEN)))
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_response(&mut c).status, 200);
    assert_eq!(s.log_lines().len(), 1);

    let mut c = s.connect();
    c.write_all(&s.handshake_request("bye")).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        read_response(&mut c).header("validation-token"),
        Some("bye")
    );
}

#[test]
fn a_chunk_size_flood_is_refused() {
    let s = Serve::new().start();
    let mut c = s.connect();
    c.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    // A chunk-size line that never ends.
    let flood = vec![b'f'; 100 * 1024];
    let _ = c.write_all(&flood);
    let r = read_response(&mut c);
    assert_eq!(r.status, 400);
    assert_eq!(s.exchange(&s.handshake_request("alive")).status, 200);
}

#[test]
fn a_closed_stdout_answers_503_and_keeps_handshaking() {
    let mut s = Serve::new()
        .env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
        .capture_stdout()
        .start();
    drop(s.child.stdout.take()); // the reader goes away: writes get EPIPE
    let r = s.exchange(&s.notification_request(br#"{"uuid":"nowhere"}"#, Some(TOKEN)));
    assert_eq!(r.status, 503);
    assert_eq!(s.exchange(&s.handshake_request("alive")).status, 200);
    s.wait_until("the write failure logged", |e| {
        e.contains("event log write failed")
    });
}

/// Under a real `ulimit -n 64`, 300 idle connections (far more than fit) stand before a
/// handshake: it is answered, because on EMFILE the receiver frees a descriptor per waiting
/// client at once instead of one per 100 ms pause (which took ~25 s here, past the platform's
/// 3 s). The start-up warning names the limit.
#[test]
fn a_flood_of_idle_connections_under_ulimit_64_does_not_keep_a_handshake_out() {
    let s = Serve::new().max_fds(64).start();
    assert!(
        s.stderr().contains("exceed the open-file limit of 64"),
        "{}",
        s.stderr()
    );
    let idle: Vec<TcpStream> = (0..300).map(|_| s.connect()).collect();
    let started = std::time::Instant::now();
    let r = s.exchange(&s.handshake_request("behind-the-flood"));
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("validation-token"), Some("behind-the-flood"));
    // Measured, not asserted (no timing asserts): the issue's target is under 100 ms.
    eprintln!("handshake behind 300 idle connections under ulimit -n 64: {took:?}");
    drop(idle);
    assert_eq!(s.exchange(&s.handshake_request("after")).status, 200);
}

/// `/health` follows the log's state now, not the last batch's: once a full disk has room again
/// it turns 200 without any notification (the loop probes the log), and a SIGHUP reopen onto a
/// writable file turns it 200 at once. The probes leave no byte in the log.
#[test]
fn health_recovers_when_the_log_is_writable_again_without_a_notification() {
    let mut serve = Serve::new().env("WEBHOOK_VERIFICATION_TOKEN", TOKEN);
    let disk = serve.tmpfs_disk("64k");
    let log = disk.join("events.log");
    let mut s = serve
        .args(["--log-file".as_ref(), log.as_os_str()])
        .args(["--health-path", "/health"])
        .start();
    let (log, rotated) = (
        s.in_namespace(&log),
        s.in_namespace(&disk.join("events.log.1")),
    );
    let health = || {
        s.exchange(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .status
    };
    let filler = s.in_namespace(&disk.join("filler"));
    let fill = || {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = [b'x'; 4096];
        while f.write_all(&block).is_ok() {}
    };
    let body = br#"{"uuid":"health-1","event":"/e"}"#;
    let notify = || {
        s.exchange(&s.notification_request(body, Some(TOKEN)))
            .status
    };
    let assert_clean = |path: &std::path::Path| {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
        for l in text.lines() {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
        }
        text.lines().count()
    };

    // (b) Room again, and no notification: health turns 200 by itself.
    fill();
    assert_eq!(notify(), 503);
    assert_eq!(health(), 503);
    std::fs::remove_file(&filler).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while health() != 200 {
        assert!(std::time::Instant::now() < deadline, "health stayed 503");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(assert_clean(&log), 0, "no probe byte is left in the log");

    // (a) Unwritable again; logrotate moves the log away and SIGHUP reopens a writable one.
    fill();
    assert_eq!(notify(), 503);
    assert_eq!(health(), 503);
    std::fs::remove_file(&filler).unwrap();
    std::fs::rename(&log, &rotated).unwrap();
    s.signal("HUP");
    s.wait_for("SIGHUP: event log reopened");
    assert_eq!(
        s.exchange(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .status,
        200
    );
    assert_eq!(
        s.exchange(&s.notification_request(body, Some(TOKEN)))
            .status,
        200
    );
    assert_eq!(assert_clean(&rotated), 0);
    assert_eq!(assert_clean(&log), 1);
}
