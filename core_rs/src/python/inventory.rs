//! Bindings of the inventory (`crate::inventory`): `Inventory`, `StockLevel`,
//! `ReservationInfo`, `ReserveBatchResult` and the `STATUS_*` / `POLICY_*` constants.
//!
//! Single calls keep the GIL (their work is shorter than releasing it); batch calls release it.

use std::borrow::Cow;

use numpy::{Element, PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyMapping};

use super::errors::{
    inventory_err, InvalidQuantityError, UnknownReservationError, UnknownSkuError,
};
use crate::inventory::{
    self as core, status, BatchOrders, InventoryError as CoreError, InventoryState, MatchPolicy,
    DEFAULT_TIMEOUT_MS, MAX_LINE_QUANTITY,
};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Inventory>()?;
    m.add_class::<StockLevel>()?;
    m.add_class::<ReservationInfo>()?;
    m.add_class::<ReserveBatchResult>()?;
    for (name, code) in [
        ("STATUS_OK", status::OK),
        ("STATUS_OUT_OF_STOCK", status::OUT_OF_STOCK),
        ("STATUS_LIMIT_EXCEEDED", status::LIMIT_EXCEEDED),
        ("STATUS_UNKNOWN_SKU", status::UNKNOWN_SKU),
        ("STATUS_INVALID_QUANTITY", status::INVALID_QUANTITY),
        ("STATUS_DUPLICATE_SKU", status::DUPLICATE_SKU),
        ("STATUS_UNKNOWN_REGION", status::UNKNOWN_REGION),
        ("STATUS_UNKNOWN_RESERVATION", status::UNKNOWN_RESERVATION),
        ("STATUS_ALREADY_CONFIRMED", status::ALREADY_CONFIRMED),
        ("STATUS_ALREADY_RELEASED", status::ALREADY_RELEASED),
        ("STATUS_ALREADY_EXPIRED", status::ALREADY_EXPIRED),
    ] {
        m.add(name, code)?;
    }
    m.add("POLICY_PREFER_ONE_PARCEL", MatchPolicy::NAMES[0])?;
    m.add("POLICY_ONE_PARCEL_ONLY", MatchPolicy::NAMES[1])?;
    m.add("POLICY_NEAREST_PER_LINE", MatchPolicy::NAMES[2])?;
    m.add("DEFAULT_TIMEOUT_MS", DEFAULT_TIMEOUT_MS)?;
    Ok(())
}

// --- argument conversion -------------------------------------------------------------------

/// An int argument, exactly for anything in i64 or u64, saturated beyond, so that range
/// checks can name what was asked.
fn int(obj: &Bound<'_, PyAny>) -> PyResult<i128> {
    if let Ok(v) = obj.extract::<i64>() {
        return Ok(i128::from(v));
    }
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(i128::from(v));
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(if obj.lt(0)? { i128::MIN } else { i128::MAX });
    }
    obj.extract::<i64>().map(i128::from)
}

fn sku_arg(obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    let v = int(obj)?;
    u32::try_from(v).map_err(|_| {
        let err = UnknownSkuError::new_err(format!("unknown SKU {obj}"));
        let _ = err.value(obj.py()).setattr("sku", obj);
        err
    })
}

/// A line quantity; out-of-range values become 0, which the core refuses in its validation order.
fn quantity_arg(obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    let v = int(obj)?;
    Ok(u32::try_from(v)
        .ok()
        .filter(|&q| q <= MAX_LINE_QUANTITY)
        .unwrap_or(0))
}

fn units_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    let v = int(obj)?;
    u64::try_from(v).map_err(|_| {
        InvalidQuantityError::new_err(format!("{what} must be between 0 and 2**64 - 1, got {obj}"))
    })
}

