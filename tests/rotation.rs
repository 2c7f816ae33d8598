//! `ringhook ship` across every rotation scheme, with real files, real signals and the real
//! binary into a loopback HTTP sink: rename (once, twice, while stopped or while lagging) loses
//! nothing and keeps the order; copytruncate reads what the copy holds, and what no copy holds is
//! said with its size. (`tail -f` across two renames is in `tests/tail.rs`.)

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::ship::{Act, HttpSink, append, run, ship};
use crate::support::PATIENCE;

fn keys(want: &[(String, String)]) -> Vec<String> {
    want.iter().map(|(u, _)| u.clone()).collect()
}

/// Keys delivered, in order, consecutive repeats (retries) merged.
fn delivered(sink: &HttpSink) -> Vec<String> {
    let mut k: Vec<String> = sink.delivered().into_iter().map(|g| g.key).collect();
    k.dedup();
    k
}

fn kill(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// `ship` running in the background; stopped with SIGTERM, its stderr returned.
struct Shipper(Child);

impl Shipper {
    fn start(dir: &Path, url: &str, env: &[(&str, &str)]) -> Shipper {
        Shipper(
            ship(dir, &["--log-file", "e.log", "--to", url], env)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    fn stop(mut self) -> String {
        kill(&self.0, "-TERM");
        let deadline = Instant::now() + PATIENCE;
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "ship did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut s = String::new();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn once(dir: &Path, url: &str) -> String {
    let out = run(ship(
        dir,
        &["--log-file", "e.log", "--to", url, "--once"],
        &[],
    ));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

/// The reproduction: `mv e.log e.log.1; (write B); mv e.log.1 e.log.2; mv e.log e.log.1;
/// (write C)` while the shipper is stopped: the cursor's file is now `e.log.2`, then `e.log.1`
/// and `e.log` follow, every record once, in order.
#[test]
fn a_stopped_shipper_ships_every_renamed_copy_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    let mut want = append(&log, "a", 0..5);
    let sink = HttpSink::start(|_, _| Act::Answer(200, None));
    once(dir.path(), &sink.url);
    assert_eq!(delivered(&sink), keys(&want));
    // Logged while the shipper is stopped.
    want.extend(append(&log, "a", 5..8));
    std::fs::rename(&log, dir.path().join("e.log.1")).unwrap();
    want.extend(append(&log, "b", 0..4));
    std::fs::rename(dir.path().join("e.log.1"), dir.path().join("e.log.2")).unwrap();
    std::fs::rename(&log, dir.path().join("e.log.1")).unwrap();
    want.extend(append(&log, "c", 0..3));
    once(dir.path(), &sink.url);
    assert_eq!(delivered(&sink), keys(&want));
    // The cursor is on the live file now: a third run sends nothing.
    once(dir.path(), &sink.url);
    assert_eq!(sink.delivered().len(), want.len());
}

/// The same two renames while a running shipper is frozen (SIGSTOP) mid-log: it finishes its
/// file, then `e.log.1`, then the live one.
#[test]
fn a_lagging_shipper_ships_every_renamed_copy_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    let mut want = append(&log, "a", 0..5);
    let sink = HttpSink::start(|_, _| Act::Answer(200, None));
    let shipper = Shipper::start(dir.path(), &sink.url, &[]);
    sink.wait_delivered(5);
    kill(&shipper.0, "-STOP");
    want.extend(append(&log, "a", 5..8));
    std::fs::rename(&log, dir.path().join("e.log.1")).unwrap();
    want.extend(append(&log, "b", 0..4));
    std::fs::rename(dir.path().join("e.log.1"), dir.path().join("e.log.2")).unwrap();
    std::fs::rename(&log, dir.path().join("e.log.1")).unwrap();
    want.extend(append(&log, "c", 0..3));
    kill(&shipper.0, "-CONT");
    sink.wait_delivered(want.len());
    // And on from the live file.
    want.extend(append(&log, "d", 0..2));
    sink.wait_delivered(want.len());
    let err = shipper.stop();
    assert_eq!(delivered(&sink), keys(&want), "{err}");
    assert!(!err.contains("WARN"), "{err}");
}

/// A sink that holds request `n` until [`Gate::open`]: the shipper is then certainly in the
/// middle of the log, with what it read of it in memory.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (m, c) = &*self.0;
        let mut open = m.lock().unwrap();
        while !*open {
            open = c.wait(open).unwrap();
        }
    }

    fn open(&self) {
        let (m, c) = &*self.0;
        *m.lock().unwrap() = true;
        c.notify_all();
    }
}

/// A log of `n` records, long enough that ship reads it in many steps.
fn long_log(log: &Path, n: usize) -> Vec<(String, String)> {
    let want = append(log, "a", 0..n);
    assert!(std::fs::metadata(log).unwrap().len() > 4 * 64 * 1024);
    want
}

/// copytruncate (`cp e.log e.log.1; : > e.log`) under a shipper held mid-log by its sink: the
/// rest of the old file is read from the copy, then the new lines; nothing is skipped.
#[test]
fn copytruncate_under_a_lagging_shipper_reads_the_rest_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    let mut want = long_log(&log, 2000);
    let gate = Gate::default();
    let g = gate.clone();
    let sink = HttpSink::start(move |n, _| {
        if n == 11 {
            g.wait();
        }
        Act::Answer(200, None)
    });
    let shipper = Shipper::start(dir.path(), &sink.url, &[("RINGHOOK_SHIP_TIMEOUT", "60s")]);
    sink.wait_delivered(10);
    std::fs::copy(&log, dir.path().join("e.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    want.extend(append(&log, "c", 0..3));
    gate.open();
    sink.wait_delivered(want.len());
    let err = shipper.stop();
    assert_eq!(delivered(&sink), keys(&want), "{err}");
    assert!(err.contains("e.log.1"), "the copy is named: {err}");
    assert!(!err.contains("WARN"), "{err}");
}

/// copytruncate whose copy is gone at once (compressed without `delaycompress`): what the
/// shipper had not read is lost, and said so with its exact size.
#[test]
fn a_truncated_tail_no_copy_holds_is_a_warning_with_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    let a = long_log(&log, 2000);
    let gate = Gate::default();
    let g = gate.clone();
    let sink = HttpSink::start(move |n, _| {
        if n == 11 {
            g.wait();
        }
        Act::Answer(200, None)
    });
    let shipper = Shipper::start(dir.path(), &sink.url, &[("RINGHOOK_SHIP_TIMEOUT", "60s")]);
    sink.wait_delivered(10);
    let lines: Vec<String> = BufReader::new(std::fs::File::open(&log).unwrap())
        .lines()
        .map(|l| l.unwrap() + "\n")
        .collect();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let c = append(&log, "c", 0..3);
    gate.open();
    // What came: a prefix of the old records, then the new ones.
    let deadline = Instant::now() + PATIENCE;
    while !delivered(&sink).ends_with(&keys(&c)) {
        assert!(Instant::now() < deadline, "{:?}", delivered(&sink));
        let _ = sink.events.recv_timeout(Duration::from_millis(100));
    }
    let err = shipper.stop();
    let got = delivered(&sink);
    let shipped = got.len() - c.len();
    assert!(
        shipped < a.len(),
        "the test did not truncate ahead of the shipper"
    );
    assert_eq!(got[..shipped], keys(&a)[..shipped], "{err}");
    // The warning counts exactly the bytes of the records never shipped.
    let lost: usize = lines[shipped..].iter().map(String::len).sum();
    let warn = err
        .lines()
        .find(|l| l.contains("WARN") && l.contains("truncated"))
        .unwrap_or_else(|| panic!("no warning:\n{err}"));
    assert!(warn.contains(&format!(" {lost} bytes")), "{lost}: {warn}");
}

/// copytruncate while the shipper is stopped: the cursor's inode now holds other lines; the copy
/// beside it holds the cursor's, and the run goes on from there.
#[test]
fn copytruncate_while_stopped_resumes_in_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    let mut want = append(&log, "a", 0..5);
    let sink = HttpSink::start(|_, _| Act::Answer(200, None));
    once(dir.path(), &sink.url);
    want.extend(append(&log, "a", 5..8));
    std::fs::copy(&log, dir.path().join("e.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    want.extend(append(&log, "c", 0..3));
    once(dir.path(), &sink.url);
    assert_eq!(delivered(&sink), keys(&want));
    // A compressed older copy beside it is never read as lines.
    std::fs::write(dir.path().join("e.log.2.gz"), b"\x1f\x8b\x08\x00junk\n").unwrap();
    want.extend(append(&log, "d", 0..2));
    once(dir.path(), &sink.url);
    assert_eq!(delivered(&sink), keys(&want));
}

/// The status lines of a shipper whose stdout is piped, one by one, as JSON.
fn statuses(child: &mut Child) -> std::sync::mpsc::Receiver<serde_json::Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            let Ok(v) = serde_json::from_str(&l) else {
                continue;
            };
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a status line that `done` accepts; panics with the last one seen.
fn status_until(
    rx: &std::sync::mpsc::Receiver<serde_json::Value>,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    let mut last = serde_json::Value::Null;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) if done(&v) => return v,
            Ok(v) => last = v,
            Err(_) => panic!("no status with {what} within {PATIENCE:?}; the last: {last}"),
        }
    }
}

