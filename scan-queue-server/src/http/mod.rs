//! HTTP: the API's routes, reading and authenticating a request (`body.rs`, once per
//! request), one [operation](crate::ops) per endpoint, and the ThreadFix envelope every
//! answer is wrapped in. The page (`ui/`) and `/metrics` add their own routes.

mod body;
pub(crate) mod params;
mod results;

pub(crate) use results::serve_result;

use crate::app::App;
use crate::ops::{self, AgentCall, OpError};
use crate::scanners::Scanner;
use crate::wire::{self, AssignmentObject, Envelope, ScanConfigObject, TaskExtras, TaskObject};
use axum::Json;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine;
use body::{FilePart, Received};
use params::{Params, ParseLimits};
use scan_queue::{ApplicationId, ScanConfigId, TaskId};
use std::sync::Arc;

/// Room for multipart framing and text fields beside the largest upload.
const MULTIPART_SLACK_BYTES: usize = 1024 * 1024;
/// The smallest bound on one text parameter.
const MIN_FIELD_BYTES: usize = 64 * 1024;

/// A refused request: the failure envelope's message and the HTTP status to send it with
/// (200, as ThreadFix, except for transport-level problems).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status.
    pub status: StatusCode,
    /// The envelope's `message`.
    pub message: String,
    /// Seconds to put in `Retry-After` (429 and 503 answers).
    pub retry_after_secs: Option<u64>,
}

impl Failure {
    /// A failure answered with HTTP 200, as ThreadFix answers every failure.
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::OK,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// A failure with another HTTP status (unknown endpoint, wrong method).
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 429: the client's address failed authentication too often.
    pub(crate) fn throttled(wait: std::time::Duration) -> Failure {
        let secs = crate::throttle::retry_after_secs(wait);
        Failure {
            retry_after_secs: Some(secs),
            ..Failure::with_status(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many failed authentications from your address; retry in {secs} s."),
            )
        }
    }

    /// 503 with `Retry-After`: a bound of the server is reached for now.
    pub(crate) fn busy(message: impl Into<String>) -> Failure {
        Failure {
            retry_after_secs: Some(1),
            ..Failure::with_status(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// Whether this is the answer to a wrong API key (or a throttled address).
    pub(crate) fn is_auth(&self) -> bool {
        self.message == wire::AUTH_FAILED || self.status == StatusCode::TOO_MANY_REQUESTS
    }
}

impl From<OpError> for Failure {
    fn from(error: OpError) -> Failure {
        match error {
            OpError::Refused(message) => Failure::new(message),
            OpError::Unavailable => Failure::with_status(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server could not persist this change; retry (against the active server, \
                 if this one is stopping or a standby).",
            ),
        }
    }
}

/// One endpoint, `…/tasks/{name}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `queueScan` (POST): queue a scan.
    QueueScan,
    /// `setTaskConfig` (POST multipart): store a scan configuration document.
    SetTaskConfig,
    /// `requestScanAgentKey` (GET): mint a scan agent key.
    RequestScanAgentKey,
    /// `requestTask` (POST): take the oldest matching task.
    RequestTask,
    /// `taskStatusUpdate` (POST): report progress.
    TaskStatusUpdate,
    /// `completeTask` (POST multipart): complete with a result file.
    CompleteTask,
    /// `failTask` (POST): report failure.
    FailTask,
    /// `scanners` (GET): the scanners this server knows.
    Scanners,
}

impl Op {
    /// Every endpoint.
    pub const ALL: [Op; 8] = [
        Op::QueueScan,
        Op::SetTaskConfig,
        Op::RequestScanAgentKey,
        Op::RequestTask,
        Op::TaskStatusUpdate,
        Op::CompleteTask,
        Op::FailTask,
        Op::Scanners,
    ];

    /// The endpoint's name in the path.
    pub fn name(self) -> &'static str {
        match self {
            Op::QueueScan => "queueScan",
            Op::SetTaskConfig => "setTaskConfig",
            Op::RequestScanAgentKey => "requestScanAgentKey",
            Op::RequestTask => "requestTask",
            Op::TaskStatusUpdate => "taskStatusUpdate",
            Op::CompleteTask => "completeTask",
            Op::FailTask => "failTask",
            Op::Scanners => "scanners",
        }
    }

    /// The endpoint with this name.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Whether it is documented as GET (it also takes POST); the others take POST only.
    pub fn is_get(self) -> bool {
        matches!(self, Op::RequestScanAgentKey | Op::Scanners)
    }
}

/// What a successful call answers with (the envelope's `object`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
enum Reply {
    Task(Box<TaskObject>),
    Assignment(Box<AssignmentObject>),
    Config(ScanConfigObject),
    Text(String),
    Names(Vec<String>),
}

/// Every endpoint under `/rest/tasks/X`, `/rest/{version}/tasks/X` and both under
/// `/threadfix`, with the `other` routes (the page's); anything else is a 404 envelope.
/// Every response is counted, and a panicking handler answers an envelope.
pub(crate) fn router(app: Arc<App>, other: axum::Router<Arc<App>>) -> axum::Router {
    let body_limit = usize::try_from(app.limits.upload_bytes)
        .unwrap_or(usize::MAX)
        .max(app.limits.config_bytes)
        .saturating_add(MULTIPART_SLACK_BYTES);
    let other = ["", "/threadfix"]
        .into_iter()
        .fold(other, |router, prefix| {
            router
                .route(
                    &format!("{prefix}/rest/tasks/{{op}}/result"),
                    get(results::download).fallback(get_only),
                )
                .route(
                    &format!("{prefix}/rest/{{version}}/tasks/{{op}}/result"),
                    get(results::download).fallback(get_only),
                )
                .route(
                    &format!("{prefix}/rest/applications/{{app}}/results"),
                    get(results::list).fallback(get_only),
                )
                .route(
                    &format!("{prefix}/rest/{{version}}/applications/{{app}}/results"),
                    get(results::list).fallback(get_only),
                )
        })
        // The page and the results (the API calls are bounded in `dispatch`).
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            app.edge.request_timeout,
        ));
    other
        .route("/ready", get(ready))
        .route("/rest/tasks/{op}", any(dispatch))
        .route("/rest/{version}/tasks/{op}", any(dispatch))
        .route("/threadfix/rest/tasks/{op}", any(dispatch))
        .route("/threadfix/rest/{version}/tasks/{op}", any(dispatch))
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            app.edge.body_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            standby_gate,
        ))
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&app),
            count_request,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(app)
}

