//! New orders as PostgreSQL array literals, one text per column, for a statement that inserts
//! a small batch in one round trip (`unnest($1::text::bigint[], ...)`), so that the server
//! store sends them with no Python object per order or per value.
//!
//! A batch's values as Python lists cost the driver a type check per value (asyncpg's array
//! encoder tests each element against `collections.abc` classes); one `text` per column costs
//! it nothing per value, and PostgreSQL's `array_in` reads the literal.
//!
//! The literal (PostgreSQL manual, "Arrays", "Array Value Input"): `{v1,v2,...}`; integers as
//! decimal text; every text value in double quotes with `"` and `\` escaped by a backslash
//! (so that spaces, commas, braces and the word NULL stay data). Column types are those of
//! `pgcopy`: every id, amount and time `bigint`, `line_no` `integer`, the address JSON text
//! (cast to `jsonb` by the statement), the packed risk decision `bytea` (PostgreSQL manual,
//! "Binary Data Types": the hex format `\x0a1b`).

use crate::orders::rows::OrderRows;

/// Builds one column's array literal.
struct Column {
    text: String,
}

impl Column {
    fn new(capacity: usize) -> Self {
        let mut text = String::with_capacity(capacity + 2);
        text.push('{');
        Self { text }
    }

    fn separate(&mut self) {
        if self.text.len() > 1 {
            self.text.push(',');
        }
    }

    fn int(&mut self, v: i64) {
        self.separate();
        self.text.push_str(itoa::Buffer::new().format(v));
    }

    fn text(&mut self, s: &str) {
        self.separate();
        self.text.push('"');
        let mut from = 0;
        for (at, b) in s.bytes().enumerate() {
            if b == b'"' || b == b'\\' {
                self.text.push_str(&s[from..at]);
                self.text.push('\\');
                from = at;
            }
        }
        self.text.push_str(&s[from..]);
        self.text.push('"');
    }

    /// A `bytea` value in its hex form, `"\\x0a1b"` (its backslash escaped in the literal).
    fn bytea(&mut self, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.separate();
        self.text.push_str("\"\\\\x");
        for &b in bytes {
            self.text.push(char::from(HEX[usize::from(b >> 4)]));
            self.text.push(char::from(HEX[usize::from(b & 15)]));
        }
        self.text.push('"');
    }

    /// SQL NULL: the unquoted word (a text `"NULL"` is quoted).
    fn null(&mut self) {
        self.separate();
        self.text.push_str("NULL");
    }

    fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

/// The `orders` rows of `rows` as one array literal per column of `super::ORDER_COLUMNS`
/// (`updated_ms = created_ms`).
pub fn orders(rows: &OrderRows) -> Vec<String> {
    let n = rows.orders.len();
    let mut c: Vec<Column> = (0..12).map(|_| Column::new(n * 16)).collect();
    for o in &rows.orders {
        c[0].int(o.id);
        c[1].text(&o.buyer);
        c[2].text(o.status);
        c[3].text(o.currency_str());
        c[4].int(o.total);
        c[5].text(&o.region);
        c[6].text(&o.address);
        c[7].int(o.reservation);
        c[8].int(o.created_ms);
        c[9].int(o.deadline_ms);
        c[10].int(o.created_ms);
        match o.risk_packed() {
            Some(risk) => c[11].bytea(&risk),
            None => c[11].null(),
        }
    }
    c.into_iter().map(Column::finish).collect()
}

/// The `order_lines` rows of `rows` as one array literal per column of `super::LINE_COLUMNS`:
/// `line_no` is the line's index in its order.
pub fn lines(rows: &OrderRows) -> Vec<String> {
    let n = rows.orders.len();
    let mut c: Vec<Column> = (0..7).map(|_| Column::new(n * 12)).collect();
    for o in &rows.orders {
        for (no, l) in o.lines.iter().enumerate() {
            c[0].int(o.id);
            c[1].int(i64::try_from(no).expect("an order has fewer than 2^63 lines"));
            c[2].int(i64::from(l.sku));
            c[3].int(i64::from(l.warehouse));
            c[4].int(i64::from(l.quantity));
            c[5].int(l.unit_price);
            c[6].text(&l.merchant);
        }
    }
    c.into_iter().map(Column::finish).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_are_quoted_and_escaped() {
        let mut c = Column::new(0);
        c.text("plain");
        c.text(r#"a "quoted" \ back, {brace} NULL"#);
        c.text("");
        c.int(-7);
        c.null();
        c.text("NULL");
        c.bytea(&[0x0a, 0xff]);
        assert_eq!(
            c.finish(),
            r#"{"plain","a \"quoted\" \\ back, {brace} NULL","",-7,NULL,"NULL","\\x0aff"}"#
        );
        assert_eq!(Column::new(0).finish(), "{}");
    }
}
