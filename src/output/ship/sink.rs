//! What every sink is to the driver: a destination that takes records, some in flight at once,
//! and says what became of each. A sink knows nothing of the log, the cursor or the other
//! sinks; the driver knows nothing of any sink's protocol. A new sink is one new file beside
//! `http.rs` and `nats/`, and one variant of `SinkConfig`.

use std::time::Duration;

/// The smallest size limit a sink may set and still be sent to. RingCentral's smallest published
/// notifications are ~570 bytes and most are several KiB, so a sink whose limit is below 1 KiB
/// (a NATS server's `max_payload` or a stream's `max_msg_size`, an HTTP sink answering 413) can
/// take no stream of them: its setup is wrong (or it is broken, or hostile), not the records.
/// Every record would follow, so a record under this size said to be too large is a failure to
/// retry, never a reason to dead-letter; larger ones refused so are dead-lettered.
pub(crate) const SMALLEST_LIMIT: usize = 1024;

/// One record as a sink sends it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    /// The idempotency key: the notification's uuid, or `message:<id>` / `call:<id>`.
    pub key: &'a str,
    /// The event's name (`presence`), for sinks that route by it.
    pub event: &'a str,
    /// When it was received, RFC 3339, as logged.
    pub received_at: &'a str,
    /// The notification (or recovered record) exactly as logged.
    pub payload: &'a [u8],
}

/// The outcome of delivering one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The sink has it (2xx; a JetStream acknowledgement, duplicates included).
    Delivered,
    /// Try again later (after `after` when the sink said so); order is kept.
    Retry {
        /// The sink's `Retry-After`.
        after: Option<Duration>,
        /// Why, for the operational log.
        reason: String,
    },
    /// The sink will never take it: to the dead-letter file, and on.
    DeadLetter {
        /// The HTTP status (0 when the sink was never asked).
        status: u16,
        /// Why.
        reason: String,
    },
}

/// A destination that takes records, some in flight at once, and says what became of each.
pub(crate) trait Sink {
    /// Where it sends, for the operational log (no secrets).
    fn describe(&self) -> String;
    /// Where `record` would go, for `--dry-run`.
    fn destination(&self, record: &Outgoing<'_>) -> String;
    /// Records in flight at most.
    fn window(&self) -> usize;
    /// Sends `record` (`slot` names it in the verdicts); it may only be buffered. An error means
    /// the connection is unusable.
    fn submit(&mut self, slot: u64, record: &Outgoing<'_>) -> Result<(), String>;
    /// Adds the verdicts that arrived, waiting up to `wait` for the first.
    fn poll(&mut self, wait: Duration, out: &mut Vec<(u64, Verdict)>) -> Result<(), String>;
    /// Drops the connection after a failure; the next `submit` connects again.
    fn reset(&mut self);
    /// Nothing is in flight and the log has nothing new: keep the connection alive without
    /// waiting (a NATS server drops a client that answers no PING). A connection that turns out
    /// lost is dropped quietly: the next `submit` connects again.
    fn idle(&mut self) {}
}
