//! The log follower: complete lines of the event log, in order, like `tail -F`, across every
//! rotated copy.
//!
//! Open it at a [`Cursor`] (or the start or end of the file), then call [`Follower::next_line`]
//! until it says there is nothing more for now, and [`Follower::wait`] before asking again. It
//! never returns a line without its final `\n` (a line still being written). The log's files are
//! a chain, oldest first ([`rotated::chain`]): the rotated copies, then the file at the path.
//! Reading one to its end, it goes on with the next once the writer has moved past it (a later
//! file has bytes), so a follower that was stopped or lagging while the log was renamed twice
//! reads `events.log.2`, then `events.log.1`, then the log. A file cut back under it
//! (copytruncate) is read on from the copy beside it that holds its lines (same first line);
//! bytes no copy holds are lost and said so on the operational log with their count, before the
//! cut file is read again from its start. Between looks it waits on inotify (see [`Wake`]): a
//! line is seen when it is written. The looks themselves stay on a schedule as the bound, quick
//! while lines keep coming ([`QUICK_POLL`]) and doubling to [`POLL`] once the log is quiet; each
//! costs one `fstat` and one `stat` (and a listing of the folder while a rotated file is read).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::backlog::Backlog;
use super::cursor::Cursor;
use super::rotated::{self, folder, log_or_copy};
use crate::oplog::Escaped;

/// How often a caught-up follower looks for more once the log is quiet.
pub(crate) const POLL: Duration = Duration::from_millis(200);
/// The first wait after a line was read; each empty look doubles it, up to [`POLL`].
const QUICK_POLL: Duration = Duration::from_millis(10);
/// Longest line accepted; `serve --max-body` stays far below (a longer line is not a log's).
const MAX_LINE: usize = 64 << 20;
const CHUNK: usize = 64 << 10;

/// Where to start reading.
#[derive(Debug, Clone)]
pub(crate) enum Start {
    /// The first byte of the file at the path.
    Beginning,
    /// After the last complete line now in the file at the path.
    End,
    /// Where a cursor points: the path or a rotated sibling (`FILE.1`, `FILE-20261202`).
    At(Cursor),
}

/// One complete line and the cursor just after it.
#[derive(Debug, Clone)]
pub(crate) struct FollowedLine {
    /// The bytes, `\n` excluded.
    pub bytes: Vec<u8>,
    /// Where reading resumes after this line.
    pub after: Cursor,
}

/// Follows one log path across rotations.
pub(crate) struct Follower {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    fingerprint: Option<u64>,
    /// The hash of the file's first line or of its first 4 KiB, whichever is shorter: checked
    /// after every read, cheaply, so bytes of a file cut and written again are never taken for
    /// the old file's.
    head: Option<u64>,
    /// File offset of `buf[0]`.
    base: u64,
    buf: Vec<u8>,
    /// Bytes of `buf` already returned.
    used: usize,
    /// The largest size this file was seen to have: what a cut took unread is counted from it.
    seen: u64,
    /// Set when the writer has moved past this file (a later one has bytes): one more read,
    /// then the next file.
    rotated: bool,
    /// The next [`Follower::wait`].
    pause: Duration,
    /// Set when `next_line` found nothing more: the next bytes read are checked against the
    /// fingerprint first.
    waited: bool,
    wake: Wake,
    /// The lines not yet read, as last counted ([`Follower::unread`]).
    backlog: Backlog,
}

/// Ends a follower's wait early when the log's file (or a rotated copy, or a new file at its
/// path) changes: inotify on the log's folder, events for other files ignored. Without inotify
/// (none left, or a file system whose changes it does not see, such as NFS) the wait is simply
/// the poll interval.
struct Wake {
    fd: Option<rustix::fd::OwnedFd>,
    /// The log's file name: events for names starting with it count (`events.log`,
    /// `events.log.1`), except ringhook's own files beside it.
    name: Vec<u8>,
}

