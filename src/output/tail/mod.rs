//! `ringhook tail`: the event log, one readable line per event, newest last.
//!
//! This folder owns reading the log backwards for the last `-n` events, following it (`-f`),
//! the filter, colour and the output; [`format`] turns a line into text, purely. It never writes
//! the log. A closed stdout (`| head`) ends it quietly, as with `tail` itself.

pub(crate) mod format;

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::cli::{self, Flags};
use crate::config::{Vars, parse_count};
use crate::error::Error;
use crate::log::follow::{Follower, Start};
use crate::log::pattern::EventPattern;
use format::Entry;

/// Bytes read per step when reading the log backwards.
const BLOCK: u64 = 64 * 1024;
/// The longest line `-n` shows: four times `serve`'s default `--max-body` (1 MiB), room for the
/// envelope and an invalid body's escapes. A longer line is skipped with a warning giving its
/// size, never read whole: the backward scan keeps at most this much of a line in memory and
/// reads each byte once (a 50 MB line cost 25 s and 157 MB before it was bounded).
const MAX_SHOWN: usize = 4 << 20;

/// What `ringhook tail` was asked for.
#[derive(Debug, Clone)]
pub(crate) struct TailConfig {
    /// The event log.
    pub log: PathBuf,
    /// Keep printing what is appended (across logrotate).
    pub follow: bool,
    /// Events to show from the end before following.
    pub lines: usize,
    /// Show only events matching one of these (`--exec-filter`'s patterns); none: every event.
    pub filters: Vec<EventPattern>,
    /// Print the records as logged instead of readable lines.
    pub json: bool,
    /// ANSI colours (stdout is a terminal and `NO_COLOR` is not set).
    pub colour: bool,
}

impl TailConfig {
    /// Resolves `tail`'s flags and variables.
    pub(crate) fn resolve(flags: &Flags, vars: &Vars) -> Result<TailConfig, Error> {
        let log = vars.flag_or(flags, &cli::LOG_FILE).ok_or_else(|| {
            Error::Usage(
                "tail needs the event log: --log-file FILE or RINGHOOK_LOG_FILE (as for serve)"
                    .into(),
            )
        })?;
        let lines = parse_count(&vars.flag_or_default(flags, &cli::LINES), 0, 100_000_000)?;
        let json = flags.switch(&cli::JSON);
        let no_color = vars.get(cli::NO_COLOR).map(|s| s.text);
        Ok(TailConfig {
            log: PathBuf::from(log.text),
            follow: flags.switch(&cli::FOLLOW),
            lines: lines as usize,
            filters: flags
                .values(&cli::FILTER)
                .into_iter()
                .map(EventPattern::new)
                .collect(),
            json,
            colour: !json && colour_wanted(no_color.as_deref()),
        })
    }
}

/// `ringhook tail`.
pub(crate) fn run_command(flags: &Flags, vars: &Vars) -> Result<(), Error> {
    run(&TailConfig::resolve(flags, vars)?)
}

/// True when colours suit stdout: a terminal, and no `NO_COLOR` (<https://no-color.org>).
pub(crate) fn colour_wanted(no_color: Option<&str>) -> bool {
    no_color.is_none_or(str::is_empty) && io::stdout().is_terminal()
}

struct Printer<'a> {
    cfg: &'a TailConfig,
    text: String,
}

impl Printer<'_> {
    fn wants(&self, line: &[u8]) -> bool {
        self.cfg.filters.is_empty()
            || Entry::parse(line)
                .event()
                .is_some_and(|e| self.cfg.filters.iter().any(|f| f.matches(e)))
    }

    fn print(&mut self, line: &[u8], out: &mut impl Write) -> io::Result<()> {
        if !self.wants(line) {
            return Ok(());
        }
        if self.cfg.json {
            out.write_all(line)?;
            return out.write_all(b"\n");
        }
        self.text.clear();
        format::render(&Entry::parse(line), self.cfg.colour, &mut self.text);
        self.text.push('\n');
        out.write_all(self.text.as_bytes())
    }
}

