//! Reading a request: its query string and body (url-encoded or multipart) into [`Params`],
//! a file part into memory or into the storage's staging, and the one authentication check,
//! made before anything reaches the disk.
//!
//! A file part that arrives before the API key is known (the key comes in a later field), or
//! a result file before `completeTask`'s task id and keys, is held in memory up to
//! [`PRE_AUTH_FILE_BYTES`]; a larger one is refused with a message to send them first.
//! ThreadFix's clients send them first: the seed's curl puts the key in the `Authorization`
//! header and the task id and keys in `-F` fields before `file`; the Python client
//! (`ThreadFixProAPI`) sends the key as a header and the rest in the query string; our
//! agent sends fields before the file.

use super::params::{Params, ParseLimits};
use super::{Failure, Op};
use crate::app::App;
use crate::auth::{Auth, authenticate};
use crate::storage::upload::Upload;
use crate::wire;
use axum::extract::{FromRequest, Multipart};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

/// Parts in one multipart body.
const MAX_PARTS: usize = 32;
/// The most of a file part held in memory while the API key is not yet known.
pub(crate) const PRE_AUTH_FILE_BYTES: usize = 64 * 1024;

/// Where an endpoint's file part goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sink {
    /// Staged by the storage, at most this many bytes.
    Storage(u64),
    /// Kept in memory, at most this many bytes.
    Memory(usize),
}

/// A request's file part.
#[derive(Debug)]
pub(crate) enum FilePart {
    /// Kept in memory (scan configs, agent configs).
    Memory {
        bytes: Vec<u8>,
        content_type: Option<String>,
    },
    /// Staged by the storage (result files), not yet synced.
    Staged(Box<Upload>),
}

/// A file part read before the API key was known.
struct Early {
    bytes: Vec<u8>,
    content_type: Option<String>,
    file_name: Option<String>,
    sink: Sink,
}

/// An authenticated request's parameters and file.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) params: Params,
    pub(crate) file: Option<FilePart>,
    /// The upload's place among those in flight, held until the call is answered.
    pub(crate) _upload: Option<OwnedSemaphorePermit>,
}

fn sink(app: &App, op: Op, part: &str) -> Option<Sink> {
    match (op, part) {
        (Op::CompleteTask, "file") => Some(Sink::Storage(app.limits.upload_bytes)),
        (Op::SetTaskConfig, "file") => Some(Sink::Memory(app.limits.config_bytes)),
        (Op::RequestTask, "files") => Some(Sink::Memory(app.limits.agent_config_bytes)),
        _ => None,
    }
}

