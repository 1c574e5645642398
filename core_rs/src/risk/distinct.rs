//! Capped distinct sets: the last `DISTINCT_CAP` distinct values a key was seen with, each with
//! the hour it was last seen, for the 24 h distinct counts (`docs/risk.md`, "Features").

use smallvec::SmallVec;

use super::window::bucket;

/// At most this many distinct values are kept per set; a new value beyond it drops the one
/// seen longest ago (so the count saturates at this figure).
pub const DISTINCT_CAP: usize = 64;
/// The distinct counts' window: a value counts while its last sighting's hour is one of the last
/// `DISTINCT_BUCKETS` hours (the 24 h window's buckets).
pub(crate) const DISTINCT_WIDTH_MS: i64 = 3_600_000;
pub(crate) const DISTINCT_BUCKETS: i64 = 24;

/// Values (hashed keys or buyer ids) in the order they were last seen, the oldest first.
///
/// Four values inline: most devices, addresses and IPs see a few buyers (a household, an office),
/// and most buyers a few devices and addresses; up to four the set costs no allocation and, on
/// the hot path, no cache miss beyond its key's slot (a spilled set's values are one more).
#[derive(Clone, Debug, Default)]
pub(crate) struct DistinctSet {
    seen: SmallVec<[(u64, i64); 4]>,
}

impl DistinctSet {
    /// How many values were last seen in the 24 h window at `t_ms`. Nothing changes.
    #[inline]
    pub(crate) fn count_at(&self, t_ms: i64) -> usize {
        let oldest_live = bucket(t_ms, DISTINCT_WIDTH_MS) - DISTINCT_BUCKETS;
        // Newest last: count back from the end while the hour is still in the window.
        self.seen
            .iter()
            .rev()
            .take_while(|(_, hour)| *hour > oldest_live)
            .count()
    }

    /// Records `value` seen at `t_ms` (not earlier than any time seen before).
    pub(crate) fn see(&mut self, value: u64, t_ms: i64) {
        let hour = bucket(t_ms, DISTINCT_WIDTH_MS);
        let oldest_live = hour - DISTINCT_BUCKETS;
        // Expired values are a prefix (the set is in order of last sighting).
        let expired = self
            .seen
            .iter()
            .take_while(|(_, h)| *h <= oldest_live)
            .count();
        if expired > 0 {
            self.seen.drain(..expired);
        }
        if let Some(at) = self.seen.iter().position(|(v, _)| *v == value) {
            self.seen.remove(at);
        } else if self.seen.len() == DISTINCT_CAP {
            self.seen.remove(0);
        }
        self.seen.push((value, hour));
    }

    /// Heap bytes held beyond the struct itself (0 while the one inline value suffices).
    pub(crate) fn heap_bytes(&self) -> usize {
        if self.seen.spilled() {
            self.seen.capacity() * std::mem::size_of::<(u64, i64)>()
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn counts_distinct_values_once() {
        let mut s = DistinctSet::default();
        s.see(7, 0);
        s.see(7, 10);
        s.see(8, 20);
        assert_eq!(s.count_at(20), 2);
        assert_eq!(s.heap_bytes(), 0);
        for v in 100..103 {
            s.see(v, 30);
        }
        assert_eq!(s.count_at(30), 5);
        assert!(s.heap_bytes() >= 5 * 16);
    }

    #[test]
    fn a_value_counts_for_24_hourly_buckets_after_its_last_sighting() {
        let mut s = DistinctSet::default();
        s.see(1, H - 1); // hour 0
        s.see(2, H); // hour 1
        assert_eq!(s.count_at(24 * H - 1), 2);
        assert_eq!(s.count_at(24 * H), 1);
        assert_eq!(s.count_at(25 * H - 1), 1);
        assert_eq!(s.count_at(25 * H), 0);
        // Seeing 1 again renews it.
        s.see(1, 24 * H);
        assert_eq!(s.count_at(25 * H), 1);
        assert_eq!(s.count_at(48 * H - 1), 1);
        assert_eq!(s.count_at(48 * H), 0);
    }

    #[test]
    fn expired_values_are_dropped_when_the_set_changes() {
        let mut s = DistinctSet::default();
        for v in 0..10 {
            s.see(v, 0);
        }
        s.see(99, 30 * H);
        assert_eq!(s.count_at(30 * H), 1);
        assert!(!s.seen.spilled() || s.seen.len() == 1);
        assert_eq!(s.seen.len(), 1);
    }

    #[test]
    fn the_cap_drops_the_value_seen_longest_ago() {
        let mut s = DistinctSet::default();
        for v in 0..DISTINCT_CAP as u64 {
            s.see(v, v as i64);
        }
        s.see(0, 100); // 0 is now the newest; 1 the oldest
        s.see(1_000, 101);
        assert_eq!(s.count_at(101), DISTINCT_CAP);
        assert!(s.seen.iter().all(|(v, _)| *v != 1));
        assert!(s.seen.iter().any(|(v, _)| *v == 0));
        // Beyond the cap the count stays at the cap.
        for v in 2_000..2_100 {
            s.see(v, 200);
        }
        assert_eq!(s.count_at(200), DISTINCT_CAP);
    }
}