impl Wake {
    fn watch(path: &Path) -> Wake {
        use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
        let flags = WatchFlags::MODIFY
            | WatchFlags::CREATE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DELETE;
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .ok()
            .filter(|fd| inotify::add_watch(fd, folder(path), flags).is_ok());
        let name = path.file_name().map_or_else(Vec::new, |n| {
            std::os::unix::ffi::OsStrExt::as_bytes(n).to_vec()
        });
        Wake { fd, name }
    }

    /// Waits at most `d`, less when the log changes.
    fn sleep(&self, d: Duration) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let Some(fd) = &self.fd else {
            return std::thread::sleep(d);
        };
        let end = std::time::Instant::now() + d;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let t = Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = [PollFd::new(fd, PollFlags::IN)];
            match poll(&mut fds, Some(&t)) {
                Ok(0) => return,
                Ok(_) => {}
                // A signal (the caller looks at its stop flag) or worse: look now.
                Err(_) => return,
            }
            let mut relevant = false;
            let mut events = rustix::fs::inotify::Reader::new(fd, &mut buf);
            // Every event queued, until the read would block.
            while let Ok(e) = events.next() {
                let overflow = e
                    .events()
                    .contains(rustix::fs::inotify::ReadFlags::QUEUE_OVERFLOW);
                let file = e.file_name().map_or(&b""[..], |n| n.to_bytes());
                relevant |= overflow || log_or_copy(file, &self.name);
            }
            if relevant {
                return;
            }
        }
    }
}

/// FNV-1a, 64 bits: stable across releases (std's hasher is not), enough to tell files apart.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The fingerprint of `file`: the hash of its first complete line, `None` before there is one.
fn fingerprint_of(file: &File) -> io::Result<Option<u64>> {
    let mut line = Vec::new();
    let mut chunk = vec![0; 4096];
    loop {
        let n = file.read_at(&mut chunk, line.len() as u64)?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&chunk[..=i]);
            return Ok(Some(fnv1a(&line)));
        }
        line.extend_from_slice(&chunk[..n]);
        if line.len() > MAX_LINE {
            return Err(io::Error::other("first line longer than 64 MiB"));
        }
    }
}

/// The hash of `file`'s first line, or of its first 4 KiB when the line is longer: one read.
pub(super) fn head_of(file: &File) -> io::Result<Option<u64>> {
    let mut chunk = [0; 4096];
    let mut n = 0;
    while n < chunk.len() {
        match file.read_at(&mut chunk[n..], n as u64)? {
            0 => break,
            got => n += got,
        }
        if chunk[..n].contains(&b'\n') {
            break;
        }
    }
    Ok(match chunk[..n].iter().position(|&b| b == b'\n') {
        Some(i) => Some(fnv1a(&chunk[..=i])),
        None if n == chunk.len() => Some(fnv1a(&chunk)),
        None => None,
    })
}

/// Shows a path from the folder's listing (any bytes) safely.
fn shown(p: &Path) -> String {
    Escaped(&p.to_string_lossy()).to_string()
}

/// Opens `c`'s path and checks it is still that file (a rename may have come in between). Never
/// waits: a FIFO put at the path after the look opens at once, and is not `c`.
pub(super) fn open_copy(c: &rotated::Copy) -> Option<File> {
    try_open_copy(c).ok().flatten()
}

/// [`open_copy`], telling a file gone or renamed meanwhile (`None`: a new listing finds it)
/// from one still there that cannot be opened (not permitted, say): that error, naming it.
fn try_open_copy(c: &rotated::Copy) -> io::Result<Option<File>> {
    match crate::config::open_regular(&c.path) {
        Ok(f) => {
            let m = f.metadata()?;
            Ok(c.is(m.dev(), m.ino()).then_some(f))
        }
        Err(e) => match std::fs::metadata(&c.path) {
            Ok(m) if c.is(m.dev(), m.ino()) => {
                Err(io::Error::new(e.kind(), format!("{}: {e}", shown(&c.path))))
            }
            _ => Ok(None),
        },
    }
}

