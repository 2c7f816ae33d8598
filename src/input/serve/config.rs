//! `serve`'s settings: flags, environment, env file and defaults into a validated [`ServeConfig`]
//! (limits, the event log's target, `--exec` and `--register`). The parsing helpers are the shared
//! ones in [`crate::config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{self, Flags, Opt};
use crate::config::*;
use crate::error::Error;
use crate::secret::VerificationToken;

/// The variables `serve` reads: its table's (`cli`), `PORT` and the verification token's, for the
/// property test and the fuzz target. (`--register`'s platform credentials are `register`'s.)
pub fn serve_variables() -> Vec<&'static str> {
    let table = cli::SERVE.iter().flat_map(|o| o.env.iter().copied());
    let others = [cli::PORT, crate::secret::VERIFICATION_TOKEN];
    table.chain(others.into_iter().flatten().copied()).collect()
}

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
    /// Notification bodies held in memory at once, across connections; beyond it, bodies wait
    /// unread (TCP holds their senders back). At least `max_body`.
    pub max_buffered: u64,
    /// On SIGTERM, time given to requests in flight before exit.
    pub shutdown_grace: Duration,
    /// The health check answers 503 while a sync of the log has run longer than this.
    pub health_max_sync: Duration,
}

impl Default for Limits {
    /// The declared defaults (`cli`), as `serve` applies them when nothing is set.
    fn default() -> Limits {
        Limits::resolve(&Flags::default(), &Vars::default()).expect("declared defaults are valid")
    }
}

impl Limits {
    /// Each limit from its flag, variable or declared default, within its bounds.
    fn resolve(flags: &Flags, vars: &Vars) -> Result<Limits, Error> {
        let value = |opt| vars.flag_or_default(flags, opt);
        let s = value(&cli::MAX_BODY);
        let max_body = parse_size(&s)?;
        if max_body == 0 || max_body > 64 * 1024 * 1024 {
            return Err(invalid(&s, "must be between 1 byte and 64MiB"));
        }
        let s = value(&cli::MAX_HEADER);
        let max_header = parse_size(&s)?;
        if !(1024..=1024 * 1024).contains(&max_header) {
            return Err(invalid(&s, "must be between 1KiB and 1MiB"));
        }
        // The default grows with a larger --max-body: one body always fits.
        let max_buffered = match vars.flag_or(flags, &cli::MAX_BUFFERED) {
            Some(s) => {
                let n = parse_size(&s)?;
                if n < max_body || n > 1 << 40 {
                    return Err(invalid(&s, "must be at least --max-body and at most 1TiB"));
                }
                n
            }
            None => parse_size(&declared_default(&cli::MAX_BUFFERED))?.max(max_body),
        };
        let positive = |s: Setting| parse_duration_in(&s, Duration::from_millis(1), MAX_TIMEOUT);
        Ok(Limits {
            max_buffered,
            max_body,
            max_header: max_header as usize,
            request_timeout: positive(value(&cli::REQUEST_TIMEOUT))?,
            idle_timeout: positive(value(&cli::IDLE_TIMEOUT))?,
            shutdown_grace: parse_duration_in(
                &value(&cli::SHUTDOWN_GRACE),
                Duration::ZERO,
                MAX_TIMEOUT,
            )?,
            max_connections: parse_count(&value(&cli::MAX_CONNECTIONS), 1, 100_000)? as usize,
            health_max_sync: positive(value(&cli::HEALTH_MAX_SYNC))?,
        })
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
    /// Path answering GET with the Prometheus metrics, if enabled.
    pub metrics_path: Option<String>,
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
    pub exec: Option<crate::input::serve::children::exec::ExecConfig>,
    /// The reconcile to run beside the receiver, with `--register`.
    pub register: Option<crate::input::serve::children::reconcile::ReconcileConfig>,
    /// The shipper to run beside the receiver, with `--ship`.
    pub ship: Option<crate::input::serve::children::shipper::ShipperConfig>,
}

impl ServeConfig {
    /// Resolves and validates `serve`'s configuration.
    pub fn resolve(flags: &Flags, vars: &Vars) -> Result<ServeConfig, Error> {
        let listen = match (vars.flag_or(flags, &cli::LISTEN), vars.get(cli::PORT)) {
            (None, Some(p)) => SocketAddr::from(([0, 0, 0, 0], parse_count(&p, 0, 65535)? as u16)),
            (given, _) => parse_listen(&given.unwrap_or_else(|| declared_default(&cli::LISTEN)))?,
        };
        let (path, health_path, metrics_path) = paths(flags, vars)?;
        let log = match vars.flag_or(flags, &cli::LOG_FILE) {
            None => LogTarget::Stdout,
            Some(s) if s.text == "-" => LogTarget::Stdout,
            Some(s) => LogTarget::File(PathBuf::from(s.text)),
        };
        let (token, token_origin) = verification_token(flags, vars)?;
        let limits = Limits::resolve(flags, vars)?;
        let dedupe_window = parse_count(
            &vars.flag_or_default(flags, &cli::DEDUPE_WINDOW),
            0,
            10_000_000,
        )? as usize;
        let exec = exec_config(flags, vars)?;
        let register = reconcile_config(flags, vars, &log, &path)?;
        let ship = shipper_config(flags, vars, &log)?;
        Ok(ServeConfig {
            exec,
            register,
            ship,
            listen,
            path,
            health_path,
            metrics_path,
            log,
            token,
            token_origin,
            dedupe_window,
            limits,
        })
    }
}

/// `--ship URL` is checked as `ship --to` would check it.
#[cfg(feature = "ship")]
fn check_ship_url(s: &Setting) -> Result<(), Error> {
    crate::output::ship::SinkConfig::check_url(s)
}

/// Without the `ship` feature there is nothing to run.
#[cfg(not(feature = "ship"))]
fn check_ship_url(_: &Setting) -> Result<(), Error> {
    Err(Error::Usage(
        "this build has no ship: build with --features ship".into(),
    ))
}

/// The tutorial's filters: presence and SMS of every extension. `serve --register` uses them when
/// none are configured, so the tutorial's `.env` alone brings a working webhook up.
pub(crate) const TUTORIAL_FILTERS: &str = "/restapi/v1.0/account/~/extension/{extensionId}/presence?detailedTelephonyState=true&aggregated=true /restapi/v1.0/account/~/extension/{extensionId}/message-store/instant?type=SMS";

fn parse_bool(s: &Setting) -> Result<bool, Error> {
    match s.text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(s, "expected 1 or 0 (true/false, yes/no, on/off)")),
    }
}

