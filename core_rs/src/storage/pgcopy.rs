//! New orders in PostgreSQL's binary COPY format (`COPY table (columns) FROM STDIN (FORMAT
//! binary)`), so that the server store sends them with no Python object per order.
//!
//! The format (PostgreSQL manual, COPY, "Binary Format"): an 11-byte signature, a 32-bit flags
//! field (0: no OIDs) and a 32-bit header-extension length (0); then per tuple a 16-bit field
//! count and per field a 32-bit byte length followed by the value in the type's binary form;
//! then a 16-bit -1 trailer. All integers are big-endian. The binary forms used here:
//! `bigint` 8 bytes, `integer` 4 bytes, `text` its UTF-8 bytes (the connection's encoding,
//! which asyncpg sets to UTF-8), `jsonb` a version byte 1 and the JSON text, `bytea` its bytes.
//!
//! Column types are those of migrations 1 and 21 (`pyorder/storage/migrations.py`): every id,
//! amount and time is `bigint`, `order_lines.line_no` is `integer`, `orders.address` is `jsonb`,
//! `orders.risk_packed` is `bytea`.

use crate::orders::rows::OrderRows;

/// The fixed start of every binary COPY stream.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Version byte of the `jsonb` binary form.
const JSONB_VERSION: u8 = 1;

