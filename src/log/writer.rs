//! The event log's writer: lines appended and synced before anyone is told they are logged.
//!
//! The line format is [`super::line`]'s.
//!
//! Durability: a batch of lines is written with one `write` and one `fdatasync`; only then are the
//! requests in it acknowledged. A failed batch is cut off again (`ftruncate` to the last synced
//! length) so a later batch never lands after half a line.

use std::borrow::Borrow;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::dedupe::Dedupe;
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
        file: File,
        /// Length of the file up to the last synced line: where a failed batch is cut back to.
        synced_len: u64,
    },
}

/// The open event log.
pub(crate) struct EventLog {
    sink: Destination,
    dedupe: Dedupe,
    healthy: bool,
    buf: Vec<u8>,
    /// The dedupe keys of the batch being committed (kept: no allocation per batch).
    batch_keys: Vec<u64>,
    /// How long each `fdatasync` took (for `ringhook_log_sync_seconds`).
    pub sync_seconds: Histogram,
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
    /// Events to standard output.
    pub(crate) fn stdout(dedupe_window: usize) -> EventLog {
        EventLog {
            sink: Destination::Stdout,
            dedupe: Dedupe::new(dedupe_window),
            healthy: true,
            buf: Vec::new(),
            batch_keys: Vec::new(),
            sync_seconds: Histogram::default(),
        }
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
        Ok((
            EventLog {
                sink: Destination::File {
                    path: path.to_path_buf(),
                    file,
                    synced_len: good,
                },
                dedupe,
                healthy: true,
                buf: Vec::new(),
                batch_keys: Vec::new(),
                sync_seconds: Histogram::default(),
            },
            recovery,
        ))
    }

    /// True when a batch is synced (a file), so bigger batches mean fewer syncs.
    pub(crate) fn syncs(&self) -> bool {
        matches!(self.sink, Destination::File { .. })
    }

    /// False after a failed batch, until a batch, a [`EventLog::probe`] or a reopen succeeds.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// While unhealthy, tests whether the file takes writes again: a block of spaces (so it needs
    /// a new block, as a batch would) is written and synced, then cut back to the synced length
    /// whatever happened. A crash in between leaves only a torn tail, which opening cuts. Call it
    /// only between batches. True when the log became healthy. Stdout cannot be probed.
    pub(crate) fn probe(&mut self) -> bool {
        let Destination::File {
            file, synced_len, ..
        } = &mut self.sink
        else {
            return false;
        };
        if self.healthy {
            return false;
        }
        let wrote = file
            .write_all(&[b' '; PROBE_BYTES])
            .and_then(|()| file.sync_data());
        let cut = file.set_len(*synced_len).and_then(|()| file.sync_data());
        if wrote.is_ok() && cut.is_ok() {
            info!("event log writable again");
            self.healthy = true;
        }
        self.healthy
    }

