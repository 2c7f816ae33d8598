//! Configuration, stage two: flags, environment, env file and defaults into validated settings.
//!
//! Precedence: flag > environment > env file > default. Every error names the flag or variable
//! (and the file it came from) so the user knows what to fix; secrets are never echoed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{self, Flags, Global, Opt, Unset};
use crate::error::Error;
use crate::https::TrustRoots;
use crate::secret::{Secret, VerificationToken};

/// Where a setting's text came from, for error messages.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The text.
    pub text: String,
    /// `--listen`, `RINGHOOK_LISTEN` or `RINGHOOK_LISTEN (in .env)`.
    pub origin: String,
}

/// The environment and the env file, looked up by variable name.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
    file_name: String,
    /// `--env-file`, when given (a child `register` is pointed at the same file).
    explicit_file: Option<PathBuf>,
    /// Defaults chosen by a caller (`serve --register`), consulted last.
    defaults: HashMap<String, String>,
}

impl Vars {
    /// Reads the process environment and the env file (`--env-file`, else `./.env` if present).
    pub fn load(global: &Global) -> Result<Vars, Error> {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let (path, explicit) = match &global.env_file {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(".env"), false),
        };
        let file = if explicit || path.is_file() {
            read_env_file(&path, explicit)?
        } else {
            HashMap::new()
        };
        Ok(Vars {
            env,
            file,
            file_name: path.display().to_string(),
            explicit_file: explicit.then_some(path),
            defaults: HashMap::new(),
        })
    }

    /// Builds a lookup from explicit maps (tests).
    pub fn from_maps(env: &[(&str, &str)], file: &[(&str, &str)]) -> Vars {
        let own = |m: &[(&str, &str)]| {
            m.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Vars {
            env: own(env),
            file: own(file),
            file_name: ".env".into(),
            explicit_file: None,
            defaults: HashMap::new(),
        }
    }

    /// The first of `names` set in the environment, else the first set in the env file.
    /// An empty value counts as unset, as `dotenv` users expect of `KEY=`.
    pub fn get(&self, names: &[&str]) -> Option<Setting> {
        let pick = |map: &HashMap<String, String>, suffix: &str| {
            names.iter().find_map(|n| {
                map.get(*n)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| Setting {
                        text: v.trim().to_string(),
                        origin: format!("{n}{suffix}"),
                    })
            })
        };
        pick(&self.env, "")
            .or_else(|| pick(&self.file, &format!(" (in {})", self.file_name)))
            .or_else(|| pick(&self.defaults, " (default)"))
    }

    /// Makes `value` the value of `name` when nothing else sets it.
    pub fn set_default(&mut self, name: &str, value: impl Into<String>) {
        self.defaults.insert(name.to_string(), value.into());
    }

    /// The defaults in force (not overridden), to hand to a child process.
    pub fn defaults_in_force(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .defaults
            .iter()
            .filter(|(k, _)| !self.env.contains_key(*k) && !self.file.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort();
        out
    }

    /// The `--env-file` given, if any.
    pub fn explicit_file(&self) -> Option<&Path> {
        self.explicit_file.as_deref()
    }

    /// The flag's value if given, else the first of its variables set.
    pub fn flag_or(&self, flags: &Flags, opt: &Opt) -> Option<Setting> {
        match flags.value(opt) {
            Some(v) => Some(Setting {
                text: v.to_string(),
                origin: opt.name.to_string(),
            }),
            None => self.get(opt.env),
        }
    }

    /// [`Vars::flag_or`], else the declared default ([`Unset::Value`]), parsed like user input.
    pub(crate) fn flag_or_default(&self, flags: &Flags, opt: &Opt) -> Setting {
        self.flag_or(flags, opt)
            .unwrap_or_else(|| declared_default(opt))
    }
}

/// `opt`'s declared default as a setting; a declaration without one is a programming error
/// (the tests resolve every default).
pub(crate) fn declared_default(opt: &Opt) -> Setting {
    let Unset::Value(text) = opt.unset else {
        panic!("{} declares no default value", opt.name)
    };
    Setting {
        text: text.to_string(),
        origin: format!("{} (default)", opt.name),
    }
}

fn read_env_file(path: &Path, explicit: bool) -> Result<HashMap<String, String>, Error> {
    let label = if explicit { "--env-file" } else { "env file" };
    // Read with a bound: a huge file must be an error, not an endless read.
    let text = read_bounded(path, MAX_ENV_FILE, "an env file")
        .map_err(|e| Error::Config(format!("{label} {}: {e}", path.display())))?;
    parse_env(&text[..]).map_err(|why| Error::Config(format!("{label} {}: {why}", path.display())))
}

