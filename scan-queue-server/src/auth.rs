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

/// Whether a request is authenticated, as far as what has arrived of it tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Auth {
    /// It presented the key.
    Yes,
    /// It presented another key (or a malformed header): refuse it.
    No,
    /// No key yet (it may still come in a body field).
    NotYet,
}

/// The one authentication rule of the API: the `Authorization: APIKEY {key}` header when
/// there is one, else the first `apiKey` parameter (query string, url-encoded body or
/// multipart field alike), compared in constant time.
pub(crate) fn authenticate(
    key: &ApiKey,
    header: Option<&axum::http::HeaderValue>,
    api_key_param: Option<&str>,
) -> Auth {
    let presented = match header {
        Some(value) => value.to_str().ok().and_then(from_authorization),
        None => match api_key_param {
            Some(param) => Some(param.trim()),
            None => return Auth::NotYet,
        },
    };
    if presented.is_some_and(|k| key.matches(k)) {
        Auth::Yes
    } else {
        Auth::No
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
        let header = axum::http::HeaderValue::from_static("APIKEY nope");
        assert_eq!(
            authenticate(&k, Some(&header), Some(k.expose_secret())),
            Auth::No
        );
        assert_eq!(authenticate(&k, None, Some(k.expose_secret())), Auth::Yes);
        assert_eq!(authenticate(&k, None, Some("nope")), Auth::No);
        assert_eq!(authenticate(&k, None, None), Auth::NotYet);
    }
}
