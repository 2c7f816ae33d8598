//! `ringhook ship` into HTTP sinks: a loopback sink that fails, flaps, answers 429/500/400 and
//! stalls; every record delivered or dead-lettered, in order, none lost, the cursor never ahead
//! of delivery; rotation mid-shipping; restarts resume exactly; a cursor that matches no file.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{PATIENCE, ringhook};

/// A log line for notification `uuid`, and the notification's bytes as logged.
pub fn line(uuid: &str, i: usize) -> (String, String) {
    let n = format!(
        r#"{{"uuid":"{uuid}","event":"/restapi/v1.0/account/~/extension/{i}/presence?detailedTelephonyState=true","timestamp":"2026-12-02T00:00:00.000Z","subscriptionId":"s1","body":{{"n":{i},"text":"caf\u00e9 \"q\""}}}}"#
    );
    (
        format!(
            r#"{{"receivedAt":"2026-12-02T00:00:00.{:03}Z","notification":{n}}}"#,
            i % 1000
        ) + "\n",
        n,
    )
}

/// Appends records `range` to `path`; returns their (uuid, notification) in order.
pub fn append(path: &Path, prefix: &str, range: std::ops::Range<usize>) -> Vec<(String, String)> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    range
        .map(|i| {
            let uuid = format!("{prefix}-{i}");
            let (l, n) = line(&uuid, i);
            f.write_all(l.as_bytes()).unwrap();
            (uuid, n)
        })
        .collect()
}

/// What the sink does with one request.
#[derive(Clone, Copy, Debug)]
pub enum Act {
    Answer(u16, Option<&'static str>),
    /// Close the connection without answering.
    Drop,
    /// Read the request, then say nothing for this long.
    Stall(Duration),
}

/// One request the sink took.
#[derive(Clone, Debug)]
pub struct Got {
    pub key: String,
    pub body: String,
    pub headers: HashMap<String, String>,
    pub status: u16,
}

/// A loopback HTTP sink whose answers a script decides: `script(request number, key)`.
pub struct HttpSink {
    pub url: String,
    pub got: Arc<Mutex<Vec<Got>>>,
    pub events: Receiver<Got>,
}

type Script = dyn Fn(usize, &str) -> Act + Send + Sync;

impl HttpSink {
    pub fn start(script: impl Fn(usize, &str) -> Act + Send + Sync + 'static) -> HttpSink {
        HttpSink::start_with(Arc::new(script), Arc::new(|_| {}))
    }

    /// `check` runs on every request before it is answered (the cursor-never-ahead check).
    pub fn start_with(script: Arc<Script>, check: Arc<dyn Fn(&Got) + Send + Sync>) -> HttpSink {
        Self::launch(script, check, None)
    }

    /// The same over HTTPS, presenting `tls`'s certificate (for 127.0.0.1).
    pub fn start_tls(
        script: impl Fn(usize, &str) -> Act + Send + Sync + 'static,
        tls: Arc<rustls::ServerConfig>,
    ) -> HttpSink {
        Self::launch(Arc::new(script), Arc::new(|_| {}), Some(tls))
    }

    fn launch(
        script: Arc<Script>,
        check: Arc<dyn Fn(&Got) + Send + Sync>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/events", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(Mutex::new(0usize));
        let (tx, events) = channel();
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (script, check, g, count, tx, tls) = (
                    script.clone(),
                    check.clone(),
                    g.clone(),
                    count.clone(),
                    tx.clone(),
                    tls.clone(),
                );
                std::thread::spawn(move || match tls {
                    None => serve_conn(conn, &*script, &*check, &g, &count, &tx),
                    Some(cfg) => {
                        let Ok(server) = rustls::ServerConnection::new(cfg) else {
                            return;
                        };
                        let conn = rustls::StreamOwned::new(server, conn);
                        serve_conn(conn, &*script, &*check, &g, &count, &tx)
                    }
                });
            }
        });
        HttpSink { url, got, events }
    }

    /// Waits until `n` requests were answered 2xx.
    pub fn wait_delivered(&self, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.delivered().len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.events.recv_timeout(left).is_err() {
                panic!(
                    "{} of {n} delivered within {PATIENCE:?}",
                    self.delivered().len()
                );
            }
        }
    }

    /// Keys answered 2xx, in order.
    pub fn delivered(&self) -> Vec<Got> {
        let all = self.got.lock().unwrap();
        all.iter()
            .filter(|g| (200..300).contains(&g.status))
            .cloned()
            .collect()
    }
}

