//! The event log's writer: lines appended and synced before anyone is told they are logged.
//!
//! The line format is [`super::line`]'s.
//!
//! Durability: a batch of lines is written with one `write` and one `fdatasync`; only then are the
//! requests in it acknowledged. A failed batch is cut off again (`ftruncate` to the last synced
//! length) so a later batch never lands after half a line. The write and the sync run on the
//! disk thread ([`super::disk`]), one batch at a time: batch N+1 is written only once batch N's
//! sync returned, so the cut-back of a failed N never takes a line of N+1 with it, and N+1 never
//! lands in the file behind a batch that may still be cut.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::dedupe::Dedupe;
use super::disk::{self, DiskJob, Done};
use super::histogram::Histogram;
use super::line::{Line, Record};

/// What became of one record in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Written and synced.
    Written,
    /// Its uuid was logged recently: not written again, safe to acknowledge.
    Duplicate,
    /// The write or sync failed: do not acknowledge.
    Failed,
}

enum Destination {
    Stdout,
    File {
        path: PathBuf,
        /// Shared with the disk thread while a job is with it (never two jobs at once).
        file: Arc<File>,
        /// Length of the file up to the last synced line: where a failed batch is cut back to.
        synced_len: u64,
    },
}

/// A batch back from the log: its records, and what became of each (same order).
pub(crate) struct Batch {
    pub records: Vec<Record>,
    pub verdicts: Vec<Commit>,
}

/// A job of the log's that is done.
pub(crate) enum Finished {
    /// A batch: acknowledge it.
    Batch(Batch),
    /// A probe of the unwritable log ([`EventLog::is_healthy`] says how it went).
    Probe,
    /// A reopen (SIGHUP), or why it failed (the old file is still written then).
    Reopen(io::Result<()>),
}

/// The open event log.
///
/// Its file work runs on the disk thread ([`super::disk`]) once [`EventLog::start`] started it
/// (before that, and for stdout, on the caller's thread): [`EventLog::begin`],
/// [`EventLog::probe`] and [`EventLog::reopen`] hand a job over and return `None`, or return
/// what finished at once; [`EventLog::finish`] takes the result when the thread has woken the
/// loop. One job at a time: start one only when [`EventLog::busy_since`] is `None`.
pub(crate) struct EventLog {
    sink: Destination,
    dedupe: Dedupe,
    healthy: bool,
    buf: Vec<u8>,
    /// The dedupe keys of the batch being committed (kept: no allocation per batch).
    batch_keys: Vec<u64>,
    /// How long each `fdatasync` took (for `ringhook_log_sync_seconds`).
    pub sync_seconds: Histogram,
    /// The disk thread, once started.
    disk: Option<disk::Thread>,
    /// Since when a job has been with the disk thread.
    busy: Option<Instant>,
}

/// What opening the log found, for the start-up line.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Bytes of a torn last line (a crash mid-write) that were cut off.
    pub torn_bytes: u64,
    /// Uuids read back from the end of the log into the dedupe window.
    pub seeded: usize,
}

impl EventLog {
    fn with(sink: Destination, dedupe: Dedupe) -> EventLog {
        EventLog {
            sink,
            dedupe,
            healthy: true,
            buf: Vec::new(),
            batch_keys: Vec::new(),
            sync_seconds: Histogram::default(),
            disk: None,
            busy: None,
        }
    }

    /// Events to standard output.
    pub(crate) fn stdout(dedupe_window: usize) -> EventLog {
        EventLog::with(Destination::Stdout, Dedupe::new(dedupe_window))
    }

    /// Opens (creating, mode 0600) the log at `path`: cuts a torn last line, then seeds the
    /// dedupe window from the newest lines.
    pub(crate) fn open(path: &Path, dedupe_window: usize) -> io::Result<(EventLog, Recovery)> {
        let file = open_append(path)?;
        let mut recovery = Recovery::default();
        let len = file.metadata()?.len();
        let good = end_of_last_line(&file, len)?;
        if good < len {
            file.set_len(good)?;
            file.sync_data()?;
            recovery.torn_bytes = len - good;
        }
        let mut dedupe = Dedupe::new(dedupe_window);
        recovery.seeded = seed_dedupe(&file, good, &mut dedupe)?;
        let sink = Destination::File {
            path: path.to_path_buf(),
            file: Arc::new(file),
            synced_len: good,
        };
        Ok((EventLog::with(sink, dedupe), recovery))
    }

