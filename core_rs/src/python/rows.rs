//! Bindings of `crate::orders::rows`: `OrderRows`, the orders one commit window took through
//! the Rust intake, handed to a store without a Python object per order.

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::orders::rows::{self, NewLine, NewOrder, PENDING_PAYMENT};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<OrderRows>()?;
    Ok(())
}

/// Orders of one commit window (rows of `orders` and `order_lines`) and the reserved units
/// they add per (sku, warehouse).
#[pyclass(frozen, module = "pyorder._core")]
#[derive(Default)]
pub(crate) struct OrderRows {
    inner: Mutex<rows::OrderRows>,
}

impl OrderRows {
    /// The rows, locked (the GIL need not be held).
    pub(crate) fn lock(&self) -> MutexGuard<'_, rows::OrderRows> {
        self.inner.lock()
    }
}

/// (sku, warehouse, quantity, unit_price, merchant)
pub(crate) type LineParts = (u32, u32, u32, i64, String);

/// An order's lines as Python gets them.
pub(crate) fn line_parts(lines: &[NewLine]) -> Vec<LineParts> {
    lines
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
        .collect()
}

/// A `NewOrder` from Python values: (id, buyer, currency, total, region, address JSON),
/// (reservation, created_ms, deadline_ms) and the lines.
pub(crate) fn new_order(
    (id, buyer, currency, total, region, address): (i64, &str, &str, i64, &str, &str),
    (reservation, created_ms, deadline_ms): (i64, i64, i64),
    lines: Vec<LineParts>,
) -> PyResult<NewOrder> {
    Ok(NewOrder {
        id,
        buyer: Arc::from(buyer),
        currency: currency_code(currency)?,
        total,
        region: Arc::from(region),
        address: Box::from(address),
        reservation,
        created_ms,
        deadline_ms,
        status: PENDING_PAYMENT,
        risk: None,
        lines: lines
            .into_iter()
            .map(|(sku, warehouse, quantity, unit_price, merchant)| NewLine {
                sku,
                warehouse,
                quantity,
                unit_price,
                merchant: Arc::from(merchant),
            })
            .collect(),
    })
}

/// A currency code as stored: three ASCII capitals.
pub(crate) fn currency_code(currency: &str) -> PyResult<[u8; 3]> {
    currency
        .as_bytes()
        .try_into()
        .ok()
        .filter(|c: &[u8; 3]| c.iter().all(u8::is_ascii_uppercase))
        .ok_or_else(|| PyValueError::new_err(format!("bad currency code {currency:?}")))
}

type OrderTuple = (
    i64,
    String,
    &'static str,
    String,
    i64,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
);
type LineTuple = (i64, i64, u32, u32, u32, i64, String);
/// (id, buyer, currency, total, region, address_json, reservation, created_ms, deadline_ms,
/// lines, status)
type StagedTuple = (
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
    &'static str,
);
/// A `risk_decisions` row, columns as `storage::DECISION_COLUMNS` (fired, reasons and features
/// as JSON text).
type DecisionTuple = (
    i64,
    String,
    String,
    i64,
    &'static str,
    bool,
    Option<u8>,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
);

