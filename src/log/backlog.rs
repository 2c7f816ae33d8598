//! The complete lines a follower has still to read: the rest of the file it is in, and every
//! later file of the log's chain it will read after it (the rotated copies written after its
//! file, then the log at the path). `ship` reports them as its lag.
//!
//! Counted without reading any byte twice while the files keep their lines: each file's
//! newlines are counted up to where it ended at the last count, and the next count reads only
//! what was appended since. A line the follower returns takes one off its file's count; when it
//! moves on to the next file, that file's count (already made) becomes the current one. A file
//! whose first line changed, or that is shorter than what was counted (cut back), is counted
//! again from its start. Each count costs a listing of the log's folder, a `stat` and a read of
//! the first 4 KiB per later file, and a read of the bytes appended since the last count.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::follow::{head_of, open_copy};
use super::rotated::Copy;

const CHUNK: usize = 64 << 10;

/// `lines` newlines lie between `from` and `to` in one file of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted {
    dev: u64,
    ino: u64,
    /// The hash of the file's first line when counted (`head_of`): another first line is
    /// another file, or the same one cut and written again.
    head: Option<u64>,
    from: u64,
    to: u64,
    lines: u64,
}

impl Counted {
    fn at(dev: u64, ino: u64, head: Option<u64>, offset: u64) -> Counted {
        Counted {
            dev,
            ino,
            head,
            from: offset,
            to: offset,
            lines: 0,
        }
    }

    fn is(&self, dev: u64, ino: u64) -> bool {
        (self.dev, self.ino) == (dev, ino)
    }

    /// Adds the newlines of `file` after `to`, up to its end now.
    fn count_on(&mut self, file: &File) -> io::Result<()> {
        let mut chunk = vec![0; CHUNK];
        loop {
            let got = file.read_at(&mut chunk, self.to)?;
            if got == 0 {
                return Ok(());
            }
            self.lines += chunk[..got].iter().filter(|&&b| b == b'\n').count() as u64;
            self.to += got as u64;
        }
    }
}

/// What a follower has still to read, file by file: the one it reads first, then the later
/// ones in the order it will read them.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    files: Vec<Counted>,
}

impl Backlog {
    /// The follower returned the line of file `(dev, ino)` that ends at `offset`.
    pub(super) fn took(&mut self, dev: u64, ino: u64, offset: u64) {
        let Some(c) = self.files.first_mut().filter(|c| c.is(dev, ino)) else {
            return;
        };
        if c.from < offset && offset <= c.to {
            c.lines = c.lines.saturating_sub(1);
            c.from = offset;
        } else {
            // Past what was counted (appended since): nothing counted lies before it.
            *c = Counted::at(dev, ino, c.head, offset);
        }
    }

    /// The follower now reads file `(dev, ino)` from `offset`: a later file from its start
    /// keeps its count, and the files before it are done; anything else is counted anew.
    pub(super) fn moved(&mut self, dev: u64, ino: u64, offset: u64) {
        match self.files.iter().position(|c| c.is(dev, ino)) {
            Some(i) if self.files[i].from == offset => {
                self.files.drain(..i);
            }
            _ => self.files.clear(),
        }
    }

    /// The complete lines after `offset` in `file` (`(dev, ino)`, where the follower is) and in
    /// every file of `later`, the files it will read after it, in order.
    pub(super) fn count(
        &mut self,
        (dev, ino): (u64, u64),
        file: &File,
        offset: u64,
        later: &[Copy],
    ) -> io::Result<u64> {
        let head = head_of(file)?;
        let len = file.metadata()?.len();
        match self.files.first() {
            Some(c) if c.is(dev, ino) && c.from == offset && c.head == head && len >= c.to => {}
            _ => self.files = vec![Counted::at(dev, ino, head, offset)],
        }
        let mut total = 0;
        {
            let here = &mut self.files[0];
            here.count_on(file)?;
            total += here.lines;
        }
        let known: Vec<Counted> = self.files.drain(1..).collect();
        for copy in later {
            // Renamed or gone meanwhile: the next count finds it where it is.
            let Some(f) = open_copy(copy) else {
                continue;
            };
            let head = head_of(&f)?;
            let mut c = known
                .iter()
                .find(|k| k.is(copy.dev, copy.ino) && k.head == head && copy.len >= k.to)
                .cloned()
                .unwrap_or_else(|| Counted::at(copy.dev, copy.ino, head, 0));
            c.count_on(&f)?;
            total += c.lines;
            self.files.push(c);
        }
        Ok(total)
    }
}
