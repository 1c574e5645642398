//! `CommitQueue`: the embedded store's commits on a Rust thread that never takes the GIL.
//!
//! The event loop hands a batch over (`submit`, which converts the few Python-built statement
//! groups while it holds the GIL) and goes on; the queue's thread writes the batches one after
//! another, in submission order, through the store's `SqliteWriter`, and signals each finished
//! one on an eventfd that the loop watches (`fd`, then `take_done`). A Python thread would
//! have to win the GIL back from the busy loop after every commit, waiting up to a switch
//! interval each time; this thread never waits for it.
//!
//! Once a batch fails, the batches queued behind it fail unwritten until `resume`: they were
//! decided on top of the failed one, and the database must stay a prefix of the batches.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;

use super::rows::OrderRows;
use super::storage::{groups, write_err, SqliteWriter};
use crate::storage::sqlite::{Group, WriteError, Writer, DEFAULT_BUSY_TIMEOUT_MS};
use rusqlite::types::Value;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CommitQueue>()?;
    Ok(())
}

enum Message {
    Commit(Job),
    /// Write again after a failure.
    Resume,
}

struct Job {
    ticket: u64,
    before: Vec<Group>,
    rows: Option<Py<OrderRows>>,
    after: Vec<Group>,
}

/// A finished job: its ticket, its outcome, and the rows object (dropped under the GIL).
type Done = (u64, Result<Vec<u64>, WriteError>, Option<Py<OrderRows>>);

/// Commits of one `SqliteWriter`, in order, on a thread of their own.
#[pyclass(frozen, module = "pyorder._core")]
pub(crate) struct CommitQueue {
    jobs: Mutex<Option<Sender<Message>>>,
    done: Arc<Mutex<Vec<Done>>>,
    signal: Arc<OwnedFd>,
    next_ticket: Mutex<u64>,
    thread: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

/// Checkpoint the WAL of `path` every `interval` from a connection of its own, so the commit
/// thread never spends a commit copying pages into the database file.
///
/// Under a steady stream of commits these checkpoints never catch up with the last frame at
/// the moment a commit begins, so SQLite never starts the WAL over: the file grows, and every
/// commit appends to it. Once the WAL holds `restart_frames` frames this raises `restart`:
/// the commit thread then checkpoints the few frames left between two batches, when no frame
/// can be added meanwhile, and its next commit overwrites the WAL from its start.
fn checkpoint(
    path: PathBuf,
    interval: Duration,
    stop: Arc<AtomicBool>,
    restart: Arc<AtomicBool>,
    restart_frames: i64,
) {
    let Ok(mut conn) = Writer::open(&path, DEFAULT_BUSY_TIMEOUT_MS) else {
        return; // the writer's own automatic checkpoints still bound the WAL
    };
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(interval);
        // PASSIVE never waits for the writer or the readers; what it cannot copy now it
        // copies next time. Its row: (busy, frames in the WAL, frames copied).
        if let Ok(Some(row)) = conn.query_one("PRAGMA wal_checkpoint(PASSIVE)", &[]) {
            if matches!(row.get(1), Some(Value::Integer(n)) if *n >= restart_frames) {
                restart.store(true, Ordering::Relaxed);
            }
        }
    }
    let _ = conn.close();
}

fn eventfd() -> PyResult<OwnedFd> {
    // SAFETY: eventfd has no memory arguments; a non-negative result is a new descriptor that
    // we own from here on.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(PyOSError::new_err(format!(
            "eventfd: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn signal(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to our own eventfd. It can only fail when the
    // counter is near u64::MAX, and then the loop has a wake-up pending anyway.
    unsafe {
        libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8);
    }
}

fn drain(fd: &OwnedFd) {
    let mut count: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64; EAGAIN (nothing pending) is fine.
    unsafe {
        libc::read(fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8);
    }
}

