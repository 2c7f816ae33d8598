//! `ringhook serve`: the receiver. Owns the listener, the connections, the event log and the
//! children it runs beside the loop (`--exec` commands, the `--register` reconcile, the `--ship`
//! shipper).
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

pub(crate) mod config;
pub(crate) mod event_log;
pub(crate) mod exchange;
pub(crate) mod exec;
pub(crate) mod policy;
pub(crate) mod reconcile;
pub(crate) mod recover;
pub(crate) mod server;
pub(crate) mod shipper;
mod throttle;

pub(crate) use config::ServeConfig;
pub(crate) use server::serve;

/// A child's stdout as a non-blocking pipe the loop polls under `token`; `None` when it cannot
/// be (the child then runs unheard, as when it has no stdout). Shared by serve's three children.
fn watch_stdout(
    child: &mut std::process::Child,
    registry: &mio::Registry,
    token: mio::Token,
) -> Option<mio::unix::pipe::Receiver> {
    let mut rx = mio::unix::pipe::Receiver::from(child.stdout.take()?);
    rx.set_nonblocking(true).ok()?;
    registry
        .register(&mut rx, token, mio::Interest::READABLE)
        .ok()?;
    Some(rx)
}
