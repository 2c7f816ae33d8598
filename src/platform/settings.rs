//! Configuration of `register`, `list` and `unregister`: flags, environment and env file into
//! validated settings. Every missing required value is named in one message; every malformed
//! one names its flag or variable (and file). Secrets go straight into [`Secret`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{self, Flags};
use crate::config::{
    Setting, Vars, invalid, invalid_text, parse_count, parse_duration, parse_duration_in,
    verification_token,
};
use crate::error::Error;
use crate::platform::{Credentials, Endpoint, RetryPolicy};
use crate::secret::{self, Secret, VerificationToken};

use crate::state;

/// The production platform; the default server.
pub(crate) const PRODUCTION: &str = "https://platform.ringcentral.com";
/// The sandbox (`RC_ENV=sandbox`, being retired).
pub(crate) const SANDBOX: &str = "https://platform.devtest.ringcentral.com";
/// The platform's maximum WebHook lifetime, and the default ask.
pub(crate) const DEFAULT_EXPIRES_IN: u64 = 315_360_000;
/// Older docs allowed 20 years; the platform itself decides above 10.
const MAX_EXPIRES_IN: u64 = 630_720_000;
/// The placeholder that expands to one filter per extension.
pub(crate) const EXTENSION_ID: &str = "{extensionId}";

/// How to reach the platform and as whom.
#[derive(Debug, Clone)]
pub(crate) struct PlatformSettings {
    /// Server, app credentials, roots, retry policy.
    pub endpoint: Endpoint,
    /// User credentials.
    pub credentials: Credentials,
}

/// Everything `register` needs.
#[derive(Debug, Clone)]
pub(crate) struct RegisterSettings {
    /// The platform.
    pub platform: PlatformSettings,
    /// Delivery address.
    pub address: String,
    /// Sent as `deliveryMode.verificationToken`.
    pub token: Option<VerificationToken>,
    /// Filters as configured (`{extensionId}` not yet expanded).
    pub filters: Vec<String>,
    /// The extensions `{extensionId}` expands over.
    pub scope: ExtensionScope,
    /// Lifetime asked for, in seconds.
    pub expires_in: u64,
    /// State file.
    pub state_path: PathBuf,
}

/// The extensions `{extensionId}` expands over (`register`'s and `connect`'s filters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtensionScope {
    /// Extension types.
    pub types: Vec<String>,
    /// Extension statuses.
    pub statuses: Vec<String>,
    /// Page size of the extension list.
    pub per_page: u32,
}

impl ExtensionScope {
    fn resolve(vars: &Vars) -> Result<ExtensionScope, Error> {
        let per_page = match vars.get(cli::EXTENSIONS_PER_PAGE) {
            Some(s) => parse_count(&s, 1, 1000)? as u32,
            None => 500,
        };
        Ok(ExtensionScope {
            types: words(vars, cli::EXTENSION_TYPES, "User")?,
            statuses: words(vars, cli::EXTENSION_STATUSES, "Enabled")?,
            per_page,
        })
    }
}

/// Everything `connect` needs to hold the session (its child) and to say what it holds.
#[cfg(feature = "connect")]
#[derive(Debug, Clone)]
pub(crate) struct ConnectSettings {
    /// The platform.
    pub platform: PlatformSettings,
    /// Filters as configured (`{extensionId}` not yet expanded).
    pub filters: Vec<String>,
    /// The extensions `{extensionId}` expands over.
    pub scope: ExtensionScope,
    /// State file.
    pub state_path: PathBuf,
}

/// Everything `list` and `unregister` need.
#[derive(Debug, Clone)]
pub(crate) struct ManageSettings {
    /// The platform.
    pub platform: PlatformSettings,
    /// Delivery address, when configured.
    pub address: Option<String>,
    /// State file, when there is a place for one.
    pub state_path: Option<PathBuf>,
}

/// Required values not found, named together.
#[derive(Default)]
struct Missing(Vec<String>);

