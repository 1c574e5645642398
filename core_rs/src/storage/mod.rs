//! Writing the orders the Rust intake took (`crate::orders::rows::OrderRows`) to the stores,
//! with no Python object per order.
//!
//! - `sqlite`: the embedded store's writer, one SQLite connection that runs a whole write batch
//!   as one transaction (cached prepared statements), callable without the GIL.
//! - `pgcopy`: the rows in PostgreSQL's binary COPY format, for `COPY ... FROM STDIN`.
//!
//! Both write the columns in the order of `ORDER_COLUMNS` and `LINE_COLUMNS`, which are those
//! of `pyorder/storage/codec.py` (a Python test checks that they agree).

pub mod pgarray;
pub mod pgcopy;
pub mod sqlite;

/// Columns of `orders`, in the order the writers produce them (`codec.ORDER_COLUMN_NAMES`, then
/// `risk_packed`: risk control's decision of an allowed order, which only the core writes).
pub const ORDER_COLUMNS: [&str; 12] = [
    "id",
    "buyer",
    "status",
    "currency",
    "total",
    "region",
    "address",
    "reservation",
    "created_ms",
    "deadline_ms",
    "updated_ms",
    "risk_packed",
];

/// Columns of `order_lines`, in the order the writers produce them (`codec.LINE_COLUMN_NAMES`).
pub const LINE_COLUMNS: [&str; 7] = [
    "order_id",
    "line_no",
    "sku",
    "warehouse",
    "quantity",
    "unit_price",
    "merchant",
];

/// Columns of `risk_decisions` the writers produce, in order (`codec.DECISION_COLUMN_NAMES`);
/// the table's review columns follow them, written later.
pub const DECISION_COLUMNS: [&str; 12] = [
    "id",
    "buyer",
    "merchant",
    "at_ms",
    "outcome",
    "three_ds",
    "score",
    "model",
    "decided_by",
    "fired",
    "reasons",
    "features",
];