fn run(
    writer: Arc<Mutex<Option<Writer>>>,
    jobs: mpsc::Receiver<Message>,
    done: Arc<Mutex<Vec<Done>>>,
    fd: Arc<OwnedFd>,
    restart: Arc<AtomicBool>,
) {
    // After a failed batch, the batches queued behind it were decided on top of it: none of
    // them is written until the caller has recovered and says `Resume`.
    let mut failed = false;
    while let Ok(message) = jobs.recv() {
        let job = match message {
            Message::Resume => {
                failed = false;
                continue;
            }
            Message::Commit(job) => job,
        };
        let outcome = match writer.lock().as_mut() {
            _ if failed => Err(WriteError::Usage(
                "not written: an earlier batch failed to commit".to_owned(),
            )),
            None => Err(WriteError::Usage("the SQLite writer is closed".to_owned())),
            Some(w) => {
                let placed = job.rows.as_ref().map(|r| r.get().lock());
                w.commit(&job.before, placed.as_deref(), &job.after)
            }
        };
        failed |= outcome.is_err();
        done.lock().push((job.ticket, outcome, job.rows));
        signal(&fd);
        if restart.swap(false, Ordering::Relaxed) {
            // Between batches (see `checkpoint`). A checkpoint already running (the
            // checkpointer's) makes this one give up at once: try again after the next batch
            // rather than wait for the checkpointer to notice the WAL is still long.
            if let Some(w) = writer.lock().as_mut() {
                if let Ok(Some(row)) = w.query_one("PRAGMA wal_checkpoint(PASSIVE)", &[]) {
                    if matches!(row.first(), Some(Value::Integer(1))) {
                        restart.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

#[pymethods]
impl CommitQueue {
    /// With `checkpoint_path`, a second thread checkpoints that database's WAL every
    /// `checkpoint_interval_ms` (the writer should then checkpoint rarely itself), and has the
    /// WAL start over once it holds `wal_restart_frames` pages (default ~16 MB).
    #[new]
    #[pyo3(signature = (writer, checkpoint_path = None, checkpoint_interval_ms = 50, wal_restart_frames = 4096))]
    fn new(
        writer: &Bound<'_, SqliteWriter>,
        checkpoint_path: Option<PathBuf>,
        checkpoint_interval_ms: u64,
        wal_restart_frames: i64,
    ) -> PyResult<Self> {
        let signal = Arc::new(eventfd()?);
        let done = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let inner = Arc::clone(&writer.get().inner);
        let restart = Arc::new(AtomicBool::new(false));
        let (d, f, r) = (Arc::clone(&done), Arc::clone(&signal), Arc::clone(&restart));
        let thread = std::thread::Builder::new()
            .name("pyorder-commit".into())
            .spawn(move || run(inner, rx, d, f, r))
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the commit thread: {e}")))?;
        let checkpointer = match checkpoint_path {
            None => None,
            Some(path) => {
                let stop = Arc::new(AtomicBool::new(false));
                let flag = Arc::clone(&stop);
                let interval = Duration::from_millis(checkpoint_interval_ms.max(1));
                let handle = std::thread::Builder::new()
                    .name("pyorder-checkpoint".into())
                    .spawn(move || checkpoint(path, interval, flag, restart, wal_restart_frames))
                    .map_err(|e| {
                        PyRuntimeError::new_err(format!("cannot start the checkpointer: {e}"))
                    })?;
                Some((stop, handle))
            }
        };
        Ok(Self {
            checkpointer: Mutex::new(checkpointer),
            jobs: Mutex::new(Some(tx)),
            done,
            signal,
            next_ticket: Mutex::new(1),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The eventfd that becomes readable when a commit has finished (see `take_done`).
    #[getter]
    fn fd(&self) -> i32 {
        self.signal.as_raw_fd()
    }

    /// Queue one batch (as `SqliteWriter.commit`); returns its ticket. `rows` must not change
    /// until the batch is done.
    #[pyo3(signature = (before, rows, after))]
    fn submit(
        &self,
        before: &Bound<'_, PyAny>,
        rows: Option<Py<OrderRows>>,
        after: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let job = Job {
            ticket: 0,
            before: groups(before, "before")?,
            rows,
            after: groups(after, "after")?,
        };
        let mut next = self.next_ticket.lock();
        let ticket = *next;
        let jobs = self.jobs.lock();
        let Some(tx) = jobs.as_ref() else {
            return Err(PyRuntimeError::new_err("the commit queue is closed"));
        };
        tx.send(Message::Commit(Job { ticket, ..job }))
            .map_err(|_| PyRuntimeError::new_err("the commit thread has stopped"))?;
        *next += 1;
        Ok(ticket)
    }

    /// Write again after a failed batch: until then every batch fails unwritten, so the
    /// database holds a prefix of what was handed over.
    fn resume(&self) -> PyResult<()> {
        match self.jobs.lock().as_ref() {
            Some(tx) => tx
                .send(Message::Resume)
                .map_err(|_| PyRuntimeError::new_err("the commit thread has stopped")),
            None => Ok(()),
        }
    }

    /// The finished batches since the last call, in order: (ticket, rows changed per group,
    /// None) or (ticket, None, the exception). Clears the eventfd.
    #[allow(clippy::type_complexity)]
    fn take_done(&self, py: Python<'_>) -> Vec<(u64, Option<Vec<u64>>, Option<PyErr>)> {
        drain(&self.signal);
        let finished = std::mem::take(&mut *self.done.lock());
        finished
            .into_iter()
            .map(|(ticket, outcome, rows)| {
                drop(rows);
                match outcome {
                    Ok(counts) => (ticket, Some(counts), None),
                    Err(e) => (ticket, None, Some(write_err(py, e))),
                }
            })
            .collect()
    }

    /// Finish what is queued, then stop the thread; safe to call twice.
    fn close(&self, py: Python<'_>) {
        self.jobs.lock().take();
        let thread = self.thread.lock().take();
        let checkpointer = self.checkpointer.lock().take();
        py.detach(|| {
            if let Some(t) = thread {
                let _ = t.join();
            }
            if let Some((stop, t)) = checkpointer {
                stop.store(true, Ordering::Relaxed);
                let _ = t.join();
            }
        });
    }
}
