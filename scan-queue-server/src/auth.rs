//! The administrator API key: `Authorization: APIKEY {key}` or the `apiKey` parameter.

use rand::TryRngCore;
use rand::distr::{Alphanumeric, Distribution};
use rand::rngs::OsRng;
use std::fmt;
use subtle::ConstantTimeEq;

/// The server's API key. `Debug` never shows it; comparison is constant-time.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// A key given by the operator; `None` if it is empty or has control characters or
    /// surrounding whitespace (it must survive a header).
    pub fn new(key: impl Into<String>) -> Option<ApiKey> {
        let key = key.into();
        let usable = !key.is_empty() && key.trim() == key && !key.chars().any(char::is_control);
        usable.then_some(ApiKey(key))
    }

    /// A fresh key of 44 letters and digits from the OS random source.
    pub fn generate() -> ApiKey {
        let mut rng = OsRng.unwrap_err();
        ApiKey(
            (0..44)
                .map(|_| char::from(Alphanumeric.sample(&mut rng)))
                .collect(),
        )
    }

    /// Whether `presented` is this key, compared in constant time (the length is not hidden).
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }

    /// The key itself, to print once at start-up when it was generated. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The key in an `Authorization: APIKEY {key}` header value (scheme case-insensitive).
pub(crate) fn from_authorization(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("APIKEY").then(|| key.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let k = ApiKey::generate();
        assert_eq!(k.expose_secret().len(), 44);
        assert!(k.matches(k.expose_secret()));
        assert!(!k.matches("nope"));
        assert!(!format!("{k:?}").contains(k.expose_secret()));
        assert!(ApiKey::new("").is_none());
        assert!(ApiKey::new(" x").is_none());
        assert_eq!(from_authorization("APIKEY abc"), Some("abc"));
        assert_eq!(from_authorization("apikey  abc "), Some("abc"));
        assert_eq!(from_authorization("Bearer abc"), None);
        assert_eq!(from_authorization("APIKEY"), None);
    }
}
