//! The event log's disk thread: where the log's blocking file work runs while `serve` serves —
//! a batch's write and `fdatasync` (and its cut-back when they fail), the probe of an unwritable
//! log, the reopen after SIGHUP — so a disk that stalls for seconds (an SD card collecting its
//! garbage) never stalls the loop that answers handshakes, `/health` and `/metrics`.
//!
//! One thread, not a pool, and one job at a time: [`super::writer::EventLog`] hands a job over
//! only when the last one's result is back, so batches reach the file in order and a failed
//! batch is cut back before anything is written after it. The thread wakes the loop through a
//! `mio::Waker` when a job is done; it touches no socket and no state of the loop's.
//!
//! Why a thread and not io_uring: an `IORING_OP_FSYNC` is run by the kernel's own io-wq worker
//! threads all the same (fdatasync blocks wherever it runs), io_uring is often refused in
//! containers (seccomp) so this thread would be needed as the fallback anyway, and the handover
//! (a channel send and an eventfd write, a few microseconds) is small beside any real sync.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use super::line::Record;
use super::writer::{self, Commit};

/// Work for the disk.
pub(crate) enum DiskJob {
    /// Write the lines of the records whose verdict is [`Commit::Written`], then `fdatasync`.
    /// On failure, cut the file back to `synced_len`. With `cut_first`, cut back before writing
    /// (the last cut-back of a failed batch or probe may itself have failed).
    Append {
        file: Arc<File>,
        records: Vec<Record>,
        verdicts: Vec<Commit>,
        synced_len: u64,
        cut_first: bool,
    },
    /// Does the file take writes again? (See [`writer::EventLog::probe`].)
    Probe { file: Arc<File>, synced_len: u64 },
    /// SIGHUP: open the file at `path` again if it is no longer `file` (rotated), then probe the
    /// one kept when `probe` is set.
    Reopen {
        path: PathBuf,
        file: Arc<File>,
        synced_len: u64,
        probe: bool,
    },
}

/// What became of a job.
pub(crate) enum Done {
    Append {
        records: Vec<Record>,
        verdicts: Vec<Commit>,
        /// Bytes written and synced, or why not.
        result: io::Result<u64>,
        /// How long the `fdatasync` took, when it ran.
        sync: Option<Duration>,
    },
    Probe {
        ok: bool,
    },
    Reopen {
        /// The new file and the length of its whole lines, when the old one was rotated away.
        result: io::Result<Option<(File, u64)>>,
        /// The probe's verdict, when one was asked for.
        probed: Option<bool>,
    },
}

/// Runs `job` on the calling thread. `buf` gathers small lines into one write.
pub(crate) fn run(job: DiskJob, buf: &mut Vec<u8>) -> Done {
    match job {
        DiskJob::Append {
            file,
            records,
            verdicts,
            synced_len,
            cut_first,
        } => {
            let mut sync = None;
            let result = append(
                &file, &records, &verdicts, synced_len, cut_first, buf, &mut sync,
            );
            buf.clear();
            if buf.capacity() > 64 * 1024 {
                *buf = Vec::new();
            }
            Done::Append {
                records,
                verdicts,
                result,
                sync,
            }
        }
        DiskJob::Probe { file, synced_len } => Done::Probe {
            ok: probe(&file, synced_len),
        },
        DiskJob::Reopen {
            path,
            file,
            synced_len,
            probe: wanted,
        } => {
            let result = writer::reopen_at(&path, &file);
            let probed = wanted.then(|| match &result {
                Ok(Some((new, len))) => probe(new, *len),
                Ok(None) => probe(&file, synced_len),
                Err(_) => false,
            });
            Done::Reopen { result, probed }
        }
    }
}

fn append(
    mut file: &File,
    records: &[Record],
    verdicts: &[Commit],
    synced_len: u64,
    cut_first: bool,
    buf: &mut Vec<u8>,
    sync: &mut Option<Duration>,
) -> io::Result<u64> {
    if cut_first {
        file.set_len(synced_len)?;
    }
    let lines = records
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| **v == Commit::Written)
        .map(|(r, _)| r.line.as_slice());
    let mut written = 0u64;
    let result = writer::write_lines(&mut file, lines, buf, &mut written).and_then(|()| {
        let start = Instant::now();
        let synced = file.sync_data();
        *sync = Some(start.elapsed());
        synced
    });
    match result {
        Ok(()) => Ok(written),
        Err(e) => {
            // Cut back whatever part of the batch reached the file, so the next batch starts on
            // a line boundary. If even that fails, the next batch cuts first (and a torn tail is
            // cut at the next start).
            let _ = file.set_len(synced_len);
            Err(e)
        }
    }
}

/// A block of spaces (so it needs a new block, as a batch would) written and synced, then cut
/// back to `synced_len` whatever happened. A crash in between leaves only a torn tail, which
/// opening cuts. True when both worked.
fn probe(mut file: &File, synced_len: u64) -> bool {
    let wrote = file
        .write_all(&[b' '; PROBE_BYTES])
        .and_then(|()| file.sync_data());
    let cut = file.set_len(synced_len).and_then(|()| file.sync_data());
    wrote.is_ok() && cut.is_ok()
}

/// What a probe writes: one page, so a full disk refuses it even where the last page has room.
const PROBE_BYTES: usize = 4096;

/// The disk thread: jobs in, results out, the loop woken for each.
pub(crate) struct Thread {
    jobs: Sender<DiskJob>,
    done: Receiver<Done>,
}

impl Thread {
    /// Starts the thread; `wake` is called after each job is done.
    pub(crate) fn spawn(wake: impl Fn() + Send + 'static) -> io::Result<Thread> {
        let (jobs, todo) = channel::<DiskJob>();
        let (finished, done) = channel();
        std::thread::Builder::new()
            .name("ringhook-disk".into())
            // It only calls write, fdatasync and ftruncate: a small stack is plenty.
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut buf = Vec::new();
                for job in todo {
                    if finished.send(run(job, &mut buf)).is_err() {
                        return;
                    }
                    wake();
                }
            })?;
        Ok(Thread { jobs, done })
    }

    /// Hands `job` over. (If the thread is gone, which only a panic in it could cause, the job
    /// comes back failed at once.)
    pub(crate) fn send(&self, job: DiskJob) -> Result<(), DiskJob> {
        self.jobs.send(job).map_err(|e| e.0)
    }

    /// The finished job, if it is done.
    pub(crate) fn try_done(&self) -> Option<Done> {
        self.done.try_recv().ok()
    }

    /// Waits for the finished job (tests, and the end of a run).
    #[cfg(test)]
    pub(crate) fn wait_done(&self) -> Option<Done> {
        self.done.recv().ok()
    }
}