fn u32_arg(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u32> {
    let v = int(obj)?;
    u32::try_from(v).map_err(|_| {
        inventory_err(
            py,
            CoreError::InvalidArgument {
                message: format!("{what} out of range: {obj}"),
            },
        )
    })
}

fn u64_arg(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    let v = int(obj)?;
    u64::try_from(v).map_err(|_| {
        inventory_err(
            py,
            CoreError::InvalidArgument {
                message: format!("{what} out of range: {obj}"),
            },
        )
    })
}

fn warehouse_arg(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    let v = int(obj)?;
    u32::try_from(v).map_err(|_| {
        inventory_err(
            py,
            CoreError::UnknownWarehouse {
                warehouse: u32::MAX,
            },
        )
    })
}

fn now_arg(py: Python<'_>, now_ms: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    match now_ms {
        None => Ok(core::now_ms()),
        Some(v) => u64_arg(py, v, "now_ms"),
    }
}

fn timeout_arg(timeout_ms: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    match timeout_ms {
        None => Ok(DEFAULT_TIMEOUT_MS),
        Some(v) => {
            let t = int(v)?;
            // 0, negatives and huge values are refused by the core's range check.
            Ok(u64::try_from(t).unwrap_or(if t < 0 { 0 } else { u64::MAX }))
        }
    }
}

fn policy_arg(py: Python<'_>, policy: &str) -> PyResult<MatchPolicy> {
    MatchPolicy::parse(policy).map_err(|e| inventory_err(py, e))
}

/// A 1-D numpy array argument of element type `T` (`dtype` names it in the error).
fn typed<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    dtype: &str,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    let arr = obj.cast::<PyArray1<T>>().map_err(|_| {
        let got = obj
            .getattr("dtype")
            .map(|d| d.to_string())
            .unwrap_or_else(|_| obj.get_type().to_string());
        PyTypeError::new_err(format!(
            "{name} must be a 1-D numpy array of {dtype}, got {got}"
        ))
    })?;
    Ok(arr.readonly())
}

/// The array's items: borrowed when contiguous, copied when strided.
fn slice<'a, T: Element + Copy>(
    arr: &'a PyReadonlyArray1<'_, T>,
    _name: &str,
) -> PyResult<Cow<'a, [T]>> {
    Ok(match arr.as_slice() {
        Ok(items) => Cow::Borrowed(items),
        Err(_) => Cow::Owned(arr.as_array().iter().copied().collect()),
    })
}

// --- value classes -------------------------------------------------------------------------

/// Units of one SKU: on_hand = available + reserved + sold.
#[pyclass(frozen, eq, hash, get_all, module = "pyorder._core")]
#[derive(Clone, PartialEq, Eq, Hash)]
struct StockLevel {
    on_hand: u64,
    available: u64,
    reserved: u64,
    sold: u64,
}

#[pymethods]
impl StockLevel {
    #[new]
    fn new(on_hand: u64, available: u64, reserved: u64, sold: u64) -> Self {
        Self {
            on_hand,
            available,
            reserved,
            sold,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "StockLevel(on_hand={}, available={}, reserved={}, sold={})",
            self.on_hand, self.available, self.reserved, self.sold
        )
    }
}

impl From<core::StockLevel> for StockLevel {
    fn from(l: core::StockLevel) -> Self {
        Self {
            on_hand: l.on_hand,
            available: l.available,
            reserved: l.reserved,
            sold: l.sold,
        }
    }
}

/// A pending reservation.
#[pyclass(frozen, get_all, module = "pyorder._core")]
struct ReservationInfo {
    reservation: u64,
    state: &'static str,
    buyer: u64,
    deadline_ms: u64,
    lines: Vec<(u32, u32, u32)>,
}

#[pymethods]
impl ReservationInfo {
    fn __repr__(&self) -> String {
        format!(
            "ReservationInfo(reservation={}, state={:?}, buyer={}, deadline_ms={}, lines={:?})",
            self.reservation, self.state, self.buyer, self.deadline_ms, self.lines
        )
    }
}

/// Per-order outcome of `Inventory.reserve_batch`.
#[pyclass(frozen, get_all, module = "pyorder._core")]
struct ReserveBatchResult {
    status: Py<PyArray1<u8>>,
    reservation: Py<PyArray1<u64>>,
    warehouse: Py<PyArray1<u32>>,
    failed_item: Py<PyArray1<i64>>,
}

