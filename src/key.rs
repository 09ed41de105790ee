//! Secrets: scan agent keys and task keys (SPEC §4).
//!
//! A key is 44 characters of `[A-Za-z0-9]` drawn from the queue's CSPRNG: 44 × log2(62) ≈ 262
//! bits. Keys are compared in constant time, and no `Debug` or `Display` shows them; the only
//! way to read one is [`AgentKey::expose_secret`] / [`TaskKey::expose_secret`], named so that
//! every place that does it is easy to find.

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use subtle::ConstantTimeEq;

/// Length of every key this queue mints, in characters (and bytes: keys are ASCII).
pub const KEY_LEN: usize = 44;

/// The bytes of a key; always [`KEY_LEN`] ASCII alphanumerics.
#[derive(Clone)]
struct Secret([u8; KEY_LEN]);

impl Secret {
    /// Uniform over the 62 alphanumerics: each random byte's low 6 bits are uniform on 0..64,
    /// and the 2 values past 61 are rejected. One 64-byte draw almost always suffices.
    ///
    /// Eight bytes at a time when none of them is rejected (≈ 78 % of the words): one test
    /// of the word (a byte's low 6 bits plus 2 reach bit 6 only at 62 and 63, with no carry
    /// into the next byte) instead of a test and a branch per byte; the same keys as byte by
    /// byte (`seeded_keys_are_stable`), ≈ 90 instructions less per key (BENCHMARKS.md).
    fn generate(rng: &mut dyn RngCore) -> Secret {
        // The alphabet, and two bytes that a rejected value would map to, never used.
        const TABLE: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789__";
        const LOW6: u64 = 0x3f3f_3f3f_3f3f_3f3f;
        let mut bytes = [0u8; KEY_LEN];
        let mut filled = 0;
        let mut random = [0u8; 64];
        while filled < KEY_LEN {
            rng.fill_bytes(&mut random);
            for chunk in random.chunks_exact(8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let six = u64::from_le_bytes(word) & LOW6;
                if (six + 0x0202_0202_0202_0202) & 0x4040_4040_4040_4040 == 0
                    && let Some(out) = bytes.get_mut(filled..filled + 8)
                {
                    for (o, c) in out.iter_mut().zip(six.to_le_bytes()) {
                        *o = TABLE.get(usize::from(c & 0x3f)).copied().unwrap_or(b'_');
                    }
                    filled += 8;
                    continue;
                }
                for c in chunk.iter().map(|b| b & 0x3f).filter(|c| *c < 62) {
                    let Some(slot) = bytes.get_mut(filled) else {
                        break;
                    };
                    *slot = TABLE.get(usize::from(c)).copied().unwrap_or(b'_');
                    filled += 1;
                }
                if filled == KEY_LEN {
                    break;
                }
            }
        }
        Secret(bytes)
    }

    fn parse(s: &str) -> Option<Secret> {
        let bytes: [u8; KEY_LEN] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(Secret(bytes))
    }

    fn as_str(&self) -> &str {
        // Always ASCII by construction (generate/parse), so this never takes the fallback.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// Constant-time comparison with a presented key. The length is not secret (every key
    /// has the same one), so a wrong length returns early; the contents never do.
    fn matches(&self, presented: &str) -> bool {
        let presented = presented.as_bytes();
        presented.len() == KEY_LEN && ct_eq(&self.0, presented)
    }

    /// The first eight bytes, used only to find the agent a presented key may belong to; the
    /// whole key is then compared in constant time. Learning a selector by timing still leaves
    /// 36 unknown characters (over 200 bits).
    fn selector(bytes: &[u8]) -> Option<u64> {
        let head: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(head))
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        ct_eq(&self.0, &other.0)
    }
}
impl Eq for Secret {}

/// Constant-time equality of a key with `KEY_LEN` presented bytes, a machine word at a time
/// (`subtle`'s comparison of the OR of the words' differences; its byte-slice comparison is
/// several times slower).
fn ct_eq(key: &[u8; KEY_LEN], presented: &[u8]) -> bool {
    let word = |chunk: &[u8]| {
        let mut w = [0u8; 8];
        for (d, s) in w.iter_mut().zip(chunk) {
            *d = *s;
        }
        u64::from_le_bytes(w)
    };
    // The differences of all words, OR-ed without a branch, then one constant-time test.
    let mut diff = u64::from(presented.len() != KEY_LEN);
    for (a, b) in key.chunks(8).zip(presented.chunks(8)) {
        diff |= word(a) ^ word(b);
    }
    bool::from(diff.ct_eq(&0))
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Secret);

        impl $name {
            /// Draws a fresh key from `rng` (which should be a CSPRNG).
            pub fn generate(rng: &mut dyn RngCore) -> $name {
                $name(Secret::generate(rng))
            }

            /// Parses a key in our format (44 ASCII alphanumerics), e.g. from a snapshot.
            pub fn parse(s: &str) -> Option<$name> {
                Secret::parse(s).map($name)
            }

            /// Whether `presented` is this key, compared in constant time.
            pub fn matches(&self, presented: &str) -> bool {
                self.0.matches(presented)
            }

            /// The key itself, to hand to its owner or to persist. Never log it.
            pub fn expose_secret(&self) -> &str {
                self.0.as_str()
            }

        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!($what, "(<redacted>)"))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.expose_secret())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(concat!(
                        "a ",
                        $what,
                        " must be 44 ASCII letters and digits"
                    ))
                })
            }
        }
    };
}