/// The log renamed twice while the sink refuses everything: the lag counts every record not
/// shipped, in the renamed copies the shipper still reads and in the live file, not only the
/// rest of the file it is in; the age is the oldest record's; both drain to 0 once it takes them.
#[test]
fn the_lag_counts_every_renamed_copy_still_to_ship() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    let mut want = append(&log, "a", 0..5);
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let o = open.clone();
    let sink = HttpSink::start(move |_, _| {
        if o.load(std::sync::atomic::Ordering::SeqCst) {
            Act::Answer(200, None)
        } else {
            Act::Answer(503, None)
        }
    });
    let mut shipper = Shipper(
        ship(dir.path(), &["--log-file", "e.log", "--to", &sink.url], &[])
            .env("RINGHOOK_SHIP_STATUS_EVERY", "10ms")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = statuses(&mut shipper.0);
    // Refused: the shipper holds the first record and cannot go on.
    sink.events.recv_timeout(PATIENCE).expect("a refused POST");
    want.extend(append(&log, "a", 5..8));
    std::fs::rename(&log, dir.path().join("e.log.1")).unwrap();
    want.extend(append(&log, "b", 0..4));
    std::fs::rename(dir.path().join("e.log.1"), dir.path().join("e.log.2")).unwrap();
    std::fs::rename(&log, dir.path().join("e.log.1")).unwrap();
    want.extend(append(&log, "c", 0..6));
    let n = want.len() as u64;
    let v = status_until(&status, &format!("lagEvents {n}"), |v| {
        v["ship"]["lagEvents"] == n
    });
    // The records say they were received on 2026-12-02: days ago.
    let age = v["ship"]["lagSeconds"].as_f64().unwrap();
    assert!(age > 3600.0, "{v}");
    assert_eq!(v["ship"]["failing"], true, "{v}");
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    sink.wait_delivered(want.len());
    let v = status_until(&status, "every record delivered", |v| {
        v["ship"]["delivered"] == n
    });
    assert_eq!(v["ship"]["lagEvents"], 0, "{v}");
    assert_eq!(v["ship"]["lagSeconds"].as_f64(), Some(0.0), "{v}");
    let err = shipper.stop();
    assert_eq!(delivered(&sink), keys(&want), "{err}");
}