// --- the inventory -------------------------------------------------------------------------

#[pyclass(frozen, module = "pyorder._core")]
pub(crate) struct Inventory {
    pub(crate) inner: core::Inventory,
}

#[pymethods]
impl Inventory {
    #[new]
    #[pyo3(signature = (shards = 64))]
    fn new(py: Python<'_>, shards: usize) -> PyResult<Self> {
        Ok(Self {
            inner: core::Inventory::new(shards).map_err(|e| inventory_err(py, e))?,
        })
    }

    #[staticmethod]
    #[pyo3(signature = (state, shards = 64))]
    fn from_state(py: Python<'_>, state: &Bound<'_, PyMapping>, shards: usize) -> PyResult<Self> {
        let st = state_from_py(state)?;
        let inner = py
            .detach(|| core::Inventory::from_state(&st, shards))
            .map_err(|e| inventory_err(py, e))?;
        Ok(Self { inner })
    }

    #[getter]
    fn shards(&self) -> usize {
        self.inner.shards()
    }

    #[getter]
    fn sku_count(&self) -> u32 {
        self.inner.sku_count()
    }

    #[getter]
    fn warehouse_count(&self) -> u32 {
        self.inner.warehouse_count()
    }

    #[getter]
    fn open_reservations(&self) -> usize {
        self.inner.open_reservations()
    }

    /// Bytes held for pending reservations (see `pyorder/_core.pyi`).
    #[getter]
    fn reservation_bytes(&self) -> usize {
        self.inner.reservation_bytes()
    }

    fn add_warehouse(&self, py: Python<'_>) -> PyResult<u32> {
        self.inner.add_warehouse().map_err(|e| inventory_err(py, e))
    }

    fn set_region(
        &self,
        py: Python<'_>,
        region: &Bound<'_, PyAny>,
        warehouses: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let region = u32_arg(py, region, "region")?;
        let list = warehouses
            .iter()
            .map(|w| warehouse_arg(py, w))
            .collect::<PyResult<Vec<u32>>>()?;
        self.inner
            .set_region(region, &list)
            .map_err(|e| inventory_err(py, e))
    }

    fn region_warehouses(&self, py: Python<'_>, region: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        let region = u32_arg(py, region, "region")?;
        self.inner
            .region_warehouses(region)
            .map_err(|e| inventory_err(py, e))
    }

    #[pyo3(signature = (stock = None, *, limit_per_buyer = None), text_signature = "($self, /, stock=0, *, limit_per_buyer=0)")]
    fn add_sku(
        &self,
        py: Python<'_>,
        stock: Option<&Bound<'_, PyAny>>,
        limit_per_buyer: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u32> {
        let mut slots: Vec<(u32, u64)> = Vec::new();
        match stock {
            None => slots.push((0, 0)),
            Some(s) if s.is_instance_of::<PyInt>() => {
                slots.push((0, units_arg(s, "on-hand units")?))
            }
            Some(s) => {
                let mapping = s.cast::<PyMapping>().map_err(|_| {
                    PyTypeError::new_err("stock must be an int (units in warehouse 0) or a {warehouse: units} mapping")
                })?;
                for item in mapping.items()?.iter() {
                    let (wh, units): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
                    slots.push((warehouse_arg(py, &wh)?, units_arg(&units, "on-hand units")?));
                }
            }
        }
        let limit = match limit_per_buyer {
            None => 0,
            Some(l) => units_arg(l, "limit_per_buyer")?,
        };
        self.inner
            .add_sku(&slots, limit)
            .map_err(|e| inventory_err(py, e))
    }

    #[pyo3(signature = (on_hand, warehouse = 0))]
    fn add_skus<'py>(
        &self,
        py: Python<'py>,
        on_hand: &Bound<'py, PyAny>,
        warehouse: u32,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let on_hand = typed::<i64>(on_hand, "on_hand", "int64")?;
        let units = slice(&on_hand, "on_hand")?;
        let first = py
            .detach(|| self.inner.add_skus(&units, warehouse))
            .map_err(|e| inventory_err(py, e))?;
        let ids: Vec<u32> = (first..first + units.len() as u32).collect();
        Ok(PyArray1::from_vec(py, ids))
    }

