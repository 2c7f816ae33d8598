//! Configuration, stage two: flags, environment, env file and defaults into validated settings.
//!
//! Precedence: flag > environment > env file > default. Every error names the flag or variable
//! (and the file it came from) so the user knows what to fix; secrets are never echoed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{Flags, Global};
use crate::error::Error;
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

    /// The flag's value if given, else the first variable set.
    pub fn flag_or(&self, flags: &Flags, flag: &'static str, names: &[&str]) -> Option<Setting> {
        match flags.value(flag) {
            Some(v) => Some(Setting {
                text: v.to_string(),
                origin: flag.to_string(),
            }),
            None => self.get(names),
        }
    }
}

fn read_env_file(path: &Path, explicit: bool) -> Result<HashMap<String, String>, Error> {
    let label = if explicit { "--env-file" } else { "env file" };
    let file = std::fs::File::open(path)
        .map_err(|e| Error::Config(format!("{label} {}: {e}", path.display())))?;
    parse_env(file).map_err(|why| Error::Config(format!("{label} {}: {why}", path.display())))
}

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

fn invalid(s: &Setting, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("invalid {}: '{}': {why}", s.origin, s.text))
}

/// Parses a byte size: `1048576`, `512KiB`, `1MiB`, `16kb`.
pub fn parse_size(s: &Setting) -> Result<u64, Error> {
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
pub fn parse_duration(s: &Setting) -> Result<Duration, Error> {
    let t = s.text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t)
        .map_err(|_| invalid(s, "expected a duration such as 10s, 500ms or 12h"))
}

