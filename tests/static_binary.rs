//! The shipped artifacts: static musl release binaries, run the way users deploy them.
//!
//! Every test builds with `scripts/build-static.sh --no-install` (into `target/static`, away from
//! the ordinary builds), so the script users run is the one under test.
//!
//! - x86_64, as the scratch image runs it: statically linked (no `PT_INTERP`, no `DT_NEEDED`),
//!   within the 2 MiB budget, alone in an empty root with an empty environment — as root,
//!   `chroot`ed as user 65534 and PID 1 of a new PID namespace, the closest thing to
//!   `FROM scratch` + `USER` without a container engine. Handshake, notification logged, the
//!   image's HEALTHCHECK (`ringhook check`) healthy while up and failing once stopped, SIGTERM.
//! - x86_64, as the systemd units run it: `ExecStart=` of `scripts/systemd/ringhook.service`
//!   with `scripts/env.example` and a token file as its credentials; reload (SIGHUP) reopens;
//!   the register unit's command line reads both and asks only for the app's credentials.
//! - aarch64 (64-bit Raspberry Pi OS): under `qemu-aarch64-static`; handshake, notification logged.
//! - armv7 (32-bit Pi OS on a Pi 2/3/4) under `qemu-arm-static`, and armv6 (every 32-bit Pi OS,
//!   the binary of the armhf package) under `qemu-arm-static -cpu arm1176`, a Pi 1 / Zero core:
//!   any ARMv7 or Thumb-2 instruction on the path run (start-up, musl, ring's C and assembly,
//!   the handshake and a logged notification) is an illegal instruction there. Each within the
//!   2 MiB budget, static, for the right machine and float ABI.
//!
//! A missing prerequisite (Rust target, cross compiler, zig, qemu) skips loudly on a developer's
//! machine and fails under CI (`CI=true`), where `scripts/setup.sh` must have installed it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::support::{PATIENCE, Response, TestCa, read_response};

