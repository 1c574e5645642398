//! The tracker's features against hand-worked cases (the randomized comparison with a plain
//! Python reference is `tests/risk/test_features.py`).

use super::features::*;
use super::*;

const S: i64 = 1_000;
const MIN: i64 = 60 * S;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// A start time on every bucket boundary (a whole day).
const T0: i64 = 1_700_006_400_000;

fn order(at_ms: i64, buyer: u64) -> OrderEvent {
    OrderEvent {
        at_ms,
        buyer,
        account_created_ms: Some(T0 - DAY),
        amount: 1_000,
        sku: 7,
        quantity: 1,
        ..OrderEvent::default()
    }
}

fn with_client(mut o: OrderEvent, device: &str, ip: &str) -> OrderEvent {
    o.device = Some(key_hash(device));
    o.ip = Some(key_hash(ip));
    o
}

fn payment(at_ms: i64, buyer: u64, instrument: &str, authorised: bool) -> PaymentEvent {
    PaymentEvent {
        at_ms,
        buyer,
        amount: 1_000,
        instrument: key_hash(instrument),
        authorised,
        ..PaymentEvent::default()
    }
}

fn feature(f: &Features, name: &str) -> f64 {
    f[FEATURE_NAMES.iter().position(|n| *n == name).unwrap()]
}

#[test]
fn an_order_is_not_in_its_own_features() {
    let mut t = RiskTracker::default();
    let f = t.score_and_observe_order(&order(T0, 1));
    assert_eq!(feature(&f, "buyer_orders_1m"), 0.0);
    assert_eq!(feature(&f, "buyer_orders_total"), 0.0);
    assert!(feature(&f, "amount_vs_buyer_mean").is_nan());
    let f = t.score_and_observe_order(&order(T0 + S, 1));
    assert_eq!(f[BUYER_ORDERS..BUYER_ORDERS + 3], [1.0, 1.0, 1.0]);
    assert_eq!(feature(&f, "buyer_orders_total"), 1.0);
    assert_eq!(feature(&f, "buyer_amount_1h"), 1_000.0);
    assert_eq!(feature(&f, "amount_vs_buyer_mean"), 1.0);
}

#[test]
fn missing_fields_give_missing_features_never_zero() {
    let mut t = RiskTracker::default();
    let f = t.order_features(&order(T0, 1));
    for name in [
        "device_orders_1m",
        "ip_orders_24h",
        "address_orders_1h",
        "instrument_attempts_1m",
        "device_buyers_24h",
        "ip_buyers_24h",
        "address_buyers_24h",
        "email_buyers_24h",
        "phone_buyers_24h",
        "instrument_buyers_24h",
        "amount_vs_buyer_mean",
        "ip_region_mismatch",
        "instrument_declines_1h",
        "device_declines_1h",
        "ip_declines_1h",
        "seconds_since_release",
        "device_sku_orders_1h",
        "ip_sku_orders_1h",
    ] {
        assert!(feature(&f, name).is_nan(), "{name}");
    }
    // The buyer's own are known (zero) without any context.
    for name in [
        "buyer_orders_24h",
        "buyer_devices_24h",
        "buyer_declines_24h",
    ] {
        assert_eq!(feature(&f, name), 0.0, "{name}");
    }
    assert_eq!(feature(&f, "account_age_s"), 86_400.0);
    assert_eq!(feature(&f, "agent_class"), 0.0);
}

#[test]
fn the_one_pass_gives_the_features_of_the_read_only_call() {
    let mut a = RiskTracker::default();
    let mut b = RiskTracker::default();
    for i in 0..200_i64 {
        let mut o = with_client(
            order(T0 + i * 7 * S, (i % 5) as u64),
            &format!("d{}", i % 3),
            &format!("ip{}", i % 4),
        );
        o.address = Some(key_hash(&format!("a{}", i % 6)));
        o.email = Some(key_hash(&format!("e{}", i % 2)));
        o.amount = 100 + i;
        let read = a.order_features(&o);
        a.observe_order(&o);
        let one = b.score_and_observe_order(&o);
        assert_eq!(format!("{read:?}"), format!("{one:?}"), "order {i}");
    }
}

