//! The results API (ours): a task's result file, byte for byte, and an application's results,
//! newest task first, paged. Same prefixes and authentication as every call.

use super::{Failure, reply_json, tagged};
use crate::app::App;
use crate::auth::{Auth, authenticate};
use crate::ops;
use crate::state::ResultRecord;
use crate::storage::ResultSource;
use crate::wire::{ResultObject, ResultsPage};
use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_DISPOSITION, CONTENT_TYPE, ETAG, IF_NONE_MATCH, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scan_queue::{ApplicationId, TaskId};
use std::sync::Arc;
use tower::ServiceExt;

/// The default number of results on a page.
const DEFAULT_PAGE: usize = 100;

/// `…/tasks/{taskId}/result`: the file, with `Content-Disposition: attachment`, its content
/// type and `ETag` (its SHA-256); ranges and conditional requests as tower-http's `ServeFile`
/// serves them.
pub(crate) async fn download(State(app): State<Arc<App>>, request: Request) -> Response {
    if let Err(mut f) = authenticated(&app, &request) {
        if f.status == StatusCode::OK {
            f.status = StatusCode::UNAUTHORIZED;
        }
        return tagged(super::reply(Err(f)), "result", "unauthenticated");
    }
    serve_result(&app, request, "result").await
}

/// The result file of the task the path names (`…/{taskId}/result`), for a request already
/// authenticated (the API's key, or the page's session); failures as envelopes, counted as
/// `endpoint`.
pub(crate) async fn serve_result(app: &App, request: Request, endpoint: &'static str) -> Response {
    let outcome = |response: Response, outcome| tagged(response, endpoint, outcome);
    let fail = |status, message: String, label| {
        outcome(
            super::reply(Err(Failure::with_status(status, message))),
            label,
        )
    };
    let Some(task) = segment_before(&request, "result").and_then(parse_id) else {
        return fail(StatusCode::NOT_FOUND, "No such task.".into(), "not_found");
    };
    let (record, source) = match ops::result_of(app, TaskId(task)) {
        Ok(found) => found,
        Err(e) => return fail(StatusCode::NOT_FOUND, Failure::from(e).message, "not_found"),
    };
    let etag = format!("\"{}\"", record.sha256);
    if request
        .headers()
        .get(IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        set(&mut response, ETAG, &etag);
        return outcome(response, "ok");
    }
    let path = match source {
        ResultSource::File(path) => path,
        ResultSource::Stream(from) => {
            let response = stream_range(&request, record.size, from);
            return outcome(headed(response, &record, &etag), "ok");
        }
    };
    let served = tower_http::services::ServeFile::new(path)
        .oneshot(request)
        .await;
    let response = match served {
        Ok(r) if r.status() == StatusCode::NOT_FOUND => {
            tracing::error!(task, file = %record.file, "a result's file is missing");
            return fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                crate::wire::INTERNAL_ERROR.into(),
                "error",
            );
        }
        Ok(r) => r.map(axum::body::Body::new),
        Err(never) => match never {},
    };
    outcome(headed(response, &record, &etag), "ok")
}

/// A result's headers on its file's `response`.
fn headed(mut response: Response, record: &ResultRecord, etag: &str) -> Response {
    set(&mut response, ETAG, etag);
    set(&mut response, CONTENT_TYPE, &record.served_content_type());
    set(&mut response, X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        &mut response,
        CONTENT_DISPOSITION,
        &format!("attachment; filename=\"{}\"", attachment_name(record)),
    );
    response
}

/// A streamed file of `size` bytes (`from` reads it from an offset), whole or the one range
/// the request asks for, answered as tower-http's `ServeFile` answers for a local file: 206
/// with `Content-Range`, or 416 for a range it cannot serve (several ranges included).
fn stream_range(
    request: &Request,
    size: u64,
    from: Box<dyn FnOnce(u64) -> crate::storage::ByteStream + Send>,
) -> Response {
    use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
    use futures_util::StreamExt;
    let range = request.headers().get(RANGE).map(|v| {
        v.to_str()
            .map_err(|_| ())
            .and_then(|v| http_range_header::parse_range_header(v).map_err(|_| ()))
            .and_then(|r| r.validate(size).map_err(|_| ()))
    });
    let (status, start, len) = match range.as_ref().map(|r| r.as_deref()) {
        None => (StatusCode::OK, 0, size),
        Some(Ok([range])) => (
            StatusCode::PARTIAL_CONTENT,
            *range.start(),
            if size == 0 {
                0
            } else {
                range.end() - range.start() + 1
            },
        ),
        Some(_) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            set(&mut response, CONTENT_RANGE, &format!("bytes */{size}"));
            return response;
        }
    };
    // The stream from `start`, cut after `len` bytes.
    let body = from(start).scan(len, |left, chunk| {
        let item = match chunk {
            Ok(_) if *left == 0 => None,
            Ok(mut bytes) => {
                let keep = bytes
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                bytes.truncate(keep);
                *left -= keep as u64;
                Some(Ok(bytes))
            }
            Err(e) => Some(Err(e)),
        };
        std::future::ready(item)
    });
    let mut response = Response::new(axum::body::Body::from_stream(body));
    *response.status_mut() = status;
    set(&mut response, ACCEPT_RANGES, "bytes");
    set(&mut response, CONTENT_LENGTH, &len.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        let end = (start + len).saturating_sub(1);
        set(
            &mut response,
            CONTENT_RANGE,
            &format!("bytes {start}-{end}/{size}"),
        );
    }
    response
}

