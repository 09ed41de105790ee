//! JSON: a streaming parse with `serde_json` into visitors that keep only counts (everything
//! else is skipped as `IgnoredAny`, which `serde_json` does without buffering).

use std::fmt;
use std::io::BufRead;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Format, Guard, InspectError, Kept, Parsed, ReportKind, Tally};

/// What the top-level object held.
#[derive(Default)]
struct Top {
    /// `@version`, `@programName` or `@generated` (ZAP).
    zap_header: bool,
    /// `site` was an array (ZAP).
    zap_sites: bool,
    zap: Tally,
    /// `vulnerabilities` was an object (Wapiti).
    wapiti_vulnerabilities: bool,
    /// `infos`, `classifications`, `anomalies` or `additionals` (Wapiti).
    wapiti_other: bool,
    wapiti: Tally,
    /// `infos.version` (Wapiti).
    wapiti_version: Option<Kept>,
}

impl Top {
    fn kind(&self) -> Option<ReportKind> {
        if self.zap_sites && self.zap_header {
            Some(ReportKind::ZapJson)
        } else if self.wapiti_vulnerabilities && self.wapiti_other {
            Some(ReportKind::WapitiJson)
        } else {
            None
        }
    }
}

/// Reads the JSON value from the guard (whose next byte is `{` or `[`) to its end or its first
/// fault.
pub(super) fn parse<R: BufRead>(guard: &mut Guard<R>) -> Result<Parsed, InspectError> {
    let mut top = Top::default();
    let outcome = {
        let mut de = serde_json::Deserializer::from_reader(&mut *guard);
        TopSeed(&mut top)
            .deserialize(&mut de)
            .and_then(|()| de.end())
    };
    if let Err(e) = outcome {
        if let Some(read) = guard.read_error() {
            return Err(InspectError::Read(read));
        }
        let problem = guard
            .limit_problem()
            .unwrap_or_else(|| format!("The result file is not well-formed JSON: {e}."));
        return Ok(Parsed {
            format: Format::Json,
            report: top.kind(),
            findings: None,
            problem: Some(problem),
        });
    }
    let report = top.kind();
    let findings = match report {
        Some(ReportKind::ZapJson) => Some(top.zap.finish(ReportKind::ZapJson, None)),
        Some(ReportKind::WapitiJson) => {
            let version = top.wapiti_version.as_ref().map(Kept::value);
            Some(top.wapiti.finish(ReportKind::WapitiJson, version))
        }
        _ => None,
    };
    Ok(Parsed {
        format: Format::Json,
        report,
        findings,
        problem: None,
    })
}

/// Implements every scalar `visit_*` of a visitor whose value is `()` as "ignore it", so that a
/// value of an unexpected type is skipped rather than refused (it is still well-formed JSON).
macro_rules! ignore_scalars {
    () => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

/// Skips the rest of a sequence.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips the rest of a map.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// An object key, kept only when it is one of the few that matter.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Site,
    Alerts,
    Riskcode,
    ZapHeader,
    Vulnerabilities,
    WapitiOther,
    Infos,
    Level,
    Version,
    Other,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "site" => Key::Site,
                    "alerts" => Key::Alerts,
                    "riskcode" => Key::Riskcode,
                    "@version" | "@programName" | "@generated" => Key::ZapHeader,
                    "vulnerabilities" => Key::Vulnerabilities,
                    "classifications" | "anomalies" | "additionals" => Key::WapitiOther,
                    "infos" => Key::Infos,
                    "level" => Key::Level,
                    "version" => Key::Version,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The top-level value.
struct TopSeed<'a>(&'a mut Top);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    ignore_scalars!();
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        skip_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let top = self.0;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::ZapHeader => {
                    top.zap_header = true;
                    map.next_value::<IgnoredAny>()?;
                }
                Key::Site => {
                    top.zap_sites |= map.next_value_seed(Each(Site(&mut top.zap)))?;
                }
                Key::Vulnerabilities => {
                    top.wapiti_vulnerabilities |=
                        map.next_value_seed(Categories(&mut top.wapiti))?;
                }
                Key::Infos => {
                    top.wapiti_other = true;
                    map.next_value_seed(Infos(&mut top.wapiti_version))?;
                }
                Key::WapitiOther => {
                    top.wapiti_other = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A seed for one element of a sequence: gives `()` and counts into its borrowed state.
trait Element {
    fn element<'de, A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error>;
}

/// An array whose every element goes through `E`; the value is whether it was an array.
struct Each<E>(E);

impl<'de, E: Element> DeserializeSeed<'de> for Each<E> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, E: Element> Visitor<'de> for Each<E> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_bool<Er: serde::de::Error>(self, _: bool) -> Result<bool, Er> {
        Ok(false)
    }
    fn visit_i64<Er: serde::de::Error>(self, _: i64) -> Result<bool, Er> {
        Ok(false)
    }
    fn visit_u64<Er: serde::de::Error>(self, _: u64) -> Result<bool, Er> {
        Ok(false)
    }
    fn visit_f64<Er: serde::de::Error>(self, _: f64) -> Result<bool, Er> {
        Ok(false)
    }
    fn visit_str<Er: serde::de::Error>(self, _: &str) -> Result<bool, Er> {
        Ok(false)
    }
    fn visit_unit<Er: serde::de::Error>(self) -> Result<bool, Er> {
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        skip_map(map).map(|()| false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut each = self.0;
        while each.element(&mut seq)? {}
        Ok(true)
    }
}

