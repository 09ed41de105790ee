//! Reading a request: its query string and body (url-encoded or multipart) into [`Params`],
//! a file part into memory or into the storage's staging, and the one authentication check,
//! made before anything reaches the disk.
//!
//! A file part that arrives before the API key is known (the key comes in a later field) is
//! held in memory up to [`PRE_AUTH_FILE_BYTES`]; a larger one is refused with a message to
//! send the key first. ThreadFix's clients send it first: the seed's curl puts it in the
//! `Authorization` header, the Python client in the query string.

use super::params::{Params, ParseLimits};
use super::{Failure, Op};
use crate::app::App;
use crate::auth::{Auth, authenticate};
use crate::storage::upload::Upload;
use crate::wire;
use axum::extract::{FromRequest, Multipart};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};

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
}

fn sink(app: &App, op: Op, part: &str) -> Option<Sink> {
    match (op, part) {
        (Op::CompleteTask, "file") => Some(Sink::Storage(app.limits.upload_bytes)),
        (Op::SetTaskConfig, "file") => Some(Sink::Memory(app.limits.config_bytes)),
        (Op::RequestTask, "files") => Some(Sink::Memory(app.limits.agent_config_bytes)),
        _ => None,
    }
}

/// Reads and authenticates a request to `op` within `limits`.
pub(crate) async fn receive(
    app: &App,
    op: Op,
    request: axum::extract::Request,
    limits: ParseLimits,
) -> Result<Received, Failure> {
    let mut params = Params::default();
    if let Some(query) = request.uri().query() {
        params.add_form(query.as_bytes(), limits)?;
    }
    let header = request.headers().get(AUTHORIZATION).cloned();
    let check =
        |params: &Params| match authenticate(&app.api_key, header.as_ref(), params.get("apiKey")) {
            Auth::No => Err(Failure::new(wire::AUTH_FAILED)),
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
    if is_multipart {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| Failure::new(format!("Malformed multipart body: {}.", e.body_text())))?;
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
            file = match (auth, sink) {
                (Auth::Yes, Sink::Memory(max)) => Some(FilePart::Memory {
                    bytes: read_limited(&mut field, &name, max).await?,
                    content_type,
                }),
                (Auth::Yes, Sink::Storage(max)) => {
                    let mut upload = app.storage.stage(file_name).await.map_err(io_failure)?;
                    upload.content_type = content_type;
                    while let Some(chunk) = field.chunk().await.map_err(multipart_failure)? {
                        if upload.len + chunk.len() as u64 > max {
                            return Err(too_large(&name, max));
                        }
                        upload.write(&chunk).await.map_err(io_failure)?;
                    }
                    Some(FilePart::Staged(Box::new(upload)))
                }
                _ => {
                    let bytes = read_before_key(&mut field, &name, sink).await?;
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
    } else {
        let body = axum::body::to_bytes(request.into_body(), limits.form_bytes)
            .await
            .map_err(|_| {
                Failure::new(format!(
                    "Request body too large: at most {} bytes.",
                    limits.form_bytes
                ))
            })?;
        params.add_form(&body, limits)?;
    }
    if check(&params)? != Auth::Yes {
        return Err(Failure::new(wire::AUTH_FAILED));
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
                let mut upload = app.storage.stage(file_name).await.map_err(io_failure)?;
                upload.content_type = content_type;
                upload.write(&bytes).await.map_err(io_failure)?;
                FilePart::Staged(Box::new(upload))
            }
        });
    }
    Ok(Received { params, file })
}

/// A file part that came before the API key: in memory, within both bounds.
async fn read_before_key(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
    sink: Sink,
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
            return Err(Failure::new(format!(
                "Send the API key before the file: in the Authorization header, the query \
                 string, or an apiKey field before '{name}' (a file of more than \
                 {PRE_AUTH_FILE_BYTES} bytes is not held before the key is known)."
            )));
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
        Failure::new("Upload too large: the request body exceeds the server's limit.")
    } else {
        Failure::new(format!("Malformed multipart body: {}.", e.body_text()))
    }
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
