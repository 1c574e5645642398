//! Bindings of `crate::orders`: `OrderBook`, the Rust intake of orders.
//!
//! A request body goes in as bytes and the response body comes out as bytes; in between, with
//! the GIL released, the body is parsed and validated, every order is priced, reserved in the
//! inventory, given an ID and staged in the commit window's `OrderRows`, with no Python object
//! per order.

use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::inventory_err;
use super::ids::OrderIdGenerator;
use super::inventory::Inventory;
use super::rows::{currency_code, new_order, LineParts, OrderRows};
use crate::orders::book::{self, BookError, Outcome, Placement, SkuEntry};
use crate::orders::parse::{self, BodyError, OrderRequest};
use crate::orders::render;
use crate::orders::rows::NewOrder;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<OrderBook>()?;
    Ok(())
}

/// (id, buyer, currency, total, region, address_json, reservation, created_ms, deadline_ms, lines)
type PendingTuple = (
    i64,
    String,
    String,
    i64,
    String,
    String,
    i64,
    i64,
    i64,
    Vec<LineParts>,
);

/// What one request decided: HTTP status, response body, orders created, stock-outs.
type Answer<'py> = (u16, Bound<'py, PyBytes>, usize, usize);

fn pending_tuple(o: &NewOrder) -> PendingTuple {
    (
        o.id,
        o.buyer.to_string(),
        o.currency_str().to_owned(),
        o.total,
        o.region.to_string(),
        o.address.to_string(),
        o.reservation,
        o.created_ms,
        o.deadline_ms,
        o.lines
            .iter()
            .map(|l| {
                (
                    l.sku,
                    l.warehouse,
                    l.quantity,
                    l.unit_price,
                    l.merchant.to_string(),
                )
            })
            .collect(),
    )
}

/// Takes orders (see `pyorder.orders`) and holds the orders awaiting payment.
#[pyclass(frozen, module = "pyorder._core")]
pub(crate) struct OrderBook {
    inventory: Py<Inventory>,
    ids: Py<OrderIdGenerator>,
    book: Mutex<book::OrderBook>,
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
        let inventory = &self.inventory.get().inner;
        let ids = &self.ids.get().inner;
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
            let outcomes = {
                let mut rows = rows.lock();
                self.book
                    .lock()
                    .place(inventory, ids, who, &requests, &mut rows)?
            };
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
            Err(BookError::Inventory(e)) => Err(inventory_err(py, e)),
            Err(BookError::Ids(e)) => Err(self.ids.get().err(py, e)),
        }
    }
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

    /// Make a SKU orderable at `price` (minor units of `currency`), owned by `merchant`.
    fn set_sku(&self, sku: u32, price: i64, currency: &str, merchant: &str) -> PyResult<()> {
        let entry = SkuEntry {
            price,
            currency: currency_code(currency)?,
            merchant: Arc::from(merchant),
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
    fn place_batch<'py>(
        &self,
        py: Python<'py>,
        body: &[u8],
        buyer: &str,
        buyer_number: u64,
        rows: &OrderRows,
        now_ms: u64,
    ) -> PyResult<Answer<'py>> {
        let who = Placement {
            buyer,
            buyer_number,
            now_ms,
        };
        self.answer(py, body, false, &who, rows)
    }

    /// Take the order of a single-order body; as `place_batch`, the body being the order
    /// (201) or the error.
    fn place_one<'py>(
        &self,
        py: Python<'py>,
        body: &[u8],
        buyer: &str,
        buyer_number: u64,
        rows: &OrderRows,
        now_ms: u64,
    ) -> PyResult<Answer<'py>> {
        let who = Placement {
            buyer,
            buyer_number,
            now_ms,
        };
        self.answer(py, body, true, &who, rows)
    }

    /// A pending order as a tuple (see `pyorder.orders`), or None.
    fn pending_order(&self, order_id: i64) -> Option<PendingTuple> {
        self.book.lock().pending(order_id).map(|o| pending_tuple(o))
    }

    /// Stop holding an order as pending; returns it, or None if it was not pending.
    fn take_pending(&self, order_id: i64) -> Option<PendingTuple> {
        self.book
            .lock()
            .take_pending(order_id)
            .map(|o| pending_tuple(&o))
    }

    /// The pending order holding `reservation`, or None.
    fn order_of_reservation(&self, reservation: i64) -> Option<i64> {
        self.book.lock().order_of_reservation(reservation)
    }

    /// Hold a stored order as pending (rebuild from the store).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (id, buyer, currency, total, region, address, reservation, created_ms, deadline_ms, lines))]
    fn add_pending(
        &self,
        id: i64,
        buyer: &str,
        currency: &str,
        total: i64,
        region: &str,
        address: &str,
        reservation: i64,
        created_ms: i64,
        deadline_ms: i64,
        lines: Vec<LineParts>,
    ) -> PyResult<()> {
        let order = new_order(
            (id, buyer, currency, total, region, address),
            (reservation, created_ms, deadline_ms),
            lines,
        )?;
        self.book.lock().add_pending(Arc::new(order));
        Ok(())
    }
}
