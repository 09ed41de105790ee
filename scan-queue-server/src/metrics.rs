//! Operating numbers: `/metrics` in the Prometheus text format, the HTTP request counters,
//! and the queue-depth history behind the Scan Agent Tasks page's chart.
//!
//! The queue's own numbers (tasks per status, live agents, lifetime counters) are read from
//! [`Queue::stats`](scan_queue::Queue::stats) at scrape time, so they are exactly the core's
//! and cost O(1); only what the core cannot see (HTTP requests, API key rejections) is
//! counted here.

use parking_lot::Mutex;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use scan_queue::{Stats, TaskStatus};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// Minutes of queue-depth history kept for the chart.
pub(crate) const DEPTH_MINUTES: u64 = 60;
const MINUTE_MS: u64 = 60_000;

/// The server's own counters and the depth history. Shared by every request.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// `scan_queue_http_requests_total{endpoint, outcome}`.
    http_requests: IntCounterVec,
    /// `scan_queue_api_key_rejections_total`: calls, logins and scrapes with a wrong or
    /// missing API key (the core counts rejected agent and task keys itself).
    api_key_rejections: IntCounter,
    /// `scan_queue_refused_total{reason}`: requests and connections turned away by a bound
    /// of the edge: `throttled` (429 after failed authentication), `connections`
    /// (`--max-connections`), `uploads` (`--max-uploads`), `timeout` (a request or upload
    /// too slow).
    edge_refusals: IntCounterVec,
    /// Queue depth per minute, oldest first, at most [`DEPTH_MINUTES`] entries.
    depth: Mutex<VecDeque<DepthSample>>,
    /// The second of the last opportunistic sample (bounds sampling to once a second).
    sampled_s: AtomicU64,
}

/// What the server keeps beside the queue, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Kept {
    pub(crate) results: u64,
    pub(crate) result_bytes: u64,
    pub(crate) webhooks_pending: u64,
    pub(crate) webhooks_delivered: u64,
    pub(crate) webhooks_given_up: u64,
    /// Whether this server may change the queue (a PostgreSQL standby may not).
    pub(crate) active: bool,
}