    /// Writes every record that is not a recent duplicate with one write and one sync (large
    /// records are written from where they are, not copied into the batch: memory stays at what
    /// the body budget allows), and puts each record's verdict in `verdicts`. Allocates nothing
    /// once warm: one batch per loop turn, on the hot path.
    pub(crate) fn commit<R: Borrow<Record>>(&mut self, records: &[R], verdicts: &mut Vec<Commit>) {
        verdicts.clear();
        // Keys of the uuids this batch writes (a repeat within the batch is a duplicate too).
        let keys = &mut self.batch_keys;
        keys.clear();
        for r in records {
            let key = r.borrow().uuid.as_deref().map(|u| self.dedupe.key(u));
            let dup = key.is_some_and(|k| self.dedupe.contains_key(k) || keys.contains(&k));
            if dup {
                verdicts.push(Commit::Duplicate);
            } else {
                keys.extend(key);
                verdicts.push(Commit::Written);
            }
        }
        if !verdicts.contains(&Commit::Written) {
            return;
        }
        match self.write_batch(records, verdicts) {
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
                    let logged_before = r
                        .borrow()
                        .uuid
                        .as_deref()
                        .is_some_and(|u| self.dedupe.contains(u));
                    if !logged_before {
                        *v = Commit::Failed;
                    }
                }
            }
        }
        self.buf.clear();
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }

    /// Writes the lines of the records whose verdict is [`Commit::Written`].
    fn write_batch<R: Borrow<Record>>(
        &mut self,
        records: &[R],
        verdicts: &[Commit],
    ) -> io::Result<()> {
        let buf = &mut self.buf;
        let mut written = 0u64;
        let lines = records
            .iter()
            .zip(verdicts)
            .filter(|(_, v)| **v == Commit::Written)
            .map(|(r, _)| r.borrow().line.as_slice());
        // Small lines are gathered into one write; a large one goes out as it is.
        let mut write = |out: &mut dyn Write| -> io::Result<()> {
            buf.clear();
            for line in lines.clone() {
                if line.len() > BIG_LINE {
                    out.write_all(buf)?;
                    buf.clear();
                    out.write_all(line)?;
                } else {
                    buf.extend_from_slice(line);
                }
                written += line.len() as u64;
            }
            out.write_all(buf)
        };
        match &mut self.sink {
            Destination::Stdout => {
                let mut out = io::stdout().lock();
                write(&mut out)?;
                out.flush()
            }
            Destination::File {
                file, synced_len, ..
            } => {
                if !self.healthy {
                    // The last cut-back (of a failed batch or a probe) may itself have failed.
                    file.set_len(*synced_len)?;
                }
                let result = write(file).and_then(|()| {
                    let start = Instant::now();
                    let synced = file.sync_data();
                    self.sync_seconds.observe(start.elapsed());
                    synced
                });
                match result {
                    Ok(()) => {
                        *synced_len += written;
                        Ok(())
                    }
                    Err(e) => {
                        // Cut back whatever part of the batch reached the file, so the next
                        // batch starts on a line boundary. If even that fails, the torn tail is
                        // cut at the next start.
                        let _ = file.set_len(*synced_len);
                        Err(e)
                    }
                }
            }
        }
    }

    /// Reopens the file at its path (after logrotate moved it). Stdout: nothing to do.
    pub(crate) fn reopen(&mut self) -> io::Result<()> {
        if let Destination::File {
            path,
            file,
            synced_len,
        } = &mut self.sink
        {
            // SIGHUP with the file still at its path (not rotated): keep it. Opening it again
            // would fail on our own lock.
            let same = |a: &std::fs::Metadata, b: &std::fs::Metadata| {
                use std::os::unix::fs::MetadataExt;
                (a.dev(), a.ino()) == (b.dev(), b.ino())
            };
            let still_here = match (std::fs::metadata(&*path), file.metadata()) {
                (Ok(at_path), Ok(open)) => same(&at_path, &open),
                _ => false,
            };
            if still_here {
                self.probe();
                return Ok(());
            }
            let new = open_append(path)?;
            let len = new.metadata()?.len();
            let good = end_of_last_line(&new, len)?;
            if good < len {
                new.set_len(good)?;
            }
            *file = new;
            *synced_len = good;
        }
        // Health is the new file's: a reopen onto a writable file ends a failed stretch at once.
        self.probe();
        Ok(())
    }
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
/// What a probe writes: one page, so a full disk refuses it even where the last page has room.
const PROBE_BYTES: usize = 4096;
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
        let mut verdicts = Vec::new();
        log.commit(records, &mut verdicts);
        verdicts
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
    fn a_reopen_without_rotation_keeps_the_file() {
        let path = tmp("reopen-same");
        let (mut log, _) = EventLog::open(&path, 100).unwrap();
        let a = Record::new(br#"{"uuid":"a"}"#, at());
        assert_eq!(commit(&mut log, &[&a]), vec![Commit::Written]);
        log.reopen()
            .expect("a SIGHUP without logrotate is not an error");
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
        let mut log = EventLog {
            sink: Destination::File {
                path: PathBuf::from("/dev/full"),
                file,
                synced_len: 0,
            },
            dedupe: Dedupe::new(10),
            healthy: true,
            buf: Vec::new(),
            batch_keys: Vec::new(),
            sync_seconds: Histogram::default(),
        };
        let r = Record::new(br#"{"uuid":"x"}"#, at());
        assert_eq!(commit(&mut log, &[&r]), vec![Commit::Failed]);
        assert!(!log.is_healthy());
        // Not remembered: a redelivery must be written, not dropped as a duplicate.
        assert!(!log.dedupe.contains("x"));
    }
}
