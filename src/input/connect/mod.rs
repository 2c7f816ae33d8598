//! `ringhook connect`: the same events as `serve`, over RingCentral's WebSocket transport: one
//! outbound connection, no public address, no tunnel.
//!
//! Two processes of the one binary. The parent is serve's loop itself (the event log with its
//! group commit, fdatasync and dedupe by uuid, `--exec`, `--ship`, SIGHUP, SIGTERM, and with
//! `--listen` only `/health` and `/metrics`), which supervises the session child
//! (`input/serve/children/connect.rs`) and logs each body it prints exactly as a webhook's. The
//! child ([`session`], run when [`crate::cli::CONNECT_SESSION`] is set) holds the WebSocket with
//! plain blocking I/O, so the loop stays the only thread that serves and never waits on the
//! network. [`gateway`] reads and writes the gateway's messages; [`ws`] is RFC 6455's client
//! side.

pub(crate) mod gateway;
pub(crate) mod session;
pub(crate) mod ws;

use std::path::Path;
use std::time::{Duration, Instant};

use mio::net::TcpListener;

use crate::cli::{self, Flags};
use crate::config::Vars;
use crate::error::Error;
use crate::input::serve::children::connect::{Connector, ConnectorConfig};
use crate::input::serve::children::recover::{RecoverConfig, Recoverer};
use crate::input::serve::config::{LogTarget, ServeConfig, TUTORIAL_FILTERS};
use crate::input::serve::server::Server;
use crate::platform::settings::{EXTENSION_ID, connect_settings};

/// `ringhook connect` (and, with [`cli::CONNECT_SESSION`] set, its session child).
pub(crate) fn run(flags: &Flags, vars: &Vars) -> Result<(), Error> {
    let settings = connect_settings(flags, vars, TUTORIAL_FILTERS)?;
    let state_path = settings.state_path.clone();
    let mut cfg = ServeConfig::resolve(flags, vars)?;
    if vars.get(cli::CONNECT_SESSION).is_some() {
        return session::run(session::SessionConfig {
            platform: settings.platform,
            filters: settings.filters,
            scope: settings.scope,
            state_path,
            max_message: cfg.limits.max_body as usize,
        });
    }
    // No webhook: no request path is empty, so no POST is ever taken as a notification.
    cfg.path = String::new();
    cfg.token = None;
    cfg.register = None;
    let listen = vars.flag_or(flags, &cli::LISTEN).map(|_| cfg.listen);
    // One `connect` per state file, held until the process ends however it ends: two would
    // spend each other's single-use refresh tokens and fight over one session.
    // The session makes the state file's folder when it first saves; the lock beside the file
    // needs it first (the default `~/.local/state/ringhook/` need not exist yet).
    if let Some(dir) = state_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::runtime_hint(
                format!("cannot make the state file's folder {}: {e}", dir.display()),
                "make it writable, or point RINGHOOK_STATE elsewhere",
            )
        })?;
    }
    let lock = held_lock(&state_path)?.ok_or_else(|| {
        Error::Config(format!(
            "state {} is in use by another ringhook connect (it holds {}): one connect per \
                 state file; give this one its own --state, or stop the other",
            state_path.display(),
            crate::log::cursor::lock_path(&state_path).display()
        ))
    })?;
    // The session child holds it too: a child outliving a killed loop still has the session.
    let lock = std::sync::Arc::new(lock);
    let (log, log_desc) = crate::input::serve::open_log(&cfg)?;
    let listener = match listen {
        Some(addr) => Some(TcpListener::bind(addr).map_err(|e| {
            Error::runtime_hint(
                format!("cannot listen on {addr}: {e}"),
                "check --listen / RINGHOOK_LISTEN",
            )
        })?),
        None => None,
    };
    let recoverer = match &cfg.log {
        LogTarget::File(log) if cfg!(feature = "catchup") => {
            let mut env = vars.defaults_in_force();
            env.push((
                cli::STATE.env[0].to_string(),
                state_path.display().to_string(),
            ));
            Some(Recoverer::new(RecoverConfig {
                log: log.clone(),
                env_file: vars.explicit_file().map(Path::to_path_buf),
                env,
            }))
        }
        _ => None,
    };
    let mut args: Vec<std::ffi::OsString> = vec![
        "--state".into(),
        state_path.clone().into(),
        "--max-body".into(),
        cfg.limits.max_body.to_string().into(),
    ];
    // The filters as read here (from --event too, which the child's own flags would lack).
    for f in &settings.filters {
        args.push(cli::EVENT.name.into());
        args.push(f.into());
    }
    let connector = Connector::new(ConnectorConfig {
        env_file: vars.explicit_file().map(Path::to_path_buf),
        args,
        max_line: cfg.limits.max_body as usize + 64,
        lock: Some(lock),
    });
    info!(
        "connect: events to {log_desc}; {} filters{}; state in {}",
        settings.filters.len(),
        if settings.filters.iter().any(|f| f.contains(EXTENSION_ID)) {
            format!(" ({EXTENSION_ID} expanded per extension by the session)")
        } else {
            String::new()
        },
        state_path.display()
    );
    let local = listener.as_ref().and_then(|l| l.local_addr().ok());
    let mut server = Server::new(cfg, listener, log)
        .map_err(|e| Error::runtime(format!("cannot set up the event loop: {e}")))?;
    server.connect(connector, recoverer);
    if let Some(addr) = local {
        // Tests and scripts wait for this line, as for serve's.
        info!("listening on http://{addr}/ for the health and metrics paths only");
    }
    server
        .run()
        .map_err(|e| Error::runtime(format!("event loop failed: {e}")))?;
    if server.gave_up() {
        return Err(Error::runtime("the WebSocket session cannot go on"));
    }
    Ok(())
}

/// How long a new `connect` waits for the state file's lock: the session child of a `connect`
/// just killed holds it until it notices its loop is gone (within a tick, mostly) and has saved.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The state file's lock ([`crate::log::cursor::lock`]), waited for up to [`LOCK_WAIT`]; `None`
/// when another connect still holds it then.
fn held_lock(state_path: &Path) -> Result<Option<std::fs::File>, Error> {
    let until = Instant::now() + LOCK_WAIT;
    loop {
        match crate::log::cursor::lock(state_path)
            .map_err(|e| Error::runtime(format!("state {}: {e}", state_path.display())))?
        {
            Some(f) => return Ok(Some(f)),
            None if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            None => return Ok(None),
        }
    }
}