    #[pyo3(signature = (sku, quantity, warehouse = None), text_signature = "($self, /, sku, quantity, warehouse=0)")]
    fn restock(
        &self,
        py: Python<'_>,
        sku: &Bound<'_, PyAny>,
        quantity: &Bound<'_, PyAny>,
        warehouse: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let sku = sku_arg(sku)?;
        let q = int(quantity)?;
        let Some(q) = u64::try_from(q).ok().filter(|&q| q > 0) else {
            return Err(InvalidQuantityError::new_err(format!(
                "a restock adds between 1 and 2**64 - 1 units, got {quantity}"
            )));
        };
        let wh = warehouse
            .map(|w| warehouse_arg(py, w))
            .transpose()?
            .unwrap_or(0);
        self.inner
            .restock(sku, q, wh)
            .map_err(|e| inventory_err(py, e))
    }

    #[pyo3(signature = (sku, delta, warehouse = None), text_signature = "($self, /, sku, delta, warehouse=0)")]
    fn adjust(
        &self,
        py: Python<'_>,
        sku: &Bound<'_, PyAny>,
        delta: &Bound<'_, PyAny>,
        warehouse: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let sku = sku_arg(sku)?;
        let delta = i64::try_from(int(delta)?)
            .map_err(|_| InvalidQuantityError::new_err(format!("delta out of range: {delta}")))?;
        let wh = warehouse
            .map(|w| warehouse_arg(py, w))
            .transpose()?
            .unwrap_or(0);
        self.inner
            .adjust(sku, delta, wh)
            .map_err(|e| inventory_err(py, e))
    }

    #[pyo3(signature = (sku, quantity, warehouse = None, *, buyer = None), text_signature = "($self, /, sku, quantity, warehouse=0, *, buyer=None)")]
    fn return_sold(
        &self,
        py: Python<'_>,
        sku: &Bound<'_, PyAny>,
        quantity: &Bound<'_, PyAny>,
        warehouse: Option<&Bound<'_, PyAny>>,
        buyer: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let sku = sku_arg(sku)?;
        let q = int(quantity)?;
        let Some(q) = u64::try_from(q).ok().filter(|&q| q > 0) else {
            return Err(InvalidQuantityError::new_err(format!(
                "a return moves between 1 and 2**64 - 1 units, got {quantity}"
            )));
        };
        let wh = warehouse
            .map(|w| warehouse_arg(py, w))
            .transpose()?
            .unwrap_or(0);
        let buyer = buyer.map(|b| u64_arg(py, b, "buyer")).transpose()?;
        self.inner
            .return_sold(sku, q, wh, buyer)
            .map_err(|e| inventory_err(py, e))
    }

    fn set_purchase_limit(
        &self,
        py: Python<'_>,
        sku: &Bound<'_, PyAny>,
        limit_per_buyer: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let sku = sku_arg(sku)?;
        let limit = units_arg(limit_per_buyer, "limit_per_buyer")?;
        self.inner
            .set_purchase_limit(sku, limit)
            .map_err(|e| inventory_err(py, e))
    }

    fn purchase_limit(&self, py: Python<'_>, sku: &Bound<'_, PyAny>) -> PyResult<u64> {
        self.inner
            .purchase_limit(sku_arg(sku)?)
            .map_err(|e| inventory_err(py, e))
    }

    fn bought_by(
        &self,
        py: Python<'_>,
        sku: &Bound<'_, PyAny>,
        buyer: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let buyer = u64_arg(py, buyer, "buyer")?;
        self.inner
            .bought_by(sku_arg(sku)?, buyer)
            .map_err(|e| inventory_err(py, e))
    }