/// Parses a duration within `min..=max` (a deadline is `Instant + duration`: it must not
/// overflow, and zero would mean "at once" where a wait is meant).
pub fn parse_duration_in(s: &Setting, min: Duration, max: Duration) -> Result<Duration, Error> {
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
fn refuse_without(flags: &Flags, main: &str, dependents: &[&str]) -> Result<(), Error> {
    match dependents.iter().find(|f| flags.switch(f)) {
        Some(f) => Err(Error::Config(format!("{f} needs {main}"))),
        None => Ok(()),
    }
}

/// Parses a whole number within `min..=max`.
pub fn parse_count(s: &Setting, min: u64, max: u64) -> Result<u64, Error> {
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
pub fn parse_listen(s: &Setting) -> Result<SocketAddr, Error> {
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

fn parse_path(s: &Setting) -> Result<String, Error> {
    let t = s.text.trim();
    if !t.starts_with('/') || t.contains(char::is_whitespace) || t.contains('?') {
        return Err(invalid(
            s,
            "expected an absolute path such as /webhook (no spaces, no query)",
        ));
    }
    Ok(t.to_string())
}

/// The variables `serve` reads (besides `--register`'s, which are `register`'s), for the
/// property test and the fuzz target.
#[doc(hidden)]
pub const SERVE_VARIABLES: &[&str] = &[
    "RINGHOOK_LISTEN",
    "PORT",
    "WEBHOOK_PATH",
    "RINGHOOK_HEALTH_PATH",
    "RINGHOOK_LOG_FILE",
    "WEBHOOK_VERIFICATION_TOKEN",
    "RINGHOOK_MAX_BODY",
    "RINGHOOK_MAX_HEADER",
    "RINGHOOK_REQUEST_TIMEOUT",
    "RINGHOOK_IDLE_TIMEOUT",
    "RINGHOOK_MAX_CONNECTIONS",
    "RINGHOOK_DEDUPE_WINDOW",
    "RINGHOOK_SHUTDOWN_GRACE",
    "RINGHOOK_EXEC_MAX",
    "RINGHOOK_EXEC_QUEUE",
    "RINGHOOK_EXEC_TIMEOUT",
    "RINGHOOK_EXEC_FILTER",
    "RINGHOOK_REGISTER_EVERY",
    "RINGHOOK_REGISTER_QUIET",
    "RINGHOOK_REGISTER_RETRY",
];

/// The longest timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Limits that protect the single-threaded receiver from slow or hostile clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body; a larger declared body gets 413 without being read.
    pub max_body: u64,
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header: usize,
    /// Time from a request's first byte to its last; after it, 408 and close.
    pub request_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Open connections at most; when full, the longest idle or stalled one is closed.
    pub max_connections: usize,
    /// On SIGTERM, time given to requests in flight before exit.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 1024 * 1024,
            max_header: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output, flushed per batch (no fsync possible).
    Stdout,
    /// A file, appended and `fdatasync`ed before acknowledging.
    File(PathBuf),
}

/// Everything `ringhook serve` needs, validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Socket address to listen on.
    pub listen: SocketAddr,
    /// The webhook path.
    pub path: String,
    /// Path answering GET with health, if enabled.
    pub health_path: Option<String>,
    /// Event log target.
    pub log: LogTarget,
    /// Token every notification must carry, if configured.
    pub token: Option<VerificationToken>,
    /// Where the token came from, for the start-up line (never the token itself).
    pub token_origin: Option<String>,
    /// How many recent uuids to remember for deduplication.
    pub dedupe_window: usize,
    /// Protective limits.
    pub limits: Limits,
    /// The command to run per event, when `--exec` is given.
    pub exec: Option<crate::exec::ExecConfig>,
    /// The reconcile to run beside the receiver, with `--register`.
    pub register: Option<crate::registrar::RegistrarConfig>,
}

impl ServeConfig {
    /// Resolves and validates `serve`'s configuration.
    pub fn resolve(flags: &Flags, vars: &Vars) -> Result<ServeConfig, Error> {
        let listen = match vars.flag_or(flags, "--listen", &["RINGHOOK_LISTEN"]) {
            Some(s) => parse_listen(&s)?,
            None => match vars.get(&["PORT"]) {
                Some(p) => {
                    let port = parse_count(&p, 0, 65535)? as u16;
                    SocketAddr::from(([0, 0, 0, 0], port))
                }
                None => SocketAddr::from(([0, 0, 0, 0], 3000)),
            },
        };
        let path = match vars.flag_or(flags, "--path", &["WEBHOOK_PATH"]) {
            Some(s) => parse_path(&s)?,
            None => "/webhook".to_string(),
        };
        let health_path = vars
            .flag_or(flags, "--health-path", &["RINGHOOK_HEALTH_PATH"])
            .map(|s| {
                let p = parse_path(&s)?;
                if p == path {
                    return Err(invalid(&s, "must differ from the webhook path"));
                }
                Ok(p)
            })
            .transpose()?;
        let log = match vars.flag_or(flags, "--log-file", &["RINGHOOK_LOG_FILE"]) {
            None => LogTarget::Stdout,
            Some(s) if s.text == "-" => LogTarget::Stdout,
            Some(s) => LogTarget::File(PathBuf::from(s.text)),
        };
        let (token, token_origin) = verification_token(flags, vars)?;

        let mut limits = Limits::default();
        if let Some(s) = vars.flag_or(flags, "--max-body", &["RINGHOOK_MAX_BODY"]) {
            limits.max_body = parse_size(&s)?;
            if limits.max_body == 0 || limits.max_body > 64 * 1024 * 1024 {
                return Err(invalid(&s, "must be between 1 byte and 64MiB"));
            }
        }
        if let Some(s) = vars.flag_or(flags, "--max-header", &["RINGHOOK_MAX_HEADER"]) {
            let n = parse_size(&s)?;
            if !(1024..=1024 * 1024).contains(&n) {
                return Err(invalid(&s, "must be between 1KiB and 1MiB"));
            }
            limits.max_header = n as usize;
        }
        let positive = |s: Setting| parse_duration_in(&s, Duration::from_millis(1), MAX_TIMEOUT);
        if let Some(s) = vars.flag_or(flags, "--request-timeout", &["RINGHOOK_REQUEST_TIMEOUT"]) {
            limits.request_timeout = positive(s)?;
        }
        if let Some(s) = vars.flag_or(flags, "--idle-timeout", &["RINGHOOK_IDLE_TIMEOUT"]) {
            limits.idle_timeout = positive(s)?;
        }
        if let Some(s) = vars.flag_or(flags, "--shutdown-grace", &["RINGHOOK_SHUTDOWN_GRACE"]) {
            limits.shutdown_grace = parse_duration_in(&s, Duration::ZERO, MAX_TIMEOUT)?;
        }
        if let Some(s) = vars.flag_or(flags, "--max-connections", &["RINGHOOK_MAX_CONNECTIONS"]) {
            limits.max_connections = parse_count(&s, 1, 100_000)? as usize;
        }
        let dedupe_window =
            match vars.flag_or(flags, "--dedupe-window", &["RINGHOOK_DEDUPE_WINDOW"]) {
                Some(s) => parse_count(&s, 0, 10_000_000)? as usize,
                None => 10_000,
            };
        let exec = exec_config(flags, vars)?;
        let register = registrar_config(flags, vars, &log, &path)?;
        Ok(ServeConfig {
            exec,
            register,
            listen,
            path,
            health_path,
            log,
            token,
            token_origin,
            dedupe_window,
            limits,
        })
    }
}

/// The tutorial's filters: presence and SMS of every extension. `serve --register` uses them when
/// none are configured, so the tutorial's `.env` alone brings a working webhook up.
pub const TUTORIAL_FILTERS: &str = "/restapi/v1.0/account/~/extension/{extensionId}/presence?detailedTelephonyState=true&aggregated=true /restapi/v1.0/account/~/extension/{extensionId}/message-store/instant?type=SMS";

fn parse_bool(s: &Setting) -> Result<bool, Error> {
    match s.text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(s, "expected 1 or 0 (true/false, yes/no, on/off)")),
    }
}

