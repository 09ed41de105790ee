//! Signed webhooks (ours): every terminal transition (complete, fail, time out, delete) is
//! POSTed as JSON to each configured receiver, GitHub-style — an HMAC-SHA256 of the raw body
//! in `X-ScanQueue-Signature-256: sha256=<hex>`, the delivery id in `X-ScanQueue-Delivery`
//! (and the body), the event in `X-ScanQueue-Event`. Deliveries wait in the durable outbox
//! (`state/webhooks.rs`), so each is made at least once across restarts, retried with
//! exponential back-off up to a bound. No body ever holds a key.

use crate::app::App;
use crate::scanners::Scanners;
use crate::state::{Attempt, Delivery, Fact, Record, ResultRecord, State};
use hmac::{Hmac, Mac};
use scan_queue::{Event, TaskStatus};
use sha2::Sha256;
use std::fmt;
use std::time::Duration;

/// A receiver of webhooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// Where to POST (`http://` or `https://`).
    pub url: String,
}

impl Webhook {
    /// A receiver at `url`; `None` unless it is an absolute `http`/`https` URL of at most
    /// 2 000 bytes.
    pub fn new(url: impl Into<String>) -> Option<Webhook> {
        let url = url.into();
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        let usable = scheme_ok && url.len() <= 2_000 && !url.chars().any(char::is_whitespace);
        usable.then_some(Webhook { url })
    }
}

/// The secret every delivery is signed with. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// A secret; `None` if it is shorter than 16 bytes.
    pub fn new(secret: impl Into<String>) -> Option<WebhookSecret> {
        let secret = secret.into();
        (secret.len() >= 16).then_some(WebhookSecret(secret))
    }

    /// `sha256=<hex HMAC-SHA256 of body>`, the signature header's value.
    pub fn sign(&self, body: &[u8]) -> String {
        // HMAC takes a key of any length.
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.0.as_bytes()) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(body);
        format!(
            "sha256={}",
            crate::storage::upload::hex(&mac.finalize().into_bytes())
        )
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// The webhooks a server sends, and how it retries.
#[derive(Clone, Debug)]
pub struct Webhooks {
    /// The receivers (none: no webhooks).
    pub receivers: Vec<Webhook>,
    /// What every delivery is signed with (required when there are receivers).
    pub secret: Option<WebhookSecret>,
    /// The wait after the first failed attempt; it doubles after each one…
    pub first_retry: Duration,
    /// …up to this.
    pub max_retry: Duration,
    /// Attempts at most; after the last failure the delivery is given up.
    pub max_attempts: u32,
}

impl Default for Webhooks {
    /// None; retries after 1 s, doubling up to 10 minutes, 12 attempts (about an hour).
    fn default() -> Webhooks {
        Webhooks {
            receivers: Vec::new(),
            secret: None,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(600),
            max_attempts: 12,
        }
    }
}

impl Webhooks {
    /// When to try again after `attempts` failed attempts.
    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        self.first_retry.saturating_mul(factor).min(self.max_retry)
    }
}

/// The deliveries the records of one transaction call for: one per terminal transition and
/// receiver, with ids from the outbox's next on. Built from the state after the transaction.
pub(crate) fn deliveries(
    state: &State,
    records: &[Record],
    receivers: &[Webhook],
    scanners: &Scanners,
    now_ms: u64,
) -> Vec<Delivery> {
    let mut out = Vec::new();
    if receivers.is_empty() {
        return out;
    }
    for record in records {
        let (task, event, result) = match record {
            Record::Fact(Fact::Completed { event, result }) => {
                (event.task(), "task.completed", Some(&**result))
            }
            Record::Event(Event::TaskCompleted { task, .. }) => {
                (Some(*task), "task.completed", None)
            }
            Record::Event(Event::TaskFailed { task, .. }) => (Some(*task), "task.failed", None),
            Record::Event(Event::TaskCancelled { task, .. }) => (Some(*task), "task.deleted", None),
            Record::Event(Event::DeadlineReached { task, .. })
            | Record::Event(Event::LeaseExpired {
                task,
                requeued: false,
                ..
            }) => (Some(*task), "task.timed_out", None),
            _ => continue,
        };
        let Some(task) = task.and_then(|id| state.queue.task(id)) else {
            continue;
        };
        for receiver in receivers {
            let id = state.webhooks().next_id() + out.len() as u64;
            let body = body(id, event, task, result, scanners, now_ms);
            out.push(Delivery {
                id,
                url: receiver.url.clone(),
                event: event.to_owned(),
                body,
                attempts: 0,
                next_attempt_ms: now_ms,
            });
        }
    }
    out
}

