//! The shipped artifacts: static musl release binaries, run the way users deploy them.
//!
//! Both tests build with `scripts/build-static.sh --no-install` (into `target/static`, away from
//! the ordinary builds), so the script users run is the one under test.
//!
//! - x86_64: copied alone into an empty directory and run there with an empty environment; as
//!   root, `chroot`ed into that directory as user 65534 and as PID 1 of a new PID namespace —
//!   the closest thing to `FROM scratch` + `USER` without a container engine. It must be
//!   statically linked, within the 2 MiB budget, and complete a handshake and log a notification.
//! - aarch64 (Raspberry Pi): run under `qemu-aarch64-static`; handshake, notification logged.
//!
//! A missing prerequisite (Rust target, cross compiler, qemu) skips loudly on a developer's
//! machine and fails under CI (`CI=true`), where `scripts/setup.sh` must have installed it.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::support::{PATIENCE, Response, read_response};

const TOKEN: &str = "static-token-0123456789";
/// The issue's budget for the x86_64 binary.
const BUDGET: u64 = 2 << 20;
/// `nobody`: an unprivileged uid/gid with no files of its own, as the Dockerfile's `USER`.
const NOBODY: u32 = 65534;

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

#[test]
fn x86_64_binary_is_static_and_serves_from_an_empty_root() {
    let Some(bin) = build("x86_64-unknown-linux-musl") else {
        return;
    };
    let bytes = std::fs::read(&bin).unwrap();
    assert_static(&bytes, EM_X86_64);
    assert!(
        bytes.len() as u64 <= BUDGET,
        "{} is {} bytes, over the 2 MiB budget",
        bin.display(),
        bytes.len()
    );

    // The whole filesystem the binary will see: itself, a token file, a writable data dir.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::copy(&bin, r.join("ringhook")).unwrap();
    std::fs::write(r.join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::create_dir(r.join("data")).unwrap();

    let as_root = is_root();
    let chroot = which("chroot").filter(|_| as_root);
    let unshare = which("unshare");
    let mut cmd;
    let inside: PathBuf;
    if let Some(chroot) = chroot {
        // The chroot's "/" must be traversable by the unprivileged user; the data dir writable.
        set_mode(r, 0o755);
        std::os::unix::fs::chown(r.join("data"), Some(NOBODY), Some(NOBODY)).unwrap();
        let pid_ns = unshare.filter(|u| {
            Command::new(u)
                .args(["--pid", "--fork", "true"])
                .status()
                .is_ok_and(|s| s.success())
        });
        if !prerequisite(
            pid_ns.is_some(),
            "`unshare --pid --fork` (util-linux) to run ringhook as PID 1",
        ) {
            return;
        }
        cmd = Command::new(pid_ns.unwrap());
        cmd.args(["--pid", "--fork"])
            .arg(chroot)
            .arg(format!("--userspec={NOBODY}:{NOBODY}"))
            .arg(r)
            .arg("/ringhook");
        inside = PathBuf::from("/");
    } else {
        eprintln!(
            "NOTE: not root (or no chroot): running with an empty environment in an empty \
             directory, without chroot, user switch or PID namespace"
        );
        cmd = Command::new(r.join("ringhook"));
        inside = r.to_path_buf();
    }
    cmd.env_clear().current_dir(r).args([
        "serve".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--log-file".as_ref(),
        inside.join("data/events.log").as_os_str(),
        "--verification-token-file".as_ref(),
        inside.join("token").as_os_str(),
    ]);
    let mut s = Started::spawn(cmd);

    let h = s.handshake("scratch-1");
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.header("validation-token"), Some("scratch-1"));
    assert_eq!(h.header("content-type"), Some("application/json"));

    let event =
        br#"{"uuid":"scratch-event-1","event":"/restapi/v1.0/account/~/extension/~/presence"}"#;
    assert_eq!(s.notify(event, None).status, 403, "the token file was read");
    assert_eq!(s.notify(event, Some(TOKEN)).status, 200);
    let log = std::fs::read_to_string(r.join("data/events.log")).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains(r#""uuid":"scratch-event-1""#), "{log}");

    // As root this is PID 1 of its namespace: the kernel drops signals PID 1 has no handler for,
    // so a clean exit here is the container's `docker stop` working without an init.
    let st = s.stop();
    assert_eq!(st.code(), Some(0), "{}", s.stderr());
    assert!(s.stderr().contains("stopped: "), "{}", s.stderr());
}

#[test]
fn aarch64_binary_serves_under_qemu() {
    let Some(bin) = build("aarch64-unknown-linux-musl") else {
        return;
    };
    let bytes = std::fs::read(&bin).unwrap();
    assert_static(&bytes, EM_AARCH64);
    eprintln!("aarch64 binary: {} bytes", bytes.len());

    let qemu = which("qemu-aarch64-static");
    if !prerequisite(
        qemu.is_some(),
        "qemu-aarch64-static (Debian qemu-user-static)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let mut cmd = Command::new(qemu.unwrap());
    cmd.env_clear()
        .env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
        .current_dir(dir.path())
        .arg(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-file"])
        .arg(&log);
    let mut s = Started::spawn(cmd);

    let h = s.handshake("pi-1");
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.header("validation-token"), Some("pi-1"));
    assert_eq!(h.header("content-type"), Some("application/json"));

    let event = br#"{"uuid":"pi-event-1","event":"/restapi/v1.0/account/~/telephony/sessions","body":{"n":1}}"#;
    assert_eq!(s.notify(event, Some("wrong")).status, 403);
    assert_eq!(s.notify(event, Some(TOKEN)).status, 200);
    // 200 is sent only after the line is on disk (fdatasync), so it is there now.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(r#""notification":{"uuid":"pi-event-1","#),
        "{text}"
    );

    let st = s.stop();
    assert_eq!(st.code(), Some(0), "{}", s.stderr());
}

#[test]
fn the_static_check_rejects_a_dynamically_linked_binary() {
    // The ordinary host build links glibc dynamically: the check must catch exactly that.
    let host = std::fs::read(env!("CARGO_BIN_EXE_ringhook")).unwrap();
    let machine = u16::from_le_bytes([host[18], host[19]]);
    let caught = std::panic::catch_unwind(|| assert_static(&host, machine));
    let msg = caught.expect_err("a glibc build passed as static");
    let msg = msg.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(msg.contains("PT_INTERP"), "{msg}");
}

/// Builds `target` with the release script; `None` when a prerequisite is missing (skip).
fn build(target: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("scripts/build-static.sh"))
        .args(["--no-install", target])
        .env("CARGO_TARGET_DIR", root.join("target/static"))
        .stdin(Stdio::null())
        .output()
        .expect("run bash scripts/build-static.sh");
    let report = format!(
        "--- build-static.sh {target}: {}\n{}{}---",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exit 3: the script names a missing target or compiler (it never installs in tests).
    if out.status.code() == Some(3) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        prerequisite(false, stderr.lines().last().unwrap_or_default());
        return None;
    }
    assert!(out.status.success(), "{report}");
    // The size line the script prints is part of its interface.
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(target))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no size line for {target}\n{report}"));
    eprintln!("{line}");
    let bin = root
        .join("target/static")
        .join(target)
        .join("release/ringhook");
    let bytes = std::fs::metadata(&bin).unwrap().len();
    assert!(
        line.contains(&format!(" {bytes} bytes")),
        "{line} vs {bytes}"
    );
    Some(bin)
}

