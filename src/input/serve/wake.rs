//! What wakes serve's loop: an event on one of these mio tokens, or the earliest deadline of its
//! parts. Connections count up from [`FIRST_CONN`], `--exec` pipes from [`FIRST_EXEC`]; the three
//! children's stdout pipes and the log's disk thread sit just below `FIRST_EXEC`.

use std::time::Instant;

use mio::Token;

/// The listening socket.
pub(crate) const LISTENER: Token = Token(0);
/// SIGTERM, SIGINT, SIGHUP and SIGCHLD.
pub(crate) const SIGNALS: Token = Token(1);
/// The first connection's token (and id).
pub(crate) const FIRST_CONN: usize = 2;
/// The reconcile child's stdout (`--register`).
pub(crate) const RECONCILE: Token = Token(FIRST_EXEC - 1);
/// The catch-up child's stdout (`--register` with a log file).
pub(crate) const RECOVER: Token = Token(FIRST_EXEC - 2);
/// The shipper child's stdout (`--ship`).
pub(crate) const SHIPPER: Token = Token(FIRST_EXEC - 3);
/// The event log's disk thread: a job is done ([`crate::log::EventLog::finish`]).
pub(crate) const LOG: Token = Token(FIRST_EXEC - 4);
/// `ringhook connect`'s session child's stdout.
pub(crate) const CONNECT: Token = Token(FIRST_EXEC - 5);
/// `--exec` children's stdin and stderr pipes count up from here.
pub(crate) const FIRST_EXEC: usize = usize::MAX / 2;
/// Not a token: the connection id of records the catch-up child recovered (no socket waits
/// for them).
pub(crate) const RECOVERED: usize = usize::MAX;
/// Not a token: the connection id of notifications `connect`'s session child received.
pub(crate) const STREAMED: usize = usize::MAX - 1;

/// The earlier of two optional deadlines: how the loop's sleep is bounded by every part.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
