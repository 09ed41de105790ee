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

    /// The shortest key `--api-key` accepts.
    pub const MIN_LEN: usize = 32;
    /// The fewest different characters a key `--api-key` accepts has.
    pub const MIN_DISTINCT: usize = 10;

    /// Refuses a key an attacker could guess: shorter than [`MIN_LEN`](Self::MIN_LEN)
    /// characters or with fewer than [`MIN_DISTINCT`](Self::MIN_DISTINCT) different ones
    /// (a generated key has 44 letters and digits; `openssl rand -base64 33` makes one too).
    pub fn check_strength(&self) -> Result<(), String> {
        let len = self.0.chars().count();
        let mut distinct: Vec<char> = self.0.chars().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if len < Self::MIN_LEN || distinct.len() < Self::MIN_DISTINCT {
            return Err(format!(
                "the API key is too easy to guess ({len} characters, {} different): use at \
                 least {} characters with at least {} different ones, e.g. from \
                 `openssl rand -base64 33`, or leave it unset to have one generated",
                distinct.len(),
                Self::MIN_LEN,
                Self::MIN_DISTINCT
            ));
        }
        Ok(())
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

/// The keys a server accepts: its API key and, during a rotation's grace period, the
/// previous one.
#[derive(Clone, Debug)]
pub(crate) struct ApiKeys {
    current: ApiKey,
    /// The previous key and the time (ms) until which it is still accepted.
    previous: Option<(ApiKey, u64)>,
}

impl ApiKeys {
    pub(crate) fn new(current: ApiKey, previous: Option<(ApiKey, u64)>) -> ApiKeys {
        ApiKeys { current, previous }
    }

    /// Whether `presented` is an accepted key at `now_ms` (each compared in constant time).
    pub(crate) fn matches(&self, presented: &str, now_ms: u64) -> bool {
        let current = self.current.matches(presented);
        let previous = self
            .previous
            .as_ref()
            .is_some_and(|(key, until)| key.matches(presented) && now_ms < *until);
        current | previous
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
    keys: &ApiKeys,
    now_ms: u64,
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
    if presented.is_some_and(|k| keys.matches(k, now_ms)) {
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
        let keys = ApiKeys::new(k.clone(), None);
        assert_eq!(
            authenticate(&keys, 0, Some(&header), Some(k.expose_secret())),
            Auth::No
        );
        let secret = Some(k.expose_secret());
        assert_eq!(authenticate(&keys, 0, None, secret), Auth::Yes);
        assert_eq!(authenticate(&keys, 0, None, Some("nope")), Auth::No);
        assert_eq!(authenticate(&keys, 0, None, None), Auth::NotYet);
    }

    #[test]
    fn a_previous_key_is_accepted_until_its_grace_period_ends() {
        let (new, old) = (ApiKey::generate(), ApiKey::generate());
        let keys = ApiKeys::new(new.clone(), Some((old.clone(), 1_000)));
        assert!(keys.matches(new.expose_secret(), 5_000));
        assert!(keys.matches(old.expose_secret(), 999));
        assert!(!keys.matches(old.expose_secret(), 1_000));
        assert!(!keys.matches("nope", 0));
    }

    #[test]
    fn weak_keys_are_refused_with_a_way_to_make_one() {
        assert_eq!(ApiKey::generate().check_strength(), Ok(()));
        for weak in ["q7", "test-api-key-0123456789", &"ab".repeat(40)] {
            let refused = ApiKey::new(weak).unwrap().check_strength().unwrap_err();
            assert!(refused.contains("openssl rand"), "{refused}");
            assert!(!refused.contains(weak), "the key is never shown");
        }
        let ok = ApiKey::new("Zq4-tT9mP2xL7vB1nC8kD3sF6hJ0gR5w").unwrap();
        assert_eq!(ok.check_strength(), Ok(()));
    }
}
