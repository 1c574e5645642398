//! Bindings of the risk tracker (`crate::risk`): `RiskTracker` and `RISK_FEATURE_NAMES`.
//!
//! Events come in as any objects with the fields of `pyorder.risk.events.OrderAttempt` and
//! `PaymentAttempt` (read by attribute), and, for a replay, as columns (numpy arrays for the
//! fields every event has, sequences with `None` for the optional ones; `pyorder.risk.features`
//! builds both).

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping, PyString};

use crate::risk::{
    key_hash, Features, Limits, OrderEvent, PaymentEvent, RiskTracker as Tracker, DECIDED_BY_CODES,
    FEATURE_COUNT, FEATURE_NAMES, KINDS,
};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RiskTracker>()?;
    m.add("RISK_FEATURE_NAMES", FEATURE_NAMES.to_vec())?;
    m.add("RISK_KINDS", KINDS.to_vec())?;
    m.add("RISK_DECIDED_BY_CODES", DECIDED_BY_CODES.to_vec())?;
    Ok(())
}

// --- one event, by attribute ---------------------------------------------------------------

fn int(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<i64> {
    obj.getattr(name)?.extract::<i64>()
}

fn opt_int(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<i64>> {
    let v = obj.getattr(name)?;
    if v.is_none() {
        Ok(None)
    } else {
        v.extract::<i64>().map(Some)
    }
}

/// A string field as its key, `None` as missing.
fn opt_key(v: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<u64>> {
    if v.is_none() {
        return Ok(None);
    }
    let s = v
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a str or None")))?;
    Ok(Some(key_hash(s.to_str()?)))
}

fn attr_key(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<u64>> {
    opt_key(&obj.getattr(name)?, name)
}

fn agent(value: i64) -> PyResult<u8> {
    u8::try_from(value)
        .ok()
        .filter(|a| *a <= 3)
        .ok_or_else(|| PyValueError::new_err(format!("agent must be 0 to 3, got {value}")))
}

fn order_event(o: &Bound<'_, PyAny>) -> PyResult<OrderEvent> {
    Ok(OrderEvent {
        at_ms: int(o, "at_ms")?,
        // Ids are ints of Python: the bits of an i64 (a negative id is still one id).
        buyer: int(o, "buyer")? as u64,
        account_created_ms: opt_int(o, "account_created_ms")?,
        amount: int(o, "amount")?,
        sku: int(o, "sku")? as u64,
        quantity: int(o, "quantity")?,
        sku_release_ms: opt_int(o, "sku_release_ms")?,
        device: attr_key(o, "device")?,
        ip: attr_key(o, "ip")?,
        ip_region: attr_key(o, "ip_region")?,
        email: attr_key(o, "email_hash")?,
        phone: attr_key(o, "phone_hash")?,
        agent: agent(int(o, "agent")?)?,
        address: attr_key(o, "address")?,
        ship_region: attr_key(o, "ship_region")?,
    })
}

fn payment_event(p: &Bound<'_, PyAny>) -> PyResult<PaymentEvent> {
    let instrument = p.getattr("instrument")?;
    let instrument = opt_key(&instrument, "instrument")?
        .ok_or_else(|| PyTypeError::new_err("instrument must be a str"))?;
    Ok(PaymentEvent {
        at_ms: int(p, "at_ms")?,
        buyer: int(p, "buyer")? as u64,
        amount: int(p, "amount")?,
        instrument,
        authorised: p.getattr("authorised")?.extract::<bool>()?,
        device: attr_key(p, "device")?,
        ip: attr_key(p, "ip")?,
    })
}

// --- columns -------------------------------------------------------------------------------

/// A column of numbers: a 1-D numpy array of `T`, `n` long.
fn numbers<'py, T: numpy::Element + Copy>(
    cols: &Bound<'py, PyAny>,
    name: &str,
    dtype: &str,
    n: Option<usize>,
) -> PyResult<Vec<T>> {
    let obj = cols.getattr(name)?;
    let arr: PyReadonlyArray1<'py, T> = obj
        .cast::<PyArray1<T>>()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a 1-D numpy array of {dtype}")))?
        .readonly();
    let values: Vec<T> = arr.as_array().iter().copied().collect();
    if let Some(n) = n {
        if values.len() != n {
            let got = values.len();
            return Err(PyValueError::new_err(format!(
                "{name} has {got} items, not {n}"
            )));
        }
    }
    Ok(values)
}

/// A column of `n` items, each converted by `item` (`None` included).
fn items<T>(
    cols: &Bound<'_, PyAny>,
    name: &str,
    n: usize,
    mut item: impl FnMut(&Bound<'_, PyAny>) -> PyResult<T>,
) -> PyResult<Vec<T>> {
    let mut out = Vec::with_capacity(n);
    for v in cols.getattr(name)?.try_iter()? {
        out.push(item(&v?)?);
    }
    if out.len() != n {
        let got = out.len();
        return Err(PyValueError::new_err(format!(
            "{name} has {got} items, not {n}"
        )));
    }
    Ok(out)
}

fn key_column(cols: &Bound<'_, PyAny>, name: &str, n: usize) -> PyResult<Vec<Option<u64>>> {
    items(cols, name, n, |v| opt_key(v, name))
}

fn order_columns(cols: &Bound<'_, PyAny>) -> PyResult<Vec<OrderEvent>> {
    let at_ms = numbers::<i64>(cols, "at_ms", "int64", None)?;
    let n = Some(at_ms.len());
    let buyer = numbers::<i64>(cols, "buyer", "int64", n)?;
    let created = numbers::<i64>(cols, "account_created_ms", "int64", n)?;
    let amount = numbers::<i64>(cols, "amount", "int64", n)?;
    let sku = numbers::<i64>(cols, "sku", "int64", n)?;
    let quantity = numbers::<i64>(cols, "quantity", "int64", n)?;
    let agents = numbers::<i64>(cols, "agent", "int64", n)?;
    let n = at_ms.len();
    let release = items(cols, "sku_release_ms", n, |v| {
        if v.is_none() {
            Ok(None)
        } else {
            v.extract::<i64>().map(Some)
        }
    })?;
    let device = key_column(cols, "device", n)?;
    let ip = key_column(cols, "ip", n)?;
    let ip_region = key_column(cols, "ip_region", n)?;
    let email = key_column(cols, "email_hash", n)?;
    let phone = key_column(cols, "phone_hash", n)?;
    let address = key_column(cols, "address", n)?;
    let ship_region = key_column(cols, "ship_region", n)?;
    (0..n)
        .map(|i| {
            Ok(OrderEvent {
                at_ms: at_ms[i],
                buyer: buyer[i] as u64,
                account_created_ms: Some(created[i]),
                amount: amount[i],
                sku: sku[i] as u64,
                quantity: quantity[i],
                sku_release_ms: release[i],
                device: device[i],
                ip: ip[i],
                ip_region: ip_region[i],
                email: email[i],
                phone: phone[i],
                agent: agent(agents[i])?,
                address: address[i],
                ship_region: ship_region[i],
            })
        })
        .collect()
}

fn payment_columns(cols: &Bound<'_, PyAny>) -> PyResult<(Vec<PaymentEvent>, Vec<i64>)> {
    let at_ms = numbers::<i64>(cols, "at_ms", "int64", None)?;
    let n = Some(at_ms.len());
    let buyer = numbers::<i64>(cols, "buyer", "int64", n)?;
    let amount = numbers::<i64>(cols, "amount", "int64", n)?;
    let authorised = numbers::<bool>(cols, "authorised", "bool", n)?;
    let order = numbers::<i64>(cols, "order", "int64", n)?;
    let n = at_ms.len();
    let instrument = items(cols, "instrument", n, |v| {
        opt_key(v, "instrument")?.ok_or_else(|| PyTypeError::new_err("instrument must be a str"))
    })?;
    let device = key_column(cols, "device", n)?;
    let ip = key_column(cols, "ip", n)?;
    let payments = (0..n)
        .map(|i| PaymentEvent {
            at_ms: at_ms[i],
            buyer: buyer[i] as u64,
            amount: amount[i],
            instrument: instrument[i],
            authorised: authorised[i],
            device: device[i],
            ip: ip[i],
        })
        .collect();
    Ok((payments, order))
}

/// Feature rows as a float64 numpy matrix.
type Matrix<'py> = Bound<'py, PyArray2<f64>>;

fn matrix<'py>(py: Python<'py>, rows: Vec<Features>) -> PyResult<Matrix<'py>> {
    let n = rows.len();
    let flat: Vec<f64> = rows.into_iter().flatten().collect();
    PyArray1::from_vec(py, flat).reshape([n, FEATURE_COUNT])
}

fn vector<'py>(py: Python<'py>, f: &Features) -> Bound<'py, PyArray1<f64>> {
    PyArray1::from_slice(py, f)
}