/// `GET /ready`: 200 on a server that may change the state, 503 on a standby (a load
/// balancer's health check).
async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.is_active() {
        (StatusCode::OK, "active\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "standby\n").into_response()
    }
}

/// On a standby, every call but `/ready` and `/metrics` is refused with 503 and a failure
/// envelope naming the active server.
async fn standby_gate(
    State(app): State<Arc<App>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let standby = match app.storage.standby() {
        Some(s) if path != "/ready" && path != "/metrics" => s,
        _ => return next.run(request).await,
    };
    let failure = Failure::with_status(
        StatusCode::SERVICE_UNAVAILABLE,
        wire::standby(standby.active.as_deref()),
    );
    tagged(reply(Err(failure)), "standby", "standby")
}

/// What a response was, for `scan_queue_http_requests_total{endpoint, outcome}`: set by
/// every handler as a response extension.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outcome {
    pub(crate) endpoint: &'static str,
    pub(crate) outcome: &'static str,
}

/// Marks a response with its [`Outcome`].
pub(crate) fn tagged(
    mut response: Response,
    endpoint: &'static str,
    outcome: &'static str,
) -> Response {
    response
        .extensions_mut()
        .insert(Outcome { endpoint, outcome });
    response
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

fn reply(result: Result<Reply, Failure>) -> Response {
    reply_json(result)
}

/// An envelope: the object on success, the failure's message and status otherwise.
fn reply_json<T: serde::Serialize>(result: Result<T, Failure>) -> Response {
    match result {
        Ok(object) => Json(Envelope::success(object)).into_response(),
        Err(failure) => {
            let mut response = (
                failure.status,
                Json(Envelope::<T>::failure(failure.message)),
            )
                .into_response();
            if let Some(secs) = failure.retry_after_secs {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, secs.into());
            }
            response
        }
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

/// A method a known path does not take (`POST /`, `POST /ready`, `POST /tasks/summary`, …): a
/// 405 envelope, where axum would answer an empty body.
async fn method_not_allowed(request: Request) -> Response {
    let path: String = request.uri().path().chars().take(100).collect();
    let response = reply(Err(Failure::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method {} is not allowed for {path}.", request.method()),
    )));
    tagged(response, "unknown", "refused")
}

/// Another method than GET on a results path: a 405 envelope, as for the operations.
async fn get_only(request: Request) -> Response {
    let response = reply(Err(Failure::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method {} is not allowed here; use GET.", request.method()),
    )));
    tagged(response, "results", "refused")
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
    let result = if op == Op::CompleteTask {
        // An upload: bounded by the body timeout and the minimum upload rate instead.
        handle(&app, op, request).await
    } else {
        tokio::time::timeout(app.edge.request_timeout, handle(&app, op, request))
            .await
            .unwrap_or_else(|_| {
                app.metrics.record_timeout();
                Err(Failure::with_status(
                    StatusCode::REQUEST_TIMEOUT,
                    "The request took longer than the server's request timeout.",
                ))
            })
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(failure) => {
            if failure.is_auth() {
                // Counted and logged (with the client's address) by App::auth_failed.
                "unauthenticated"
            } else {
                // The message never holds a secret; the request (whose query may) is not
                // logged.
                if failure.message == wire::NO_TASK_FOUND {
                    // An idle agent's poll: most of a quiet queue's traffic.
                    tracing::debug!(op = op.name(), "no task found");
                } else {
                    tracing::info!(op = op.name(), reason = %failure.message, "refused");
                }
                "refused"
            }
        }
    };
    app.metrics
        .sample_if_due(app.clock.now_ms(), || app.read(|s| s.queue.stats()));
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
    let field_bytes = app.limits.agent_config_bytes.max(MIN_FIELD_BYTES);
    let limits = ParseLimits {
        field_bytes,
        form_bytes: field_bytes
            .saturating_mul(2)
            .saturating_add(MIN_FIELD_BYTES),
    };
    let received = body::receive(app, op, request, limits).await?;
    run(app, op, received).await
}

