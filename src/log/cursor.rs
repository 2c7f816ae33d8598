//! The cursor file: which log file (device, inode, fingerprint of its first line) and the byte
//! offset after the last record the sink confirmed. Written atomically (temporary file, fsync,
//! rename, fsync of the folder), so a crash leaves the old cursor or the new one, never half.
//! One writer at a time: whoever writes it holds [`lock`] (`FILE.lock` beside it), which also
//! makes the fixed temporary name (`FILE.tmp`) that one writer's.
//!
//! Format, one JSON line: `{"dev":2049,"ino":1234,"fingerprint":"9f2c…","offset":5120}`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A position in the event log that survives restarts and rotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// FNV-1a of the file's first line, `\n` included (an inode can be reused).
    pub fingerprint: u64,
    /// Bytes of the file already delivered: the next record starts here.
    pub offset: u64,
}

impl Cursor {
    /// The cursor's one line.
    pub(crate) fn to_line(&self) -> String {
        format!(
            "{{\"dev\":{},\"ino\":{},\"fingerprint\":\"{:016x}\",\"offset\":{}}}\n",
            self.dev, self.ino, self.fingerprint, self.offset
        )
    }

    /// Parses a cursor line; the error says what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Cursor, &'static str> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|_| "not JSON")?;
        let num = |k: &str| v.get(k).and_then(|x| x.as_u64()).ok_or("lacks a number");
        Ok(Cursor {
            dev: num("dev")?,
            ino: num("ino")?,
            fingerprint: v
                .get("fingerprint")
                .and_then(|x| x.as_str())
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or("lacks its fingerprint")?,
            offset: num("offset")?,
        })
    }
}

/// Reads the cursor at `path`: `None` when there is no such file.
pub(crate) fn load(path: &Path) -> Result<Option<Cursor>, String> {
    let label = path.display();
    let mut text = String::new();
    // Not a FIFO's open, which would wait for a writer: the cursor is a file ship writes.
    match crate::config::open_regular(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cursor {label}: {e}")),
        Ok(f) => f
            .take(4096)
            .read_to_string(&mut text)
            .map_err(|e| format!("cursor {label}: {e}"))?,
    };
    Cursor::parse(&text)
        .map(Some)
        .map_err(|why| format!("cursor {label}: {why}; delete it or give --from to start anew"))
}

/// `path` with `suffix` appended to its name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The lock file of the cursor at `path`.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    beside(path, ".lock")
}

/// Takes the cursor's one-writer lock: an exclusive `flock` on [`lock_path`] (created 0600,
/// never removed: removing it would let a third writer lock a new file while the second holds
/// the old). Held as long as the file returned stays open; the kernel lets go however the
/// process ends, SIGKILL included. `None` when another process holds it.
pub(crate) fn lock(path: &Path) -> io::Result<Option<File>> {
    use rustix::fs::{Mode, OFlags};
    let lock = lock_path(path);
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", lock.display()));
    // A FIFO or folder planted there is refused, and never blocks the open.
    let flags = OFlags::WRONLY | OFlags::CREATE;
    let f = crate::config::open_regular_with(&lock, flags, Mode::from_raw_mode(0o600))
        .map_err(named)?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(named(e.into())),
    }
}

/// Writes the cursor at `path` atomically and durably (the caller holds [`lock`]).
pub(crate) fn store(path: &Path, cursor: &Cursor) -> io::Result<()> {
    let tmp = beside(path, ".tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(cursor.to_line().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let c = Cursor {
            dev: 1,
            ino: u64::MAX,
            fingerprint: 0xabc,
            offset: 42,
        };
        assert_eq!(Cursor::parse(&c.to_line()), Ok(c.clone()));
        assert!(Cursor::parse("").is_err());
        assert!(Cursor::parse("{\"dev\":1}").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        assert_eq!(load(&p), Ok(None));
        store(&p, &c).unwrap();
        assert_eq!(load(&p), Ok(Some(c)));
        std::fs::write(&p, "junk").unwrap();
        assert!(load(&p).unwrap_err().contains("--from"));
    }

    #[test]
    fn one_lock_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        let held = lock(&p).unwrap().expect("free");
        // flock belongs to the open file: a second open, even in this process, is refused.
        assert!(lock(&p).unwrap().is_none());
        drop(held);
        assert!(lock(&p).unwrap().is_some());
    }
}
