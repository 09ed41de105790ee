//! Queue scan (SPEC §3 "Queue scan").

use crate::error::{Bound, Error, Field};
use crate::event::Event;
use crate::ids::{ApplicationId, ScanConfigId, TaskId};
use crate::queue::{Queue, Slot};
use crate::task::Task;
use std::sync::Arc;

/// A scan to queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewScan<'a> {
    /// The application (must be at least 1).
    pub application: ApplicationId,
    /// The scanner to run, e.g. `"OWASP Zed Attack Proxy"`: no surrounding whitespace, no
    /// commas (agents list their scanners comma-separated), no control characters.
    pub scanner: &'a str,
    /// An absolute `http`/`https` URL, if any.
    pub target_url: Option<&'a str>,
    /// A scan configuration kept by the embedder, if any.
    pub scan_config: Option<ScanConfigId>,
}

impl<'a> NewScan<'a> {
    /// A scan of `application` with `scanner`, without target URL or configuration.
    pub fn new(application: ApplicationId, scanner: &'a str) -> NewScan<'a> {
        NewScan {
            application,
            scanner,
            target_url: None,
            scan_config: None,
        }
    }

    /// With a target URL.
    pub fn target_url(self, url: &'a str) -> NewScan<'a> {
        NewScan {
            target_url: Some(url),
            ..self
        }
    }

    /// With a scan configuration reference.
    pub fn scan_config(self, config: ScanConfigId) -> NewScan<'a> {
        NewScan {
            scan_config: Some(config),
            ..self
        }
    }
}

impl Queue {
    /// Queues a scan: a new task, Queued, with `createTime = now` and
    /// `timeoutTime = now + task deadline`, and the status message `Scan queued at: …`.
    ///
    /// Errors: [`Error::InvalidInput`] for a malformed field, [`Error::BoundExceeded`] when
    /// the open tasks, distinct scanners or a length bound is reached.
    pub fn queue_scan(&mut self, now_ms: u64, scan: NewScan<'_>) -> Result<&Task, Error> {
        let now_ms = self.advance(now_ms);
        let known = self.check_new_scan(scan.application, scan.scanner, scan.target_url)?;
        let known = known.map(|(name, slot)| {
            self.scanners.next = slot;
            name
        });
        let task = TaskId(self.next_task_id);
        self.commit(Event::TaskQueued {
            task,
            application: scan.application,
            scanner: known.unwrap_or_else(|| scan.scanner.into()),
            target_url: scan.target_url.map(Into::into),
            scan_config: scan.scan_config,
            at_ms: now_ms,
            timeout_ms: now_ms.saturating_add(self.config.task_deadline_ms),
        });
        self.tasks
            .get(&task)
            .ok_or_else(|| Error::Inconsistent("queued task missing".into()))
    }

