//! Unit tests of the inventory core; the Python suite checks it against a reference model.

use std::sync::Arc;
use std::thread;

use super::*;

const T: u64 = 60_000;
const NOW: u64 = 1_000_000;

fn inv() -> Inventory {
    Inventory::new(8).unwrap()
}

fn one(inv: &Inventory, sku: u32, q: u32, buyer: u64) -> Result<u64> {
    inv.reserve(&[sku], &[q], buyer, None, MatchPolicy::default(), T, NOW)
        .map(|(id, _)| id)
}

fn level(on_hand: u64, available: u64, reserved: u64, sold: u64) -> StockLevel {
    StockLevel {
        on_hand,
        available,
        reserved,
        sold,
    }
}

#[test]
fn reserve_confirm_release_move_units_between_counters() {
    let inv = inv();
    let sku = inv.add_sku(&[(0, 10)], 0).unwrap();
    let a = one(&inv, sku, 3, 1).unwrap();
    let b = one(&inv, sku, 2, 1).unwrap();
    assert_eq!(inv.stock(sku, None).unwrap(), level(10, 5, 5, 0));
    inv.confirm(a, None, NOW).unwrap();
    inv.release(b, NOW).unwrap();
    assert_eq!(inv.stock(sku, None).unwrap(), level(10, 7, 0, 3));
    inv.check_invariants().unwrap();
}

#[test]
fn a_void_sale_stops_counting_against_the_buyers_limit_and_a_return_does_not() {
    let inv = inv();
    let sku = inv.add_sku(&[(0, 10)], 2).unwrap();
    let a = one(&inv, sku, 2, 7).unwrap();
    inv.confirm(a, None, NOW).unwrap();
    assert!(one(&inv, sku, 1, 7).is_err(), "at the limit");
    inv.return_sold(sku, 1, 0, None).unwrap(); // returned: still bought
    assert_eq!(inv.bought_by(sku, 7).unwrap(), 2);
    inv.return_sold(sku, 1, 0, Some(7)).unwrap(); // cancelled: void
    assert_eq!(inv.bought_by(sku, 7).unwrap(), 1);
    one(&inv, sku, 1, 7).unwrap();
    inv.check_invariants().unwrap();
}

#[test]
fn returned_sold_units_become_available_and_never_more_than_sold() {
    let inv = inv();
    let sku = inv.add_sku(&[(0, 10)], 0).unwrap();
    let a = one(&inv, sku, 3, 1).unwrap();
    inv.confirm(a, None, NOW).unwrap();
    inv.return_sold(sku, 2, 0, None).unwrap();
    assert_eq!(inv.stock(sku, None).unwrap(), level(10, 9, 0, 1));
    // More than is sold, none at all, or a warehouse without the SKU: refused, nothing moves.
    assert!(inv.return_sold(sku, 2, 0, None).is_err());
    assert!(inv.return_sold(sku, 0, 0, None).is_err());
    let other = inv.add_warehouse().unwrap();
    assert!(inv.return_sold(sku, 1, other, None).is_err());
    assert_eq!(inv.stock(sku, None).unwrap(), level(10, 9, 0, 1));
    inv.check_invariants().unwrap();
}

#[test]
fn a_reservation_resolves_exactly_once_and_names_its_state() {
    let inv = inv();
    let sku = inv.add_sku(&[(0, 10)], 0).unwrap();
    let a = one(&inv, sku, 1, 1).unwrap();
    inv.confirm(a, None, NOW).unwrap();
    let err = inv.release(a, NOW).unwrap_err();
    assert_eq!(
        err,
        InventoryError::AlreadyResolved {
            reservation: a,
            state: ReservationState::Confirmed
        }
    );
    assert!(err.to_string().contains("confirmed"));
    assert_eq!(
        inv.confirm(999, None, NOW).unwrap_err(),
        InventoryError::UnknownReservation { reservation: 999 }
    );
    assert_eq!(inv.stock(sku, None).unwrap(), level(10, 9, 0, 1));
}