/// The largest env file read; a real one is a few hundred bytes.
const MAX_ENV_FILE: u64 = 1024 * 1024;

/// Parses env-file text (`KEY=value`, comments, quotes, `export`). The error says where the
/// parser stopped, never what it read: the line may hold a secret.
pub fn parse_env(reader: impl std::io::Read) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    for item in dotenvy::from_read_iter(reader) {
        let (k, v) = item.map_err(|e| env_file_error(&e))?;
        map.insert(k, v);
    }
    Ok(map)
}

fn env_file_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, idx) => format!("cannot parse it near character {idx}"),
        dotenvy::Error::Io(io) => io.to_string(),
        dotenvy::Error::EnvVar(_) => "invalid variable".into(),
        _ => "cannot read it".into(),
    }
}

/// The one message for a malformed value: where it came from, what it was, why it is wrong.
pub(crate) fn invalid(s: &Setting, why: impl std::fmt::Display) -> Error {
    invalid_text(&s.origin, &s.text, why)
}

/// [`invalid`] for a piece of a setting (one word of a list, the trimmed text).
pub(crate) fn invalid_text(origin: &str, text: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("invalid {origin}: '{text}': {why}"))
}

/// Parses a byte size: `1048576`, `512KiB`, `1MiB`, `16kb`.
pub(crate) fn parse_size(s: &Setting) -> Result<u64, Error> {
    let t = s.text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| invalid(s, "expected a size such as 1048576, 64KiB or 1MiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(invalid(s, "unknown unit (use B, KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| invalid(s, "too large"))
}

/// Parses a duration: `10s`, `500ms`, `12h`, `1h 30m`; a bare number is seconds.
pub(crate) fn parse_duration(s: &Setting) -> Result<Duration, Error> {
    let t = s.text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t)
        .map_err(|_| invalid(s, "expected a duration such as 10s, 500ms or 12h"))
}

