//! Bucketed sliding windows: a window of `B` buckets of `W` ms each, in fixed memory.
//!
//! An event at `e` (ms) counts at time `t` when `floor(e / W) > floor(t / W) - B`: the current
//! bucket and the `B - 1` before it (`docs/risk.md`, "Features"). The window itself holds no
//! time; its key's last event time (`last_ms`) says which bucket is the newest.

/// What a window sums: counts (`u32`) or amounts in minor units (`i64`). Wrapping arithmetic,
/// so that a total stays exactly the sum of its buckets (mod 2^bits) whatever the values: an
/// absurd amount gives an absurd feature, never a panic on the order path.
pub(crate) trait Value: Copy + Default {
    fn plus(self, other: Self) -> Self;
    fn minus(self, other: Self) -> Self;
}

impl Value for u32 {
    #[inline]
    fn plus(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    #[inline]
    fn minus(self, other: Self) -> Self {
        self.wrapping_sub(other)
    }
}

impl Value for i64 {
    #[inline]
    fn plus(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    #[inline]
    fn minus(self, other: Self) -> Self {
        self.wrapping_sub(other)
    }
}

/// The bucket of time `t_ms` in a window of width `w_ms` (floor division, so that times before
/// the epoch still fall in the right bucket).
#[inline]
pub(crate) fn bucket(t_ms: i64, w_ms: i64) -> i64 {
    t_ms.div_euclid(w_ms)
}

/// `B` buckets of `W` ms, summing values of type `T` (counts, or amounts in minor units).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Window<T, const B: usize, const W: i64> {
    buckets: [T; B],
    /// The sum of `buckets`: the window's value when read at its newest bucket (the hot path
    /// reads after moving the window to the event's time, so it reads this and no bucket).
    total: T,
}

impl<T: Value, const B: usize, const W: i64> Default for Window<T, B, W> {
    fn default() -> Self {
        Self {
            buckets: [T::default(); B],
            total: T::default(),
        }
    }
}

impl<T: Value, const B: usize, const W: i64> Window<T, B, W> {
    #[inline]
    fn slot(b: i64) -> usize {
        // B is a small constant (12 or 24): the cast cannot truncate.
        b.rem_euclid(B as i64) as usize
    }

    /// The window's sum at time `t_ms`, given that the key's newest event was at `last_ms`
    /// (`t_ms >= last_ms`; an earlier `t_ms` reads as `last_ms`). Nothing changes.
    #[inline]
    pub(crate) fn sum_at(&self, last_ms: i64, t_ms: i64) -> T {
        let head = bucket(last_ms, W);
        let lag = (bucket(t_ms, W) - head).max(0);
        if lag == 0 {
            return self.total;
        }
        if lag >= B as i64 {
            return T::default();
        }
        // The `lag` oldest buckets (head - B + 1, ...) have fallen out by `t_ms`.
        let mut total = self.total;
        let mut s = Self::slot(head + 1);
        for _ in 0..lag {
            total = total.minus(self.buckets[s]);
            s = if s == B - 1 { 0 } else { s + 1 };
        }
        total
    }

    /// Moves the newest bucket from `last_ms`'s to `t_ms`'s, clearing the buckets that fall out.
    #[inline]
    pub(crate) fn advance(&mut self, last_ms: i64, t_ms: i64) {
        let head = bucket(last_ms, W);
        let now = bucket(t_ms, W);
        if now <= head {
            return;
        }
        if now - head >= B as i64 {
            *self = Self::default();
        } else {
            for b in head + 1..=now {
                let s = Self::slot(b);
                self.total = self.total.minus(self.buckets[s]);
                self.buckets[s] = T::default();
            }
        }
    }

    /// Adds `value` to the bucket of `t_ms` (after `advance` to `t_ms`).
    #[inline]
    pub(crate) fn add(&mut self, t_ms: i64, value: T) {
        let s = Self::slot(bucket(t_ms, W));
        self.buckets[s] = self.buckets[s].plus(value);
        self.total = self.total.plus(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Five = Window<u32, 12, 5_000>;

    /// Adds one event at each time (in order) and reads at `t`, the way the tracker does.
    fn count(events: &[i64], t: i64) -> u32 {
        let mut w = Five::default();
        let mut last = i64::MIN / 2;
        for &e in events {
            w.advance(last, e);
            w.add(e, 1);
            last = e;
        }
        w.sum_at(last, t)
    }

    #[test]
    fn an_event_counts_for_exactly_b_buckets() {
        // Bucket 0 is [0, 5000); at t its bucket counts while floor(t/5000) <= 11.
        assert_eq!(count(&[0], 0), 1);
        assert_eq!(count(&[0], 59_999), 1);
        assert_eq!(count(&[0], 60_000), 0);
        // The last ms of a bucket and the first of the next: same rule.
        assert_eq!(count(&[4_999], 59_999), 1);
        assert_eq!(count(&[4_999], 60_000), 0);
        assert_eq!(count(&[5_000], 64_999), 1);
        assert_eq!(count(&[5_000], 65_000), 0);
    }

    #[test]
    fn advancing_clears_only_the_buckets_that_fall_out() {
        let events = [0, 4_999, 5_000, 30_000, 59_999];
        assert_eq!(count(&events, 59_999), 5);
        assert_eq!(count(&events, 60_000), 3);
        assert_eq!(count(&events, 65_000), 2);
        assert_eq!(count(&events, 90_000), 1);
        assert_eq!(count(&events, 114_999), 1);
        assert_eq!(count(&events, 115_000), 0);
        // Advancing in steps is the same as one jump.
        let mut w = Five::default();
        w.advance(0, 0);
        for &e in &events {
            w.add(e, 1);
        }
        w.advance(59_999, 64_000);
        w.advance(64_000, 65_000);
        assert_eq!(w.sum_at(65_000, 65_000), 2);
        assert_eq!(w.sum_at(65_000, 89_999), 2);
        assert_eq!(w.sum_at(65_000, 90_000), 1);
    }

    #[test]
    fn a_jump_of_days_empties_the_window() {
        assert_eq!(count(&[0, 1, 2], 3 * 86_400_000), 0);
        assert_eq!(count(&[0, 3 * 86_400_000], 3 * 86_400_000), 1);
    }

    #[test]
    fn times_before_the_epoch_use_floor_buckets() {
        // -1 ms is in bucket -1: it counts at 54_999 (bucket 10) and not at 55_000 (bucket 11).
        assert_eq!(count(&[-1], 54_999), 1);
        assert_eq!(count(&[-1], 55_000), 0);
    }

    #[test]
    fn sums_amounts() {
        let mut w = Window::<i64, 24, 3_600_000>::default();
        w.add(0, 1_500);
        w.advance(0, 3_600_000);
        w.add(3_600_000, 250);
        assert_eq!(w.sum_at(3_600_000, 3_600_000), 1_750);
        assert_eq!(w.sum_at(3_600_000, 24 * 3_600_000), 250);
    }
}