fn switch_or_env(flags: &Flags, flag: &str, vars: &Vars, name: &str) -> Result<bool, Error> {
    if flags.switch(flag) {
        return Ok(true);
    }
    vars.get(&[name]).map_or(Ok(false), |s| parse_bool(&s))
}

fn registrar_config(
    flags: &Flags,
    vars: &Vars,
    log: &LogTarget,
    path: &str,
) -> Result<Option<crate::registrar::RegistrarConfig>, Error> {
    use crate::register::settings::RegisterSettings;
    if !switch_or_env(flags, "--register", vars, "RINGHOOK_REGISTER")? {
        refuse_without(
            flags,
            "--register",
            &[
                "--register-every",
                "--register-quiet",
                "--register-retry",
                "--unregister-on-exit",
            ],
        )?;
        return Ok(None);
    }
    let mut vars = vars.clone();
    vars.set_default("RINGHOOK_EVENT_FILTERS", TUTORIAL_FILTERS);
    let home = |n: &str| vars.get(&[n]).map(|s| s.text);
    if crate::register::state::default_path(
        home("XDG_STATE_HOME").as_deref(),
        home("HOME").as_deref(),
    )
    .is_none()
    {
        // A scratch container has neither: keep the state beside the event log.
        let dir = match log {
            LogTarget::File(f) => f.parent().map(Path::to_path_buf).unwrap_or_default(),
            LogTarget::Stdout => PathBuf::new(),
        };
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        vars.set_default(
            "RINGHOOK_STATE",
            dir.join("ringhook-state.json").display().to_string(),
        );
    }
    // Everything `register` needs is checked now, all missing names in one message.
    let settings = RegisterSettings::resolve(&Flags::default(), &vars)?;
    if !settings.address.contains(path) {
        warn!(
            "WEBHOOK_ADDRESS {} does not end in --path {path}: the platform's handshake will get 403",
            settings.address
        );
    }
    let (minute, month) = (Duration::from_secs(60), MAX_TIMEOUT * 30);
    let every = match vars.flag_or(flags, "--register-every", &["RINGHOOK_REGISTER_EVERY"]) {
        Some(s) => parse_duration_in(&s, minute, month)?,
        None => Duration::from_secs(12 * 3600),
    };
    let quiet = vars
        .flag_or(flags, "--register-quiet", &["RINGHOOK_REGISTER_QUIET"])
        .map(|s| parse_duration_in(&s, minute, month))
        .transpose()?;
    let retry = match vars.flag_or(flags, "--register-retry", &["RINGHOOK_REGISTER_RETRY"]) {
        Some(s) => parse_duration_in(&s, Duration::from_millis(1), Duration::from_secs(3600))?,
        None => Duration::from_secs(30),
    };
    Ok(Some(crate::registrar::RegistrarConfig {
        every,
        quiet,
        retry,
        unregister_on_exit: switch_or_env(
            flags,
            "--unregister-on-exit",
            &vars,
            "RINGHOOK_UNREGISTER_ON_EXIT",
        )?,
        env_file: vars.explicit_file().map(Path::to_path_buf),
        env: vars.defaults_in_force(),
    }))
}