#[test]
fn partial_confirm_returns_the_rest_and_bad_quantities_change_nothing() {
    let inv = inv();
    let sku = inv.add_sku(&[(0, 10)], 0).unwrap();
    let a = one(&inv, sku, 5, 1).unwrap();
    assert!(matches!(
        inv.confirm(a, Some(&[6]), NOW),
        Err(InventoryError::InvalidQuantity { .. })
    ));
    assert!(matches!(
        inv.confirm(a, Some(&[1, 1]), NOW),
        Err(InventoryError::InvalidQuantity { .. })
    ));
    assert_eq!(inv.reservation_state(a).unwrap(), ReservationState::Pending);
    inv.confirm(a, Some(&[2]), NOW).unwrap();
    assert_eq!(inv.stock(sku, None).unwrap(), level(10, 8, 0, 2));
}

#[test]
fn confirm_after_the_deadline_expires_the_reservation_instead() {
    let inv = inv();
    let sku = inv.add_sku(&[(0, 4)], 0).unwrap();
    let a = one(&inv, sku, 4, 1).unwrap();
    let err = inv.confirm(a, None, NOW + T).unwrap_err();
    assert_eq!(
        err,
        InventoryError::AlreadyResolved {
            reservation: a,
            state: ReservationState::Expired
        }
    );
    assert_eq!(inv.stock(sku, None).unwrap(), level(4, 4, 0, 0));
}

#[test]
fn expire_due_is_bounded_and_earliest_first() {
    let inv = inv();
    let sku = inv.add_sku(&[(0, 100)], 0).unwrap();
    let ids: Vec<u64> = (0..10)
        .map(|i| {
            inv.reserve(
                &[sku],
                &[1],
                1,
                None,
                MatchPolicy::default(),
                T + 10 - i,
                NOW,
            )
            .unwrap()
            .0
        })
        .collect();
    inv.confirm(ids[9], None, NOW).unwrap();
    assert_eq!(inv.next_deadline_ms(), Some(NOW + T + 2));
    assert!(inv.expire_due(NOW + T, 100).is_empty());
    let first = inv.expire_due(NOW + T + 100, 3);
    assert_eq!(first, vec![ids[8], ids[7], ids[6]]);
    let rest = inv.expire_due(NOW + T + 100, 100);
    assert_eq!(rest.len(), 6);
    assert_eq!(inv.open_reservations(), 0);
    assert_eq!(inv.stock(sku, None).unwrap(), level(100, 99, 0, 1));
    assert_eq!(
        inv.reservation_state(ids[0]).unwrap(),
        ReservationState::Expired
    );
}

#[test]
fn one_parcel_from_the_nearest_warehouse_that_serves_everything() {
    let inv = inv();
    let (w1, w2) = (inv.add_warehouse().unwrap(), inv.add_warehouse().unwrap());
    inv.set_region(7, &[w1, w2, 0]).unwrap();
    let a = inv.add_sku(&[(w1, 5), (w2, 5)], 0).unwrap();
    let b = inv.add_sku(&[(w2, 5), (0, 5)], 0).unwrap();
    let (_, wh) = inv
        .reserve(
            &[a, b],
            &[1, 1],
            1,
            Some(7),
            MatchPolicy::PreferOneParcel,
            T,
            NOW,
        )
        .unwrap();
    assert_eq!(wh.as_slice(), &[w2, w2]);
    let (_, wh) = inv
        .reserve(
            &[a, b],
            &[1, 1],
            1,
            Some(7),
            MatchPolicy::NearestPerLine,
            T,
            NOW,
        )
        .unwrap();
    assert_eq!(wh.as_slice(), &[w1, w2]);
}