    pub(crate) fn check_new_scan(
        &self,
        application: ApplicationId,
        scanner: &str,
        target_url: Option<&str>,
    ) -> Result<Option<(Arc<str>, Slot)>, Error> {
        if application.0 == 0 {
            return Err(Error::InvalidInput {
                field: Field::ApplicationId,
                reason: "must be at least 1",
            });
        }
        // A scanner with open tasks passed these checks when its first task was queued (or
        // restored under this configuration); its interned name is the answer.
        let known = self.scanners.find(scanner);
        let known = known.map(|(slot, s)| (Arc::clone(&s.name), slot));
        if known.is_none() {
            check_scanner_name(scanner, self.config.max_scanner_len).map_err(|e| match e {
                NameError::TooLong => self.bound(Bound::ScannerLen),
                NameError::Invalid(reason) => Error::InvalidInput {
                    field: Field::Scanner,
                    reason,
                },
            })?;
        }
        if let Some(url) = target_url {
            self.check_len(url, self.config.max_url_len, Bound::UrlLen)?;
            check_url(url).map_err(|reason| Error::InvalidInput {
                field: Field::TargetUrl,
                reason,
            })?;
        }
        if self.next_task_id == u64::MAX {
            // Unreachable by queueing (2^64 tasks); possible only from a crafted snapshot.
            return Err(Error::Inconsistent("task ids exhausted".into()));
        }
        if self.open_tasks() >= self.config.max_open_tasks {
            return Err(self.bound(Bound::OpenTasks));
        }
        if known.is_none() && self.scanners.len() >= self.config.max_scanners {
            return Err(self.bound(Bound::Scanners));
        }
        Ok(known)
    }
}

pub(crate) enum NameError {
    TooLong,
    Invalid(&'static str),
}

pub(crate) fn check_scanner_name(name: &str, max_len: usize) -> Result<(), NameError> {
    if name.len() > max_len {
        return Err(NameError::TooLong);
    }
    // The usual case in one pass: ASCII, not empty, no whitespace at either end, no comma or
    // control character. Anything else takes the checks below, which name the problem.
    let plain = |b: &u8| b.is_ascii() && *b != b',' && !b.is_ascii_control();
    if let (Some(first), Some(last)) = (name.as_bytes().first(), name.as_bytes().last())
        && !first.is_ascii_whitespace()
        && !last.is_ascii_whitespace()
        && name.as_bytes().iter().all(plain)
    {
        return Ok(());
    }
    if name.is_empty() {
        return Err(NameError::Invalid("empty"));
    }
    if name.trim() != name {
        return Err(NameError::Invalid("surrounding whitespace"));
    }
    if name.contains(',') {
        return Err(NameError::Invalid("contains a comma"));
    }
    // ASCII (the usual case) byte-wise; `char::is_control` is exactly ASCII's C0 and DEL plus
    // the C1 range, which only non-ASCII text can hold.
    let control = if name.is_ascii() {
        name.bytes().any(|b| b.is_ascii_control())
    } else {
        name.chars().any(char::is_control)
    };
    if control {
        return Err(NameError::Invalid("contains a control character"));
    }
    Ok(())
}

/// An absolute http(s) URL with a host, no whitespace or control characters.
fn check_url(url: &str) -> Result<(), &'static str> {
    let (scheme, rest) = url.split_once("://").ok_or("not an absolute URL")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err("scheme must be http or https");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains whitespace or a control character");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("no host");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{NameError, check_scanner_name, check_url};

    #[test]
    fn scanner_names_as_the_plain_checks_say() {
        let reference = |name: &str| -> Result<(), &'static str> {
            if name.len() > 30 {
                return Err("too long");
            }
            if name.is_empty() {
                return Err("empty");
            }
            if name.trim() != name {
                return Err("surrounding whitespace");
            }
            if name.contains(',') {
                return Err("contains a comma");
            }
            if name.chars().any(char::is_control) {
                return Err("contains a control character");
            }
            Ok(())
        };
        let pieces = [
            "", "a", " ", "\t", "\x0b", "\x0c", "\r", "\n", ",", "\x7f", "\u{85}", "\u{a0}",
            "\u{9f}", "é", "\u{2003}", "Zap", "\x1f", "~",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let name = format!("{a}{b}{c}");
                    let got = check_scanner_name(&name, 30).map_err(|e| match e {
                        NameError::TooLong => "too long",
                        NameError::Invalid(reason) => reason,
                    });
                    assert_eq!(got, reference(&name), "{name:?}");
                }
            }
        }
    }

    #[test]
    fn urls() {
        assert!(check_url("http://targeturl/app").is_ok());
        assert!(check_url("HTTPS://example.com:8443/x?y#z").is_ok());
        assert!(check_url("https://user@host").is_ok());
        assert!(check_url("ftp://host/").is_err());
        assert!(check_url("http://").is_err());
        assert!(check_url("http:///path").is_err());
        assert!(check_url("http://:80/").is_err());
        assert!(check_url("http://a b/").is_err());
        assert!(check_url("targeturl/app").is_err());
        assert!(check_url("").is_err());
    }
}
