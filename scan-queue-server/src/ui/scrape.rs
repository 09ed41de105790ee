//! `GET /metrics`: the Prometheus scrape (see `metrics.rs` for what it holds).

use crate::app::App;
use crate::http::Failure;
use crate::http::tagged;
use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The API key from `Authorization: APIKEY {key}` or `Authorization: Bearer {key}`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    crate::auth::from_authorization(value).or_else(|| {
        let (scheme, key) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("Bearer").then(|| key.trim())
    })
}

/// `GET /metrics`: needs the API key (header `Authorization: APIKEY {key}` or
/// `Authorization: Bearer {key}`, as Prometheus's `authorization` scrape setting sends) or
/// a page session.
pub(crate) async fn scrape(State(app): State<Arc<App>>, request: Request) -> Response {
    let headers = request.headers();
    let peer = crate::edge::peer(request.extensions());
    let refusal = match presented_key(headers) {
        Some(key) => app.auth_blocked(peer).err().or_else(|| {
            let ok = app.api_keys.matches(key, app.clock.now_ms());
            (!ok).then(|| app.auth_failed(peer, "scrape"))
        }),
        None => super::session(&app, headers).is_none().then(|| {
            app.metrics.record_api_key_rejection();
            Failure::new(crate::wire::AUTH_FAILED)
        }),
    };
    let tag = |mut r: Response, outcome: &'static str| {
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        tagged(r, "metrics", outcome)
    };
    if let Some(failure) = refusal {
        let status = match failure.status {
            StatusCode::OK => StatusCode::UNAUTHORIZED,
            other => other,
        };
        let mut r = (status, [(WWW_AUTHENTICATE, "APIKEY")], failure.message).into_response();
        if let Some(secs) = failure.retry_after_secs {
            r.headers_mut().insert(RETRY_AFTER, secs.into());
        }
        return tag(r, "unauthenticated");
    }
    let now_ms = app.clock.now_ms();
    let (stats, kept) = app.read(|s| {
        let (results, result_bytes) = s.results().totals();
        let (pending, delivered, given_up) = s.webhooks().counts();
        let kept = crate::metrics::Kept {
            results: results as u64,
            result_bytes,
            webhooks_pending: pending as u64,
            webhooks_delivered: delivered,
            webhooks_given_up: given_up,
            active: app.is_active(),
        };
        (s.queue.stats(), kept)
    });
    app.metrics.sample(now_ms, &stats);
    match app.metrics.render(&stats, &kept) {
        Ok(text) => tag(
            ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
            "ok",
        ),
        Err(e) => {
            tracing::error!(error = %e, "could not render /metrics");
            tag(StatusCode::INTERNAL_SERVER_ERROR.into_response(), "error")
        }
    }
}