/// A switch given, or set by its variable (`1`, `true`, …).
fn switch_or_env(flags: &Flags, vars: &Vars, opt: &Opt) -> Result<bool, Error> {
    if flags.switch(opt) {
        return Ok(true);
    }
    vars.get(opt.env).map_or(Ok(false), |s| parse_bool(&s))
}

/// The webhook path, and the health and metrics paths (each different from the others).
fn paths(flags: &Flags, vars: &Vars) -> Result<(String, Option<String>, Option<String>), Error> {
    let path = parse_path(&vars.flag_or_default(flags, &cli::PATH))?;
    let health_path = vars
        .flag_or(flags, &cli::HEALTH_PATH)
        .map(|s| {
            let p = parse_path(&s)?;
            if p == path {
                return Err(invalid(&s, "must differ from the webhook path"));
            }
            Ok(p)
        })
        .transpose()?;
    let metrics_path = vars
        .flag_or(flags, &cli::METRICS_PATH)
        .map(|s| {
            let p = parse_path(&s)?;
            if p == path || health_path.as_ref() == Some(&p) {
                return Err(invalid(&s, "must differ from the webhook and health paths"));
            }
            Ok(p)
        })
        .transpose()?;
    Ok((path, health_path, metrics_path))
}

/// `--ship URL`: the shipper child, which follows the log file.
fn shipper_config(
    flags: &Flags,
    vars: &Vars,
    log: &LogTarget,
) -> Result<Option<crate::input::serve::children::shipper::ShipperConfig>, Error> {
    match (vars.flag_or(flags, &cli::SERVE_SHIP), log) {
        (None, _) => Ok(None),
        (Some(s), LogTarget::File(f)) => {
            check_ship_url(&s)?;
            Ok(Some(
                crate::input::serve::children::shipper::ShipperConfig {
                    to: s.text.trim().to_string(),
                    log_file: f.clone(),
                    env_file: vars.explicit_file().map(Path::to_path_buf),
                },
            ))
        }
        (Some(_), LogTarget::Stdout) => Err(Error::Config(
            "--ship needs --log-file FILE: the shipper follows the file".into(),
        )),
    }
}

fn reconcile_config(
    flags: &Flags,
    vars: &Vars,
    log: &LogTarget,
    path: &str,
) -> Result<Option<crate::input::serve::children::reconcile::ReconcileConfig>, Error> {
    use crate::platform::settings::RegisterSettings;
    if !switch_or_env(flags, vars, &cli::REGISTER)? {
        refuse_without(
            flags,
            &cli::REGISTER,
            &[
                &cli::REGISTER_EVERY,
                &cli::REGISTER_QUIET,
                &cli::REGISTER_RETRY,
                &cli::UNREGISTER_ON_EXIT,
            ],
        )?;
        return Ok(None);
    }
    let vars = child_vars(vars, log);
    // Everything `register` needs is checked now, all missing names in one message.
    let settings = RegisterSettings::resolve(&Flags::default(), &vars)?;
    if !settings.address.contains(path) {
        warn!(
            "WEBHOOK_ADDRESS {} does not end in --path {path}: the platform's handshake will get 403",
            settings.address
        );
    }
    let (minute, month) = (Duration::from_secs(60), MAX_TIMEOUT * 30);
    let every = parse_duration_in(
        &vars.flag_or_default(flags, &cli::REGISTER_EVERY),
        minute,
        month,
    )?;
    let quiet = vars
        .flag_or(flags, &cli::REGISTER_QUIET)
        .map(|s| parse_duration_in(&s, minute, month))
        .transpose()?;
    let retry = parse_duration_in(
        &vars.flag_or_default(flags, &cli::REGISTER_RETRY),
        Duration::from_millis(1),
        Duration::from_secs(3600),
    )?;
    Ok(Some(
        crate::input::serve::children::reconcile::ReconcileConfig {
            every,
            quiet,
            retry,
            unregister_on_exit: switch_or_env(flags, &vars, &cli::UNREGISTER_ON_EXIT)?,
            env_file: vars.explicit_file().map(Path::to_path_buf),
            env: vars.defaults_in_force(),
        },
    ))
}

