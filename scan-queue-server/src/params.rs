//! Request parameters, read alike from the query string, a url-encoded body or multipart
//! fields (SPEC §7), with every size bounded.
//!
//! The seed's `curl --data 'message=Just because&…'` sends an unencoded space; the url-encoded
//! parser here takes it as it is. The Python client sends query parameters plus multipart
//! files. When the same parameter appears twice, the first one wins (query before body).

use crate::auth::ApiKey;
use crate::store::{DataDir, StoredFile};
use crate::wire;
use axum::extract::{FromRequest, Multipart};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use tokio::io::AsyncWriteExt;

/// A refused request: the failure envelope's message and the HTTP status to send it with
/// (200, as ThreadFix, except for transport-level problems).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status.
    pub status: StatusCode,
    /// The envelope's `message`.
    pub message: String,
}

impl Failure {
    /// A failure answered with HTTP 200, as ThreadFix answers every failure.
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::OK,
            message: message.into(),
        }
    }

    /// A failure with another HTTP status (unknown endpoint, wrong method).
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// A refusal of the core.
    pub fn core(error: &scan_queue::Error) -> Failure {
        if matches!(error, scan_queue::Error::Inconsistent(_)) {
            tracing::error!(error = %error, "the queue reported an inconsistency");
        }
        Failure::new(wire::error_message(error))
    }
}

/// Where a multipart file part goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileSink {
    /// Streamed to a file under the data directory, at most this many bytes.
    Disk(u64),
    /// Kept in memory, at most this many bytes.
    Memory(usize),
}

/// A file part kept in memory.
#[derive(Debug)]
pub(crate) struct MemoryFile {
    pub(crate) bytes: Vec<u8>,
    pub(crate) content_type: Option<String>,
}

/// The limits parsing works within.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParseLimits {
    /// Bytes of one text parameter.
    pub(crate) field_bytes: usize,
    /// Bytes of a url-encoded body (or query string).
    pub(crate) form_bytes: usize,
}

/// Parts in one multipart body.
const MAX_PARTS: usize = 32;
/// Parameters in one request.
const MAX_FIELDS: usize = 64;

/// A request's parameters.
#[derive(Debug, Default)]
pub(crate) struct Params {
    fields: Vec<(String, String)>,
    pub(crate) disk_file: Option<StoredFile>,
    pub(crate) memory_file: Option<MemoryFile>,
}

impl Params {
    /// A parameter as sent (first occurrence), if present.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that must be present and not blank; trimmed.
    pub(crate) fn required(&self, name: &str) -> Result<&str, Failure> {
        match self.get(name).map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(Failure::new(wire::missing_parameter(name))),
        }
    }

    /// A parameter that must be present, verbatim (it may be empty).
    pub(crate) fn present(&self, name: &str) -> Result<&str, Failure> {
        self.get(name)
            .ok_or_else(|| Failure::new(wire::missing_parameter(name)))
    }

    /// An optional parameter; blank counts as absent. Trimmed.
    pub(crate) fn optional(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A required positive integer.
    pub(crate) fn positive_int(&self, name: &str) -> Result<u64, Failure> {
        parse_positive(name, self.required(name)?)
    }

    /// An optional positive integer.
    pub(crate) fn optional_positive_int(&self, name: &str) -> Result<Option<u64>, Failure> {
        self.optional(name)
            .map(|v| parse_positive(name, v))
            .transpose()
    }

    fn push(&mut self, name: String, value: String) -> Result<(), Failure> {
        if self.fields.len() >= MAX_FIELDS {
            return Err(Failure::new(format!(
                "Too many parameters: at most {MAX_FIELDS}."
            )));
        }
        self.fields.push((name, value));
        Ok(())
    }

    /// Adds the pairs of a query string or url-encoded body.
    pub(crate) fn add_form(&mut self, form: &[u8], limits: ParseLimits) -> Result<(), Failure> {
        if form.len() > limits.form_bytes {
            return Err(Failure::new(format!(
                "Request parameters too large: at most {} bytes.",
                limits.form_bytes
            )));
        }
        for (k, v) in form_urlencoded::parse(form) {
            self.push(k.into_owned(), v.into_owned())?;
        }
        Ok(())
    }

    /// Reads a request body: multipart, or else url-encoded (whatever the content type says,
    /// as ThreadFix's clients are not all careful about it). `sink` says where a file part
    /// with a given name goes (`None`: it is read as a text parameter). A file part is
    /// accepted only once the caller is authenticated (`authenticated`, or an `apiKey` field
    /// before it), so no unauthenticated upload ever reaches the disk.
    pub(crate) async fn add_body(
        &mut self,
        request: axum::extract::Request,
        limits: ParseLimits,
        data: &DataDir,
        api_key: &ApiKey,
        authenticated: bool,
        sink: impl Fn(&str) -> Option<FileSink>,
    ) -> Result<(), Failure> {
        let is_multipart = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            });
        if !is_multipart {
            let body = axum::body::to_bytes(request.into_body(), limits.form_bytes)
                .await
                .map_err(|_| {
                    Failure::new(format!(
                        "Request body too large: at most {} bytes.",
                        limits.form_bytes
                    ))
                })?;
            return self.add_form(&body, limits);
        }
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
            let Some(sink) = sink(&name) else {
                let value = read_limited(&mut field, &name, limits.field_bytes).await?;
                self.push(name, String::from_utf8_lossy(&value).into_owned())?;
                continue;
            };
            let key_ok = self
                .get("apiKey")
                .is_some_and(|k| api_key.matches(k.trim()));
            if !authenticated && !key_ok {
                return Err(Failure::new(wire::AUTH_FAILED));
            }
            if self.disk_file.is_some() || self.memory_file.is_some() {
                return Err(Failure::new(format!(
                    "Only one file may be uploaded; got a second '{name}'."
                )));
            }
            match sink {
                FileSink::Memory(max) => {
                    let content_type = field.content_type().map(str::to_owned);
                    let bytes = read_limited(&mut field, &name, max).await?;
                    self.memory_file = Some(MemoryFile {
                        bytes,
                        content_type,
                    });
                }
                FileSink::Disk(max) => {
                    let file_name = field.file_name().map(str::to_owned);
                    let stored = StoredFile::new(data.incoming_path(), file_name);
                    self.disk_file = Some(write_limited(&mut field, stored, max).await?);
                }
            }
        }
        Ok(())
    }
}