    #[pyo3(signature = (sku, warehouse = None))]
    fn stock(
        &self,
        py: Python<'_>,
        sku: &Bound<'_, PyAny>,
        warehouse: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<StockLevel> {
        let wh = warehouse.map(|w| warehouse_arg(py, w)).transpose()?;
        Ok(self
            .inner
            .stock(sku_arg(sku)?, wh)
            .map_err(|e| inventory_err(py, e))?
            .into())
    }

    fn stock_by_warehouse<'py>(
        &self,
        py: Python<'py>,
        sku: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let levels = self
            .inner
            .stock_by_warehouse(sku_arg(sku)?)
            .map_err(|e| inventory_err(py, e))?;
        let out = PyDict::new(py);
        for (wh, level) in levels {
            out.set_item(wh, StockLevel::from(level))?;
        }
        Ok(out)
    }

    #[pyo3(
        signature = (sku, quantity, *, buyer = None, region = None, timeout_ms = None, now_ms = None),
        text_signature = "($self, /, sku, quantity, *, buyer=0, region=None, timeout_ms=900000, now_ms=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn reserve(
        &self,
        py: Python<'_>,
        sku: &Bound<'_, PyAny>,
        quantity: &Bound<'_, PyAny>,
        buyer: Option<&Bound<'_, PyAny>>,
        region: Option<&Bound<'_, PyAny>>,
        timeout_ms: Option<&Bound<'_, PyAny>>,
        now_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let skus = [sku_arg(sku)?];
        let quantities = [quantity_arg(quantity)?];
        self.reserve_lines(
            py,
            &skus,
            &quantities,
            buyer,
            region,
            MatchPolicy::default(),
            timeout_ms,
            now_ms,
        )
    }

    #[pyo3(
        signature = (lines, *, buyer = None, region = None, policy = "prefer_one_parcel", timeout_ms = None, now_ms = None),
        text_signature = "($self, /, lines, *, buyer=0, region=None, policy='prefer_one_parcel', timeout_ms=900000, now_ms=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn reserve_order(
        &self,
        py: Python<'_>,
        lines: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)>,
        buyer: Option<&Bound<'_, PyAny>>,
        region: Option<&Bound<'_, PyAny>>,
        policy: &str,
        timeout_ms: Option<&Bound<'_, PyAny>>,
        now_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let mut skus = Vec::with_capacity(lines.len());
        let mut quantities = Vec::with_capacity(lines.len());
        for (sku, q) in &lines {
            skus.push(sku_arg(sku)?);
            quantities.push(quantity_arg(q)?);
        }
        let policy = policy_arg(py, policy)?;
        self.reserve_lines(
            py,
            &skus,
            &quantities,
            buyer,
            region,
            policy,
            timeout_ms,
            now_ms,
        )
    }

    #[pyo3(
        signature = (skus, quantities, *, order_offsets = None, buyers = None, regions = None,
                     policy = "prefer_one_parcel", timeout_ms = None, now_ms = None),
        text_signature = "($self, /, skus, quantities, *, order_offsets=None, buyers=None, regions=None, policy='prefer_one_parcel', timeout_ms=900000, now_ms=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn reserve_batch(
        &self,
        py: Python<'_>,
        skus: &Bound<'_, PyAny>,
        quantities: &Bound<'_, PyAny>,
        order_offsets: Option<&Bound<'_, PyAny>>,
        buyers: Option<&Bound<'_, PyAny>>,
        regions: Option<&Bound<'_, PyAny>>,
        policy: &str,
        timeout_ms: Option<&Bound<'_, PyAny>>,
        now_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<ReserveBatchResult> {
        let policy = policy_arg(py, policy)?;
        let timeout = timeout_arg(timeout_ms)?;
        let now = now_arg(py, now_ms)?;
        let skus = typed::<u32>(skus, "skus", "uint32")?;
        let quantities = typed::<u32>(quantities, "quantities", "uint32")?;
        let order_offsets = order_offsets
            .map(|a| typed::<u32>(a, "order_offsets", "uint32"))
            .transpose()?;
        let buyers = buyers
            .map(|a| typed::<u64>(a, "buyers", "uint64"))
            .transpose()?;
        let regions = regions
            .map(|a| typed::<u32>(a, "regions", "uint32"))
            .transpose()?;
        let skus = slice(&skus, "skus")?;
        let quantities = slice(&quantities, "quantities")?;
        let offsets = order_offsets
            .as_ref()
            .map(|a| slice(a, "order_offsets"))
            .transpose()?;
        let buyers = buyers.as_ref().map(|a| slice(a, "buyers")).transpose()?;
        let regions = regions.as_ref().map(|a| slice(a, "regions")).transpose()?;
        let orders = BatchOrders {
            skus: &skus,
            quantities: &quantities,
            offsets: offsets.as_deref(),
            buyers: buyers.as_deref(),
            regions: regions.as_deref(),
        };
        let out = py
            .detach(|| self.inner.reserve_batch(&orders, policy, timeout, now))
            .map_err(|e| inventory_err(py, e))?;
        Ok(ReserveBatchResult {
            status: PyArray1::from_vec(py, out.status).unbind(),
            reservation: PyArray1::from_vec(py, out.reservation).unbind(),
            warehouse: PyArray1::from_vec(py, out.warehouse).unbind(),
            failed_item: PyArray1::from_vec(py, out.failed_item).unbind(),
        })
    }

    #[pyo3(signature = (reservation, quantities = None, *, now_ms = None))]
    fn confirm(
        &self,
        py: Python<'_>,
        reservation: &Bound<'_, PyAny>,
        quantities: Option<&Bound<'_, PyAny>>,
        now_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let id = self.reservation_arg(reservation)?;
        let now = now_arg(py, now_ms)?;
        let qs: Option<Vec<u32>> = match quantities {
            None => None,
            Some(q) if q.is_instance_of::<PyInt>() => Some(vec![confirm_quantity(q)?]),
            Some(q) => Some(
                q.try_iter()?
                    .map(|item| confirm_quantity(&item?))
                    .collect::<PyResult<_>>()?,
            ),
        };
        self.inner
            .confirm(id, qs.as_deref(), now)
            .map_err(|e| inventory_err(py, e))
    }

    #[pyo3(signature = (reservation, *, now_ms = None))]
    fn release(
        &self,
        py: Python<'_>,
        reservation: &Bound<'_, PyAny>,
        now_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let id = self.reservation_arg(reservation)?;
        let now = now_arg(py, now_ms)?;
        self.inner
            .release(id, now)
            .map_err(|e| inventory_err(py, e))
    }

    #[pyo3(signature = (reservations, *, now_ms = None))]
    fn confirm_batch<'py>(
        &self,
        py: Python<'py>,
        reservations: &Bound<'py, PyAny>,
        now_ms: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let now = now_arg(py, now_ms)?;
        let reservations = typed::<u64>(reservations, "reservations", "uint64")?;
        let ids = slice(&reservations, "reservations")?;
        Ok(PyArray1::from_vec(
            py,
            py.detach(|| self.inner.confirm_batch(&ids, now)),
        ))
    }

    #[pyo3(signature = (reservations, *, now_ms = None))]
    fn release_batch<'py>(
        &self,
        py: Python<'py>,
        reservations: &Bound<'py, PyAny>,
        now_ms: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let now = now_arg(py, now_ms)?;
        let reservations = typed::<u64>(reservations, "reservations", "uint64")?;
        let ids = slice(&reservations, "reservations")?;
        Ok(PyArray1::from_vec(
            py,
            py.detach(|| self.inner.release_batch(&ids, now)),
        ))
    }

    fn reservation(
        &self,
        py: Python<'_>,
        reservation: &Bound<'_, PyAny>,
    ) -> PyResult<ReservationInfo> {
        let id = self.reservation_arg(reservation)?;
        let r = self
            .inner
            .reservation(id)
            .map_err(|e| inventory_err(py, e))?;
        Ok(ReservationInfo {
            reservation: id,
            state: "pending",
            buyer: r.buyer,
            deadline_ms: r.deadline_ms,
            lines: r
                .lines
                .iter()
                .map(|l| (l.sku, l.warehouse, l.quantity))
                .collect(),
        })
    }

    fn reservation_state(
        &self,
        py: Python<'_>,
        reservation: &Bound<'_, PyAny>,
    ) -> PyResult<&'static str> {
        let id = self.reservation_arg(reservation)?;
        Ok(self
            .inner
            .reservation_state(id)
            .map_err(|e| inventory_err(py, e))?
            .as_str())
    }

    #[pyo3(signature = (now_ms = None, limit = None), text_signature = "($self, /, now_ms=None, limit=4096)")]
    fn expire_due<'py>(
        &self,
        py: Python<'py>,
        now_ms: Option<&Bound<'py, PyAny>>,
        limit: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let now = now_arg(py, now_ms)?;
        let limit = match limit {
            None => 4096,
            Some(l) => usize::try_from(u64_arg(py, l, "limit")?).unwrap_or(usize::MAX),
        };
        Ok(PyArray1::from_vec(
            py,
            py.detach(|| self.inner.expire_due(now, limit)),
        ))
    }

    fn next_deadline_ms(&self) -> Option<u64> {
        self.inner.next_deadline_ms()
    }

    fn prune_resolved(&self, py: Python<'_>, up_to: &Bound<'_, PyAny>) -> PyResult<usize> {
        let up_to = u64_arg(py, up_to, "up_to")?;
        Ok(self.inner.prune_resolved(up_to))
    }

    fn export_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let st = py.detach(|| self.inner.export_state());
        state_to_py(py, st)
    }

    fn check_invariants(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.check_invariants())
            .map_err(|e| inventory_err(py, e))
    }
}

