//! The one place where core errors become Python exceptions.
//!
//! Every inventory exception subclasses `InventoryError(ValueError)`; ID errors subclass
//! `OrderIdError(RuntimeError)`; risk-model errors are `RiskModelError(ValueError)`. Attributes
//! (`sku`, `state`, ...) are set on the instance so callers can act on them without parsing
//! messages.

use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::ids::IdError;
use crate::inventory::InventoryError as CoreError;
use crate::model::ModelError;

create_exception!(_core, InventoryError, PyValueError);
create_exception!(_core, UnknownSkuError, InventoryError);
create_exception!(_core, UnknownWarehouseError, InventoryError);
create_exception!(_core, UnknownRegionError, InventoryError);
create_exception!(_core, InvalidQuantityError, InventoryError);
create_exception!(_core, DuplicateSkuError, InventoryError);
create_exception!(_core, OutOfStockError, InventoryError);
create_exception!(_core, PurchaseLimitError, InventoryError);
create_exception!(_core, UnknownReservationError, InventoryError);
create_exception!(_core, ReservationResolvedError, InventoryError);
create_exception!(_core, InvalidInventoryStateError, InventoryError);
create_exception!(_core, OrderIdError, PyRuntimeError);
create_exception!(_core, ClockMovedBackwardsError, OrderIdError);
create_exception!(_core, RiskModelError, PyValueError);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("InventoryError", py.get_type::<InventoryError>())?;
    m.add("UnknownSkuError", py.get_type::<UnknownSkuError>())?;
    m.add(
        "UnknownWarehouseError",
        py.get_type::<UnknownWarehouseError>(),
    )?;
    m.add("UnknownRegionError", py.get_type::<UnknownRegionError>())?;
    m.add(
        "InvalidQuantityError",
        py.get_type::<InvalidQuantityError>(),
    )?;
    m.add("DuplicateSkuError", py.get_type::<DuplicateSkuError>())?;
    m.add("OutOfStockError", py.get_type::<OutOfStockError>())?;
    m.add("PurchaseLimitError", py.get_type::<PurchaseLimitError>())?;
    m.add(
        "UnknownReservationError",
        py.get_type::<UnknownReservationError>(),
    )?;
    m.add(
        "ReservationResolvedError",
        py.get_type::<ReservationResolvedError>(),
    )?;
    m.add(
        "InvalidInventoryStateError",
        py.get_type::<InvalidInventoryStateError>(),
    )?;
    m.add("OrderIdError", py.get_type::<OrderIdError>())?;
    m.add(
        "ClockMovedBackwardsError",
        py.get_type::<ClockMovedBackwardsError>(),
    )?;
    m.add("RiskModelError", py.get_type::<RiskModelError>())?;
    // Show them as `pyorder._core.X`, where they live, rather than the macro's `_core.X`.
    for name in [
        "InventoryError",
        "UnknownSkuError",
        "UnknownWarehouseError",
        "UnknownRegionError",
        "InvalidQuantityError",
        "DuplicateSkuError",
        "OutOfStockError",
        "PurchaseLimitError",
        "UnknownReservationError",
        "ReservationResolvedError",
        "InvalidInventoryStateError",
        "OrderIdError",
        "ClockMovedBackwardsError",
        "RiskModelError",
    ] {
        m.getattr(name)?.setattr("__module__", "pyorder._core")?;
    }
    Ok(())
}

/// Build `exc(message)` and set `attrs` on the instance.
fn with_attrs(py: Python<'_>, err: PyErr, attrs: &[(&str, Py<PyAny>)]) -> PyErr {
    let value = err.value(py);
    for (name, v) in attrs {
        // Setting an attribute on a fresh exception instance cannot fail in practice; if it
        // did, the message still says everything.
        let _ = value.setattr(*name, v.bind(py));
    }
    err
}

pub(crate) fn inventory_err(py: Python<'_>, e: CoreError) -> PyErr {
    let msg = e.to_string();
    match e {
        CoreError::UnknownSku { sku } => with_attrs(
            py,
            UnknownSkuError::new_err(msg),
            &[("sku", sku.into_pyobject(py).unwrap().into_any().unbind())],
        ),
        CoreError::UnknownWarehouse { warehouse } => with_attrs(
            py,
            UnknownWarehouseError::new_err(msg),
            &[(
                "warehouse",
                warehouse.into_pyobject(py).unwrap().into_any().unbind(),
            )],
        ),
        CoreError::UnknownRegion { region } => with_attrs(
            py,
            UnknownRegionError::new_err(msg),
            &[(
                "region",
                region.into_pyobject(py).unwrap().into_any().unbind(),
            )],
        ),
        CoreError::InvalidQuantity { .. } => InvalidQuantityError::new_err(msg),
        CoreError::DuplicateSku { sku } => with_attrs(
            py,
            DuplicateSkuError::new_err(msg),
            &[("sku", sku.into_pyobject(py).unwrap().into_any().unbind())],
        ),
        CoreError::OutOfStock { sku } => with_attrs(
            py,
            OutOfStockError::new_err(msg),
            &[("sku", sku.into_pyobject(py).unwrap().into_any().unbind())],
        ),
        CoreError::PurchaseLimit { sku, limit, .. } => with_attrs(
            py,
            PurchaseLimitError::new_err(msg),
            &[
                ("sku", sku.into_pyobject(py).unwrap().into_any().unbind()),
                (
                    "limit",
                    limit.into_pyobject(py).unwrap().into_any().unbind(),
                ),
            ],
        ),
        CoreError::UnknownReservation { reservation } => with_attrs(
            py,
            UnknownReservationError::new_err(msg),
            &[(
                "reservation",
                reservation.into_pyobject(py).unwrap().into_any().unbind(),
            )],
        ),
        CoreError::AlreadyResolved { reservation, state } => with_attrs(
            py,
            ReservationResolvedError::new_err(msg),
            &[
                (
                    "reservation",
                    reservation.into_pyobject(py).unwrap().into_any().unbind(),
                ),
                (
                    "state",
                    state
                        .as_str()
                        .into_pyobject(py)
                        .unwrap()
                        .into_any()
                        .unbind(),
                ),
            ],
        ),
        CoreError::InvalidState { .. } => InvalidInventoryStateError::new_err(msg),
        CoreError::InvalidArgument { .. } => InventoryError::new_err(msg),
    }
}

pub(crate) fn id_err(py: Python<'_>, e: IdError) -> PyErr {
    let msg = e.to_string();
    match e {
        IdError::ClockMovedBackwards { behind_ms } => with_attrs(
            py,
            ClockMovedBackwardsError::new_err(msg),
            &[(
                "behind_ms",
                behind_ms.into_pyobject(py).unwrap().into_any().unbind(),
            )],
        ),
        IdError::InvalidConfig { .. } | IdError::InvalidId { .. } => PyValueError::new_err(msg),
        _ => OrderIdError::new_err(msg),
    }
}

/// A model that cannot be loaded (malformed or unsupported) or a row it cannot score.
pub(crate) fn model_err(e: ModelError) -> PyErr {
    RiskModelError::new_err(e.to_string())
}