/// True when `ok`; otherwise skips loudly (false) on a developer's machine and fails under CI.
fn prerequisite(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and a prerequisite is missing: {what} (scripts/setup.sh must install it)"
    );
    eprintln!(
        "\n*** SKIPPED, prerequisite missing: {what}; run `bash scripts/setup.sh` as root ***\n"
    );
    false
}

/// Checks a 64-bit little-endian ELF for `machine` with no dynamic loader and no shared
/// libraries: no `PT_INTERP` segment and no `DT_NEEDED` entry (a static-pie may keep a
/// `PT_DYNAMIC` for its own relocations).
fn assert_static(elf: &[u8], machine: u16) {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(
        &elf[..6],
        b"\x7fELF\x02\x01",
        "not a 64-bit little-endian ELF"
    );
    assert_eq!(u16_at(18), machine, "e_machine");
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54) as usize, u16_at(56) as usize);
    assert!(phnum > 0, "no program headers");
    for ph in (0..phnum).map(|i| phoff + i * phentsize) {
        match u32_at(ph) {
            3 => panic!("PT_INTERP present: the binary needs a dynamic loader"),
            2 => {
                let (off, size) = (u64_at(ph + 8), u64_at(ph + 32));
                for entry in (off..off + size).step_by(16) {
                    match u64_at(entry) {
                        0 => break,
                        1 => panic!("DT_NEEDED present: the binary needs a shared library"),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// A started `ringhook serve` (perhaps behind chroot/unshare/qemu) and its stderr.
struct Started {
    child: Child,
    addr: SocketAddr,
    path: String,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Started {
    /// Spawns `cmd` and waits for the "listening on http://ADDR/PATH" line.
    fn spawn(mut cmd: Command) -> Started {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let all2 = all.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut s = Started {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            path: String::new(),
            lines,
            stderr: all,
        };
        let line = s.wait_for("listening on http://");
        let url = line.split("listening on http://").nth(1).unwrap();
        let (host, path) = url.split_at(url.find('/').unwrap());
        s.addr = host.parse().unwrap();
        s.path = path.to_string();
        s
    }

    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("no stderr line with {needle:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("exited before printing {needle:?}")
                }
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    fn exchange(&self, raw: &[u8]) -> Response {
        let mut c = TcpStream::connect(self.addr).unwrap();
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        c.write_all(raw).unwrap();
        read_response(&mut c)
    }

    fn handshake(&self, token: &str) -> Response {
        self.exchange(
            format!(
                "POST {} HTTP/1.1\r\nHost: x\r\nValidation-Token: {token}\r\nContent-Length: 0\r\n\r\n",
                self.path
            )
            .as_bytes(),
        )
    }

    fn notify(&self, body: &[u8], token: Option<&str>) -> Response {
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.path,
            body.len()
        );
        if let Some(t) = token {
            req.push_str(&format!("Verification-Token: {t}\r\n"));
        }
        req.push_str("\r\n");
        let mut req = req.into_bytes();
        req.extend_from_slice(body);
        self.exchange(&req)
    }

    /// SIGTERM to ringhook itself (the spawned process, or its child when behind
    /// `unshare --fork`), then its exit status as the spawned process reports it.
    fn stop(&mut self) -> ExitStatus {
        let pid = child_of(self.child.id()).unwrap_or(self.child.id());
        let st = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -TERM {pid}");
        self.wait_for("stopped: ");
        self.child.wait().unwrap()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- stderr ---\n{}\n---", self.stderr());
        }
        if let Ok(None) = self.child.try_wait() {
            // Behind `unshare --fork`, ringhook is the grandchild: kill it first.
            if let Some(pid) = child_of(self.child.id()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The one child process of `pid`, found through /proc (`unshare --fork`'s child).
fn child_of(pid: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let n: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // Fields after the parenthesised command name: state, ppid, ...
        let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
        (ppid.parse::<u32>().ok()? == pid).then_some(n)
    })
}

/// `name` on PATH, as an absolute path (the children run with an empty environment).
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    // std has no geteuid without unsafe; /proc/self/status names it (Uid: real effective ...).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            Some(line.split_whitespace().nth(2)? == "0")
        })
        .unwrap_or(false)
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}
