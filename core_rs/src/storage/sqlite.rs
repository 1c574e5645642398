//! The embedded store's writer: one SQLite connection, owned here, that writes a whole batch in
//! one `BEGIN IMMEDIATE ... COMMIT` with no Python in between.
//!
//! `Writer::commit` runs, in one transaction: the `before` statement groups (catalogue, stock
//! rows and deltas, orders built in Python), then the new orders of an `OrderRows` through two
//! cached prepared statements (`orders`, then `order_lines`), then the `after` groups (status
//! changes, idempotency records, the batch token). A group is one SQL statement run once per
//! parameter row, like `sqlite3.executemany`; it may name the total number of rows it must
//! change, and any other count fails the batch. Any failure rolls the whole transaction back.
//!
//! The connection is opened as `pyorder/storage/sqlite.py` opens its own (`_connect`): WAL
//! journal, `synchronous=FULL` (durable at COMMIT), `foreign_keys=ON`, a busy timeout.
//!
//! Linking: this uses the system `libsqlite3` (rusqlite without its `bundled` feature), the same
//! shared library that Python's `_sqlite3` module loads, so that the process holds ONE copy of
//! SQLite. SQLite keeps its POSIX advisory locks in per-process, per-library bookkeeping; with
//! two copies in one process, closing the database file in one copy releases the locks the
//! other copy holds on it, and another connection can then write over a transaction in flight:
//! a corrupt database (sqlite.org, "How To Corrupt An SQLite Database File", section 2.2.1).
//! `library_path` tells which file provides SQLite, for a test to check.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OpenFlags};

use crate::model::ModelVersion;
use crate::orders::rows::{NewLine, OrderRows};

/// Busy timeout of `Writer::open` unless told otherwise (the same as the Python connections').
pub const DEFAULT_BUSY_TIMEOUT_MS: u32 = 10_000;

/// Prepared statements kept per connection (Python's `cached_statements` of the old writer).
const STATEMENT_CACHE: usize = 64;

/// Columns of an `orders` row as written here (`super::ORDER_COLUMNS`).
const ORDER_INSERT: &str = "INSERT INTO orders (id, buyer, status, currency, total, region, \
     address, reservation, created_ms, deadline_ms, updated_ms, risk_packed) VALUES ";
const ORDER_PARAMS: usize = 12;

/// Columns of an `order_lines` row as written here (`super::LINE_COLUMNS`).
const LINE_INSERT: &str = "INSERT INTO order_lines (order_id, line_no, sku, warehouse, \
     quantity, unit_price, merchant) VALUES ";
const LINE_PARAMS: usize = 7;

/// Columns of a `risk_decisions` row as written here (`super::DECISION_COLUMNS`).
const DECISION_INSERT: &str = "INSERT INTO risk_decisions (id, buyer, merchant, at_ms, outcome, \
     three_ds, score, model, decided_by, fired, reasons, features) VALUES ";
const DECISION_PARAMS: usize = 12;

/// Rows per INSERT statement when placed orders are written, largest first. One statement
/// keeps its cursors on the table and on each index open from row to row, so every row after
/// the first is appended at the leaf the previous one went to, where a statement per row
/// descends each B-tree from its root and opens and closes its cursors again. A few fixed
/// sizes (a group commit of single orders holds ~10) keep three statements per table cached,
/// not one per count.
const CHUNK_ROWS: [usize; 3] = [32, 8, 1];

/// `INSERT ... VALUES (?, ...), ...` of `rows` rows of `params` parameters.
fn multi_row_insert(head: &str, params: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; params].join(", "));
    format!("{head}{}", vec![one; rows].join(", "))
}

type Statements = [OnceLock<String>; CHUNK_ROWS.len()];
static ORDER_SQL: Statements = [const { OnceLock::new() }; CHUNK_ROWS.len()];
static LINE_SQL: Statements = [const { OnceLock::new() }; CHUNK_ROWS.len()];
static DECISION_SQL: Statements = [const { OnceLock::new() }; CHUNK_ROWS.len()];

