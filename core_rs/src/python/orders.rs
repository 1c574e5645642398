//! Bindings of `crate::orders`: `OrderBook`, the Rust intake of orders.
//!
//! A request body goes in as bytes and the response body comes out as bytes; in between, with
//! the GIL released, the body is parsed and validated, every order is priced, reserved in the
//! inventory, given an ID and staged in the commit window's `OrderRows`, with no Python object
//! per order.

use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::engine::RiskEngine;
use super::errors::inventory_err;
use super::ids::OrderIdGenerator;
use super::inventory::Inventory;
use super::rows::{currency_code, line_parts, LineParts, OrderRows};
use crate::inventory::Reservation;
use crate::orders::book::{self, BookError, Client, Outcome, Placement, Refusal, SkuEntry};
use crate::orders::parse::{self, Address, BodyError, OrderRequest};
use crate::orders::pending::PendingOrder;
use crate::orders::render;
use crate::orders::rows::{IN_REVIEW, PENDING_PAYMENT};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<OrderBook>()?;
    Ok(())
}

/// A pending order as the book holds it: (id, reservation, buyer number, total, currency,
/// deadline_ms, [(sku, warehouse, quantity), ...], status); the deadline and the lines are its
/// reservation's; status `pending_payment`, or `in_review` while risk control holds it.
type HeldTuple = (
    i64,
    i64,
    u64,
    i64,
    String,
    u64,
    Vec<(u32, u32, u32)>,
    &'static str,
);

fn held_tuple(o: &PendingOrder, r: &Reservation) -> HeldTuple {
    (
        o.id,
        o.reservation,
        r.buyer,
        o.total,
        o.currency_str().to_owned(),
        r.deadline_ms,
        r.lines
            .iter()
            .map(|l| (l.sku, l.warehouse, l.quantity))
            .collect(),
        if o.in_review {
            IN_REVIEW
        } else {
            PENDING_PAYMENT
        },
    )
}

/// The client as `place_*`'s `client` argument gives it: (ip, ip region, agent class,
/// account created ms), every part optional.
type ClientTuple = (Option<String>, Option<String>, u8, Option<i64>);

fn client(t: &Option<ClientTuple>) -> Client<'_> {
    match t {
        None => Client::default(),
        Some((ip, ip_region, agent, account_created_ms)) => Client {
            ip: ip.as_deref(),
            ip_region: ip_region.as_deref(),
            agent: (*agent).min(3),
            account_created_ms: *account_created_ms,
        },
    }
}

/// What one request decided: HTTP status, response body, orders created, stock-outs.
type Answer<'py> = (u16, Bound<'py, PyBytes>, usize, usize);

/// A placed order as `pyorder.orders` builds its `Order` from it: (id, buyer, currency, total,
/// region, address fields, reservation, created_ms, deadline_ms, [(sku, warehouse, quantity,
/// unit_price, merchant), ...], status).
type PlacedTuple<'py> = (
    i64,
    &'py str,
    String,
    i64,
    String,
    Bound<'py, PyDict>,
    i64,
    i64,
    i64,
    Vec<LineParts>,
    &'static str,
);

/// A refused order: (code, message, details), as the JSON path's `{"error": ...}` has them.
type RefusalTuple<'py> = (&'static str, String, Bound<'py, PyDict>);

/// What `place_order` decided: the order, or why it was refused.
type Placed<'py> = (Option<PlacedTuple<'py>>, Option<RefusalTuple<'py>>);

/// The order `place_order` took, its address as the fields the order stores (defaults filled).
fn placed_tuple<'py>(
    py: Python<'py>,
    buyer: &'py str,
    o: &crate::orders::rows::NewOrder,
    address: &Address<'_>,
) -> PyResult<PlacedTuple<'py>> {
    let fields = PyDict::new(py);
    for (key, value) in address.fields() {
        fields.set_item(key, value)?;
    }
    Ok((
        o.id,
        buyer,
        o.currency_str().to_owned(),
        o.total,
        o.region.to_string(),
        fields,
        o.reservation,
        o.created_ms,
        o.deadline_ms,
        line_parts(&o.lines),
        o.status,
    ))
}

/// Takes orders (see `pyorder.orders`) and holds the orders awaiting payment.
#[pyclass(frozen, module = "pyorder._core")]
pub(crate) struct OrderBook {
    inventory: Py<Inventory>,
    ids: Py<OrderIdGenerator>,
    book: Mutex<book::OrderBook>,
    risk: Mutex<Option<Py<RiskEngine>>>,
}

