//! Randomness comes in from the embedder: a seed, or a CSPRNG it supplies.

use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::fmt;

/// Where keys and agent ids come from.
///
/// The queue never touches the OS random source. Give it a 32-byte seed ([`KeySource::from_seed`])
/// for exact replay (ChaCha20: the same seed and the same calls mint the same keys on every
/// platform and release), or any CSPRNG you trust ([`KeySource::from_rng`]), e.g. one seeded
/// from the OS by the embedding server.
pub struct KeySource {
    rng: Box<dyn CryptoRng + Send>,
}

impl KeySource {
    /// A deterministic ChaCha20 generator. Keep production seeds secret: anyone who has the
    /// seed can compute every key.
    pub fn from_seed(seed: [u8; 32]) -> KeySource {
        KeySource::from_rng(ChaCha20Rng::from_seed(seed))
    }

    /// Any cryptographically secure generator.
    pub fn from_rng<R: CryptoRng + Send + 'static>(rng: R) -> KeySource {
        KeySource { rng: Box::new(rng) }
    }

    pub(crate) fn rng(&mut self) -> &mut dyn RngCore {
        &mut *self.rng
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySource").finish_non_exhaustive()
    }
}