/// The statement for a chunk of `rows` rows, one of `CHUNK_ROWS`.
fn insert_sql(cache: &'static Statements, head: &str, params: usize, rows: usize) -> &'static str {
    let slot = CHUNK_ROWS
        .iter()
        .position(|&n| n == rows)
        .unwrap_or(CHUNK_ROWS.len() - 1);
    cache[slot].get_or_init(|| multi_row_insert(head, params, CHUNK_ROWS[slot]))
}

/// `items` cut into chunks of the sizes of `CHUNK_ROWS`, largest first.
fn chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let n = *CHUNK_ROWS.iter().find(|&&n| n <= items.len())?;
        let (chunk, rest) = items.split_at(n);
        items = rest;
        Some(chunk)
    })
}

/// One statement of a batch and the parameter rows it runs with, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub sql: String,
    pub rows: Vec<Vec<Value>>,
    /// The total number of rows the statement must change over all its runs, if checked.
    pub expected: Option<u64>,
}

/// Why a write failed. The transaction it was in (if any) was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// Group `group` (counted over `before` then `after`) changed `actual` rows, not `expected`.
    #[error("{sql}: changed {actual} rows, expected {expected}")]
    RowCount {
        group: usize,
        sql: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0}")]
    Usage(String),
}

impl WriteError {
    /// SQLite's extended result code, when SQLite itself failed.
    pub fn sqlite_code(&self) -> Option<i32> {
        match self {
            WriteError::Sqlite { source, .. } => source.sqlite_extended_error_code(),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, WriteError>;

/// `context` for an error of `sql`: the statement's first words are enough to tell which.
fn stmt_context(sql: &str) -> String {
    const MAX: usize = 72;
    match sql.char_indices().nth(MAX) {
        Some((end, _)) => format!("{} ...", &sql[..end]),
        None => sql.to_owned(),
    }
}

fn at(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> WriteError {
    let context = context.into();
    move |source| WriteError::Sqlite { context, source }
}

/// Rolls back on drop unless disarmed: the transaction never outlives a failed (or panicking)
/// commit.
struct RollbackGuard<'c> {
    conn: &'c Connection,
    armed: bool,
}

impl Drop for RollbackGuard<'_> {
    fn drop(&mut self) {
        if self.armed && !self.conn.is_autocommit() {
            // If even ROLLBACK fails the connection is broken; the transaction did not commit.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// The store's single writing connection.
#[derive(Debug)]
pub struct Writer {
    conn: Connection,
}

impl Writer {
    /// Open (creating if missing) the database file at `path` in WAL mode, `synchronous=FULL`,
    /// `foreign_keys=ON`, waiting up to `busy_timeout_ms` for another connection's lock.
    pub fn open(path: &Path, busy_timeout_ms: u32) -> Result<Self> {
        let context = format!("{}: cannot open", path.display());
        // No SQLITE_OPEN_URI: a path is a path, as for Python's sqlite3.connect(uri=False).
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(at(&context))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.busy_timeout(Duration::from_millis(u64::from(busy_timeout_ms)))
            .map_err(at(&context))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(at(&context))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(WriteError::Usage(format!(
                "{}: cannot use WAL journal mode (got {mode:?})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(at(&context))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(at(&context))?;
        Ok(Self { conn })
    }

    /// Whether a transaction is open (one begun by `execute("BEGIN ...")`).
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Write one batch in one `BEGIN IMMEDIATE ... COMMIT`: `before`, then `placed` (orders
    /// and their lines, status `pending_payment`, `updated_ms = created_ms`, `line_no` = the
    /// line's index), then `after`. Returns the rows each group changed (`before` then
    /// `after`). On any error, nothing is written.
    pub fn commit(
        &mut self,
        before: &[Group],
        placed: Option<&OrderRows>,
        after: &[Group],
    ) -> Result<Vec<u64>> {
        if self.in_transaction() {
            return Err(WriteError::Usage(
                "commit: a transaction is already open on the writer".to_owned(),
            ));
        }
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(at("BEGIN IMMEDIATE"))?;
        let mut guard = RollbackGuard {
            conn: &self.conn,
            armed: true,
        };
        let mut counts = Vec::with_capacity(before.len() + after.len());
        for group in before {
            counts.push(run_group(guard.conn, group, counts.len())?);
        }
        if let Some(rows) = placed {
            insert_orders(guard.conn, rows)?;
        }
        for group in after {
            counts.push(run_group(guard.conn, group, counts.len())?);
        }
        guard.conn.execute_batch("COMMIT").map_err(at("COMMIT"))?;
        guard.armed = false;
        Ok(counts)
    }

    /// Run one statement outside `commit` (migrations: `BEGIN IMMEDIATE`, DDL, `COMMIT`);
    /// returns the rows it changed. A statement that returns rows is refused.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(at(stmt_context(sql)))?;
        let n = stmt
            .execute(params_from_iter(params.iter()))
            .map_err(at(stmt_context(sql)))?;
        Ok(n as u64)
    }

    /// The first row of a query, or `None` when it returns none.
    pub fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Option<Vec<Value>>> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(at(stmt_context(sql)))?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(params_from_iter(params.iter()))
            .map_err(at(stmt_context(sql)))?;
        let Some(row) = rows.next().map_err(at(stmt_context(sql)))? else {
            return Ok(None);
        };
        (0..width)
            .map(|i| row.get::<_, Value>(i))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map(Some)
            .map_err(at(stmt_context(sql)))
    }

    /// Roll back the open transaction, if there is one.
    pub fn rollback(&mut self) -> Result<()> {
        if self.in_transaction() {
            self.conn
                .execute_batch("ROLLBACK")
                .map_err(at("ROLLBACK"))?;
        }
        Ok(())
    }

    /// Close the connection (the last connection to close checkpoints the WAL).
    pub fn close(self) -> Result<()> {
        self.conn.close().map_err(|(_, e)| at("close")(e))
    }
}

/// Run `group` once per parameter row; returns the rows changed over all runs.
fn run_group(conn: &Connection, group: &Group, index: usize) -> Result<u64> {
    let mut stmt = conn
        .prepare_cached(&group.sql)
        .map_err(at(stmt_context(&group.sql)))?;
    let mut changed = 0u64;
    for row in &group.rows {
        changed += stmt
            .execute(params_from_iter(row.iter()))
            .map_err(at(stmt_context(&group.sql)))? as u64;
    }
    match group.expected {
        Some(expected) if expected != changed => Err(WriteError::RowCount {
            group: index,
            sql: group.sql.clone(),
            expected,
            actual: changed,
        }),
        _ => Ok(changed),
    }
}

/// The `orders`, `order_lines` and `risk_decisions` rows of `rows`, in the caller's transaction, up to
/// `CHUNK_ROWS` rows per statement.
fn insert_orders(conn: &Connection, rows: &OrderRows) -> Result<()> {
    let orders = (ORDER_INSERT, ORDER_PARAMS, &ORDER_SQL);
    insert_rows(
        conn,
        "orders",
        orders,
        &rows.orders,
        |o| o.id,
        |o, bind| {
            bind(&o.id)?;
            bind(&&*o.buyer)?;
            bind(&o.status)?;
            bind(&o.currency_str())?;
            bind(&o.total)?;
            bind(&&*o.region)?;
            bind(&&*o.address)?;
            bind(&o.reservation)?;
            bind(&o.created_ms)?;
            bind(&o.deadline_ms)?;
            bind(&o.created_ms)?;
            bind(&o.risk_packed())
        },
    )?;
    let lines: Vec<(i64, usize, &NewLine)> = rows
        .orders
        .iter()
        .flat_map(|o| o.lines.iter().enumerate().map(move |(n, l)| (o.id, n, l)))
        .collect();
    let table = (LINE_INSERT, LINE_PARAMS, &LINE_SQL);
    insert_rows(
        conn,
        "order_lines",
        table,
        &lines,
        |l| l.0,
        |&(order, n, l), bind| {
            bind(&order)?;
            bind(&(n as i64))?;
            bind(&l.sku)?;
            bind(&l.warehouse)?;
            bind(&l.quantity)?;
            bind(&l.unit_price)?;
            bind(&&*l.merchant)
        },
    )?;
    let table = (DECISION_INSERT, DECISION_PARAMS, &DECISION_SQL);
    insert_rows(
        conn,
        "risk_decisions",
        table,
        &rows.decisions,
        |d| d.id,
        |d, bind| {
            bind(&d.id)?;
            bind(&&*d.buyer)?;
            bind(&&*d.merchant)?;
            bind(&d.at_ms)?;
            bind(&d.outcome.as_str())?;
            bind(&i64::from(d.risk.three_ds))?;
            bind(&d.risk.score.map(i64::from))?;
            bind(&d.risk.model.as_ref().map(ModelVersion::as_str))?;
            bind(&&*d.risk.decided_by_text())?;
            bind(&&*d.risk.fired_json())?;
            bind(&&*d.risk.reasons_json())?;
            bind(&d.features_json())
        },
    )
}

/// Binds the next parameter of a statement.
type Bind<'a> = dyn FnMut(&dyn rusqlite::ToSql) -> rusqlite::Result<()> + 'a;

/// `rows` into `table` by chunks of `CHUNK_ROWS` (statement head, parameters per row and cached
/// statements in `sql`), `bind_row` binding one row's parameters in order; errors name the
/// order (`order_of`) or the orders of the chunk.
fn insert_rows<T>(
    conn: &Connection,
    table: &str,
    (head, params, cache): (&str, usize, &'static Statements),
    rows: &[T],
    order_of: impl Fn(&T) -> i64,
    bind_row: impl Fn(&T, &mut Bind<'_>) -> rusqlite::Result<()>,
) -> Result<()> {
    let failed = |what: String| {
        move |source| WriteError::Sqlite {
            context: format!("INSERT INTO {table} ({what})"),
            source,
        }
    };
    for chunk in chunks(rows) {
        let sql = insert_sql(cache, head, params, chunk.len());
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(at(format!("INSERT INTO {table}")))?;
        let mut i = 0;
        let mut bind = |v: &dyn rusqlite::ToSql| {
            i += 1;
            stmt.raw_bind_parameter(i, v)
        };
        for row in chunk {
            bind_row(row, &mut bind).map_err(|e| failed(format!("order {}", order_of(row)))(e))?;
        }
        stmt.raw_execute().map_err(|e| {
            let (first, last) = (order_of(&chunk[0]), order_of(&chunk[chunk.len() - 1]));
            failed(match chunk.len() {
                1 => format!("order {first}"),
                _ => format!("orders {first} to {last}"),
            })(e)
        })?;
    }
    Ok(())
}

/// Turn off SQLite's memory-usage statistics for the whole process, before SQLite is first
/// initialised: with them on, every allocation SQLite makes takes and releases a global mutex
/// (`SQLITE_CONFIG_MEMSTATUS`, on by default), which the profile of the commit thread showed
/// as ~8 % of its samples, contended by Python's `sqlite3` readers. Nothing here reads the
/// statistics (`sqlite3_memory_used` reports 0 without them). Returns whether it took effect:
/// false when SQLite was already initialised (it refuses configuration then, and stays as it
/// was), e.g. when Python's `sqlite3` opened a connection before this module was imported.
pub fn configure_library() -> bool {
    // SAFETY: sqlite3_config is only unsafe in a process where another thread is initialising
    // SQLite at the same time; this runs while the extension module is imported, under the
    // GIL, before this crate opens any connection. Once SQLite is initialised it returns
    // SQLITE_MISUSE and changes nothing.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as libc::c_int)
    };
    rc == rusqlite::ffi::SQLITE_OK
}

/// The file that provides the SQLite this crate calls (found with `dladdr`): the system's
/// `libsqlite3.so.*`, or this library itself if SQLite were compiled in. `None` if unknown.
#[cfg(unix)]
pub fn library_path() -> Option<String> {
    let addr = rusqlite::ffi::sqlite3_libversion as *const libc::c_void;
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the address and fills `info`; dli_fname, when set, points to a
    // NUL-terminated path owned by the dynamic loader, valid while the object stays loaded
    // (this function's own code is in it or depends on it).
    unsafe {
        if libc::dladdr(addr, info.as_mut_ptr()) == 0 {
            return None;
        }
        let info = info.assume_init();
        if info.dli_fname.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

#[cfg(not(unix))]
pub fn library_path() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::orders::rows::{NewLine, NewOrder};

    /// The tables the writer touches, as migration 1 creates them (SQLite STRICT tables).
    const SCHEMA: &[&str] = &[
        "CREATE TABLE stock (sku INTEGER NOT NULL, warehouse INTEGER NOT NULL, \
         on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL, sold INTEGER NOT NULL, \
         PRIMARY KEY (sku, warehouse)) STRICT, WITHOUT ROWID",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, buyer TEXT NOT NULL, \
         status TEXT NOT NULL CHECK (status IN ('pending_payment', 'paid', 'cancelled', 'expired')), \
         currency TEXT NOT NULL, total INTEGER NOT NULL, region TEXT NOT NULL, \
         address TEXT NOT NULL, reservation INTEGER NOT NULL, created_ms INTEGER NOT NULL, \
         deadline_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, risk TEXT, \
         risk_packed BLOB) STRICT",
        "CREATE TABLE order_lines (order_id INTEGER NOT NULL REFERENCES orders(id), \
         line_no INTEGER NOT NULL, sku INTEGER NOT NULL, warehouse INTEGER NOT NULL, \
         quantity INTEGER NOT NULL, unit_price INTEGER NOT NULL, merchant TEXT NOT NULL, \
         PRIMARY KEY (order_id, line_no)) STRICT, WITHOUT ROWID",
        "CREATE TABLE intake_commits (token INTEGER PRIMARY KEY, committed_ms INTEGER NOT NULL) STRICT",
    ];

    /// A fresh database file, deleted (with its WAL files) on drop.
    struct TempDb(PathBuf);

    impl TempDb {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "pyorder-writer-test-{}-{}.sqlite3",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let db = TempDb(std::env::temp_dir().join(name));
            db.remove();
            db
        }

        fn remove(&self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = self.0.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }

        fn writer(&self) -> Writer {
            let mut w = Writer::open(&self.0, 1_000).unwrap();
            for stmt in SCHEMA {
                w.execute(stmt, &[]).unwrap();
            }
            w.execute("INSERT INTO stock VALUES (1, 0, 100, 0, 0)", &[])
                .unwrap();
            w
        }

        /// An independent connection, to see what was committed.
        fn read(&self, sql: &str) -> Vec<Vec<Value>> {
            let conn = Connection::open(&self.0).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            let width = stmt.column_count();
            stmt.query_map([], |r| (0..width).map(|i| r.get::<_, Value>(i)).collect())
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            self.remove();
        }
    }

    fn order(id: i64, lines: &[(u32, u32)]) -> Arc<NewOrder> {
        Arc::new(NewOrder {
            id,
            buyer: Arc::from(format!("buyer-{id}")),
            currency: *b"CNY",
            total: lines.iter().map(|&(_, q)| i64::from(q) * 250).sum(),
            region: Arc::from("east"),
            address: Box::from(r#"{"name":"王小明","city":"Beijing"}"#),
            reservation: id * 10,
            created_ms: 1_800_000_000_000 + id,
            deadline_ms: 1_800_000_900_000 + id,
            status: crate::orders::rows::PENDING_PAYMENT,
            risk: None,
            lines: lines
                .iter()
                .map(|&(sku, quantity)| NewLine {
                    sku,
                    warehouse: 0,
                    quantity,
                    unit_price: 250,
                    merchant: Arc::from("merchant:acme"),
                })
                .collect(),
        })
    }

    fn rows(orders: impl IntoIterator<Item = Arc<NewOrder>>) -> OrderRows {
        let mut r = OrderRows::default();
        for o in orders {
            r.push(o);
        }
        r
    }

    fn int(v: i64) -> Value {
        Value::Integer(v)
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn delta(reserved: i64, sku: i64, expected: Option<u64>) -> Group {
        Group {
            sql: "UPDATE stock SET reserved = reserved + ? WHERE sku = ? AND warehouse = 0"
                .to_owned(),
            rows: vec![vec![int(reserved), int(sku)]],
            expected,
        }
    }

    #[test]
    fn opens_in_wal_with_full_sync_and_foreign_keys() {
        let db = TempDb::new();
        let mut w = db.writer();
        let one = |w: &mut Writer, sql: &str| w.query_one(sql, &[]).unwrap().unwrap().remove(0);
        assert_eq!(one(&mut w, "PRAGMA journal_mode"), text("wal"));
        assert_eq!(one(&mut w, "PRAGMA synchronous"), int(2)); // FULL
        assert_eq!(one(&mut w, "PRAGMA foreign_keys"), int(1));
        assert_eq!(one(&mut w, "PRAGMA busy_timeout"), int(1_000));
        assert!(!w.in_transaction());
        w.close().unwrap();
    }

    #[test]
    fn commit_writes_groups_and_placed_rows_in_order() {
        let db = TempDb::new();
        let mut w = db.writer();
        let placed = rows([order(7, &[(1, 2), (1, 1)]), order(8, &[(1, 4)])]);
        let before = [delta(7, 1, Some(1))];
        // A status change of a placed order: it runs after the placed rows are in.
        let after = [
            Group {
                sql: "UPDATE orders SET status = ?, updated_ms = ? WHERE id = ? AND status = ?"
                    .to_owned(),
                rows: vec![vec![text("paid"), int(5), int(8), text("pending_payment")]],
                expected: None,
            },
            Group {
                sql: "INSERT INTO intake_commits (token, committed_ms) VALUES (?, ?)".to_owned(),
                rows: vec![vec![int(99), int(1)]],
                expected: Some(1),
            },
        ];
        assert_eq!(w.commit(&before, Some(&placed), &after).unwrap(), [1, 1, 1]);
        assert!(!w.in_transaction());

        let orders = db.read(
            "SELECT id, buyer, status, currency, total, region, address, reservation, \
             created_ms, deadline_ms, updated_ms FROM orders ORDER BY id",
        );
        assert_eq!(
            orders[0],
            [
                int(7),
                text("buyer-7"),
                text("pending_payment"),
                text("CNY"),
                int(750),
                text("east"),
                text(r#"{"name":"王小明","city":"Beijing"}"#),
                int(70),
                int(1_800_000_000_007),
                int(1_800_000_900_007),
                int(1_800_000_000_007),
            ]
        );
        assert_eq!(orders[1][2], text("paid"));
        assert_eq!(orders[1][10], int(5));
        let lines = db.read("SELECT * FROM order_lines ORDER BY order_id, line_no");
        assert_eq!(
            lines,
            [
                [
                    int(7),
                    int(0),
                    int(1),
                    int(0),
                    int(2),
                    int(250),
                    text("merchant:acme")
                ],
                [
                    int(7),
                    int(1),
                    int(1),
                    int(0),
                    int(1),
                    int(250),
                    text("merchant:acme")
                ],
                [
                    int(8),
                    int(0),
                    int(1),
                    int(0),
                    int(4),
                    int(250),
                    text("merchant:acme")
                ],
            ]
        );
        assert_eq!(db.read("SELECT reserved FROM stock"), [[int(7)]]);
    }

    #[test]
    fn a_row_count_mismatch_rolls_everything_back() {
        let db = TempDb::new();
        let mut w = db.writer();
        let placed = rows([order(1, &[(1, 1)])]);
        let before = [delta(1, 1, Some(1)), delta(1, 2, Some(1))]; // no stock row of SKU 2
        let err = w.commit(&before, Some(&placed), &[]).unwrap_err();
        match &err {
            WriteError::RowCount {
                group,
                expected,
                actual,
                ..
            } => assert_eq!((*group, *expected, *actual), (1, 1, 0)),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.sqlite_code(), None);
        assert!(!w.in_transaction());
        assert_eq!(db.read("SELECT reserved FROM stock"), [[int(0)]]);
        assert!(db.read("SELECT id FROM orders").is_empty());
        // The writer goes on.
        w.commit(&[delta(1, 1, Some(1))], Some(&placed), &[])
            .unwrap();
        assert_eq!(db.read("SELECT id FROM orders"), [[int(1)]]);
    }

    #[test]
    fn many_placed_orders_are_written_by_chunks_then_one_by_one() {
        let db = TempDb::new();
        let mut w = db.writer();
        // 75 orders: two statements of 32 rows, one of 8, three of one; 1 to 3 lines each.
        let n = 2 * CHUNK_ROWS[0] as i64 + 11;
        let placed: Vec<_> = (1..=n)
            .map(|id| order(id, &vec![(1, 1 + id as u32 % 4); 1 + id as usize % 3]))
            .collect();
        let lines: i64 = placed.iter().map(|o| o.lines.len() as i64).sum();
        w.commit(&[], Some(&rows(placed)), &[]).unwrap();
        assert_eq!(
            db.read("SELECT count(*), sum(id), sum(total) FROM orders"),
            [[
                int(n),
                int(n * (n + 1) / 2),
                int((1..=n).map(|id| (1 + id % 3) * (1 + id % 4) * 250).sum())
            ]]
        );
        assert_eq!(db.read("SELECT count(*) FROM order_lines"), [[int(lines)]]);
        // A row in the middle of a chunk and one of the last, column by column.
        for id in [40, n] {
            assert_eq!(
                db.read(&format!(
                    "SELECT buyer, status, reservation, created_ms, updated_ms FROM orders \
                     WHERE id = {id}"
                )),
                [[
                    text(&format!("buyer-{id}")),
                    text("pending_payment"),
                    int(id * 10),
                    int(1_800_000_000_000 + id),
                    int(1_800_000_000_000 + id),
                ]]
            );
            assert_eq!(
                db.read(&format!(
                    "SELECT group_concat(line_no) FROM order_lines WHERE order_id = {id}"
                )),
                [[text(["0", "0,1", "0,1,2"][id as usize % 3])]]
            );
        }
    }

    #[test]
    fn a_duplicate_inside_a_chunk_rolls_everything_back_and_names_its_orders() {
        let db = TempDb::new();
        let mut w = db.writer();
        w.commit(&[], Some(&rows([order(5, &[(1, 1)])])), &[])
            .unwrap();
        let again = rows((1..=CHUNK_ROWS[0] as i64).map(|id| order(id, &[(1, 1)])));
        let err = w.commit(&[], Some(&again), &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("orders 1 to {}", CHUNK_ROWS[0])),
            "{err}"
        );
        assert_eq!(db.read("SELECT id FROM orders"), [[int(5)]]);
    }

    #[test]
    fn a_constraint_failure_in_placed_rows_rolls_everything_back() {
        let db = TempDb::new();
        let mut w = db.writer();
        w.commit(&[], Some(&rows([order(1, &[(1, 1)])])), &[])
            .unwrap();
        // Order 1 again, after a new order 2 and a delta: the primary key fails the batch.
        let again = rows([order(2, &[(1, 1)]), order(1, &[(1, 1)])]);
        let err = w
            .commit(&[delta(3, 1, Some(1))], Some(&again), &[])
            .unwrap_err();
        assert!(err.to_string().contains("order 1"), "{err}");
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        assert_eq!(
            err.sqlite_code(),
            Some(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
        );
        assert_eq!(db.read("SELECT id FROM orders"), [[int(1)]]);
        assert_eq!(db.read("SELECT reserved FROM stock"), [[int(0)]]);
        // A failing `after` group rolls back the placed rows too.
        let bad_after = Group {
            sql: "INSERT INTO intake_commits (token, committed_ms) VALUES (?, ?)".to_owned(),
            rows: vec![vec![int(1), Value::Null]], // NOT NULL
            expected: None,
        };
        let err = w
            .commit(&[], Some(&rows([order(3, &[(1, 1)])])), &[bad_after])
            .unwrap_err();
        assert!(
            err.to_string().starts_with("INSERT INTO intake_commits"),
            "{err}"
        );
        assert_eq!(db.read("SELECT id FROM orders"), [[int(1)]]);
    }

    #[test]
    fn empty_commits_and_bad_parameters() {
        let db = TempDb::new();
        let mut w = db.writer();
        assert_eq!(w.commit(&[], None, &[]).unwrap(), Vec::<u64>::new());
        assert!(w
            .commit(&[], Some(&OrderRows::default()), &[])
            .unwrap()
            .is_empty());
        let wrong_arity = Group {
            sql: "UPDATE stock SET reserved = ? WHERE sku = ?".to_owned(),
            rows: vec![vec![int(1)]],
            expected: None,
        };
        assert!(w.commit(&[wrong_arity], None, &[]).is_err());
        assert!(!w.in_transaction());
        let no_table = Group {
            sql: "DELETE FROM nowhere".to_owned(),
            rows: vec![vec![]],
            expected: None,
        };
        assert!(w.commit(&[no_table], None, &[]).is_err());
        assert!(!w.in_transaction());
    }

    #[test]
    fn execute_and_query_one_serve_migrations() {
        let db = TempDb::new();
        let mut w = db.writer();
        w.execute("BEGIN IMMEDIATE", &[]).unwrap();
        assert!(w.in_transaction());
        // commit() refuses to nest in a transaction begun by hand.
        assert!(matches!(
            w.commit(&[], None, &[]),
            Err(WriteError::Usage(_))
        ));
        assert!(w.in_transaction());
        w.execute("CREATE TABLE t (v INTEGER) STRICT", &[]).unwrap();
        let n = w
            .execute("INSERT INTO t VALUES (?), (?)", &[int(3), int(4)])
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            w.query_one("SELECT MAX(v), 'x' FROM t WHERE v < ?", &[int(10)])
                .unwrap(),
            Some(vec![int(4), text("x")])
        );
        assert_eq!(
            w.query_one("SELECT v FROM t WHERE v > 10", &[]).unwrap(),
            None
        );
        w.rollback().unwrap();
        assert!(!w.in_transaction());
        w.rollback().unwrap(); // nothing open: a no-op
        assert!(db
            .read("SELECT name FROM sqlite_master WHERE name = 't'")
            .is_empty());
        assert!(w.execute("SELECT 1", &[]).is_err()); // returns rows: refused
    }

    #[test]
    fn open_fails_cleanly_on_a_missing_folder() {
        let path = std::env::temp_dir().join("pyorder-no-such-folder-xyz/db.sqlite3");
        let err = Writer::open(&path, 10).unwrap_err();
        assert!(err.to_string().contains("cannot open"), "{err}");
    }

    #[test]
    fn sqlite_is_the_system_shared_library() {
        // Not compiled in: the symbol lives in libsqlite3.so, the library Python loads too.
        let path = library_path().expect("dladdr finds sqlite3_libversion");
        assert!(path.contains("libsqlite3.so"), "{path}");
    }
}