/// What a careless operator leaves where the log was, after moving it aside
/// (`mv e.log e.log.1`): a FIFO, a link to a device, a folder. None is a file of the log: the
/// lag count must not open a FIFO (that waits for a writer, for ever), read a device (endless)
/// or fail on a folder; the shipper finishes the renamed file and reports a lag of 0.
#[test]
fn a_fifo_device_or_folder_at_the_logs_path_is_not_a_file_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    let old = dir.path().join("e.log.1");
    let mut want = append(&log, "a", 0..3);
    let sink = HttpSink::start(|_, _| Act::Answer(200, None));
    let mut shipper = Shipper(
        ship(dir.path(), &["--log-file", "e.log", "--to", &sink.url], &[])
            .env("RINGHOOK_SHIP_STATUS_EVERY", "10ms")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = statuses(&mut shipper.0);
    sink.wait_delivered(want.len());
    std::fs::rename(&log, &old).unwrap();
    let fifo = |p: &Path| assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    let device = |p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    let folder = |p: &Path| std::fs::create_dir(p).unwrap();
    let makers: [&dyn Fn(&Path); 3] = [&fifo, &device, &folder];
    for (i, make) in makers.into_iter().enumerate() {
        make(&log);
        // The writer's last lines, into the file it still holds.
        want.extend(append(&old, &format!("x{i}"), 0..2));
        sink.wait_delivered(want.len());
        let n = want.len() as u64;
        status_until(&status, "every record delivered, lag 0", |v| {
            v["ship"]["delivered"] == n && v["ship"]["lagEvents"] == 0
        });
        if std::fs::symlink_metadata(&log).unwrap().is_dir() {
            std::fs::remove_dir(&log).unwrap();
        } else {
            std::fs::remove_file(&log).unwrap();
        }
    }
    let err = shipper.stop();
    assert_eq!(delivered(&sink), keys(&want), "{err}");
    assert!(!err.contains("lag could not be counted"), "{err}");
}

