//! The event log: the one file every input writes and every output reads.
//!
//! This module alone knows a line's format. Inputs hand it what they received and get durable
//! lines back; outputs read lines through it and never parse one themselves.
//!
//! - [`line`]: one line: the one type for what it holds, its writers and its parser;
//! - [`pattern`]: the event pattern `--exec-filter` and `tail --filter` match;
//! - [`dedupe`]: the uuids recently logged, so a redelivery is not written twice;
//! - [`histogram`]: how long the syncs take;
//! - [`writer`]: the append-only file, group commit, fdatasync, cut-back, torn-tail repair;
//! - [`disk`]: the one thread where the file's blocking work runs while `serve` serves;
//! - [`follow`]: reads the log from a [`cursor`] on, across rotations;
//! - [`backlog`]: what a follower has still to read, counted across the rotated files;
//! - [`cursor`]: where a reader is, stored as one line;
//! - [`rotated`]: the rotated copies of the log beside it, oldest first.
//!
//! Never: a second writer of the file, a line that is not whole JSON on one line.

// What only `ship` uses of the cursor and the follower (stored cursors, a start at an offset, the
// lag count) is dead in a build without it; `tail -f` uses the rest.
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) mod backlog;
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) mod cursor;
pub(crate) mod dedupe;
mod disk;
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) mod follow;
pub(crate) mod histogram;
pub(crate) mod line;
pub(crate) mod pattern;
pub(crate) mod rotated;
pub(crate) mod writer;

pub(crate) use line::Record;
pub(crate) use writer::{Batch, Commit, EventLog, Finished};
