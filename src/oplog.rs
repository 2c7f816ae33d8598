//! The operational log: one line per notable thing on stderr, `TIME LEVEL message`.
//!
//! Kept separate from the event log (stdout or `--log-file`), which holds only notifications.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences the operational log (for fuzzing and property tests, which reject millions of
/// requests on purpose).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Writes one line to stderr. A failing stderr is ignored: the receiver must not stop for it.
pub(crate) fn emit(level: &str, args: std::fmt::Arguments<'_>) {
    if QUIET.load(Ordering::Relaxed) {
        return;
    }
    let now = humantime::format_rfc3339_millis(SystemTime::now());
    // Stderr is unbuffered: formatting straight into it costs one write(2) per piece (8 for a
    // duplicate's line). One buffer, one write; a line under PIPE_BUF also cannot interleave
    // with the lines of `--exec` children sharing the pipe.
    let mut line = Vec::with_capacity(128);
    let _ = writeln!(line, "{now} {level} {args}");
    let _ = std::io::stderr().lock().write_all(&line);
}

/// Logs an informational line.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::oplog::emit("INFO", format_args!($($t)*)) };
}

/// Logs a warning.
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::oplog::emit("WARN", format_args!($($t)*)) };
}

/// Logs an error the program survives.
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::oplog::emit("ERROR", format_args!($($t)*)) };
}
