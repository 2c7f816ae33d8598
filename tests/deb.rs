//! The Debian package, as `sudo apt install ./ringhook_…_amd64.deb` would put it on a machine.
//!
//! Builds it with `scripts/build-deb.sh --no-install x86_64` (the static binary comes from
//! `scripts/build-static.sh`, into `target/static`, shared with `static_binary`), then:
//! - its name, control fields (no dependency of any kind) and conffiles;
//! - every path, mode and owner in the archive, exactly;
//! - lintian: no error and no warning (those that do not apply are overridden, with reasons, in
//!   `scripts/deb/lintian-overrides`);
//! - a real install by dpkg into a throwaway root (`--root` with its own database, maintainer
//!   scripts run outside a chroot with `DPKG_ROOT` set): the same paths on disk, the generated
//!   verification token, and `systemd-analyze verify` on the installed units;
//! - remove keeps the edited configuration, the token, the event log and the state; reinstalling
//!   keeps the token; purge deletes /etc/ringhook and the enable links, and still keeps the data.
//!
//! Missing prerequisites (dpkg-deb, lintian, systemd-analyze, root for dpkg) skip loudly on a
//! developer's machine and fail under CI (`CI=true`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::static_binary::{is_root, prerequisite, which};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every entry of the amd64 package: mode, owner, path (as `dpkg-deb -c` lists them).
const CONTENTS: &[(&str, &str)] = &[
    ("drwxr-xr-x", "./"),
    ("drwxr-xr-x", "./etc/"),
    ("drwxr-xr-x", "./etc/logrotate.d/"),
    ("-rw-r--r--", "./etc/logrotate.d/ringhook"),
    ("drwx------", "./etc/ringhook/"),
    ("-rw-------", "./etc/ringhook/ringhook.env"),
    ("drwxr-xr-x", "./usr/"),
    ("drwxr-xr-x", "./usr/bin/"),
    ("-rwxr-xr-x", "./usr/bin/ringhook"),
    ("drwxr-xr-x", "./usr/lib/"),
    ("drwxr-xr-x", "./usr/lib/systemd/"),
    ("drwxr-xr-x", "./usr/lib/systemd/system/"),
    (
        "-rw-r--r--",
        "./usr/lib/systemd/system/ringhook-register.service",
    ),
    (
        "-rw-r--r--",
        "./usr/lib/systemd/system/ringhook-register.timer",
    ),
    ("-rw-r--r--", "./usr/lib/systemd/system/ringhook.service"),
    ("drwxr-xr-x", "./usr/share/"),
    ("drwxr-xr-x", "./usr/share/doc/"),
    ("drwxr-xr-x", "./usr/share/doc/ringhook/"),
    ("-rw-r--r--", "./usr/share/doc/ringhook/README.Debian"),
    ("-rw-r--r--", "./usr/share/doc/ringhook/changelog.gz"),
    ("-rw-r--r--", "./usr/share/doc/ringhook/copyright"),
    ("drwxr-xr-x", "./usr/share/lintian/"),
    ("drwxr-xr-x", "./usr/share/lintian/overrides/"),
    ("-rw-r--r--", "./usr/share/lintian/overrides/ringhook"),
];

const UNITS: [&str; 3] = [
    "ringhook.service",
    "ringhook-register.service",
    "ringhook-register.timer",
];

