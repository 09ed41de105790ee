//! Secrets: the API key, the scan agent key and task keys.
//!
//! A [`Secret`] has no `Display`, and its `Debug` prints a fixed placeholder, so a secret
//! cannot reach a log line, an error message or a panic by accident: using the value takes
//! an explicit [`Secret::expose`].

use std::fmt;

/// A secret string whose `Debug` output is redacted and which has no `Display`.
///
/// ```
/// use scan_queue_agent::Secret;
/// let key = Secret::new("hunter2hunter2");
/// assert_eq!(format!("{key:?}"), "Secret(<redacted>)");
/// assert_eq!(key.expose(), "hunter2hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_everywhere_it_nests() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            key: Secret,
            keys: Vec<Secret>,
            maybe: Option<Secret>,
        }
        let value = "pm9CJtnxahpe3J85QiqaWUuWe2F441UbMORlYyGy3JfQ";
        let holder = Holder {
            key: Secret::new(value),
            keys: vec![Secret::new(value)],
            maybe: Some(Secret::new(value)),
        };
        let debug = format!("{holder:?} {holder:#?}");
        assert!(!debug.contains(value), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert_eq!(holder.key.expose(), value);
    }

    #[test]
    fn deserializes_from_a_string() {
        #[derive(serde::Deserialize, Debug)]
        struct Doc {
            key: Secret,
        }
        let doc: Doc = toml::from_str("key = \"abc\"").unwrap();
        assert_eq!(doc.key.expose(), "abc");
        assert!(!format!("{doc:?}").contains("abc"));
    }
}