    /// Starts the disk thread (a file only; stdout is written on the caller's thread): from now
    /// on the file's work runs there, and `wake` is called when a job is done.
    pub(crate) fn start(&mut self, wake: impl Fn() + Send + 'static) -> io::Result<()> {
        if self.syncs() && self.disk.is_none() {
            self.disk = Some(disk::Thread::spawn(wake)?);
        }
        Ok(())
    }

    /// True when a batch is synced (a file), so bigger batches mean fewer syncs.
    pub(crate) fn syncs(&self) -> bool {
        matches!(self.sink, Destination::File { .. })
    }

    /// False after a failed batch, until a batch, a [`EventLog::probe`] or a reopen succeeds.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Since when a job (a batch's write and sync, a probe, a reopen) has been with the disk.
    pub(crate) fn busy_since(&self) -> Option<Instant> {
        self.busy
    }

    /// Hands `job` to the disk thread (`None`), or runs it here when there is none.
    fn submit(&mut self, job: DiskJob) -> Option<Finished> {
        let job = match &self.disk {
            Some(t) => match t.send(job) {
                Ok(()) => {
                    self.busy = Some(Instant::now());
                    return None;
                }
                Err(job) => {
                    error!("the event log's disk thread is gone: writing from the loop");
                    self.disk = None;
                    job
                }
            },
            None => job,
        };
        let done = disk::run(job, &mut self.buf);
        Some(self.settle(done))
    }

    /// The job the disk thread finished, if it did (call it when the thread woke the loop).
    pub(crate) fn finish(&mut self) -> Option<Finished> {
        let done = self.disk.as_ref()?.try_done()?;
        self.busy = None;
        Some(self.settle(done))
    }

    /// Waits for the job with the disk thread (tests).
    #[cfg(test)]
    pub(crate) fn wait(&mut self) -> Option<Finished> {
        self.busy?;
        let done = self.disk.as_ref()?.wait_done()?;
        self.busy = None;
        Some(self.settle(done))
    }

    /// Takes a finished job's result into the log's state.
    fn settle(&mut self, done: Done) -> Finished {
        match done {
            Done::Append {
                records,
                mut verdicts,
                result,
                sync,
            } => {
                if let Some(d) = sync {
                    self.sync_seconds.observe(d);
                }
                if let Destination::File { synced_len, .. } = &mut self.sink {
                    if let Ok(n) = &result {
                        *synced_len += n;
                    }
                }
                self.settle_batch(&records, &mut verdicts, result.map(|_| ()));
                Finished::Batch(Batch { records, verdicts })
            }
            Done::Probe { ok } => {
                self.probed(ok);
                Finished::Probe
            }
            Done::Reopen { result, probed } => {
                let result = result.map(|new| {
                    if let (
                        Some((new, len)),
                        Destination::File {
                            file, synced_len, ..
                        },
                    ) = (new, &mut self.sink)
                    {
                        *file = Arc::new(new);
                        *synced_len = len;
                    }
                });
                if let Some(ok) = probed {
                    self.probed(ok);
                }
                Finished::Reopen(result)
            }
        }
    }

    fn probed(&mut self, ok: bool) {
        if ok && !self.healthy {
            info!("event log writable again");
            self.healthy = true;
        }
    }

    /// While unhealthy and idle, tests whether the file takes writes again: a block of spaces
    /// (so it needs a new block, as a batch would) is written and synced, then cut back to the
    /// synced length whatever happened. A crash in between leaves only a torn tail, which
    /// opening cuts. Call it only between batches. `None` when the probe went to the disk
    /// thread (or there was nothing to probe: healthy, busy, or stdout, which cannot be probed).
    pub(crate) fn probe(&mut self) -> Option<Finished> {
        let Destination::File {
            file, synced_len, ..
        } = &self.sink
        else {
            return None;
        };
        if self.healthy || self.busy.is_some() {
            return None;
        }
        let job = DiskJob::Probe {
            file: file.clone(),
            synced_len: *synced_len,
        };
        self.submit(job)
    }