/// The variables the register child sees: the tutorial's filters by default, and a state file
/// beside the event log when there is no home for it (a scratch container has neither
/// `XDG_STATE_HOME` nor `HOME`).
fn child_vars(vars: &Vars, log: &LogTarget) -> Vars {
    let mut vars = vars.clone();
    vars.set_default(cli::EVENT.env[0], TUTORIAL_FILTERS);
    let home = |n| vars.get(n).map(|s| s.text);
    if crate::state::default_path(
        home(cli::XDG_STATE_HOME).as_deref(),
        home(cli::HOME).as_deref(),
    )
    .is_none()
    {
        let dir = match log {
            LogTarget::File(f) => f.parent().map(Path::to_path_buf).unwrap_or_default(),
            LogTarget::Stdout => PathBuf::new(),
        };
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        vars.set_default(
            cli::STATE.env[0],
            dir.join("ringhook-state.json").display().to_string(),
        );
    }
    vars
}

fn exec_config(
    flags: &Flags,
    vars: &Vars,
) -> Result<Option<crate::input::serve::children::exec::ExecConfig>, Error> {
    use crate::input::serve::children::exec::{ExecConfig, parse_command};
    use crate::log::pattern::EventPattern;
    let Some(cmd) = vars.flag_or(flags, &cli::EXEC) else {
        refuse_without(
            flags,
            &cli::EXEC,
            &[
                &cli::EXEC_FILTER,
                &cli::EXEC_MAX,
                &cli::EXEC_QUEUE,
                &cli::EXEC_TIMEOUT,
            ],
        )?;
        return Ok(None);
    };
    let argv = parse_command(&cmd.text).map_err(|why| invalid(&cmd, why))?;
    let given = flags.values(&cli::EXEC_FILTER);
    let filters = if given.is_empty() {
        vars.get(cli::EXEC_FILTER.env)
            .map(|s| s.text.split_whitespace().map(EventPattern::new).collect())
            .unwrap_or_default()
    } else {
        given.into_iter().map(EventPattern::new).collect()
    };
    let value = |opt| vars.flag_or_default(flags, opt);
    let max_running = parse_count(&value(&cli::EXEC_MAX), 1, 64)? as usize;
    let max_queued = parse_count(&value(&cli::EXEC_QUEUE), 0, 100_000)? as usize;
    let timeout = parse_duration_in(
        &value(&cli::EXEC_TIMEOUT),
        Duration::from_millis(1),
        MAX_TIMEOUT,
    )?;
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

    fn flags(pairs: &[(&Opt, &str)]) -> Flags {
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
        let c = ServeConfig::resolve(&flags(&[(&cli::PATH, "/flag")]), &v).unwrap();
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
        let e = ServeConfig::resolve(&flags(&[(&cli::LISTEN, "nowhere")]), &Vars::default())
            .unwrap_err();
        assert!(e.to_string().contains("--listen"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn the_metrics_path_is_off_by_default_and_must_be_its_own() {
        let c = ServeConfig::resolve(&flags(&[]), &Vars::default()).unwrap();
        assert_eq!(c.metrics_path, None);
        let v = Vars::from_maps(&[("RINGHOOK_METRICS_PATH", "/metrics")], &[]);
        let c = ServeConfig::resolve(&flags(&[]), &v).unwrap();
        assert_eq!(c.metrics_path.as_deref(), Some("/metrics"));
        for clash in [
            &[(&cli::METRICS_PATH, "/webhook")][..],
            &[(&cli::HEALTH_PATH, "/m"), (&cli::METRICS_PATH, "/m")],
        ] {
            let e = ServeConfig::resolve(&flags(clash), &Vars::default()).unwrap_err();
            assert!(e.to_string().contains("--metrics-path"), "{e}");
            assert_eq!(e.exit_code(), 2);
        }
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
        let names = serve_variables();
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
            let values: Vec<String> = names
                .iter()
                .map(|_| {
                    (0..next() % 3)
                        .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                        .collect()
                })
                .collect();
            let env: Vec<(&str, &str)> = names
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
