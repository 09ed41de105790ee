//! Inspection of a scan's result file: is it well-formed XML or JSON, is it the report of the
//! task's scanner, and how many findings of each severity does it hold.
//!
//! [`inspect`] reads the file once, as a stream, from a [`BufRead`] it is given, and keeps only
//! counts: no tree is built, buffers are reused, and every text it keeps (a severity, a version)
//! is cut to 64 bytes. Memory is bounded whatever the file's size: a single token (an XML tag,
//! text run or CDATA section, or a JSON string) longer than [`MAX_TOKEN_BYTES`], XML nested
//! deeper than [`MAX_XML_DEPTH`] elements, or an element name longer than
//! [`MAX_XML_NAME_BYTES`], or JSON nested deeper than [`MAX_JSON_DEPTH`] stops the inspection
//! (and is refused unless the check is [`ResultCheck::None`]).
//! It never panics, whatever the bytes.
//!
//! # Formats
//!
//! The root element (XML) or the top-level keys (JSON) tell a report's kind; they were learned
//! from real reports (DefectDojo's sample reports and parsers, ZAP's report add-on tests, and a
//! report made with Debian's Wapiti 3.0.4; `tests/fixtures/reports/README.md` names each source):
//!
//! | [`ReportKind`] | scanner short name | how it is recognised | findings counted | severity |
//! | --- | --- | --- | --- | --- |
//! | `ZapXml` | `zap` | root `<OWASPZAPReport>` | `site/alerts/alertitem` | `riskcode` 3, 2, 1, 0 |
//! | `ZapJson` | `zap` | object with `site` (an array) and `@version`, `@programName` or `@generated` | `site[].alerts[]` | `riskcode` 3, 2, 1, 0 |
//! | `BurpXml` | `burp` | root `<issues>` | `issue` | `severity` High, Medium, Low, Information |
//! | `AppScanXml` | `appscan` | root `<xml-report>` | `issue-group/item` | `severity` Critical, High, Medium, Low, Informational |
//! | `AcunetixXml` | `acunetix` | root `<ScanGroup>` | `Scan/ReportItems/ReportItem` | `Severity` critical, high, medium, low, informational |
//! | `WebInspectXml` | `webinspect` | root `<Sessions>` | `Session/Issues/Issue` | `Severity` 4 (critical), 3, 2, 1, 0 |
//! | `WapitiXml` | `wapiti` | root `<report>` | `vulnerabilities/vulnerability/entries/entry` | `level`, see below |
//! | `WapitiJson` | `wapiti` | object with `vulnerabilities` (an object) and `infos`, `classifications`, `anomalies` or `additionals` | `vulnerabilities.<category>[]` | `level`, see below |
//! | `AppSpiderXml` | `appspider` | root `<VulnSummary>` | `VulnList/Vuln` | `AttackScore` 4-High, 3-Medium, 2-Low, 1-Informational, 0-Safe |
//!
//! Each finding counts once, as the scanner lists it: DefectDojo merges some of them (Burp issues
//! of one type, Wapiti entries with one description), these counts do not. Wapiti's `anomalies`
//! and `additionals` are not findings (DefectDojo's Wapiti parser reads `vulnerabilities` only).
//!
//! # Severities
//!
//! Counts go in four buckets, [`Findings`]. A **critical** severity (AppScan's and Acunetix's
//! "critical", WebInspect's 4, Wapiti's 4) counts as **high**. A missing, empty or unknown
//! severity counts as **informational**, as DefectDojo's parsers default to "Info". Wapiti's
//! `level` changed meaning: Wapiti 3.0.3 and earlier wrote 1 for high, 2 for medium and 3 for
//! low; 3.0.4 and later write 4 critical, 3 high, 2 medium, 1 low, 0 informational (as strings
//! until 3.0.8, numbers since 3.0.9), so the report's version (`generatorVersion` in XML,
//! `infos.version` in JSON; the later scheme when it has none) picks the scheme. AppSpider's
//! `AttackScore` is read by its own label (DefectDojo moves each one step up).
//!
//! # Checks
//!
//! - [`ResultCheck::None`]: never refuses; still tells the format, the kind and the counts when
//!   the file is well-formed, and what is wrong with it in [`Inspection::problem`].
//! - [`ResultCheck::Wellformed`] (the default): the file must be non-empty, well-formed XML
//!   (every element closed, names matched, one root, attributes well-formed, only whitespace,
//!   comments and processing instructions outside the root, no undeclared entity) or
//!   well-formed JSON (one value). The first non-whitespace byte tells which (`<`, or `{`/`[`);
//!   a UTF-8 byte order mark is allowed. XML must be UTF-8 (a declared single-byte encoding
//!   passes while the text is ASCII); UTF-16 files are refused.
//! - [`ResultCheck::Scanner`]: also, for the scanners above, the report must be of one of its
//!   scanner's kinds. Other scanners get the `wellformed` check.
//!
//! ```
//! use scan_queue_server::report::{inspect, Findings, ReportKind, ResultCheck};
//! let xml = br#"<?xml version="1.0"?><OWASPZAPReport version="2.9.0"><site name="http://a">
//!   <alerts><alertitem><riskcode>3</riskcode></alertitem>
//!   <alertitem><riskcode>1</riskcode></alertitem></alerts></site></OWASPZAPReport>"#;
//! let seen = inspect(&xml[..], "zap", ResultCheck::Scanner).unwrap();
//! assert_eq!(seen.report, Some(ReportKind::ZapXml));
//! assert_eq!(seen.content_type, "application/xml");
//! assert_eq!(seen.findings, Some(Findings { high: 1, medium: 0, low: 1, informational: 0 }));
//!
//! let refused = inspect(&xml[..], "burp", ResultCheck::Scanner).unwrap_err();
//! assert_eq!(
//!     refused.to_string(),
//!     "The result file is not a Burp Suite Pro report: its root element is <OWASPZAPReport>, \
//!      not <issues> (an OWASP Zed Attack Proxy report?)."
//! );
//! ```