#[test]
fn split_when_no_single_warehouse_serves_all_and_units_return_where_they_came_from() {
    let inv = inv();
    let w1 = inv.add_warehouse().unwrap();
    inv.set_region(1, &[0, w1]).unwrap();
    let a = inv.add_sku(&[(0, 2)], 0).unwrap();
    let b = inv.add_sku(&[(w1, 2)], 0).unwrap();
    let err = inv
        .reserve(
            &[a, b],
            &[1, 1],
            1,
            Some(1),
            MatchPolicy::OneParcelOnly,
            T,
            NOW,
        )
        .unwrap_err();
    assert_eq!(err, InventoryError::OutOfStock { sku: b });
    let (id, wh) = inv
        .reserve(
            &[a, b],
            &[1, 1],
            1,
            Some(1),
            MatchPolicy::PreferOneParcel,
            T,
            NOW,
        )
        .unwrap();
    assert_eq!(wh.as_slice(), &[0, w1]);
    assert_eq!(inv.stock(b, Some(w1)).unwrap(), level(2, 1, 1, 0));
    inv.release(id, NOW).unwrap();
    assert_eq!(inv.stock(a, Some(0)).unwrap(), level(2, 2, 0, 0));
    assert_eq!(inv.stock(b, Some(w1)).unwrap(), level(2, 2, 0, 0));
    let err = inv
        .reserve(
            &[a, b],
            &[3, 1],
            1,
            Some(1),
            MatchPolicy::PreferOneParcel,
            T,
            NOW,
        )
        .unwrap_err();
    assert_eq!(err, InventoryError::OutOfStock { sku: a });
}

#[test]
fn validation_errors_change_nothing() {
    let inv = inv();
    let a = inv.add_sku(&[(0, 5)], 0).unwrap();
    let cases: Vec<(Vec<u32>, Vec<u32>, Option<u32>)> = vec![
        (vec![a, 99], vec![1, 1], None),
        (vec![a], vec![0], None),
        (vec![a], vec![MAX_LINE_QUANTITY + 1], None),
        (vec![a, a], vec![1, 1], None),
        (vec![], vec![], None),
        (vec![a], vec![1], Some(42)),
    ];
    for (skus, qs, region) in cases {
        assert!(inv
            .reserve(&skus, &qs, 1, region, MatchPolicy::default(), T, NOW)
            .is_err());
    }
    assert!(inv
        .reserve(&[a], &[1], 1, None, MatchPolicy::default(), 0, NOW)
        .is_err());
    assert!(inv.adjust(a, -6, 0).is_err());
    assert_eq!(inv.stock(a, None).unwrap(), level(5, 5, 0, 0));
    assert_eq!(inv.open_reservations(), 0);
}

#[test]
fn purchase_limit_counts_reserved_and_sold_and_gives_back_released() {
    let inv = inv();
    let a = inv.add_sku(&[(0, 100)], 2).unwrap();
    let r1 = one(&inv, a, 2, 7).unwrap();
    assert!(matches!(
        one(&inv, a, 1, 7),
        Err(InventoryError::PurchaseLimit {
            limit: 2,
            held: 2,
            ..
        })
    ));
    one(&inv, a, 2, 8).unwrap();
    inv.confirm(r1, Some(&[1]), NOW).unwrap();
    assert_eq!(inv.bought_by(a, 7).unwrap(), 1);
    one(&inv, a, 1, 7).unwrap();
    assert!(one(&inv, a, 1, 7).is_err());
}