impl Missing {
    fn need(&mut self, value: Option<Setting>, what: &str) -> Option<Setting> {
        if value.is_none() {
            self.0.push(what.to_string());
        }
        value
    }

    fn check(self) -> Result<(), Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "missing {}: set them in the environment or in the env file (.env)",
            self.0.join(", ")
        )))
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The server URL: https, or http on a loopback address (tests, local proxies); origin only.
fn parse_server(s: &Setting) -> Result<String, Error> {
    let t = s.text.trim().trim_end_matches('/');
    let uri: http::Uri = t
        .parse()
        .map_err(|_| invalid(s, "expected a URL such as https://platform.ringcentral.com"))?;
    let host = uri.host().unwrap_or("");
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback(host) => {}
        Some("http") => {
            return Err(invalid(
                s,
                "must be https:// (plain http is allowed only on a loopback address)",
            ));
        }
        _ => return Err(invalid(s, "expected an https:// URL")),
    }
    if host.is_empty() || !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid(
            s,
            "expected the server alone, such as https://platform.ringcentral.com",
        ));
    }
    Ok(t.to_string())
}

fn server(vars: &Vars) -> Result<String, Error> {
    if let Some(s) = vars.get(cli::SERVER_URL) {
        return parse_server(&s);
    }
    match vars.get(cli::RC_ENV) {
        None => Ok(PRODUCTION.into()),
        Some(e) => match e.text.to_ascii_lowercase().as_str() {
            "production" => Ok(PRODUCTION.into()),
            "sandbox" => Ok(SANDBOX.into()),
            _ => Err(invalid(&e, "expected 'sandbox' or 'production'")),
        },
    }
}

fn credentials(vars: &Vars, missing: &mut Missing) -> Option<Credentials> {
    if let Some(jwt) = vars.get(secret::JWT) {
        return Some(Credentials::Jwt(Secret::new(jwt.text)));
    }
    let user = vars.get(cli::USERNAME);
    let pass = vars.get(secret::PASSWORD);
    match (user, pass) {
        (Some(u), Some(p)) => {
            warn!(
                "using the password grant (RC_USERNAME/RC_PASSWORD): RingCentral ended it on 2024-03-31; create a JWT credential and set RC_JWT instead"
            );
            Some(Credentials::Password {
                username: u.text,
                password: Secret::new(p.text),
                extension: vars.get(cli::EXTENSION).map(|e| e.text),
            })
        }
        (Some(_), None) => {
            missing.0.push("RC_PASSWORD (or RC_JWT)".into());
            None
        }
        (None, Some(_)) => {
            missing.0.push("RC_USERNAME (or RC_JWT)".into());
            None
        }
        (None, None) => {
            missing.0.push("RC_JWT".into());
            None
        }
    }
}

fn platform(vars: &Vars, missing: &mut Missing) -> Result<Option<PlatformSettings>, Error> {
    let server = server(vars)?;
    let roots = crate::config::trust_roots(vars)?;
    let mut policy = RetryPolicy::default();
    if let Some(s) = vars.get(cli::MAX_WAIT) {
        policy.max_wait = parse_duration(&s)?;
    }
    if let Some(s) = vars.get(cli::HTTP_TIMEOUT) {
        policy.timeout = parse_duration_in(&s, Duration::from_millis(1), MAX_HTTP_TIMEOUT)?;
    }
    let client_id = missing.need(vars.get(cli::CLIENT_ID), "RC_CLIENT_ID");
    let client_secret = missing.need(vars.get(secret::CLIENT_SECRET), "RC_CLIENT_SECRET");
    let credentials = credentials(vars, missing);
    let (Some(client_id), Some(client_secret), Some(credentials)) =
        (client_id, client_secret, credentials)
    else {
        return Ok(None);
    };
    Ok(Some(PlatformSettings {
        endpoint: Endpoint {
            server,
            client_id: client_id.text,
            client_secret: Secret::new(client_secret.text),
            roots,
            policy,
        },
        credentials,
    }))
}