    /// Starts a batch: decides which records are recent duplicates (a repeat within the batch
    /// is one too), then hands the others' lines to the disk (one write, one sync; large records
    /// are written from where they are, not copied into the batch: memory stays at what the
    /// body budget allows). `None` while the disk works on it; else the batch is done already
    /// (nothing to write, or stdout). Allocates nothing once warm: one batch per sync, on the
    /// hot path. Call it only when no job is with the disk.
    pub(crate) fn begin(
        &mut self,
        records: Vec<Record>,
        mut verdicts: Vec<Commit>,
    ) -> Option<Finished> {
        debug_assert!(self.busy.is_none(), "one job at a time");
        verdicts.clear();
        let keys = &mut self.batch_keys;
        keys.clear();
        for r in &records {
            let key = r.uuid().map(|u| self.dedupe.key(u));
            let dup = key.is_some_and(|k| self.dedupe.contains_key(k) || keys.contains(&k));
            if dup {
                verdicts.push(Commit::Duplicate);
            } else {
                keys.extend(key);
                verdicts.push(Commit::Written);
            }
        }
        if !verdicts.contains(&Commit::Written) {
            return Some(Finished::Batch(Batch { records, verdicts }));
        }
        match &self.sink {
            Destination::Stdout => {
                let lines = records
                    .iter()
                    .zip(&verdicts)
                    .filter(|(_, v)| **v == Commit::Written)
                    .map(|(r, _)| r.line.as_slice());
                let mut out = io::stdout().lock();
                let mut written = 0;
                let result = write_lines(&mut out, lines, &mut self.buf, &mut written)
                    .and_then(|()| out.flush());
                drop(out);
                self.buf.clear();
                if self.buf.capacity() > 64 * 1024 {
                    self.buf = Vec::new();
                }
                self.settle_batch(&records, &mut verdicts, result);
                Some(Finished::Batch(Batch { records, verdicts }))
            }
            Destination::File {
                file, synced_len, ..
            } => {
                let job = DiskJob::Append {
                    file: file.clone(),
                    records,
                    verdicts,
                    synced_len: *synced_len,
                    cut_first: !self.healthy,
                };
                self.submit(job)
            }
        }
    }

    /// A batch's outcome into health, the dedupe window and the verdicts.
    fn settle_batch(
        &mut self,
        records: &[Record],
        verdicts: &mut [Commit],
        result: io::Result<()>,
    ) {
        match result {
            Ok(()) => {
                self.healthy = true;
                for &k in &self.batch_keys {
                    self.dedupe.insert_key(k);
                }
            }
            Err(e) => {
                if self.healthy {
                    error!("event log write failed: {e}; answering 503 until it works again");
                }
                self.healthy = false;
                // A duplicate of a batch-mate that failed was not logged either.
                for (v, r) in verdicts.iter_mut().zip(records) {
                    let logged_before = r.uuid().is_some_and(|u| self.dedupe.contains(u));
                    if !logged_before {
                        *v = Commit::Failed;
                    }
                }
            }
        }
    }

    /// Reopens the file at its path (after logrotate moved it), then probes it if the log is
    /// unwritable: health is the new file's, so a reopen onto a writable file ends a failed
    /// stretch at once. Stdout: nothing to do. `None` while the disk thread works on it. Call it
    /// only when no job is with the disk.
    pub(crate) fn reopen(&mut self) -> Option<Finished> {
        let Destination::File {
            path,
            file,
            synced_len,
        } = &self.sink
        else {
            return Some(Finished::Reopen(Ok(())));
        };
        let job = DiskJob::Reopen {
            path: path.clone(),
            file: file.clone(),
            synced_len: *synced_len,
            probe: !self.healthy,
        };
        self.submit(job)
    }
}

/// Writes `lines` to `out`: small ones gathered in `buf` into one write, a large one as it is.
/// Adds the bytes to `written`.
pub(super) fn write_lines<'a>(
    out: &mut impl Write,
    lines: impl Iterator<Item = &'a [u8]>,
    buf: &mut Vec<u8>,
    written: &mut u64,
) -> io::Result<()> {
    buf.clear();
    for line in lines {
        if line.len() > BIG_LINE {
            out.write_all(buf)?;
            buf.clear();
            out.write_all(line)?;
        } else {
            buf.extend_from_slice(line);
        }
        *written += line.len() as u64;
    }
    out.write_all(buf)
}

