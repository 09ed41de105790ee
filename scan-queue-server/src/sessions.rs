//! Page sessions: a login with the API key sets a random session cookie; each session has its
//! own CSRF token, checked on every POST (constant time).
//!
//! A session ends at logout, after [`IDLE_MS`] without a request, [`SESSION_MS`] after its
//! login, or when the server stops (they are kept in memory only, so restarting with a new
//! key ends them all). Each client address keeps at most [`PER_ADDRESS`] sessions (its own
//! oldest ends first), and the server at most [`MAX_SESSIONS`]: logins from other addresses
//! can never end an operator's session; past the total, logins are refused until some end.
//! Sessions are found by the SHA-256 of their token, so looking one up takes the same time
//! whatever the token presented.

use parking_lot::Mutex;
use rand::TryRngCore;
use rand::distr::{Alphanumeric, Distribution};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "scan_queue_session";
/// How long a session lasts after login, at most.
pub(crate) const SESSION_MS: u64 = 12 * 60 * 60 * 1000;
/// How long a session lasts without a request.
pub(crate) const IDLE_MS: u64 = 2 * 60 * 60 * 1000;
/// Sessions per client address at most; a login past it ends that address's oldest.
const PER_ADDRESS: usize = 16;
/// Sessions at most; past it, a login from an address with sessions ends its oldest, one from
/// an address without is refused.
const MAX_SESSIONS: usize = 4096;

/// A logged-in browser: what a request proves by presenting the session cookie.
#[derive(Clone)]
pub(crate) struct Session {
    /// SHA-256 of the token (the token itself is only in the cookie).
    id: [u8; 32],
    /// The token, only on the session [`Sessions::create`] returns (to set the cookie).
    token: Option<String>,
    /// Put in every form; a POST must send it back.
    pub(crate) csrf: String,
    address: Option<IpAddr>,
    created_ms: u64,
    seen_ms: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("created_ms", &self.created_ms)
            .field("seen_ms", &self.seen_ms)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub(crate) fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }

    /// The `Set-Cookie` value that logs this session in (for a session just created).
    pub(crate) fn cookie(&self) -> String {
        format!(
            "{COOKIE}={}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
            self.token.as_deref().unwrap_or(""),
            SESSION_MS / 1000
        )
    }

    fn live(&self, now_ms: u64) -> bool {
        now_ms < self.created_ms.saturating_add(SESSION_MS)
            && now_ms < self.seen_ms.saturating_add(IDLE_MS)
    }
}

/// The `Set-Cookie` value that logs out.
pub(crate) fn expired_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}

/// The live sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

fn token() -> String {
    let mut rng = OsRng.unwrap_err();
    (0..44)
        .map(|_| char::from(Alphanumeric.sample(&mut rng)))
        .collect()
}

fn id(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// A new session for a login from `address` at `now_ms`; `None` when the server holds
    /// [`MAX_SESSIONS`] live ones and none of them is this address's.
    pub(crate) fn create(&self, now_ms: u64, address: Option<IpAddr>) -> Option<Session> {
        let token = token();
        let session = Session {
            id: id(&token),
            token: Some(token),
            csrf: self::token(),
            address,
            created_ms: now_ms,
            seen_ms: now_ms,
        };
        let mut live = self.live.lock();
        live.retain(|_, s| s.live(now_ms));
        let mut own: Vec<(u64, [u8; 32])> = live
            .values()
            .filter(|s| s.address == address)
            .map(|s| (s.created_ms, s.id))
            .collect();
        let full = live.len() >= MAX_SESSIONS;
        if own.len() >= PER_ADDRESS || (full && !own.is_empty()) {
            // This address makes room among its own sessions, oldest first.
            own.sort_unstable();
            let ending = (own.len() + 1).saturating_sub(PER_ADDRESS).max(1);
            for (_, oldest) in &own[..ending] {
                live.remove(oldest);
            }
        } else if full {
            return None;
        }
        let stored = Session {
            token: None,
            ..session.clone()
        };
        live.insert(session.id, stored);
        Some(session)
    }

    /// The session whose token the request's `Cookie` header carries, if live; the request
    /// counts as activity (it keeps the session from going idle).
    pub(crate) fn find(&self, cookie_header: Option<&str>, now_ms: u64) -> Option<Session> {
        let presented = cookie_header.and_then(session_token)?;
        let mut live = self.live.lock();
        let key = id(presented);
        let session = live.get_mut(&key)?;
        if !session.live(now_ms) {
            live.remove(&key);
            return None;
        }
        session.seen_ms = session.seen_ms.max(now_ms);
        Some(session.clone())
    }

    /// Ends a session.
    pub(crate) fn remove(&self, session: &Session) {
        self.live.lock().remove(&session.id);
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

    fn header(s: &Session) -> String {
        format!("other=1; {COOKIE}={}", s.token.as_deref().unwrap())
    }

    #[test]
    fn sessions_expire_by_age_and_idleness_and_are_never_shown() {
        let sessions = Sessions::default();
        let s = sessions.create(1_000, None).unwrap();
        let h = header(&s);
        assert!(sessions.find(Some(&h), 2_000).is_some());
        assert!(
            sessions
                .find(Some("scan_queue_session=nope"), 2_000)
                .is_none()
        );
        assert!(sessions.find(None, 2_000).is_none());
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches(""));
        let shown = format!("{s:?}");
        assert!(!shown.contains(s.token.as_deref().unwrap()) && !shown.contains(&s.csrf));
        assert!(s.cookie().contains("; Secure; HttpOnly; SameSite=Strict"));
        // Kept alive by use until its absolute end.
        let mut t = 2_000;
        while t + IDLE_MS / 2 < 1_000 + SESSION_MS {
            t += IDLE_MS / 2;
            assert!(sessions.find(Some(&h), t).is_some(), "active at {t}");
        }
        assert!(sessions.find(Some(&h), 1_000 + SESSION_MS).is_none());
        // Idle too long.
        let idle = sessions.create(5_000, None).unwrap();
        assert!(
            sessions
                .find(Some(&header(&idle)), 5_000 + IDLE_MS)
                .is_none()
        );
        // Logout.
        let last = sessions.create(6_000, None).unwrap();
        sessions.remove(&last);
        assert!(sessions.find(Some(&header(&last)), 6_000).is_none());
    }

    #[test]
    fn logins_from_other_addresses_never_end_a_session() {
        let sessions = Sessions::default();
        let operator: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mine = sessions.create(1_000, Some(operator)).unwrap();
        for _ in 0..1_000 {
            assert!(sessions.create(1_000, Some(other)).is_some());
        }
        assert!(sessions.find(Some(&header(&mine)), 1_000).is_some());
        assert_eq!(sessions.live.lock().len(), 1 + PER_ADDRESS);
        // The other address's own oldest went first.
        for _ in 0..PER_ADDRESS - 1 {
            sessions.create(1_001, Some(operator)).unwrap();
        }
        assert!(sessions.find(Some(&header(&mine)), 1_001).is_some());
        sessions.create(1_002, Some(operator)).unwrap();
        assert!(
            sessions.find(Some(&header(&mine)), 1_002).is_none(),
            "the operator's own 17th login ends their oldest"
        );
        // Full: a new address is refused, an address with sessions still logs in.
        let full = Sessions::default();
        for i in 0..MAX_SESSIONS {
            let ip = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            full.create(1, Some(ip)).unwrap();
        }
        assert!(full.create(1, Some("10.9.9.9".parse().unwrap())).is_none());
        assert!(full.create(1, Some(IpAddr::from([10, 1, 0, 0]))).is_some());
    }
}
