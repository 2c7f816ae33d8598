//! The rotated copies of a log beside it (`events.log.1`, `events.log-20261202`), oldest first:
//! the one place that knows what a copy is called and in which order the copies were written.
//! The follower walks them (a cursor in `events.log.2` reads `.2`, then `.1`, then the log);
//! `catchup` reads them for what the log already holds.
//!
//! A copy is a file in the log's folder whose name extends the log's, except ringhook's own
//! files beside it (`.cursor`, `.tmp`, `.dead-letter`) and compressed copies (`.gz`, `.xz`, …),
//! which are not lines. Order: the log has one writer that only appends and moves to a new file
//! only after the old one's last write, so the copies were last written in the order they were
//! the log: oldest first is by modification time; within one clock tick, by name (`.2` before
//! `.1`, `-20261201` before `-20261202`: logrotate's own rules).

use std::cmp::Ordering;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Names beside the log that are ringhook's own, not copies of the log.
const OWN: &[&[u8]] = &[b".cursor", b".tmp", b".dead-letter", b".lock"];
/// Endings of compressed copies (logrotate's `compress`, `compresscmd`): not lines.
const COMPRESSED: &[&[u8]] = &[
    b".gz", b".bz2", b".xz", b".zst", b".lz4", b".lzma", b".lzo", b".Z", b".zip", b".br", b".sz",
];

/// One file of the log: a rotated copy or the log itself.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    /// Last modification, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// The name's rank among copies written within one clock tick.
    rank: Rank,
}

impl Copy {
    fn of(path: PathBuf, m: &std::fs::Metadata, rank: Rank) -> Copy {
        Copy {
            path,
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            rank,
        }
    }

    /// True when this is the file `(dev, ino)`.
    pub(crate) fn is(&self, dev: u64, ino: u64) -> bool {
        self.dev == dev && self.ino == ino
    }
}

/// Older first: `.3` before `.2` (numbered copies count up with age), then other suffixes as
/// text (`-20261201` before `-20261202`: logrotate requires date names to sort so).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Numbered(std::cmp::Reverse<u64>),
    Named(Vec<u8>),
}

fn rank(suffix: &[u8]) -> Rank {
    match suffix.strip_prefix(b".") {
        Some(n) if !n.is_empty() && n.len() < 8 && n.iter().all(u8::is_ascii_digit) => {
            let n = std::str::from_utf8(n).ok().and_then(|n| n.parse().ok());
            Rank::Numbered(std::cmp::Reverse(n.unwrap_or(0)))
        }
        _ => Rank::Named(suffix.to_vec()),
    }
}

/// The folder that holds `path` (`.` for a bare file name).
pub(crate) fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Whether `file`, a name in the log's folder, is the log `log` itself or a copy of it that
/// may hold lines (`events.log.1`, `events.log-2026`), not one of ringhook's own files beside it.
pub(crate) fn log_or_copy(file: &[u8], log: &[u8]) -> bool {
    file.starts_with(log)
        && !OWN.iter().any(|s| file.ends_with(s))
        && !COMPRESSED.iter().any(|s| file[log.len()..].ends_with(s))
}

/// Whether `other`, a file ringhook would write (a cursor, a dead-letter file), is the log at
/// `log` or would be taken for a rotated copy of it: in the log's folder, its name the log's or
/// extending it (`events.log.cursor-http`, `events.log.dlq`) without one of ringhook's own
/// endings. A follower would read it as the log's lines (and a dead-letter file, read so,
/// dead-letters each line into itself again).
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) fn taken_for_log(log: &Path, other: &Path) -> bool {
    let (Some(l), Some(o)) = (log.file_name(), other.file_name()) else {
        return false;
    };
    let (l, o) = (l.as_bytes(), o.as_bytes());
    if !o.starts_with(l) || (o.len() > l.len() && !log_or_copy(o, l)) {
        return false;
    }
    match (
        std::fs::canonicalize(folder(log)),
        std::fs::canonicalize(folder(other)),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => folder(log) == folder(other),
    }
}

/// The rotated copies of the log at `path`, oldest first (the log itself not included). A log
/// reached through a symbolic link is rotated where the file lives: the copies beside the link's
/// target count too.
pub(crate) fn copies(path: &Path) -> Vec<Copy> {
    let mut out = copies_beside(path);
    let linked = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if let Some(real) = linked.then(|| std::fs::canonicalize(path).ok()).flatten() {
        for c in copies_beside(&real) {
            if !out.iter().any(|o| o.is(c.dev, c.ino)) {
                out.push(c);
            }
        }
    }
    out.sort_by(older);
    out
}

