//! Page sessions: a login with the API key sets a random session cookie; each session has its
//! own CSRF token, checked on every POST. Tokens are compared in constant time.

use parking_lot::Mutex;
use rand::TryRngCore;
use rand::distr::{Alphanumeric, Distribution};
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "scan_queue_session";
/// How long a session lasts after login.
pub(crate) const SESSION_MS: u64 = 12 * 60 * 60 * 1000;
/// Sessions at most; a login past it ends the oldest.
const MAX_SESSIONS: usize = 64;

/// A logged-in browser: what a request proves by presenting the session cookie.
#[derive(Clone)]
pub(crate) struct Session {
    token: String,
    /// Put in every form; a POST must send it back.
    pub(crate) csrf: String,
    expires_ms: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub(crate) fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }

    /// The `Set-Cookie` value that logs this session in.
    pub(crate) fn cookie(&self) -> String {
        format!(
            "{COOKIE}={}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
            self.token,
            SESSION_MS / 1000
        )
    }
}

/// The `Set-Cookie` value that logs out.
pub(crate) fn expired_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}

/// The live sessions (at most [`MAX_SESSIONS`]).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    live: Mutex<Vec<Session>>,
}

fn token() -> String {
    let mut rng = OsRng.unwrap_err();
    (0..44)
        .map(|_| char::from(Alphanumeric.sample(&mut rng)))
        .collect()
}

impl Sessions {
    /// A new session, from now until `now_ms + SESSION_MS`.
    pub(crate) fn create(&self, now_ms: u64) -> Session {
        let session = Session {
            token: token(),
            csrf: token(),
            expires_ms: now_ms.saturating_add(SESSION_MS),
        };
        let mut live = self.live.lock();
        live.retain(|s| s.expires_ms > now_ms);
        if live.len() >= MAX_SESSIONS {
            live.remove(0);
        }
        live.push(session.clone());
        session
    }

    /// The session whose token the request's `Cookie` header carries, if live. Every live
    /// session is compared (constant time each), so timing does not tell which matched.
    pub(crate) fn find(&self, cookie_header: Option<&str>, now_ms: u64) -> Option<Session> {
        let presented = cookie_header.and_then(session_token)?;
        let live = self.live.lock();
        let mut found = None;
        for s in live.iter() {
            if bool::from(s.token.as_bytes().ct_eq(presented.as_bytes())) && s.expires_ms > now_ms {
                found = Some(s.clone());
            }
        }
        found
    }

    /// Ends a session.
    pub(crate) fn remove(&self, session: &Session) {
        self.live.lock().retain(|s| s.token != session.token);
    }
}

/// Our cookie's value in a `Cookie` header.
fn session_token(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_are_bounded_and_never_shown() {
        let sessions = Sessions::default();
        let s = sessions.create(1_000);
        let header = format!("other=1; {COOKIE}={}", s.token);
        assert!(sessions.find(Some(&header), 2_000).is_some());
        assert!(sessions.find(Some(&header), 1_000 + SESSION_MS).is_none());
        assert!(
            sessions
                .find(Some("scan_queue_session=nope"), 2_000)
                .is_none()
        );
        assert!(sessions.find(None, 2_000).is_none());
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches(""));
        assert!(!format!("{s:?}").contains(&s.token));
        assert!(!format!("{s:?}").contains(&s.csrf));
        assert!(s.cookie().contains("; Secure; HttpOnly; SameSite=Strict"));
        for _ in 0..MAX_SESSIONS {
            sessions.create(2_000);
        }
        assert!(
            sessions.find(Some(&header), 2_000).is_none(),
            "oldest evicted"
        );
        assert_eq!(sessions.live.lock().len(), MAX_SESSIONS);
        let last = sessions.create(3_000);
        sessions.remove(&last);
        assert!(
            sessions
                .find(Some(&format!("{COOKIE}={}", last.token)), 3_000)
                .is_none()
        );
    }
}