impl OrderBook {
    fn answer<'py>(
        &self,
        py: Python<'py>,
        body: &[u8],
        single: bool,
        who: &Placement<'_>,
        rows: &OrderRows,
    ) -> PyResult<Answer<'py>> {
        let decided = py.detach(|| -> Result<(u16, String, usize, usize), BookError> {
            let parsed: Result<Vec<OrderRequest<'_>>, BodyError> = if single {
                parse::parse_order(body).map(|o| vec![o])
            } else {
                parse::parse_batch(body)
            };
            let mut out = String::with_capacity(if single { 512 } else { body.len() * 2 });
            let requests = match parsed {
                Ok(r) => r,
                Err(BodyError::Malformed(m)) => {
                    render::error(&mut out, "malformed_json", &m, None);
                    return Ok((400, out, 0, 0));
                }
                Err(BodyError::Invalid { message, path }) => {
                    render::error(&mut out, "invalid_input", &message, Some(&path));
                    return Ok((422, out, 0, 0));
                }
            };
            let outcomes = self.place(who, &requests, rows)?;
            let created = outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Created(_)))
                .count();
            let stockouts = outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Refused(r) if r.code == "out_of_stock"))
                .count();
            let status = if single {
                render::single(&mut out, &outcomes[0])
            } else {
                render::batch(&mut out, &outcomes);
                200
            };
            Ok((status, out, created, stockouts))
        });
        match decided {
            Ok((status, out, created, stockouts)) => {
                Ok((status, PyBytes::new(py, out.as_bytes()), created, stockouts))
            }
            Err(e) => Err(self.book_err(py, e)),
        }
    }

    /// Price, reserve, stage and hold `requests` (the one path of both entry points: a body's
    /// orders and an order given as values). Call without the GIL.
    fn place(
        &self,
        who: &Placement<'_>,
        requests: &[OrderRequest<'_>],
        rows: &OrderRows,
    ) -> Result<Vec<Outcome>, BookError> {
        let inventory = &self.inventory.get().inner;
        let ids = &self.ids.get().inner;
        let mut rows = rows.lock();
        self.book
            .lock()
            .place(inventory, ids, who, requests, &mut rows)
    }

    fn book_err(&self, py: Python<'_>, e: BookError) -> PyErr {
        match e {
            BookError::Inventory(e) => inventory_err(py, e),
            BookError::Ids(e) => self.ids.get().err(py, e),
        }
    }
}

/// An integer argument as i64, a larger one saturated: the limits it is checked against lie
/// far inside i64, so it is refused with the message its own value would get.
fn saturating_i64(v: &Bound<'_, PyAny>) -> PyResult<i64> {
    match v.extract::<i64>() {
        Ok(n) => Ok(n),
        Err(e) if e.is_instance_of::<PyOverflowError>(v.py()) => {
            Ok(if v.lt(0)? { i64::MIN } else { i64::MAX })
        }
        Err(e) => Err(e),
    }
}

/// A refusal with `details` (name, value) as a dict.
fn refusal_tuple<'py>(
    py: Python<'py>,
    code: &'static str,
    message: String,
    details: &[(&str, Bound<'py, PyAny>)],
) -> PyResult<RefusalTuple<'py>> {
    let out = PyDict::new(py);
    for (key, value) in details {
        out.set_item(key, value)?;
    }
    Ok((code, message, out))
}

/// The book's refusal (out of stock, over a limit, unknown SKU or region, ...) with the details
/// the JSON path's error body gives (`field`, `sku`).
fn refused<'py>(py: Python<'py>, r: Refusal) -> PyResult<RefusalTuple<'py>> {
    let mut details = Vec::with_capacity(2);
    if let Some(field) = r.field {
        details.push(("field", field.into_pyobject(py)?.into_any()));
    }
    if let Some(sku) = r.sku {
        details.push(("sku", sku.into_pyobject(py)?.into_any()));
    }
    refusal_tuple(py, r.code, r.message, &details)
}

#[pymethods]
impl OrderBook {
    #[new]
    fn new(
        inventory: Py<Inventory>,
        ids: Py<OrderIdGenerator>,
        payment_timeout_ms: u64,
    ) -> PyResult<Self> {
        if payment_timeout_ms == 0 {
            return Err(PyValueError::new_err("payment_timeout_ms must be positive"));
        }
        Ok(Self {
            inventory,
            ids,
            book: Mutex::new(book::OrderBook::new(payment_timeout_ms)),
            risk: Mutex::new(None),
        })
    }

    #[getter]
    fn payment_timeout_ms(&self) -> u64 {
        self.book.lock().payment_timeout_ms
    }

    #[getter]
    fn pending_count(&self) -> usize {
        self.book.lock().pending_count()
    }