#[test]
fn velocity_windows_expire_at_their_bucket_edges() {
    let mut t = RiskTracker::default();
    let o = with_client(order(T0, 1), "dev", "1.2.3.4");
    t.observe_order(&o);
    let at = |t: &mut RiskTracker, ms: i64| {
        let mut next = o;
        next.at_ms = ms;
        next.buyer = 2; // another buyer on the same device and IP
        let f = t.order_features(&next);
        [
            feature(&f, "device_orders_1m"),
            feature(&f, "device_orders_1h"),
            feature(&f, "device_orders_24h"),
            feature(&f, "device_sku_orders_1h"),
            feature(&f, "device_buyers_24h"),
        ]
    };
    assert_eq!(at(&mut t, T0 + MIN - 1), [1.0, 1.0, 1.0, 1.0, 1.0]);
    assert_eq!(at(&mut t, T0 + MIN), [0.0, 1.0, 1.0, 1.0, 1.0]);
    assert_eq!(at(&mut t, T0 + HOUR - 1), [0.0, 1.0, 1.0, 1.0, 1.0]);
    assert_eq!(at(&mut t, T0 + HOUR), [0.0, 0.0, 1.0, 0.0, 1.0]);
    assert_eq!(at(&mut t, T0 + DAY - 1), [0.0, 0.0, 1.0, 0.0, 1.0]);
    assert_eq!(at(&mut t, T0 + DAY), [0.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn a_window_is_bucketed_not_sliding() {
    // An event late in a 5 s bucket leaves the 1 min window with its whole bucket: 55 s + 1 ms
    // after it when it was the bucket's last ms.
    let mut t = RiskTracker::default();
    t.observe_order(&order(T0 + 5 * S - 1, 1));
    assert_eq!(
        feature(
            &t.order_features(&order(T0 + MIN - 1, 1)),
            "buyer_orders_1m"
        ),
        1.0
    );
    assert_eq!(
        feature(&t.order_features(&order(T0 + MIN, 1)), "buyer_orders_1m"),
        0.0
    );
}

#[test]
fn a_buyer_idle_longer_than_a_day_starts_again() {
    let mut t = RiskTracker::default();
    t.observe_order(&order(T0, 1));
    t.observe_order(&order(T0 + HOUR, 1));
    let f = t.order_features(&order(T0 + HOUR + DAY, 1));
    assert_eq!(feature(&f, "buyer_orders_total"), 2.0);
    // A payment keeps the buyer tracked as an order does.
    t.observe_payment(&payment(T0 + HOUR + DAY, 1, "card", true));
    let f = t.order_features(&order(T0 + HOUR + 2 * DAY, 1));
    assert_eq!(feature(&f, "buyer_orders_total"), 2.0);
    let f = t.order_features(&order(T0 + HOUR + 2 * DAY + 1, 1));
    assert_eq!(feature(&f, "buyer_orders_total"), 0.0);
    assert!(feature(&f, "amount_vs_buyer_mean").is_nan());
    // ... and so does counting: the new order sees none before it.
    let f = t.score_and_observe_order(&order(T0 + HOUR + 2 * DAY + 1, 1));
    assert_eq!(feature(&f, "buyer_orders_total"), 0.0);
    let f = t.order_features(&order(T0 + HOUR + 2 * DAY + 2, 1));
    assert_eq!(feature(&f, "buyer_orders_total"), 1.0);
}

#[test]
fn declines_count_per_instrument_buyer_device_and_ip() {
    let mut t = RiskTracker::default();
    let o = with_client(order(T0, 1), "dev", "ip");
    t.observe_order(&o);
    for (i, card) in ["c1", "c2", "c3"].iter().enumerate() {
        let mut p = payment(T0 + i as i64 * S, 1, card, false);
        p.device = o.device;
        p.ip = o.ip;
        t.observe_payment(&p);
    }
    t.observe_payment(&payment(T0 + 3 * S, 2, "c3", true));
    let mut next = o;
    next.at_ms = T0 + 4 * S;
    let f = t.payment_features(&next, &payment(T0 + 4 * S, 1, "c3", true));
    assert_eq!(feature(&f, "instrument_attempts_1m"), 2.0);
    assert_eq!(feature(&f, "instrument_declines_1h"), 1.0);
    assert_eq!(feature(&f, "instrument_buyers_24h"), 2.0);
    assert_eq!(feature(&f, "buyer_instruments_24h"), 3.0);
    assert_eq!(feature(&f, "buyer_declines_24h"), 3.0);
    assert_eq!(feature(&f, "device_declines_1h"), 3.0);
    assert_eq!(feature(&f, "ip_declines_1h"), 3.0);
    // At intake the instrument is unknown.
    let f = t.order_features(&next);
    assert!(feature(&f, "instrument_attempts_1m").is_nan());
    assert_eq!(feature(&f, "buyer_declines_24h"), 3.0);
    // The declines leave the device's hour window.
    next.at_ms = T0 + HOUR + 2 * S;
    let f = t.order_features(&next);
    assert_eq!(feature(&f, "device_declines_1h"), 0.0);
    assert_eq!(feature(&f, "buyer_declines_24h"), 3.0);
}

#[test]
fn a_payment_is_scored_at_its_own_time_with_its_amount() {
    let mut t = RiskTracker::default();
    let mut o = order(T0, 1);
    o.sku_release_ms = Some(T0 - 10 * S);
    t.observe_order(&o);
    let mut p = payment(T0 + 30 * S, 1, "card", true);
    p.amount = 2_000;
    let f = t.score_and_observe_payment(&o, &p);
    assert_eq!(
        feature(&f, "buyer_orders_1m"),
        1.0,
        "its order is counted before it"
    );
    assert_eq!(feature(&f, "amount"), 2_000.0);
    assert_eq!(feature(&f, "amount_vs_buyer_mean"), 2.0);
    assert_eq!(feature(&f, "seconds_since_release"), 40.0);
    assert_eq!(feature(&f, "account_age_s"), 86_430.0);
    assert_eq!(feature(&f, "instrument_attempts_24h"), 0.0);
    let f = t.payment_features(&o, &payment(T0 + 31 * S, 1, "card", true));
    assert_eq!(feature(&f, "instrument_attempts_24h"), 1.0);
}

#[test]
fn regions_and_agents() {
    let mut t = RiskTracker::default();
    let mut o = order(T0, 1);
    o.ip_region = Some(key_hash("DE"));
    assert!(feature(&t.order_features(&o), "ip_region_mismatch").is_nan());
    o.ship_region = Some(key_hash("DE"));
    assert_eq!(feature(&t.order_features(&o), "ip_region_mismatch"), 0.0);
    o.ship_region = Some(key_hash("FR"));
    o.agent = 3;
    let f = t.order_features(&o);
    assert_eq!(feature(&f, "ip_region_mismatch"), 1.0);
    assert_eq!(feature(&f, "agent_class"), 3.0);
}

#[test]
fn distinct_buyers_on_a_device_saturate_at_the_cap() {
    let mut t = RiskTracker::default();
    for b in 0..100 {
        t.observe_order(&with_client(order(T0 + b as i64, b), "farm", "ip"));
    }
    let f = t.order_features(&with_client(order(T0 + 100, 1_000), "farm", "ip"));
    assert_eq!(feature(&f, "device_buyers_24h"), DISTINCT_CAP as f64);
    assert_eq!(feature(&f, "device_orders_1m"), 100.0);
}

#[test]
fn an_event_from_the_past_counts_at_the_latest_time() {
    let mut t = RiskTracker::default();
    t.observe_order(&order(T0 + MIN, 1));
    let mut late = order(T0, 2);
    late.device = Some(key_hash("d"));
    t.observe_order(&late); // counted at T0 + MIN
    let mut next = late;
    next.at_ms = T0 + 2 * MIN - 1;
    assert_eq!(feature(&t.order_features(&next), "device_orders_1m"), 1.0);
}

#[test]
fn a_spray_of_device_ids_stays_within_the_limit() {
    let mut limits = Limits::default();
    limits.0[1] = 1_000; // devices
    limits.0[7] = 1_000; // (device, SKU)
    let mut t = RiskTracker::new(limits);
    let regular = with_client(order(T0, 1), "regular", "ip");
    for i in 0..20_000_i64 {
        t.observe_order(&with_client(order(T0 + i, 2), &format!("spray{i}"), "ip"));
        if i % 100 == 0 {
            let mut r = regular;
            r.at_ms = T0 + i;
            t.observe_order(&r);
        }
    }
    let stats = t.stats();
    assert_eq!(stats[1].keys, 1_000);
    assert_eq!(stats[7].keys, 1_000);
    assert!(stats[1].evicted >= 19_000);
    // A key seen recently survives the spray.
    let mut r = regular;
    r.at_ms = T0 + 20_000;
    assert_eq!(feature(&t.order_features(&r), "device_orders_1m"), 200.0);
}

#[test]
fn sweep_drops_keys_idle_longer_than_a_day() {
    let mut t = RiskTracker::default();
    for b in 0..50 {
        t.observe_order(&with_client(order(T0, b), &format!("d{b}"), "ip"));
    }
    t.observe_order(&order(T0 + DAY + 1, 1_000));
    t.sweep();
    let stats = t.stats();
    assert_eq!(stats[0].keys, 1);
    assert_eq!(stats[1].keys, 0);
    assert_eq!(stats[2].keys, 0);
    assert_eq!(stats[0].expired, 50);
}

#[test]
fn sku_pairs_are_forgotten_after_an_hour_idle_and_count_nothing_by_then() {
    let mut t = RiskTracker::default();
    let o = with_client(order(T0 + HOUR - 1, 1), "d", "ip");
    t.observe_order(&o);
    let mut next = o;
    next.at_ms = T0 + 2 * HOUR - 1; // an hour idle: the pair is still kept, its count is 0
    assert_eq!(
        feature(&t.order_features(&next), "device_sku_orders_1h"),
        0.0
    );
    next.at_ms = T0 + 2 * HOUR - 1 - 5 * MIN; // the last ms it counts
    t.observe_order(&order(next.at_ms, 2));
    assert_eq!(
        feature(&t.order_features(&next), "device_sku_orders_1h"),
        1.0
    );
    t.observe_order(&order(T0 + 2 * HOUR, 2));
    t.sweep();
    let stats = t.stats();
    assert_eq!((stats[7].keys, stats[8].keys), (0, 0));
    assert_eq!((stats[1].keys, stats[2].keys), (1, 1));
}

#[test]
fn replay_equals_the_calls_one_by_one() {
    let orders: Vec<OrderEvent> = (0..300_i64)
        .map(|i| {
            with_client(
                order(T0 + i * 11 * S, (i % 7) as u64),
                &format!("d{}", i % 5),
                "ip",
            )
        })
        .collect();
    let payments: Vec<PaymentEvent> = (0..300_i64)
        .map(|i| {
            payment(
                T0 + i * 11 * S,
                (i % 7) as u64,
                &format!("c{}", i % 3),
                i % 4 != 0,
            )
        })
        .collect();
    let paid: Vec<i64> = (0..300).collect();
    let (rows, prows) = RiskTracker::default()
        .replay(&orders, &payments, Some(&paid))
        .unwrap();
    let mut t = RiskTracker::default();
    for (i, (o, p)) in orders.iter().zip(&payments).enumerate() {
        let f = t.score_and_observe_order(o);
        assert_eq!(format!("{f:?}"), format!("{:?}", rows[i]));
        let f = t.score_and_observe_payment(o, p);
        assert_eq!(format!("{f:?}"), format!("{:?}", prows[i]));
    }
    // Without the orders paid, the same order rows and no payment rows.
    let (again, none) = RiskTracker::default()
        .replay(&orders, &payments, None)
        .unwrap();
    assert_eq!(format!("{again:?}"), format!("{rows:?}"));
    assert!(none.is_empty());
}

#[test]
fn replay_refuses_unsorted_events_and_unknown_orders() {
    let orders = [order(T0 + 1, 1), order(T0, 1)];
    let err = RiskTracker::default().replay(&orders, &[], None);
    assert_eq!(
        err.unwrap_err(),
        ReplayError::Unsorted {
            what: "orders",
            index: 1
        }
    );
    let orders = [order(T0 + 5, 1)];
    let payments = [payment(T0, 1, "c", true)];
    let err = RiskTracker::default().replay(&orders, &payments, Some(&[0]));
    assert_eq!(
        err.unwrap_err(),
        ReplayError::UnknownOrder {
            payment: 0,
            order: 0
        }
    );
}

#[test]
fn absurd_values_give_features_not_panics() {
    let mut t = RiskTracker::default();
    let mut o = with_client(order(i64::MAX - 1, 1), "d", "ip");
    o.amount = i64::MAX;
    o.account_created_ms = Some(i64::MIN);
    o.sku_release_ms = Some(i64::MIN);
    t.observe_order(&o);
    o.amount = i64::MIN;
    let f = t.score_and_observe_order(&o);
    assert_eq!(feature(&f, "buyer_orders_1m"), 1.0);
    assert_eq!(feature(&f, "account_age_s"), i64::MAX as f64 / 1000.0);
    let mut early = order(i64::MIN, 2);
    early.account_created_ms = Some(i64::MAX);
    let f = t.score_and_observe_order(&early); // counted at the latest time
    assert_eq!(feature(&f, "buyer_orders_1m"), 0.0);
    // From the earliest time to the latest in one step.
    let mut t = RiskTracker::default();
    t.observe_order(&order(i64::MIN, 1));
    let f = t.score_and_observe_order(&order(i64::MAX, 1));
    assert_eq!(feature(&f, "buyer_orders_24h"), 0.0);
    t.sweep();
}
