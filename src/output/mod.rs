//! Outputs: everything that reads the log and carries its events on. Each reads through
//! [`crate::log`] (its follower, cursor and line parser) and never spells a field of a line.
//!
//! - [`ship`]: to a sink (HTTP, NATS JetStream), at least once, in order;
//! - [`tail`]: to a person's terminal.
//!
//! `--exec` is an output too, run by the receiver's loop: `crate::input::serve::children::exec`.

#[cfg(any(feature = "ship", test))]
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) mod ship;
pub(crate) mod tail;
