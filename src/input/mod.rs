//! Inputs: everything that puts events into the log. Each turns what the platform sends into
//! log lines through [`crate::log`] and never writes the file itself.
//!
//! - [`serve`]: the webhook receiver (and the children it supervises);
//! - [`catchup`]: Message Sync and Call Log Sync, for what the receiver missed;
//! - `connect`: the same events over RingCentral's WebSocket (serve's loop, a session child).

#[cfg(any(feature = "catchup", test))]
#[cfg_attr(not(feature = "catchup"), allow(dead_code))]
pub(crate) mod catchup;
#[cfg(feature = "connect")]
pub(crate) mod connect;
pub(crate) mod serve;