impl Follower {
    /// Opens `path` at `start`. A cursor is looked for among the log's files by device, inode
    /// and first line; failing that, in a copy with its first line (copytruncate's copy). One
    /// that matches no file is an error naming the cursor: replaying from zero is a decision for
    /// `--from`, not a guess.
    pub(crate) fn open(path: &Path, start: &Start) -> Result<Follower, String> {
        let label = path.display();
        let (file, offset) = match start {
            Start::Beginning | Start::End => {
                // A FIFO (or a device) is no log: opening one would wait for a writer.
                let file =
                    crate::config::open_regular(path).map_err(|e| format!("{label}: {e}"))?;
                (file, 0)
            }
            Start::At(c) => {
                let chain = rotated::chain(path);
                let holds = |same: bool| {
                    chain.iter().find_map(|cp| {
                        if cp.is(c.dev, c.ino) != same || cp.len < c.offset {
                            return None;
                        }
                        let f = open_copy(cp)?;
                        (fingerprint_of(&f).ok()? == Some(c.fingerprint)).then_some((f, cp))
                    })
                };
                let file = match holds(true) {
                    Some((f, _)) => f,
                    None => {
                        let (f, cp) = holds(false).ok_or_else(|| {
                            format!(
                                "the cursor (file {}:{}, offset {}) matches neither {label} nor a \
                                 rotated copy beside it; choose where to start with --from start, \
                                 end, a time or a uuid",
                                c.dev, c.ino, c.offset
                            )
                        })?;
                        info!(
                            "the cursor's file was copied to {} and cut (copytruncate): reading on \
                             from the copy",
                            shown(&cp.path)
                        );
                        f
                    }
                };
                (file, c.offset)
            }
        };
        let m = file.metadata().map_err(|e| format!("{label}: {e}"))?;
        let mut f = Follower {
            path: path.to_path_buf(),
            fingerprint: fingerprint_of(&file).map_err(|e| format!("{label}: {e}"))?,
            head: head_of(&file).map_err(|e| format!("{label}: {e}"))?,
            file,
            dev: m.dev(),
            ino: m.ino(),
            base: offset,
            buf: Vec::new(),
            used: 0,
            seen: m.len(),
            rotated: false,
            pause: QUICK_POLL,
            waited: false,
            wake: Wake::watch(path),
            backlog: Backlog::default(),
        };
        f.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| format!("{label}: {e}"))?;
        if let Start::End = start {
            while f
                .next_line()
                .map_err(|e| format!("{label}: {e}"))?
                .is_some()
            {}
        }
        Ok(f)
    }

    /// Where reading resumes: just after the last line returned.
    pub(crate) fn cursor(&self) -> Cursor {
        Cursor {
            dev: self.dev,
            ino: self.ino,
            fingerprint: self.fingerprint.unwrap_or(0),
            offset: self.base + self.used as u64,
        }
    }

    /// The next complete line, or `None` when there is none yet (call [`Follower::wait`]).
    pub(crate) fn next_line(&mut self) -> io::Result<Option<FollowedLine>> {
        // Bytes after `used` already searched for a `\n` in vain: a long line is searched once,
        // not again from its start after each read (quadratic: a minute for 32 MB).
        let mut searched = 0;
        loop {
            let from = self.used + std::mem::take(&mut searched);
            if let Some(i) = self.buf[from..].iter().position(|&b| b == b'\n') {
                let i = from - self.used + i;
                let bytes = self.buf[self.used..self.used + i].to_vec();
                self.used += i + 1;
                if self.fingerprint.is_none() {
                    self.fingerprint = fingerprint_of(&self.file)?;
                    self.head = head_of(&self.file)?;
                }
                self.pause = QUICK_POLL;
                let at = self.cursor();
                self.backlog.took(at.dev, at.ino, at.offset);
                return Ok(Some(FollowedLine {
                    bytes,
                    after: self.cursor(),
                }));
            }
            // Keep the partial line, drop what was returned, read more.
            self.buf.drain(..self.used);
            self.base += self.used as u64;
            self.used = 0;
            if self.buf.len() > MAX_LINE {
                return Err(io::Error::other(format!(
                    "a line longer than 64 MiB at byte {} of {}",
                    self.base,
                    self.path.display()
                )));
            }
            let len = self.buf.len();
            self.buf.resize(len + CHUNK, 0);
            let n = self.file.read(&mut self.buf[len..])?;
            self.buf.truncate(len + n);
            if n > 0 {
                // Is this still the file that was being read? A copytruncate refilled past the
                // offset (while this follower lagged, or before this look) would otherwise be
                // read from the middle of a line. After a wait, the whole first line is
                // compared; otherwise its first 4 KiB, one read per chunk.
                let waited = std::mem::take(&mut self.waited);
                let changed = match waited {
                    true => {
                        self.fingerprint.is_some()
                            && fingerprint_of(&self.file)? != self.fingerprint
                    }
                    false => self.head.is_some() && head_of(&self.file)? != self.head,
                };
                if changed {
                    self.buf.truncate(len);
                    self.cut()?;
                    continue;
                }
                self.seen = self.seen.max(self.base + self.buf.len() as u64);
                // The bytes before this read hold no `\n` (searched above, or none).
                searched = len;
                continue;
            }
            // At the end of this file: has it shrunk, or been replaced at the path?
            let size = self.file.metadata()?.len();
            let end = self.base + self.buf.len() as u64;
            // Shrunk, or cut and written again before this poll: its first line changed.
            if size < end || (end > 0 && fingerprint_of(&self.file)? != self.fingerprint) {
                self.cut()?;
                continue;
            }
            self.seen = self.seen.max(size);
            let here = std::fs::metadata(&self.path)
                .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
            if !here {
                if let Some(next) = self.next_file() {
                    // The writer moves on only after its last write here: one more read of this
                    // file after seeing a later one has bytes, then the next.
                    if std::mem::replace(&mut self.rotated, true) {
                        // One that is there and cannot be read stops the follower: going on
                        // would skip its lines; looking again and again would spin.
                        let Some(file) = try_open_copy(&next)? else {
                            // Renamed meanwhile: look again.
                            self.rotated = false;
                            continue;
                        };
                        if !self.buf.is_empty() {
                            warn!(
                                "{} ended with a torn last line of {} bytes; skipped",
                                shown(&self.path),
                                self.buf.len()
                            );
                        }
                        info!(
                            "{} was rotated: following {}",
                            self.path.display(),
                            shown(&next.path)
                        );
                        self.restart(Some(file), 0)?;
                    }
                    continue;
                }
            }
            self.waited = true;
            return Ok(None);
        }
    }

    /// The file after this one in the log's chain, once the writer has moved past this one (a
    /// later file has bytes); `None` while this one may still grow. A file no longer beside the
    /// log (deleted, compressed) is placed by its modification time.
    fn next_file(&self) -> Option<rotated::Copy> {
        let later = self.later_files();
        later.iter().any(|c| c.len > 0).then(|| later[0].clone())
    }

    /// The files of the log written after this one, in order: the ones it reads next.
    fn later_files(&self) -> Vec<rotated::Copy> {
        self.files_after(self.dev, self.ino)
    }

    /// The files of the log written after file `(dev, ino)` (this one, or a copy of it).
    fn files_after(&self, dev: u64, ino: u64) -> Vec<rotated::Copy> {
        let mut chain = rotated::chain(&self.path);
        let i = match chain.iter().position(|c| c.is(dev, ino)) {
            Some(i) => i + 1,
            None => {
                let Ok(m) = self.file.metadata() else {
                    return vec![];
                };
                let t = (m.mtime(), m.mtime_nsec());
                // The file at the path is always later.
                let live =
                    chain.len() - usize::from(chain.last().is_some_and(|c| c.path == self.path));
                chain[..live].partition_point(|c| c.mtime < t)
            }
        };
        chain.split_off(i)
    }

    /// The file at hand was cut back (copytruncate, or `: > log`). A copy beside the log that
    /// starts with its first line and reaches the cursor holds the rest: read on there (then the
    /// later files, then the cut file from its start). Bytes it was seen to have that no copy
    /// holds are lost: a warning counts them.
    fn cut(&mut self) -> io::Result<()> {
        let at = self.base;
        match self.copy_holding(at) {
            Some((file, c)) => {
                let lost = self.seen.saturating_sub(c.len);
                if lost > 0 {
                    warn!(
                        "{} was copied to {} and truncated (copytruncate): {lost} bytes written \
                         between the copy and the cut could not be read",
                        self.path.display(),
                        shown(&c.path)
                    );
                } else {
                    info!(
                        "{} was copied to {} and truncated (copytruncate): reading on from the copy",
                        self.path.display(),
                        shown(&c.path)
                    );
                }
                let fingerprint = self.fingerprint;
                self.restart(Some(file), at)?;
                self.fingerprint = fingerprint;
            }
            None => {
                let lost = self.seen.saturating_sub(at);
                if lost > 0 {
                    warn!(
                        "{} was truncated with {lost} bytes not yet read and no copy beside it \
                         holds them (copytruncate with immediate compression?): they are lost; \
                         reading it again from its start",
                        self.path.display()
                    );
                } else {
                    warn!(
                        "{} was truncated (copytruncate?): reading it again from its start",
                        self.path.display()
                    );
                }
                self.restart(None, 0)?;
            }
        }
        Ok(())
    }

    /// A copy beside the log that starts with this file's first line and reaches `at`: where a
    /// file cut back (copytruncate) is read on from.
    fn copy_holding(&self, at: u64) -> Option<(File, rotated::Copy)> {
        let fp = self.fingerprint?;
        rotated::copies(&self.path).into_iter().find_map(|c| {
            if c.is(self.dev, self.ino) || c.len < at {
                return None;
            }
            let f = open_copy(&c)?;
            (fingerprint_of(&f).ok()? == Some(fp)).then_some((f, c))
        })
    }

    /// Reads `file` (or the file at hand) from `offset` on.
    fn restart(&mut self, file: Option<File>, offset: u64) -> io::Result<()> {
        if let Some(f) = file {
            let m = f.metadata()?;
            self.dev = m.dev();
            self.ino = m.ino();
            self.file = f;
        }
        self.file.seek(SeekFrom::Start(offset))?;
        self.fingerprint = fingerprint_of(&self.file)?;
        self.head = head_of(&self.file)?;
        self.seen = self.file.metadata()?.len();
        self.base = offset;
        self.buf.clear();
        self.used = 0;
        self.rotated = false;
        self.backlog.moved(self.dev, self.ino, offset);
        Ok(())
    }

    /// Sleeps before the next look (call after `next_line` returned `None`): [`QUICK_POLL`]
    /// after a line, doubling with each empty look up to [`POLL`].
    pub(crate) fn wait(&mut self) {
        self.wake.sleep(self.pause);
        self.pause = (self.pause * 2).min(POLL);
    }

    /// Complete lines not yet read: the rest of this file and every later file of the log (the
    /// rotated copies written after it, then the file at the path). Counted incrementally (see
    /// [`Backlog`]): what was counted before is not read again.
    pub(crate) fn unread(&mut self) -> io::Result<u64> {
        let at = self.cursor();
        // Cut back under it (copytruncate) and not yet noticed: it will read on from the copy
        // that holds this file's lines, then the files after that copy (the cut one included).
        let cut = self.file.metadata()?.len() < at.offset
            || (self.head.is_some() && head_of(&self.file)? != self.head);
        if cut {
            if let Some((f, c)) = self.copy_holding(at.offset) {
                let later = self.files_after(c.dev, c.ino);
                return self.backlog.count((c.dev, c.ino), &f, at.offset, &later);
            }
            // No copy holds the rest: it returns the lines it had already read into memory,
            // then reads the cut file again from its start (see `cut`).
            let held = self.buf[self.used..]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            let later = self.later_files();
            let rest = self
                .backlog
                .count((self.dev, self.ino), &self.file, 0, &later)?;
            return Ok(held + rest);
        }
        let later = self.later_files();
        self.backlog
            .count((self.dev, self.ino), &self.file, at.offset, &later)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(f: &mut Follower) -> Vec<String> {
        let mut out = vec![];
        while let Some(l) = f.next_line().unwrap() {
            out.push(String::from_utf8(l.bytes).unwrap());
        }
        out
    }

    #[test]
    fn torn_tail_waits_for_its_newline_and_cursor_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.log");
        let mut w = File::create(&p).unwrap();
        w.write_all(b"a\nb\nc").unwrap();
        let mut f = Follower::open(&p, &Start::Beginning).unwrap();
        assert_eq!(lines(&mut f), ["a", "b"]);
        w.write_all(b"c\n").unwrap();
        assert_eq!(lines(&mut f), ["cc"]);
        let c = f.cursor();
        assert_eq!(c.offset, 7);
        w.write_all(b"d\n").unwrap();
        let mut g = Follower::open(&p, &Start::At(c.clone())).unwrap();
        assert_eq!(lines(&mut g), ["d"]);
        let mut e = Follower::open(&p, &Start::End).unwrap();
        assert_eq!(lines(&mut e), Vec::<String>::new());
        // Another file with another first line does not match the cursor.
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "x\ny\nz\nw\n").unwrap();
        assert!(Follower::open(&p, &Start::At(c)).is_err());
    }

    #[test]
    fn rotation_is_finished_then_the_new_file_taken() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.log");
        let mut w = File::create(&p).unwrap();
        w.write_all(b"1\n").unwrap();
        let mut f = Follower::open(&p, &Start::Beginning).unwrap();
        assert_eq!(lines(&mut f), ["1"]);
        std::fs::rename(&p, dir.path().join("e.log.1")).unwrap();
        w.write_all(b"2\n").unwrap();
        // The new file is empty: the old one may still grow.
        std::fs::write(&p, "").unwrap();
        assert_eq!(lines(&mut f), ["2"]);
        w.write_all(b"3\n").unwrap();
        std::fs::write(&p, "4\n").unwrap();
        assert_eq!(lines(&mut f), ["3", "4"]);
        // Copytruncate, even refilled to the same size: read again from its start.
        std::fs::write(&p, "5\n").unwrap();
        assert_eq!(lines(&mut f), ["5"]);
        std::fs::write(&p, "").unwrap();
        assert_eq!(lines(&mut f), Vec::<String>::new());
        std::fs::write(&p, "6\n7\n").unwrap();
        assert_eq!(lines(&mut f), ["6", "7"]);
        // Cut and written again past where reading had got to before the next look: from its
        // start, not from the old offset (which would give "10" first, then all again).
        std::fs::write(&p, "8\n9\n10\n").unwrap();
        assert_eq!(lines(&mut f), ["8", "9", "10"]);
    }

    #[test]
    fn a_change_to_the_log_ends_the_wait_and_other_files_do_not() {
        use std::time::Instant;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.log");
        std::fs::write(&p, "1\n").unwrap();
        let wake = Wake::watch(&p);
        assert!(wake.fd.is_some(), "inotify unavailable here");
        let long = Duration::from_secs(60);
        // Events queued before the wait end it at once: an append, a rotated copy, a new file.
        for change in [
            |p: &Path| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(p)
                    .unwrap()
                    .write_all(b"2\n")
                    .unwrap()
            },
            |p: &Path| std::fs::rename(p, p.with_extension("log.1")).unwrap(),
            |p: &Path| std::fs::write(p, "3\n").unwrap(),
        ] {
            change(&p);
            let t = Instant::now();
            wake.sleep(long);
            assert!(t.elapsed() < long, "not woken");
        }
        // Other files in the folder, and ringhook's own beside the log, do not.
        std::fs::write(dir.path().join("other.txt"), "x").unwrap();
        std::fs::write(dir.path().join("e.log.cursor"), "x").unwrap();
        std::fs::write(dir.path().join("e.log.dead-letter"), "x").unwrap();
        let short = Duration::from_millis(200);
        let t = Instant::now();
        wake.sleep(short);
        assert!(t.elapsed() >= short, "woken by another file");
    }

    #[test]
    fn unread_counts_this_file_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.log");
        let at = |n: &str| dir.path().join(n);
        let append = |p: &Path, b: &[u8]| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(p)
                .unwrap()
                .write_all(b)
                .unwrap()
        };
        std::fs::write(&p, "1\n2\n").unwrap();
        let mut f = Follower::open(&p, &Start::Beginning).unwrap();
        assert_eq!(f.unread().unwrap(), 2);
        f.next_line().unwrap().unwrap();
        assert_eq!(f.unread().unwrap(), 1);
        append(&p, b"3\n4");
        assert_eq!(f.unread().unwrap(), 2, "a torn last line is not a line yet");
        // Renamed twice while behind: the copies written after this file count, then the log.
        std::fs::rename(&p, at("e.log.1")).unwrap();
        append(&at("e.log.1"), b"\n");
        std::fs::write(&p, "5\n6\n").unwrap();
        std::fs::rename(at("e.log.1"), at("e.log.2")).unwrap();
        std::fs::rename(&p, at("e.log.1")).unwrap();
        std::fs::write(&p, "7\n").unwrap();
        assert_eq!(f.unread().unwrap(), 6);
        // Older copies and ringhook's own files beside the log do not.
        std::fs::write(at("e.log.cursor"), "x\n").unwrap();
        assert_eq!(f.unread().unwrap(), 6);
        let mut left = 6;
        while f.next_line().unwrap().is_some() {
            left -= 1;
            assert_eq!(f.unread().unwrap(), left);
        }
        assert_eq!(left, 0);
        append(&p, b"8\n");
        assert_eq!(f.unread().unwrap(), 1);
        // Copied and cut (copytruncate) before the follower looks: the rest is in the copy, then
        // the cut file holds the new lines.
        append(&p, b"9\n");
        std::fs::copy(&p, at("e.log.0")).unwrap();
        std::fs::write(&p, "10\n11\n12\n").unwrap();
        assert_eq!(f.unread().unwrap(), 5);
        let mut left = 5;
        while f.next_line().unwrap().is_some() {
            left -= 1;
            assert_eq!(f.unread().unwrap(), left);
        }
        assert_eq!(left, 0);
    }

    #[test]
    fn a_cursor_finds_the_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.log");
        std::fs::write(&p, "1\n2\n").unwrap();
        let mut f = Follower::open(&p, &Start::Beginning).unwrap();
        f.next_line().unwrap().unwrap();
        let c = f.cursor();
        std::fs::rename(&p, dir.path().join("e.log-2026")).unwrap();
        std::fs::write(&p, "3\n").unwrap();
        let mut g = Follower::open(&p, &Start::At(c)).unwrap();
        assert_eq!(lines(&mut g), ["2", "3"]);
    }

    #[test]
    fn two_renames_are_read_in_order_and_a_copy_holds_what_was_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.log");
        let at = |n: &str| dir.path().join(n);
        std::fs::write(&p, "a1\n").unwrap();
        let mut f = Follower::open(&p, &Start::Beginning).unwrap();
        assert_eq!(lines(&mut f), ["a1"]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"a2\n")
            .unwrap();
        std::fs::rename(&p, at("e.log.1")).unwrap();
        std::fs::write(&p, "b1\nb2\n").unwrap();
        std::fs::rename(at("e.log.1"), at("e.log.2")).unwrap();
        std::fs::rename(&p, at("e.log.1")).unwrap();
        std::fs::write(&p, "c1\n").unwrap();
        assert_eq!(lines(&mut f), ["a2", "b1", "b2", "c1"]);
        // copytruncate with the follower behind: the copy holds the rest.
        let mut w = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        w.write_all(b"c2\nc3\n").unwrap();
        std::fs::copy(&p, at("e.log.0")).unwrap();
        w.set_len(0).unwrap();
        w.write_all(b"d1\n").unwrap();
        assert_eq!(lines(&mut f), ["c2", "c3", "d1"]);
        // A file of the log deleted while read (compressed away): the later ones still follow.
        std::fs::rename(&p, at("e.log.x")).unwrap();
        w.write_all(b"d2\n").unwrap();
        std::fs::remove_file(at("e.log.x")).unwrap();
        std::fs::write(&p, "e1\n").unwrap();
        assert_eq!(lines(&mut f), ["d2", "e1"]);
    }
}