// --- the class -------------------------------------------------------------------------------

/// Velocity features of orders and payments in bounded memory (`pyorder.risk.features`).
#[pyclass(frozen, module = "pyorder._core")]
pub(crate) struct RiskTracker {
    inner: Mutex<Tracker>,
}

#[pymethods]
impl RiskTracker {
    #[new]
    #[pyo3(signature = (max_keys=1_000_000, *, limits=None))]
    fn new(max_keys: usize, limits: Option<&Bound<'_, PyMapping>>) -> PyResult<Self> {
        if max_keys == 0 {
            return Err(PyValueError::new_err("max_keys must be at least 1"));
        }
        let mut per_kind = [max_keys; 9];
        if let Some(limits) = limits {
            for (kind, limit) in limits.items()?.extract::<Vec<(String, usize)>>()? {
                let Some(i) = KINDS.iter().position(|k| *k == kind) else {
                    let known = KINDS.join(", ");
                    return Err(PyValueError::new_err(format!(
                        "unknown kind {kind:?} (one of {known})"
                    )));
                };
                if limit == 0 {
                    return Err(PyValueError::new_err(format!("{kind}: at least 1 key")));
                }
                per_kind[i] = limit;
            }
        }
        Ok(Self {
            inner: Mutex::new(Tracker::new(Limits(per_kind))),
        })
    }