impl Inventory {
    #[allow(clippy::too_many_arguments)]
    fn reserve_lines(
        &self,
        py: Python<'_>,
        skus: &[u32],
        quantities: &[u32],
        buyer: Option<&Bound<'_, PyAny>>,
        region: Option<&Bound<'_, PyAny>>,
        policy: MatchPolicy,
        timeout_ms: Option<&Bound<'_, PyAny>>,
        now_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let buyer = buyer
            .map(|b| u64_arg(py, b, "buyer"))
            .transpose()?
            .unwrap_or(0);
        let region = match region {
            None => None,
            Some(r) => Some(int(r).map(|v| u32::try_from(v).unwrap_or(u32::MAX))?),
        };
        let timeout = timeout_arg(timeout_ms)?;
        let now = now_arg(py, now_ms)?;
        self.inner
            .reserve(skus, quantities, buyer, region, policy, timeout, now)
            .map(|(id, _)| id)
            .map_err(|e| inventory_err(py, e))
    }

    fn reservation_arg(&self, reservation: &Bound<'_, PyAny>) -> PyResult<u64> {
        let v = int(reservation)?;
        u64::try_from(v).map_err(|_| {
            let err =
                UnknownReservationError::new_err(format!("unknown reservation {reservation}"));
            let _ = err
                .value(reservation.py())
                .setattr("reservation", reservation);
            err
        })
    }
}

