//! The JSON behind the live page (`app.js` polls it): the listing as the page's query selects
//! it, the agents, the counts and the depth chart; and one task with its history. Only what
//! the page shows, never a key.

use super::listing::{self, AgentRow, Detail, Listing, Row};
use super::{parse_filter, query, session, tagged, task_detail, unauthenticated};
use crate::app::App;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use scan_queue::{Stats, TaskStatus};
use serde_json::{Value, json};
use std::sync::Arc;

fn answer(status: StatusCode, body: &Value, endpoint: &'static str) -> Response {
    let response = (
        status,
        [(CONTENT_TYPE, "application/json")],
        Body::from(body.to_string()),
    )
        .into_response();
    tagged(
        response,
        endpoint,
        if status.is_success() {
            "ok"
        } else {
            "not_found"
        },
    )
}

pub(super) fn row(r: &Row) -> Value {
    json!({
        "id": r.id.0,
        "application": r.application,
        "scanner": r.scanner,
        "targetUrl": r.target_url,
        "status": r.status.name(),
        "sinceMs": r.since_ms,
        "attempts": r.attempts,
        "createdMs": r.create_ms,
        "startedMs": r.start_ms,
        "endedMs": r.end_ms,
        "agent": r.agent.map(|a| a.to_string()),
        "agentName": r.agent_name,
        "reason": r.reason,
        "retryOf": r.retry_of.map(|t| t.0),
        "retriedAs": r.retried_as.map(|t| t.0),
        "findings": r.findings.map(|f| json!({
            "high": f.high, "medium": f.medium, "low": f.low, "informational": f.informational,
        })),
    })
}

fn agent(a: &AgentRow) -> Value {
    json!({
        "id": a.id.to_string(),
        "name": a.name,
        "host": a.host,
        "os": a.os,
        "config": a.config,
        "registeredMs": a.registered_ms,
        "lastSeenMs": a.last_seen_ms,
        "live": a.live,
        "tasks": a.tasks.iter().map(|(t, since)| json!({"id": t.0, "sinceMs": since})).collect::<Vec<_>>(),
    })
}

fn counts(stats: &Stats) -> Value {
    TaskStatus::ALL
        .into_iter()
        .map(|s| (s.name().to_owned(), stats.count(s).into()))
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

fn listing_json(l: &Listing, sort: listing::Sort) -> Value {
    json!({
        "rows": l.rows.iter().map(row).collect::<Vec<_>>(),
        "total": l.total,
        "totalExact": l.total_exact,
        "next": l.next.map(|k| k.encode(sort)),
        "prev": l.prev.map(|k| k.encode(sort)),
        "budgetSpent": l.budget_spent,
    })
}

/// `GET /tasks/live.json?<the page's query>`.
pub(super) async fn list(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    if session(&app, &headers).is_none() {
        return unauthenticated(&app, super::prefix(&uri), "live", false);
    }
    let filter = parse_filter(&app, &query(&uri));
    let now_ms = app.clock.now_ms();
    let (listing, stats, (agents, total, live)) = app.read(|s| {
        (
            listing::page(s, &filter),
            s.queue.stats(),
            listing::agents(s, &app.presence, now_ms),
        )
    });
    app.metrics.sample(now_ms, &stats);
    let body = json!({
        "now": now_ms,
        "counts": counts(&stats),
        "tasks": listing_json(&listing, filter.sort),
        "agents": {
            "total": total,
            "live": live,
            "rows": agents.iter().map(agent).collect::<Vec<_>>(),
        },
        "depth": app.metrics.depth_history(now_ms),
    });
    answer(StatusCode::OK, &body, "live")
}

pub(super) fn detail(d: &Detail) -> Value {
    let entry = |(id, at, m): &(u64, u64, String)| json!({"id": id, "atMs": at, "message": m});
    json!({
        "task": row(&d.row),
        "timeoutMs": d.timeout_ms,
        "leaseUntilMs": d.lease_until_ms,
        "scanConfig": d.scan_config,
        "hasResult": d.result.is_some(),
        "head": d.head.iter().map(entry).collect::<Vec<_>>(),
        "elided": d.elided,
        "history": d.history.iter().map(entry).collect::<Vec<_>>(),
    })
}

/// `GET /tasks/task/{id}/live.json`.
pub(super) async fn task(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if session(&app, &headers).is_none() {
        return unauthenticated(&app, super::prefix(&uri), "live_task", false);
    }
    match task_detail(&app, &id) {
        Some(d) => {
            let mut body = detail(&d);
            body["now"] = app.clock.now_ms().into();
            answer(StatusCode::OK, &body, "live_task")
        }
        None => answer(
            StatusCode::NOT_FOUND,
            &json!({"error": "No such task (it may have been evicted after finishing)."}),
            "live_task",
        ),
    }
}
