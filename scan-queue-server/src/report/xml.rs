//! XML: a streaming well-formedness check (quick-xml events into one reused buffer) that counts
//! a known report's findings on the way.

use std::io::BufRead;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::{
    Format, Guard, InspectError, Kept, MAX_ROOT_NAME, MAX_XML_DEPTH, MAX_XML_NAME_BYTES, Parsed,
    ReportKind, Tally,
};

/// Where a kind's findings are: the path of a finding's element from the root (inclusive), and
/// the name of its child holding the severity.
struct Spec {
    item: &'static [&'static str],
    severity: &'static str,
}

fn spec(kind: ReportKind) -> Spec {
    let (item, severity): (&'static [&'static str], &'static str) = match kind {
        ReportKind::ZapXml => (
            &["OWASPZAPReport", "site", "alerts", "alertitem"],
            "riskcode",
        ),
        ReportKind::BurpXml => (&["issues", "issue"], "severity"),
        ReportKind::AppScanXml => (&["xml-report", "issue-group", "item"], "severity"),
        ReportKind::AcunetixXml => (
            &["ScanGroup", "Scan", "ReportItems", "ReportItem"],
            "Severity",
        ),
        ReportKind::WebInspectXml => (&["Sessions", "Session", "Issues", "Issue"], "Severity"),
        ReportKind::WapitiXml => (
            &[
                "report",
                "vulnerabilities",
                "vulnerability",
                "entries",
                "entry",
            ],
            "level",
        ),
        ReportKind::AppSpiderXml => (&["VulnSummary", "VulnList", "Vuln"], "AttackScore"),
        // JSON kinds have no XML findings.
        ReportKind::ZapJson | ReportKind::WapitiJson => (&[], ""),
    };
    Spec { item, severity }
}

/// Counts one kind's findings from start and end events.
struct Counter {
    kind: ReportKind,
    spec: Spec,
    /// How many leading elements of `spec.item` the open elements match.
    matched: usize,
    /// Inside a finding's severity element.
    in_severity: bool,
    severity: Kept,
    /// Wapiti: inside `<report_infos>`, inside its `<info name="generatorVersion">`.
    in_infos: bool,
    in_version: bool,
    version: Option<Kept>,
    tally: Tally,
}

impl Counter {
    fn new(kind: ReportKind) -> Counter {
        Counter {
            kind,
            spec: spec(kind),
            matched: 0,
            in_severity: false,
            severity: Kept::default(),
            in_infos: false,
            in_version: false,
            version: None,
            tally: Tally::default(),
        }
    }

    /// An element named `name` opens at `depth` (the root is at 0).
    fn start(&mut self, depth: usize, e: &BytesStart<'_>) {
        let name = e.local_name();
        let name = name.as_ref();
        let item = self.spec.item;
        if item.is_empty() {
            return;
        }
        if self.matched == depth && depth < item.len() && name == item[depth] {
            self.matched = depth + 1;
            if self.matched == item.len() {
                self.severity.clear();
            }
        } else if self.matched == item.len() && depth == item.len() && name == self.spec.severity {
            self.in_severity = true;
            self.severity.clear();
        }
        if self.kind == ReportKind::WapitiXml {
            if depth == 1 && name == "report_infos" {
                self.in_infos = true;
            } else if depth == 2 && self.in_infos && name == "info" {
                let is_version = e
                    .attributes()
                    .flatten()
                    .any(|a| a.key.as_ref() == "name" && a.value == "generatorVersion");
                if is_version {
                    self.in_version = true;
                    self.version = Some(Kept::default());
                }
            }
        }
    }

    /// The element opened at `depth` closes.
    fn end(&mut self, depth: usize) {
        let item = self.spec.item;
        if item.is_empty() {
            return;
        }
        if self.in_severity && depth == item.len() {
            self.in_severity = false;
        }
        if self.matched == item.len() && depth + 1 == item.len() {
            self.tally.add(self.kind, self.severity.value());
            self.severity.clear();
        }
        if self.matched > depth {
            self.matched = depth;
        }
        if depth == 2 {
            self.in_version = false;
        }
        if depth == 1 {
            self.in_infos = false;
        }
    }

    /// Character data inside the open elements.
    fn text(&mut self, bytes: &[u8]) {
        if self.in_severity {
            self.severity.push(bytes);
        }
        if let (true, Some(version)) = (self.in_version, &mut self.version) {
            version.push(bytes);
        }
    }

    fn finish(&self) -> super::Findings {
        let version = self.version.as_ref().map(|v| v.value());
        self.tally.finish(self.kind, version)
    }
}

/// The five entities XML predefines.
fn predefined(name: &str) -> Option<&'static [u8]> {
    match name {
        "lt" => Some(b"<"),
        "gt" => Some(b">"),
        "amp" => Some(b"&"),
        "apos" => Some(b"'"),
        "quot" => Some(b"\""),
        _ => None,
    }
}

