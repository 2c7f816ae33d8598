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

/// Text that came from outside (a request, a log line, a sink's answer), shown safely: control
/// characters (escape sequences, `\r`, `\n`) and the bidirectional overrides and isolates
/// (U+202A–U+202E, U+2066–U+2069, which reorder what a terminal shows) are written escaped,
/// as `\u{1b}`, `\n` or `\u{202e}`, so a value can neither forge a line nor drive the terminal.
/// Use it for every value that did not come from ringhook itself: `info!("… {}", Escaped(uuid))`.
pub(crate) struct Escaped<'a>(pub &'a str);

/// True for a character [`Escaped`] writes escaped.
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        let mut rest = self.0;
        while let Some(i) = rest.find(needs_escape) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().expect("found at i");
            // `\n`, `\r`, `\t` as Rust writes them; the rest by code point.
            if c.is_control() {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                for e in c.escape_unicode() {
                    f.write_char(e)?;
                }
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// [`Escaped`], cut to its first [`Clipped::CHARS`] characters, the length told: for strings
/// of a peer that may send them as long as a whole message (a gateway's ids and error texts), so
/// that one cannot turn the operational log into pages.
#[cfg_attr(not(feature = "connect"), allow(dead_code))]
pub(crate) struct Clipped<'a>(pub &'a str);

#[cfg_attr(not(feature = "connect"), allow(dead_code))]
impl Clipped<'_> {
    pub(crate) const CHARS: usize = 200;
}

impl std::fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(Self::CHARS) {
            Some((i, _)) => write!(f, "{}… ({} bytes)", Escaped(&self.0[..i]), self.0.len()),
            None => Escaped(self.0).fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_cannot_forge_a_line_or_drive_the_terminal() {
        for (raw, shown) in [
            ("plain-uuid-1", "plain-uuid-1"),
            ("a\r\n2026 ERROR forged", "a\\r\\n2026 ERROR forged"),
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            ("\u{2066}x\u{2069}", "\\u{2066}x\\u{2069}"),
            ("ünïcödé ✓", "ünïcödé ✓"),
        ] {
            assert_eq!(Escaped(raw).to_string(), shown);
        }
    }

    #[test]
    fn clipped_text_tells_its_length() {
        assert_eq!(Clipped("short\n").to_string(), "short\\n");
        let long = "é".repeat(300);
        let shown = Clipped(&long).to_string();
        assert_eq!(shown, format!("{}… (600 bytes)", "é".repeat(200)));
    }
}