    /// The order's features (40 floats, NaN when missing) before it is counted; not counted.
    fn order_features<'py>(
        &self,
        py: Python<'py>,
        order: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let o = order_event(order)?;
        Ok(vector(py, &self.inner.lock().order_features(&o)))
    }

    /// Counts the order.
    fn observe_order(&self, order: &Bound<'_, PyAny>) -> PyResult<()> {
        let o = order_event(order)?;
        self.inner.lock().observe_order(&o);
        Ok(())
    }

    /// The order's features before it is counted, and counts it (one pass).
    fn score_and_observe_order<'py>(
        &self,
        py: Python<'py>,
        order: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let o = order_event(order)?;
        Ok(vector(py, &self.inner.lock().score_and_observe_order(&o)))
    }

    /// The features for scoring a payment of `order`, before the payment is counted.
    fn payment_features<'py>(
        &self,
        py: Python<'py>,
        order: &Bound<'py, PyAny>,
        payment: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let (o, p) = (order_event(order)?, payment_event(payment)?);
        Ok(vector(py, &self.inner.lock().payment_features(&o, &p)))
    }

    /// Counts the payment attempt.
    fn observe_payment(&self, payment: &Bound<'_, PyAny>) -> PyResult<()> {
        let p = payment_event(payment)?;
        self.inner.lock().observe_payment(&p);
        Ok(())
    }

    /// The payment's features, then counts it.
    fn score_and_observe_payment<'py>(
        &self,
        py: Python<'py>,
        order: &Bound<'py, PyAny>,
        payment: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let (o, p) = (order_event(order)?, payment_event(payment)?);
        Ok(vector(
            py,
            &self.inner.lock().score_and_observe_payment(&o, &p),
        ))
    }

    /// Replays orders and payments (columns, each in time order; at equal times orders first)
    /// and returns each order's features, an (orders x 40) float64 matrix.
    fn replay<'py>(
        &self,
        py: Python<'py>,
        orders: &Bound<'py, PyAny>,
        payments: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let o = order_columns(orders)?;
        let (p, _) = payment_columns(payments)?;
        let mut guard = self.inner.lock();
        let tracker: &mut Tracker = &mut guard;
        let (rows, _) = py
            .detach(|| tracker.replay(&o, &p, None))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        matrix(py, rows)
    }

    /// [`replay`], and each payment's features too (its `order` column names the order it
    /// pays): (orders x 40, payments x 40).
    fn replay_payments<'py>(
        &self,
        py: Python<'py>,
        orders: &Bound<'py, PyAny>,
        payments: &Bound<'py, PyAny>,
    ) -> PyResult<(Matrix<'py>, Matrix<'py>)> {
        let o = order_columns(orders)?;
        let (p, paid) = payment_columns(payments)?;
        let mut guard = self.inner.lock();
        let tracker: &mut Tracker = &mut guard;
        let (rows, payment_rows) = py
            .detach(|| tracker.replay(&o, &p, Some(&paid)))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok((matrix(py, rows)?, matrix(py, payment_rows)?))
    }

    /// Drops every key idle longer than a day (the sweep does this as keys arrive).
    fn sweep(&self) {
        self.inner.lock().sweep();
    }

    /// Per kind: keys tracked, expired, evicted, and bytes held.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.inner.lock().stats();
        let out = PyDict::new(py);
        for (kind, s) in KINDS.iter().zip(stats) {
            let d = PyDict::new(py);
            d.set_item("keys", s.keys)?;
            d.set_item("expired", s.expired)?;
            d.set_item("evicted", s.evicted)?;
            d.set_item("bytes", s.bytes)?;
            out.set_item(*kind, d)?;
        }
        Ok(out)
    }
}