#[test]
fn batch_outcome_equals_sequential_reservations() {
    let seq = inv();
    let bat = inv();
    for inv in [&seq, &bat] {
        inv.add_sku(&[(0, 3)], 0).unwrap();
        inv.add_sku(&[(0, 1)], 1).unwrap();
    }
    let skus = [0, 1, 0, 1, 0, 9, 0, 0];
    let qs = [2, 1, 2, 1, 1, 1, 0, 1];
    let buyers = [1, 2, 3, 4, 5, 6, 7, 8];
    let out = bat
        .reserve_batch(
            &BatchOrders {
                skus: &skus,
                quantities: &qs,
                offsets: None,
                buyers: Some(&buyers),
                regions: None,
            },
            MatchPolicy::default(),
            T,
            NOW,
        )
        .unwrap();
    for i in 0..skus.len() {
        let single = seq.reserve(
            &[skus[i]],
            &[qs[i]],
            buyers[i],
            None,
            MatchPolicy::default(),
            T,
            NOW,
        );
        let code = single.as_ref().map_or_else(|e| e.status(), |_| status::OK);
        assert_eq!(out.status[i], code, "order {i}");
    }
    assert_eq!(
        out.status[..6],
        [
            status::OK,
            status::OK,
            status::OUT_OF_STOCK,
            status::OUT_OF_STOCK,
            status::OK,
            status::UNKNOWN_SKU
        ]
    );
    assert_eq!(out.failed_item[2], 2);
    assert_eq!(bat.stock(0, None).unwrap(), seq.stock(0, None).unwrap());
    assert_eq!(bat.stock(1, None).unwrap(), seq.stock(1, None).unwrap());
}

#[test]
fn malformed_batches_are_refused_whole() {
    let inv = inv();
    inv.add_sku(&[(0, 3)], 0).unwrap();
    let bad = [
        BatchOrders {
            skus: &[0, 0],
            quantities: &[1],
            offsets: None,
            buyers: None,
            regions: None,
        },
        BatchOrders {
            skus: &[0, 0],
            quantities: &[1, 1],
            offsets: Some(&[0, 3]),
            buyers: None,
            regions: None,
        },
        BatchOrders {
            skus: &[0, 0],
            quantities: &[1, 1],
            offsets: Some(&[1, 2]),
            buyers: None,
            regions: None,
        },
        BatchOrders {
            skus: &[0],
            quantities: &[1],
            offsets: None,
            buyers: Some(&[1, 2]),
            regions: None,
        },
    ];
    for b in &bad {
        assert!(inv
            .reserve_batch(b, MatchPolicy::default(), T, NOW)
            .is_err());
    }
    assert_eq!(inv.stock(0, None).unwrap(), level(3, 3, 0, 0));
}

