//! Response bodies of order intake, written straight from the rows: the same JSON the HTTP
//! API's `OrderOut`, `OrderBatchOut` (`server/api/orders_bodies.py`) and `ErrorOut`
//! (`server/bodies.py`) types describe.

use std::fmt::Write as _;

use super::book::{Outcome, Refusal};
use super::parse::push_json_str;
use super::rows::NewOrder;

/// `ms` since the Unix epoch as UTC ISO 8601 with milliseconds: `2026-12-01T07:15:02.123Z`.
pub fn iso_ms(out: &mut String, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let _ = write!(
        out,
        "\"{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z\""
    );
}

/// Rendered timestamps of the last orders: a batch shares its times, so each is formatted once.
#[derive(Default)]
pub struct Times {
    cached: [(i64, String); 2],
    /// The slot the next new timestamp replaces.
    next: usize,
}

impl Times {
    fn push(&mut self, out: &mut String, ms: i64) {
        let slot = match self
            .cached
            .iter()
            .position(|(t, s)| *t == ms && !s.is_empty())
        {
            Some(slot) => slot,
            None => {
                let slot = self.next;
                self.next = 1 - slot;
                let text = &mut self.cached[slot].1;
                text.clear();
                iso_ms(text, ms);
                self.cached[slot].0 = ms;
                slot
            }
        };
        out.push_str(&self.cached[slot].1);
    }
}

fn int(out: &mut String, v: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// An order as `OrderOut` (a new order: awaiting payment or in review, updated when created).
pub fn order(out: &mut String, o: &NewOrder, times: &mut Times) {
    out.push_str("{\"id\":\"");
    int(out, o.id);
    out.push_str("\",\"status\":\"");
    out.push_str(o.status);
    out.push_str("\",\"buyer\":");
    push_json_str(out, &o.buyer);
    out.push_str(",\"currency\":\"");
    out.push_str(o.currency_str());
    out.push_str("\",\"total\":");
    int(out, o.total);
    out.push_str(",\"lines\":[");
    for (i, l) in o.lines.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"sku\":");
        int(out, l.sku);
        out.push_str(",\"quantity\":");
        int(out, l.quantity);
        out.push_str(",\"unit_price\":");
        int(out, l.unit_price);
        out.push_str(",\"line_total\":");
        int(out, i64::from(l.quantity) * l.unit_price);
        out.push_str(",\"warehouse\":");
        int(out, l.warehouse);
        out.push('}');
    }
    out.push_str("],\"address\":");
    out.push_str(&o.address);
    out.push_str(",\"created_at\":");
    times.push(out, o.created_ms);
    out.push_str(",\"payment_deadline\":");
    times.push(out, o.deadline_ms);
    out.push_str(",\"updated_at\":");
    times.push(out, o.created_ms);
    out.push('}');
}

/// A refusal as `ErrorBody`: `{"code":…,"message":…,"details":{…}}`.
pub fn error_body(out: &mut String, r: &Refusal) {
    out.push_str("{\"code\":");
    push_json_str(out, r.code);
    out.push_str(",\"message\":");
    push_json_str(out, &r.message);
    out.push_str(",\"details\":{");
    let mut first = true;
    if let Some(field) = r.field {
        out.push_str("\"field\":");
        push_json_str(out, field);
        first = false;
    }
    if let Some(sku) = r.sku {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "\"sku\":{sku}");
        first = false;
    }
    if let Some(decision) = r.decision {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "\"decision\":\"{decision}\"");
    }
    out.push_str("}}");
}

/// An error response body: `{"error": ErrorBody}`, with the path of the offending value in
/// the body, if any, as `details.path` (`$.lines[0].sku`, as msgspec writes paths).
pub fn error(out: &mut String, message_code: &str, message: &str, path: Option<&str>) {
    out.push_str("{\"error\":{\"code\":");
    push_json_str(out, message_code);
    out.push_str(",\"message\":");
    push_json_str(out, message);
    out.push_str(",\"details\":{");
    if let Some(path) = path {
        out.push_str("\"path\":");
        push_json_str(out, path);
    }
    out.push_str("}}}");
}

/// The body of a single-order request and its HTTP status: the order (201) or the refusal.
pub fn single(out: &mut String, outcome: &Outcome) -> u16 {
    match outcome {
        Outcome::Created(o) => {
            order(out, o, &mut Times::default());
            201
        }
        Outcome::Refused(r) => {
            out.push_str("{\"error\":");
            error_body(out, r);
            out.push('}');
            r.status
        }
    }
}

/// The body of a batch request (`OrderBatchOut`): counts, then one result per order.
pub fn batch(out: &mut String, outcomes: &[Outcome]) {
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Created(_)))
        .count();
    let _ = write!(
        out,
        "{{\"created\":{created},\"failed\":{},\"results\":[",
        outcomes.len() - created
    );
    let mut times = Times::default();
    for (i, outcome) in outcomes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match outcome {
            Outcome::Created(o) => {
                out.push_str("{\"index\":");
                int(out, i);
                out.push_str(",\"status\":201,\"order\":");
                order(out, o, &mut times);
                out.push_str(",\"error\":null}");
            }
            Outcome::Refused(r) => {
                let _ = write!(
                    out,
                    "{{\"index\":{i},\"status\":{},\"order\":null,\"error\":",
                    r.status
                );
                error_body(out, r);
                out.push('}');
            }
        }
    }
    out.push_str("]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(ms: i64) -> String {
        let mut s = String::new();
        iso_ms(&mut s, ms);
        s
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso(0), "\"1970-01-01T00:00:00.000Z\"");
        assert_eq!(iso(1_764_573_302_123), "\"2025-12-01T07:15:02.123Z\"");
        assert_eq!(iso(951_782_400_000), "\"2000-02-29T00:00:00.000Z\"");
        assert_eq!(iso(4_102_444_799_999), "\"2099-12-31T23:59:59.999Z\"");
    }
}