/// A ZAP site: `{"@name": ..., "alerts": [...]}`.
struct Site<'a>(&'a mut Tally);

impl Element for Site<'_> {
    fn element<'de, A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        Ok(seq.next_element_seed(SiteSeed(self.0))?.is_some())
    }
}

struct SiteSeed<'a>(&'a mut Tally);

impl<'de> DeserializeSeed<'de> for SiteSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SiteSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a site")
    }
    ignore_scalars!();
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        skip_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            if key == Key::Alerts {
                map.next_value_seed(Each(Finding {
                    tally: &mut *self.0,
                    kind: ReportKind::ZapJson,
                    key: Key::Riskcode,
                }))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// One finding, an object whose `key` holds its severity; counted once per object.
struct Finding<'a> {
    tally: &'a mut Tally,
    kind: ReportKind,
    key: Key,
}

impl Element for Finding<'_> {
    fn element<'de, A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        let seed = FindingSeed {
            tally: &mut *self.tally,
            kind: self.kind,
            key: self.key,
        };
        Ok(seq.next_element_seed(seed)?.is_some())
    }
}

struct FindingSeed<'a> {
    tally: &'a mut Tally,
    kind: ReportKind,
    key: Key,
}

impl<'de> DeserializeSeed<'de> for FindingSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FindingSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a finding")
    }
    ignore_scalars!();
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        skip_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut severity = Kept::default();
        while let Some(key) = map.next_key::<Key>()? {
            if key == self.key {
                severity.clear();
                map.next_value_seed(Scalar(&mut severity))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        self.tally.add(self.kind, severity.value());
        Ok(())
    }
}

/// A scalar kept as text (at most 64 bytes); anything else is skipped and keeps nothing.
struct Scalar<'a>(&'a mut Kept);

impl<'de> DeserializeSeed<'de> for Scalar<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scalar<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.0.push(v.to_string().as_bytes());
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.0.push(v.to_string().as_bytes());
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push(v.as_bytes());
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        skip_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        skip_map(map)
    }
}

/// Wapiti's `vulnerabilities`: `{"<category>": [{"level": 1, ...}, ...], ...}`; the value is
/// whether it was an object.
struct Categories<'a>(&'a mut Tally);

impl<'de> DeserializeSeed<'de> for Categories<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Categories<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of categories")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        skip_seq(seq).map(|()| false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Each(Finding {
                tally: &mut *self.0,
                kind: ReportKind::WapitiJson,
                key: Key::Level,
            }))?;
        }
        Ok(true)
    }
}

/// Wapiti's `infos`: `{"version": "Wapiti 3.0.4", ...}`.
struct Infos<'a>(&'a mut Option<Kept>);

impl<'de> DeserializeSeed<'de> for Infos<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Infos<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of scan information")
    }
    ignore_scalars!();
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        skip_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            if key == Key::Version {
                let mut version = Kept::default();
                map.next_value_seed(Scalar(&mut version))?;
                *self.0 = Some(version);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}