use std::fmt;
use std::io::{self, BufRead, Read};
use std::str::FromStr;

mod json;
mod xml;

/// The longest single token inspected: an XML tag, text run or CDATA section, or a JSON string
/// (16 MiB). Parsers hold one token in memory at a time; a longer one stops the inspection.
pub const MAX_TOKEN_BYTES: u64 = 16 * 1024 * 1024;

/// The deepest XML nesting inspected (256 elements); real reports nest fewer than 20.
pub const MAX_XML_DEPTH: usize = 256;

/// The deepest JSON nesting inspected (64 arrays or objects); real reports nest fewer than 8.
/// (`serde_json` skips ignored values without recursing, but keeps a byte per level.)
pub const MAX_JSON_DEPTH: u32 = 64;

/// The longest XML element name inspected (1024 bytes).
pub const MAX_XML_NAME_BYTES: usize = 1024;

/// The most bytes of a text kept (a severity, a version): the rest is dropped.
const MAX_KEPT_TEXT: usize = 64;

/// The longest root element name kept in [`Format::Xml`].
const MAX_ROOT_NAME: usize = 128;

/// How strictly a result file is checked (the server's `--result-check`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ResultCheck {
    /// Accept any file; still detect its format and count its findings when possible.
    None,
    /// The file must be well-formed XML or JSON (the default).
    #[default]
    Wellformed,
    /// Well-formed, and a report of the task's scanner when the scanner is one this module
    /// knows (zap, burp, appscan, acunetix, webinspect, wapiti, appspider).
    Scanner,
}

impl ResultCheck {
    /// Every check, loosest first.
    pub const ALL: [ResultCheck; 3] = [
        ResultCheck::None,
        ResultCheck::Wellformed,
        ResultCheck::Scanner,
    ];

    /// The name on the command line: `none`, `wellformed` or `scanner`.
    pub fn name(self) -> &'static str {
        match self {
            ResultCheck::None => "none",
            ResultCheck::Wellformed => "wellformed",
            ResultCheck::Scanner => "scanner",
        }
    }
}

impl FromStr for ResultCheck {
    type Err = String;

    /// Parses `none`, `wellformed` or `scanner`.
    fn from_str(s: &str) -> Result<ResultCheck, String> {
        ResultCheck::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("expected none, wellformed or scanner, got '{s}'"))
    }
}

