//! Test harness: start the real binary, wait for its "listening" line, speak raw HTTP to it.
//!
//! No sleeps to wait for readiness: `Serve::start` reads the binary's stderr until the line that
//! says the socket accepts. On a failed assertion, `Running`'s `Drop` prints everything the
//! binary wrote to stderr.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "at once"; only hit when a test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringhook")
}

/// `ringhook` with an empty environment in `dir`, so no stray `.env` or variable leaks in.
pub fn ringhook(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env_clear().current_dir(dir);
    if let Some(path) = std::env::var_os("PATH") {
        c.env("PATH", path);
    }
    c
}

/// RingCentral's published samples, copied into the repository (`tests/data/README.md` says
/// where each came from).
pub fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A `serve` about to start.
pub struct Serve {
    cmd: Command,
    pub dir: tempfile::TempDir,
    stdout_piped: bool,
    tmpfs: Option<(PathBuf, &'static str)>,
    nofile: Option<u32>,
}

impl Serve {
    /// `ringhook serve --listen 127.0.0.1:0` in a fresh temporary directory.
    pub fn new() -> Serve {
        Serve::at("127.0.0.1:0")
    }

    /// `ringhook connect --listen 127.0.0.1:0 --health-path /health` in a fresh temporary
    /// directory (the listener serves only health and metrics).
    pub fn connect() -> Serve {
        let mut s = Serve::at("127.0.0.1:0");
        let dir = s.dir.path().to_path_buf();
        s.cmd = ringhook(&dir);
        s.cmd.args([
            "connect",
            "--listen",
            "127.0.0.1:0",
            "--health-path",
            "/health",
        ]);
        s
    }

    /// `ringhook serve --listen ADDR` in a fresh temporary directory.
    pub fn at(listen: &str) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = ringhook(dir.path());
        cmd.args(["serve", "--listen", listen]);
        Serve {
            cmd,
            dir,
            stdout_piped: false,
            tmpfs: None,
            nofile: None,
        }
    }

    /// Runs the binary with at most `n` open file descriptors (`ulimit -n`).
    pub fn max_fds(mut self, n: u32) -> Serve {
        self.nofile = Some(n);
        self
    }

    /// Replaces the command with `program args... <the command>`, same environment and directory.
    fn wrap(&mut self, program: &str, args: &[&std::ffi::OsStr]) {
        let mut wrapped = Command::new(program);
        wrapped
            .args(args)
            .arg(self.cmd.get_program())
            .args(self.cmd.get_args())
            .env_clear()
            .current_dir(self.dir.path());
        for (k, v) in self.cmd.get_envs() {
            if let Some(v) = v {
                wrapped.env(k, v);
            }
        }
        self.cmd = wrapped;
    }

    /// Runs the binary in its own mount namespace with a tmpfs of `size` (e.g. `64k`) mounted on
    /// `disk/` in the temporary directory: a disk that can be filled without filling the host's.
    /// Returns the disk's path as the binary sees it.
    pub fn tmpfs_disk(&mut self, size: &'static str) -> PathBuf {
        let disk = self.dir.path().join("disk");
        std::fs::create_dir_all(&disk).unwrap();
        self.tmpfs = Some((disk.clone(), size));
        disk
    }

    pub fn args<I, S>(mut self, args: I) -> Serve
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Serve {
        self.cmd.env(k, v);
        self
    }

    /// Logs events to `events.log` in the temporary directory.
    pub fn log_file(self) -> Serve {
        let path = self.dir.path().join("events.log");
        self.args(["--log-file".as_ref(), path.as_os_str()])
    }

    /// Keeps stdout readable (the stdout sink); otherwise it is discarded.
    pub fn capture_stdout(mut self) -> Serve {
        self.stdout_piped = true;
        self
    }

    /// Starts the binary and waits until it listens.
    pub fn start(mut self) -> Running {
        // Both wrappers exec in place, so the child's pid is ringhook's pid.
        if let Some(n) = self.nofile {
            let script = format!("ulimit -n {n} && exec \"$@\"");
            self.wrap("sh", &["-c".as_ref(), script.as_ref(), "sh".as_ref()]);
        }
        if let Some((disk, size)) = self.tmpfs.clone() {
            let script =
                format!("mount -t tmpfs -o size={size} ringhook-test \"$0\" && exec \"$@\"");
            self.wrap(
                "unshare",
                &[
                    "--mount".as_ref(),
                    "sh".as_ref(),
                    "-c".as_ref(),
                    script.as_ref(),
                    disk.as_os_str(),
                ],
            );
        }
        self.cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .stdout(if self.stdout_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = self.cmd.spawn().expect("spawn ringhook");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let all2 = all.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                all2.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep collecting for the failure dump.
                }
            }
        });
        let mut running = Running {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            lines: rx,
            stderr: all,
            dir: self.dir,
            path: "/webhook".into(),
            reader: Some(reader),
        };
        let line = running.wait_for("listening on http://");
        let url = line.split("listening on http://").nth(1).unwrap();
        let (host, path) = url.split_at(url.find('/').unwrap());
        running.addr = host.parse().unwrap();
        running.path = path.to_string();
        running
    }
}