#[pymethods]
impl OrderRows {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Add one order (validated by the caller: the intake, or a test building rows by hand).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (id, buyer, currency, total, region, address, reservation, created_ms, deadline_ms, lines))]
    fn push(
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
        self.inner.lock().push(Arc::new(order));
        Ok(())
    }

    /// Rows to write: the orders, and the risk decisions of attempts blocked (no order).
    fn __len__(&self) -> usize {
        let rows = self.inner.lock();
        rows.len() + rows.blocked()
    }

    /// How many orders these are.
    #[getter]
    fn order_count(&self) -> usize {
        self.inner.lock().len()
    }

    /// How many risk decisions these rows hold (of their orders, and of attempts blocked).
    #[getter]
    fn decision_count(&self) -> usize {
        self.inner.lock().decisions.len()
    }

    /// The order `order_id` in full if it is one of these, else None (a binary search: the
    /// intake stages orders in increasing id order; a scan if someone did not).
    fn find(&self, order_id: i64) -> Option<StagedTuple> {
        let rows = self.inner.lock();
        let (lo, hi) = rows.id_range()?;
        if !(lo..=hi).contains(&order_id) {
            return None;
        }
        let o = match rows.orders.binary_search_by_key(&order_id, |o| o.id) {
            Ok(i) => &rows.orders[i],
            Err(_) => rows.orders.iter().find(|o| o.id == order_id)?,
        };
        Some((
            o.id,
            o.buyer.to_string(),
            o.currency_str().to_owned(),
            o.total,
            o.region.to_string(),
            o.address.to_string(),
            o.reservation,
            o.created_ms,
            o.deadline_ms,
            line_parts(&o.lines),
            o.status,
        ))
    }

    /// Move the orders of `other` into these rows, in their order, but those whose id is in
    /// `skip` (dropped); `other` is left empty. Returns how many orders moved. The orders are
    /// shared, not copied: no Python object per order.
    #[pyo3(signature = (other, skip=Vec::new()))]
    fn take_from(&self, other: &OrderRows, skip: Vec<i64>) -> PyResult<usize> {
        if std::ptr::eq(self, other) {
            return Err(PyValueError::new_err(
                "rows cannot take orders from themselves",
            ));
        }
        let mut from = other.inner.lock();
        Ok(self.inner.lock().take_from(&mut from, &skip))
    }

    /// Number of order lines over all the orders.
    fn line_count(&self) -> usize {
        self.inner.lock().line_count()
    }

    /// (smallest, largest) order id of these orders, or None when there are none.
    fn id_range(&self) -> Option<(i64, i64)> {
        self.inner.lock().id_range()
    }

    /// Units reserved by these orders as (sku, warehouse, units), sorted.
    fn reserved_deltas(&self) -> Vec<(u32, u32, i64)> {
        self.inner.lock().reserved_deltas()
    }

    /// (order id, its `risk_packed` column: risk control's decision when it allowed the
    /// order, MessagePack, else None), in order.
    fn order_risks<'py>(&self, py: Python<'py>) -> Vec<(i64, Option<Bound<'py, PyBytes>>)> {
        let rows = self.inner.lock();
        rows.orders
            .iter()
            .map(|o| (o.id, o.risk_packed().map(|r| PyBytes::new(py, &r))))
            .collect()
    }

    /// The `orders` rows, in `codec.ORDER_COLUMNS` order (updated_ms = created_ms).
    fn order_tuples(&self) -> Vec<OrderTuple> {
        let rows = self.inner.lock();
        rows.orders
            .iter()
            .map(|o| {
                (
                    o.id,
                    o.buyer.to_string(),
                    o.status,
                    o.currency_str().to_owned(),
                    o.total,
                    o.region.to_string(),
                    o.address.to_string(),
                    o.reservation,
                    o.created_ms,
                    o.deadline_ms,
                    o.created_ms,
                )
            })
            .collect()
    }

    /// The `risk_decisions` rows, in `codec.DECISION_COLUMNS` order.
    fn decision_tuples(&self) -> Vec<DecisionTuple> {
        let rows = self.inner.lock();
        rows.decisions
            .iter()
            .map(|d| {
                (
                    d.id,
                    d.buyer.to_string(),
                    d.merchant.to_string(),
                    d.at_ms,
                    d.outcome.as_str(),
                    d.risk.three_ds,
                    d.risk.score,
                    d.risk.model.as_ref().map(|m| m.as_str().to_owned()),
                    d.risk.decided_by_text().into_owned(),
                    d.risk.fired_json().into_owned(),
                    d.risk.reasons_json().into_owned(),
                    d.features_json(),
                )
            })
            .collect()
    }

    /// The `order_lines` rows, in `codec.LINE_COLUMNS` order.
    fn line_tuples(&self) -> Vec<LineTuple> {
        let rows = self.inner.lock();
        rows.orders
            .iter()
            .flat_map(|o| {
                o.lines.iter().enumerate().map(move |(n, l)| {
                    (
                        o.id,
                        n as i64,
                        l.sku,
                        l.warehouse,
                        l.quantity,
                        l.unit_price,
                        l.merchant.to_string(),
                    )
                })
            })
            .collect()
    }
}