impl fmt::Display for ResultCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Findings counted per severity. Critical findings count as `high`; a missing or unknown
/// severity counts as `informational`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Findings {
    /// High and critical.
    pub high: u64,
    /// Medium.
    pub medium: u64,
    /// Low.
    pub low: u64,
    /// Informational, and any severity not recognised.
    pub informational: u64,
}

impl Findings {
    /// All findings.
    pub fn total(&self) -> u64 {
        self.high
            .saturating_add(self.medium)
            .saturating_add(self.low)
            .saturating_add(self.informational)
    }

    fn add(&mut self, severity: Severity) {
        self.add_n(severity, 1);
    }

    fn add_n(&mut self, severity: Severity, n: u64) {
        let bucket = match severity {
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Informational => &mut self.informational,
        };
        *bucket = bucket.saturating_add(n);
    }
}

/// One finding's severity, in [`Findings`]' four buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Severity {
    High,
    Medium,
    Low,
    Informational,
}

/// The format of a result file, told by its first non-whitespace byte.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// XML (the first byte is `<`).
    Xml {
        /// The root element's name (at most 128 bytes), or `None` when the file ends, or stops
        /// being well-formed, before one.
        root: Option<String>,
    },
    /// JSON (the first byte is `{` or `[`).
    Json,
    /// Anything else, empty files included.
    Other,
}

impl Format {
    /// `application/xml`, `application/json` or `application/octet-stream`.
    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Xml { .. } => "application/xml",
            Format::Json => "application/json",
            Format::Other => "application/octet-stream",
        }
    }
}

/// The scanner report formats this module recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// OWASP ZAP's traditional XML report (root `<OWASPZAPReport>`).
    ZapXml,
    /// OWASP ZAP's traditional JSON report (`@version`, `site[].alerts[]`).
    ZapJson,
    /// Burp Suite's XML issues export (root `<issues>`).
    BurpXml,
    /// IBM/HCL AppScan Standard's XML report (root `<xml-report>`).
    AppScanXml,
    /// Acunetix WVS's XML export (root `<ScanGroup>`).
    AcunetixXml,
    /// WebInspect's XML export (root `<Sessions>`).
    WebInspectXml,
    /// Wapiti's XML report (root `<report>`).
    WapitiXml,
    /// Wapiti's JSON report (`vulnerabilities`, `infos`, ...).
    WapitiJson,
    /// AppSpider's VulnerabilitiesSummary.xml (root `<VulnSummary>`).
    AppSpiderXml,
}

impl ReportKind {
    /// Every kind.
    pub const ALL: [ReportKind; 9] = [
        ReportKind::ZapXml,
        ReportKind::ZapJson,
        ReportKind::BurpXml,
        ReportKind::AppScanXml,
        ReportKind::AcunetixXml,
        ReportKind::WebInspectXml,
        ReportKind::WapitiXml,
        ReportKind::WapitiJson,
        ReportKind::AppSpiderXml,
    ];

