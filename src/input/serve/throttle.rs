//! The operational log's throttle: under a flood, lines of one kind (rejected requests,
//! handshakes, evictions…) beyond a few per second are counted instead of written, and each kind
//! gets one summary line per interval ("… 1,532 more rejected in the last 10 s"). Errors never
//! pass through here: they are always written.

use std::time::{Duration, Instant};

/// Lines of one kind written per second before the rest are counted.
const PER_SECOND: u32 = 5;
/// How often a kind's count of unwritten lines is summarized.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// The kinds of line that floods produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A request answered 4xx or 5xx, or refused.
    Rejected,
    /// A handshake answered.
    Handshake,
    /// A connection closed to make room.
    Evicted,
    /// A redelivery acknowledged without writing.
    Duplicate,
    /// Accepting failed and paused.
    AcceptFailed,
}

const KINDS: usize = 5;

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Rejected => "rejected",
            Kind::Handshake => "handshakes answered",
            Kind::Evicted => "connections evicted",
            Kind::Duplicate => "duplicates acknowledged",
            Kind::AcceptFailed => "failed accepts",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    /// Start of the current one-second window, and lines written in it.
    second: Option<Instant>,
    written: u32,
    /// Lines not written since `held_since`.
    held: u64,
    held_since: Option<Instant>,
}

/// Per-kind rate limits for the operational log.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    slots: [Slot; KINDS],
}

impl Throttle {
    /// True when a line of `kind` may be written now; otherwise it is counted for the summary.
    pub(crate) fn allow(&mut self, kind: Kind) -> bool {
        let now = Instant::now();
        let slot = &mut self.slots[kind as usize];
        if slot
            .second
            .is_none_or(|s| now >= s + Duration::from_secs(1))
        {
            slot.second = Some(now);
            slot.written = 0;
        }
        if slot.written < PER_SECOND {
            slot.written += 1;
            return true;
        }
        slot.held += 1;
        slot.held_since.get_or_insert(now);
        false
    }

    /// Writes the summary of each kind whose interval is over (of every kind, with `all`);
    /// returns when the next one is due.
    pub(crate) fn flush(&mut self, now: Instant, all: bool) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(since) = slot.held_since else {
                continue;
            };
            let due = since + INTERVAL;
            if all || now >= due {
                let secs = now.saturating_duration_since(since).as_secs().max(1);
                info!(
                    "… {} more {} in the last {secs} s",
                    thousands(slot.held),
                    KIND_ORDER[i].noun()
                );
                slot.held = 0;
                slot.held_since = None;
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        next
    }
}

const KIND_ORDER: [Kind; KINDS] = [
    Kind::Rejected,
    Kind::Handshake,
    Kind::Evicted,
    Kind::Duplicate,
    Kind::AcceptFailed,
];

/// `1532` → `1,532`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_a_few_lines_and_counted() {
        crate::oplog::set_quiet(true);
        let mut t = Throttle::default();
        let written = (0..1000).filter(|_| t.allow(Kind::Rejected)).count();
        assert!((PER_SECOND as usize..=2 * PER_SECOND as usize).contains(&written));
        assert_eq!(t.slots[0].held as usize, 1000 - written);
        // Other kinds have their own allowance.
        assert!(t.allow(Kind::Handshake));
        let now = Instant::now();
        assert_eq!(
            t.flush(now, false),
            t.slots[0].held_since.map(|s| s + INTERVAL)
        );
        assert_eq!(t.flush(now, true), None);
        assert_eq!(t.slots[0].held, 0);
    }

    #[test]
    fn thousands_are_separated() {
        for (n, s) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1532, "1,532"),
            (1234567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), s);
        }
    }
}