fn confirm_quantity(obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    let v = int(obj)?;
    let v: i128 = v;
    u32::try_from(v).map_err(|_| {
        InvalidQuantityError::new_err(format!("a confirmed quantity must be >= 0, got {v}"))
    })
}

// --- state <-> numpy -----------------------------------------------------------------------

fn state_to_py(py: Python<'_>, st: InventoryState) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("sku_count", PyArray1::from_vec(py, vec![st.sku_count]))?;
    d.set_item(
        "warehouse_count",
        PyArray1::from_vec(py, vec![st.warehouse_count]),
    )?;
    d.set_item(
        "next_reservation_id",
        PyArray1::from_vec(py, vec![st.next_reservation_id]),
    )?;
    d.set_item("stock_sku", PyArray1::from_vec(py, st.stock_sku))?;
    d.set_item(
        "stock_warehouse",
        PyArray1::from_vec(py, st.stock_warehouse),
    )?;
    d.set_item("stock_on_hand", PyArray1::from_vec(py, st.stock_on_hand))?;
    d.set_item("stock_sold", PyArray1::from_vec(py, st.stock_sold))?;
    d.set_item("limit_sku", PyArray1::from_vec(py, st.limit_sku))?;
    d.set_item("limit_units", PyArray1::from_vec(py, st.limit_units))?;
    d.set_item("bought_sku", PyArray1::from_vec(py, st.bought_sku))?;
    d.set_item("bought_buyer", PyArray1::from_vec(py, st.bought_buyer))?;
    d.set_item("bought_units", PyArray1::from_vec(py, st.bought_units))?;
    d.set_item("region_id", PyArray1::from_vec(py, st.region_id))?;
    d.set_item("region_offsets", PyArray1::from_vec(py, st.region_offsets))?;
    d.set_item(
        "region_warehouses",
        PyArray1::from_vec(py, st.region_warehouses),
    )?;
    d.set_item("res_id", PyArray1::from_vec(py, st.res_id))?;
    d.set_item("res_buyer", PyArray1::from_vec(py, st.res_buyer))?;
    d.set_item(
        "res_deadline_ms",
        PyArray1::from_vec(py, st.res_deadline_ms),
    )?;
    d.set_item("res_offsets", PyArray1::from_vec(py, st.res_offsets))?;
    d.set_item("line_sku", PyArray1::from_vec(py, st.line_sku))?;
    d.set_item("line_warehouse", PyArray1::from_vec(py, st.line_warehouse))?;
    d.set_item("line_quantity", PyArray1::from_vec(py, st.line_quantity))?;
    d.set_item("line_counted", PyArray1::from_vec(py, st.line_counted))?;
    Ok(d)
}