fn serve_conn(
    conn: impl Read + Write,
    script: &Script,
    check: &(dyn Fn(&Got) + Send + Sync),
    got: &Mutex<Vec<Got>>,
    count: &Mutex<usize>,
    tx: &std::sync::mpsc::Sender<Got>,
) {
    let mut reader = BufReader::new(conn);
    loop {
        let mut headers = HashMap::new();
        let mut first = String::new();
        if reader.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut l = String::new();
            if reader.read_line(&mut l).unwrap_or(0) == 0 {
                return;
            }
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let key = headers.get("idempotency-key").cloned().unwrap_or_default();
        let n = {
            let mut c = count.lock().unwrap();
            *c += 1;
            *c
        };
        let act = script(n, &key);
        let mut g = Got {
            key,
            body: String::from_utf8(body).unwrap(),
            headers,
            status: 0,
        };
        if let Act::Answer(status, _) = act {
            g.status = status;
        }
        // Before the answer leaves: the shipper cannot act on it earlier.
        check(&g);
        match act {
            Act::Drop => return,
            Act::Stall(d) => {
                std::thread::sleep(d);
                return;
            }
            Act::Answer(status, retry_after) => {
                let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n");
                if let Some(r) = retry_after {
                    head.push_str(&format!("Retry-After: {r}\r\n"));
                }
                head.push_str("\r\nok");
                got.lock().unwrap().push(g.clone());
                let _ = tx.send(g);
                let conn = reader.get_mut();
                if conn
                    .write_all(head.as_bytes())
                    .and_then(|_| conn.flush())
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// `ringhook ship` with the given arguments and environment, in `dir`.
pub fn ship(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = ringhook(dir);
    c.arg("ship").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs `ringhook ship` until it reports its sink failing, then stops it with SIGTERM. Returns
/// every line of its operational log up to that one (the last), for checks that a secret was
/// never printed, and how it exited.
pub fn until_failing(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Vec<String>, std::process::ExitStatus) {
    let mut child = ship(dir, args, env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    while !lines
        .last()
        .is_some_and(|l: &String| l.contains("failing since"))
    {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "no failure reported");
        lines.push(line);
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    (lines, child.wait().unwrap())
}

/// Runs to completion (bounded) and returns the output.
pub fn run(mut c: Command) -> Output {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    wait_output(child)
}

/// Waits for `child` at most [`PATIENCE`], killing it if it overstays.
pub fn wait_output(mut child: Child) -> Output {
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "ship did not finish within {PATIENCE:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The cursor file's offset.
pub fn cursor_offset(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["offset"].as_u64()
}

/// Byte offset just after each uuid's line in `log`.
pub fn line_ends(log: &Path) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let mut end = 0u64;
    for l in std::fs::read_to_string(log).unwrap().split_inclusive('\n') {
        end += l.len() as u64;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
            if let Some(u) = v["notification"]["uuid"].as_str() {
                out.insert(u.to_string(), end);
            }
        }
    }
    out
}

fn dedup_keys(got: &[Got]) -> Vec<String> {
    let mut keys: Vec<String> = got.iter().map(|g| g.key.clone()).collect();
    keys.dedup();
    keys
}

#[test]
fn every_record_delivered_or_dead_lettered_in_order_through_faults() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let mut want = append(&log, "a", 0..20);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"{\"receivedAt\":\"2026-12-02T00:00:01.000Z\",\"invalidJson\":\"not json\"}\n")
        .unwrap();
    let after_invalid = std::fs::metadata(&log).unwrap().len();
    want.extend(append(&log, "b", 20..40));
    let mut ends = line_ends(&log);
    // The invalid line goes to the dead-letter file without the sink: once a-19 is confirmed,
    // the cursor may pass it (and does, when a commit falls between the two).
    ends.insert("a-19".into(), after_invalid);
    let cursor = dir.path().join("events.log.cursor");

    // Faults by request number; "b-25" is refused for good.
    let script = |n: usize, key: &str| match (n, key) {
        (_, "b-25") => Act::Answer(400, None),
        (1, _) => Act::Drop,
        (2, _) => Act::Answer(500, None),
        (3, _) => Act::Answer(429, Some("0")),
        (4, _) => Act::Answer(503, Some("0")),
        (5, _) => Act::Stall(Duration::from_millis(1500)),
        (n, _) if n % 7 == 0 => Act::Answer(502, None),
        (n, _) if n % 11 == 0 => Act::Drop,
        _ => Act::Answer(200, None),
    };
    // The cursor is never ahead: at every request, it is at most the end of the last record
    // the sink confirmed (refusals included: they go to the dead-letter file).
    let confirmed = Mutex::new(0u64);
    let c2 = cursor.clone();
    let check = move |g: &Got| {
        let at = cursor_offset(&c2).unwrap_or(0);
        let mut done = confirmed.lock().unwrap();
        assert!(at <= *done, "cursor at {at}, confirmed only to {done}");
        if (200..300).contains(&g.status) || g.status == 400 {
            *done = (*done).max(ends[&g.key]);
        }
    };
    let sink = HttpSink::start_with(Arc::new(script), Arc::new(check));
    let out = run(ship(
        dir.path(),
        &["--log-file", "events.log", "--to", &sink.url, "--once"],
        &[
            ("RINGHOOK_SHIP_TIMEOUT", "300ms"),
            ("RINGHOOK_SHIP_TOKEN", "s3cret-token"),
        ],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("s3cret-token"), "{err}");
    assert!(err.contains("failing since"), "{err}");
    assert!(err.contains("dead-lettered b-25"), "{err}");

    let delivered = sink.delivered();
    let expect: Vec<String> = want
        .iter()
        .map(|(u, _)| u.clone())
        .filter(|u| u != "b-25")
        .collect();
    assert_eq!(dedup_keys(&delivered), expect);
    let notif: HashMap<_, _> = want.iter().cloned().collect();
    for g in &delivered {
        assert_eq!(g.body, notif[&g.key], "byte-exact body");
        assert_eq!(g.headers["content-type"], "application/json");
        assert_eq!(g.headers["authorization"], "Bearer s3cret-token");
        assert_eq!(g.headers["ringhook-received-at"].len(), 24);
    }
    let dead = std::fs::read_to_string(dir.path().join("events.log.dead-letter")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0]["record"]["invalidJson"], "not json");
    assert_eq!(dead[1]["record"]["notification"]["uuid"], "b-25");
    assert_eq!(dead[1]["status"], 400);
    assert!(dead[1]["time"].as_str().unwrap().ends_with('Z'));
    let len = std::fs::metadata(&log).unwrap().len();
    assert_eq!(cursor_offset(&cursor), Some(len));
    // The last stdout line is the status.
    let stdout = String::from_utf8(out.stdout).unwrap();
    let status: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(status["ship"]["delivered"], 39);
    assert_eq!(status["ship"]["deadLettered"], 2);
    assert_eq!(status["ship"]["lagEvents"], 0);
}

#[test]
fn follows_appends_and_a_rotation_then_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let mut want = append(&log, "r", 0..5);
    let sink = HttpSink::start(|_, _| Act::Answer(204, None));
    let mut child = ship(
        dir.path(),
        &["--log-file", "events.log", "--to", &sink.url],
        &[],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    sink.wait_delivered(5);
    // A torn tail is not shipped until its newline arrives.
    let (l, n) = line("r-5", 5);
    let (head, tail) = l.split_at(40);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(head.as_bytes())
        .unwrap();
    // logrotate: rename; the writer still appends to the old file until it reopens.
    std::fs::rename(&log, dir.path().join("events.log.1")).unwrap();
    std::fs::write(&log, "").unwrap();
    {
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("events.log.1"))
            .unwrap();
        old.write_all(tail.as_bytes()).unwrap();
    }
    want.push(("r-5".into(), n));
    want.extend(append(&dir.path().join("events.log.1"), "r", 6..8));
    sink.wait_delivered(8);
    // The writer reopened: new lines go to the new file.
    want.extend(append(&log, "r", 8..12));
    sink.wait_delivered(12);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let out = wait_output_child(&mut child);
    assert!(out.contains("rotated"), "{out}");
    let keys: Vec<String> = want.iter().map(|(u, _)| u.clone()).collect();
    assert_eq!(dedup_keys(&sink.delivered()), keys);

    // Restart: nothing again, then exactly the new records.
    let before = sink.delivered().len();
    let new = append(&log, "r", 12..15);
    let out = run(ship(
        dir.path(),
        &["--log-file", "events.log", "--to", &sink.url, "--once"],
        &[],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let after: Vec<String> = sink.delivered()[before..]
        .iter()
        .map(|g| g.key.clone())
        .collect();
    assert_eq!(
        after,
        new.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>()
    );

    // --from a uuid replays from it; --dry-run says what would go, sends nothing.
    let out = run(ship(
        dir.path(),
        &[
            "--log-file",
            "events.log",
            "--to",
            &sink.url,
            "--dry-run",
            "--from",
            "r-13",
        ],
        &[],
    ));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.starts_with("send r-13 to http://"), "{text}");
    assert_eq!(sink.delivered().len(), before + 3);
}

fn wait_output_child(child: &mut Child) -> String {
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ship did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

#[test]
fn a_cursor_that_matches_no_file_is_an_error_not_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    append(&log, "m", 0..3);
    let sink = HttpSink::start(|_, _| Act::Answer(200, None));
    let args = ["--log-file", "events.log", "--to", &sink.url, "--once"];
    assert!(run(ship(dir.path(), &args, &[])).status.success());
    assert_eq!(sink.delivered().len(), 3);
    // Another log at the path (not a rotation): the cursor names a file that is gone.
    std::fs::remove_file(&log).unwrap();
    append(&log, "other", 0..5);
    let out = run(ship(dir.path(), &args, &[]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--from"), "{}", stderr(&out));
    assert_eq!(sink.delivered().len(), 3, "nothing replayed");
    // --from start is the way out.
    let mut from = args.to_vec();
    from.extend(["--from", "start"]);
    assert!(run(ship(dir.path(), &from, &[])).status.success());
    assert_eq!(sink.delivered().len(), 8);
}

#[test]
fn bad_settings_are_usage_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.log"), "").unwrap();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--to", "http://x/"], &[], "--log-file"),
        (&["--log-file", "events.log"], &[], "--to"),
        (
            &["--log-file", "events.log", "--to", "ftp://x/"],
            &[],
            "--to",
        ),
        (
            &["--log-file", "events.log", "--to", "https://u:p@x/"],
            &[],
            "credentials",
        ),
        (
            &["--log-file", "events.log", "--to", "nats://u:p@x:4222/s"],
            &[],
            "credentials",
        ),
        (
            &["--log-file", "events.log", "--to", "nats://x:4222/a.*"],
            &[],
            "subject",
        ),
        (
            &["--log-file", "events.log", "--to", "nats://x:4222/"],
            &[],
            "subject",
        ),
        (
            &["--log-file", "events.log", "--to", "nats://x/s"],
            &[],
            "HOST:PORT",
        ),
        (
            &[
                "--log-file",
                "events.log",
                "--to",
                "http://x/",
                "--from",
                "2026-13-45T00:00:00Z",
            ],
            &[],
            "--from",
        ),
        (
            &["--to", "http://x/"],
            &[("RINGHOOK_LOG_FILE", "-")],
            "RINGHOOK_LOG_FILE",
        ),
        (
            &["--log-file", "events.log", "--to", "nats://x:1/s"],
            &[("NATS_USER", "u")],
            "NATS_PASSWORD",
        ),
        (
            &["--log-file", "events.log", "--to", "nats://x:1/s"],
            &[("NATS_TOKEN_FILE", "missing")],
            "NATS_TOKEN_FILE missing: No such file",
        ),
        (
            &[
                "--log-file",
                "events.log",
                "--to",
                "nats://x:1/s",
                "--window",
                "0",
            ],
            &[],
            "--window",
        ),
    ];
    for (args, env, needle) in cases {
        let out = run(ship(dir.path(), args, env));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains(":p@"), "{}", stderr(&out));
    }
}