/// Runs `tail` to the end of the log (or forever, with `follow`).
pub(crate) fn run(cfg: &TailConfig) -> Result<(), Error> {
    let label = cfg.log.display();
    let file = File::open(&cfg.log).map_err(|e| Error::runtime(format!("{label}: {e}")))?;
    // With -f, the follower is opened first, so the last lines and what follows them meet at
    // one offset: nothing appended in between is skipped or shown twice.
    let follower = match cfg.follow {
        true => Some(Follower::open(&cfg.log, &Start::End).map_err(Error::runtime)?),
        false => None,
    };
    let end = match &follower {
        Some(f) => f.cursor().offset,
        None => file_len(&file, &cfg.log)?,
    };
    let mut printer = Printer {
        cfg,
        text: String::new(),
    };
    let recent = last_lines(&file, end, cfg.lines, &mut |l| printer.wants(l))
        .map_err(|e| Error::runtime(format!("reading {label}: {e}")))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut written = recent
        .iter()
        .try_for_each(|l| printer.print(l, &mut out))
        .and_then(|()| out.flush());
    if let (Some(f), true) = (follower, written.is_ok()) {
        written = follow(f, &mut printer, &mut out);
    }
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::runtime(format!("writing to stdout: {e}"))),
        Ok(()) => Ok(()),
    }
}

fn file_len(file: &File, path: &Path) -> Result<u64, Error> {
    Ok(file
        .metadata()
        .map_err(|e| Error::runtime(format!("{}: {e}", path.display())))?
        .len())
}

/// Prints every line appended from here on, forever, through `ship`'s follower: appends, a
/// rotated file finished before the new one is taken, a truncation started over, never a line
/// without its `\n`.
fn follow(mut f: Follower, printer: &mut Printer, out: &mut impl Write) -> io::Result<()> {
    loop {
        match f.next_line()? {
            Some(line) => printer.print(&line.bytes, out)?,
            None => {
                out.flush()?;
                f.wait();
            }
        }
    }
}

/// The last `n` complete lines of `file` before `end` that `keep` accepts, oldest first. A last
/// line without its `\n` (being written) is not complete; a line longer than [`MAX_SHOWN`] is
/// skipped (a warning gives its size and where it starts) and not counted.
fn last_lines(
    file: &File,
    end: u64,
    n: usize,
    keep: &mut dyn FnMut(&[u8]) -> bool,
) -> io::Result<Vec<Vec<u8>>> {
    let mut found = Vec::new();
    let mut pos = end;
    // The start of a line whose rest is in `carry`, read in an earlier (later in the file) step;
    // it ends with that line's `\n`.
    let mut carry: Vec<u8> = Vec::new();
    // The bytes seen so far of a line too long to show, whose start is still to be found.
    let mut skipping: Option<u64> = None;
    let mut at_end = true;
    while pos > 0 && found.len() < n {
        let start = pos.saturating_sub(BLOCK);
        let mut chunk = vec![0; (pos - start) as usize];
        file.read_exact_at(&mut chunk, start)?;
        pos = start;
        if at_end {
            // Bytes after the last newline are a line still being written.
            match chunk.iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    chunk.truncate(i + 1);
                    at_end = false;
                }
                None => continue,
            }
        }
        if let Some(len) = skipping.as_mut() {
            // Only where the long line starts matters: count the rest, keep nothing.
            let Some(i) = chunk.iter().rposition(|&b| b == b'\n') else {
                *len += chunk.len() as u64;
                if pos == 0 {
                    skipped(*len, 0);
                }
                continue;
            };
            skipped(*len + (chunk.len() - i - 1) as u64, pos + i as u64 + 1);
            skipping = None;
            chunk.truncate(i + 1);
        } else {
            chunk.extend_from_slice(&carry);
        }
        // Whole lines follow the first newline, unless this block starts the file.
        let whole_from = match (pos, chunk.iter().position(|&b| b == b'\n')) {
            (0, _) => 0,
            (_, Some(i)) => i + 1,
            (_, None) => chunk.len(),
        };
        // Where the line at hand ends in `chunk` (its `\n` excluded), to say where a long one is.
        let mut line_end = chunk.len();
        for line in chunk[whole_from..].split(|&b| b == b'\n').rev() {
            let line_start = line_end - line.len();
            line_end = line_start.saturating_sub(1);
            if line.len() > MAX_SHOWN {
                skipped(line.len() as u64, pos + line_start as u64);
                continue;
            }
            if !line.is_empty() && keep(line) {
                found.push(line.to_vec());
                if found.len() == n {
                    break;
                }
            }
        }
        chunk.truncate(whole_from);
        if chunk.len() > MAX_SHOWN {
            // Without its `\n`.
            skipping = Some(chunk.len() as u64 - 1);
            carry = Vec::new();
        } else {
            carry = chunk;
        }
    }
    found.reverse();
    Ok(found)
}