    /// A short name, e.g. `zap-xml`.
    pub fn name(self) -> &'static str {
        match self {
            ReportKind::ZapXml => "zap-xml",
            ReportKind::ZapJson => "zap-json",
            ReportKind::BurpXml => "burp-xml",
            ReportKind::AppScanXml => "appscan-xml",
            ReportKind::AcunetixXml => "acunetix-xml",
            ReportKind::WebInspectXml => "webinspect-xml",
            ReportKind::WapitiXml => "wapiti-xml",
            ReportKind::WapitiJson => "wapiti-json",
            ReportKind::AppSpiderXml => "appspider-xml",
        }
    }

    /// The short name of the scanner that writes it (`zap`, `burp`, ...).
    pub fn scanner_short_name(self) -> &'static str {
        match self {
            ReportKind::ZapXml | ReportKind::ZapJson => "zap",
            ReportKind::BurpXml => "burp",
            ReportKind::AppScanXml => "appscan",
            ReportKind::AcunetixXml => "acunetix",
            ReportKind::WebInspectXml => "webinspect",
            ReportKind::WapitiXml | ReportKind::WapitiJson => "wapiti",
            ReportKind::AppSpiderXml => "appspider",
        }
    }

    /// The display name of the scanner that writes it (the server's default scanner names).
    pub fn scanner_name(self) -> &'static str {
        match self {
            ReportKind::ZapXml | ReportKind::ZapJson => "OWASP Zed Attack Proxy",
            ReportKind::BurpXml => "Burp Suite Pro",
            ReportKind::AppScanXml => "IBM Security AppScan Standard",
            ReportKind::AcunetixXml => "Acunetix WVS",
            ReportKind::WebInspectXml => "WebInspect",
            ReportKind::WapitiXml | ReportKind::WapitiJson => "Wapiti",
            ReportKind::AppSpiderXml => "AppSpider",
        }
    }

    /// The root element of an XML kind; `None` for a JSON kind.
    pub fn xml_root(self) -> Option<&'static str> {
        match self {
            ReportKind::ZapXml => Some("OWASPZAPReport"),
            ReportKind::BurpXml => Some("issues"),
            ReportKind::AppScanXml => Some("xml-report"),
            ReportKind::AcunetixXml => Some("ScanGroup"),
            ReportKind::WebInspectXml => Some("Sessions"),
            ReportKind::WapitiXml => Some("report"),
            ReportKind::AppSpiderXml => Some("VulnSummary"),
            ReportKind::ZapJson | ReportKind::WapitiJson => None,
        }
    }

    /// The kinds a scanner writes, by its short name (ASCII case ignored); empty for a scanner
    /// this module does not know.
    pub fn of_scanner(scanner_short_name: &str) -> &'static [ReportKind] {
        const ZAP: &[ReportKind] = &[ReportKind::ZapXml, ReportKind::ZapJson];
        const BURP: &[ReportKind] = &[ReportKind::BurpXml];
        const APPSCAN: &[ReportKind] = &[ReportKind::AppScanXml];
        const ACUNETIX: &[ReportKind] = &[ReportKind::AcunetixXml];
        const WEBINSPECT: &[ReportKind] = &[ReportKind::WebInspectXml];
        const WAPITI: &[ReportKind] = &[ReportKind::WapitiXml, ReportKind::WapitiJson];
        const APPSPIDER: &[ReportKind] = &[ReportKind::AppSpiderXml];
        let name = scanner_short_name.trim();
        let table: [(&str, &'static [ReportKind]); 7] = [
            ("zap", ZAP),
            ("burp", BURP),
            ("appscan", APPSCAN),
            ("acunetix", ACUNETIX),
            ("webinspect", WEBINSPECT),
            ("wapiti", WAPITI),
            ("appspider", APPSPIDER),
        ];
        table
            .iter()
            .find(|(short, _)| short.eq_ignore_ascii_case(name))
            .map_or(&[], |(_, kinds)| kinds)
    }

    fn from_xml_root(local_name: &str) -> Option<ReportKind> {
        ReportKind::ALL
            .into_iter()
            .find(|k| k.xml_root() == Some(local_name))
    }
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`inspect`] found in a result file it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// XML, JSON or other.
    pub format: Format,
    /// The format's media type: `application/xml`, `application/json` or
    /// `application/octet-stream`.
    pub content_type: &'static str,
    /// The scanner report kind, when the root element or top-level keys are one's.
    pub report: Option<ReportKind>,
    /// Findings per severity, for a well-formed report of a known kind.
    pub findings: Option<Findings>,
    /// What is wrong with the file, when the check let it through anyway (only
    /// [`ResultCheck::None`] does): the refusal the stricter checks would give.
    pub problem: Option<String>,
}

/// Why [`inspect`] did not accept a result file.
#[derive(Debug)]
pub enum InspectError {
    /// The file does not pass the check: the message is for the task's `COMPLETE_FAILED`
    /// status and the failure envelope, e.g. `The result file is empty.`
    Refused(String),
    /// Reading the file failed: the server's fault, not the file's.
    Read(io::Error),
}

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InspectError::Refused(reason) => f.write_str(reason),
            InspectError::Read(e) => write!(f, "The result file could not be read: {e}"),
        }
    }
}

impl std::error::Error for InspectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InspectError::Refused(_) => None,
            InspectError::Read(e) => Some(e),
        }
    }
}