/// `…/applications/{appId}/results?limit=&before=`: a [`ResultsPage`] in an envelope.
pub(crate) async fn list(State(app): State<Arc<App>>, request: Request) -> Response {
    let result = (|| -> Result<ResultsPage, Failure> {
        authenticated(&app, &request)?;
        let application = segment_before(&request, "results")
            .ok_or_else(|| Failure::new("Missing application id."))?;
        let application = ApplicationId(parse_id(application).ok_or_else(|| {
            Failure::new(crate::wire::not_a_positive_integer("appId", application))
        })?);
        let query = request.uri().query().unwrap_or("");
        let mut params = super::params::Params::default();
        params.add_form(
            query.as_bytes(),
            super::params::ParseLimits {
                field_bytes: 1024,
                form_bytes: 4096,
            },
        )?;
        let limit = params
            .optional_positive_int("limit")?
            .map_or(DEFAULT_PAGE, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let before = params.optional_positive_int("before")?.map(TaskId);
        let (page, more) = ops::results_of_application(&app, application, before, limit)?;
        let base = api_base(&request);
        let next_path = more.then(|| {
            let last = page.last().map_or(0, |r| r.task.0);
            format!(
                "{base}/applications/{application}/results?before={last}&limit={}",
                limit.clamp(1, ops::MAX_RESULTS_PAGE)
            )
        });
        let results = page.iter().map(|r| object(&base, r)).collect();
        Ok(ResultsPage { results, next_path })
    })();
    let label = match &result {
        Ok(_) => "ok",
        Err(f) if f.is_auth() => "unauthenticated",
        Err(_) => "refused",
    };
    tagged(reply_json(result), "results", label)
}

/// The API key check of every call, from the header or the query's `apiKey` (throttled per
/// client address as every key check).
fn authenticated(app: &App, request: &Request) -> Result<(), Failure> {
    let peer = crate::edge::peer(request.extensions());
    app.auth_blocked(peer)?;
    let query_key = request.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "apiKey")
            .map(|(_, v)| v.into_owned())
    });
    match authenticate(
        &app.api_keys,
        app.clock.now_ms(),
        request.headers().get(AUTHORIZATION),
        query_key.as_deref(),
    ) {
        Auth::Yes => Ok(()),
        _ => Err(app.auth_failed(peer, "results")),
    }
}

/// The path segment before the last one, when the last one is `last`.
fn segment_before<'a>(request: &'a Request, last: &str) -> Option<&'a str> {
    let mut segments = request.uri().path().rsplit('/');
    (segments.next()? == last).then(|| segments.next())?
}

fn parse_id(raw: &str) -> Option<u64> {
    raw.parse::<u64>().ok().filter(|id| *id > 0)
}

/// `/threadfix/rest/{version}` or `/rest/{version}`, as the request was addressed
/// (`/rest/tasks/…` has no version: `latest`).
fn api_base(request: &Request) -> String {
    let path = request.uri().path();
    let (prefix, rest) = match path.strip_prefix("/threadfix") {
        Some(rest) => ("/threadfix", rest),
        None => ("", path),
    };
    let version = rest
        .strip_prefix("/rest/")
        .and_then(|r| r.split('/').next())
        .filter(|v| *v != "tasks" && *v != "applications")
        .unwrap_or("latest");
    format!("{prefix}/rest/{version}")
}

fn object(base: &str, r: &ResultRecord) -> ResultObject {
    ResultObject {
        task_id: r.task.0,
        application_id: r.application.0,
        scanner: r.scanner.clone(),
        file_name: r.file_name.clone(),
        size: r.size,
        sha256: r.sha256.clone(),
        content_type: r.served_content_type(),
        received_time: r.received_ms,
        report: r.report.clone(),
        findings: r.findings,
        download_path: format!("{base}/tasks/{}/result", r.task),
    }
}

/// A file name safe in a quoted `Content-Disposition`: `[A-Za-z0-9._-]`, never empty.
pub(crate) fn attachment_name(r: &ResultRecord) -> String {
    let name: String = r
        .file_name
        .as_deref()
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(100)
        .collect();
    if name.trim_matches('.').is_empty() {
        format!("task-{}-result", r.task)
    } else {
        name
    }
}

fn set(response: &mut Response, name: axum::http::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}
