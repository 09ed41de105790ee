//! # scan-queue-server
//!
//! An HTTP server that speaks ThreadFix's "Tasks API" (SPEC §7) over the [`scan_queue`] core:
//! scan agents written for ThreadFix request tasks, send status updates, and complete or fail
//! them, against a queue that never gives one task to two agents and enforces leases and
//! deadlines.
//!
//! The server is a thin layer. It reads the clock, parses ThreadFix's parameters (query
//! string, url-encoded body or multipart, alike), checks the API key, runs one core operation
//! under the queue's lock (one `Mutex<Queue>`), stores uploaded files,
//! and renders ThreadFix's JSON ([`wire`]). A background timer sleeps until the queue's next
//! deadline and applies it.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use scan_queue_server::{ApiKey, Server, ServerConfig};
//! let config = ServerConfig::new(ApiKey::new("change-me").unwrap(), "./scan-queue-data");
//! let server = Server::new(config)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! Every answer is a ThreadFix envelope, failures included (HTTP 200 with `success: false`,
//! as ThreadFix; 404 for an unknown endpoint and 405 for a wrong method, still as envelopes).
//! No secret (API key, scan agent key, task key) is ever logged or put in a failure message.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
mod auth;
mod clock;
mod config;
mod edge;
mod http;
mod metrics;
mod ops;
mod presence;
pub mod report;
mod scanners;
mod server;
mod sessions;
mod state;
mod storage;
mod throttle;
mod ui;
mod webhook;
pub mod wire;

pub use auth::ApiKey;
pub use clock::Clock;
pub use config::ServerConfig;
pub use edge::{Edge, TlsFiles};
pub use http::{Failure, Op};
pub use scanners::{Scanner, Scanners};
pub use server::Server;
pub use state::Retention;
pub use storage::journal::{Durability, Fsync};
pub use storage::postgres::Postgres;
pub use throttle::AuthThrottle;
pub use webhook::{Webhook, WebhookSecret, Webhooks};