/// Inspects a result file for a task of `scanner_short_name` (`zap`, `burp`, `appscan`,
/// `acunetix`, `webinspect`, `wapiti`, `appspider`, or any other name) under `check`, reading
/// `reader` once to its end (or to the first fault, or to a wrong root element under
/// [`ResultCheck::Scanner`]).
///
/// `Err(InspectError::Refused(reason))` when the file fails the check (never under
/// [`ResultCheck::None`]); the reasons, one sentence each:
/// - `The result file is empty.` / `The result file holds only whitespace.`
/// - `The result file is neither XML nor JSON: its first byte is 0x89 (a PNG image?).`
/// - `The result file is UTF-16 text; only UTF-8 XML or JSON is inspected.`
/// - `The result file is not well-formed XML: <what> at byte N.`
/// - `The result file is not well-formed JSON: <what> at line L column C.`
/// - `The result file is not inspected: <over which limit> at byte N.`
/// - `The result file is not an OWASP Zed Attack Proxy report: its root element is <issues>,
///   not <OWASPZAPReport> (a Burp Suite Pro report?).`, or for JSON `... it is JSON, and Burp
///   Suite Pro reports are XML (<issues>) ...` / `... it is JSON without the top-level keys of
///   Wapiti's JSON report ...`
///
/// `Err(InspectError::Read(_))` when `reader` fails, under every check: that is no fault of the
/// file (the server's disk, not the agent), so it is kept apart from refusals.
pub fn inspect(
    reader: impl BufRead,
    scanner_short_name: &str,
    check: ResultCheck,
) -> Result<Inspection, InspectError> {
    let mut guard = Guard::new(reader);
    let expected = match check {
        ResultCheck::Scanner => ReportKind::of_scanner(scanner_short_name),
        ResultCheck::None | ResultCheck::Wellformed => &[],
    };
    let parsed = match guard.sniff().map_err(InspectError::Read)? {
        Sniff::Empty => Parsed::other("The result file is empty.".to_owned()),
        Sniff::Blank => Parsed::other("The result file holds only whitespace.".to_owned()),
        Sniff::Utf16 => Parsed::other(
            "The result file is UTF-16 text; only UTF-8 XML or JSON is inspected.".to_owned(),
        ),
        Sniff::First(b'<') => xml::parse(&mut guard, expected)?,
        Sniff::First(b'{' | b'[') => json::parse(&mut guard)?,
        Sniff::First(byte) => Parsed::other(format!(
            "The result file is neither XML nor JSON: its first byte is {}{}.",
            describe_byte(byte),
            guard.magic_hint()
        )),
    };
    if let (Some(problem), true) = (&parsed.problem, check != ResultCheck::None) {
        return Err(InspectError::Refused(problem.clone()));
    }
    if !expected.is_empty() && !parsed.report.is_some_and(|k| expected.contains(&k)) {
        return Err(InspectError::Refused(mismatch(expected, &parsed)));
    }
    let findings = match parsed.problem {
        Some(_) => None,
        None => parsed.findings,
    };
    Ok(Inspection {
        content_type: parsed.format.content_type(),
        format: parsed.format,
        report: parsed.report,
        findings,
        problem: parsed.problem,
    })
}

/// What a parser found.
#[derive(Debug)]
struct Parsed {
    format: Format,
    report: Option<ReportKind>,
    /// Counts, meaningful only when the parse reached the end without a problem.
    findings: Option<Findings>,
    /// The refusal message, when the file is not well-formed or over a limit.
    problem: Option<String>,
}

impl Parsed {
    fn other(problem: String) -> Parsed {
        Parsed {
            format: Format::Other,
            report: None,
            findings: None,
            problem: Some(problem),
        }
    }
}

