//! # scan-queue-agent
//!
//! A scan agent for ThreadFix's Tasks API (SPEC §7): it turns any scanner with a command
//! line into an agent of a scan-queue server (or of any ThreadFix-compatible server).
//!
//! It registers once (`requestScanAgentKey`, the key kept in a `0600` state file), asks for
//! tasks (`requestTask`) for the scanners it has commands for, and runs each task's command
//! — an argument list with placeholders, never through a shell unless the command is one —
//! in its own process group. While a scan runs its stdout lines become status updates
//! (rate-limited), with a heartbeat whenever the scanner is silent so the server's lease
//! holds; a per-scanner time limit kills the whole group. The report is uploaded with
//! `completeTask`, or the task failed with `failTask` and the exit status and the last lines
//! of stderr. Calls that do not reach the server are retried with back-off (a repeated
//! `completeTask` is answered as the first was).
//!
//! Code map: [`config`] (the TOML file), [`template`] (placeholders), [`client`] (the
//! HTTP calls and retries), [`state`] (the stored key), [`process`] (one scanner process),
//! [`task`] (one task from assignment to report), [`agent`] (the polling loop),
//! [`shutdown`] (signals), [`secret`] and [`text`] (redaction and bounded text).
//!
//! **Invariant:** no key (API key, scan agent key, task key) is ever logged, put in an
//! error or passed to a scanner: keys are [`Secret`]s, whose `Debug` is redacted and which
//! have no `Display`, and scanners get a cleared environment.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod client;
pub mod config;
pub mod process;
pub mod secret;
pub mod shutdown;
pub mod state;
pub mod task;
pub mod template;
pub mod text;

pub use agent::{Fatal, Summary};
pub use config::{Config, ConfigError, ScannerConfig};
pub use secret::Secret;
pub use shutdown::Phase;
pub use template::{Placeholder, Template};