/// Says that a line of `len` bytes starting at byte `at` was not shown.
fn skipped(len: u64, at: u64) {
    warn!("a line of {len} bytes at byte {at} skipped: longer than 4 MiB, too long to show");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(content: &[u8], n: usize, every: usize) -> Vec<String> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        let mut i = 0;
        let mut keep = |_: &[u8]| {
            i += 1;
            (i - 1) % every == 0
        };
        last_lines(&f, content.len() as u64, n, &mut keep)
            .unwrap()
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    }

    #[test]
    fn the_last_lines_are_found_across_blocks() {
        let long: String = (0..30_000).map(|i| format!("line {i}\n")).collect();
        assert!(long.len() as u64 > 3 * BLOCK);
        assert_eq!(
            lines_of(long.as_bytes(), 3, 1),
            ["line 29997", "line 29998", "line 29999"]
        );
        // Every other line (counted from the end), across block boundaries.
        let got = lines_of(long.as_bytes(), 20_000, 2);
        assert_eq!(got.len(), 15_000);
        assert_eq!(got[0], "line 1");
        assert_eq!(got[14_999], "line 29999");
        assert_eq!(lines_of(long.as_bytes(), 0, 1), Vec::<String>::new());
    }

    #[test]
    fn a_line_being_written_and_empty_lines_are_skipped() {
        assert_eq!(lines_of(b"a\n\nb\nhalf a li", 10, 1), ["a", "b"]);
        assert_eq!(lines_of(b"no newline yet", 10, 1), Vec::<String>::new());
        assert_eq!(lines_of(b"", 10, 1), Vec::<String>::new());
        // A line longer than a block.
        let big = format!("{}\nz\n", "y".repeat(3 * BLOCK as usize));
        let got = lines_of(big.as_bytes(), 10, 1);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), 3 * BLOCK as usize);
    }

    #[test]
    fn a_line_too_long_to_show_is_skipped_not_read_whole() {
        let long = "x".repeat(2 * MAX_SHOWN + 12_345);
        for (content, want) in [
            (format!("a\nb\n{long}\nc\nd\n"), vec!["a", "b", "c", "d"]),
            // At the very start of the file.
            (format!("{long}\nc\nd\n"), vec!["c", "d"]),
            // Just longer than the bound, and just short of it.
            (
                format!(
                    "a\n{}\n{}\nd\n",
                    "y".repeat(MAX_SHOWN + 1),
                    "z".repeat(MAX_SHOWN - 1)
                ),
                vec!["a", &"z".repeat(MAX_SHOWN - 1), "d"],
            ),
        ] {
            let got = lines_of(content.as_bytes(), 4, 1);
            let len = |v: &[String]| v.iter().map(String::len).collect::<Vec<_>>();
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(len(&got), len(&want));
            assert!(got == want);
        }
    }

    #[test]
    fn no_color_and_pipes_mean_no_colour() {
        assert!(!colour_wanted(Some("1")));
        // Under `cargo test` stdout is captured: not a terminal.
        if !io::stdout().is_terminal() {
            assert!(!colour_wanted(None));
        }
    }
}
