//! How long the log's syncs take: a histogram the writer fills and `/metrics` shows as
//! `ringhook_log_sync_seconds`.

use std::time::Duration;

/// Upper bounds of `ringhook_log_sync_seconds`: 0.5 ms (an SSD) to 1 s (a tired SD card).
pub(crate) const SYNC_BUCKETS: [(&str, u64); 11] = [
    ("0.0005", 500_000),
    ("0.001", 1_000_000),
    ("0.0025", 2_500_000),
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.025", 25_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.25", 250_000_000),
    ("0.5", 500_000_000),
    ("1", 1_000_000_000),
];

/// A histogram of durations over [`SYNC_BUCKETS`], kept in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); beyond the last bound only in `count`.
    buckets: [u64; SYNC_BUCKETS.len()],
    count: u64,
    sum_nanos: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if let Some(i) = SYNC_BUCKETS.iter().position(|&(_, le)| nanos <= le) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Observations per bucket of [`SYNC_BUCKETS`] (not cumulative).
    pub(crate) fn buckets(&self) -> [u64; SYNC_BUCKETS.len()] {
        self.buckets
    }

    /// The sum of every duration observed.
    pub(crate) fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos)
    }
}