#[test]
fn the_amd64_package_installs_removes_and_purges() {
    for tool in ["dpkg-deb", "dpkg", "lintian", "systemd-analyze"] {
        if !prerequisite(
            which(tool).is_some(),
            &format!("{tool} (Debian dpkg, dpkg-dev, lintian, systemd)"),
        ) {
            return;
        }
    }
    let Some(deb) = build_deb() else {
        return;
    };
    assert_eq!(
        deb.file_name().unwrap().to_str().unwrap(),
        format!("ringhook_{VERSION}_amd64.deb")
    );

    // The control fields: what dpkg and apt go by. No dependency of any kind.
    let control = run(Command::new("dpkg-deb").arg("-f").arg(&deb));
    for field in [
        "Package: ringhook",
        &format!("Version: {VERSION}"),
        "Architecture: amd64",
    ] {
        assert!(control.lines().any(|l| l == field), "{field}:\n{control}");
    }
    for dep in ["Depends", "Pre-Depends", "Recommends", "Suggests"] {
        assert!(
            !control.lines().any(|l| l.starts_with(&format!("{dep}:"))),
            "{control}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let meta = tmp.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&meta));
    assert_eq!(
        std::fs::read_to_string(meta.join("conffiles")).unwrap(),
        "/etc/ringhook/ringhook.env\n/etc/logrotate.d/ringhook\n"
    );

    // Every entry of the archive, with mode and owner.
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let entries: Vec<(String, String, String)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[5].to_string())
        })
        .collect();
    let expected: Vec<(String, String, String)> = CONTENTS
        .iter()
        .map(|(m, p)| (m.to_string(), "root/root".to_string(), p.to_string()))
        .collect();
    assert_eq!(entries, expected, "{listing}");

    // lintian: no error, no warning that is not overridden with a reason.
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--fail-on", "error,warning"])
        .arg(&deb)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let lint =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("--- lintian ---\n{lint}---");
    assert!(out.status.success(), "lintian: {}\n{lint}", out.status);
    assert!(
        !lint
            .lines()
            .any(|l| l.starts_with("E: ") || l.starts_with("W: ")),
        "{lint}"
    );

    if !prerequisite(
        is_root(),
        "root, to install into a throwaway root with dpkg",
    ) {
        return;
    }
    let root = tmp.path().join("root");
    let dpkg = Dpkg::new(&root);
    dpkg.run(&["--install"], &deb);

    // The same entries on disk, and the token postinst made.
    for (mode, path) in CONTENTS {
        let p = root.join(path.trim_start_matches("./"));
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(rwx(m.mode()), *mode, "{path}");
        assert_eq!((m.uid(), m.gid()), (0, 0), "{path}");
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/static/x86_64-unknown-linux-musl/release/ringhook");
    assert!(
        std::fs::read(root.join("usr/bin/ringhook")).unwrap() == std::fs::read(bin).unwrap(),
        "/usr/bin/ringhook is not the static build"
    );
    let token_path = root.join("etc/ringhook/verification-token");
    let m = std::fs::metadata(&token_path).unwrap();
    assert_eq!(
        (rwx(m.mode()).as_str(), m.uid(), m.gid()),
        ("-rw-------", 0, 0)
    );
    let token = std::fs::read_to_string(&token_path).unwrap();
    let t = token.trim_end_matches('\n');
    assert!(
        t.len() >= 40 && t.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{token:?}"
    );
    for u in UNITS {
        let text = std::fs::read_to_string(root.join("usr/lib/systemd/system").join(u)).unwrap();
        assert!(!text.contains("/usr/local/"), "{u} still names /usr/local");
        if u.ends_with(".service") {
            assert!(text.contains("ExecStart=/usr/bin/ringhook "), "{u}");
            assert!(text.contains("SystemCallArchitectures=native\n"), "{u}");
        }
    }
    verify_units(&root);

    // As if the services had run (systemd's StateDirectory= under DynamicUser=) and the admin
    // had filled in the configuration and enabled both.
    let env_path = root.join("etc/ringhook/ringhook.env");
    let mut env = std::fs::read_to_string(&env_path).unwrap();
    env = env.replace("RC_CLIENT_ID=\n", "RC_CLIENT_ID=edited-by-the-admin\n");
    std::fs::write(&env_path, &env).unwrap();
    let data = [
        "var/lib/private/ringhook/events.jsonl",
        "var/lib/private/ringhook-register/state.json",
    ];
    for d in data {
        std::fs::create_dir_all(root.join(d).parent().unwrap()).unwrap();
        std::fs::write(root.join(d), "{}\n").unwrap();
    }
    let wants = [
        "etc/systemd/system/multi-user.target.wants/ringhook.service",
        "etc/systemd/system/timers.target.wants/ringhook-register.timer",
    ];
    for w in wants {
        let unit = Path::new(w).file_name().unwrap();
        std::fs::create_dir_all(root.join(w).parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(
            Path::new("/usr/lib/systemd/system").join(unit),
            root.join(w),
        )
        .unwrap();
    }

    // Remove: the program and units go; configuration, token, data and enable links stay.
    dpkg.run(&["--remove", "ringhook"], Path::new(""));
    for gone in [
        "usr/bin/ringhook",
        "usr/lib/systemd/system/ringhook.service",
    ] {
        assert!(!root.join(gone).exists(), "{gone} left after remove");
    }
    assert_eq!(std::fs::read_to_string(&env_path).unwrap(), env);
    assert_eq!(std::fs::read_to_string(&token_path).unwrap(), token);
    assert!(root.join("etc/logrotate.d/ringhook").exists());
    for d in data {
        assert!(root.join(d).exists(), "{d} lost on remove");
    }

    // Reinstall: the edited conffile and the token are kept as they are.
    dpkg.run(&["--install"], &deb);
    assert_eq!(std::fs::read_to_string(&env_path).unwrap(), env);
    assert_eq!(std::fs::read_to_string(&token_path).unwrap(), token);

    // Purge: the configuration goes (directory, conffiles, token, enable links); data stays.
    dpkg.run(&["--purge", "ringhook"], Path::new(""));
    for gone in [
        "etc/ringhook",
        "etc/logrotate.d/ringhook",
        "usr/bin/ringhook",
    ]
    .iter()
    .chain(&wants)
    {
        assert!(
            std::fs::symlink_metadata(root.join(gone)).is_err(),
            "{gone} left after purge"
        );
    }
    for d in data {
        assert!(root.join(d).exists(), "{d} lost on purge");
    }
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(!status.contains("Package: ringhook"), "{status}");
}

/// Builds the amd64 package with the script; `None` when a prerequisite is missing (skip).
fn build_deb() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(repo.join("scripts/build-deb.sh"))
        .args(["--no-install", "x86_64"])
        .env("CARGO_TARGET_DIR", repo.join("target/static"))
        .stdin(Stdio::null())
        .output()
        .expect("run bash scripts/build-deb.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        prerequisite(false, stderr.lines().last().unwrap_or_default());
        return None;
    }
    assert!(
        out.status.success(),
        "build-deb.sh: {}\n{stdout}{stderr}",
        out.status
    );
    // The last line names the package: "<file name> <bytes> bytes <path>".
    let line = stdout.lines().last().unwrap_or_default();
    eprintln!("{line}");
    let path = repo.join(line.split_whitespace().last().unwrap());
    assert!(path.is_file(), "{line}");
    Some(path)
}

