//! Capped distinct sets: the distinct values a key was seen with lately (at least the last
//! `DISTINCT_CAP`), each with the hour it was last seen, for the 24 h distinct counts
//! (`docs/risk.md`, "Features").

use smallvec::SmallVec;

use super::window::bucket;

/// The distinct counts saturate at this figure: a set keeps at least its last `DISTINCT_CAP`
/// values, and drops those seen longest ago once it holds `DISTINCT_SLACK` more.
pub const DISTINCT_CAP: usize = 64;
/// The distinct counts' window: a value counts while its last sighting's hour is one of the last
/// `DISTINCT_BUCKETS` hours (the 24 h window's buckets).
pub(crate) const DISTINCT_WIDTH_MS: i64 = 3_600_000;
pub(crate) const DISTINCT_BUCKETS: i64 = 24;

/// Values beyond `DISTINCT_CAP` a set may hold before it drops its oldest: dropping them in
/// one move every `DISTINCT_SLACK` new values, rather than one (a shift of the whole set) with
/// each, is what keeps a key that sees a new value per order (a buyer ordering from a new
/// device each time) cheap. The counts are the same: see `count_at`.
const DISTINCT_SLACK: usize = 16;

/// Values (hashed keys or buyer ids) in the order they were last seen, the oldest first, each
/// with the hour of its last sighting (so those hours never decrease along the set).
///
/// Four values inline: most devices, addresses and IPs see a few buyers (a household, an office),
/// and most buyers a few devices and addresses; up to four the set costs no allocation and, on
/// the hot path, no cache miss beyond its key's slot (a spilled set's values are one more).
#[derive(Debug, Default)]
pub(crate) struct DistinctSet {
    seen: SmallVec<[(u64, i64); 4]>,
}

impl Clone for DistinctSet {
    /// An exact fit (`SmallVec`'s own clone rounds the capacity up to a power of two: a set of
    /// 65 values would hold room for 128).
    fn clone(&self) -> Self {
        let mut seen = SmallVec::with_capacity(self.seen.len());
        seen.extend_from_slice(&self.seen);
        Self { seen }
    }
}

impl DistinctSet {
    /// How many of the last `DISTINCT_CAP` distinct values were last seen in the 24 h window at
    /// `t_ms`. Nothing changes.
    ///
    /// The set may hold up to `DISTINCT_SLACK` values older than those: if any of them is in
    /// the window, so is every newer value, and the count is the cap either way.
    #[inline]
    pub(crate) fn count_at(&self, t_ms: i64) -> usize {
        let oldest_live = bucket(t_ms, DISTINCT_WIDTH_MS) - DISTINCT_BUCKETS;
        // The hours are in order: the live values are a suffix.
        let expired = self.seen.partition_point(|(_, hour)| *hour <= oldest_live);
        (self.seen.len() - expired).min(DISTINCT_CAP)
    }

