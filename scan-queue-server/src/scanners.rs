//! The scanners this server knows: display names (what tasks carry) and short names.

use std::fmt;
use std::str::FromStr;

/// One scanner: its display name (a task's `scanner`, what agents list) and its short name
/// (`scannerShortName`, the scan configuration's `name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanner {
    /// E.g. `Burp Suite Pro`.
    pub name: String,
    /// E.g. `burp`.
    pub short_name: String,
}

impl FromStr for Scanner {
    type Err = String;

    /// Parses `Display Name=short` (the `--scanner` flag).
    fn from_str(s: &str) -> Result<Scanner, String> {
        let (name, short) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("expected NAME=SHORT, got '{s}'"))?;
        let (name, short) = (name.trim(), short.trim());
        let valid = |n: &str| {
            !n.is_empty() && !n.contains(',') && !n.chars().any(char::is_control) && n.len() <= 128
        };
        if !valid(name) || !valid(short) {
            return Err(format!(
                "scanner names must be 1 to 128 bytes without commas or control characters: '{s}'"
            ));
        }
        Ok(Scanner {
            name: name.to_owned(),
            short_name: short.to_owned(),
        })
    }
}

impl fmt::Display for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.short_name)
    }
}

/// The scanner table. Names are matched exactly (case-sensitive), display name or short name.
///
/// ```
/// use scan_queue_server::Scanners;
/// let scanners = Scanners::default();
/// assert_eq!(scanners.resolve("zap").unwrap().name, "OWASP Zed Attack Proxy");
/// assert_eq!(scanners.resolve("Burp Suite Pro").unwrap().short_name, "burp");
/// assert!(scanners.resolve("Nessus").is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanners(Vec<Scanner>);

impl Default for Scanners {
    /// The six scanners of ThreadFix's scan agent (SPEC §6).
    fn default() -> Scanners {
        let six = [
            ("Acunetix WVS", "acunetix"),
            ("AppSpider", "appspider"),
            ("Burp Suite Pro", "burp"),
            ("IBM Security AppScan Standard", "appscan"),
            ("OWASP Zed Attack Proxy", "zap"),
            ("WebInspect", "webinspect"),
        ];
        Scanners(
            six.iter()
                .map(|(name, short)| Scanner {
                    name: (*name).to_owned(),
                    short_name: (*short).to_owned(),
                })
                .collect(),
        )
    }
}

impl Scanners {
    /// A table of `scanners`; `None` if it is empty or a name is used twice.
    pub fn new(scanners: Vec<Scanner>) -> Option<Scanners> {
        let mut names: Vec<&str> = scanners
            .iter()
            .flat_map(|s| [s.name.as_str(), s.short_name.as_str()])
            .collect();
        // A scanner's short name may equal its own display name; count each scanner once.
        let own = scanners.iter().filter(|s| s.name == s.short_name).count();
        let total = names.len() - own;
        names.sort_unstable();
        names.dedup();
        (!scanners.is_empty() && names.len() == total).then_some(Scanners(scanners))
    }

    /// The scanner with this display or short name.
    pub fn resolve(&self, name: &str) -> Option<&Scanner> {
        self.0
            .iter()
            .find(|s| s.name == name)
            .or_else(|| self.0.iter().find(|s| s.short_name == name))
    }

    /// The short name of a display name.
    pub fn short_name(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.short_name.as_str())
    }

    /// Every scanner, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Scanner> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_table() {
        let s: Scanner = "Nessus Pro=nessus".parse().unwrap();
        assert_eq!(s.name, "Nessus Pro");
        assert_eq!(s.short_name, "nessus");
        assert!("nessus".parse::<Scanner>().is_err());
        assert!("a,b=c".parse::<Scanner>().is_err());
        assert!("=c".parse::<Scanner>().is_err());
        assert!(Scanners::new(vec![s.clone(), s.clone()]).is_none());
        assert!(Scanners::new(vec![]).is_none());
        let same: Scanner = "ZAP=ZAP".parse().unwrap();
        assert!(Scanners::new(vec![same]).is_some());
        assert_eq!(Scanners::default().iter().count(), 6);
    }
}