fn exec_config(flags: &Flags, vars: &Vars) -> Result<Option<crate::exec::ExecConfig>, Error> {
    use crate::exec::{EventPattern, ExecConfig, parse_command};
    let Some(cmd) = vars.flag_or(flags, "--exec", &["RINGHOOK_EXEC"]) else {
        refuse_without(
            flags,
            "--exec",
            &[
                "--exec-filter",
                "--exec-max",
                "--exec-queue",
                "--exec-timeout",
            ],
        )?;
        return Ok(None);
    };
    let argv = parse_command(&cmd.text).map_err(|why| invalid(&cmd, why))?;
    let given = flags.values("--exec-filter");
    let filters = if given.is_empty() {
        vars.get(&["RINGHOOK_EXEC_FILTER"])
            .map(|s| s.text.split_whitespace().map(EventPattern::new).collect())
            .unwrap_or_default()
    } else {
        given.into_iter().map(EventPattern::new).collect()
    };
    let max_running = match vars.flag_or(flags, "--exec-max", &["RINGHOOK_EXEC_MAX"]) {
        Some(s) => parse_count(&s, 1, 64)? as usize,
        None => 2,
    };
    let max_queued = match vars.flag_or(flags, "--exec-queue", &["RINGHOOK_EXEC_QUEUE"]) {
        Some(s) => parse_count(&s, 0, 100_000)? as usize,
        None => 100,
    };
    let timeout = match vars.flag_or(flags, "--exec-timeout", &["RINGHOOK_EXEC_TIMEOUT"]) {
        Some(s) => parse_duration_in(&s, Duration::from_millis(1), MAX_TIMEOUT)?,
        None => Duration::from_secs(30),
    };
    Ok(Some(ExecConfig {
        argv,
        filters,
        max_running,
        max_queued,
        timeout,
    }))
}