#[test]
fn hot_sku_under_many_threads_sells_exactly_its_stock() {
    let inv = Arc::new(inv());
    let sku = inv.add_sku(&[(0, 10_000)], 0).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let inv = Arc::clone(&inv);
            thread::spawn(move || {
                let mut got = 0u64;
                loop {
                    match one(&inv, sku, 1 + (t % 3), t as u64) {
                        Ok(id) => {
                            got += u64::from(1 + (t % 3));
                            if id % 2 == 0 {
                                inv.confirm(id, None, NOW).unwrap();
                            }
                        }
                        Err(InventoryError::OutOfStock { .. }) => {
                            // Smaller asks may still fit; stop when not even one unit is left.
                            if inv.stock(sku, None).unwrap().available == 0 {
                                return got;
                            }
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 10_000);
    let l = inv.stock(sku, None).unwrap();
    assert_eq!((l.available, l.reserved + l.sold), (0, 10_000));
    inv.check_invariants().unwrap();
}

#[test]
fn concurrent_resolution_happens_once_per_reservation() {
    let inv = Arc::new(inv());
    let sku = inv.add_sku(&[(0, 1000)], 0).unwrap();
    let ids: Arc<Vec<u64>> = Arc::new((0..1000).map(|_| one(&inv, sku, 1, 1).unwrap()).collect());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (inv, ids) = (Arc::clone(&inv), Arc::clone(&ids));
            thread::spawn(move || {
                ids.iter()
                    .filter(|&&id| {
                        if t % 2 == 0 {
                            inv.confirm(id, None, NOW).is_ok()
                        } else {
                            inv.release(id, NOW).is_ok()
                        }
                    })
                    .count()
            })
        })
        .collect();
    let wins: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(wins, 1000);
    let l = inv.stock(sku, None).unwrap();
    assert_eq!(l.reserved, 0);
    assert_eq!(l.available + l.sold, 1000);
}

#[test]
fn export_and_restore_round_trip() {
    let inv = inv();
    let w1 = inv.add_warehouse().unwrap();
    inv.set_region(3, &[w1, 0]).unwrap();
    let a = inv.add_sku(&[(0, 5), (w1, 5)], 3).unwrap();
    let b = inv.add_sku(&[(0, 7)], 0).unwrap();
    let r1 = inv
        .reserve(
            &[a, b],
            &[2, 1],
            9,
            Some(3),
            MatchPolicy::PreferOneParcel,
            T,
            NOW,
        )
        .unwrap()
        .0;
    let r2 = one(&inv, a, 1, 9).unwrap();
    inv.confirm(r2, None, NOW).unwrap();
    let st = inv.export_state();
    let back = Inventory::from_state(&st, 4).unwrap();
    assert_eq!(back.export_state(), st);
    for sku in [a, b] {
        assert_eq!(
            back.stock_by_warehouse(sku).unwrap(),
            inv.stock_by_warehouse(sku).unwrap()
        );
    }
    assert_eq!(back.bought_by(a, 9).unwrap(), 3);
    assert_eq!(back.reservation(r1).unwrap(), inv.reservation(r1).unwrap());
    let next = one(&back, b, 1, 1).unwrap();
    assert!(next > r2, "ids are never reused after a restore");
    back.check_invariants().unwrap();
}

#[test]
fn restore_refuses_inconsistent_state() {
    let inv = inv();
    let a = inv.add_sku(&[(0, 5)], 0).unwrap();
    one(&inv, a, 4, 1).unwrap();
    let mut st = inv.export_state();
    st.stock_on_hand[0] = 3;
    assert!(matches!(
        Inventory::from_state(&st, 8),
        Err(InventoryError::InvalidState { .. })
    ));
    let mut st = inv.export_state();
    st.res_offsets.push(9);
    assert!(matches!(
        Inventory::from_state(&st, 8),
        Err(InventoryError::InvalidState { .. })
    ));
}

#[test]
fn resolved_states_are_remembered_until_pruned() {
    let inv = inv();
    let a = inv.add_sku(&[(0, 100)], 0).unwrap();
    let ids: Vec<u64> = (0..50).map(|_| one(&inv, a, 1, 1).unwrap()).collect();
    for &id in &ids {
        inv.release(id, NOW).unwrap();
    }
    assert_eq!(
        inv.reservation_state(ids[10]).unwrap(),
        ReservationState::Released
    );
    assert_eq!(inv.prune_resolved(ids[24]), 25);
    assert!(matches!(
        inv.reservation_state(ids[10]),
        Err(InventoryError::UnknownReservation { .. })
    ));
    assert_eq!(
        inv.reservation_state(ids[30]).unwrap(),
        ReservationState::Released
    );
}

#[test]
fn stale_deadline_entries_do_not_accumulate() {
    let inv = inv();
    let a = inv.add_sku(&[(0, 1_000_000)], 0).unwrap();
    for _ in 0..20 {
        let skus = vec![a; 10_000];
        let qs = vec![1; 10_000];
        let out = inv
            .reserve_batch(
                &BatchOrders {
                    skus: &skus,
                    quantities: &qs,
                    offsets: None,
                    buyers: None,
                    regions: None,
                },
                MatchPolicy::default(),
                T,
                NOW,
            )
            .unwrap();
        assert!(inv
            .confirm_batch(&out.reservation, NOW)
            .iter()
            .all(|&c| c == status::OK));
    }
    let heap: usize = inv
        .res_shards
        .iter()
        .map(|s| s.lock().deadline_entries())
        .sum();
    assert!(
        heap <= 8 * 2048,
        "deadline index holds {heap} entries for 0 pending"
    );
}