fn parse_positive(name: &str, value: &str) -> Result<u64, Failure> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Failure::new(wire::not_a_positive_integer(name, value))),
    }
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

/// Streams a part to `stored`'s path and syncs it; on any failure the guard removes it.
async fn write_limited(
    field: &mut axum::extract::multipart::Field<'_>,
    mut stored: StoredFile,
    max: u64,
) -> Result<StoredFile, Failure> {
    let io_failure = |e: std::io::Error| {
        tracing::error!(error = %e, "could not store an upload");
        Failure::new("Could not store the uploaded file; see the server log.")
    };
    let mut file = tokio::fs::File::create(stored.path())
        .await
        .map_err(io_failure)?;
    while let Some(chunk) = field.chunk().await.map_err(multipart_failure)? {
        stored.len += chunk.len() as u64;
        if stored.len > max {
            return Err(too_large("file", max));
        }
        file.write_all(&chunk).await.map_err(io_failure)?;
    }
    file.flush().await.map_err(io_failure)?;
    file.sync_data().await.map_err(io_failure)?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ParseLimits = ParseLimits {
        field_bytes: 1024,
        form_bytes: 4096,
    };

    #[test]
    fn the_seeds_unencoded_space_and_first_wins() {
        let mut p = Params::default();
        p.add_form(b"scanQueueTaskId=3&message=Just because&x=%41+b", LIMITS)
            .unwrap();
        p.add_form(b"scanQueueTaskId=4", LIMITS).unwrap();
        assert_eq!(p.get("message"), Some("Just because"));
        assert_eq!(p.get("x"), Some("A b"));
        assert_eq!(p.positive_int("scanQueueTaskId"), Ok(3));
    }

    #[test]
    fn missing_and_malformed() {
        let mut p = Params::default();
        p.add_form(b"a=&b=x&c=0&d= 7 ", LIMITS).unwrap();
        assert_eq!(
            p.required("a").unwrap_err().message,
            "Missing required parameter: a."
        );
        assert_eq!(p.present("a"), Ok(""));
        assert_eq!(
            p.positive_int("b").unwrap_err().message,
            "Invalid b: 'x' is not a positive integer."
        );
        assert!(p.positive_int("c").is_err());
        assert_eq!(p.positive_int("d"), Ok(7));
        assert_eq!(p.optional_positive_int("zz"), Ok(None));
        assert_eq!(
            p.required("secureTaskKey").unwrap_err().message,
            wire::NO_SECURE_TASK_KEY
        );
        assert!(p.add_form(&[b'a'; 5000], LIMITS).is_err());
    }
}
