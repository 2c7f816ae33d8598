//! `serve --metrics-path`: scraped over a real socket from the real binary; every scrape is checked
//! by Prometheus's own `promtool check metrics`, and every counter must move exactly with what
//! the test did.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fake_platform::{self as fake, FakePlatform};
use crate::support::{Running, Serve, read_response};

const TOKEN: &str = "metrics-token-5e7a";

/// One scrape: series (name and labels, as written) → value.
#[derive(Debug)]
struct Scraped(HashMap<String, f64>);

impl Scraped {
    fn get(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in {:#?}", self.0))
    }

    fn has(&self, series: &str) -> bool {
        self.0.contains_key(series)
    }
}

/// Fails unless `promtool check metrics` accepts `body` (lint included).
pub fn promtool_accepts(body: &[u8]) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n--- scrape ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(body)
    );
}

fn scrape(s: &Running) -> Scraped {
    let r = s.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    promtool_accepts(&r.body);
    let text = String::from_utf8(r.body).unwrap();
    let mut series = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        let old = series.insert(name.to_string(), value.parse().unwrap());
        assert!(old.is_none(), "{name} twice");
    }
    Scraped(series)
}

fn notification(uuid: &str) -> Vec<u8> {
    format!(
        r#"{{"uuid":"{uuid}","event":"/restapi/v1.0/account/~/extension/~/presence","body":{{}}}}"#
    )
    .into_bytes()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn counters_move_exactly_with_the_traffic() {
    let before = now();
    let s = Serve::new()
        .env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
        .env("RINGHOOK_METRICS_PATH", "/metrics")
        .log_file()
        .start();
    let m = scrape(&s);
    for (series, want) in [
        ("ringhook_notifications_total{result=\"logged\"}", 0.0),
        ("ringhook_notifications_total{result=\"duplicate\"}", 0.0),
        ("ringhook_notifications_total{result=\"rejected\"}", 0.0),
        ("ringhook_notifications_total{result=\"unwritable\"}", 0.0),
        ("ringhook_handshakes_total", 0.0),
        ("ringhook_log_syncs_total", 0.0),
        ("ringhook_log_sync_seconds_count", 0.0),
        ("ringhook_log_writable", 1.0),
        ("ringhook_last_notification_timestamp_seconds", 0.0),
    ] {
        assert_eq!(m.get(series), want, "{series}");
    }
    let version = format!(
        "ringhook_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(m.get(&version), 1.0);
    // The first scrape's own answer is not out yet while it is rendered.
    assert!(!m.has("ringhook_responses_total{code=\"200\"}"));
    assert!(m.get("ringhook_connections_open") >= 1.0);
    assert!(m.get("process_open_fds") >= 4.0); // stdio, the log, the listener, epoll
    assert!(m.get("process_resident_memory_bytes") > 100_000.0);
    let started = m.get("process_start_time_seconds");
    // /proc's boot time has whole seconds: allow for that, not for a wrong clock or unit.
    assert!(
        started > before - 3.0 && started < now() + 1.0,
        "{started} vs {before}"
    );
    assert!(
        !m.has("ringhook_exec_total{outcome=\"ok\"}"),
        "without --exec"
    );
    assert!(!m.has("ringhook_register_runs_total{result=\"ok\"}"));

    // 5 notifications, 2 redeliveries, 3 handshakes, a wrong token, a missing token, a body too
    // large, a stranger's GET.
    for i in 0..5 {
        let r = s.exchange(&s.notification_request(&notification(&format!("m-{i}")), Some(TOKEN)));
        assert_eq!(r.status, 200);
    }
    for uuid in ["m-1", "m-3"] {
        let r = s.exchange(&s.notification_request(&notification(uuid), Some(TOKEN)));
        assert_eq!(r.status, 200);
    }
    for t in ["a", "b", "c"] {
        assert_eq!(s.exchange(&s.handshake_request(t)).status, 200);
    }
    let body = notification("m-x");
    assert_eq!(
        s.exchange(&s.notification_request(&body, Some("wrong")))
            .status,
        403
    );
    assert_eq!(s.exchange(&s.notification_request(&body, None)).status, 403);
    let huge = b"POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: metrics-token-5e7a\r\nContent-Length: 99999999\r\n\r\n";
    assert_eq!(s.exchange(huge).status, 413);
    assert_eq!(
        s.exchange(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            .status,
        403
    );
    assert_eq!(s.log_lines().len(), 5);

    let m = scrape(&s);
    for (series, want) in [
        ("ringhook_notifications_total{result=\"logged\"}", 5.0),
        ("ringhook_notifications_total{result=\"duplicate\"}", 2.0),
        ("ringhook_notifications_total{result=\"rejected\"}", 3.0),
        ("ringhook_notifications_total{result=\"unwritable\"}", 0.0),
        ("ringhook_handshakes_total", 3.0),
        // 5 + 2 notifications, 3 handshakes and the first scrape.
        ("ringhook_responses_total{code=\"200\"}", 11.0),
        ("ringhook_responses_total{code=\"403\"}", 3.0),
        ("ringhook_responses_total{code=\"413\"}", 1.0),
        // One request at a time: one batch, one fdatasync per logged notification.
        ("ringhook_log_syncs_total", 5.0),
        ("ringhook_log_sync_seconds_count", 5.0),
        ("ringhook_log_sync_seconds_bucket{le=\"+Inf\"}", 5.0),
        ("ringhook_connections_evicted_total", 0.0),
        ("ringhook_log_writable", 1.0),
    ] {
        assert_eq!(m.get(series), want, "{series}");
    }
    assert!(m.get("ringhook_log_sync_seconds_sum") > 0.0);
    let last = m.get("ringhook_last_notification_timestamp_seconds");
    assert!(last >= before && last <= now(), "{last}");
}

#[test]
fn evictions_and_an_unwritable_log_show() {
    // /dev/full takes the open and refuses every write: the log is unwritable from the start.
    let s = Serve::new()
        .args([
            "--metrics-path",
            "/metrics",
            "--max-connections",
            "2",
            "--log-file",
            "/dev/full",
        ])
        .start();
    // A keep-alive connection that stays open after its 503, and an idle one behind it, fill the
    // table; the scrape's own connection evicts the one quiet longest: the first.
    let mut first = s.connect();
    first
        .write_all(&s.notification_request(&notification("full-1"), None))
        .unwrap();
    assert_eq!(read_response(&mut first).status, 503);
    let second = s.connect();
    let m = scrape(&s);
    drop((first, second));
    for (series, want) in [
        ("ringhook_notifications_total{result=\"unwritable\"}", 1.0),
        ("ringhook_notifications_total{result=\"logged\"}", 0.0),
        ("ringhook_responses_total{code=\"503\"}", 1.0),
        ("ringhook_log_writable", 0.0),
        ("ringhook_log_syncs_total", 0.0), // the write failed before any sync
        ("ringhook_connections_evicted_total", 1.0),
        ("ringhook_connections_open", 2.0),
        ("ringhook_last_notification_timestamp_seconds", 0.0),
    ] {
        assert_eq!(m.get(series), want, "{series}");
    }
}

#[test]
fn exec_outcomes_are_counted() {
    // Exit 0, exit 3, or hang past the timeout, by the event's uuid.
    let script =
        "read x; case \"$RINGHOOK_UUID\" in ok*) exit 0;; bad*) exit 3;; *) exec sleep 30;; esac";
    let mut s = Serve::new()
        .args(["--metrics-path", "/metrics", "--exec-timeout", "2s"])
        .args(["--exec", &format!("sh -c '{script}'")])
        .start();
    for uuid in ["ok-1", "ok-2", "bad-1", "slow-1"] {
        let r = s.exchange(&s.notification_request(&notification(uuid), None));
        assert_eq!(r.status, 200);
    }
    s.wait_until("every command finished", |e| {
        e.contains("exec ok-1: exited 0")
            && e.contains("exec ok-2: exited 0")
            && e.contains("exec bad-1: exit status: 3")
            && e.contains("exec slow-1: killed")
    });
    let m = scrape(&s);
    for (outcome, want) in [
        ("ok", 2.0),
        ("failed", 1.0),
        ("timeout", 1.0),
        ("skipped", 0.0),
    ] {
        let series = format!("ringhook_exec_total{{outcome=\"{outcome}\"}}");
        assert_eq!(m.get(&series), want, "{series}");
    }
}

#[test]
fn register_runs_and_the_subscription_show() {
    let fake = FakePlatform::start();
    // The first run's create fails (with its own three retries); the retry, 2 s later (time for
    // the scrape in between), succeeds.
    for _ in 0..4 {
        fake.script("POST", "/restapi/v1.0/subscription", 503, None);
    }
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let state = tempfile::tempdir().unwrap();
    let mut s = Serve::at(&addr)
        .env("RC_SERVER_URL", &fake.url)
        .env("RC_CLIENT_ID", fake::CLIENT_ID)
        .env("RC_CLIENT_SECRET", fake::CLIENT_SECRET)
        .env("RC_JWT", fake::JWT)
        .env("WEBHOOK_ADDRESS", &format!("http://{addr}/webhook"))
        .env(
            "RINGHOOK_EVENT_FILTERS",
            "/restapi/v1.0/account/~/extension/~/presence",
        )
        .env(
            "RINGHOOK_STATE",
            &state.path().join("state.json").to_string_lossy(),
        )
        .args([
            "--register",
            "--register-retry",
            "2s",
            "--metrics-path",
            "/metrics",
        ])
        .start();
    s.wait_for("registration failed (1 in a row");
    let m = scrape(&s);
    assert_eq!(
        m.get("ringhook_register_runs_total{result=\"failed\"}"),
        1.0
    );
    assert_eq!(m.get("ringhook_register_runs_total{result=\"ok\"}"), 0.0);
    assert_eq!(m.get("ringhook_register_consecutive_failures"), 1.0);
    assert_eq!(
        m.get("ringhook_register_last_success_timestamp_seconds"),
        0.0
    );
    // Not known yet: no sample rather than a false one.
    assert!(!m.has("ringhook_subscription_expiry_timestamp_seconds"));
    assert!(!m.has("ringhook_subscription_active"));

    s.wait_for("subscription created");
    let before = now();
    let m = scrape(&s);
    assert_eq!(
        m.get("ringhook_register_runs_total{result=\"failed\"}"),
        1.0
    );
    assert_eq!(m.get("ringhook_register_runs_total{result=\"ok\"}"), 1.0);
    assert_eq!(m.get("ringhook_register_consecutive_failures"), 0.0);
    assert_eq!(m.get("ringhook_subscription_active"), 1.0);
    let subs = fake.subscriptions();
    let expires = subs[0].expires.duration_since(UNIX_EPOCH).unwrap();
    // As precise as the platform's expirationTime (the fake's has whole seconds).
    let shown = m.get("ringhook_subscription_expiry_timestamp_seconds");
    let gap = expires.as_secs_f64() - shown;
    assert!((0.0..1.0).contains(&gap), "{shown} vs {expires:?}");
    let last = m.get("ringhook_register_last_success_timestamp_seconds");
    assert!(last > before - 60.0 && last <= now(), "{last}");
    assert!(s.stop().success());
}

#[test]
fn every_family_passes_promtool_even_those_of_optional_features() {
    use ringhook::internals::*;
    let mut c = Counters::default();
    c.responses.count(200);
    c.last_notification = Some(SystemTime::now());
    let mut h = Histogram::default();
    h.observe(Duration::from_micros(700));
    let r = RegisterStatus {
        ok: 3,
        failed: 1,
        failed_in_a_row: 1,
        last_success: Some(SystemTime::now()),
        expiry: Some(SystemTime::now() + Duration::from_secs(86400)),
        active: Some(true),
    };
    let ship = ShipFigures {
        delivered: 10,
        dead_lettered: 1,
        lag_events: 2,
        lag: Duration::from_millis(1500),
    };
    let mut out = Vec::new();
    render(
        &Scrape {
            counters: &c,
            connections_open: 3,
            log_writable: true,
            log_sync: &h,
            log_sync_in_flight: Some(Duration::from_millis(2500)),
            exec: Some(ExecOutcomes::default()),
            register: Some(&r),
            ship: Some(&ship),
            process: Process::read(),
        },
        &mut out,
    );
    promtool_accepts(&out);
    let text = String::from_utf8(out).unwrap();
    for family in [
        "ringhook_ship_delivered_total 10\n",
        "ringhook_ship_dead_lettered_total 1\n",
        "ringhook_ship_lag_events 2\n",
        "ringhook_ship_lag_seconds 1.5\n",
        "ringhook_subscription_active 1\n",
    ] {
        assert!(text.contains(family), "{family}");
    }
}

/// Scrapes cannot starve notifications: with 16 connections scraping `/metrics` back to back, 4
/// clients' 400 notifications are all answered 200 and all logged. (How much a scrape costs is
/// the benchmark's business: `scripts/bench/scrape-flood.sh`.)
#[test]
fn a_scrape_flood_does_not_starve_notifications() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let s = Serve::new()
        .env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
        .env("RINGHOOK_METRICS_PATH", "/metrics")
        .log_file()
        .start();
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let scrapers: Vec<_> = (0..16)
        .map(|_| {
            let (mut c, stop, scrapes) = (s.connect(), stop.clone(), scrapes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                        .unwrap();
                    assert_eq!(read_response(&mut c).status, 200);
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    while scrapes.load(Ordering::Relaxed) < 16 {
        std::thread::yield_now();
    }
    let notifiers: Vec<_> = (0..4)
        .map(|client| {
            let mut c = s.connect();
            let requests: Vec<Vec<u8>> = (0..100)
                .map(|i| {
                    s.notification_request(&notification(&format!("f{client}-{i}")), Some(TOKEN))
                })
                .collect();
            std::thread::spawn(move || {
                for r in requests {
                    c.write_all(&r).unwrap();
                    assert_eq!(read_response(&mut c).status, 200);
                }
            })
        })
        .collect();
    for n in notifiers {
        n.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for t in scrapers {
        t.join().unwrap();
    }
    let lines = s.log_lines();
    assert_eq!(lines.len(), 400);
    for client in 0..4 {
        for i in 0..100 {
            let uuid = format!("\"uuid\":\"f{client}-{i}\"");
            assert!(lines.iter().any(|l| l.contains(&uuid)), "{uuid} not logged");
        }
    }
}
