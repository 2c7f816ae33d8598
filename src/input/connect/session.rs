//! The session child (`RINGHOOK_CONNECT_SESSION=1 ringhook connect`): holds the WebSocket with
//! plain blocking I/O in a process of its own, so serve's loop stays the only thread that
//! serves. It writes to stdout, one line each, what the loop must know:
//!
//! - `N <body>`: a `ServerNotification`'s body, its bytes as sent with raw line breaks made
//!   spaces (whitespace in JSON; the log minifies the same);
//! - `S up` / `S down`: subscribed (or recovered) / not, for `/health`;
//! - `C <time>`: events may be lost since `<time>`: run the catch-up.
//!
//! Per connection: a fresh single-use ws token (at most [`WS_TOKENS_PER_MINUTE`], the Auth
//! group allows 5), the handshake, `ConnectionDetails` before anything is sent, then either the
//! recovered session (`wsc` within its window) or a new subscription; app-level `Heartbeat`s
//! well inside the idle timeout (pings are answered by [`super::ws`]); the access token refreshed
//! in the same OAuth session before it expires; a planned reconnect (with recovery) before the
//! absolute timeout. The refresh token and `wsc` live in the 0600 state file, so a restart
//! recovers too. SIGTERM: delete the subscription over the socket, revoke, exit 0.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::gateway::{self, Details, GatewayError, Message, NotificationBody, SubscriptionBody};
use super::ws::{self, Incoming, Target, WebSocket, WsError};
use crate::error::Error;
use crate::log::line::parse_time;
use crate::oplog::Clipped;
use crate::platform::PlatformError;
use crate::platform::session::{ExpandError, Session};
use crate::platform::settings::{ExtensionScope, PlatformSettings};
use crate::platform::wsauth::{OAuth, Tokens};
use crate::secret::Secret;
use crate::state::{self, ConnectState, State};

/// ws tokens fetched per minute at most: the Auth rate group allows 5, and a refresh or the
/// catch-up's login may need one.
const WS_TOKENS_PER_MINUTE: usize = 4;
/// The window [`WS_TOKENS_PER_MINUTE`] counts in.
const MINUTE: Duration = Duration::from_secs(60);
/// How long a read blocks before the clocks, the stop flag and the parent are looked at.
const TICK: Duration = Duration::from_millis(250);
/// Waiting for `ConnectionDetails` or a `ClientRequest`'s answer (the SDKs wait 60 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(60);
/// Connecting and the opening handshake.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);
/// The longest wait between reconnects (early ones are short, to recover inside the window).
const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// How often the state file's sign of life is brought up to date while connected.
const SAVE_EVERY: Duration = Duration::from_secs(10);
/// The longest `Retry-After` waited on a ws token before trying again (paced all the same).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The longest timeout taken from `ConnectionDetails` (the gateway's are 30 min, 24 h, 3 min).
const MAX_TIMEOUT: u64 = 7 * 86_400;
/// Foreign subscription ids warned about per connection (a gateway sending endless new ones
/// must not grow memory or the log).
const MAX_FOREIGN: usize = 8;
/// The permission a 403 on the ws token or the subscription asks for.
const PERMISSION: &str = "WebSocket Subscriptions";

/// What the session child needs.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub platform: PlatformSettings,
    /// Event filters as configured (`{extensionId}` expanded before the first subscription).
    pub filters: Vec<String>,
    /// The extensions `{extensionId}` expands over.
    pub scope: ExtensionScope,
    pub state_path: PathBuf,
    /// The largest message accepted (the body limit).
    pub max_message: usize,
}

/// A recovered session's resend: where a catch-up would start, and the gateway's buffer size
/// (a resend that fills it may have dropped older notifications).
struct Resend {
    since: String,
    buffer: u64,
    /// A catch-up was already asked for on this connection (it covers a full buffer too).
    caught_up: bool,
}

/// Why a connection ended (for the operational log), and whether the process stops.
enum End {
    Reconnect(String),
    Stop,
}

/// Everything that outlives one connection.
struct WsSession {
    cfg: SessionConfig,
    oauth: OAuth,
    tokens: Option<Tokens>,
    /// When the access token is renewed: a quarter of its life (at most 5 min) before it ends.
    refresh_at: Instant,
    conn: ConnectState,
    sub_id: Option<String>,
    /// The filters with `{extensionId}` expanded (once per process, at the first subscription).
    filters: Option<Vec<String>>,
    stop: Arc<AtomicBool>,
    parent: Option<rustix::process::Pid>,
    failures: u32,
    rng: ring::rand::SystemRandom,
    /// The last state save failed (warned once until one works again).
    save_failed: std::cell::Cell<bool>,
}