#[test]
fn a_token_file_is_the_bearer_token_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let want = append(&log, "f", 0..3);
    let sink = HttpSink::start(|_, _: &str| Act::Answer(200, None));
    std::fs::write(dir.path().join("token"), "file-token-7q\n").unwrap();
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    let args = ["--log-file", "events.log", "--to", &sink.url, "--once"];
    let bad: &[(&[(&str, &str)], &str)] = &[
        (
            &[("RINGHOOK_SHIP_TOKEN_FILE", "/dev/zero")],
            "RINGHOOK_SHIP_TOKEN_FILE /dev/zero: not a regular file",
        ),
        (
            &[("RINGHOOK_SHIP_TOKEN_FILE", "empty")],
            "RINGHOOK_SHIP_TOKEN_FILE empty: empty",
        ),
        (
            &[("RINGHOOK_SHIP_TOKEN_FILE", "missing")],
            "RINGHOOK_SHIP_TOKEN_FILE missing: No such file",
        ),
        (
            &[
                ("RINGHOOK_SHIP_TOKEN", "env-token-3z"),
                ("RINGHOOK_SHIP_TOKEN_FILE", "token"),
            ],
            "both set",
        ),
    ];
    for (env, needle) in bad {
        let out = run(ship(dir.path(), &args, env));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(needle), "{env:?}: {err}");
        assert!(!err.contains("token-"), "a secret shown: {err}");
    }
    assert!(sink.delivered().is_empty());

    // NATS's settings are not an HTTP sink's business, even broken ones (a shared env file).
    let out = run(ship(
        dir.path(),
        &args,
        &[
            ("RINGHOOK_SHIP_TOKEN_FILE", "token"),
            ("NATS_TOKEN_FILE", "missing"),
            ("NATS_USER", "only-a-user"),
        ],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("file-token-7q"), "{}", stderr(&out));
    let delivered = sink.delivered();
    assert_eq!(
        dedup_keys(&delivered),
        want.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>()
    );
    for g in &delivered {
        assert_eq!(g.headers["authorization"], "Bearer file-token-7q");
    }
}