/// Parses a duration within `min..=max` (a deadline is `Instant + duration`: it must not
/// overflow, and zero would mean "at once" where a wait is meant).
pub(crate) fn parse_duration_in(
    s: &Setting,
    min: Duration,
    max: Duration,
) -> Result<Duration, Error> {
    let d = parse_duration(s)?;
    if d < min || d > max {
        return Err(invalid(
            s,
            format!(
                "must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(d)
}

/// Refuses `dependents` given without the flag (or variable) they refine.
pub(crate) fn refuse_without(
    flags: &Flags,
    main: &Opt,
    dependents: &[&'static Opt],
) -> Result<(), Error> {
    match flags.first_given(dependents) {
        Some(f) => Err(Error::Config(format!("{} needs {}", f.name, main.name))),
        None => Ok(()),
    }
}

/// Parses a whole number within `min..=max`.
pub(crate) fn parse_count(s: &Setting, min: u64, max: u64) -> Result<u64, Error> {
    let n: u64 = s
        .text
        .trim()
        .parse()
        .map_err(|_| invalid(s, "expected a whole number"))?;
    if n < min || n > max {
        return Err(invalid(s, format!("must be between {min} and {max}")));
    }
    Ok(n)
}

/// Parses `ADDR:PORT`, `:PORT` (all interfaces) or `[::1]:PORT`.
pub(crate) fn parse_listen(s: &Setting) -> Result<SocketAddr, Error> {
    let t = s.text.trim();
    let full = if t.starts_with(':') {
        format!("0.0.0.0{t}")
    } else {
        t.to_string()
    };
    full.parse().map_err(|_| {
        invalid(
            s,
            "expected ADDR:PORT such as 0.0.0.0:3000 or 127.0.0.1:8080",
        )
    })
}

pub(crate) fn parse_path(s: &Setting) -> Result<String, Error> {
    let t = s.text.trim();
    if !t.starts_with('/') || t.contains(char::is_whitespace) || t.contains('?') {
        return Err(invalid(
            s,
            "expected an absolute path such as /webhook (no spaces, no query)",
        ));
    }
    Ok(t.to_string())
}

/// An absolute http(s) URL (a webhook address, a probe target).
pub(crate) fn parse_url(s: &Setting) -> Result<String, Error> {
    let t = s.text.trim();
    let uri: http::Uri = t.parse().map_err(|_| {
        invalid_text(
            &s.origin,
            t,
            "expected a URL such as https://example.com/webhook",
        )
    })?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(t.to_string()),
        _ => Err(invalid_text(
            &s.origin,
            t,
            "expected an http:// or https:// URL with a host",
        )),
    }
}

/// The extra roots from `RINGHOOK_CA_FILE`, validated at start-up.
pub(crate) fn trust_roots(vars: &Vars) -> Result<TrustRoots, Error> {
    match vars.get(cli::CA_FILE) {
        None => Ok(TrustRoots::default()),
        // Bounded and regular-only like every setting's file (Debian's whole bundle is 220 KB).
        Some(s) => read_bounded(Path::new(&s.text), 4 << 20, "a CA file")
            .and_then(|pem| TrustRoots::from_pem(&pem))
            .map_err(|e| invalid(&s, e)),
    }
}

/// Opens the file a setting names (an env file, a token or credentials file), refusing anything
/// that is not a regular file: a FIFO blocks the open until a writer comes and the read until
/// it writes, a terminal waits for a person, a device never ends. It is opened with `O_NONBLOCK`,
/// so not even a FIFO swapped in after a look can block, and checked with `fstat` on the
/// descriptor itself: what is read is what was checked. The error says what the file is.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    open_regular_with(path, rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty())
}

/// [`open_regular`] with other `flags` (`mode` for a file it creates), such as a lock file's
/// create-and-write. Where the open itself fails on what is not a regular file (a FIFO with no
/// reader or a folder, opened to write), the error says what it is all the same.
pub(crate) fn open_regular_with(
    path: &Path,
    flags: rustix::fs::OFlags,
    mode: rustix::fs::Mode,
) -> std::io::Result<std::fs::File> {
    use rustix::fs::OFlags;
    let flags = flags | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, mode) {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            return Err(match std::fs::metadata(path) {
                Ok(m) if !m.is_file() => not_regular(m.file_type()),
                _ => e.into(),
            });
        }
    };
    let t = file.metadata()?.file_type();
    if t.is_file() {
        return Ok(file);
    }
    Err(not_regular(t))
}

/// "not a regular file (a FIFO); give a file", naming what it is.
fn not_regular(t: std::fs::FileType) -> std::io::Error {
    use std::os::unix::fs::FileTypeExt;
    let kind = if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a socket"
    };
    std::io::Error::other(format!("not a regular file ({kind}); give a file"))
}

/// The bytes of the regular file at `path` ([`open_regular`]), at most `max` (a whole number of
/// KiB): a huge file must be an error, not the end of memory. The error is the I/O error, "not a
/// regular file", or "larger than N KiB (MiB), not {what}"; never the content.
fn read_bounded(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    open_regular(path)
        .and_then(|file| {
            std::io::Read::read_to_end(&mut std::io::Read::take(file, max + 1), &mut bytes)
        })
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        let size = match max % (1 << 20) {
            0 => format!("{} MiB", max >> 20),
            _ => format!("{} KiB", max >> 10),
        };
        return Err(format!("larger than {size}, not {what}"));
    }
    Ok(bytes)
}

/// The text of the regular file at `path`, of at most `max` bytes: the one way every setting's
/// file is read (NATS_CREDS, the token files, through [`read_small_file`]; the env file reads
/// the same bytes). The error is the I/O error, "not a regular file (a FIFO)…", or "larger than
/// N KiB, not {what}"; never the content.
pub(crate) fn read_bounded_text(path: &Path, max: u64, what: &str) -> Result<String, String> {
    String::from_utf8(read_bounded(path, max, what)?)
        .map_err(|_| "stream did not contain valid UTF-8".to_string())
}

/// The text of a small file holding a token or password, surrounding whitespace trimmed.
/// Errors name the setting and the path, never the content.
pub(crate) fn read_small_file(f: &Setting) -> Result<String, Error> {
    read_bounded_text(Path::new(&f.text), 4096, "a token file")
        .map(|t| t.trim().to_string())
        .map_err(|e| Error::Config(format!("{} {}: {e}", f.origin, f.text)))
}