/// The refusal for a file of another kind than the task's scanner writes.
fn mismatch(expected: &[ReportKind], parsed: &Parsed) -> String {
    let scanner = expected.first().map_or("", |k| k.scanner_name());
    let roots: Vec<String> = expected
        .iter()
        .filter_map(|k| k.xml_root())
        .map(|r| format!("<{r}>"))
        .collect();
    let json_too = expected.iter().any(|k| k.xml_root().is_none());
    let what = match &parsed.format {
        Format::Xml { root: Some(root) } if roots.is_empty() => {
            format!("its root element is <{root}>, and {scanner} reports are JSON")
        }
        Format::Xml { root: Some(root) } => {
            format!("its root element is <{root}>, not {}", roots.join(" or "))
        }
        Format::Xml { root: None } => "it has no root element".to_owned(),
        Format::Json if json_too => {
            format!("it is JSON without the top-level keys of {scanner}'s JSON report")
        }
        Format::Json => format!(
            "it is JSON, and {scanner} reports are XML ({})",
            roots.join(" or ")
        ),
        Format::Other => "it is neither XML nor JSON".to_owned(),
    };
    let hint = match parsed.report {
        Some(other) => format!(
            " ({} {} report?)",
            article(other.scanner_name()),
            other.scanner_name()
        ),
        None => String::new(),
    };
    format!(
        "The result file is not {} {scanner} report: {what}{hint}.",
        article(scanner)
    )
}

/// `a` or `an` before `word`.
fn article(word: &str) -> &'static str {
    match word.bytes().next() {
        Some(b'A' | b'E' | b'I' | b'O' | b'U' | b'a' | b'e' | b'i' | b'o' | b'u') => "an",
        _ => "a",
    }
}

fn describe_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", byte as char)
    } else {
        format!("0x{byte:02X}")
    }
}

/// Counts severities of one kind as raw values, mapped to [`Severity`] at the end (Wapiti's
/// meaning of `level` depends on the report's version, which JSON reports give last).
#[derive(Clone, Debug, Default)]
struct Tally {
    findings: Findings,
    /// Wapiti levels 0 to 4, then anything else.
    wapiti_levels: [u64; 6],
}

impl Tally {
    fn add(&mut self, kind: ReportKind, value: &[u8]) {
        match kind {
            ReportKind::WapitiXml | ReportKind::WapitiJson => {
                let slot = match trimmed(value) {
                    [d @ b'0'..=b'4'] => usize::from(d - b'0'),
                    _ => 5,
                };
                self.wapiti_levels[slot] = self.wapiti_levels[slot].saturating_add(1);
            }
            _ => self.findings.add(severity(kind, value)),
        }
    }

    /// The counts, given the report's generator version when it has one.
    fn finish(&self, kind: ReportKind, version: Option<&[u8]>) -> Findings {
        let mut findings = self.findings;
        if matches!(kind, ReportKind::WapitiXml | ReportKind::WapitiJson) {
            let old = version.is_some_and(wapiti_before_3_0_4);
            for (level, &n) in self.wapiti_levels.iter().enumerate() {
                let severity = match (old, level) {
                    (false, 3 | 4) | (true, 1) => Severity::High,
                    (_, 2) => Severity::Medium,
                    (false, 1) | (true, 3) => Severity::Low,
                    _ => Severity::Informational,
                };
                findings.add_n(severity, n);
            }
        }
        findings
    }
}