/// The copies in `path`'s own folder named after it.
fn copies_beside(path: &Path) -> Vec<Copy> {
    let Some(name) = path.file_name().map(OsStrExt::as_bytes) else {
        return vec![];
    };
    let Ok(entries) = std::fs::read_dir(folder(path)) else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name();
            let n = n.as_bytes();
            if n.len() <= name.len() || !log_or_copy(n, name) {
                return None;
            }
            let rank = rank(&n[name.len()..]);
            let path = e.path();
            // Followed through a symbolic link, as a reader opening it would.
            let m = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
            Some(Copy::of(path, &m, rank))
        })
        .collect()
}

fn older(a: &Copy, b: &Copy) -> Ordering {
    a.mtime
        .cmp(&b.mtime)
        .then_with(|| a.rank.cmp(&b.rank))
        .then_with(|| a.path.cmp(&b.path))
}

/// The copies oldest first, then the log itself (when there is a regular file at `path`): every
/// file of the log in the order it was written, each once. Whatever else stands at the path (a
/// FIFO, a device, a folder left there by hand) is no file of the log: opening a FIFO waits for
/// a writer, a device never ends. A copy that is the log's own file under a second name (the
/// target of a link beside it, `e.log -> e.log.current`; a hard link) is the log, not a copy.
pub(crate) fn chain(path: &Path) -> Vec<Copy> {
    let mut all = copies(path);
    if let Some(m) = std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
    {
        all.retain(|c| !c.is(m.dev(), m.ino()));
        all.push(Copy::of(path.to_path_buf(), &m, Rank::Named(vec![])));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[Copy]) -> Vec<String> {
        v.iter()
            .map(|c| c.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn copies_are_oldest_first_and_only_the_logs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.log");
        // Written within one tick (or not): the names decide then, as logrotate names them.
        for n in [
            "e.log.10",
            "e.log.2",
            "e.log.1",
            "e.log-20261202",
            "e.log-20261201",
            "e.log",
        ] {
            std::fs::write(dir.path().join(n), "x\n").unwrap();
        }
        // Same time for all: the name's rank alone.
        for n in [
            "e.log.10",
            "e.log.2",
            "e.log.1",
            "e.log-20261201",
            "e.log-20261202",
        ] {
            set_mtime(&dir.path().join(n), 1_000);
        }
        for n in [
            "e.log.cursor",
            "e.log.cursor.tmp",
            "e.log.dead-letter",
            "e.log.3.gz",
            "e.log-20261130.xz",
            "other.log",
            "e.lo",
        ] {
            std::fs::write(dir.path().join(n), "x\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("e.log.d")).unwrap();
        assert_eq!(
            names(&copies(&p)),
            [
                "e.log.10",
                "e.log.2",
                "e.log.1",
                "e.log-20261201",
                "e.log-20261202"
            ]
        );
        // Modification times first: the last written is the newest whatever its name.
        set_mtime(&dir.path().join("e.log-20261202"), 500);
        set_mtime(&dir.path().join("e.log.10"), 2_000);
        let chain = chain(&p);
        assert_eq!(
            names(&chain),
            [
                "e.log-20261202",
                "e.log.2",
                "e.log.1",
                "e.log-20261201",
                "e.log.10",
                "e.log"
            ]
        );
        assert!(chain[5].len == 2);
    }

    #[test]
    fn own_files_named_as_copies_are_told() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.log");
        let other = tempfile::tempdir().unwrap();
        for (name, taken) in [
            ("e.log", true),
            ("e.log.cursor-http", true),
            ("e.log.dlq", true),
            ("e.log.http.cursor", false),
            ("e.log.dead-letter", false),
            ("other.cursor", false),
        ] {
            assert_eq!(taken_for_log(&p, &dir.path().join(name)), taken, "{name}");
            assert!(!taken_for_log(&p, &other.path().join(name)), "{name}");
        }
    }

    /// Sets a file's modification time (seconds since the epoch).
    fn set_mtime(p: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        f.set_times(std::fs::FileTimes::new().set_modified(t))
            .unwrap();
    }
}
