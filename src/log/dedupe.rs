//! Recently logged uuids, so that a redelivery is acknowledged without being written twice.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Recently logged uuids, to acknowledge a redelivery without writing it again.
///
/// Holds 64-bit keyed hashes rather than the strings: 10 000 entries cost ~300 KB, not ~1 MB.
#[derive(Debug)]
pub(crate) struct Dedupe {
    hasher: std::collections::hash_map::RandomState,
    seen: HashSet<u64, BuildHasherDefault<KeyHash>>,
    order: VecDeque<u64>,
    pub(super) capacity: usize,
}

/// The set's hash of a key is the key: keys are already SipHash values under this process's
/// random key, so an attacker cannot aim uuids at one bucket, and hashing them again cost two
/// more SipHash runs per notification.
#[derive(Debug, Default)]
struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is called for a u64 key; this keeps any other use correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, k: u64) {
        self.0 = k;
    }
}

impl Dedupe {
    /// Remembers up to `capacity` uuids (0 turns deduplication off).
    pub(crate) fn new(capacity: usize) -> Dedupe {
        Dedupe {
            hasher: Default::default(),
            seen: HashSet::default(),
            order: VecDeque::new(),
            capacity,
        }
    }

    pub(super) fn key(&self, uuid: &str) -> u64 {
        self.hasher.hash_one(uuid)
    }

    /// True when `uuid` was logged recently.
    pub(crate) fn contains(&self, uuid: &str) -> bool {
        self.contains_key(self.key(uuid))
    }

    pub(super) fn contains_key(&self, k: u64) -> bool {
        self.capacity > 0 && self.seen.contains(&k)
    }

    /// Remembers `uuid`, forgetting the oldest when full.
    pub(crate) fn insert(&mut self, uuid: &str) {
        self.insert_key(self.key(uuid));
    }

    pub(super) fn insert_key(&mut self, k: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.seen.insert(k) {
            self.order.push_back(k);
            if self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_forgets_the_oldest() {
        let mut d = Dedupe::new(2);
        d.insert("a");
        d.insert("b");
        d.insert("c");
        assert!(!d.contains("a"));
        assert!(d.contains("b") && d.contains("c"));
        assert_eq!(d.order.len(), 2);
    }
}