/// Reads and authenticates a request to `op` within `limits`. An address blocked for failed
/// authentication is refused before anything else; a result file is stored only once the
/// API key, the agent and task keys and the task's state say the call can succeed.
pub(crate) async fn receive(
    app: &App,
    op: Op,
    request: axum::extract::Request,
    limits: ParseLimits,
) -> Result<Received, Failure> {
    let started = Instant::now();
    let peer = crate::edge::peer(request.extensions());
    app.auth_blocked(peer)?;
    let mut params = Params::default();
    if let Some(query) = request.uri().query() {
        params.add_form(query.as_bytes(), limits)?;
    }
    let header = request.headers().get(AUTHORIZATION).cloned();
    let now_ms = app.clock.now_ms();
    let check = |params: &Params| match authenticate(
        &app.api_keys,
        now_ms,
        header.as_ref(),
        params.get("apiKey"),
    ) {
        Auth::No => Err(app.auth_failed(peer, "call")),
        auth => Ok(auth),
    };
    let mut auth = check(&params)?;
    let is_multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    let mut file = None;
    let mut early: Option<Early> = None;
    let mut permit = None;
    if is_multipart {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| Failure::new(format!("Malformed multipart body: {}.", e.body_text())))?;
        let read: Result<(), Failure> = async {
            let mut parts = 0;
            while let Some(mut field) = multipart.next_field().await.map_err(multipart_failure)? {
                parts += 1;
                if parts > MAX_PARTS {
                    return Err(Failure::new(format!(
                        "Too many multipart parts: at most {MAX_PARTS}."
                    )));
                }
                let name = field.name().unwrap_or("").to_owned();
                let Some(sink) = sink(app, op, &name) else {
                    let value = read_limited(&mut field, &name, limits.field_bytes).await?;
                    params.push(name, String::from_utf8_lossy(&value).into_owned())?;
                    continue;
                };
                if file.is_some() || early.is_some() {
                    return Err(Failure::new(format!(
                        "Only one file may be uploaded; got a second '{name}'."
                    )));
                }
                if auth == Auth::NotYet {
                    auth = check(&params)?;
                }
                let content_type = field.content_type().map(str::to_owned);
                let file_name = field.file_name().map(str::to_owned);
                let ready =
                    auth == Auth::Yes && (op != Op::CompleteTask || may_complete(app, &params)?);
                file = match (ready, sink) {
                    (true, Sink::Memory(max)) => Some(FilePart::Memory {
                        bytes: read_limited(&mut field, &name, max).await?,
                        content_type,
                    }),
                    (true, Sink::Storage(max)) => {
                        permit = Some(upload_permit(app)?);
                        let mut upload = app.storage.stage(file_name).await.map_err(io_failure)?;
                        upload.content_type = content_type;
                        while let Some(chunk) = field.chunk().await.map_err(multipart_failure)? {
                            if upload.len + chunk.len() as u64 > max {
                                return Err(too_large(&name, max));
                            }
                            upload.write(&chunk).await.map_err(io_failure)?;
                            too_slow(app, started, upload.len)?;
                        }
                        Some(FilePart::Staged(Box::new(upload)))
                    }
                    (false, _) => {
                        let bytes = read_before_key(&mut field, &name, sink, auth).await?;
                        early = Some(Early {
                            bytes,
                            content_type,
                            file_name,
                            sink,
                        });
                        None
                    }
                };
            }
            Ok(())
        }
        .await;
        if let Err(failure) = read {
            if failure.status != StatusCode::REQUEST_TIMEOUT {
                drain(&mut multipart).await;
            }
            return Err(failure);
        }
    } else {
        let body = axum::body::to_bytes(request.into_body(), limits.form_bytes)
            .await
            .map_err(|e| body_failure(&e, limits.form_bytes))?;
        params.add_form(&body, limits)?;
    }
    if check(&params)? != Auth::Yes {
        return Err(app.auth_failed(peer, "call"));
    }
    if let Some(Early {
        bytes,
        content_type,
        file_name,
        sink,
    }) = early
    {
        file = Some(match sink {
            Sink::Memory(_) => FilePart::Memory {
                bytes,
                content_type,
            },
            Sink::Storage(_) => {
                if !may_complete(app, &params)? {
                    return Err(Failure::new(wire::missing_parameter(
                        missing_key(&params).unwrap_or("scanQueueTaskId"),
                    )));
                }
                permit = Some(upload_permit(app)?);
                let mut upload = app.storage.stage(file_name).await.map_err(io_failure)?;
                upload.content_type = content_type;
                upload.write(&bytes).await.map_err(io_failure)?;
                FilePart::Staged(Box::new(upload))
            }
        });
    }
    Ok(Received {
        params,
        file,
        _upload: permit,
    })
}

/// How much of a refused multipart body is still read (and dropped), and for how long, so
/// that a client still sending it gets to read the refusal (as nginx's lingering close); past
/// either, the connection is closed after the answer. Nothing of it is kept.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(30);