fn array<T: Element + Copy>(state: &Bound<'_, PyMapping>, key: &str) -> PyResult<Vec<T>> {
    let py = state.py();
    let bad = |what: &str| {
        let message = format!(
            "state[{key:?}] {what} (a 1-D numpy array of {})",
            std::any::type_name::<T>()
        );
        inventory_err(py, CoreError::InvalidState { message })
    };
    let value = state.get_item(key).map_err(|_| bad("is missing"))?;
    let arr = value
        .cast::<PyArray1<T>>()
        .map_err(|_| bad("has the wrong type or dtype"))?;
    Ok(arr.readonly().as_array().to_vec())
}

fn scalar(state: &Bound<'_, PyMapping>, key: &str) -> PyResult<u64> {
    let v: Vec<u64> = array(state, key)?;
    if v.len() != 1 {
        let message = format!("state[{key:?}] must hold exactly one value");
        return Err(inventory_err(
            state.py(),
            CoreError::InvalidState { message },
        ));
    }
    Ok(v[0])
}

fn state_from_py(s: &Bound<'_, PyMapping>) -> PyResult<InventoryState> {
    Ok(InventoryState {
        sku_count: scalar(s, "sku_count")?,
        warehouse_count: scalar(s, "warehouse_count")?,
        next_reservation_id: scalar(s, "next_reservation_id")?,
        stock_sku: array(s, "stock_sku")?,
        stock_warehouse: array(s, "stock_warehouse")?,
        stock_on_hand: array(s, "stock_on_hand")?,
        stock_sold: array(s, "stock_sold")?,
        limit_sku: array(s, "limit_sku")?,
        limit_units: array(s, "limit_units")?,
        bought_sku: array(s, "bought_sku")?,
        bought_buyer: array(s, "bought_buyer")?,
        bought_units: array(s, "bought_units")?,
        region_id: array(s, "region_id")?,
        region_offsets: array(s, "region_offsets")?,
        region_warehouses: array(s, "region_warehouses")?,
        res_id: array(s, "res_id")?,
        res_buyer: array(s, "res_buyer")?,
        res_deadline_ms: array(s, "res_deadline_ms")?,
        res_offsets: array(s, "res_offsets")?,
        line_sku: array(s, "line_sku")?,
        line_warehouse: array(s, "line_warehouse")?,
        line_quantity: array(s, "line_quantity")?,
        line_counted: if s.contains("line_counted")? {
            array(s, "line_counted")?
        } else {
            Vec::new()
        },
    })
}