type Stream = Box<dyn ReadWrite>;

/// A socket or TLS over it, with the read timeout settable.
trait ReadWrite: Read + Write {
    fn set_timeout(&self, d: Duration);
}

impl ReadWrite for TcpStream {
    fn set_timeout(&self, d: Duration) {
        let _ = self.set_read_timeout(Some(d));
    }
}

impl ReadWrite for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn set_timeout(&self, d: Duration) {
        let _ = self.sock.set_read_timeout(Some(d));
    }
}

fn fatal_permission(what: &str) -> Error {
    Error::runtime_hint(
        format!("{what} was refused (403): the app lacks the {PERMISSION} permission"),
        format!(
            "add {PERMISSION} (WebSocketsSubscriptions) to the app in the RingCentral developer console"
        ),
    )
}

fn platform_fail(what: &str, e: PlatformError) -> Error {
    Error::Runtime {
        message: format!("{what}: {e}"),
        hint: e.hint(),
    }
}

/// Writes one line for the loop; a closed pipe means the loop is gone: stop at once.
fn tell(line: &[u8]) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    out.write_all(line)
        .and_then(|()| out.flush())
        .map_err(|_| Error::StdoutClosed)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Runs the session child until SIGTERM (or its parent is gone).
pub(crate) fn run(cfg: SessionConfig) -> Result<(), Error> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| Error::runtime(format!("cannot watch signals: {e}")))?;
    }
    let server = cfg.platform.endpoint.server.clone();
    let saved = state::load(&cfg.state_path)?.filter(|s| s.server == server);
    let mut s = WsSession {
        oauth: OAuth::new(cfg.platform.endpoint.clone()),
        tokens: None,
        refresh_at: Instant::now(),
        conn: saved
            .as_ref()
            .and_then(|s| s.connect.clone())
            .unwrap_or_default(),
        // Files of connect before its own field kept the id in register's, with no address.
        sub_id: saved.and_then(|s| match s.connect.and_then(|c| c.subscription_id) {
            Some(id) => Some(id),
            None if s.address.is_empty() => Some(s.id).filter(|i| !i.is_empty()),
            None => None,
        }),
        filters: None,
        cfg,
        stop,
        parent: Some(rustix::process::getppid()).flatten(),
        failures: 0,
        rng: ring::rand::SystemRandom::new(),
        save_failed: std::cell::Cell::new(false),
    };
    let result = s.run();
    if matches!(result, Err(Error::StdoutClosed)) {
        // The loop is gone (killed): leave the session recoverable for the next start, which
        // catches up what the loop may not have logged (see `ConnectState::loop_lost_at`).
        s.conn.loop_lost_at = Some(rfc3339(SystemTime::now()));
        let _ = s.write_state();
        return Ok(());
    }
    result
}

