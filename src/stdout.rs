//! Command output on stdout, through one helper. A reader that went away (`ringhook list | head
//! -c1`) is not an error: the command stops quietly with status 0, as ripgrep does, where
//! `println!` would panic (and release builds abort on panic).
//!
//! The event log `serve` writes to stdout is not command output: `serve::event_log` answers 503
//! while it cannot write.

use std::io::{ErrorKind, Write};

use crate::error::Error;

/// Writes `text` to stdout whole and flushes it. A closed pipe gives [`Error::StdoutClosed`],
/// which ends the command quietly; any other failure is a runtime error.
pub(crate) fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(Error::StdoutClosed),
        Err(e) => Err(Error::runtime(format!("cannot write to stdout: {e}"))),
    }
}

/// Writes `value` as one line of JSON.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let mut line = serde_json::to_string(value).expect("plain structs serialize");
    line.push('\n');
    print(&line)
}