/// ASCII whitespace trimmed from both ends.
fn trimmed(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// A finding's severity from its raw value, for every kind but Wapiti's.
fn severity(kind: ReportKind, value: &[u8]) -> Severity {
    let v = trimmed(value);
    let is = |word: &str| v.eq_ignore_ascii_case(word.as_bytes());
    match kind {
        // ZAP's riskcode: Alert.RISK_HIGH 3, RISK_MEDIUM 2, RISK_LOW 1, RISK_INFO 0
        // (DefectDojo dojo/tools/zap/parser.py MAPPING_SEVERITY).
        ReportKind::ZapXml | ReportKind::ZapJson => match v {
            b"3" => Severity::High,
            b"2" => Severity::Medium,
            b"1" => Severity::Low,
            _ => Severity::Informational,
        },
        // WebInspect's Severity 0 to 4 (DefectDojo dojo/tools/microfocus_webinspect/parser.py
        // convert_severity: 4 Critical, 3 High, 2 Medium, 1 Low, 0 Info).
        ReportKind::WebInspectXml => match v {
            b"4" | b"3" => Severity::High,
            b"2" => Severity::Medium,
            b"1" => Severity::Low,
            _ => Severity::Informational,
        },
        // AppSpider's AttackScore "4-High" ... "0-Safe", read by its label.
        ReportKind::AppSpiderXml => match v.first() {
            Some(b'4') => Severity::High,
            Some(b'3') => Severity::Medium,
            Some(b'2') => Severity::Low,
            _ => Severity::Informational,
        },
        // Burp (High, Medium, Low, Information), AppScan (Critical, High, Medium, Low,
        // Informational), Acunetix (critical, high, medium, low, informational).
        _ if is("critical") || is("high") => Severity::High,
        _ if is("medium") => Severity::Medium,
        _ if is("low") => Severity::Low,
        _ => Severity::Informational,
    }
}

/// Whether a Wapiti version string ("Wapiti 3.0.3") is older than 3.0.4, whose levels meant
/// 1 high, 2 medium, 3 low (wapitiCore/language/vulnerability.py at 3.0.3 and 3.0.4).
fn wapiti_before_3_0_4(version: &[u8]) -> bool {
    let text = String::from_utf8_lossy(version);
    let Some(start) = text.find(|c: char| c.is_ascii_digit()) else {
        return false;
    };
    let mut parts = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let triple = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    triple < (3, 0, 4)
}

/// A text kept in at most [`MAX_KEPT_TEXT`] bytes.
#[derive(Clone, Debug, Default)]
struct Kept {
    bytes: Vec<u8>,
    overflow: bool,
}

impl Kept {
    fn clear(&mut self) {
        self.bytes.clear();
        self.overflow = false;
    }

    fn push(&mut self, more: &[u8]) {
        if self.bytes.len() + more.len() > MAX_KEPT_TEXT {
            self.overflow = true;
            let room = MAX_KEPT_TEXT.saturating_sub(self.bytes.len());
            self.bytes.extend_from_slice(&more[..room.min(more.len())]);
        } else {
            self.bytes.extend_from_slice(more);
        }
    }

    /// The text, or nothing (an unknown value) when it was cut.
    fn value(&self) -> &[u8] {
        if self.overflow { b"" } else { &self.bytes }
    }
}

/// What the first non-whitespace byte says.
enum Sniff {
    Empty,
    Blank,
    Utf16,
    First(u8),
}

/// Why the guard stopped a parser.
#[derive(Clone, Debug)]
enum Stop {
    /// A token longer than [`MAX_TOKEN_BYTES`] starting at this byte.
    TooLong(u64),
    /// JSON nested deeper than [`MAX_JSON_DEPTH`] at this byte.
    TooDeep(u64),
    /// The underlying reader failed.
    Read(io::ErrorKind, String),
}

/// JSON string scanning state, to bound a string's length before `serde_json` buffers it.
#[derive(Clone, Copy, Debug, Default)]
struct JsonScan {
    in_string: bool,
    escaped: bool,
    start: u64,
    depth: u32,
}

/// The reader between the file and a parser: counts bytes, bounds tokens, and records a read
/// failure so that it is not taken for the file's fault.
struct Guard<R> {
    inner: R,
    /// Bytes consumed so far.
    consumed: u64,
    /// Where the current XML token started (set before each event).
    mark: u64,
    /// Bound XML tokens (from `mark`).
    xml: bool,
    json: JsonScan,
    stop: Option<Stop>,
    /// The first bytes seen, for [`Guard::magic_hint`].
    head: [u8; 8],
    head_len: usize,
}

impl<R: BufRead> Guard<R> {
    fn new(inner: R) -> Guard<R> {
        Guard {
            inner,
            consumed: 0,
            mark: 0,
            xml: false,
            json: JsonScan::default(),
            stop: None,
            head: [0; 8],
            head_len: 0,
        }
    }

    /// Skips a UTF-8 byte order mark and leading whitespace; tells the first byte after them.
    fn sniff(&mut self) -> io::Result<Sniff> {
        let mut head = [0u8; 8];
        let n = {
            let buf = self.fill_buf()?;
            let n = buf.len().min(head.len());
            head[..n].copy_from_slice(&buf[..n]);
            n
        };
        self.head = head;
        self.head_len = n;
        let head = &head[..n];
        if head.is_empty() {
            return Ok(Sniff::Empty);
        }
        if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
            return Ok(Sniff::Utf16);
        }
        if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.consume(3);
        }
        loop {
            let buf = self.fill_buf()?;
            if buf.is_empty() {
                return Ok(Sniff::Blank);
            }
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => {
                    let first = buf[i];
                    self.consume(i);
                    return Ok(Sniff::First(first));
                }
                None => {
                    let n = buf.len();
                    self.consume(n);
                }
            }
        }
    }

    /// A guess at a binary file's type from its first bytes, e.g. ` (a PNG image?)`.
    fn magic_hint(&self) -> &'static str {
        let head = &self.head[..self.head_len];
        let magics: [(&[u8], &'static str); 5] = [
            (b"\x89PNG", " (a PNG image?)"),
            (b"%PDF", " (a PDF document?)"),
            (b"PK\x03\x04", " (a ZIP archive?)"),
            (b"\x1F\x8B", " (a gzip file?)"),
            (b"\xFF\xD8\xFF", " (a JPEG image?)"),
        ];
        magics
            .iter()
            .find(|(magic, _)| head.starts_with(magic))
            .map_or("", |(_, hint)| hint)
    }

    fn fail(&mut self, stop: Stop) -> io::Error {
        let message = match &stop {
            Stop::TooLong(_) => "token too long".to_owned(),
            Stop::TooDeep(_) => "nested too deep".to_owned(),
            Stop::Read(_, message) => message.clone(),
        };
        if self.stop.is_none() {
            self.stop = Some(stop);
        }
        io::Error::other(message)
    }

    /// The read failure, if the reader failed (not a limit).
    fn read_error(&self) -> Option<io::Error> {
        match &self.stop {
            Some(Stop::Read(kind, message)) => Some(io::Error::new(*kind, message.clone())),
            _ => None,
        }
    }

    /// The limit problem, if the guard stopped a parser for one.
    fn limit_problem(&self) -> Option<String> {
        match self.stop {
            Some(Stop::TooLong(at)) => Some(format!(
                "The result file is not inspected: it has a tag, text or string longer than \
                 {} MiB at byte {at}.",
                MAX_TOKEN_BYTES / (1024 * 1024)
            )),
            Some(Stop::TooDeep(at)) => Some(format!(
                "The result file is not inspected: its values nest deeper than {MAX_JSON_DEPTH} \
                 levels at byte {at}."
            )),
            _ => None,
        }
    }
}