impl WsSession {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.orphaned()
    }

    /// The loop is gone (killed): leave at once, the session kept for the next start.
    fn orphaned(&self) -> bool {
        self.parent
            .is_some_and(|p| rustix::process::getppid() != Some(p))
    }

    fn run(&mut self) -> Result<(), Error> {
        loop {
            if self.orphaned() {
                return Err(Error::StdoutClosed);
            }
            if self.stopping() {
                return self.finish();
            }
            match self.connection()? {
                // A stop seen while orphaned (waiting for a ws token, say) is the loop gone:
                // the session is kept for the next start, not revoked.
                End::Stop if self.orphaned() => return Err(Error::StdoutClosed),
                End::Stop => return self.finish(),
                End::Reconnect(reason) => {
                    tell(b"S down\n")?;
                    self.failures += 1;
                    let wait = self.backoff();
                    info!(
                        "WebSocket: reconnecting ({reason}) in {:.1} s",
                        wait.as_secs_f64()
                    );
                    self.sleep(wait);
                }
            }
        }
    }

    /// Sleeps `d`, waking early for a stop.
    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stopping() {
            std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
        }
    }

    /// 1 s, then doubling to [`MAX_BACKOFF`], each with up to half again of random jitter.
    fn backoff(&self) -> Duration {
        use ring::rand::SecureRandom;
        let base = Duration::from_secs(1)
            .saturating_mul(1 << self.failures.saturating_sub(1).min(7))
            .min(MAX_BACKOFF);
        let mut r = [0u8; 2];
        let _ = self.rng.fill(&mut r);
        let frac = f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX);
        base.mul_f64(1.0 + frac / 2.0)
    }

    /// Saves the session's part of the state file. A failure (the disk full, say) is one warning
    /// and the session goes on: stopping would lose every event, keeping on loses only what a
    /// restart would have recovered.
    fn save(&self) -> Result<(), Error> {
        match self.write_state() {
            Ok(()) => {
                if self.save_failed.replace(false) {
                    info!("state file written again");
                }
            }
            Err(e) => {
                if !self.save_failed.replace(true) {
                    warn!(
                        "{e}; going on without it (a restart may need a new session and a catch-up)"
                    );
                }
            }
        }
        Ok(())
    }

    /// Writes the session's part of the state file (read again first: catch-up writes it too).
    fn write_state(&self) -> Result<(), Error> {
        let server = self.oauth.server().to_string();
        let mut st = state::load(&self.cfg.state_path)?
            .filter(|s| s.server == server)
            .unwrap_or(State {
                server,
                id: String::new(),
                address: String::new(),
                lifetime: None,
                sync: Default::default(),
                connect: None,
            });
        // `id` and `address` are register's (its webhook); an id without an address is what
        // connect kept there before it had a field of its own.
        if st.address.is_empty() {
            st.id.clear();
            st.lifetime = None;
        }
        st.connect = if !self.conn.refresh_token.is_empty() {
            Some(ConnectState {
                subscription_id: self.sub_id.clone(),
                ..self.conn.clone()
            })
        } else if !self.conn.ws_tokens.is_empty() || self.sub_id.is_some() {
            // No session kept (after SIGTERM), but the next start still paces its ws tokens.
            Some(ConnectState {
                subscription_id: self.sub_id.clone(),
                ws_tokens: self.conn.ws_tokens.clone(),
                ..Default::default()
            })
        } else {
            None
        };
        state::save(&self.cfg.state_path, &st)
    }

    /// A valid access token: refreshed in the same session when one is kept, a login only when
    /// there is no usable refresh token.
    fn access(&mut self) -> Result<Secret, Trouble> {
        let now = SystemTime::now();
        if let Some(t) = &self.tokens {
            if Instant::now() < self.refresh_at {
                return Ok(t.access.clone());
            }
        }
        let refresh_valid = !self.conn.refresh_token.is_empty()
            && parse_time(&self.conn.refresh_until).is_some_and(|u| u > now);
        let tokens = if refresh_valid {
            match self
                .oauth
                .refresh(&Secret::new(self.conn.refresh_token.clone()))
            {
                Ok(t) => t,
                Err(PlatformError::Api { status, .. }) if (400..500).contains(&status) => {
                    warn!(
                        "the kept OAuth session is no longer valid (HTTP {status}); signing in again (the WebSocket session cannot be recovered)"
                    );
                    self.conn.wsc = None;
                    self.login()?
                }
                Err(e) => {
                    return Err(Trouble::Again(format!(
                        "cannot refresh the access token: {e}"
                    )));
                }
            }
        } else {
            self.login()?
        };
        self.conn.refresh_token = tokens
            .refresh
            .as_ref()
            .map(|r| r.expose().to_string())
            .unwrap_or_default();
        self.conn.refresh_until = rfc3339(tokens.refresh_until);
        let access = tokens.access.clone();
        let life = tokens.access_until.duration_since(now).unwrap_or_default();
        self.refresh_at = Instant::now() + life - (life / 4).min(Duration::from_secs(300));
        self.tokens = Some(tokens);
        self.save().map_err(Trouble::Fatal)?;
        Ok(access)
    }

    /// The filters, `{extensionId}` expanded as `register` expands it, with this session's
    /// access token; once per process. A refused list (a 4xx: a missing permission) or an empty
    /// result stops the process: it is configuration. Anything else is tried again.
    fn filters(&mut self) -> Result<Vec<String>, Trouble> {
        if let Some(f) = &self.filters {
            return Ok(f.clone());
        }
        let access = self.access()?;
        let platform = Session::with_access(self.cfg.platform.endpoint.clone(), access);
        let f = platform
            .expand_filters(&self.cfg.filters, &self.cfg.scope)
            .map_err(|e| match e {
                ExpandError::List(PlatformError::Api { status, .. })
                    if (400..500).contains(&status) && status != 429 =>
                {
                    Trouble::Fatal(e.into_error())
                }
                ExpandError::NoneLeft => Trouble::Fatal(e.into_error()),
                e => Trouble::Again(e.into_error().to_string()),
            })?;
        self.filters = Some(f.clone());
        Ok(f)
    }

    /// A new session. Credentials the platform refuses (a 4xx) stop the process; anything else
    /// (no network yet at boot, a 5xx) is tried again.
    fn login(&mut self) -> Result<Tokens, Trouble> {
        let creds = self.cfg.platform.credentials.clone();
        let what = format!("cannot sign in to {}", self.cfg.platform.endpoint.server);
        self.oauth.login(&creds).map_err(|e| match e {
            PlatformError::Api { status, .. } if (400..500).contains(&status) && status != 429 => {
                Trouble::Fatal(platform_fail(&what, e))
            }
            e => Trouble::Again(format!("{what}: {e}")),
        })
    }

    /// The ws tokens taken in the last minute, oldest first: this process's and those the state
    /// file names (an earlier child or process; the file is read again, as catch-up writes it
    /// too). A time in the future (the clock set back) counts as now.
    fn recent_ws_tokens(&self, now: SystemTime) -> Vec<SystemTime> {
        let saved = state::load(&self.cfg.state_path)
            .ok()
            .flatten()
            .filter(|s| s.server == self.oauth.server())
            .and_then(|s| s.connect)
            .map(|c| c.ws_tokens)
            .unwrap_or_default();
        let mut times: Vec<SystemTime> = self
            .conn
            .ws_tokens
            .iter()
            .chain(&saved)
            .filter_map(|t| humantime::parse_rfc3339_weak(t).ok())
            .map(|t| t.min(now))
            .filter(|t| now.duration_since(*t).unwrap_or_default() < MINUTE)
            .collect();
        times.sort();
        times.dedup();
        times
    }

    /// Waits until one more ws token fits in the minute, then notes it in the state file before
    /// it is asked for (a child killed right after still counts it).
    fn pace(&mut self) -> Result<(), Error> {
        loop {
            let now = SystemTime::now();
            let times = self.recent_ws_tokens(now);
            if times.len() < WS_TOKENS_PER_MINUTE {
                let mut kept: Vec<String> = times.iter().map(|t| rfc3339(*t)).collect();
                kept.push(rfc3339(now));
                kept.drain(..kept.len().saturating_sub(WS_TOKENS_PER_MINUTE));
                self.conn.ws_tokens = kept;
                return self.save();
            }
            let first = times[times.len() - WS_TOKENS_PER_MINUTE];
            let wait = (first + MINUTE)
                .duration_since(now)
                .unwrap_or_default()
                .max(Duration::from_millis(1));
            info!(
                "WebSocket: {WS_TOKENS_PER_MINUTE} tokens taken this minute; next in {:.1} s",
                wait.as_secs_f64()
            );
            self.sleep(wait);
            if self.stopping() {
                return Ok(());
            }
        }
    }

    /// One connection, from the ws token to its end. `Err` only for what stops the process
    /// (a missing permission, credentials refused, the loop gone).
    fn connection(&mut self) -> Result<End, Error> {
        let access = match self.access() {
            Ok(a) => a,
            Err(Trouble::Fatal(e)) => return Err(e),
            Err(Trouble::Again(why)) => return Ok(End::Reconnect(why)),
        };
        self.pace()?;
        if self.stopping() {
            return Ok(End::Stop);
        }
        let token = match self.oauth.ws_token(&access) {
            Ok(t) => t,
            Err(PlatformError::Api { status: 403, .. }) => {
                return Err(fatal_permission(
                    "the WebSocket token (POST /restapi/oauth/wstoken)",
                ));
            }
            Err(PlatformError::Api { status: 401, .. }) => {
                self.tokens = None;
                return Ok(End::Reconnect("the access token was refused".into()));
            }
            Err(PlatformError::RateLimited { retry_after, .. }) => {
                // Waited here, where a stop still wakes it; the try already counts in `pace`.
                let wait = retry_after.min(MAX_RETRY_AFTER);
                warn!(
                    "get a WebSocket token: rate limited (HTTP 429); waiting {} s as the platform asks",
                    wait.as_secs()
                );
                self.sleep(wait);
                return Ok(End::Reconnect(
                    "the WebSocket token was rate limited (HTTP 429)".into(),
                ));
            }
            Err(e) => return Ok(End::Reconnect(format!("no WebSocket token: {e}"))),
        };
        let now = SystemTime::now();
        let recoverable = self.conn.wsc.is_some()
            && (self.conn.recoverable_until.as_deref())
                .and_then(parse_time)
                .is_some_and(|u| u > now);
        let mut url = format!(
            "{}{}access_token={}",
            token.uri,
            if token.uri.contains('?') { '&' } else { '?' },
            percent(token.token.expose())
        );
        if recoverable {
            url.push_str("&wsc=");
            url.push_str(&percent(self.conn.wsc.as_deref().unwrap_or("")));
        }
        let mut sock = match open(&url, &self.cfg) {
            Ok(s) => s,
            Err(e) => return Ok(End::Reconnect(e)),
        };
        let host = Target::parse(&token.uri)
            .map(|t| t.host)
            .unwrap_or_default();
        // ConnectionDetails (or an Error) before anything is sent.
        let first = match read_within(&mut sock, ANSWER_WITHIN, &self.stop) {
            Ok(Some(Incoming::Text(t))) => t,
            Ok(Some(Incoming::Closed(code, reason))) => {
                return Ok(End::Reconnect(closed(code, &reason)));
            }
            Ok(None) => return Ok(End::Reconnect("no ConnectionDetails in time".into())),
            Err(e) => return Ok(End::Reconnect(e.to_string())),
        };
        let msg = match Message::parse(&first) {
            Ok(m) => m,
            Err(e) => return Ok(End::Reconnect(format!("the first message is {e}"))),
        };
        if msg.meta.kind == "Error" {
            let err: GatewayError = msg.body_as();
            let code = err.error_code.unwrap_or_default();
            if code == "WSG-400" {
                // A token the gateway does not know: start a new session.
                self.conn.wsc = None;
            }
            return Ok(End::Reconnect(format!(
                "the gateway said {} {}",
                Clipped(&code),
                Clipped(err.message.as_deref().unwrap_or(""))
            )));
        }
        if msg.meta.kind != "ConnectionDetails" {
            return Ok(End::Reconnect(format!(
                "the first message is a {}, not ConnectionDetails",
                Clipped(&msg.meta.kind)
            )));
        }
        let details: Details = msg.body_as();
        if let Some(w) = &msg.meta.wsc {
            self.conn.wsc = Some(w.token.clone());
        }
        // Bounded: a gateway's absurd value must not overflow a clock (a panic).
        let secs = |v: Option<u64>, default: u64| {
            Duration::from_secs(v.unwrap_or(default).min(MAX_TIMEOUT))
        };
        let idle = secs(details.idle_timeout, 1800).max(Duration::from_secs(1));
        let absolute = secs(details.absolute_timeout, 86_400).max(Duration::from_secs(2));
        let recovery = secs(details.recovery_timeout, 180);
        // Unreadable (a string, negative): the documented 100. Zero: nothing is kept while away.
        let buffer = details.recovery_buffer_size.unwrap_or(100);
        info!(
            "WebSocket: connected to {} (idle timeout {} s, absolute {} s, recovery window {} s)",
            Clipped(&host),
            idle.as_secs(),
            absolute.as_secs(),
            recovery.as_secs()
        );
        let since = self.conn.alive_at.clone();
        let mut recovered = (recoverable
            && details.recovery_state.as_deref() == Some("Successful"))
        .then(|| Resend {
            since: since.clone().unwrap_or_else(|| rfc3339(now)),
            buffer,
            caught_up: buffer == 0,
        });
        if let Some(r) = &recovered {
            info!(
                "WebSocket: session recovered; subscription {} kept",
                Clipped(self.sub_id.as_deref().unwrap_or("?"))
            );
            if r.buffer == 0 {
                // Nothing to resend: whatever came while away is lost.
                info!(
                    "WebSocket: the gateway keeps no notification while away (recoveryBufferSize 0); catching up since {}",
                    r.since
                );
                tell(format!("C {}\n", r.since).as_bytes())?;
            }
        } else {
            if let Err(end) = self.subscribe(&mut sock)? {
                return Ok(end);
            }
            if recoverable || since.is_some() {
                let why = match (&details.recovery_state, &details.recovery_error_code) {
                    (Some(s), Some(c)) => format!("recovery {} ({})", Clipped(s), Clipped(c)),
                    (Some(s), None) => format!("recovery {}", Clipped(s)),
                    _ if recoverable => "recovery not offered".into(),
                    _ => "the session could not be recovered".into(),
                };
                let since = since.unwrap_or_else(|| rfc3339(now));
                info!("WebSocket: {why}: subscribed again; catching up since {since}");
                tell(format!("C {since}\n").as_bytes())?;
            }
        }
        if let Some(at) = self.conn.loop_lost_at.take() {
            // Read back as a time (the file is outside text): never a line break into `C`.
            let at = parse_time(&at).map_or_else(|| rfc3339(now), rfc3339);
            // Once per connection: a gap already caught up covers this one too.
            if let Some(r) = recovered.as_mut().filter(|r| !r.caught_up) {
                r.caught_up = true;
                info!(
                    "WebSocket: the last run ended with its loop killed at {}: what it had been handed may not be logged; catching up",
                    Clipped(&at)
                );
                tell(format!("C {at}\n").as_bytes())?;
            }
        }
        self.failures = 0;
        self.mark_alive(SystemTime::now(), recovery)?;
        tell(b"S up\n")?;
        let mut last_in = SystemTime::now();
        let end = self.steady(sock, (idle, absolute, recovery), recovered, &mut last_in);
        // The gateway keeps the session for its recovery window from the last sign of life.
        self.mark_alive(last_in, recovery)?;
        end
    }

    /// Sends the subscription's `ClientRequest` and waits for its answer.
    fn subscribe(&mut self, sock: &mut WebSocket<Stream>) -> Result<Result<(), End>, Error> {
        let filters = match self.filters() {
            Ok(f) => f,
            Err(Trouble::Fatal(e)) => return Err(e),
            Err(Trouble::Again(why)) => return Ok(Err(End::Reconnect(why))),
        };
        let id = self.message_id("sub");
        let req = gateway::create_subscription(&id, &filters);
        if let Err(e) = sock.send_text(req.as_bytes()) {
            return Ok(Err(End::Reconnect(e.to_string())));
        }
        let until = Instant::now() + ANSWER_WITHIN;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let text = match read_within(sock, left, &self.stop) {
                Ok(Some(Incoming::Text(t))) => t,
                Ok(Some(Incoming::Closed(c, r))) => return Ok(Err(End::Reconnect(closed(c, &r)))),
                Ok(None) if self.stopping() => return Ok(Err(End::Stop)),
                Ok(None) => {
                    return Ok(Err(End::Reconnect(
                        "no answer to the subscription request".into(),
                    )));
                }
                Err(e) => return Ok(Err(End::Reconnect(e.to_string()))),
            };
            let Ok(msg) = Message::parse(&text) else {
                return Ok(Err(End::Reconnect(
                    "a message that is not a JSON array".into(),
                )));
            };
            if msg.meta.message_id.as_deref() != Some(id.as_str()) && msg.meta.kind != "Error" {
                continue;
            }
            let status = msg.meta.status.unwrap_or(0);
            if msg.meta.kind == "ClientRequest" && (200..300).contains(&status) {
                let sub = msg
                    .header("WSG-SubscriptionId")
                    .map(str::to_string)
                    .or_else(|| msg.body_as::<SubscriptionBody>().id);
                info!(
                    "WebSocket: subscribed: {}, {} filters",
                    Clipped(sub.as_deref().unwrap_or("?")),
                    filters.len()
                );
                let old = std::mem::replace(&mut self.sub_id, sub);
                self.conn.alive_at = Some(rfc3339(SystemTime::now()));
                self.save()?;
                // The lost session's subscription would count against the user's limit until
                // it expires (RingCentral's own app deletes it too); its answer is not awaited.
                if let Some(old) = old.filter(|o| Some(o) != self.sub_id.as_ref()) {
                    let id = self.message_id("del");
                    let _ = sock.send_text(gateway::delete_subscription(&id, &old).as_bytes());
                }
                return Ok(Ok(()));
            }
            let err: GatewayError = msg.body_as();
            if status == 403 {
                return Err(fatal_permission(
                    "the subscription (ClientRequest POST /restapi/v1.0/subscription)",
                ));
            }
            return Ok(Err(End::Reconnect(format!(
                "the subscription was refused: {} {} {}",
                status,
                Clipped(err.error_code.as_deref().unwrap_or("")),
                Clipped(err.message.as_deref().unwrap_or(""))
            ))));
        }
    }

    fn message_id(&self, prefix: &str) -> String {
        use ring::rand::SecureRandom;
        let mut r = [0u8; 8];
        let _ = self.rng.fill(&mut r);
        format!("{prefix}-{:016x}", u64::from_le_bytes(r))
    }

    /// The connection's life once subscribed.
    fn steady(
        &mut self,
        mut sock: WebSocket<Stream>,
        (idle, absolute, recovery): (Duration, Duration, Duration),
        recovered: Option<Resend>,
        alive: &mut SystemTime,
    ) -> Result<End, Error> {
        let started = Instant::now();
        let beat_every = (idle / 3).max(Duration::from_millis(500));
        let plan_end =
            started + absolute.saturating_sub((absolute / 10).min(Duration::from_secs(60)));
        let mut last_in = Instant::now();
        let mut last_out = Instant::now();
        let mut last_save = Instant::now();
        let mut resent: Option<(u64, Instant)> = recovered.as_ref().map(|_| (0, Instant::now()));
        // Subscription ids not ours already warned about on this connection.
        let mut foreign: Vec<String> = Vec::new();
        loop {
            sock.get_ref().set_timeout(TICK);
            let got = sock.read();
            let now = Instant::now();
            match got {
                Ok(Incoming::Text(text)) => {
                    last_in = now;
                    *alive = SystemTime::now();
                    let msg = match Message::parse(&text) {
                        Ok(m) => m,
                        Err(e) => return Ok(End::Reconnect(format!("a message that is {e}"))),
                    };
                    if let Some(w) = &msg.meta.wsc {
                        self.conn.wsc = Some(w.token.clone());
                    }
                    match msg.meta.kind.as_str() {
                        "ServerNotification" => {
                            if let Some(body) = msg.body {
                                self.check_subscription(&msg, &mut foreign);
                                let mut line = b"N ".to_vec();
                                line.extend_from_slice(&gateway::one_line(body));
                                line.push(b'\n');
                                tell(&line)?;
                                if let (Some((n, at)), Some(r)) = (&mut resent, &recovered) {
                                    *n += 1;
                                    *at = now;
                                    if *n == r.buffer && !r.caught_up {
                                        // "Only the most recent events" are resent beyond it.
                                        info!(
                                            "WebSocket: {n} notifications resent, the gateway's whole recovery buffer: older ones may have been dropped; catching up since {}",
                                            r.since
                                        );
                                        tell(format!("C {}\n", r.since).as_bytes())?;
                                    }
                                }
                            }
                        }
                        "Error" => {
                            let err: GatewayError = msg.body_as();
                            return Ok(End::Reconnect(format!(
                                "the gateway said {} {}",
                                Clipped(err.error_code.as_deref().unwrap_or("")),
                                Clipped(err.message.as_deref().unwrap_or(""))
                            )));
                        }
                        _ => {}
                    }
                }
                Ok(Incoming::Closed(code, reason)) => {
                    return Ok(End::Reconnect(closed(code, &reason)));
                }
                Err(e) if ws::is_timeout(&e) => {}
                Err(e) => return Ok(End::Reconnect(e.to_string())),
            }
            // The resend is over after a second without a notification (or, under a steady
            // flow, five seconds in): what came until then is counted as resent.
            if let Some((n, at)) = resent {
                if now.duration_since(at) > Duration::from_secs(1)
                    || now.duration_since(started) > Duration::from_secs(5)
                {
                    info!("WebSocket: recovered ({n} resent)");
                    resent = None;
                }
            }
            if self.orphaned() {
                return Err(Error::StdoutClosed);
            }
            if self.stopping() {
                self.unsubscribe(&mut sock);
                return Ok(End::Stop);
            }
            if now.duration_since(last_save) >= SAVE_EVERY {
                // The window moves with the sign of life: a SIGKILL later still recovers.
                self.mark_alive(*alive, recovery)?;
                last_save = now;
            }
            if now >= plan_end {
                let _ = sock.close(1000);
                return Ok(End::Reconnect(
                    "planned, before the gateway's absolute timeout".into(),
                ));
            }
            if now.duration_since(last_in) > beat_every * 2 + Duration::from_secs(1) {
                return Ok(End::Reconnect("nothing heard, not even a heartbeat".into()));
            }
            // By what we sent, not what we heard: whether notifications keep the gateway's idle
            // timer alive is not documented (pings do not), a Heartbeat does.
            if now.duration_since(last_out) >= beat_every {
                let id = self.message_id("hb");
                if let Err(e) = sock.send_text(gateway::heartbeat(&id).as_bytes()) {
                    return Ok(End::Reconnect(e.to_string()));
                }
                last_out = now;
            }
            // The access token is renewed in the same session before it expires.
            if self.tokens.is_some() && now >= self.refresh_at {
                match self.access() {
                    Ok(_) => info!("OAuth access token refreshed (same session)"),
                    Err(Trouble::Fatal(e)) => return Err(e),
                    Err(Trouble::Again(why)) => {
                        warn!("{why}; trying again in 10 s");
                        self.refresh_at = now + Duration::from_secs(10);
                    }
                }
            }
        }
    }

    /// Warns (once per id and connection, at most [`MAX_FOREIGN`] ids) about a notification
    /// whose `subscriptionId` is not the current subscription's. It is logged all the same: the
    /// log is the only copy of an event, and a late one of the subscription just replaced is
    /// still an event.
    fn check_subscription(&self, msg: &Message<'_>, foreign: &mut Vec<String>) {
        let Some(ours) = self.sub_id.as_deref() else {
            return;
        };
        let Some(theirs) = msg.body_as::<NotificationBody>().subscription_id else {
            return;
        };
        if theirs == ours || foreign.len() >= MAX_FOREIGN || foreign.contains(&theirs) {
            return;
        }
        warn!(
            "WebSocket: a notification of subscription {} arrived for {}; logged all the same{}",
            Clipped(&theirs),
            Clipped(ours),
            if foreign.len() + 1 == MAX_FOREIGN {
                " (further foreign subscription ids on this connection are not reported)"
            } else {
                ""
            }
        );
        foreign.push(theirs);
    }

    /// Notes the connection's last sign of life and how long it stays recoverable.
    ///
    /// The window runs from now, not from `at`: every call is made while the connection is open
    /// or just as it ended, and the gateway keeps the session for the window from the moment it
    /// lost the connection (a quiet one hears a heartbeat answer only every third of the idle
    /// timeout). `at` stays what the catch-up starts from, should recovery fail.
    fn mark_alive(&mut self, at: SystemTime, recovery: Duration) -> Result<(), Error> {
        self.conn.alive_at = Some(rfc3339(at));
        self.conn.recoverable_until = Some(rfc3339(SystemTime::now().max(at) + recovery));
        self.save()
    }

    /// SIGTERM while connected: delete the subscription over the socket and wait for the answer
    /// (a few seconds at most), then close.
    fn unsubscribe(&mut self, sock: &mut WebSocket<Stream>) {
        let Some(sub) = self.sub_id.clone() else {
            return;
        };
        let id = self.message_id("del");
        if sock
            .send_text(gateway::delete_subscription(&id, &sub).as_bytes())
            .is_ok()
        {
            let until = Instant::now() + Duration::from_secs(5);
            let quiet = Arc::new(AtomicBool::new(false));
            while Instant::now() < until {
                match read_within(
                    sock,
                    until.saturating_duration_since(Instant::now()),
                    &quiet,
                ) {
                    Ok(Some(Incoming::Text(t))) => {
                        if let Ok(m) = Message::parse(&t) {
                            if m.meta.message_id.as_deref() == Some(id.as_str()) {
                                info!(
                                    "WebSocket: subscription {} deleted ({})",
                                    Clipped(&sub),
                                    m.meta.status.unwrap_or(0)
                                );
                                break;
                            }
                        }
                    }
                    _ => break,
                }
            }
        }
        let _ = sock.close(1000);
        self.sub_id = None;
    }

    /// The end of the process: the session revoked and forgotten (nothing left to recover).
    fn finish(&mut self) -> Result<(), Error> {
        let alive = self.conn.alive_at.clone();
        if let Some(t) = self.tokens.take() {
            match self.oauth.revoke(&t.access) {
                Ok(()) => info!("OAuth session revoked"),
                Err(e) => warn!("could not end the OAuth session (revoke): {e}"),
            }
        }
        self.conn = ConnectState {
            alive_at: alive,
            ws_tokens: std::mem::take(&mut self.conn.ws_tokens),
            ..Default::default()
        };
        self.save()
    }
}

