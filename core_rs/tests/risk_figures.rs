//! Risk control's figures for `docs/risk.md`: the tracker's bytes per tracked key (counted by a
//! global allocator that tallies live heap bytes) and time per order of the one-pass call, and
//! the shipped model's time per row. They are printed, never asserted (the time depends on the
//! machine and its load):
//!
//! `cargo test --release --test risk_figures -- --nocapture --test-threads 1`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyorder_core::model::RiskModel;
use pyorder_core::risk::{
    key_hash, pair_hash, Limits, OrderEvent, PaymentEvent, RiskTracker, KINDS,
};

/// The system allocator, keeping a tally of the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// This thread's CPU time in ns: the machine is shared, and wall time would count the time
/// other processes ran.
fn cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

const T0: i64 = 1_700_006_400_000;

/// A deterministic stream of numbers (SplitMix64).
struct Mix(u64);

impl Mix {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// An order of buyer `b` with every context field: one key of each order kind per buyer.
fn full_order(at_ms: i64, b: u64) -> OrderEvent {
    OrderEvent {
        at_ms,
        buyer: b,
        account_created_ms: Some(T0 - 86_400_000),
        amount: 2_500,
        sku: b % 10,
        quantity: 1,
        sku_release_ms: None,
        device: Some(key_hash(&format!("device-{b}"))),
        ip: Some(key_hash(&format!("10.0.{}.{}", b / 256, b % 256))),
        ip_region: Some(key_hash("DE")),
        email: Some(key_hash(&format!("email-{b}"))),
        phone: Some(key_hash(&format!("phone-{b}"))),
        agent: 1,
        address: Some(key_hash(&format!("address-{b}"))),
        ship_region: Some(key_hash("DE")),
    }
}

#[test]
fn bytes_per_tracked_key() {
    let n: u64 = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    let before = LIVE.load(Ordering::Relaxed);
    let mut t = RiskTracker::new(Limits::default());
    for b in 0..n {
        let at = T0 + b as i64;
        t.observe_order(&full_order(at, b));
        t.observe_payment(&PaymentEvent {
            at_ms: at,
            buyer: b,
            amount: 2_500,
            instrument: key_hash(&format!("card-{b}")),
            authorised: true,
            device: None,
            ip: None,
        });
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    let stats = t.stats();
    let keys: usize = stats.iter().map(|s| s.keys).sum();
    assert_eq!(keys as u64, 9 * n, "one key of each kind per buyer");
    println!(
        "risk tracker: {n} buyers with every context field and a payment: {keys} keys, \
         {held} bytes held, {} bytes per key, {} bytes per buyer's context (all 9 kinds)",
        held / keys,
        held / n as usize
    );
    for (kind, s) in KINDS.iter().zip(stats) {
        println!(
            "  {kind:>10}: {} bytes per key (slab and index capacity, spilled sets)",
            s.bytes / s.keys
        );
    }
}

/// Orders of `buyers` buyers at 50 a second. Realistic: each buyer has a home device, IP
/// (shared by three buyers: a household or an office) and address (shared by two), used for 90%
/// of their orders, else one at random (a phone on another network, a gift). Not: every order
/// takes a device, IP and address at random (many more keys, sets near their cap).
fn stream(orders: usize, buyers: u64, realistic: bool) -> Vec<OrderEvent> {
    let mut mix = Mix(7);
    let (devices, ips, addresses) = (buyers / 2, buyers / 3, buyers * 4 / 5);
    (0..orders)
        .map(|i| {
            let b = mix.next(buyers);
            let home = realistic && mix.next(10) != 0;
            let (d, ip, a) = if home {
                (b, b / 3, b / 2)
            } else {
                (
                    buyers + mix.next(devices),
                    mix.next(ips),
                    mix.next(addresses),
                )
            };
            OrderEvent {
                at_ms: T0 + i as i64 * 20,
                buyer: b,
                account_created_ms: Some(T0 - 86_400_000),
                amount: 1_000 + (i % 5_000) as i64,
                sku: (i % 200) as u64,
                quantity: 1,
                sku_release_ms: None,
                // Numbers as keys: the strings' hashing is timed on its own below.
                device: Some(pair_hash(1, d)),
                ip: Some(pair_hash(2, ip)),
                ip_region: Some(1),
                email: Some(pair_hash(3, b)),
                phone: None,
                agent: 1,
                address: Some(pair_hash(4, a)),
                ship_region: Some(1),
            }
        })
        .collect()
}

/// CPU ns per order of the second half of `orders` (the first fills the tables), one at a time
/// and in batches of 256; and the keys tracked at the end.
fn time(orders: &[OrderEvent]) -> (f64, f64, usize) {
    let half = orders.len() / 2;
    let mut t = RiskTracker::new(Limits::default());
    let mut sink = 0.0;
    for o in &orders[..half] {
        sink += t.score_and_observe_order(o)[0];
    }
    let start = cpu_ns();
    for o in &orders[half..] {
        sink += t.score_and_observe_order(black_box(o))[0];
    }
    let one = (cpu_ns() - start) / (orders.len() - half) as f64;
    let keys: usize = t.stats().iter().map(|s| s.keys).sum();
    drop(t);
    let mut t = RiskTracker::new(Limits::default());
    let mut rows = vec![[0.0; 40]; 256];
    for batch in orders[..half].chunks(256) {
        t.score_and_observe_orders(batch, &mut rows);
    }
    let start = cpu_ns();
    for batch in orders[half..].chunks(256) {
        t.score_and_observe_orders(black_box(batch), &mut rows);
        sink += rows[0][0];
    }
    let batched = (cpu_ns() - start) / (orders.len() - half) as f64;
    black_box(sink);
    (one, batched, keys)
}

#[test]
fn time_per_order() {
    let orders: usize = if cfg!(debug_assertions) {
        20_000
    } else {
        2_000_000
    };
    let scenarios = match std::env::var("RISK_SCENARIO").as_deref() {
        Ok("tiny") => vec![(10, true)],
        Ok("small") => vec![(1_000, true)],
        Ok("large") => vec![(100_000, true)],
        _ => vec![(1_000, true), (100_000, true), (100_000, false)],
    };
    for (buyers, realistic) in scenarios {
        let (one, batched, keys) = time(&stream(orders, buyers, realistic));
        let kind = if realistic {
            "home device/IP/address"
        } else {
            "all keys at random"
        };
        println!(
            "risk tracker: {orders} orders of {buyers} buyers ({kind}), {keys} keys: CPU ns per \
             order {one:.0} one at a time (score_and_observe_order), {batched:.0} in batches \
             of 256 (score_and_observe_orders)"
        );
    }
    // The strings' keys, as the server would hash the fields it parsed.
    let strings: Vec<String> = (0..100_000)
        .map(|i| format!("{i:08x}-5f1c-4a9e-9b7e-{i:012x}"))
        .collect();
    let start = cpu_ns();
    let mut sink = 0;
    for s in &strings {
        sink ^= key_hash(black_box(s));
    }
    black_box(sink);
    println!(
        "risk tracker: key_hash of a 36-character device id: {:.1} CPU ns",
        (cpu_ns() - start) / strings.len() as f64
    );
}

/// CPU ns per row of the shipped model: the score alone, and the score with each feature's
/// contribution (the order path's call), on the features of a realistic stream.
#[test]
fn time_per_score() {
    let text = include_str!("../../pyorder/risk/models/default/model.txt");
    let model = RiskModel::from_text(text).unwrap();
    let orders = stream(
        if cfg!(debug_assertions) {
            5_000
        } else {
            50_000
        },
        10_000,
        true,
    );
    let mut t = RiskTracker::new(Limits::default());
    let rows: Vec<[f64; 40]> = orders
        .iter()
        .map(|o| t.score_and_observe_order(o))
        .collect();
    // The least of five passes: the machine is shared.
    let (mut alone, mut explained) = (f64::INFINITY, f64::INFINITY);
    let mut sink = 0.0;
    let mut out = [0.0; 40];
    for _ in 0..5 {
        let start = cpu_ns();
        for row in &rows {
            sink += model.probability(black_box(row)).unwrap();
        }
        alone = alone.min((cpu_ns() - start) / rows.len() as f64);
        let start = cpu_ns();
        for row in &rows {
            out.fill(0.0);
            sink += model
                .probability_and_contributions(black_box(row), &mut out)
                .unwrap();
            sink += out[0];
        }
        explained = explained.min((cpu_ns() - start) / rows.len() as f64);
    }
    black_box(sink);
    println!(
        "risk model: {} trees, CPU ns per row {alone:.0} scored, {explained:.0} scored with \
         contributions",
        model.num_trees()
    );
}