#[test]
fn an_https_sink_is_trusted_through_the_ca_file_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let want = append(&log, "h", 0..4);
    let ca = crate::support::TestCa::new();
    std::fs::write(dir.path().join("ca.pem"), &ca.ca_pem).unwrap();
    let sink = HttpSink::start_tls(|_, _: &str| Act::Answer(200, None), ca.server_config());
    assert!(sink.url.starts_with("https://127.0.0.1:"), "{}", sink.url);
    let args = ["--log-file", "events.log", "--to", &sink.url, "--once"];

    // The built-in roots do not know the test CA: failing, with the reason; nothing delivered.
    let (lines, status) = until_failing(dir.path(), &args, &[]);
    let l = lines.last().unwrap();
    assert!(l.contains("TLS"), "{l}");
    assert!(status.success());
    assert!(sink.delivered().is_empty());

    // With RINGHOOK_CA_FILE: every record, byte for byte, over TLS.
    let out = run(ship(dir.path(), &args, &[("RINGHOOK_CA_FILE", "ca.pem")]));
    assert!(out.status.success(), "{}", stderr(&out));
    let delivered = sink.delivered();
    assert_eq!(
        delivered
            .iter()
            .map(|g| (g.key.clone(), g.body.clone()))
            .collect::<Vec<_>>(),
        want
    );
}