/// A started `serve`.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub path: String,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Waits for a stderr line containing `needle` and returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no stderr line with {needle:?} within {PATIENCE:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("ringhook exited before printing {needle:?}")
                }
            }
        }
    }

    /// Waits until everything written to stderr so far satisfies `done` (order-free waits).
    pub fn wait_until(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(&self.stderr()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("not within {PATIENCE:?}: {what}"),
                Err(RecvTimeoutError::Disconnected) => {
                    assert!(done(&self.stderr()), "ringhook exited before: {what}");
                    return;
                }
            }
        }
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The event log file (with `log_file()`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("events.log")
    }

    /// The event log's lines.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Opens a connection with generous timeouts (a hang fails the test instead of blocking it).
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.set_write_timeout(Some(PATIENCE)).unwrap();
        s
    }

    /// Sends `raw` on a new connection and reads one response.
    pub fn exchange(&self, raw: &[u8]) -> Response {
        let mut s = self.connect();
        s.write_all(raw).unwrap();
        read_response(&mut s)
    }

    /// A handshake request, as RingCentral sends it.
    pub fn handshake_request(&self, token: &str) -> Vec<u8> {
        format!(
            "POST {} HTTP/1.1\r\nHost: example\r\nValidation-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n",
            self.path
        )
        .into_bytes()
    }

    /// A notification request with `body` and optional verification token.
    pub fn notification_request(&self, body: &[u8], token: Option<&str>) -> Vec<u8> {
        let mut r = format!(
            "POST {} HTTP/1.1\r\nHost: example\r\nContent-Type: application/json; charset=UTF-8\r\nUser-Agent: RingCentral-Webhook/8.3\r\nContent-Length: {}\r\n",
            self.path,
            body.len()
        );
        if let Some(t) = token {
            r.push_str(&format!("Verification-Token: {t}\r\n"));
        }
        r.push_str("\r\n");
        let mut r = r.into_bytes();
        r.extend_from_slice(body);
        r
    }

    /// Sends a signal (`TERM`, `HUP`, `KILL`) to the binary.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// A path inside the binary's own mount namespace (see `Serve::tmpfs_disk`).
    pub fn in_namespace(&self, path: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.child.id())).join(path.strip_prefix("/").unwrap())
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader take in the last lines before anyone looks at them.
                while self.reader.as_ref().is_some_and(|r| !r.is_finished()) {
                    assert!(Instant::now() < deadline, "stderr stayed open after exit");
                    std::thread::sleep(Duration::from_millis(2));
                }
                return st;
            }
            assert!(Instant::now() < deadline, "ringhook did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- ringhook stderr ---\n{}\n---", self.stderr());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The whole response as received.
    pub raw: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads exactly one response (head plus `content-length` body) from `s`.
pub fn read_response(s: &mut impl Read) -> Response {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap_or_else(|e| {
            panic!(
                "reading a response: {e}; got {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
        assert!(
            n == 1,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw.clone()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    raw.extend_from_slice(&body);
    Response {
        status,
        headers,
        body,
        raw,
    }
}

/// True when the peer closed `s` (read returns 0 or a reset) within the patience bound.
pub fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

/// Reads one response's status; `None` if the connection broke first.
pub fn read_status(c: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.get(9..12)?.parse().ok()?;
    let len: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).ok()?;
    Some(status)
}

/// A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost.
pub struct TestCa {
    /// The CA certificate (PEM), for `RINGHOOK_CA_FILE`.
    pub ca_pem: String,
    /// The server certificate (PEM) and its key (PEM), for servers configured by files.
    pub cert_pem: String,
    pub key_pem: String,
    /// The same certificate and key as DER, for a rustls server.
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ringhook test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        TestCa {
            ca_pem: ca.pem(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
            cert_der: leaf.der().to_vec(),
            key_der: leaf_key.serialize_der(),
        }
    }

    /// A rustls server configuration presenting the certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert_der.clone().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into()),
            )
            .unwrap();
        Arc::new(config)
    }
}

/// CPU time a process has used (user + system), in clock ticks (`/proc/PID/stat`), `None` once
/// it is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's name (in parentheses, which may hold spaces): state is field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Bytes a process has read through read(2) and friends so far (`rchar` of `/proc/PID/io`).
pub fn read_chars(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// True once `pid` has exited: gone, or a zombie nobody has collected yet.
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}
