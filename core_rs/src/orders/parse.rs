//! Request bodies of order intake, parsed and validated without a Python object per order.
//!
//! The rules are those of the HTTP API's schema (`server/schemas.py`, `OrderIn` and
//! `OrderBatchIn`): unknown fields, wrong types and out-of-range values are refused, strings
//! are checked for length (in characters) and pattern, and no string may hold U+0000 (text
//! columns cannot store it). A body that is not JSON is `Malformed` (HTTP 400); one that is
//! JSON but breaks a rule is `Invalid` (HTTP 422), with the path of the offending value.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Deserialize;

/// Most orders in one batch request.
pub const MAX_BATCH_ORDERS: usize = 1000;
/// Most lines in one order.
pub const MAX_LINES: usize = 100;
/// Units of one line: 1 to this.
pub const MAX_QUANTITY: u64 = 10_000;
/// Largest SKU id the API accepts (ids are dense from 0).
pub const MAX_SKU_ID: u64 = (1 << 31) - 1;

/// Why a body was refused before any order in it was considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON (or not UTF-8): HTTP 400 `malformed_json`.
    Malformed(String),
    /// JSON that breaks the schema: HTTP 422 `invalid_input`.
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch<'a> {
    #[serde(borrow)]
    orders: Vec<RawOrder<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrder<'a> {
    lines: Vec<RawLine>,
    #[serde(borrow)]
    address: RawAddress<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    sku: u64,
    quantity: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAddress<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    line1: Cow<'a, str>,
    #[serde(borrow)]
    city: Cow<'a, str>,
    #[serde(borrow)]
    region: Cow<'a, str>,
    #[serde(borrow, default)]
    postal_code: Cow<'a, str>,
    #[serde(borrow, default = "default_country")]
    country: Cow<'a, str>,
    #[serde(borrow, default)]
    line2: Cow<'a, str>,
    #[serde(borrow, default)]
    phone: Cow<'a, str>,
}

fn default_country() -> Cow<'static, str> {
    Cow::Borrowed("CN")
}

/// One order as asked for: (sku, quantity) lines and a shipping address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest<'a> {
    pub lines: Vec<(u32, u32)>,
    pub address: Address<'a>,
}

/// A shipping address; every field present (defaults filled in), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address<'a> {
    pub name: Cow<'a, str>,
    pub line1: Cow<'a, str>,
    pub city: Cow<'a, str>,
    pub region: Cow<'a, str>,
    pub postal_code: Cow<'a, str>,
    pub country: Cow<'a, str>,
    pub line2: Cow<'a, str>,
    pub phone: Cow<'a, str>,
}

impl Address<'_> {
    /// Fields in the order the API shows and stores them.
    pub fn fields(&self) -> [(&'static str, &str); 8] {
        [
            ("name", &self.name),
            ("line1", &self.line1),
            ("city", &self.city),
            ("region", &self.region),
            ("postal_code", &self.postal_code),
            ("country", &self.country),
            ("line2", &self.line2),
            ("phone", &self.phone),
        ]
    }

    /// Compact JSON text of the address, fields in `fields()` order.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(160);
        out.push('{');
        for (i, (key, value)) in self.fields().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(key);
            out.push_str("\":");
            push_json_str(&mut out, value);
        }
        out.push('}');
        out
    }
}

/// Append `s` as a JSON string (escaping `"`, `\` and control characters, as orjson and
/// msgspec do; other characters stay UTF-8).
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Parse a batch body (`{"orders": [...]}`, 1 to `MAX_BATCH_ORDERS` orders).
pub fn parse_batch(body: &[u8]) -> Result<Vec<OrderRequest<'_>>, BodyError> {
    let raw: RawBatch<'_> = deserialize(body)?;
    if raw.orders.is_empty() || raw.orders.len() > MAX_BATCH_ORDERS {
        return Err(BodyError::Invalid(format!(
            "Expected `array` of length between 1 and {MAX_BATCH_ORDERS}, got {} - at `$.orders`",
            raw.orders.len()
        )));
    }
    raw.orders
        .into_iter()
        .enumerate()
        .map(|(i, o)| validate(o, At(Some(i))))
        .collect()
}

/// Parse a single-order body (`{"lines": [...], "address": {...}}`).
pub fn parse_order(body: &[u8]) -> Result<OrderRequest<'_>, BodyError> {
    let raw: RawOrder<'_> = deserialize(body)?;
    validate(raw, At(None))
}