key_type!(
    /// A scan agent's key (`scanAgentSecureKey`): identifies one registered agent.
    AgentKey,
    "AgentKey"
);
key_type!(
    /// A task key (`secureTaskKey`): valid for one assignment of one task to one agent.
    TaskKey,
    "TaskKey"
);

impl AgentKey {
    /// The agent index's lookup value for this key (see `Secret::selector`).
    pub(crate) fn selector(&self) -> u64 {
        Secret::selector(&self.0.0).unwrap_or(0)
    }
}

/// The selector of a presented key, if it is long enough to have one.
pub(crate) fn presented_selector(presented: &str) -> Option<u64> {
    Secret::selector(presented.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn key_characters_are_uniform() {
        // 10 000 keys = 440 000 characters, about 7 097 of each of the 62 (σ ≈ 83). A bias as
        // small as `byte % 62` would push the first characters past 7 700.
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..10_000 {
            for c in TaskKey::generate(&mut rng).expose_secret().chars() {
                *counts.entry(c).or_insert(0u32) += 1;
            }
        }
        assert_eq!(counts.len(), 62);
        for (c, n) in counts {
            assert!((6_500..7_700).contains(&n), "{c:?} drawn {n} times");
        }
    }

    /// The generator as first written (byte by byte): a seed must keep giving the same keys.
    fn reference_generate(rng: &mut dyn RngCore) -> [u8; KEY_LEN] {
        const ALPHABET: &[u8; 62] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut bytes = [0u8; KEY_LEN];
        let mut filled = 0;
        let mut random = [0u8; 64];
        while filled < KEY_LEN {
            rng.fill_bytes(&mut random);
            for b in random {
                let c = usize::from(b & 0x3f);
                if c < 62 && filled < KEY_LEN {
                    bytes[filled] = ALPHABET[c];
                    filled += 1;
                }
            }
        }
        bytes
    }

    #[test]
    fn seeded_keys_are_stable() {
        let mut a = rand_chacha::ChaCha20Rng::from_seed([5; 32]);
        let mut b = a.clone();
        for _ in 0..20_000 {
            let k = Secret::generate(&mut a);
            assert_eq!(k.0, reference_generate(&mut b));
        }
        // A stream of rejected bytes forces a second draw.
        struct Rejects(u8);
        impl RngCore for Rejects {
            fn next_u32(&mut self) -> u32 {
                0
            }
            fn next_u64(&mut self) -> u64 {
                0
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                for (i, d) in dest.iter_mut().enumerate() {
                    *d = if i % 2 == 0 { 63 } else { self.0 };
                    self.0 = self.0.wrapping_add(1);
                }
            }
        }
        assert_eq!(
            Secret::generate(&mut Rejects(0)).0,
            reference_generate(&mut Rejects(0))
        );
    }

    #[test]
    fn comparison() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([8; 32]);
        let k = TaskKey::generate(&mut rng);
        let s = k.expose_secret().to_owned();
        assert!(k.matches(&s));
        for i in 0..KEY_LEN {
            let mut other = s.clone().into_bytes();
            other[i] = if other[i] == b'a' { b'b' } else { b'a' };
            assert!(!k.matches(std::str::from_utf8(&other).unwrap()));
        }
        assert!(!k.matches(&format!("{s}a")));
        assert!(!k.matches(""));
    }

    #[test]
    fn keys_are_44_alphanumerics_and_redacted() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
        let k = AgentKey::generate(&mut rng);
        let s = k.expose_secret().to_owned();
        assert_eq!(s.len(), KEY_LEN);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(k.matches(&s));
        assert!(!k.matches(&s[..43]));
        assert!(!format!("{k:?}").contains(&s));
        assert_eq!(AgentKey::parse(&s), Some(k.clone()));
        assert_eq!(AgentKey::parse("short"), None);
        assert_eq!(AgentKey::parse(&format!("{}!", &s[..43])), None);
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert!(serde_json::from_str::<AgentKey>("\"nope\"").is_err());
    }
}