/// A delivery's JSON: the event, the task (never a key), its result if any.
fn body(
    id: u64,
    event: &str,
    task: &scan_queue::Task,
    result: Option<&ResultRecord>,
    scanners: &Scanners,
    now_ms: u64,
) -> String {
    let status = task.status();
    let reason = match status {
        TaskStatus::CompleteFailed => task.failure_message(),
        TaskStatus::CompleteTimedOut => task.last_message().map(|m| m.to_string()),
        _ => None,
    };
    let result = result.map(|r| {
        serde_json::json!({
            "fileName": r.file_name,
            "size": r.size,
            "sha256": r.sha256,
            "contentType": r.served_content_type(),
            "report": r.report,
            "findings": r.findings,
            "downloadPath": format!("/rest/latest/tasks/{}/result", r.task),
        })
    });
    serde_json::json!({
        "deliveryId": id,
        "event": event,
        "occurredAt": now_ms,
        "task": {
            "id": task.id().0,
            "applicationId": task.application().0,
            "scanner": task.scanner(),
            "scannerShortName": scanners.short_name(task.scanner()),
            "targetUrl": task.target_url(),
            "status": status.threadfix_code(),
            "statusString": status.status_string(),
            "reason": reason,
            "createTime": task.create_ms(),
            "endTime": task.end_ms(),
        },
        "result": result,
    })
    .to_string()
}

/// Deliveries attempted at once, at most.
const IN_FLIGHT: usize = 16;
/// One attempt's bound.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the worker sleeps without looking again.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Delivers what the outbox holds, forever: due deliveries (up to [`IN_FLIGHT`] at once),
/// each attempt's outcome recorded; then sleeps until the next is due or a transaction
/// queues more.
pub(crate) async fn run(app: &App) {
    let (Some(secret), false) = (&app.webhooks.secret, app.webhooks.receivers.is_empty()) else {
        return;
    };
    let client = match reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scan-queue-server/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: no HTTP client; nothing will be delivered");
            return;
        }
    };
    loop {
        if !app.is_active() {
            // The active server delivers.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let now_ms = app.clock.now_ms();
        let (due, next_ms) = app.read(|s| {
            let mut due = Vec::new();
            let mut next = None::<u64>;
            for d in s.webhooks().pending() {
                if d.next_attempt_ms <= now_ms && due.len() < IN_FLIGHT {
                    due.push(std::sync::Arc::clone(d));
                } else {
                    next = Some(next.map_or(d.next_attempt_ms, |n| n.min(d.next_attempt_ms)));
                }
            }
            (due, next)
        });
        if due.is_empty() {
            let wait = next_ms
                .map_or(MAX_SLEEP, |at| {
                    Duration::from_millis(at.saturating_sub(now_ms))
                })
                .min(MAX_SLEEP);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = app.webhook_wake.notified() => {}
            }
            continue;
        }
        let attempts = due.iter().map(|d| attempt(&client, secret, d));
        let outcomes = futures_util::future::join_all(attempts).await;
        let now_ms = app.clock.now_ms();
        for (d, outcome) in due.iter().zip(outcomes) {
            let attempt = match outcome {
                Ok(()) => Attempt::Delivered,
                Err(why) if d.attempts.saturating_add(1) >= app.webhooks.max_attempts => {
                    tracing::warn!(delivery = d.id, url = %d.url, reason = %why, attempts = d.attempts + 1, "webhook delivery given up");
                    Attempt::GaveUp
                }
                Err(why) => {
                    let wait = app.webhooks.backoff(d.attempts.saturating_add(1));
                    tracing::info!(delivery = d.id, url = %d.url, reason = %why, retry_in_ms = wait.as_millis() as u64, "webhook delivery failed");
                    Attempt::Retry {
                        next_attempt_ms: now_ms
                            .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
                    }
                }
            };
            // Nobody is answered; at least once: a delivery whose outcome is lost in a crash
            // is simply made again.
            let _ = app
                .transact(|s, _| s.webhook_attempted(d.id, attempt))
                .unanswered();
        }
    }
}

/// One POST; `Err` says why it did not count as delivered.
async fn attempt(
    client: &reqwest::Client,
    secret: &WebhookSecret,
    d: &Delivery,
) -> Result<(), String> {
    let response = client
        .post(&d.url)
        .header("Content-Type", "application/json")
        .header("X-ScanQueue-Event", &d.event)
        .header("X-ScanQueue-Delivery", d.id.to_string())
        .header("X-ScanQueue-Signature-256", secret.sign(d.body.as_bytes()))
        .body(d.body.clone())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_a_known_hmac_and_secrets_stay_hidden() {
        // RFC 4231 test case 2's message, with a 16-byte key, computed independently
        // (python3 -c "import hmac,hashlib; print(hmac.new(b'0123456789abcdef', b'what do ya want for nothing?', hashlib.sha256).hexdigest())").
        let secret = WebhookSecret::new("0123456789abcdef").unwrap();
        assert_eq!(
            secret.sign(b"what do ya want for nothing?"),
            "sha256=e9265dc1bf18d4ec36915d9e82226c7ea0fa4e7f8077f611515bd5e29ec9988c"
        );
        assert!(!format!("{secret:?}").contains("0123"));
        assert!(WebhookSecret::new("short").is_none());
        assert!(Webhook::new("ftp://x").is_none());
        assert!(Webhook::new("http://127.0.0.1:9/hook").is_some());
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let w = Webhooks::default();
        let waits: Vec<u64> = (1..=12).map(|a| w.backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
    }
}