/// Where an order sits in the body: `$` alone, or `$.orders[i]` in a batch. Paths are built
/// only for error messages.
#[derive(Clone, Copy)]
struct At(Option<usize>);

impl At {
    fn path(self, rest: &str) -> String {
        match self.0 {
            None => format!("${rest}"),
            Some(i) => format!("$.orders[{i}]{rest}"),
        }
    }
}

fn deserialize<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, BodyError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(BodyError::Malformed(format!(
            "the body is not valid UTF-8 at byte {}",
            e.valid_up_to()
        )));
    }
    // The common case, a valid body, parses without tracking where it is: the path only
    // serves the message of an error, so a body that fails is parsed again to find it.
    let de = &mut serde_json::Deserializer::from_slice(body);
    if let Ok(value) = T::deserialize(&mut *de) {
        if de.end().is_ok() {
            return Ok(value);
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let at = if path == "." {
                    String::from("$")
                } else {
                    format!("$.{path}")
                };
                BodyError::Invalid(format!("{} - at `{at}`", strip_position(&inner)))
            }
            _ => BodyError::Malformed(format!("the body is not valid JSON: {inner}")),
        }
    })?;
    // Trailing characters are caught by `end()`.
    de.end()
        .map_err(|e| BodyError::Malformed(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// serde_json's message without its "at line L column C" suffix (the path says where).
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn validate(raw: RawOrder<'_>, at: At) -> Result<OrderRequest<'_>, BodyError> {
    if raw.lines.is_empty() || raw.lines.len() > MAX_LINES {
        return Err(BodyError::Invalid(format!(
            "Expected `array` of length between 1 and {MAX_LINES}, got {} - at `{}`",
            raw.lines.len(),
            at.path(".lines")
        )));
    }
    let mut lines = Vec::with_capacity(raw.lines.len());
    for (i, line) in raw.lines.iter().enumerate() {
        if line.sku > MAX_SKU_ID {
            return Err(BodyError::Invalid(format!(
                "Expected `int` <= {MAX_SKU_ID} - at `{}`",
                at.path(&format!(".lines[{i}].sku"))
            )));
        }
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            let bound = if line.quantity == 0 {
                String::from(">= 1")
            } else {
                format!("<= {MAX_QUANTITY}")
            };
            return Err(BodyError::Invalid(format!(
                "Expected `int` {bound} - at `{}`",
                at.path(&format!(".lines[{i}].quantity"))
            )));
        }
        lines.push((line.sku as u32, line.quantity as u32));
    }
    let a = raw.address;
    let here = |field: &str| at.path(&format!(".address.{field}"));
    for (field, value) in [("name", &a.name), ("line1", &a.line1), ("city", &a.city)] {
        text(value, 1, 200, || here(field))?;
    }
    text(&a.region, 1, 64, || here("region"))?;
    if !a
        .region
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
    {
        return Err(BodyError::Invalid(format!(
            "Expected `str` matching regex '^[A-Za-z0-9_.:-]+$' - at `{}`",
            here("region")
        )));
    }
    text(&a.postal_code, 0, 20, || here("postal_code"))?;
    if a.country.len() != 2 || !a.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(BodyError::Invalid(format!(
            "Expected `str` matching regex '^[A-Z]{{2}}$' - at `{}`",
            here("country")
        )));
    }
    text(&a.line2, 0, 200, || here("line2"))?;
    text(&a.phone, 0, 40, || here("phone"))?;
    Ok(OrderRequest {
        lines,
        address: Address {
            name: a.name,
            line1: a.line1,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
            line2: a.line2,
            phone: a.phone,
        },
    })
}

/// A string of `min..=max` characters without U+0000.
fn text(value: &str, min: usize, max: usize, at: impl Fn() -> String) -> Result<(), BodyError> {
    if value.contains('\0') {
        return Err(BodyError::Invalid(format!(
            "strings must not contain the character U+0000 - at `{}`",
            at()
        )));
    }
    let n = if value.is_ascii() {
        value.len()
    } else {
        value.chars().count()
    };
    if n < min {
        return Err(BodyError::Invalid(format!(
            "Expected `str` of length >= {min} - at `{}`",
            at()
        )));
    }
    if n > max {
        return Err(BodyError::Invalid(format!(
            "Expected `str` of length <= {max} - at `{}`",
            at()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: &str = r#"{"name":"A","line1":"1 Road","city":"X","region":"north"}"#;

    fn order(lines: &str) -> String {
        format!(r#"{{"lines":{lines},"address":{ADDRESS}}}"#)
    }

    #[test]
    fn parses_a_batch_and_fills_address_defaults() {
        let body = format!(
            r#"{{"orders":[{}, {}]}}"#,
            order(r#"[{"sku":1,"quantity":2}]"#),
            order(r#"[{"sku":3,"quantity":1},{"sku":4,"quantity":5}]"#)
        );
        let orders = parse_batch(body.as_bytes()).unwrap();
        assert_eq!(orders.len(), 2);
        assert_eq!(orders[1].lines, vec![(3, 1), (4, 5)]);
        assert_eq!(orders[0].address.country, "CN");
        assert_eq!(
            orders[0].address.to_json(),
            r#"{"name":"A","line1":"1 Road","city":"X","region":"north","postal_code":"","country":"CN","line2":"","phone":""}"#
        );
    }

    #[test]
    fn malformed_is_told_apart_from_invalid() {
        assert!(matches!(
            parse_batch(b"{\"orders\": [{"),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            parse_batch(br#"{"orders":[]} x"#),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(parse_batch(b"\xff"), Err(BodyError::Malformed(_))));
        assert!(matches!(parse_batch(b"{}"), Err(BodyError::Invalid(_))));
        assert!(matches!(parse_batch(b"[]"), Err(BodyError::Invalid(_))));
        assert!(matches!(
            parse_batch(br#"{"orders":[]}"#),
            Err(BodyError::Invalid(_))
        ));
        let unknown = format!(
            r#"{{"orders":[{}],"atomic":true}}"#,
            order(r#"[{"sku":1,"quantity":1}]"#)
        );
        assert!(matches!(
            parse_batch(unknown.as_bytes()),
            Err(BodyError::Invalid(_))
        ));
    }

    #[test]
    fn invalid_values_name_their_path() {
        let err = parse_order(order(r#"[{"sku":1,"quantity":0}]"#).as_bytes()).unwrap_err();
        assert_eq!(
            err,
            BodyError::Invalid("Expected `int` >= 1 - at `$.lines[0].quantity`".into())
        );
        let err = parse_order(order(r#"[{"sku":1,"quantity":"2"}]"#).as_bytes()).unwrap_err();
        let BodyError::Invalid(m) = err else { panic!() };
        assert!(m.ends_with("- at `$.lines[0].quantity`"), "{m}");
        for bad in [
            r#"[{"sku":-1,"quantity":1}]"#,
            r#"[{"sku":2147483648,"quantity":1}]"#,
            r#"[{"sku":1.0,"quantity":1}]"#,
            r#"[{"sku":1,"quantity":10001}]"#,
            "[]",
        ] {
            assert!(
                matches!(
                    parse_order(order(bad).as_bytes()),
                    Err(BodyError::Invalid(_))
                ),
                "{bad}"
            );
        }
        let nul = r#"{"lines":[{"sku":1,"quantity":1}],"address":{"name":"A\u0000","line1":"1","city":"X","region":"n"}}"#;
        assert!(matches!(
            parse_order(nul.as_bytes()),
            Err(BodyError::Invalid(_))
        ));
        let region = r#"{"lines":[{"sku":1,"quantity":1}],"address":{"name":"A","line1":"1","city":"X","region":"a b"}}"#;
        assert!(matches!(
            parse_order(region.as_bytes()),
            Err(BodyError::Invalid(_))
        ));
    }

    #[test]
    fn lengths_count_characters_and_escapes_round_trip() {
        let long = "字".repeat(200);
        let body = format!(
            r#"{{"lines":[{{"sku":1,"quantity":1}}],"address":{{"name":"{long}","line1":"a\"b\\c\n\u0001","city":"X","region":"n"}}}}"#
        );
        let o = parse_order(body.as_bytes()).unwrap();
        assert_eq!(o.address.line1, "a\"b\\c\n\u{1}");
        let json = o.address.to_json();
        assert!(json.contains(r#""line1":"a\"b\\c\n\u0001""#), "{json}");
        let too_long = body.replace(&long, &"字".repeat(201));
        assert!(matches!(
            parse_order(too_long.as_bytes()),
            Err(BodyError::Invalid(_))
        ));
    }
}