async fn drain(multipart: &mut Multipart) {
    let discard = async {
        let mut left = DRAIN_BYTES;
        while let Ok(Some(mut field)) = multipart.next_field().await {
            while let Ok(Some(chunk)) = field.chunk().await {
                left = left.saturating_sub(chunk.len());
                if left == 0 {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// The agent call's fields `completeTask` needs before its file may be stored.
const CALL_FIELDS: [&str; 3] = ["scanQueueTaskId", "scanAgentSecureKey", "secureTaskKey"];

fn missing_key(params: &Params) -> Option<&'static str> {
    CALL_FIELDS.into_iter().find(|f| params.get(f).is_none())
}

/// For `completeTask`: `false` while the task id or a key has not arrived yet; otherwise the
/// call is checked as it stands (bad parameters, wrong keys, a task it cannot complete are
/// refused here, before the file reaches the disk).
fn may_complete(app: &App, params: &Params) -> Result<bool, Failure> {
    if missing_key(params).is_some() {
        return Ok(false);
    }
    let (call, _) = super::agent_call(params, false)?;
    crate::ops::check_completion(app, call)?;
    Ok(true)
}

/// A place among the uploads in flight, or 503 when they are all taken.
fn upload_permit(app: &App) -> Result<OwnedSemaphorePermit, Failure> {
    std::sync::Arc::clone(&app.uploads)
        .try_acquire_owned()
        .map_err(|_| {
            app.metrics.record_upload_refused();
            Failure::busy(format!(
                "Too many uploads in progress (at most {}, --max-uploads); retry shortly.",
                app.edge.max_uploads
            ))
        })
}

/// Refuses an upload arriving slower than `min_upload_rate` on average, once it has gone on
/// for `body_timeout`.
fn too_slow(app: &App, started: Instant, received: u64) -> Result<(), Failure> {
    let elapsed = started.elapsed();
    let rate = app.edge.min_upload_rate;
    if elapsed <= app.edge.body_timeout || rate == 0 {
        return Ok(());
    }
    let needed = u128::from(rate) * elapsed.as_millis() / 1000;
    if u128::from(received) >= needed {
        return Ok(());
    }
    app.metrics.record_timeout();
    Err(Failure::with_status(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "Upload too slow: {received} bytes in {} s; at least {rate} bytes a second are \
             needed (--min-upload-rate).",
            elapsed.as_secs()
        ),
    ))
}

/// A body that could not be read: too large, stalled past the body timeout, or cut.
fn body_failure(e: &(dyn std::error::Error + 'static), max: usize) -> Failure {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return Failure::with_status(
                StatusCode::REQUEST_TIMEOUT,
                "The request body stalled: no data within the server's body timeout.",
            );
        }
        if e.is::<http_body_util::LengthLimitError>() {
            return Failure::new(format!("Request body too large: at most {max} bytes."));
        }
        source = e.source();
    }
    Failure::with_status(
        StatusCode::BAD_REQUEST,
        "The request body could not be read (the connection was cut?).",
    )
}

/// A file part that came before the API key (or, for `completeTask`, before the task id and
/// keys): in memory, within both bounds.
async fn read_before_key(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
    sink: Sink,
    auth: Auth,
) -> Result<Vec<u8>, Failure> {
    let max = match sink {
        Sink::Memory(max) => max,
        Sink::Storage(max) => usize::try_from(max).unwrap_or(usize::MAX),
    };
    let mut out = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_failure)? {
        if out.len() + chunk.len() > max {
            return Err(too_large(name, max as u64));
        }
        if out.len() + chunk.len() > PRE_AUTH_FILE_BYTES {
            return Err(Failure::new(if auth == Auth::Yes {
                format!(
                    "Send scanQueueTaskId, scanAgentSecureKey and secureTaskKey before the \
                     file: in the query string or as fields before '{name}' (a file of more \
                     than {PRE_AUTH_FILE_BYTES} bytes is not held before the call is checked)."
                )
            } else {
                format!(
                    "Send the API key before the file: in the Authorization header, the query \
                     string, or an apiKey field before '{name}' (a file of more than \
                     {PRE_AUTH_FILE_BYTES} bytes is not held before the key is known)."
                )
            }));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn io_failure(e: std::io::Error) -> Failure {
    tracing::error!(error = %e, "could not store an upload");
    Failure::new("Could not store the uploaded file; see the server log.")
}

fn multipart_failure(e: axum::extract::multipart::MultipartError) -> Failure {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Failure::new("Upload too large: the request body exceeds the server's limit.");
    }
    let timed_out = body_failure(&e, 0);
    if timed_out.status == StatusCode::REQUEST_TIMEOUT {
        return timed_out;
    }
    Failure::new(format!("Malformed multipart body: {}.", e.body_text()))
}

fn too_large(name: &str, max: u64) -> Failure {
    if name == "file" || name == "files" {
        Failure::new(format!(
            "Upload too large: the file exceeds the limit of {max} bytes."
        ))
    } else {
        Failure::new(format!("Parameter {name} too large: at most {max} bytes."))
    }
}

async fn read_limited(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
    max: usize,
) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_failure)? {
        if out.len() + chunk.len() > max {
            return Err(too_large(name, max as u64));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