/// The queue's depth during one minute (the last value seen in that minute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct DepthSample {
    /// The minute's start, in milliseconds since the Unix epoch.
    pub(crate) t: u64,
    /// Tasks waiting for an agent.
    pub(crate) queued: u64,
    /// Tasks held by an agent (assigned or in progress).
    pub(crate) running: u64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let http_requests = IntCounterVec::new(
            Opts::new(
                "scan_queue_http_requests_total",
                "HTTP requests by endpoint and outcome.",
            ),
            &["endpoint", "outcome"],
        )
        .expect("valid metric");
        let api_key_rejections = IntCounter::new(
            "scan_queue_api_key_rejections_total",
            "Requests refused for a wrong or missing API key or session.",
        )
        .expect("valid metric");
        let edge_refusals = IntCounterVec::new(
            Opts::new(
                "scan_queue_refused_total",
                "Requests and connections refused by a bound of the edge, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for reason in ["throttled", "connections", "uploads", "timeout"] {
            edge_refusals.with_label_values(&[reason]);
        }
        Metrics {
            http_requests,
            api_key_rejections,
            edge_refusals,
            depth: Mutex::new(VecDeque::with_capacity(DEPTH_MINUTES as usize + 1)),
            sampled_s: AtomicU64::new(u64::MAX),
        }
    }

    /// Counts one HTTP request.
    pub(crate) fn record_request(&self, endpoint: &str, outcome: &str) {
        self.http_requests
            .with_label_values(&[endpoint, outcome])
            .inc();
    }

    /// Counts one refused API key (or missing session).
    pub(crate) fn record_api_key_rejection(&self) {
        self.api_key_rejections.inc();
    }

    /// Counts one request turned away after failed authentication (429).
    pub(crate) fn record_throttled(&self) {
        self.edge_refusals.with_label_values(&["throttled"]).inc();
    }

    /// Counts one connection past `--max-connections`.
    pub(crate) fn record_connection_refused(&self) {
        self.edge_refusals.with_label_values(&["connections"]).inc();
    }

    /// Counts one upload past `--max-uploads`.
    pub(crate) fn record_upload_refused(&self) {
        self.edge_refusals.with_label_values(&["uploads"]).inc();
    }

    /// Counts one request cut for being too slow.
    pub(crate) fn record_timeout(&self) {
        self.edge_refusals.with_label_values(&["timeout"]).inc();
    }

    /// Samples the queue's depth at `now_ms` if no sample was taken this second (after API
    /// calls; the chart's own polls and scrapes sample every time).
    pub(crate) fn sample_if_due(&self, now_ms: u64, stats: impl FnOnce() -> Stats) {
        if self.sample_due(now_ms) {
            self.sample(now_ms, &stats());
        }
    }

    /// Whether an opportunistic sample is due at `now_ms` (at most one per second).
    fn sample_due(&self, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        self.sampled_s.swap(second, Ordering::Relaxed) != second
    }

    /// Records the queue's depth at `now_ms`.
    pub(crate) fn sample(&self, now_ms: u64, stats: &Stats) {
        let minute = now_ms - now_ms % MINUTE_MS;
        let sample = DepthSample {
            t: minute,
            queued: stats.count(TaskStatus::Queued) as u64,
            running: (stats.count(TaskStatus::Assigned) + stats.count(TaskStatus::InProgress))
                as u64,
        };
        let mut depth = self.depth.lock();
        match depth.back_mut() {
            Some(last) if last.t == minute => *last = sample,
            // A clock that went back: keep the history ordered, overwrite the latest.
            Some(last) if last.t > minute => {
                *last = DepthSample {
                    t: last.t,
                    ..sample
                }
            }
            _ => depth.push_back(sample),
        }
        while depth
            .front()
            .is_some_and(|s| s.t.saturating_add(DEPTH_MINUTES * MINUTE_MS) <= minute)
        {
            depth.pop_front();
        }
    }

    /// The last hour up to `now_ms`, one point per minute, oldest first. A minute without a
    /// sample carries the previous minute's value (the depth only changes through calls,
    /// which sample); minutes before the first sample are left out.
    pub(crate) fn depth_history(&self, now_ms: u64) -> Vec<DepthSample> {
        let now_minute = now_ms - now_ms % MINUTE_MS;
        let first = now_minute.saturating_sub((DEPTH_MINUTES - 1) * MINUTE_MS);
        let depth = self.depth.lock();
        let mut out = Vec::with_capacity(DEPTH_MINUTES as usize);
        let mut samples = depth.iter().peekable();
        let mut current: Option<DepthSample> = None;
        for t in (0..DEPTH_MINUTES).map(|i| first.saturating_add(i * MINUTE_MS)) {
            if t > now_minute {
                break;
            }
            while let Some(s) = samples.next_if(|s| s.t <= t) {
                current = Some(*s);
            }
            if let Some(c) = current {
                out.push(DepthSample { t, ..c });
            }
        }
        out
    }

    /// `/metrics`: the queue's statistics and the server's counters in the Prometheus text
    /// exposition format (version 0.0.4).
    pub(crate) fn render(&self, stats: &Stats, kept: &Kept) -> Result<String, prometheus::Error> {
        let registry = Registry::new();
        for (name, help, value) in [
            (
                "scan_queue_results",
                "Result files kept (one per completed task, until retention deletes it).",
                kept.results,
            ),
            (
                "scan_queue_result_bytes",
                "Bytes of the result files kept.",
                kept.result_bytes,
            ),
            (
                "scan_queue_webhook_deliveries_pending",
                "Webhook deliveries waiting in the outbox (retrying included).",
                kept.webhooks_pending,
            ),
            (
                "scan_queue_active",
                "1 on the server that changes the queue (always with a data dir), 0 on a PostgreSQL standby.",
                u64::from(kept.active),
            ),
        ] {
            let gauge = IntGauge::new(name, help)?;
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            registry.register(Box::new(gauge))?;
        }
        for (name, help, value) in [
            (
                "scan_queue_webhook_deliveries_total",
                "Webhook deliveries a receiver accepted.",
                kept.webhooks_delivered,
            ),
            (
                "scan_queue_webhook_deliveries_failed_total",
                "Webhook deliveries given up after their last attempt (or when the outbox was full).",
                kept.webhooks_given_up,
            ),
        ] {
            let counter = IntCounter::new(name, help)?;
            counter.inc_by(value);
            registry.register(Box::new(counter))?;
        }
        let tasks = IntGaugeVec::new(
            Opts::new(
                "scan_queue_tasks",
                "Retained tasks per status (finished tasks until evicted).",
            ),
            &["status"],
        )?;
        for status in TaskStatus::ALL {
            tasks
                .with_label_values(&[status.name()])
                .set(i64::try_from(stats.count(status)).unwrap_or(i64::MAX));
        }
        registry.register(Box::new(tasks))?;
        let agents = IntGauge::new(
            "scan_queue_agents",
            "Live (registered, not revoked) scan agents.",
        )?;
        agents.set(i64::try_from(stats.agents).unwrap_or(i64::MAX));
        registry.register(Box::new(agents))?;
        let c = &stats.counters;
        let counters: [(&str, &str, u64); 13] = [
            ("scan_queue_scans_queued_total", "Scans queued.", c.queued),
            (
                "scan_queue_assignments_total",
                "Assignments of a task to an agent.",
                c.assignments,
            ),
            (
                "scan_queue_status_updates_total",
                "Status updates accepted.",
                c.status_updates,
            ),
            (
                "scan_queue_completions_total",
                "Tasks completed successfully.",
                c.completions,
            ),
            (
                "scan_queue_failures_total",
                "Tasks failed by their agent.",
                c.failures,
            ),
            (
                "scan_queue_cancellations_total",
                "Tasks cancelled by an administrator.",
                c.cancellations,
            ),
            (
                "scan_queue_lease_expiries_total",
                "Leases that ran out.",
                c.lease_expiries,
            ),
            (
                "scan_queue_requeues_total",
                "Tasks put back in the queue (lease expiry or agent revoked).",
                c.requeues,
            ),
            (
                "scan_queue_timeouts_total",
                "Tasks timed out (last lease ran out, or deadline passed).",
                c.timeouts,
            ),
            (
                "scan_queue_agents_registered_total",
                "Scan agents registered.",
                c.agents_registered,
            ),
            (
                "scan_queue_agents_revoked_total",
                "Scan agents revoked.",
                c.agents_revoked,
            ),
            (
                "scan_queue_evicted_total",
                "Finished tasks evicted past the retention bound.",
                c.evicted,
            ),
            (
                "scan_queue_rejected_key_checks_total",
                "Agent calls refused by a scan agent key or task key check.",
                stats.rejected_key_checks,
            ),
        ];
        for (name, help, value) in counters {
            let counter = IntCounter::new(name, help)?;
            counter.inc_by(value);
            registry.register(Box::new(counter))?;
        }
        registry.register(Box::new(self.api_key_rejections.clone()))?;
        registry.register(Box::new(self.edge_refusals.clone()))?;
        registry.register(Box::new(self.http_requests.clone()))?;
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_history_fills_forward_and_forgets_after_an_hour() {
        let m = Metrics::new();
        let mut q = scan_queue::Queue::new(
            scan_queue::Config::default(),
            scan_queue::KeySource::from_seed([1; 32]),
        )
        .unwrap();
        let t0 = 1_000 * MINUTE_MS;
        m.sample(t0, &q.stats());
        q.queue_scan(
            t0,
            scan_queue::NewScan::new(scan_queue::ApplicationId(1), "s"),
        )
        .unwrap();
        m.sample(t0 + 3 * MINUTE_MS + 5, &q.stats());
        let h = m.depth_history(t0 + 4 * MINUTE_MS);
        let queued: Vec<u64> = h.iter().map(|s| s.queued).collect();
        assert_eq!(queued, [0, 0, 0, 1, 1]);
        assert_eq!(h[0].t, t0);
        let later = t0 + 200 * MINUTE_MS;
        let h = m.depth_history(later);
        assert_eq!(h.len(), DEPTH_MINUTES as usize);
        assert!(h.iter().all(|s| s.queued == 1));
        m.sample(later, &q.stats());
        assert_eq!(m.depth.lock().len(), 1);
        // Any clock value, without overflow.
        m.sample(u64::MAX, &q.stats());
        assert_eq!(m.depth_history(u64::MAX).len(), 1);
        assert!(m.depth_history(0).is_empty());
        assert!(m.sample_due(5_000));
        assert!(!m.sample_due(5_999));
        assert!(m.sample_due(6_000));
    }
}