/// A secret from its variable (`names`) or from the file its `_FILE` variable names (systemd
/// credentials, Docker secrets: the secret is then in no environment at all). Both set is an
/// error, and so is an empty file.
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) fn secret_or_file(
    vars: &Vars,
    names: &[&str],
    file: &[&str],
) -> Result<Option<Secret>, Error> {
    match (vars.get(names), vars.get(file)) {
        (Some(s), Some(f)) => Err(Error::Config(format!(
            "{} and {} are both set: give the secret one way",
            s.origin, f.origin
        ))),
        (Some(s), None) => Ok(Some(Secret::new(s.text))),
        (None, Some(f)) => match read_small_file(&f)? {
            t if t.is_empty() => Err(Error::Config(format!("{} {}: empty", f.origin, f.text))),
            t => Ok(Some(Secret::new(t))),
        },
        (None, None) => Ok(None),
    }
}

/// The verification token from `--verification-token-file`, `WEBHOOK_VERIFICATION_TOKEN` or the
/// tutorial's `WEBHOOK_TOKEN`, and where it came from.
pub(crate) fn verification_token(
    flags: &Flags,
    vars: &Vars,
) -> Result<(Option<VerificationToken>, Option<String>), Error> {
    let file = flags.value(&cli::TOKEN_FILE).map(|f| Setting {
        text: f.to_string(),
        origin: cli::TOKEN_FILE.name.into(),
    });
    let (text, origin) = if let Some(f) = file {
        (read_small_file(&f)?, f.origin)
    } else if let Some(s) = vars.get(cli::TOKEN) {
        (s.text, s.origin)
    } else if let Some(name) = cli::TOKEN
        .iter()
        .find(|n| vars.env.get(**n).is_some_and(|v| v.trim().is_empty()))
    {
        // `-e WEBHOOK_VERIFICATION_TOKEN=$UNSET` must not turn verification off silently.
        return Err(Error::Config(format!(
            "{name} is set but empty: give the token, or unset it to run without one"
        )));
    } else {
        return Ok((None, None));
    };
    // The token travels in an HTTP header: visible ASCII only. RingCentral documents no length
    // limit; 256 keeps every answer far under the 1024-byte budget.
    if text.is_empty() || text.len() > 256 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Config(format!(
            "invalid {origin}: the verification token must be 1 to 256 visible ASCII characters (value not shown)"
        )));
    }
    Ok((
        Some(VerificationToken::new(Secret::new(text))),
        Some(origin),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settings_file_is_read_with_a_bound_and_only_if_regular() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        // Sparse: 2 MiB of zeros on no disk.
        std::fs::File::create(&p).unwrap().set_len(2 << 20).unwrap();
        assert_eq!(
            read_bounded_text(&p, 4096, "a token file").unwrap_err(),
            "larger than 4 KiB, not a token file"
        );
        let e = read_env_file(&p, true).unwrap_err().to_string();
        assert!(e.contains("larger than 1 MiB, not an env file"), "{e}");
        std::fs::write(&p, "t0ken\n").unwrap();
        assert_eq!(
            read_bounded_text(&p, 4096, "a token file").unwrap(),
            "t0ken\n"
        );
        let e = read_bounded_text(dir.path(), 4096, "a token file").unwrap_err();
        assert!(e.starts_with("not a regular file (a directory)"), "{e}");
        let e = read_bounded_text(Path::new("/dev/zero"), 4096, "x").unwrap_err();
        assert!(
            e.starts_with("not a regular file (a character device)"),
            "{e}"
        );
    }

    #[test]
    fn a_file_opened_to_write_is_refused_by_what_it_is_even_when_the_open_fails() {
        use rustix::fs::{Mode, OFlags};
        let dir = tempfile::tempdir().unwrap();
        let open = |p: &Path| {
            open_regular_with(
                p,
                OFlags::WRONLY | OFlags::CREATE,
                Mode::from_raw_mode(0o600),
            )
        };
        // A folder opened to write fails (EISDIR); a FIFO with no reader too (ENXIO).
        let e = open(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("not a regular file (a directory)"), "{e}");
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = open(&fifo).unwrap_err().to_string();
        assert!(e.starts_with("not a regular file (a FIFO)"), "{e}");
        // A file that is not there is made, 0600; the error of another failure is kept.
        let made = dir.path().join("lock");
        open(&made).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&made).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = open(&dir.path().join("none/lock")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn urls_need_a_scheme_and_host() {
        let s = |t: &str| Setting {
            text: t.into(),
            origin: "URL".into(),
        };
        assert!(parse_url(&s("http://localhost:3000/webhook")).is_ok());
        assert!(parse_url(&s("https://x.ngrok.app/webhook")).is_ok());
        assert!(parse_url(&s("localhost:3000")).is_err());
        assert!(parse_url(&s("ftp://x/")).is_err());
    }
}