/// SIGHUP: the file at `path` opened again when it is no longer `open` (logrotate moved it), its
/// torn tail cut; `None` when `open` is still at its path (opening it again would fail on our
/// own lock).
pub(super) fn reopen_at(path: &Path, open: &File) -> io::Result<Option<(File, u64)>> {
    let same = |a: &std::fs::Metadata, b: &std::fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        (a.dev(), a.ino()) == (b.dev(), b.ino())
    };
    let still_here = match (std::fs::metadata(path), open.metadata()) {
        (Ok(at_path), Ok(open)) => same(&at_path, &open),
        _ => false,
    };
    if still_here {
        return Ok(None);
    }
    let new = open_append(path)?;
    let len = new.metadata()?.len();
    let good = end_of_last_line(&new, len)?;
    if good < len {
        new.set_len(good)?;
    }
    Ok(Some((new, good)))
}

fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    // The only writer: `catchup` appends only when it gets this lock, so it cannot be cut away
    // by a failed batch's cut-back or the torn-tail repair.
    use rustix::fs::{FlockOperation, flock};
    flock(&file, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        if e == rustix::io::Errno::WOULDBLOCK {
            io::Error::other(
                "in use by another ringhook (a second serve, or a catchup run: try again in a moment)",
            )
        } else {
            e.into()
        }
    })?;
    // A new file's name is durable only once its directory is synced: without this, a power cut
    // takes a freshly created (or, after SIGHUP, re-created) log with every event acknowledged
    // in it (tests/powercut.rs).
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(file)
}

const BLOCK: u64 = 64 * 1024;
/// A line longer than this is written on its own rather than copied into the batch.
const BIG_LINE: usize = 64 * 1024;