/// dpkg working on a root of its own, with its own database, as root.
struct Dpkg {
    root: PathBuf,
}

impl Dpkg {
    fn new(root: &Path) -> Dpkg {
        let admin = root.join("var/lib/dpkg");
        for d in ["info", "updates", "triggers"] {
            std::fs::create_dir_all(admin.join(d)).unwrap();
        }
        for f in ["status", "available"] {
            std::fs::write(admin.join(f), "").unwrap();
        }
        Dpkg {
            root: root.to_path_buf(),
        }
    }

    /// `dpkg --root=ROOT ACTION [ARG]`. The maintainer scripts run in this system, not chrooted
    /// (the root has no shell), with DPKG_ROOT telling them where to work.
    fn run(&self, action: &[&str], arg: &Path) {
        let mut cmd = Command::new("dpkg");
        cmd.arg(format!("--root={}", self.root.display()))
            .args(["--force-script-chrootless", "--log=/dev/null"])
            .args(action);
        if !arg.as_os_str().is_empty() {
            cmd.arg(arg);
        }
        run(&mut cmd);
    }
}

/// `systemd-analyze verify` of the installed units, against the throwaway root (`--root`, so
/// `ExecStart=/usr/bin/ringhook` is the packaged binary; it must exist and be executable). That
/// root has no systemd of its own: the host's units (sysinit.target, timers.target, …) and
/// `kill` (ExecReload=) are copied in first, without replacing the package's files. Parse
/// warnings do not change the exit status, so any output at all fails the test.
fn verify_units(root: &Path) {
    let host_units = Path::new("/usr/lib/systemd/system");
    if !prerequisite(
        host_units.join("sysinit.target").exists(),
        "systemd's units in /usr/lib/systemd/system (Debian systemd)",
    ) {
        return;
    }
    let mut cp = Command::new("cp");
    cp.arg("-rn")
        .arg(host_units.join("."))
        .arg(root.join("usr/lib/systemd/system"));
    run(&mut cp);
    let kill = which("kill").expect("kill");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(kill, root.join("bin/kill")).unwrap();

    let units: Vec<PathBuf> = UNITS
        .iter()
        .map(|u| root.join("usr/lib/systemd/system").join(u))
        .collect();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(&units)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}\n{text}",
        out.status
    );
    assert!(text.trim().is_empty(), "systemd-analyze verify:\n{text}");
}

/// Runs `cmd` and returns its stdout; panics with both streams when it fails.
fn run(cmd: &mut Command) -> String {
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `-rw-r--r--` style, as `dpkg-deb -c` prints modes.
fn rwx(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        _ => '-',
    };
    let bits = std::fs::Permissions::from_mode(mode).mode();
    let mut s = String::from(kind);
    for shift in [6, 3, 0] {
        let b = (bits >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}