impl<R: BufRead> BufRead for Guard<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.xml && self.consumed.saturating_sub(self.mark) > MAX_TOKEN_BYTES {
            let at = self.mark;
            return Err(self.fail(Stop::TooLong(at)));
        }
        if let Some(stop) = &self.stop {
            // A parser that retries after a failure gets the same failure.
            let stop = stop.clone();
            return Err(self.fail(stop));
        }
        match self.inner.fill_buf() {
            Ok(buf) => Ok(buf),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let stop = Stop::Read(e.kind(), e.to_string());
                if self.stop.is_none() {
                    self.stop = Some(stop);
                }
                Err(e)
            }
        }
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
        self.consumed = self.consumed.saturating_add(amount as u64);
    }
}

impl<R: BufRead> Read for Guard<R> {
    /// For `serde_json`: passes bytes on, bounding each JSON string to [`MAX_TOKEN_BYTES`] and
    /// the nesting to [`MAX_JSON_DEPTH`].
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        let start = self.consumed;
        self.consume(n);
        let mut scan = self.json;
        for (i, &b) in out[..n].iter().enumerate() {
            let at = start + i as u64;
            if scan.in_string {
                if scan.escaped {
                    scan.escaped = false;
                } else if b == b'\\' {
                    scan.escaped = true;
                } else if b == b'"' {
                    scan.in_string = false;
                }
                if at - scan.start > MAX_TOKEN_BYTES {
                    self.json = scan;
                    return Err(self.fail(Stop::TooLong(scan.start)));
                }
            } else {
                match b {
                    b'"' => {
                        scan.in_string = true;
                        scan.start = at;
                    }
                    b'[' | b'{' => {
                        scan.depth += 1;
                        if scan.depth > MAX_JSON_DEPTH {
                            self.json = scan;
                            return Err(self.fail(Stop::TooDeep(at)));
                        }
                    }
                    b']' | b'}' => scan.depth = scan.depth.saturating_sub(1),
                    _ => {}
                }
            }
        }
        self.json = scan;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