#[test]
fn serve_ship_runs_the_shipper_beside_the_loop_and_restarts_it() {
    use crate::support::Serve;
    let sink = HttpSink::start(|_, key: &str| {
        if key.starts_with("stall") {
            Act::Stall(Duration::from_secs(30))
        } else {
            Act::Answer(200, None)
        }
    });
    let token = "serve-ship-token";
    let mut s = Serve::new()
        .env("WEBHOOK_VERIFICATION_TOKEN", token)
        .log_file()
        .env("RINGHOOK_SHIP_STATUS_EVERY", "50ms")
        .args(["--ship", &sink.url, "--metrics-path", "/metrics"])
        .start();
    let post = |s: &crate::support::Running, uuid: &str| {
        let (_, n) = line(uuid, 1);
        s.exchange(&s.notification_request(n.as_bytes(), Some(token)))
            .status
    };
    for i in 0..5 {
        assert_eq!(post(&s, &format!("s-{i}")), 200);
    }
    sink.wait_delivered(5);
    // The shipper's status lines reach serve's /metrics.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = s.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body).unwrap();
        if text.contains("\nringhook_ship_delivered_total 5\n") {
            assert!(text.contains("\nringhook_ship_lag_events "), "{text}");
            assert!(
                text.contains("\nringhook_ship_dead_lettered_total 0\n"),
                "{text}"
            );
            crate::metrics::promtool_accepts(text.as_bytes());
            break;
        }
        assert!(Instant::now() < deadline, "no ship families: {text}");
        // Status lines come every 50 ms: poll the scrape at that pace.
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL the shipper: serve starts another, which resumes from the cursor.
    let started = s.wait_for("shipper started (pid ");
    let pid = started.split("(pid ").nth(1).unwrap().trim_end_matches(')');
    assert!(
        Command::new("kill")
            .args(["-KILL", pid])
            .status()
            .unwrap()
            .success()
    );
    s.wait_for("starting the shipper again");
    for i in 5..8 {
        assert_eq!(post(&s, &format!("s-{i}")), 200);
    }
    // At least once: the killed shipper's unconfirmed tail may come again, in order.
    let keys: Vec<String> = (0..8).map(|i| format!("s-{i}")).collect();
    let first_seen = || {
        let mut seen = Vec::new();
        for g in sink.delivered() {
            if !seen.contains(&g.key) {
                seen.push(g.key);
            }
        }
        seen
    };
    let deadline = Instant::now() + PATIENCE;
    while first_seen().len() < 8 {
        assert!(
            Instant::now() < deadline,
            "not all delivered: {:?}",
            first_seen()
        );
        let _ = sink.events.recv_timeout(Duration::from_millis(100));
    }
    assert_eq!(first_seen(), keys);
    // A sink that never answers does not hold up the receiver.
    for i in 0..3 {
        assert_eq!(post(&s, &format!("stall-{i}")), 200);
    }
    assert_eq!(post(&s, "after-stall"), 200);
    assert!(s.stop().success());
    assert!(s.stderr().contains("--ship"), "{}", s.stderr());
}