fn address(flags: &Flags, vars: &Vars) -> Result<Option<String>, Error> {
    let Some(s) = vars.flag_or(flags, &cli::ADDRESS) else {
        return Ok(None);
    };
    let url = crate::config::parse_url(&s)?;
    let host = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string));
    if url.starts_with("http://") && !host.as_deref().is_some_and(is_loopback) {
        warn!(
            "{} is plain http://: RingCentral delivers only to https:// addresses (a tunnel or TLS proxy in front of serve)",
            s.origin
        );
    }
    Ok(Some(url))
}

fn state_path(flags: &Flags, vars: &Vars) -> Option<PathBuf> {
    if let Some(s) = vars.flag_or(flags, &cli::STATE) {
        return Some(PathBuf::from(s.text));
    }
    state::default_path(
        vars.get(cli::XDG_STATE_HOME).map(|s| s.text).as_deref(),
        vars.get(cli::HOME).map(|s| s.text).as_deref(),
    )
}

fn words(vars: &Vars, names: &[&str], default: &str) -> Result<Vec<String>, Error> {
    let Some(s) = vars.get(names) else {
        return Ok(vec![default.to_string()]);
    };
    let list: Vec<String> = s
        .text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    if list.is_empty()
        || list
            .iter()
            .any(|w| !w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(invalid(
            &s,
            "expected words such as 'User' or 'User Department'",
        ));
    }
    Ok(list)
}