/// Reads the XML document from the guard (whose next byte is `<`) to its end or its first
/// fault. With `expected` kinds, stops at a root element of another kind.
pub(super) fn parse<R: BufRead>(
    guard: &mut Guard<R>,
    expected: &[ReportKind],
) -> Result<Parsed, InspectError> {
    let base = guard.consumed;
    guard.xml = true;
    let mut reader = Reader::from_reader(&mut *guard);
    let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut depth: usize = 0;
    let mut root: Option<String> = None;
    let mut report: Option<ReportKind> = None;
    let mut root_closed = false;
    let mut has_doctype = false;
    let mut counter: Option<Counter> = None;

    let problem = loop {
        // A token's bytes are bounded from here.
        let at = reader.get_mut().consumed;
        reader.get_mut().mark = at;
        // (Tests read the peak capacity, after each event.)
        #[cfg(test)]
        tests_support::note_capacity(buf.capacity());
        buf.clear();
        if buf.capacity() > 256 * 1024 {
            // Do not keep a large token's buffer for the rest of the file.
            buf.shrink_to(8 * 1024);
        }
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(e) => {
                #[cfg(test)]
                tests_support::note_capacity(buf.capacity());
                if let Some(read) = reader.get_ref().read_error() {
                    return Err(InspectError::Read(read));
                }
                if let Some(limit) = reader.get_ref().limit_problem() {
                    break limit;
                }
                // The error's position, or the event's start when the error has none.
                let position = (base + reader.error_position()).max(at);
                let what = match e {
                    quick_xml::Error::Encoding(_) => {
                        format!("its text is not UTF-8, the only encoding inspected ({e})")
                    }
                    _ => e.to_string(),
                };
                break format!(
                    "The result file is not well-formed XML: {what} at byte {position}."
                );
            }
        };
        let ill =
            |what: String| format!("The result file is not well-formed XML: {what} at byte {at}.");
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.name();
                if name.as_ref().len() > MAX_XML_NAME_BYTES {
                    break format!(
                        "The result file is not inspected: an element name is longer than \
                         {MAX_XML_NAME_BYTES} bytes at byte {at}."
                    );
                }
                if depth >= MAX_XML_DEPTH {
                    break format!(
                        "The result file is not inspected: its elements nest deeper than \
                         {MAX_XML_DEPTH} levels at byte {at}."
                    );
                }
                if let Some(Err(e)) = e.attributes().find(Result::is_err) {
                    // Its positions count from the tag's name.
                    break ill(format!("a bad attribute in a tag ({e})"));
                }
                if depth == 0 {
                    let shown = || {
                        name.as_ref()
                            .chars()
                            .take(MAX_ROOT_NAME)
                            .collect::<String>()
                    };
                    if root_closed {
                        break ill(format!("a second root element <{}>", shown()));
                    }
                    root = Some(shown());
                    report = ReportKind::from_xml_root(e.local_name().as_ref());
                    if !expected.is_empty() && !report.is_some_and(|k| expected.contains(&k)) {
                        // The wrong report: no need to read further.
                        return Ok(Parsed {
                            format: Format::Xml { root },
                            report,
                            findings: None,
                            problem: None,
                        });
                    }
                    counter = report.map(Counter::new);
                }
                if let Some(c) = &mut counter {
                    c.start(depth, e);
                    if empty {
                        c.end(depth);
                    }
                }
                if empty {
                    if depth == 0 {
                        root_closed = true;
                    }
                } else {
                    depth += 1;
                }
            }
            Event::End(_) => {
                // quick-xml checks that end names match their start (check_end_names).
                let Some(d) = depth.checked_sub(1) else {
                    break ill("an end tag without its start tag".to_owned());
                };
                depth = d;
                if let Some(c) = &mut counter {
                    c.end(depth);
                }
                if depth == 0 {
                    root_closed = true;
                }
            }
            Event::Text(ref t) => {
                if depth == 0 {
                    if !t.bytes().all(|b| b.is_ascii_whitespace()) {
                        break ill("text outside the root element".to_owned());
                    }
                } else if let Some(c) = &mut counter {
                    c.text(t.as_bytes());
                }
            }
            Event::CData(ref t) => {
                if depth == 0 {
                    break ill("a CDATA section outside the root element".to_owned());
                }
                if let Some(c) = &mut counter {
                    c.text(t.as_bytes());
                }
            }
            Event::GeneralRef(ref r) => {
                if depth == 0 {
                    break ill("a reference outside the root element".to_owned());
                }
                let mut utf8 = [0u8; 4];
                let text: &[u8] = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => c.encode_utf8(&mut utf8).as_bytes(),
                        Ok(None) | Err(_) => {
                            break ill(format!("an invalid character reference &{};", &**r));
                        }
                    }
                } else if let Some(text) = predefined(r) {
                    text
                } else if has_doctype {
                    // Declared, perhaps, in the document type's internal subset.
                    b""
                } else {
                    break ill(format!("an undeclared entity &{};", &**r));
                };
                if let Some(c) = &mut counter {
                    c.text(text);
                }
            }
            Event::DocType(_) => {
                if root.is_some() || has_doctype {
                    break ill("a document type declaration not before the root".to_owned());
                }
                has_doctype = true;
            }
            Event::Decl(_) => {
                if at != base {
                    break ill("an XML declaration not at the start".to_owned());
                }
            }
            Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => {
                if depth > 0 {
                    let root = root.as_deref().unwrap_or("");
                    break format!(
                        "The result file is not well-formed XML: it ends inside <{root}>, with \
                         {depth} element(s) not closed, at byte {}.",
                        base + reader.buffer_position()
                    );
                }
                if root.is_none() {
                    break "The result file is not well-formed XML: it has no root element."
                        .to_owned();
                }
                return Ok(Parsed {
                    format: Format::Xml { root },
                    report,
                    findings: counter.as_ref().map(Counter::finish),
                    problem: None,
                });
            }
        }
    };
    Ok(Parsed {
        format: Format::Xml { root },
        report,
        findings: None,
        problem: Some(problem),
    })
}

#[cfg(test)]
pub(super) mod tests_support {
    use std::cell::Cell;

    thread_local! {
        static PEAK: Cell<usize> = const { Cell::new(0) };
    }

    /// Records the event buffer's capacity (the test of a huge file reads the peak).
    pub(crate) fn note_capacity(capacity: usize) {
        PEAK.with(|p| p.set(p.get().max(capacity)));
    }

    /// The peak capacity since the last reset, and resets it.
    pub(crate) fn take_peak() -> usize {
        PEAK.with(|p| p.replace(0))
    }
}