/// Appends the log line of a notification whose uuid is `uuid_json` (JSON string contents, so
/// `\r\n` or `\u001b` are written escaped, as a sender would).
fn append_raw(path: &Path, uuid_json: &str, i: usize) {
    let (l, _) = line(uuid_json, i);
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(l.as_bytes())
        .unwrap();
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_key_that_cannot_be_a_header_is_dead_lettered_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let mut want = append(&log, "ok", 0..2);
    // Anyone with the verification token can send these: JSON allows any character in a uuid.
    let forged = r"esc\u001b[31mred\r\n2026-01-01T00:00:00.000Z ERROR forged";
    for (i, uuid) in [r"crlf\r\nX-Injected: yes", forged, r"caf\u00e9"]
        .iter()
        .enumerate()
    {
        append_raw(&log, uuid, 10 + i);
    }
    want.extend(append(&log, "ok", 2..4));
    let sink = HttpSink::start(|_, _: &str| Act::Answer(200, None));
    let args = ["--log-file", "events.log", "--to", &sink.url, "--once"];

    // --dry-run says what would happen, the uuid escaped: no escape sequence, no forged line.
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let out = run(ship(dir.path(), &dry, &[]));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(['\x1b', '\r']), "{text:?}");
    assert!(
        text.contains(r"dead-letter esc\u{1b}[31mred\r\n2026-01-01T00:00:00.000Z ERROR forged"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 7, "{text}");

    let out = run(ship(dir.path(), &args, &[]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // Only the good records reached the sink, and no header was injected.
    assert_eq!(
        dedup_keys(&sink.delivered()),
        want.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>()
    );
    for g in sink.got.lock().unwrap().iter() {
        assert!(!g.headers.contains_key("x-injected"), "{g:?}");
    }
    // The operational log shows the uuid escaped: no colours, no forged ERROR line.
    assert!(!err.contains(['\x1b', '\r']), "{err:?}");
    assert!(
        !err.lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00.000Z ERROR")),
        "{err}"
    );
    assert!(
        err.contains(r"dead-lettered esc\u{1b}[31mred\r\n2026-01-01T00:00:00.000Z ERROR forged"),
        "{err}"
    );
    // The dead-letter file holds the whole notifications, for the owner's eyes only.
    let dl = dir.path().join("events.log.dead-letter");
    let dead: Vec<serde_json::Value> = std::fs::read_to_string(&dl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!(
        dead[0]["record"]["notification"]["uuid"],
        "crlf\r\nX-Injected: yes"
    );
    assert_eq!(dead[2]["record"]["notification"]["uuid"], "caf\u{e9}");
    for d in &dead {
        assert!(d["reason"].as_str().unwrap().contains("header"), "{d}");
    }
    assert_eq!(mode(&dl), 0o600);
    // One left wider by an older version or a hand is narrowed before more is written to it.
    std::fs::set_permissions(&dl, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    append_raw(&log, r"tab\there", 20);
    let out = run(ship(dir.path(), &args, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&dl), 0o600);
    assert_eq!(std::fs::read_to_string(&dl).unwrap().lines().count(), 4);
}

#[test]
fn retry_after_zero_a_past_date_or_garbage_never_remove_the_backoff() {
    // Each sink is overloaded for good; each shipper must keep to its backoff (100 ms doubling),
    // a handful of POSTs in 2 s (the bug: tens of thousands).
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    append(&log, "ra", 0..1);
    let mut runs = Vec::new();
    for (i, after) in ["0", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"]
        .into_iter()
        .enumerate()
    {
        let sink = HttpSink::start(move |_, _: &str| Act::Answer(503, Some(after)));
        let cursor = format!("c{i}");
        let dead = format!("d{i}");
        let child = ship(
            dir.path(),
            &[
                "--log-file",
                "events.log",
                "--to",
                &sink.url,
                "--cursor",
                &cursor,
                "--dead-letter",
                &dead,
            ],
            &[],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        runs.push((after, sink, child));
    }
    for (_, sink, _) in &runs {
        sink.events.recv_timeout(PATIENCE).expect("a first POST");
    }
    // The window the POSTs are counted in (a bound on a count, not a timing).
    std::thread::sleep(Duration::from_secs(2));
    for (after, sink, mut child) in runs {
        let n = sink.got.lock().unwrap().len();
        let _ = child.kill();
        let _ = child.wait();
        assert!(n <= 10, "Retry-After: {after}: {n} POSTs in 2 s");
    }
}

#[test]
fn one_shipper_per_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    append(&log, "one", 0..3);
    let sink = HttpSink::start(|_, _: &str| Act::Answer(200, None));
    let args = ["--log-file", "events.log", "--to", &sink.url];
    let mut first = ship(dir.path(), &args, &[])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sink.wait_delivered(3);
    // A second shipper on the same cursor says so and leaves it alone.
    let mut once = args.to_vec();
    once.push("--once");
    let out = run(ship(dir.path(), &once, &[]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("events.log.cursor"), "{err}");
    assert!(err.contains("another ringhook ship"), "{err}");
    assert_eq!(sink.got.lock().unwrap().len(), 3);
    // Once the first has gone, the next one takes over where it stopped.
    let _ = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    wait_output_child(&mut first);
    append(&log, "one", 3..4);
    let out = run(ship(dir.path(), &once, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sink.delivered().len(), 4);
}

#[test]
fn a_shipper_dies_with_its_serve() {
    use crate::support::{Serve, exited};
    let sink = HttpSink::start(|_, _: &str| Act::Answer(200, None));
    let mut s = Serve::new()
        .env("WEBHOOK_VERIFICATION_TOKEN", "t")
        .log_file()
        .args(["--ship", &sink.url])
        .start();
    let started = s.wait_for("shipper started (pid ");
    let pid: u32 = started
        .split("(pid ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .parse()
        .unwrap();
    s.signal("KILL");
    // Not `wait_exit`: the shipper shares serve's stderr and would keep it open.
    s.child.wait().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !exited(pid) {
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the shipper (pid {pid}) outlived its SIGKILLed serve");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_lag_is_counted_without_reading_the_backlog_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    // A backlog of ~20 MB and a slow sink: it stays a backlog for the whole test.
    {
        let mut text = String::new();
        for i in 0..60_000 {
            text.push_str(&line(&format!("lag-{i}"), i).0);
        }
        std::fs::write(&log, text).unwrap();
    }
    let size = std::fs::metadata(&log).unwrap().len();
    let sink = HttpSink::start(|_, _: &str| {
        std::thread::sleep(Duration::from_millis(20));
        Act::Answer(200, None)
    });
    let mut child = ship(
        dir.path(),
        &["--log-file", "events.log", "--to", &sink.url],
        &[("RINGHOOK_SHIP_STATUS_EVERY", "50ms")],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let pid = child.id();
    let (tx, status) = channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let next = || status.recv_timeout(PATIENCE).expect("a status line");
    next();
    let before = crate::support::read_chars(pid);
    let mut last = String::new();
    for _ in 0..10 {
        last = next();
        // The age of the oldest record not shipped (received days ago), whether or not one is
        // in flight at the moment the line is written.
        let v: serde_json::Value = serde_json::from_str(&last).unwrap();
        let age = v["ship"]["lagSeconds"].as_f64().unwrap();
        assert!(age > 3600.0, "{last}");
    }
    let read = crate::support::read_chars(pid) - before;
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    let lag = v["ship"]["lagEvents"].as_u64().unwrap();
    assert!((59_000..=60_000).contains(&lag), "{last}");
    assert!(
        read < size / 2,
        "{read} bytes read over 10 status lines with a backlog of {size} bytes"
    );
}

#[test]
fn a_sink_that_refuses_every_record_is_waited_for_not_emptied_into_dead_letters() {
    // An expired token (401) or a wrong URL (404) answers every record the same: the backlog
    // must wait for the operator, not go to the dead-letter file at full speed.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let sent = append(&log, "auth", 0..5);
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fixed.clone();
    let sink = HttpSink::start(move |n, _: &str| {
        if f.load(std::sync::atomic::Ordering::SeqCst) {
            Act::Answer(200, None)
        } else if n % 2 == 0 {
            Act::Answer(401, None)
        } else {
            Act::Answer(404, None)
        }
    });
    /// Killed however the test ends, so a failing run leaves no shipper behind.
    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Killed(
        ship(
            dir.path(),
            &["--log-file", "events.log", "--to", &sink.url],
            &[],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    // Refused twice (a 401 and a 404), then the operator fixes the token.
    for _ in 0..2 {
        sink.events.recv_timeout(PATIENCE).expect("a refused POST");
    }
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    sink.wait_delivered(sent.len());
    let keys: Vec<String> = sink.delivered().into_iter().map(|g| g.key).collect();
    let want: Vec<String> = sent.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        keys, want,
        "every record, in order, once the sink takes them"
    );
    let dead = dir.path().join("events.log.dead-letter");
    assert!(
        std::fs::read_to_string(&dead)
            .unwrap_or_default()
            .is_empty(),
        "nothing dead-lettered for the sink's own trouble"
    );
}

#[test]
fn a_sink_calling_every_small_record_too_large_is_waited_for() {
    // 413 for a body under 1 KiB: the sink's (or a proxy's) body limit is set below any
    // notification's size, and every record would follow into the dead-letter file.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let sent = append(&log, "small", 0..3);
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fixed.clone();
    let sink = HttpSink::start(move |_, _: &str| {
        if f.load(std::sync::atomic::Ordering::SeqCst) {
            Act::Answer(200, None)
        } else {
            Act::Answer(413, None)
        }
    });
    let mut child = ship(
        dir.path(),
        &["--log-file", "events.log", "--to", &sink.url],
        &[],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines() {
            let Ok(l) = l else { break };
            let _ = tx.send(l);
        }
    });
    let mut wait_for = |needle: &str| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = lines.recv_timeout(left);
            match l {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!("no {needle:?} within {PATIENCE:?}");
                }
            }
        }
    };
    let failing = wait_for("failing since");
    assert!(failing.contains("413"), "{failing}");
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    sink.wait_delivered(sent.len());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let keys: Vec<String> = sink.delivered().into_iter().map(|g| g.key).collect();
    let want: Vec<String> = sent.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, want);
    assert!(
        !dir.path().join("events.log.dead-letter").exists(),
        "nothing dead-lettered for the sink's own limit"
    );
}

/// A line of tens of MB (a hostile or broken disk: no log line is that long) is read in one
/// pass, not rescanned from its start after each 64 KiB read (quadratic: a 32 MB line cost
/// about a minute of CPU here, debug build). Said at once: dead-lettered, and the record
/// after it sent.
#[test]
fn a_huge_line_is_read_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let mut big = vec![b'x'; 32 << 20];
    big.push(b'\n');
    std::fs::write(&log, &big).unwrap();
    drop(big);
    append(&log, "after", 0..1);
    let out = run(ship(
        dir.path(),
        &[
            "--log-file",
            "events.log",
            "--to",
            "http://127.0.0.1:9/x",
            "--from",
            "start",
            "--dry-run",
        ],
        &[],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("dead-letter"), "{text}");
    assert!(lines[1].contains("after-0"), "{text}");
}

/// A sink failing with a long `Retry-After` (an hour, the longest honoured): ship waits as asked,
/// and its status line still comes every interval, saying it is failing, with the lag. It was
/// written only between attempts: the last one, before the failure, said `"failing":false`,
/// and serve's /metrics showed a healthy shipper for the hour.
#[test]
fn the_status_keeps_coming_while_ship_waits_out_a_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let sent = append(&log, "wait", 0..3);
    let sink = HttpSink::start(|_, _: &str| Act::Answer(503, Some("3600")));
    let mut child = ship(
        dir.path(),
        &["--log-file", "events.log", "--to", &sink.url],
        &[("RINGHOOK_SHIP_STATUS_EVERY", "50ms")],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, status) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    sink.events.recv_timeout(PATIENCE).expect("a refused POST");
    let deadline = Instant::now() + PATIENCE;
    let mut last = String::new();
    let seen = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match status.recv_timeout(left) {
            Ok(l) => {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                if v["ship"]["failing"] == true {
                    break v;
                }
                last = l;
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no status saying failing within {PATIENCE:?}; the last: {last}");
            }
        }
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert_eq!(seen["ship"]["lagEvents"], sent.len() as u64, "{seen}");
    assert_eq!(
        sink.got.lock().unwrap().len(),
        1,
        "one attempt: the wait is kept"
    );
}