const TOKEN: &str = "static-token-0123456789";
/// The budget for every static binary.
const BUDGET: u64 = 2 << 20;
/// `nobody`: an unprivileged uid/gid with no files of its own, as the Dockerfile's `USER`.
const NOBODY: u32 = 65534;

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_ARM: u16 = 40;
/// ARM `e_flags`: EABI version 5, hard-float calling convention (VFP registers).
const EF_ARM_EABI5_HARD: u32 = 0x0500_0400;

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

    // The whole filesystem the binary sees, as in the scratch image: itself, a token file (a
    // Docker secret, say), a data directory only the unprivileged user can write.
    let Some(jail) = Jail::new() else {
        return;
    };
    jail.install(&bin, "/ringhook");
    jail.put("/token", format!("{TOKEN}\n").as_bytes());
    jail.private_dir("/data");
    let mut cmd = jail.command("/ringhook");
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-file"])
        .arg(jail.arg("/data/events.log"))
        .arg("--verification-token-file")
        .arg(jail.arg("/token"));
    let mut s = Started::spawn(cmd);

    let h = s.handshake("scratch-1");
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.header("validation-token"), Some("scratch-1"));
    assert_eq!(h.header("content-type"), Some("application/json"));

    let event =
        br#"{"uuid":"scratch-event-1","event":"/restapi/v1.0/account/~/extension/~/presence"}"#;
    assert_eq!(s.notify(event, None).status, 403, "the token file was read");
    assert_eq!(s.notify(event, Some(TOKEN)).status, 200);
    let log = std::fs::read_to_string(jail.path("/data/events.log")).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains(r#""uuid":"scratch-event-1""#), "{log}");

    // The image's HEALTHCHECK as Docker runs it: the same binary, root, user and environment.
    let url = format!("http://{}{}", s.addr, s.path);
    let healthcheck = || {
        jail.command("/ringhook")
            .args(["check", &url])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let hc = healthcheck();
    assert!(hc.status.success(), "{hc:?}");

    // As root this is PID 1 of its namespace: the kernel drops signals PID 1 has no handler for,
    // so a clean exit here is the container's `docker stop` working without an init.
    let st = s.stop();
    assert_eq!(st.code(), Some(0), "{}", s.stderr());
    let hc = healthcheck();
    assert!(!hc.status.success(), "healthy after stop: {hc:?}");
}

#[test]
fn the_systemd_units_run_with_env_example() {
    let Some(bin) = build("x86_64-unknown-linux-musl") else {
        return;
    };
    let Some(jail) = Jail::new() else {
        return;
    };
    // What systemd would set up for scripts/systemd/ringhook.service: the credentials (the
    // shipped env.example as ringhook.env, and the token file) and the state directory.
    let creds = "/run/credentials/ringhook.service";
    let env_example = std::fs::read(repo().join("scripts/env.example")).unwrap();
    jail.put(&format!("{creds}/env"), &env_example);
    jail.put(
        &format!("{creds}/verification-token"),
        format!("{TOKEN}\n").as_bytes(),
    );
    jail.private_dir("/var/lib/ringhook");

    let unit = |name: &str| {
        unit_exec(
            &format!("scripts/systemd/{name}"),
            &jail.arg(creds).to_string_lossy(),
            &jail.arg("/var/lib").to_string_lossy(),
        )
    };
    let (argv, env) = unit("ringhook.service");
    assert!(argv.iter().any(|a| a == "serve"), "{argv:?}");
    jail.install(&bin, &argv[0]);
    let mut cmd = jail.command(&argv[0]);
    cmd.envs(env);
    // The one change: a free port instead of env.example's 127.0.0.1:3000 (a flag wins).
    cmd.args(&argv[1..]).args(["--listen", "127.0.0.1:0"]);
    let mut s = Started::spawn(cmd);

    assert_eq!(s.handshake("unit-1").status, 200);
    let first = br#"{"uuid":"unit-event-1"}"#;
    assert_eq!(s.notify(first, Some("wrong")).status, 403);
    assert_eq!(s.notify(first, Some(TOKEN)).status, 200);
    let log = jail.path("/var/lib/ringhook/events.jsonl");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("unit-event-1")
    );

    // `systemctl reload` (ExecReload: kill -HUP) after logrotate moved the file away.
    std::fs::rename(&log, log.with_extension("jsonl.1")).unwrap();
    s.signal("HUP");
    s.wait_for("event log reopened");
    assert_eq!(
        s.notify(br#"{"uuid":"unit-event-2"}"#, Some(TOKEN)).status,
        200
    );
    let now = std::fs::read_to_string(&log).unwrap();
    assert!(
        now.contains("unit-event-2") && !now.contains("unit-event-1"),
        "{now}"
    );

    assert_eq!(s.stop().code(), Some(0), "{}", s.stderr());

    // The register unit with the same credentials: its flags parse, both files are read, and
    // all it lacks is what env.example leaves for the user to fill in (no platform here).
    let (argv, env) = unit("ringhook-register.service");
    assert!(argv.iter().any(|a| a == "register"), "{argv:?}");
    jail.private_dir("/var/lib/ringhook-register");
    let out = jail
        .command(&argv[0])
        .args(&argv[1..])
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("missing RC_CLIENT_ID, RC_CLIENT_SECRET, RC_JWT:"),
        "{stderr}"
    );
}

#[test]
fn aarch64_binary_serves_under_qemu() {
    serves_under_qemu(
        "aarch64-unknown-linux-musl",
        EM_AARCH64,
        "qemu-aarch64-static",
        None,
    );
}

#[test]
fn armv7_binary_serves_under_qemu() {
    serves_under_qemu(
        "armv7-unknown-linux-musleabihf",
        EM_ARM,
        "qemu-arm-static",
        None,
    );
}

/// The armhf package's binary on the Pi Zero's core: qemu's arm1176 raises SIGILL on any ARMv7
/// or Thumb-2 instruction, and qemu then dies of it, so the handshake never answers.
#[test]
fn armv6_binary_serves_on_a_pi_zero_core_under_qemu() {
    serves_under_qemu(
        "arm-unknown-linux-musleabihf",
        EM_ARM,
        "qemu-arm-static",
        Some("arm1176"),
    );
}