/// The offset just past the last `\n` at or before `len` (0 when there is none).
fn end_of_last_line(mut file: &File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut block = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Reads lines backwards from `end` until the window is full or the file is exhausted, and
/// remembers their uuids (oldest first, so the newest are the last forgotten).
fn seed_dedupe(mut file: &File, end: u64, dedupe: &mut Dedupe) -> io::Result<usize> {
    if dedupe.capacity == 0 || end == 0 {
        return Ok(0);
    }
    let mut uuids: Vec<String> = Vec::new();
    let mut pos = end;
    let mut carry: Vec<u8> = Vec::new();
    while pos > 0 && uuids.len() < dedupe.capacity {
        let start = pos.saturating_sub(BLOCK);
        let mut chunk = vec![0u8; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&carry);
        pos = start;
        // Everything after the first newline is whole lines; before it, a line's tail.
        let first_nl = if pos == 0 {
            None
        } else {
            chunk.iter().position(|&b| b == b'\n')
        };
        let (head, whole) = match first_nl {
            Some(i) => chunk.split_at(i + 1),
            None => chunk.split_at(0),
        };
        for line in whole.rsplit(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(u) = Line::parse(line).and_then(|l| l.uuid()) {
                uuids.push(u);
                if uuids.len() >= dedupe.capacity {
                    break;
                }
            }
        }
        carry = head.to_vec();
    }
    let n = uuids.len();
    for u in uuids.iter().rev() {
        dedupe.insert(u);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn commit(log: &mut EventLog, records: &[&Record]) -> Vec<Commit> {
        let records = records.iter().map(|r| (*r).clone()).collect();
        let done = match log.begin(records, Vec::new()) {
            Some(done) => done,
            None => log.wait().expect("the disk thread answers"),
        };
        let Finished::Batch(batch) = done else {
            panic!("a batch comes back as a batch")
        };
        batch.verdicts
    }

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringhook-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn commit_writes_once_and_drops_duplicates() {
        let path = tmp("commit");
        let (mut log, _) = EventLog::open(&path, 100).unwrap();
        let a = Record::new(br#"{"uuid":"1"}"#, at());
        let b = Record::new(br#"{"uuid":"1"}"#, at());
        let c = Record::new(br#"{"uuid":"2"}"#, at());
        assert_eq!(
            commit(&mut log, &[&a, &b]),
            vec![Commit::Written, Commit::Duplicate]
        );
        assert_eq!(
            commit(&mut log, &[&a, &c]),
            vec![Commit::Duplicate, Commit::Written]
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_disk_thread_commits_in_order_and_wakes() {
        let path = tmp("thread");
        let (mut log, _) = EventLog::open(&path, 100).unwrap();
        let (tx, woken) = std::sync::mpsc::channel();
        log.start(move || {
            let _ = tx.send(());
        })
        .unwrap();
        for i in 0..3 {
            let r = Record::new(format!("{{\"uuid\":\"t{i}\"}}").as_bytes(), at());
            assert!(
                log.begin(vec![r], Vec::new()).is_none(),
                "handed to the thread"
            );
            assert!(log.busy_since().is_some());
            woken.recv().unwrap();
            let Some(Finished::Batch(b)) = log.finish() else {
                panic!("the batch is done once the thread woke us")
            };
            assert_eq!(b.verdicts, vec![Commit::Written]);
            assert!(log.busy_since().is_none());
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let uuids: Vec<_> = text
            .lines()
            .map(|l| Line::parse(l.as_bytes()).and_then(|l| l.uuid()).unwrap())
            .collect();
        assert_eq!(uuids, ["t0", "t1", "t2"], "{text}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_reopen_without_rotation_keeps_the_file() {
        let path = tmp("reopen-same");
        let (mut log, _) = EventLog::open(&path, 100).unwrap();
        let a = Record::new(br#"{"uuid":"a"}"#, at());
        assert_eq!(commit(&mut log, &[&a]), vec![Commit::Written]);
        let Some(Finished::Reopen(result)) = log.reopen() else {
            panic!("without the disk thread, a reopen is done at once")
        };
        result.expect("a SIGHUP without logrotate is not an error");
        let b = Record::new(br#"{"uuid":"b"}"#, at());
        assert_eq!(commit(&mut log, &[&b]), vec![Commit::Written]);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[test]
    fn reopening_cuts_a_torn_line_and_remembers_uuids() {
        let path = tmp("torn");
        let whole = Record::new(br#"{"uuid":"kept"}"#, at());
        let mut content = whole.line.clone();
        content.extend_from_slice(b"{\"receivedAt\":\"2023-");
        std::fs::write(&path, &content).unwrap();
        let (mut log, rec) = EventLog::open(&path, 100).unwrap();
        assert_eq!(rec.torn_bytes, 20);
        assert_eq!(rec.seeded, 1);
        let again = Record::new(br#"{"uuid":"kept"}"#, at());
        assert_eq!(commit(&mut log, &[&again]), vec![Commit::Duplicate]);
        let fresh = Record::new(br#"{"uuid":"new"}"#, at());
        assert_eq!(commit(&mut log, &[&fresh]), vec![Commit::Written]);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for l in lines {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn seeding_reads_across_blocks() {
        let path = tmp("seed");
        let mut content = Vec::new();
        for i in 0..3000 {
            let body = format!("{{\"uuid\":\"u{i}\",\"pad\":\"{}\"}}", "x".repeat(100));
            content.extend_from_slice(&Record::new(body.as_bytes(), at()).line);
        }
        std::fs::write(&path, &content).unwrap();
        let (log, rec) = EventLog::open(&path, 2500).unwrap();
        assert_eq!(rec.seeded, 2500);
        assert!(log.dedupe.contains("u2999"));
        assert!(log.dedupe.contains("u500"));
        assert!(!log.dedupe.contains("u499"));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn failing_writes_are_reported() {
        let Ok(file) = OpenOptions::new().append(true).open("/dev/full") else {
            return; // no /dev/full here: nothing to test against
        };
        let sink = Destination::File {
            path: PathBuf::from("/dev/full"),
            file: Arc::new(file),
            synced_len: 0,
        };
        let mut log = EventLog::with(sink, Dedupe::new(10));
        let r = Record::new(br#"{"uuid":"x"}"#, at());
        assert_eq!(commit(&mut log, &[&r]), vec![Commit::Failed]);
        assert!(!log.is_healthy());
        // Not remembered: a redelivery must be written, not dropped as a duplicate.
        assert!(!log.dedupe.contains("x"));
    }
}
