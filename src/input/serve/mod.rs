//! `ringhook serve`: the receiver. Owns the listener, the connections, the event log and the
//! children it runs beside the loop (`--exec` commands, the `--register` reconcile, the `--ship`
//! shipper). Here: [`serve`] itself (open the log, bind, say what is on, run the loop), the loop's
//! [`wake`] holds what wakes the loop: every mio token, and the one deadline merge.
//!
//! - [`config`]: serve's settings, validated at start-up;
//! - [`server`]: the one-threaded mio loop: sockets, clocks, limits, group commit;
//! - [`exchange`]: one connection's HTTP/1.1, Sans-IO over ureq-proto;
//! - [`policy`]: request → answer, pure;
//! - [`event_log`]: the durable JSON-lines file and the dedupe window;
//! - [`exec`]: `--exec`, a command per logged notification;
//! - [`reconcile`]: `--register`, the reconcile child beside the loop;
//! - [`recover`]: `--register`'s catch-up child, whose recovered lines the loop logs;
//! - [`shipper`]: `--ship`, `ringhook ship` as a child beside the loop.
//!
//! Never: an answer before the event is synced, a blocking call on the loop's thread, a second
//! thread.

pub(crate) mod children;
pub(crate) mod config;
pub(crate) mod exchange;
pub(crate) mod metrics;
#[cfg(any(test, fuzzing))]
pub(crate) mod oracle;
pub(crate) mod policy;
pub(crate) mod server;
mod throttle;
pub(crate) mod wake;

use std::io;

use mio::net::TcpListener;

use crate::error::Error;
use crate::input::serve::config::LogTarget;
use crate::input::serve::server::Server;
use crate::log::EventLog;

pub(crate) use config::ServeConfig;

/// Runs the receiver until SIGTERM or SIGINT.
pub(crate) fn serve(cfg: ServeConfig) -> Result<(), Error> {
    let (log, log_desc) = open_log(&cfg)?;
    let listener = TcpListener::bind(cfg.listen).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => {
                "another process listens there: stop it or choose another --listen / PORT"
            }
            io::ErrorKind::PermissionDenied => {
                "ports below 1024 need privileges: use a port such as 3000"
            }
            _ => "check --listen / RINGHOOK_LISTEN / PORT",
        };
        Error::runtime_hint(format!("cannot listen on {}: {e}", cfg.listen), hint)
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::runtime(format!("cannot read the listening address: {e}")))?;

    announce(&cfg, &log_desc);

    let (max_connections, path) = (cfg.limits.max_connections, cfg.path.clone());
    let mut server = Server::new(cfg, Some(listener), log)
        .map_err(|e| Error::runtime(format!("cannot set up the event loop: {e}")))?;
    descriptor_limit(max_connections);
    // Tests and scripts wait for this exact line: it means the socket accepts.
    info!("listening on http://{local}{}", path);
    server
        .run()
        .map_err(|e| Error::runtime(format!("event loop failed: {e}")))?;
    Ok(())
}

pub(crate) fn open_log(cfg: &ServeConfig) -> Result<(EventLog, String), Error> {
    match &cfg.log {
        LogTarget::Stdout => Ok((EventLog::stdout(cfg.dedupe_window), "stdout".to_string())),
        LogTarget::File(path) => {
            let (log, rec) = EventLog::open(path, cfg.dedupe_window).map_err(|e| {
                Error::Config(format!(
                    "--log-file / RINGHOOK_LOG_FILE {}: {e}",
                    path.display()
                ))
            })?;
            if rec.torn_bytes > 0 {
                warn!(
                    "cut a torn last line of {} bytes from {} (a crash mid-write; it was never acknowledged)",
                    rec.torn_bytes,
                    path.display()
                );
            }
            Ok((
                log,
                format!(
                    "{} (fdatasync before each 200; {} recent uuids remembered)",
                    path.display(),
                    rec.seeded
                ),
            ))
        }
    }
}

/// Raises the soft open-file limit to the hard one (as Go's runtime does), then warns when
/// `max_connections` and what the process holds already do not fit under it.
fn descriptor_limit(max_connections: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    // No hard limit: the kernel's ceiling (fs.nr_open, 1 Mi by default) still applies.
    let hard = lim.maximum.unwrap_or(1 << 20);
    let mut soft = lim.current.unwrap_or(u64::MAX);
    if soft < hard {
        let raised = Rlimit {
            current: Some(hard),
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            soft = hard;
        }
    }
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    // A few more for --exec's pipes and a SIGHUP reopen.
    let need = max_connections as u64 + open + 8;
    if need > soft {
        warn!(
            "--max-connections {max_connections} and the {open} descriptors open already exceed the open-file limit of {soft} (ulimit -n): when it is reached, the quietest connections are closed for new ones"
        );
    }
}

/// The start-up lines: where events go, the limits, and each optional part that is on.
fn announce(cfg: &ServeConfig, log_desc: &str) {
    match &cfg.token_origin {
        Some(origin) => info!("verification token from {origin}: notifications without it get 403"),
        None => warn!(
            "no verification token (WEBHOOK_VERIFICATION_TOKEN): any notification posted to {} is logged",
            cfg.path
        ),
    }
    info!(
        "events to {log_desc}; limits: body {} B, head {} B, request {:?}, idle {:?}, {} connections",
        cfg.limits.max_body,
        cfg.limits.max_header,
        cfg.limits.request_timeout,
        cfg.limits.idle_timeout,
        cfg.limits.max_connections
    );
    if let Some(h) = &cfg.health_path {
        info!("health check at GET {h}");
    }
    if let Some(m) = &cfg.metrics_path {
        info!("Prometheus metrics at GET {m}");
    }
    if let Some(r) = &cfg.register {
        info!(
            "register: now, then every {:?}{}{}",
            r.every,
            r.quiet
                .map(|q| format!(", and after {q:?} without notifications"))
                .unwrap_or_default(),
            if r.unregister_on_exit {
                "; unregister at a clean stop"
            } else {
                ""
            }
        );
    }
    if let Some(x) = &cfg.exec {
        // The program only: arguments may carry credentials of the user's own.
        let filters: Vec<&str> = x.filters.iter().map(|f| f.as_str()).collect();
        info!(
            "exec: {} per logged event{}; {} at once, {} queued at most, killed after {:?}",
            x.argv[0],
            if filters.is_empty() {
                String::new()
            } else {
                format!(" matching {}", filters.join(" "))
            },
            x.max_running,
            x.max_queued,
            x.timeout
        );
    }
}