/// Why no access token: the end of the process, or a reason to try again.
enum Trouble {
    Fatal(Error),
    Again(String),
}

fn closed(code: Option<u16>, reason: &str) -> String {
    match code {
        Some(c) => format!(
            "the gateway closed the connection ({c} {})",
            Clipped(reason)
        ),
        None => "the gateway closed the connection".into(),
    }
}

/// Percent-encodes everything outside the unreserved set.
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads one message within `within`; `Ok(None)` when the time passed or a stop came.
fn read_within(
    sock: &mut WebSocket<Stream>,
    within: Duration,
    stop: &AtomicBool,
) -> Result<Option<Incoming>, WsError> {
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        sock.get_ref().set_timeout(left.min(TICK));
        match sock.read() {
            Ok(m) => return Ok(Some(m)),
            Err(e) if ws::is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// TCP (and TLS for `wss://`) and the opening handshake. The URL carries the token: it is
/// never part of an error.
fn open(url: &str, cfg: &SessionConfig) -> Result<WebSocket<Stream>, String> {
    let target = Target::parse(url).map_err(|e| format!("the gateway's address: {e}"))?;
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", Clipped(&target.host)))?;
    let mut last = format!("{}: no address", Clipped(&target.host));
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_WITHIN) {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = format!("{}: {e}", Clipped(&target.host)),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(CONNECT_WITHIN));
    let _ = tcp.set_write_timeout(Some(CONNECT_WITHIN));
    let stream: Stream = if target.tls {
        let config = crate::https::tls_config(&cfg.platform.endpoint.roots)?;
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|_| format!("{}: not a TLS server name", Clipped(&target.host)))?;
        let client =
            rustls::ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?;
        Box::new(rustls::StreamOwned::new(client, tcp))
    } else {
        Box::new(tcp)
    };
    WebSocket::handshake(stream, &target, cfg.max_message).map_err(|e| match e {
        WsError::Io(io) => format!("cannot connect to {}: {io}", Clipped(&target.host)),
        other => format!("{}: {other}", Clipped(&target.host)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encodes_tokens() {
        assert_eq!(percent("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(percent("A-z_0.~"), "A-z_0.~");
    }
}
