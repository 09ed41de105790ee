//! Where the server's time comes from: the system clock, or a hand-set one for tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The server's clock, read once per request and passed to the core as `now_ms`.
///
/// ```
/// use scan_queue_server::Clock;
/// let clock = Clock::manual(1_000);
/// clock.advance_ms(500);
/// assert_eq!(clock.now_ms(), 1_500);
/// assert!(Clock::system().now_ms() > 1_600_000_000_000);
/// ```
#[derive(Clone, Debug)]
pub enum Clock {
    /// Wall-clock time (`SystemTime::now()`), in milliseconds since the Unix epoch.
    System,
    /// A clock that moves only when told to (tests, simulations). Clones share the time.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::System
    }

    /// A manual clock starting at `start_ms`.
    pub fn manual(start_ms: u64) -> Clock {
        Clock::Manual(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            Clock::Manual(ms) => ms.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance_ms(&self, ms: u64) {
        if let Clock::Manual(now) = self {
            now.fetch_add(ms, Ordering::SeqCst);
        }
    }
}