    /// Records `value` seen at `t_ms` (not earlier than any time seen before).
    pub(crate) fn see(&mut self, value: u64, t_ms: i64) {
        let hour = bucket(t_ms, DISTINCT_WIDTH_MS);
        let oldest_live = hour - DISTINCT_BUCKETS;
        // Expired values are a prefix (the set is in order of last sighting); so are the values
        // beyond the cap and its slack.
        let expired = self
            .seen
            .iter()
            .take_while(|(_, h)| *h <= oldest_live)
            .count();
        let beyond = (self.seen.len() + 1).saturating_sub(DISTINCT_CAP + DISTINCT_SLACK);
        let drop = if beyond > 0 {
            expired.max(DISTINCT_SLACK)
        } else {
            expired
        };
        if drop > 0 {
            self.seen.drain(..drop);
        }
        // Whether it is there at all first, in one pass without a branch per value (the
        // compiler makes it vector compares): a set at its cap is most often searched for a
        // value it does not hold (a buyer with a new device per order).
        let there = self
            .seen
            .iter()
            .fold(false, |there, (v, _)| there | (*v == value));
        // If so, where, from the newest: a value seen again is most often one seen lately.
        let at = there.then(|| self.seen.iter().rposition(|(v, _)| *v == value));
        if let Some(at) = at.flatten() {
            self.seen.remove(at);
        } else if self.seen.len() == self.seen.capacity() && self.seen.len() >= DISTINCT_CAP {
            // Full at or beyond the cap (grown to it, or a clone's exact fit): room up to the cap
            // and its slack, never a doubling to twice the cap. Below the cap the set doubles.
            let room = (DISTINCT_CAP + DISTINCT_SLACK).saturating_sub(self.seen.len());
            self.seen.reserve_exact(room.max(1));
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
        // Beyond the cap the count stays at the cap, and the set within its slack.
        for v in 2_000..2_100 {
            s.see(v, 200);
            assert!(s.seen.len() <= DISTINCT_CAP + DISTINCT_SLACK);
        }
        assert_eq!(s.count_at(200), DISTINCT_CAP);
    }

    #[test]
    fn a_full_set_holds_at_most_the_cap_and_its_slack_in_memory() {
        let bound = (DISTINCT_CAP + DISTINCT_SLACK) * std::mem::size_of::<(u64, i64)>();
        let mut s = DistinctSet::default();
        for v in 0..1_000u64 {
            s.see(v, 0);
            assert!(s.heap_bytes() <= bound, "{} bytes at {v}", s.heap_bytes());
        }
        // A clone fits its values exactly (a capacity between the cap and its slack): it too
        // grows to the bound, not to twice its size.
        for extra in 0..DISTINCT_SLACK as u64 {
            let mut c = DistinctSet::default();
            for v in 0..DISTINCT_CAP as u64 + extra {
                c.see(v, 0);
            }
            let mut c = c.clone();
            for v in 5_000..5_100u64 {
                c.see(v, 0);
                assert!(c.heap_bytes() <= bound, "{} bytes at {v}", c.heap_bytes());
            }
        }
    }

    /// The set as it was first written, a value dropped as soon as it is not among the last
    /// `DISTINCT_CAP`: what the set with its slack must count alike.
    #[derive(Default)]
    struct Exact(Vec<(u64, i64)>);

    impl Exact {
        fn see(&mut self, value: u64, t_ms: i64) {
            let hour = bucket(t_ms, DISTINCT_WIDTH_MS);
            self.0
                .retain(|&(v, h)| v != value && h > hour - DISTINCT_BUCKETS);
            if self.0.len() == DISTINCT_CAP {
                self.0.remove(0);
            }
            self.0.push((value, hour));
        }
        fn count_at(&self, t_ms: i64) -> usize {
            let oldest_live = bucket(t_ms, DISTINCT_WIDTH_MS) - DISTINCT_BUCKETS;
            self.0.iter().filter(|&&(_, h)| h > oldest_live).count()
        }
    }

    #[test]
    fn counts_as_the_exact_last_values_would() {
        // SplitMix64 draws: values from a small or a large range (re-seen often, or rarely),
        // times moving by minutes to days.
        let mut x: u64 = 11;
        let mut draw = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for _ in 0..200 {
            let (mut s, mut exact) = (DistinctSet::default(), Exact::default());
            let range = [8, 70, 100, 10_000][(draw() % 4) as usize];
            let mut t = 0i64;
            for _ in 0..400 {
                t += [0, 60_000, H, 20 * H][(draw() % 16).min(3) as usize];
                let v = draw() % range;
                s.see(v, t);
                exact.see(v, t);
                for later in [t, t + H, t + 23 * H, t + 24 * H] {
                    assert_eq!(s.count_at(later), exact.count_at(later));
                }
                assert!(s.seen.len() <= DISTINCT_CAP + DISTINCT_SLACK);
            }
        }
    }
}