/// The release binary for `target`: static, for `machine`, within budget, then run under
/// `qemu` (on `cpu`): handshake, a notification refused without the token and logged with it,
/// then `check` over HTTPS.
fn serves_under_qemu(target: &str, machine: u16, qemu: &str, cpu: Option<&str>) {
    let Some(bin) = build(target) else {
        return;
    };
    let bytes = std::fs::read(&bin).unwrap();
    assert_static(&bytes, machine);
    if machine == EM_ARM {
        let flags = u32::from_le_bytes(bytes[36..40].try_into().unwrap());
        assert_eq!(
            flags, EF_ARM_EABI5_HARD,
            "e_flags {flags:#x}: not EABI5 hard-float"
        );
    }
    eprintln!("{target} binary: {} bytes", bytes.len());
    assert!(
        bytes.len() as u64 <= BUDGET,
        "{} is {} bytes, over the 2 MiB budget",
        bin.display(),
        bytes.len()
    );

    let qemu_path = which(qemu);
    if !prerequisite(
        qemu_path.is_some(),
        &format!("{qemu} (Debian qemu-user-static)"),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let mut cmd = Command::new(qemu_path.unwrap());
    cmd.env_clear()
        .env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
        .current_dir(dir.path());
    if let Some(cpu) = cpu {
        cmd.args(["-cpu", cpu]);
    }
    cmd.arg(&bin)
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

    // HTTPS on the same CPU: `check` against a TLS receiver, so ring's code runs here too.
    let ca = TestCa::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let url = tls_receiver(&ca);
    let mut cmd = Command::new(which(qemu).unwrap());
    cmd.env_clear()
        .env("RINGHOOK_CA_FILE", &ca_file)
        .current_dir(dir.path());
    if let Some(cpu) = cpu {
        cmd.args(["-cpu", cpu]);
    }
    let out = cmd
        .arg(&bin)
        .args(["check", "--timeout", "20s", &url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check {url} on {target}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A unit file's `ExecStart=` as arguments and its `Environment=` settings: continuation lines
/// joined, `${CREDENTIALS_DIRECTORY}` and `%S` (the state directory root) replaced. The units
/// use no quoting, so there is none to undo.
fn unit_exec(
    unit: &str,
    credentials: &str,
    state_root: &str,
) -> (Vec<String>, Vec<(String, String)>) {
    let text = std::fs::read_to_string(repo().join(unit)).unwrap();
    let text = text
        .replace("\\\n", " ")
        .replace("${CREDENTIALS_DIRECTORY}", credentials)
        .replace("%S", state_root);
    let argv = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("no ExecStart= in {unit}"))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let env = text
        .lines()
        .filter_map(|l| l.strip_prefix("Environment=")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (argv, env)
}

/// An empty directory standing in for a scratch image's root filesystem. As root, the binary is
/// `chroot`ed into it as user 65534 (`USER 65534`) and is PID 1 of a new PID namespace (as in a
/// container); otherwise it runs with the directory as its working directory. Either way the
/// environment is empty.
struct Jail {
    dir: tempfile::TempDir,
    /// `unshare` and `chroot`, when running as root.
    tools: Option<(PathBuf, PathBuf)>,
}

impl Jail {
    /// `None` (skip) when a prerequisite is missing outside CI.
    fn new() -> Option<Jail> {
        let dir = tempfile::tempdir().unwrap();
        let chroot = which("chroot").filter(|_| is_root());
        let Some(chroot) = chroot else {
            eprintln!(
                "NOTE: not root (or no chroot): running with an empty environment in an empty \
                 directory, without chroot, user switch or PID namespace"
            );
            return Some(Jail { dir, tools: None });
        };
        let unshare = which("unshare").filter(|u| {
            Command::new(u)
                .args(["--pid", "--fork", "true"])
                .status()
                .is_ok_and(|s| s.success())
        });
        if !prerequisite(
            unshare.is_some(),
            "`unshare --pid --fork` (util-linux) to run ringhook as PID 1",
        ) {
            return None;
        }
        // The root must be traversable by the unprivileged user.
        set_mode(dir.path(), 0o755);
        Some(Jail {
            dir,
            tools: Some((unshare.unwrap(), chroot)),
        })
    }

    /// Where the absolute path `inside` is on the host.
    fn path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    /// `inside` as the binary must be told it.
    fn arg(&self, inside: &str) -> PathBuf {
        match self.tools {
            Some(_) => PathBuf::from(inside),
            None => self.path(inside),
        }
    }

    fn mkdirs(&self, inside: &str) {
        let mut p = self.dir.path().to_path_buf();
        for part in Path::new(inside).iter().skip(1) {
            p.push(part);
            if !p.exists() {
                std::fs::create_dir(&p).unwrap();
                set_mode(&p, 0o755);
            }
        }
    }

    /// A file readable by everyone (as systemd's credentials are by the service's user).
    fn put(&self, inside: &str, contents: &[u8]) {
        self.mkdirs(Path::new(inside).parent().unwrap().to_str().unwrap());
        std::fs::write(self.path(inside), contents).unwrap();
        set_mode(&self.path(inside), 0o644);
    }

    fn install(&self, bin: &Path, inside: &str) {
        self.mkdirs(Path::new(inside).parent().unwrap().to_str().unwrap());
        std::fs::copy(bin, self.path(inside)).unwrap();
        set_mode(&self.path(inside), 0o755);
    }

    /// A directory only the unprivileged user can use (`StateDirectory=`, the image's /data).
    fn private_dir(&self, inside: &str) {
        self.mkdirs(inside);
        if self.tools.is_some() {
            std::os::unix::fs::chown(self.path(inside), Some(NOBODY), Some(NOBODY)).unwrap();
        }
        set_mode(&self.path(inside), 0o700);
    }

    /// The command running `program` (an absolute path inside) in the jail.
    fn command(&self, program: &str) -> Command {
        let mut cmd = match &self.tools {
            Some((unshare, chroot)) => {
                let mut c = Command::new(unshare);
                c.args(["--pid", "--fork"])
                    .arg(chroot)
                    .arg(format!("--userspec={NOBODY}:{NOBODY}"))
                    .arg(self.dir.path())
                    .arg(program);
                c
            }
            None => Command::new(self.path(program)),
        };
        cmd.env_clear().current_dir(self.dir.path());
        cmd
    }
}

/// Builds `target` with the release script; `None` when a prerequisite is missing (skip).
fn build(target: &str) -> Option<PathBuf> {
    let root = repo();
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
pub(crate) fn prerequisite(ok: bool, what: &str) -> bool {
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

/// Checks a little-endian ELF (32- or 64-bit) for `machine` with no dynamic loader and no
/// shared libraries: no `PT_INTERP` segment and no `DT_NEEDED` entry (a static-pie may keep a
/// `PT_DYNAMIC` for its own relocations).
fn assert_static(elf: &[u8], machine: u16) {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[5], 1, "not a little-endian ELF");
    let wide = match elf[4] {
        1 => false,
        2 => true,
        c => panic!("ELF class {c}"),
    };
    // A word (address, offset, size; a dynamic entry's tag) is 4 or 8 bytes.
    let word = |o: usize| if wide { u64_at(o) } else { u32_at(o) as usize };
    let w = if wide { 8 } else { 4 };
    assert_eq!(u16_at(18), machine, "e_machine");
    // e_phoff follows e_entry; e_phentsize and e_phnum follow e_flags and e_ehsize.
    let phoff = word(24 + w);
    let (phentsize, phnum) = (
        u16_at(24 + 3 * w + 6) as usize,
        u16_at(24 + 3 * w + 8) as usize,
    );
    assert!(phnum > 0, "no program headers");
    for ph in (0..phnum).map(|i| phoff + i * phentsize) {
        match u32_at(ph) {
            3 => panic!("PT_INTERP present: the binary needs a dynamic loader"),
            2 => {
                // p_offset and p_filesz: after p_flags on 64-bit, after p_type on 32-bit.
                let (off, size) = if wide {
                    (word(ph + 8), word(ph + 32))
                } else {
                    (word(ph + 4), word(ph + 16))
                };
                for entry in (off..off + size).step_by(2 * w) {
                    match word(entry) {
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

/// An HTTPS receiver on 127.0.0.1 that answers the webhook handshake as `serve` does (200, the
/// Validation-Token echoed, JSON), presenting a certificate `ca` signed. `ringhook check` against
/// it runs a whole TLS 1.3 exchange through ring on the emulated CPU: X25519, ECDSA P-256
/// verification, an AEAD and SHA-2, i.e. ring's C and assembly and their CPU-feature dispatch.
fn tls_receiver(ca: &TestCa) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/webhook", listener.local_addr().unwrap());
    let cfg = ca.server_config();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let Ok(server) = rustls::ServerConnection::new(cfg.clone()) else {
                return;
            };
            let _ = conn.set_read_timeout(Some(PATIENCE));
            let mut tls = rustls::StreamOwned::new(server, conn);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match tls.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head);
            let token = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("validation-token"))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default();
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\nValidation-Token: {token}\r\nContent-Type: application/json\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    url
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

    /// Sends `sig` to ringhook itself (see `pid`).
    fn signal(&self, sig: &str) {
        let pid = self.pid();
        let st = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} {pid}");
    }

    /// ringhook's pid: the spawned process, or its child when behind `unshare --fork`.
    fn pid(&self) -> u32 {
        child_of(self.child.id()).unwrap_or(self.child.id())
    }

    /// SIGTERM to ringhook itself (the spawned process, or its child when behind
    /// `unshare --fork`), then its exit status as the spawned process reports it.
    fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
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
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub(crate) fn is_root() -> bool {
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
