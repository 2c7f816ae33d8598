//! `serve`'s settings: flags, environment, env file and defaults into a validated [`ServeConfig`]
//! (limits, the event log's target, `--exec` and `--register`). The parsing helpers are the shared
//! ones in [`crate::config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Flags;
use crate::config::*;
use crate::error::Error;
use crate::secret::VerificationToken;

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
    pub exec: Option<crate::serve::exec::ExecConfig>,
    /// The reconcile to run beside the receiver, with `--register`.
    pub register: Option<crate::serve::reconcile::ReconcileConfig>,
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
        let register = reconcile_config(flags, vars, &log, &path)?;
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

fn reconcile_config(
    flags: &Flags,
    vars: &Vars,
    log: &LogTarget,
    path: &str,
) -> Result<Option<crate::serve::reconcile::ReconcileConfig>, Error> {
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
    Ok(Some(crate::serve::reconcile::ReconcileConfig {
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

fn exec_config(
    flags: &Flags,
    vars: &Vars,
) -> Result<Option<crate::serve::exec::ExecConfig>, Error> {
    use crate::serve::exec::{EventPattern, ExecConfig, parse_command};
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