    /// Make a SKU orderable at `price` (minor units of `currency`), owned by `merchant`, from
    /// `release_ms` on (ms since the Unix epoch, UTC; None: at once).
    #[pyo3(signature = (sku, price, currency, merchant, release_ms=None))]
    fn set_sku(
        &self,
        sku: u32,
        price: i64,
        currency: &str,
        merchant: &str,
        release_ms: Option<i64>,
    ) -> PyResult<()> {
        let entry = SkuEntry {
            price,
            currency: currency_code(currency)?,
            merchant: Arc::from(merchant),
            release_ms,
        };
        self.book.lock().set_sku(sku, entry);
        Ok(())
    }

    /// Deliver to region `code`, known to the inventory as `region`.
    fn set_region(&self, code: &str, region: u32) {
        self.book.lock().set_region(code, region);
    }

    /// Take the orders of a batch body (`{"orders": [...]}`) for `buyer`; created orders are
    /// staged in `rows`. Returns (HTTP status, response body, created, stock-outs).
    #[pyo3(signature = (body, buyer, buyer_number, rows, now_ms, client=None))]
    #[allow(clippy::too_many_arguments)]
    fn place_batch<'py>(
        &self,
        py: Python<'py>,
        body: &[u8],
        buyer: &str,
        buyer_number: u64,
        rows: &OrderRows,
        now_ms: u64,
        client: Option<ClientTuple>,
    ) -> PyResult<Answer<'py>> {
        let who = Placement {
            buyer,
            buyer_number,
            now_ms,
            client: self::client(&client),
        };
        self.answer(py, body, false, &who, rows)
    }

    /// Take the order of a single-order body; as `place_batch`, the body being the order
    /// (201) or the error.
    #[pyo3(signature = (body, buyer, buyer_number, rows, now_ms, client=None))]
    #[allow(clippy::too_many_arguments)]
    fn place_one<'py>(
        &self,
        py: Python<'py>,
        body: &[u8],
        buyer: &str,
        buyer_number: u64,
        rows: &OrderRows,
        now_ms: u64,
        client: Option<ClientTuple>,
    ) -> PyResult<Answer<'py>> {
        let who = Placement {
            buyer,
            buyer_number,
            now_ms,
            client: self::client(&client),
        };
        self.answer(py, body, true, &who, rows)
    }

    /// Take one order given as values (the embedding API; no JSON either way): `lines` as
    /// (sku, quantity) and the address fields (None: not given, so the default or a refusal).
    /// The rules, the limits and the refusals are those of the single-order body holding these
    /// values (`parse::check_order`), and a valid order is priced, reserved, staged in `rows`
    /// and held as `place_one` does it. Returns (the order, None) or (None, the refusal).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (
        lines, buyer, buyer_number, rows, now_ms, *, name=None, line1=None, city=None,
        region=None, postal_code=None, country=None, line2=None, phone=None, device_id=None,
        email_hash=None, phone_hash=None, client=None
    ))]
    fn place_order<'py>(
        &self,
        py: Python<'py>,
        lines: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        buyer: &'py str,
        buyer_number: u64,
        rows: &OrderRows,
        now_ms: u64,
        name: Option<&str>,
        line1: Option<&str>,
        city: Option<&str>,
        region: Option<&str>,
        postal_code: Option<&str>,
        country: Option<&str>,
        line2: Option<&str>,
        phone: Option<&str>,
        device_id: Option<&str>,
        email_hash: Option<&str>,
        phone_hash: Option<&str>,
        client: Option<ClientTuple>,
    ) -> PyResult<Placed<'py>> {
        let lines = lines
            .iter()
            .map(|(sku, quantity)| Ok((saturating_i64(sku)?, saturating_i64(quantity)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let address = [
            name,
            line1,
            city,
            region,
            postal_code,
            country,
            line2,
            phone,
        ];
        let context = [device_id, email_hash, phone_hash];
        let request = match parse::check_order(&lines, address, context) {
            Ok(request) => request,
            Err(BodyError::Invalid { message, path }) => {
                let path = path.into_pyobject(py)?.into_any();
                let refusal = refusal_tuple(py, "invalid_input", message, &[("path", path)])?;
                return Ok((None, Some(refusal)));
            }
            // `check_order` refuses only as Invalid: values are never malformed JSON.
            Err(BodyError::Malformed(message)) => {
                let refusal = refusal_tuple(py, "malformed_json", message, &[])?;
                return Ok((None, Some(refusal)));
            }
        };
        let who = Placement {
            buyer,
            buyer_number,
            now_ms,
            client: self::client(&client),
        };
        let placed = py.detach(|| self.place(&who, std::slice::from_ref(&request), rows));
        let outcome = placed
            .map_err(|e| self.book_err(py, e))?
            .pop()
            .ok_or_else(|| PyValueError::new_err("the book decided nothing"))?;
        match outcome {
            Outcome::Created(o) => Ok((Some(placed_tuple(py, buyer, &o, &request.address)?), None)),
            Outcome::Refused(r) => Ok((None, Some(refused(py, r)?))),
        }
    }

    /// Assess every order with `engine` from now on (None: risk control off). The engine
    /// outlives the book: a rebuilt book is given the same one, so its counters go on.
    fn set_risk(&self, engine: Option<Py<RiskEngine>>) {
        let inner = engine.as_ref().map(|e| Arc::clone(&e.get().inner));
        self.book.lock().risk = inner;
        *self.risk.lock() = engine;
    }

    /// The risk engine orders are assessed with, or None.
    #[getter]
    fn risk(&self, py: Python<'_>) -> Option<Py<RiskEngine>> {
        self.risk.lock().as_ref().map(|e| e.clone_ref(py))
    }

    /// How long an order held for review keeps its units before it expires unreviewed, ms.
    #[getter]
    fn review_hold_ms(&self) -> u64 {
        self.book.lock().review_hold_ms
    }

    #[setter]
    fn set_review_hold_ms(&self, ms: u64) -> PyResult<()> {
        if ms == 0 {
            return Err(PyValueError::new_err("review_hold_ms must be positive"));
        }
        self.book.lock().review_hold_ms = ms;
        Ok(())
    }

    /// An order held for review now awaits payment, its payment deadline starting `now_ms`:
    /// returns the new deadline (ms). Raises ValueError if the order is not held for review.
    fn approve(&self, py: Python<'_>, order_id: i64, now_ms: u64) -> PyResult<u64> {
        let inventory = &self.inventory.get().inner;
        let approved = py.detach(|| self.book.lock().approve(inventory, order_id, now_ms));
        approved.map_err(|e| self.book_err(py, e))?.ok_or_else(|| {
            PyValueError::new_err(format!("order {order_id} is not held for review"))
        })
    }

    /// Bytes the pending orders' records take in the book (their reservations not counted).
    #[getter]
    fn pending_bytes(&self) -> usize {
        self.book.lock().pending_bytes()
    }

    /// A pending order as the book and its reservation hold it (see `pyorder.orders`), or
    /// None when it does not await payment.
    fn pending_order(&self, order_id: i64) -> Option<HeldTuple> {
        let order = self.book.lock().pending(order_id)?;
        let reservation = self
            .inventory
            .get()
            .inner
            .reservation(u64::try_from(order.reservation).ok()?)
            .ok()?;
        Some(held_tuple(&order, &reservation))
    }

    /// Stop holding an order as pending; returns (id, reservation, total, currency), or None
    /// if it was not pending.
    fn take_pending(&self, order_id: i64) -> Option<(i64, i64, i64, String)> {
        self.book
            .lock()
            .take_pending(order_id)
            .map(|o| (o.id, o.reservation, o.total, o.currency_str().to_owned()))
    }

    /// The pending order holding `reservation`, or None.
    fn order_of_reservation(&self, reservation: i64) -> Option<i64> {
        self.book.lock().order_of_reservation(reservation)
    }

    /// Hold a stored order as pending (rebuild from the store): its reservation must be
    /// pending in the inventory. `status`: `pending_payment`, or `in_review` for an order risk
    /// control holds for review.
    #[pyo3(signature = (id, reservation, total, currency, status="pending_payment"))]
    fn add_pending(
        &self,
        id: i64,
        reservation: i64,
        total: i64,
        currency: &str,
        status: &str,
    ) -> PyResult<()> {
        let in_review = match status {
            PENDING_PAYMENT => false,
            IN_REVIEW => true,
            other => {
                return Err(PyValueError::new_err(format!(
                    "a held order is pending_payment or in_review, not {other:?}"
                )))
            }
        };
        if reservation <= 0 {
            return Err(PyValueError::new_err(format!(
                "reservation ids start at 1, got {reservation}"
            )));
        }
        let order = PendingOrder {
            id,
            reservation,
            total,
            currency: currency_code(currency)?,
            in_review,
        };
        self.book.lock().add_pending(order);
        Ok(())
    }

    /// Expire up to `limit` reservations whose deadline is at or before `now_ms` and stop
    /// holding their orders. Returns how many reservations expired and the orders they held,
    /// as `pending_order` shows them.
    fn expire_due(&self, py: Python<'_>, now_ms: u64, limit: usize) -> (usize, Vec<HeldTuple>) {
        let inventory = &self.inventory.get().inner;
        let expired = py.detach(|| self.book.lock().expire_due(inventory, now_ms, limit));
        let orders = expired
            .iter()
            .filter_map(|(_, order, r)| order.as_ref().map(|o| held_tuple(o, r)))
            .collect();
        (expired.len(), orders)
    }
}
