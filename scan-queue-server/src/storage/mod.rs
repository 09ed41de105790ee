//! The storage seam: everything durable goes through [`Storage`] — the log of [`Record`]s
//! with its snapshots (which carry the scan configuration documents and result records), and
//! the result files themselves. What the server decides lives in `state.rs` and `ops.rs`;
//! where it is kept lives behind this trait: [`LocalStore`], the data directory, or
//! [`PgStore`], PostgreSQL shared by an active server and its standbys.
//!
//! The contract, whatever the store:
//! - [`append`](Storage::append) is called under the state's lock, which orders the records;
//!   it does no I/O itself. An answer is released only after [`durable`](Storage::durable)
//!   says the records it reflects are kept.
//! - An upload is staged while it arrives, then [`keep`](Storage::keep) makes it durable as a
//!   task's result *before* the record that refers to it is appended; a kept file that ends up
//!   referenced by no record is [`discard`](Storage::discard)ed, and opening the store removes
//!   any that a crash left.
//! - After a failure nothing more is acknowledged: [`failed`](Storage::failed) completes and
//!   the server stops.
//! - A replicated store may make this server a [`standby`](Storage::standby): it then accepts
//!   no append (the server refuses calls) and [`run`](Storage::run) keeps the state current
//!   from the active server's log, replacing it wholesale when needed.

pub(crate) mod fs;
pub(crate) mod journal;
mod local;
pub(crate) mod postgres;
pub(crate) mod upload;

pub(crate) use local::LocalStore;
pub(crate) use postgres::PgStore;

use crate::state::{Record, State};
use scan_queue::TaskId;
use std::future::Future;
use std::pin::Pin;
use upload::{Kept, Upload};

/// Where a result file can be read.
pub(crate) enum ResultSource {
    /// A local file.
    File(std::path::PathBuf),
    /// Its bytes from an offset on, in order, fetched as they are read.
    Stream(Box<dyn FnOnce(u64) -> ByteStream + Send>),
}

/// Bytes fetched as they are read.
pub(crate) type ByteStream =
    futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

impl std::fmt::Debug for ResultSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResultSource::File(path) => f.debug_tuple("File").field(path).finish(),
            ResultSource::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// This server is a standby: another one (or none yet) is active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Standby {
    /// The active server's advertised URL, when known.
    pub(crate) active: Option<String>,
}

/// A boxed future, so that the trait can be used as `dyn Storage`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where durable things are kept. See the module docs for the contract.
pub(crate) trait Storage: Send + Sync + std::fmt::Debug {
    /// Queues `records` (one operation's, in order) to be kept; with them, a snapshot of
    /// `state` when one is due. Returns the sequence number an answer must wait for.
    fn append(&self, records: Vec<Record>, state: &State) -> u64;

    /// Completes when every record up to `seq` is kept: `true`; `false` when the store has
    /// failed and never will.
    fn durable(&self, seq: u64) -> BoxFuture<'_, bool>;

    /// Completes when the store has failed (the server must stop).
    fn failed(&self) -> BoxFuture<'_, ()>;

    /// Whether the store has failed.
    fn has_failed(&self) -> bool;

    /// Starts receiving an upload (named `file_name` by the client).
    fn stage(&self, file_name: Option<String>) -> BoxFuture<'_, std::io::Result<Upload>>;

    /// Keeps a received upload as `task`'s result, durably, before any record refers to it.
    fn keep(&self, upload: Upload, task: TaskId) -> BoxFuture<'_, std::io::Result<Kept>>;

    /// Removes a kept file that no record refers to.
    fn discard(&self, kept: Kept) -> BoxFuture<'_, ()>;

    /// Where a result file (by its name in a record) can be read.
    fn result_source(&self, file: &str) -> ResultSource;

    /// Removes result files whose records were deleted, once that deletion is durable (a
    /// crash before leaves files that no record names: removed at the next start).
    fn remove_results(&self, files: Vec<String>) -> BoxFuture<'_, ()>;

    /// What the store does beside requests, for as long as the server serves: a replicated
    /// store's election and, on a standby, keeping `state` current (under its lock, never
    /// across I/O); `took_over` is called when this server becomes active. By default
    /// nothing.
    fn run<'a>(
        &'a self,
        state: &'a parking_lot::Mutex<State>,
        took_over: &'a (dyn Fn() + Send + Sync),
    ) -> BoxFuture<'a, ()> {
        let _ = (state, took_over);
        Box::pin(std::future::pending())
    }

    /// `Some` while this server is a standby (no change may be made here). By default never.
    fn standby(&self) -> Option<Standby> {
        None
    }
}