/// Builds one binary COPY stream.
struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + SIGNATURE.len() + 8 + 2);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        Self { buf }
    }

    fn tuple(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn len(&mut self, n: usize) {
        let n = i32::try_from(n).expect("a COPY field is shorter than 2 GiB");
        self.buf.extend_from_slice(&n.to_be_bytes());
    }

    fn int8(&mut self, v: i64) {
        self.len(8);
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn int4(&mut self, v: i32) {
        self.len(4);
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn text(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn jsonb(&mut self, json: &str) {
        self.len(json.len() + 1);
        self.buf.push(JSONB_VERSION);
        self.buf.extend_from_slice(json.as_bytes());
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A `bytea` field of what `write` appends (its length set after it).
    fn bytea_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let at = self.buf.len();
        self.len(0);
        write(&mut self.buf);
        let n = i32::try_from(self.buf.len() - at - 4).expect("a COPY field is shorter than 2 GiB");
        self.buf[at..at + 4].copy_from_slice(&n.to_be_bytes());
    }

    fn boolean(&mut self, v: bool) {
        self.len(1);
        self.buf.push(u8::from(v));
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// The `orders` rows of `rows`, columns as `super::ORDER_COLUMNS`: `updated_ms = created_ms`.
pub fn orders(rows: &OrderRows) -> Vec<u8> {
    // Per order: field count, 12 lengths, 6 bigints, status, currency, jsonb version byte.
    const FIXED: usize = 2 + 12 * 4 + 6 * 8 + 3 + 1;
    // A packed risk decision is ~40 bytes scored (`risk::PackedRisk`), less unscored, more with
    // rule ids: a hint, and the buffer may grow once.
    const RISK: usize = 48;
    let variable: usize = rows
        .orders
        .iter()
        .map(|o| {
            o.buyer.len()
                + o.status.len()
                + o.region.len()
                + o.address.len()
                + if o.risk.is_some() { RISK } else { 0 }
        })
        .sum();
    let mut e = Encoder::new(rows.len() * FIXED + variable);
    for o in &rows.orders {
        e.tuple(12);
        e.int8(o.id);
        e.text(&o.buyer);
        e.text(o.status);
        e.text(o.currency_str());
        e.int8(o.total);
        e.text(&o.region);
        e.jsonb(&o.address);
        e.int8(o.reservation);
        e.int8(o.created_ms);
        e.int8(o.deadline_ms);
        e.int8(o.created_ms);
        match &o.risk {
            Some(risk) => e.bytea_with(|buf| risk.packed().write(buf)),
            None => e.null(),
        }
    }
    e.finish()
}

/// The `risk_decisions` rows of `rows`, columns as `super::DECISION_COLUMNS`.
pub fn decisions(rows: &OrderRows) -> Vec<u8> {
    let size: usize = rows
        .decisions
        .iter()
        .map(|d| {
            2 + 11 * 4
                + 8
                + 8
                + 1
                + 4
                + 2
                + d.buyer.len()
                + d.merchant.len()
                + d.outcome.as_str().len()
                + d.risk.model.map_or(0, |m| m.as_str().len())
                // The rendered columns, estimated (the buffer grows if they are longer).
                + 16
                + d.risk.fired.iter().map(|f| f.len() + 3).sum::<usize>()
                + 2
                + d.risk.reasons.len() * 72
                + 2
                + 4
                + d.features.as_ref().map_or(0, |_| 1024)
        })
        .sum();
    let mut e = Encoder::new(size);
    for d in &rows.decisions {
        e.tuple(12);
        e.int8(d.id);
        e.text(&d.buyer);
        e.text(&d.merchant);
        e.int8(d.at_ms);
        e.text(d.outcome.as_str());
        e.boolean(d.risk.three_ds);
        match d.risk.score {
            Some(score) => e.int4(i32::from(score)),
            None => e.null(),
        }
        match &d.risk.model {
            Some(model) => e.text(model.as_str()),
            None => e.null(),
        }
        e.text(&d.risk.decided_by_text());
        e.text(&d.risk.fired_json());
        e.text(&d.risk.reasons_json());
        match d.features_json() {
            Some(features) => e.text(&features),
            None => e.null(),
        }
    }
    e.finish()
}

/// The `order_lines` rows of `rows`, columns as `super::LINE_COLUMNS`: `line_no` is the line's
/// index in its order.
pub fn lines(rows: &OrderRows) -> Vec<u8> {
    // Per line: field count, 7 lengths, 5 bigints and the int4 line number.
    const FIXED: usize = 2 + 7 * 4 + 5 * 8 + 4;
    let (count, variable) = rows
        .orders
        .iter()
        .flat_map(|o| o.lines.iter())
        .fold((0, 0), |(n, v), l| (n + 1, v + l.merchant.len()));
    let mut e = Encoder::new(count * FIXED + variable);
    for o in &rows.orders {
        for (n, l) in o.lines.iter().enumerate() {
            e.tuple(7);
            e.int8(o.id);
            e.int4(i32::try_from(n).expect("an order has fewer than 2^31 lines"));
            e.int8(i64::from(l.sku));
            e.int8(i64::from(l.warehouse));
            e.int8(i64::from(l.quantity));
            e.int8(l.unit_price);
            e.text(&l.merchant);
        }
    }
    e.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::orders::rows::{NewLine, NewOrder};

    /// A field as decoded back from a stream.
    #[derive(Debug, PartialEq)]
    enum Field {
        Int8(i64),
        Int4(i32),
        Bytes(Vec<u8>),
        Null,
    }

    /// Decode a binary COPY stream into tuples, reading fields of 8 and 4 bytes as integers
    /// when `ints[i]` says field i is one (else as raw bytes).
    fn decode(buf: &[u8], ints: &[Option<usize>]) -> Vec<Vec<Field>> {
        let mut at = 0;
        let mut take = |n: usize| {
            let s = &buf[at..at + n];
            at += n;
            s
        };
        assert_eq!(take(11), SIGNATURE);
        assert_eq!(take(4), [0, 0, 0, 0]);
        assert_eq!(take(4), [0, 0, 0, 0]);
        let mut tuples = Vec::new();
        loop {
            let count = i16::from_be_bytes(take(2).try_into().unwrap());
            if count == -1 {
                break;
            }
            assert_eq!(count as usize, ints.len());
            let mut fields = Vec::new();
            for width in ints {
                let len = i32::from_be_bytes(take(4).try_into().unwrap());
                if len == -1 {
                    fields.push(Field::Null);
                    continue;
                }
                assert!(len >= 0, "a length or -1 (NULL)");
                let bytes = take(len as usize);
                fields.push(match width {
                    Some(8) => Field::Int8(i64::from_be_bytes(bytes.try_into().unwrap())),
                    Some(4) => Field::Int4(i32::from_be_bytes(bytes.try_into().unwrap())),
                    _ => Field::Bytes(bytes.to_vec()),
                });
            }
            tuples.push(fields);
        }
        assert_eq!(at, buf.len(), "nothing after the trailer");
        tuples
    }

    const ORDER_FIELDS: [Option<usize>; 12] = [
        Some(8),
        None,
        None,
        None,
        Some(8),
        None,
        None,
        Some(8),
        Some(8),
        Some(8),
        Some(8),
        None,
    ];
    const LINE_FIELDS: [Option<usize>; 7] =
        [Some(8), Some(4), Some(8), Some(8), Some(8), Some(8), None];

    fn sample() -> OrderRows {
        let line = |sku, quantity, merchant: &str| NewLine {
            sku,
            warehouse: 3,
            quantity,
            unit_price: 1999,
            merchant: Arc::from(merchant),
        };
        let mut rows = OrderRows::default();
        rows.push(Arc::new(NewOrder {
            id: i64::MAX,
            buyer: Arc::from("ünïcödé buyer"),
            currency: *b"CNY",
            total: -5, // any bigint goes through as is
            region: Arc::from("north"),
            address: Box::from(r#"{"name":"王小明"}"#),
            reservation: 1 << 40,
            created_ms: 1_800_000_000_000,
            deadline_ms: 1_800_000_900_000,
            status: crate::orders::rows::PENDING_PAYMENT,
            risk: Some(crate::orders::rows::OrderRisk {
                three_ds: false,
                score: Some(3),
                model: None,
                decided_by: crate::risk::DecidedBy::Default,
                fired: smallvec::SmallVec::new(),
                reasons: [(0, 2.0, 0.5)].into_iter().collect(),
            }),
            lines: [line(u32::MAX, 2, "merchant:a"), line(0, 1, "m")]
                .into_iter()
                .collect(),
        }));
        rows
    }

    fn bytes(s: &str) -> Field {
        Field::Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn empty_rows_are_header_and_trailer_only() {
        let empty = OrderRows::default();
        for buf in [orders(&empty), lines(&empty)] {
            assert_eq!(buf, b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\xff\xff");
        }
    }

    #[test]
    fn orders_encode_every_column_in_order() {
        let buf = orders(&sample());
        let mut jsonb = vec![1u8];
        jsonb.extend_from_slice(r#"{"name":"王小明"}"#.as_bytes());
        assert_eq!(
            decode(&buf, &ORDER_FIELDS),
            [[
                Field::Int8(i64::MAX),
                bytes("ünïcödé buyer"),
                bytes("pending_payment"),
                bytes("CNY"),
                Field::Int8(-5),
                bytes("north"),
                Field::Bytes(jsonb),
                Field::Int8(1 << 40),
                Field::Int8(1_800_000_000_000),
                Field::Int8(1_800_000_900_000),
                Field::Int8(1_800_000_000_000),
                // [3, nil, 0 (default), false, [], [[0, 2, 500,000 millionths]]]
                Field::Bytes(vec![
                    0x96, 3, 0xc0, 0, 0xc2, 0x90, 0x91, 0x93, 0, 2, 0xce, 0, 0x07, 0xa1, 0x20
                ]),
            ]]
        );
        // The exact bytes of the first field: length 8, then the big-endian value.
        assert_eq!(&buf[19..21], [0, 12]);
        assert_eq!(&buf[21..25], [0, 0, 0, 8]);
        assert_eq!(
            &buf[25..33],
            [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn lines_number_from_zero_with_an_int4_line_no() {
        let buf = lines(&sample());
        assert_eq!(
            decode(&buf, &LINE_FIELDS),
            [
                [
                    Field::Int8(i64::MAX),
                    Field::Int4(0),
                    Field::Int8(i64::from(u32::MAX)),
                    Field::Int8(3),
                    Field::Int8(2),
                    Field::Int8(1999),
                    bytes("merchant:a"),
                ],
                [
                    Field::Int8(i64::MAX),
                    Field::Int4(1),
                    Field::Int8(0),
                    Field::Int8(3),
                    Field::Int8(1),
                    Field::Int8(1999),
                    bytes("m"),
                ],
            ]
        );
    }

    #[test]
    fn capacity_estimates_hold_the_whole_stream() {
        let mut rows = OrderRows::default();
        for i in 0..100 {
            let mut o = (*sample().orders[0]).clone();
            o.id = i;
            rows.push(Arc::new(o));
        }
        let o = orders(&rows);
        let l = lines(&rows);
        assert_eq!(decode(&o, &ORDER_FIELDS).len(), 100);
        assert_eq!(decode(&l, &LINE_FIELDS).len(), 200);
        // The size estimates are exact but for a risk decision's, 48 bytes where this one
        // packs in 15: one allocation each, none wasted but that.
        let packed = rows.orders[0].risk_packed().unwrap().len();
        assert_eq!(packed, 15);
        assert_eq!(o.capacity(), o.len() + 100 * (48 - packed));
        assert_eq!(l.capacity(), l.len());
    }
}
