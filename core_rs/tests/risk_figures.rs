//! The risk tracker's figures for `docs/risk.md`: bytes per tracked key (counted by a global
//! allocator that tallies live heap bytes) and the time per order of the one-pass call. They
//! are printed, never asserted (the time depends on the machine and its load):
//!
//! `cargo test --release --test risk_figures -- --nocapture --test-threads 1`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyorder_core::risk::{key_hash, Limits, OrderEvent, PaymentEvent, RiskTracker, KINDS};

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
        account_created_ms: T0 - 86_400_000,
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

#[test]
fn time_per_order() {
    let orders: usize = if cfg!(debug_assertions) {
        20_480
    } else {
        1_048_576
    };
    // RISK_POP scales the population (100: 100,000 buyers; 1 for a small, mostly cached one).
    let pop: u64 = std::env::var("RISK_POP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let buyers = 1_000 * pop;
    let mut mix = Mix(7);
    // Strings are made up front and hashed in the timed loop: the server hashes the fields
    // it parsed.
    let devices: Vec<String> = (0..500 * pop).map(|i| format!("device-{i:08}")).collect();
    let ips: Vec<String> = (0..300 * pop)
        .map(|i| format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256))
        .collect();
    let addresses: Vec<String> = (0..800 * pop)
        .map(|i| format!("{i} main st 10115 berlin"))
        .collect();
    let picks: Vec<[u64; 4]> = (0..orders)
        .map(|_| {
            [
                mix.next(buyers),
                mix.next(500 * pop),
                mix.next(300 * pop),
                mix.next(800 * pop),
            ]
        })
        .collect();
    let order = |i: usize, [b, d, ip, a]: [u64; 4]| OrderEvent {
        at_ms: T0 + i as i64 * 20, // 50 orders a second: a day is 4.3 M orders
        buyer: b,
        account_created_ms: T0 - 86_400_000,
        amount: 1_000 + (i % 5_000) as i64,
        sku: (i % 200) as u64,
        quantity: 1,
        sku_release_ms: None,
        device: Some(key_hash(&devices[d as usize])),
        ip: Some(key_hash(&ips[ip as usize])),
        ip_region: Some(key_hash("DE")),
        email: Some(b.wrapping_mul(31)),
        phone: None,
        agent: 1,
        address: Some(key_hash(&addresses[a as usize])),
        ship_region: Some(key_hash("DE")),
    };
    // The first half fills the tables; the second half is timed (CPU time of this thread).
    let half = orders / 2;
    // One order at a time, as the single-order path calls it.
    let mut t = RiskTracker::new(Limits::default());
    let mut sink = 0.0;
    let mut start = 0.0;
    for (i, pick) in picks.iter().enumerate() {
        if i == half {
            start = cpu_ns();
        }
        let f = t.score_and_observe_order(black_box(&order(i, *pick)));
        sink += f[0];
    }
    let one = (cpu_ns() - start) / (orders - half) as f64;
    let keys: usize = t.stats().iter().map(|s| s.keys).sum();
    drop(t);
    // In batches of 256, as the batch path would (strings hashed while building the batch).
    let mut t = RiskTracker::new(Limits::default());
    let mut batch = Vec::with_capacity(256);
    let mut rows = vec![[0.0; 40]; 256];
    for (c, chunk) in picks.chunks(256).enumerate() {
        if c * 256 == half {
            start = cpu_ns();
        }
        batch.clear();
        batch.extend(
            chunk
                .iter()
                .enumerate()
                .map(|(k, p)| order(c * 256 + k, *p)),
        );
        t.score_and_observe_orders(black_box(&batch), &mut rows);
        sink += rows[0][0];
    }
    let batched = (cpu_ns() - start) / (orders - half) as f64;
    black_box(sink);
    println!(
        "risk tracker: {orders} orders (buyer, device, IP, address, email; {buyers} buyers), \
         {keys} keys at the end; CPU time per order over the second half: {one:.0} ns one at a \
         time (score_and_observe_order), {batched:.0} ns in batches of 256 \
         (score_and_observe_orders); strings hashed in the loop"
    );
}