/// The log cut back with no copy beside it (`: > e.log`, or copytruncate whose copy was
/// compressed at once) under a shipper held back by its sink: the shipper will still send the
/// old lines it had read into memory, then every line of the cut file from its start. The lag
/// counts those, not the cut file's lines after the old offset.
#[test]
fn the_lag_after_a_cut_no_copy_holds_counts_the_cut_file_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    // Few enough to be read into memory at once (one 64 KiB read), long enough that the new
    // lines end before the cursor's old offset.
    let old = append(&log, "a", 0..10);
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let o = open.clone();
    let sink = HttpSink::start(move |_, _| {
        if o.load(std::sync::atomic::Ordering::SeqCst) {
            Act::Answer(200, None)
        } else {
            Act::Answer(503, None)
        }
    });
    let mut shipper = Shipper(
        ship(dir.path(), &["--log-file", "e.log", "--to", &sink.url], &[])
            .env("RINGHOOK_SHIP_STATUS_EVERY", "10ms")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = statuses(&mut shipper.0);
    sink.events.recv_timeout(PATIENCE).expect("a refused POST");
    status_until(&status, "lagEvents 10", |v| v["ship"]["lagEvents"] == 10);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let new = append(&log, "c", 0..4);
    let n = (old.len() + new.len()) as u64;
    status_until(&status, &format!("lagEvents {n}"), |v| {
        v["ship"]["lagEvents"] == n
    });
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut want = old;
    want.extend(new);
    sink.wait_delivered(want.len());
    let v = status_until(&status, "every record delivered", |v| {
        v["ship"]["delivered"] == n
    });
    assert_eq!(v["ship"]["lagEvents"], 0, "{v}");
    let err = shipper.stop();
    assert_eq!(delivered(&sink), keys(&want), "{err}");
}

/// The log reached through a link to a file beside it (`e.log -> e.log.current`, as
/// `rotatelogs -L` keeps one), or with a second name (`ln e.log e.log.bak`): that file is the
/// log, not also a rotated copy of it. Its lines count once in the lag, which drains to 0.
#[test]
fn a_log_with_a_second_name_beside_it_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    let real = dir.path().join("e.log.current");
    let mut want = append(&real, "a", 0..3);
    std::os::unix::fs::symlink("e.log.current", &log).unwrap();
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let o = open.clone();
    let sink = HttpSink::start(move |_, _| {
        if o.load(std::sync::atomic::Ordering::SeqCst) {
            Act::Answer(200, None)
        } else {
            Act::Answer(503, None)
        }
    });
    let mut shipper = Shipper(
        ship(dir.path(), &["--log-file", "e.log", "--to", &sink.url], &[])
            .env("RINGHOOK_SHIP_STATUS_EVERY", "10ms")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = statuses(&mut shipper.0);
    sink.events.recv_timeout(PATIENCE).expect("a refused POST");
    status_until(&status, "lagEvents 3", |v| v["ship"]["lagEvents"] == 3);
    std::fs::hard_link(&real, dir.path().join("e.log.bak")).unwrap();
    want.extend(append(&log, "a", 3..5));
    status_until(&status, "lagEvents 5", |v| v["ship"]["lagEvents"] == 5);
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    sink.wait_delivered(want.len());
    let n = want.len() as u64;
    status_until(&status, "every record delivered, lag 0", |v| {
        v["ship"]["delivered"] == n && v["ship"]["lagEvents"] == 0
    });
    let err = shipper.stop();
    assert_eq!(delivered(&sink), keys(&want), "{err}");
}

/// A renamed copy the shipper may not read (`chmod 000 e.log.1`, or logrotate run as another
/// user) between the cursor's file and the live one: ship stops with an error naming it (serve
/// restarts it with backoff, the operator sees why), instead of spinning on it at full CPU,
/// deaf to SIGTERM, saying "following e.log.1" over and over.
#[test]
fn a_rotated_copy_it_may_not_read_is_an_error_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("e.log");
    let at = |n: &str| dir.path().join(n);
    // Root reads any file: then the shipper runs as nobody, in a folder it may write.
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sink = HttpSink::start(|_, _| Act::Answer(200, None));
    let once = || {
        let mut c = ship(
            dir.path(),
            &["--log-file", "e.log", "--to", &sink.url, "--once"],
            &[],
        );
        if root {
            c.uid(65534).gid(65534);
        }
        run(c)
    };
    let mut want = append(&log, "a", 0..3);
    let out = once();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    want.extend(append(&log, "a", 3..5));
    std::fs::rename(&log, at("e.log.1")).unwrap();
    append(&log, "b", 0..2);
    std::fs::rename(at("e.log.1"), at("e.log.2")).unwrap();
    std::fs::rename(&log, at("e.log.1")).unwrap();
    append(&log, "c", 0..2);
    std::fs::set_permissions(at("e.log.1"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = once();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("e.log.1") && l.contains("ermission denied")),
        "{err}"
    );
    assert!(err.lines().count() < 10, "{err}");
    // What it could read went first, in order; nothing after the unreadable copy.
    assert_eq!(delivered(&sink), keys(&want), "{err}");
}