/// The verification token from `--verification-token-file`, `WEBHOOK_VERIFICATION_TOKEN` or the
/// tutorial's `WEBHOOK_TOKEN`, and where it came from.
pub fn verification_token(
    flags: &Flags,
    vars: &Vars,
) -> Result<(Option<VerificationToken>, Option<String>), Error> {
    let file = flags.value("--verification-token-file").map(|f| Setting {
        text: f.to_string(),
        origin: "--verification-token-file".into(),
    });
    let (text, origin) = if let Some(f) = file {
        let content = std::fs::read_to_string(&f.text)
            .map_err(|e| Error::Config(format!("--verification-token-file {}: {e}", f.text)))?;
        (content.trim().to_string(), f.origin)
    } else if let Some(s) = vars.get(&["WEBHOOK_VERIFICATION_TOKEN", "WEBHOOK_TOKEN"]) {
        (s.text, s.origin)
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

    fn flags(pairs: &[(&'static str, &str)]) -> Flags {
        Flags::from_pairs(pairs)
    }

    #[test]
    fn defaults_match_the_readme() {
        let c = ServeConfig::resolve(&flags(&[]), &Vars::from_maps(&[], &[])).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:3000");
        assert_eq!(c.path, "/webhook");
        assert_eq!(c.log, LogTarget::Stdout);
        assert!(c.token.is_none());
        assert_eq!(c.limits.max_body, 1 << 20);
        assert_eq!(c.limits.max_header, 16 << 10);
        assert_eq!(c.dedupe_window, 10_000);
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let v = Vars::from_maps(&[("WEBHOOK_PATH", "/env")], &[("WEBHOOK_PATH", "/file")]);
        let c = ServeConfig::resolve(&flags(&[("--path", "/flag")]), &v).unwrap();
        assert_eq!(c.path, "/flag");
        let c = ServeConfig::resolve(&flags(&[]), &v).unwrap();
        assert_eq!(c.path, "/env");
        let v = Vars::from_maps(&[], &[("WEBHOOK_PATH", "/file")]);
        assert_eq!(ServeConfig::resolve(&flags(&[]), &v).unwrap().path, "/file");
    }

    #[test]
    fn tutorial_port_sets_the_port() {
        let v = Vars::from_maps(&[("PORT", "8080")], &[]);
        let c = ServeConfig::resolve(&flags(&[]), &v).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
    }

    #[test]
    fn errors_name_the_source() {
        let v = Vars::from_maps(&[], &[("RINGHOOK_MAX_BODY", "lots")]);
        let e = ServeConfig::resolve(&flags(&[]), &v).unwrap_err();
        assert!(e.to_string().contains("RINGHOOK_MAX_BODY (in .env)"), "{e}");
        let e =
            ServeConfig::resolve(&flags(&[("--listen", "nowhere")]), &Vars::default()).unwrap_err();
        assert!(e.to_string().contains("--listen"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn bad_token_is_not_echoed() {
        let v = Vars::from_maps(&[("WEBHOOK_TOKEN", "has space")], &[]);
        let e = ServeConfig::resolve(&flags(&[]), &v).unwrap_err();
        assert!(e.to_string().contains("WEBHOOK_TOKEN"));
        assert!(!e.to_string().contains("has space"));
    }

    #[test]
    fn arbitrary_values_never_panic() {
        const NAMES: &[&str] = SERVE_VARIABLES;
        const PIECES: &[&str] = &[
            "0",
            "1",
            "65535",
            "65536",
            "99999999999999999999",
            "-1",
            ":",
            "::1",
            "[::1]:80",
            "10s",
            "500ms",
            "1000000000y",
            "1h 30m",
            "KiB",
            "18446744073709551615",
            "/",
            "/a b",
            "?",
            " ",
            "\u{0}",
            "é",
            "MiB",
            "1.5",
            "0x10",
            "=",
            "\"",
            "#",
        ];
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let values: Vec<String> = NAMES
                .iter()
                .map(|_| {
                    (0..next() % 3)
                        .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                        .collect()
                })
                .collect();
            let env: Vec<(&str, &str)> = NAMES
                .iter()
                .zip(&values)
                .filter(|_| next() % 3 == 0)
                .map(|(n, v)| (*n, v.as_str()))
                .collect();
            let _ = ServeConfig::resolve(&flags(&[]), &Vars::from_maps(&env, &[]));
            let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            let _ = parse_env(text.as_bytes());
        }
    }

    #[test]
    fn env_file_errors_do_not_quote_the_line() {
        let err = parse_env("GOOD=1\nSECRET='hunter2\n".as_bytes()).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let ok = parse_env("# comment\nexport A=1\nB=\"two words\"\n".as_bytes()).unwrap();
        assert_eq!(ok["A"], "1");
        assert_eq!(ok["B"], "two words");
    }

    #[test]
    fn huge_timeouts_are_refused_not_overflowed() {
        let v = Vars::from_maps(&[("RINGHOOK_REQUEST_TIMEOUT", "1000000000y")], &[]);
        let e = ServeConfig::resolve(&flags(&[]), &v).unwrap_err();
        assert!(e.to_string().contains("RINGHOOK_REQUEST_TIMEOUT"), "{e}");
    }

    #[test]
    fn sizes_and_durations() {
        let s = |t: &str| Setting {
            text: t.into(),
            origin: "X".into(),
        };
        assert_eq!(parse_size(&s("1MiB")).unwrap(), 1 << 20);
        assert_eq!(parse_size(&s("64kb")).unwrap(), 64 << 10);
        assert_eq!(parse_size(&s("100")).unwrap(), 100);
        assert!(parse_size(&s("1XB")).is_err());
        assert!(parse_size(&s("99999999999999999999")).is_err());
        assert_eq!(parse_duration(&s("10")).unwrap(), Duration::from_secs(10));
        assert_eq!(
            parse_duration(&s("500ms")).unwrap(),
            Duration::from_millis(500)
        );
        assert!(parse_duration(&s("soon")).is_err());
        assert_eq!(
            parse_listen(&s(":8080")).unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(
            parse_listen(&s("[::1]:80")).unwrap().to_string(),
            "[::1]:80"
        );
    }
}