fn filters(flags: &Flags, vars: &Vars, missing: &mut Missing) -> Result<Vec<String>, Error> {
    let given = flags.values(&cli::EVENT);
    let (list, origin): (Vec<String>, String) = if !given.is_empty() {
        (
            given.iter().map(|s| s.trim().to_string()).collect(),
            cli::EVENT.name.into(),
        )
    } else if let Some(s) = vars.get(cli::EVENT.env) {
        (
            s.text.split_whitespace().map(str::to_string).collect(),
            s.origin,
        )
    } else {
        missing.0.push("RINGHOOK_EVENT_FILTERS (or --event)".into());
        return Ok(vec![]);
    };
    let mut out: Vec<String> = Vec::new();
    for f in list {
        if !f.starts_with('/') || f.contains(char::is_whitespace) {
            return Err(invalid_text(
                &origin,
                &f,
                "an event filter is a path such as /restapi/v1.0/account/~/extension/~/message-store",
            ));
        }
        if f.contains('{') && f.replace(EXTENSION_ID, "").contains('{') {
            return Err(invalid_text(
                &origin,
                &f,
                format!("the only placeholder is {EXTENSION_ID}"),
            ));
        }
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

impl RegisterSettings {
    /// Resolves and validates `register`'s configuration.
    pub(crate) fn resolve(flags: &Flags, vars: &Vars) -> Result<RegisterSettings, Error> {
        let mut missing = Missing::default();
        let platform = platform(vars, &mut missing)?;
        let address = address(flags, vars)?;
        if address.is_none() {
            missing.0.push("WEBHOOK_ADDRESS (or --address)".into());
        }
        let filters = filters(flags, vars, &mut missing)?;
        let state_path = state_path(flags, vars);
        if state_path.is_none() {
            missing
                .0
                .push("RINGHOOK_STATE (or --state; there is no XDG_STATE_HOME or HOME)".into());
        }
        let (token, _) = verification_token(flags, vars)?;
        let scope = ExtensionScope::resolve(vars)?;
        let expires_in = match vars.get(cli::EXPIRES_IN) {
            Some(s) => {
                let secs = parse_duration(&s)?.as_secs();
                if !(1..=MAX_EXPIRES_IN).contains(&secs) {
                    return Err(invalid(
                        &s,
                        format!("must be between 1 and {MAX_EXPIRES_IN} seconds"),
                    ));
                }
                secs
            }
            None => DEFAULT_EXPIRES_IN,
        };
        missing.check()?;
        if token.is_none() {
            warn!(
                "WEBHOOK_VERIFICATION_TOKEN is not set: the platform will send no Verification-Token, and anyone who learns the address can post events; set the same value for serve and register"
            );
        }
        Ok(RegisterSettings {
            platform: platform.expect("missing would have said"),
            address: address.expect("missing would have said"),
            token,
            filters,
            scope,
            expires_in,
            state_path: state_path.expect("missing would have said"),
        })
    }
}

/// `connect`'s platform, filters, their extensions and state file, read as `register` reads
/// them (the tutorial's filters by default; no address, no verification token: the WebSocket
/// transport has neither).
#[cfg(feature = "connect")]
pub(crate) fn connect_settings(
    flags: &Flags,
    vars: &Vars,
    default_filters: &str,
) -> Result<ConnectSettings, Error> {
    let mut vars = vars.clone();
    vars.set_default(cli::EVENT.env[0], default_filters);
    let mut missing = Missing::default();
    let platform = platform(&vars, &mut missing)?;
    let filters = filters(flags, &vars, &mut missing)?;
    let scope = ExtensionScope::resolve(&vars)?;
    let state_path = state_path(flags, &vars);
    if state_path.is_none() {
        missing
            .0
            .push("RINGHOOK_STATE (or --state; there is no XDG_STATE_HOME or HOME)".into());
    }
    missing.check()?;
    Ok(ConnectSettings {
        platform: platform.expect("missing would have said"),
        filters,
        scope,
        state_path: state_path.expect("missing would have said"),
    })
}

impl ManageSettings {
    /// Resolves `list`'s and `unregister`'s configuration: credentials required, the rest
    /// optional.
    pub(crate) fn resolve(flags: &Flags, vars: &Vars) -> Result<ManageSettings, Error> {
        let mut missing = Missing::default();
        let platform = platform(vars, &mut missing)?;
        let address = address(flags, vars)?;
        let state_path = state_path(flags, vars);
        missing.check()?;
        Ok(ManageSettings {
            platform: platform.expect("missing would have said"),
            address,
            state_path,
        })
    }
}

/// The longest `RINGHOOK_HTTP_TIMEOUT` accepted.
const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Opt;

    fn flags(pairs: &[(&Opt, &str)]) -> Flags {
        Flags::from_pairs(pairs)
    }

    const FULL: &[(&str, &str)] = &[
        ("RC_CLIENT_ID", "id"),
        ("RC_CLIENT_SECRET", "s3cret"),
        ("RC_JWT", "eyJ.jwt"),
        ("WEBHOOK_ADDRESS", "https://x.example/webhook"),
        ("RINGHOOK_EVENT_FILTERS", "/a /b\n/a"),
        ("HOME", "/home/u"),
    ];

    #[test]
    fn everything_missing_is_named_at_once() {
        let e = RegisterSettings::resolve(&flags(&[]), &Vars::from_maps(&[], &[])).unwrap_err();
        let m = e.to_string();
        for name in [
            "RC_CLIENT_ID",
            "RC_CLIENT_SECRET",
            "RC_JWT",
            "WEBHOOK_ADDRESS",
            "RINGHOOK_EVENT_FILTERS",
            "RINGHOOK_STATE",
        ] {
            assert!(m.contains(name), "{m}");
        }
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn defaults_and_aliases() {
        let s = RegisterSettings::resolve(&flags(&[]), &Vars::from_maps(FULL, &[])).unwrap();
        assert_eq!(s.platform.endpoint.server, PRODUCTION);
        assert_eq!(s.filters, ["/a", "/b"]);
        assert_eq!(s.scope.per_page, 500);
        assert_eq!(s.expires_in, DEFAULT_EXPIRES_IN);
        assert_eq!(s.scope.types, ["User"]);
        assert_eq!(
            s.state_path,
            PathBuf::from("/home/u/.local/state/ringhook/state.json")
        );
        assert_eq!(
            s.platform.endpoint.policy.max_wait,
            Duration::from_secs(300)
        );
        assert_eq!(
            s.platform.endpoint.policy.timeout,
            crate::platform::transport::DEFAULT_TIMEOUT
        );
        let v = Vars::from_maps(
            &[
                ("RC_APP_KEY", "id"),
                ("RC_APP_SECRET", "s"),
                ("RC_USER_JWT", "j"),
                ("DELIVERY_MODE_ADDRESS", "https://y/webhook"),
                ("RC_ENV", "sandbox"),
            ],
            &[],
        );
        let s =
            RegisterSettings::resolve(&flags(&[(&cli::EVENT, "/x"), (&cli::STATE, "s.json")]), &v)
                .unwrap();
        assert_eq!(s.platform.endpoint.server, SANDBOX);
        assert_eq!(s.address, "https://y/webhook");
        assert_eq!(s.filters, ["/x"]);
    }

    #[test]
    fn server_must_be_https_unless_loopback() {
        let s = |t: &str| Setting {
            text: t.into(),
            origin: "RC_SERVER_URL".into(),
        };
        assert_eq!(
            parse_server(&s("https://platform.ringcentral.com/")).unwrap(),
            PRODUCTION
        );
        assert!(parse_server(&s("http://127.0.0.1:8080")).is_ok());
        assert!(parse_server(&s("http://127.9.9.9:8080")).is_ok());
        assert!(parse_server(&s("http://[::1]:8080")).is_ok());
        assert!(parse_server(&s("http://localhost:8080")).is_ok());
        let e = parse_server(&s("http://platform.ringcentral.com")).unwrap_err();
        assert!(e.to_string().contains("RC_SERVER_URL"), "{e}");
        assert!(parse_server(&s("https://platform.ringcentral.com/restapi")).is_err());
        assert!(parse_server(&s("platform.ringcentral.com")).is_err());
    }

    #[test]
    fn malformed_values_name_their_origin() {
        let mut env = FULL.to_vec();
        env.push(("EXTENSIONS_PER_PAGE", "5000"));
        let e = RegisterSettings::resolve(&flags(&[]), &Vars::from_maps(&env, &[])).unwrap_err();
        assert!(e.to_string().contains("EXTENSIONS_PER_PAGE"), "{e}");
        let e = RegisterSettings::resolve(
            &flags(&[(&cli::EVENT, "nope")]),
            &Vars::from_maps(FULL, &[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--event"), "{e}");
        let e = RegisterSettings::resolve(
            &flags(&[]),
            &Vars::from_maps(FULL, &[("RINGHOOK_CA_FILE", "/nonexistent.pem")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("RINGHOOK_CA_FILE (in .env)"), "{e}");
        for bad in ["0s", "2h", "soon"] {
            let e = RegisterSettings::resolve(
                &flags(&[]),
                &Vars::from_maps(FULL, &[("RINGHOOK_HTTP_TIMEOUT", bad)]),
            )
            .unwrap_err();
            assert!(e.to_string().contains("RINGHOOK_HTTP_TIMEOUT"), "{e}");
            assert_eq!(e.exit_code(), 2);
        }
        let s = ManageSettings::resolve(
            &flags(&[]),
            &Vars::from_maps(FULL, &[("RINGHOOK_HTTP_TIMEOUT", "750ms")]),
        )
        .unwrap();
        assert_eq!(
            s.platform.endpoint.policy.timeout,
            Duration::from_millis(750)
        );
    }

    #[test]
    fn password_grant_needs_both_halves() {
        let v = Vars::from_maps(&[("RC_USERNAME", "u")], &[]);
        let e = ManageSettings::resolve(&flags(&[]), &v).unwrap_err();
        assert!(e.to_string().contains("RC_PASSWORD"), "{e}");
        assert!(!e.to_string().contains("RC_USERNAME"), "{e}");
    }
}
