//! What a server is configured with, and the checks it must pass before the server starts.

use crate::auth::ApiKey;
use crate::edge::Edge;
use crate::report::ResultCheck;
use crate::scanners::Scanners;
use crate::state::Retention;
use crate::storage::journal::Durability;
use crate::throttle::AuthThrottle;
use crate::webhook::Webhooks;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a server is configured with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The administrator API key every call must present.
    pub api_key: ApiKey,
    /// Where the journal, result files and uploads in flight are kept.
    pub data_dir: PathBuf,
    /// How the state persists across restarts (`None`: in memory only, lost when the
    /// process stops; files then go to a private temporary directory).
    pub durability: Option<Durability>,
    /// The queue's durations and bounds (lease, task deadline, attempts, …). Its
    /// `record_events` must stay on: the events are what the server persists.
    pub queue: scan_queue::Config,
    /// The scanners tasks may use.
    pub scanners: Scanners,
    /// The largest result file `completeTask` accepts, in bytes.
    pub max_upload_bytes: u64,
    /// The largest scan configuration document `setTaskConfig` accepts, in bytes (at most
    /// [`MAX_CONFIG_BYTES_LIMIT`](Self::MAX_CONFIG_BYTES_LIMIT)).
    pub max_config_bytes: usize,
    /// How result files are checked at completion (by default: well-formed XML or JSON).
    pub result_check: ResultCheck,
    /// How long results are kept (by default until their task is evicted).
    pub retention: Retention,
    /// Where terminal transitions are pushed (by default nowhere).
    pub webhooks: Webhooks,
    /// The previous API key, still accepted for `previous_api_key_grace` after start while
    /// agents move to the new one.
    pub previous_api_key: Option<ApiKey>,
    /// How long after start the previous API key is accepted (24 hours by default).
    pub previous_api_key_grace: Duration,
    /// What the network edge accepts: connection and upload bounds, timeouts, TLS.
    pub edge: Edge,
    /// How failed API-key checks and logins are throttled per client address.
    pub auth_throttle: AuthThrottle,
    /// Scan agents silent (no call with their key) this long are revoked: their key is
    /// refused from then on (by default never).
    pub agent_expiry_ms: Option<u64>,
    /// Keep everything in PostgreSQL instead of `data_dir` (and `durability`), as the active
    /// server or a standby (by default not).
    pub postgres: Option<crate::Postgres>,
}

impl ServerConfig {
    /// Default upload bound: 100 MiB.
    pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;
    /// Default configuration document bound: 1 MiB.
    pub const DEFAULT_MAX_CONFIG_BYTES: usize = 1024 * 1024;
    /// The largest `max_config_bytes` allowed: a document is one journal record.
    pub const MAX_CONFIG_BYTES_LIMIT: usize = 8 * 1024 * 1024;

    /// The defaults (queue defaults, the six scanners, the default bounds, durable with
    /// `fsync` always) with this key and data directory.
    pub fn new(api_key: ApiKey, data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            api_key,
            data_dir: data_dir.into(),
            durability: Some(Durability::default()),
            queue: scan_queue::Config::default(),
            scanners: Scanners::default(),
            max_upload_bytes: Self::DEFAULT_MAX_UPLOAD_BYTES,
            max_config_bytes: Self::DEFAULT_MAX_CONFIG_BYTES,
            result_check: ResultCheck::default(),
            retention: Retention::default(),
            webhooks: Webhooks::default(),
            previous_api_key: None,
            previous_api_key_grace: Duration::from_secs(24 * 60 * 60),
            edge: Edge::default(),
            auth_throttle: AuthThrottle::default(),
            agent_expiry_ms: None,
            postgres: None,
        }
    }

    /// Refuses a configuration the server cannot keep its promises with.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.queue.record_events {
            return Err(
                "queue.record_events must be on: the queue's events are what the server \
                        persists and replays"
                    .into(),
            );
        }
        if self.max_config_bytes > Self::MAX_CONFIG_BYTES_LIMIT {
            return Err(format!(
                "max_config_bytes is {}; at most {} (a scan config is one journal record)",
                self.max_config_bytes,
                Self::MAX_CONFIG_BYTES_LIMIT
            ));
        }
        if !self.webhooks.receivers.is_empty() && self.webhooks.secret.is_none() {
            return Err("webhooks need a secret to sign their deliveries with".into());
        }
        if self.edge.max_connections == 0 || self.edge.max_uploads == 0 {
            return Err("edge.max_connections and edge.max_uploads must be at least 1".into());
        }
        if self.agent_expiry_ms == Some(0) {
            return Err("agent_expiry_ms must be at least 1 (None: agents never expire)".into());
        }
        if self.webhooks.max_attempts == 0 {
            return Err("webhooks.max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_that_break_a_promise_are_refused() {
        let ok = ServerConfig::new(ApiKey::generate(), "/nonexistent");
        assert_eq!(ok.check(), Ok(()));
        let mut silent = ok.clone();
        silent.queue.record_events = false;
        assert!(silent.check().unwrap_err().contains("record_events"));
        let mut huge = ok.clone();
        huge.max_config_bytes = ServerConfig::MAX_CONFIG_BYTES_LIMIT + 1;
        assert!(huge.check().unwrap_err().contains("max_config_bytes"));
        let mut instant = ok.clone();
        instant.agent_expiry_ms = Some(0);
        assert!(instant.check().unwrap_err().contains("agent_expiry_ms"));
        let mut unsigned = ok;
        unsigned.webhooks.receivers = vec![crate::Webhook::new("http://127.0.0.1:9/").unwrap()];
        assert!(unsigned.check().unwrap_err().contains("secret"));
    }
}
