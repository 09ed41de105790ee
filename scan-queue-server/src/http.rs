//! HTTP: routes, method and API key checks, and the envelope every answer is wrapped in.

use crate::auth::from_authorization;
use crate::ops::{Op, Reply};
use crate::params::{Failure, Params, ParseLimits};
use crate::server::App;
use crate::wire::{self, Envelope};
use axum::Json;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use std::sync::Arc;

/// Room for multipart framing and text fields beside the largest upload.
const MULTIPART_SLACK_BYTES: usize = 1024 * 1024;
/// The smallest bound on one text parameter.
const MIN_FIELD_BYTES: usize = 64 * 1024;

/// Every endpoint under `/rest/tasks/X`, `/rest/{version}/tasks/X` and both under
/// `/threadfix`; anything else is a 404 envelope.
pub(crate) fn router(app: Arc<App>) -> axum::Router {
    let body_limit = usize::try_from(app.max_upload_bytes)
        .unwrap_or(usize::MAX)
        .max(app.max_config_bytes)
        .saturating_add(MULTIPART_SLACK_BYTES);
    let router = axum::Router::new()
        .route("/rest/tasks/{op}", any(dispatch))
        .route("/rest/{version}/tasks/{op}", any(dispatch))
        .route("/threadfix/rest/tasks/{op}", any(dispatch))
        .route("/threadfix/rest/{version}/tasks/{op}", any(dispatch));
    crate::ui::routes(router)
        .fallback(unknown_endpoint)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&app),
            count_request,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(app)
}

/// What a response was, for `scan_queue_http_requests_total{endpoint, outcome}`: set by
/// every handler as a response extension.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outcome {
    pub(crate) endpoint: &'static str,
    pub(crate) outcome: &'static str,
}

/// Counts every response by its [`Outcome`] (axum's own answers, e.g. a wrong method on a
/// page route, count as `other`).
async fn count_request(State(app): State<Arc<App>>, response: Response) -> Response {
    let (endpoint, outcome) = match response.extensions().get::<Outcome>() {
        Some(o) => (o.endpoint, o.outcome),
        None => (
            "other",
            if response.status().is_success() {
                "ok"
            } else {
                "refused"
            },
        ),
    };
    app.metrics.record_request(endpoint, outcome);
    response
}

fn tagged(mut response: Response, endpoint: &'static str, outcome: &'static str) -> Response {
    response
        .extensions_mut()
        .insert(Outcome { endpoint, outcome });
    response
}

fn reply(result: Result<Reply, Failure>) -> Response {
    match result {
        Ok(object) => Json(Envelope::success(object)).into_response(),
        Err(failure) => (
            failure.status,
            Json(Envelope::<Reply>::failure(failure.message)),
        )
            .into_response(),
    }
}

async fn unknown_endpoint(request: Request) -> Response {
    let path: String = request.uri().path().chars().take(100).collect();
    let response = reply(Err(Failure::with_status(
        StatusCode::NOT_FOUND,
        format!("Unknown endpoint: {path}. Endpoints are /rest/{{version}}/tasks/{{name}}."),
    )));
    tagged(response, "unknown", "not_found")
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    reply(Err(Failure::with_status(
        StatusCode::INTERNAL_SERVER_ERROR,
        wire::INTERNAL_ERROR,
    )))
}

async fn dispatch(State(app): State<Arc<App>>, request: Request) -> Response {
    let name = request.uri().path().rsplit('/').next().unwrap_or("");
    let Some(op) = Op::from_name(name) else {
        return unknown_endpoint(request).await;
    };
    let result = handle(&app, op, request).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(failure) => {
            // The message never holds a secret; the request (whose query may) is not logged.
            tracing::info!(op = op.name(), reason = %failure.message, "refused");
            if failure.message == wire::AUTH_FAILED {
                app.metrics.record_api_key_rejection();
                "unauthenticated"
            } else {
                "refused"
            }
        }
    };
    app.sample_depth_if_due();
    tagged(reply(result), op.name(), outcome)
}

async fn handle(app: &App, op: Op, request: Request) -> Result<Reply, Failure> {
    let method = request.method();
    if method != Method::POST && !(op.is_get() && method == Method::GET) {
        let allowed = if op.is_get() { "GET or POST" } else { "POST" };
        return Err(Failure::with_status(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "Method {method} is not allowed on tasks/{}; use {allowed}.",
                op.name()
            ),
        ));
    }
    let field_bytes = app.max_agent_config_bytes.max(MIN_FIELD_BYTES);
    let limits = ParseLimits {
        field_bytes,
        form_bytes: field_bytes
            .saturating_mul(2)
            .saturating_add(MIN_FIELD_BYTES),
    };
    let mut params = Params::default();
    if let Some(query) = request.uri().query() {
        params.add_form(query.as_bytes(), limits)?;
    }
    // Authenticate before reading the body when the header or the query carries the key.
    let auth_failed = || Failure::new(wire::AUTH_FAILED);
    let mut authenticated = false;
    if let Some(header) = request.headers().get(AUTHORIZATION) {
        let presented = header.to_str().ok().and_then(from_authorization);
        if !presented.is_some_and(|k| app.api_key.matches(k)) {
            return Err(auth_failed());
        }
        authenticated = true;
    } else if let Some(key) = params.get("apiKey") {
        if !app.api_key.matches(key.trim()) {
            return Err(auth_failed());
        }
        authenticated = true;
    }
    params
        .add_body(
            request,
            limits,
            &app.data,
            &app.api_key,
            authenticated,
            |part| op.file_sink(app, part),
        )
        .await?;
    if !authenticated
        && !params
            .get("apiKey")
            .is_some_and(|k| app.api_key.matches(k.trim()))
    {
        return Err(auth_failed());
    }
    app.run(op, params).await
}