/// Runs an endpoint on a read, authenticated request.
async fn run(app: &App, op: Op, received: Received) -> Result<Reply, Failure> {
    let Received {
        params: p,
        file,
        _upload,
    } = received;
    match op {
        Op::QueueScan => {
            let application = ApplicationId(p.positive_int("applicationId")?);
            let scanner = scanner(app, p.required("scannerType")?, false)?;
            let config = p.optional_positive_int("scanConfigId")?.map(ScanConfigId);
            let answer =
                ops::queue_scan(app, application, scanner, p.optional("targetURL"), config).await?;
            Ok(task_reply(app, &answer, None))
        }
        Op::SetTaskConfig => {
            let application = ApplicationId(p.positive_int("appId")?);
            let scanner = scanner(app, p.required("scannerType")?, true)?;
            let Some(FilePart::Memory {
                bytes,
                content_type,
            }) = file
            else {
                return Err(Failure::new(wire::missing_parameter("file")));
            };
            let object =
                ops::set_task_config(app, application, scanner, content_type.as_deref(), bytes)
                    .await?;
            Ok(Reply::Config(object))
        }
        Op::RequestScanAgentKey => Ok(Reply::Text(ops::register_agent(app).await?)),
        Op::RequestTask => {
            let scanners = p.required("scanners")?;
            let agent_key = p.required("scanAgentSecureKey")?;
            let from_file = match &file {
                Some(FilePart::Memory { bytes, .. }) => Some(String::from_utf8_lossy(bytes)),
                _ => None,
            };
            let agent_config = p
                .get("agentConfig")
                .map(std::borrow::Cow::Borrowed)
                .or(from_file)
                .unwrap_or_default();
            let assignment = ops::request_task(app, scanners, agent_key, &agent_config)
                .await?
                .ok_or_else(|| Failure::new(wire::NO_TASK_FOUND))?;
            let config = assignment
                .config
                .map(|doc| base64::engine::general_purpose::STANDARD.encode(&doc.bytes));
            AssignmentObject::new(&assignment.task, agent_key, config)
                .map(|a| Reply::Assignment(Box::new(a)))
                .ok_or_else(|| Failure::new(wire::INTERNAL_ERROR))
        }
        Op::TaskStatusUpdate => {
            let (call, message) = agent_call(&p, true)?;
            ops::update_status(app, call, message).await?;
            Ok(Reply::Text(wire::UPDATE_SUCCEEDED.to_owned()))
        }
        Op::CompleteTask => {
            let (call, _) = agent_call(&p, false)?;
            let Some(FilePart::Staged(upload)) = file else {
                return Err(Failure::new(wire::missing_parameter("file")));
            };
            let answer = ops::complete_task(app, call, *upload).await?;
            Ok(task_reply(
                app,
                &answer,
                Some((call.task_key, call.agent_key)),
            ))
        }
        Op::FailTask => {
            let (call, message) = agent_call(&p, true)?;
            Ok(Reply::Text(ops::fail_task(app, call, message).await?))
        }
        Op::Scanners => Ok(Reply::Names(
            app.scanners.iter().map(|s| s.name.clone()).collect(),
        )),
    }
}

/// The task id, the message (when `with_message`; else empty) and both keys of an agent
/// call, checked in the order ThreadFix documents them.
fn agent_call(p: &Params, with_message: bool) -> Result<(AgentCall<'_>, &str), Failure> {
    let task = TaskId(p.positive_int("scanQueueTaskId")?);
    let message = if with_message {
        p.present("message")?
    } else {
        ""
    };
    let call = AgentCall {
        task,
        agent_key: p.required("scanAgentSecureKey")?,
        task_key: p.required("secureTaskKey")?,
    };
    Ok((call, message))
}

/// The scanner a `scannerType` names (display or short name).
fn scanner<'a>(app: &'a App, name: &str, saves_config: bool) -> Result<&'a Scanner, Failure> {
    app.scanners
        .resolve(name)
        .ok_or_else(|| Failure::new(wire::bad_scanner(saves_config, name)))
}

fn task_reply(app: &App, answer: &ops::TaskAnswer, keys: Option<(&str, &str)>) -> Reply {
    let object = TaskObject::new(
        &answer.task,
        TaskExtras {
            scanner_short_name: app.scanners.short_name(answer.task.scanner()),
            scan_config: answer.config.as_ref(),
            keys,
        },
    );
    Reply::Task(Box::new(object))
}
