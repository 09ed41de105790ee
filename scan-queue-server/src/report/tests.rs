//! Tests of the report module: every fixture (kind and exact counts, counted by hand from the
//! files), wrong scanners, empty and malformed files, limits, huge generated files, and no
//! panic on truncated or mutated fixtures.

use std::io::{self, BufReader, Read};

use super::xml::tests_support;
use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/reports/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn findings(high: u64, medium: u64, low: u64, informational: u64) -> Findings {
    Findings {
        high,
        medium,
        low,
        informational,
    }
}

fn run(bytes: &[u8], scanner: &str, check: ResultCheck) -> Result<Inspection, InspectError> {
    inspect(bytes, scanner, check)
}

fn refusal(bytes: &[u8], scanner: &str, check: ResultCheck) -> String {
    match run(bytes, scanner, check) {
        Err(InspectError::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Every fixture: its scanner, its kind, its root (XML), and its counts (high, medium, low,
/// informational), counted by hand from the file.
fn fixtures() -> Vec<(
    &'static str,
    &'static str,
    ReportKind,
    Option<&'static str>,
    Findings,
)> {
    vec![
        // 5 <alertitem>s, one inside a comment: riskcode 1, 1, 2, (1 commented out), 1.
        (
            "zap-0_zap_sample.xml",
            "zap",
            ReportKind::ZapXml,
            Some("OWASPZAPReport"),
            findings(0, 1, 3, 0),
        ),
        // 7 alertitems: riskcode 1 five times, 2 once, 0 once.
        (
            "zap-some_2.9.0.xml",
            "zap",
            ReportKind::ZapXml,
            Some("OWASPZAPReport"),
            findings(0, 1, 5, 1),
        ),
        // <alerts></alerts>.
        (
            "zap-empty_2.9.0.xml",
            "zap",
            ReportKind::ZapXml,
            Some("OWASPZAPReport"),
            findings(0, 0, 0, 0),
        ),
        // One alert, "riskcode": "3".
        (
            "zap-basic-traditional-json.json",
            "zap",
            ReportKind::ZapJson,
            None,
            findings(1, 0, 0, 0),
        ),
        (
            "zap-basic-traditional-json-plus.json",
            "zap",
            ReportKind::ZapJson,
            None,
            findings(1, 0, 0, 0),
        ),
        // One <issue>, <severity>Information</severity>.
        (
            "burp-one_finding_with_cwe.xml",
            "burp",
            ReportKind::BurpXml,
            Some("issues"),
            findings(0, 0, 0, 1),
        ),
        // 16 <issue>s (DefectDojo merges them into 7 findings by type): High 5, Low 2,
        // Information 9.
        (
            "burp-seven_findings.xml",
            "burp",
            ReportKind::BurpXml,
            Some("issues"),
            findings(5, 0, 2, 9),
        ),
        // issue-group: 4 <item>s, <severity /> (empty) once, High three times.
        (
            "appscan-issue_10074.xml",
            "appscan",
            ReportKind::AppScanXml,
            Some("xml-report"),
            findings(3, 0, 0, 1),
        ),
        // 4 ReportItems: medium, low, low, informational (in CDATA).
        (
            "acunetix-many_findings.xml",
            "acunetix",
            ReportKind::AcunetixXml,
            Some("ScanGroup"),
            findings(0, 1, 2, 1),
        ),
        // 9 Issues: Severity 0 six times, 1 twice, 2 once.
        (
            "webinspect-many_vuln.xml",
            "webinspect",
            ReportKind::WebInspectXml,
            Some("Sessions"),
            findings(0, 1, 2, 6),
        ),
        // Wapiti 3.0.4: 5 entries, <level>1</level> each (LOW_LEVEL in 3.0.4).
        (
            "wapiti-example.xml",
            "wapiti",
            ReportKind::WapitiXml,
            Some("report"),
            findings(0, 0, 5, 0),
        ),
        // Wapiti 3.0.4: 1 CSP entry and 4 HTTP Secure Headers entries, "level": "1" each.
        (
            "wapiti-local.json",
            "wapiti",
            ReportKind::WapitiJson,
            None,
            findings(0, 0, 5, 0),
        ),
        // One Vuln, <AttackScore>2-Low</AttackScore>.
        (
            "appspider-one_vuln.xml",
            "appspider",
            ReportKind::AppSpiderXml,
            Some("VulnSummary"),
            findings(0, 0, 1, 0),
        ),
    ]
}

#[test]
fn every_fixture_is_recognised_and_counted_exactly() {
    for (name, scanner, kind, root, expected) in fixtures() {
        let bytes = fixture(name);
        for check in ResultCheck::ALL {
            for task_scanner in [scanner, "nessus"] {
                let seen = run(&bytes, task_scanner, check)
                    .unwrap_or_else(|e| panic!("{name} for {task_scanner} under {check}: {e}"));
                assert_eq!(seen.report, Some(kind), "{name}");
                assert_eq!(seen.findings, Some(expected), "{name} under {check}");
                assert_eq!(seen.problem, None, "{name}");
                match root {
                    Some(root) => {
                        assert_eq!(
                            seen.format,
                            Format::Xml {
                                root: Some(root.to_owned())
                            },
                            "{name}"
                        );
                        assert_eq!(seen.content_type, "application/xml");
                    }
                    None => {
                        assert_eq!(seen.format, Format::Json, "{name}");
                        assert_eq!(seen.content_type, "application/json");
                    }
                }
            }
        }
    }
}

#[test]
fn a_report_of_another_scanner_is_refused_under_scanner_only() {
    let scanners = [
        "zap",
        "burp",
        "appscan",
        "acunetix",
        "webinspect",
        "wapiti",
        "appspider",
    ];
    for (name, scanner, kind, _, _) in fixtures() {
        let bytes = fixture(name);
        for other in scanners.iter().filter(|s| **s != scanner) {
            let reason = refusal(&bytes, other, ResultCheck::Scanner);
            assert!(
                reason.starts_with("The result file is not a"),
                "{name} for {other}: {reason}"
            );
            assert!(
                reason.ends_with(&format!(
                    "({} {} report?).",
                    article(kind.scanner_name()),
                    kind.scanner_name()
                )),
                "{name} for {other}: {reason}"
            );
            for check in [ResultCheck::None, ResultCheck::Wellformed] {
                assert!(run(&bytes, other, check).is_ok(), "{name} for {other}");
            }
        }
    }
}

#[test]
fn wrong_scanner_messages() {
    let burp = fixture("burp-one_finding_with_cwe.xml");
    assert_eq!(
        refusal(&burp, "zap", ResultCheck::Scanner),
        "The result file is not an OWASP Zed Attack Proxy report: its root element is <issues>, \
         not <OWASPZAPReport> (a Burp Suite Pro report?)."
    );
    let zap_json = fixture("zap-basic-traditional-json.json");
    assert_eq!(
        refusal(&zap_json, "burp", ResultCheck::Scanner),
        "The result file is not a Burp Suite Pro report: it is JSON, and Burp Suite Pro reports \
         are XML (<issues>) (an OWASP Zed Attack Proxy report?)."
    );
    let wapiti_json = fixture("wapiti-local.json");
    assert_eq!(
        refusal(&wapiti_json, "zap", ResultCheck::Scanner),
        "The result file is not an OWASP Zed Attack Proxy report: it is JSON without the \
         top-level keys of OWASP Zed Attack Proxy's JSON report (a Wapiti report?)."
    );
    assert_eq!(
        refusal(b"<html><body/></html>", "webinspect", ResultCheck::Scanner),
        "The result file is not a WebInspect report: its root element is <html>, not <Sessions>."
    );
    assert_eq!(
        refusal(b"[1, 2]", "wapiti", ResultCheck::Scanner),
        "The result file is not a Wapiti report: it is JSON without the top-level keys of \
         Wapiti's JSON report."
    );
    // Scanner short names ignore ASCII case; unknown scanners get the wellformed check.
    assert!(run(&burp, "BURP", ResultCheck::Scanner).is_ok());
    assert!(run(b"<a/>", "nessus", ResultCheck::Scanner).is_ok());
    assert!(run(b"{}", "Nessus", ResultCheck::Scanner).is_ok());
}

#[test]
fn empty_and_blank_files() {
    for (bytes, reason) in [
        (&b""[..], "The result file is empty."),
        (b" \r\n\t ", "The result file holds only whitespace."),
        (b"\xEF\xBB\xBF", "The result file holds only whitespace."),
    ] {
        for check in [ResultCheck::Wellformed, ResultCheck::Scanner] {
            assert_eq!(refusal(bytes, "nessus", check), reason);
        }
        assert_eq!(refusal(bytes, "zap", ResultCheck::Scanner), reason);
        let seen = run(bytes, "zap", ResultCheck::None).unwrap();
        assert_eq!(seen.format, Format::Other);
        assert_eq!(seen.content_type, "application/octet-stream");
        assert_eq!(seen.report, None);
        assert_eq!(seen.findings, None);
        assert_eq!(seen.problem.as_deref(), Some(reason));
    }
}

#[test]
fn a_png_renamed_xml_is_refused() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    let reason = "The result file is neither XML nor JSON: its first byte is 0x89 (a PNG image?).";
    assert_eq!(refusal(png, "zap", ResultCheck::Wellformed), reason);
    assert_eq!(refusal(png, "zap", ResultCheck::Scanner), reason);
    let seen = run(png, "zap", ResultCheck::None).unwrap();
    assert_eq!(seen.format, Format::Other);
    assert_eq!(seen.content_type, "application/octet-stream");
    assert_eq!(seen.problem.as_deref(), Some(reason));
    assert_eq!(
        refusal(
            b"Scan finished: 3 alerts",
            "nessus",
            ResultCheck::Wellformed
        ),
        "The result file is neither XML nor JSON: its first byte is 'S'."
    );
    assert_eq!(
        refusal(b"\xFF\xFE<\0a\0/\0>\0", "nessus", ResultCheck::Wellformed),
        "The result file is UTF-16 text; only UTF-8 XML or JSON is inspected."
    );
}

#[test]
fn malformed_xml_is_refused_with_where() {
    let cases: [(&[u8], &str); 9] = [
        (
            b"<a><b></a>",
            "The result file is not well-formed XML: ill-formed document: expected `</b>`, but `</a>` was found at byte 6.",
        ),
        (
            b"<a><b/>",
            "The result file is not well-formed XML: it ends inside <a>, with 1 element(s) not closed, at byte 7.",
        ),
        (
            b"<a/><b/>",
            "The result file is not well-formed XML: a second root element <b> at byte 4.",
        ),
        (
            b"<a/>text",
            "The result file is not well-formed XML: text outside the root element at byte 4.",
        ),
        (
            b"<a>&nbsp;</a>",
            "The result file is not well-formed XML: an undeclared entity &nbsp; at byte 3.",
        ),
        (
            b"<a x=1/>",
            "The result file is not well-formed XML: a bad attribute in a tag (position 4: \
             attribute value must be enclosed in `\"` or `'`) at byte 0.",
        ),
        (
            b"<a x='1' x='2'/>",
            "The result file is not well-formed XML: a bad attribute in a tag (position 8: \
             duplicated attribute, previous declaration at position 2) at byte 0.",
        ),
        (
            b"<?xml version=\"1.0\"?><!-- only a comment -->",
            "The result file is not well-formed XML: it has no root element.",
        ),
        (b"<a></a></b>", ""),
    ];
    for (bytes, reason) in cases {
        let got = refusal(bytes, "nessus", ResultCheck::Wellformed);
        if reason.is_empty() {
            assert!(
                got.starts_with("The result file is not well-formed XML: "),
                "{got}"
            );
        } else {
            assert_eq!(got, reason);
        }
        let seen = run(bytes, "zap", ResultCheck::None).unwrap();
        assert!(matches!(seen.format, Format::Xml { .. }));
        assert_eq!(seen.findings, None);
        assert_eq!(seen.problem.as_deref(), Some(got.as_str()));
    }
    // A truncated ZAP report keeps its kind under none, without counts.
    let zap = fixture("zap-some_2.9.0.xml");
    let seen = run(&zap[..zap.len() / 2], "zap", ResultCheck::None).unwrap();
    assert_eq!(seen.report, Some(ReportKind::ZapXml));
    assert_eq!(seen.findings, None);
    assert!(seen.problem.is_some());
    // Declared entities, character references and a DTD are fine.
    let ok = b"<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;&#65;&#x42;&lt;</a>";
    assert!(run(ok, "nessus", ResultCheck::Wellformed).is_ok());
    assert!(run(b"<a>&#0;</a>", "nessus", ResultCheck::Wellformed).is_err());
}

#[test]
fn malformed_json_is_refused_with_where() {
    assert_eq!(
        refusal(b"{\"site\": [", "nessus", ResultCheck::Wellformed),
        "The result file is not well-formed JSON: EOF while parsing a list at line 1 column 10."
    );
    assert_eq!(
        refusal(b"{} {}", "nessus", ResultCheck::Wellformed),
        "The result file is not well-formed JSON: trailing characters at line 1 column 4."
    );
    assert_eq!(
        refusal(b"[1,]", "nessus", ResultCheck::Wellformed),
        "The result file is not well-formed JSON: trailing comma at line 1 column 4."
    );
    let seen = run(b"{\"a\": tru}", "zap", ResultCheck::None).unwrap();
    assert_eq!(seen.format, Format::Json);
    assert_eq!(seen.findings, None);
    assert!(
        seen.problem
            .unwrap()
            .starts_with("The result file is not well-formed JSON: ")
    );
    // A byte order mark and leading whitespace are allowed.
    let mut bom = b"\xEF\xBB\xBF \n".to_vec();
    bom.extend_from_slice(&fixture("zap-basic-traditional-json.json"));
    let seen = run(&bom, "zap", ResultCheck::Scanner).unwrap();
    assert_eq!(seen.findings, Some(findings(1, 0, 0, 0)));
}

#[test]
fn json_shapes_and_values() {
    // Numbers or strings, keys in any order, unexpected types skipped.
    let zap = br#"{"site": [{"alerts": [{"riskcode": 3}, {"riskcode": "2"}, {"riskcode": null},
        {"name": "no risk"}, 7, {"riskcode": ["3"]}]}, "x"], "@version": "2.16.1"}"#;
    let seen = run(zap, "zap", ResultCheck::Scanner).unwrap();
    assert_eq!(seen.report, Some(ReportKind::ZapJson));
    assert_eq!(seen.findings, Some(findings(1, 1, 0, 3)));
    // A "site" that is not an array is not ZAP's.
    let seen = run(
        br#"{"site": "x", "@version": "1"}"#,
        "nessus",
        ResultCheck::Wellformed,
    )
    .unwrap();
    assert_eq!(seen.report, None);
    assert_eq!(seen.findings, None);
    // Wapiti 3.0.9 and later: numbers, 4 critical (high) to 0 informational.
    let wapiti = br#"{"infos": {"version": "Wapiti 3.1.8"}, "vulnerabilities": {
        "SQL Injection": [{"level": 4}, {"level": 3}], "XSS": [{"level": 2}],
        "Headers": [{"level": 1}, {"level": 0}, {"level": 9}], "Empty": []}}"#;
    let seen = run(wapiti, "wapiti", ResultCheck::Scanner).unwrap();
    assert_eq!(seen.report, Some(ReportKind::WapitiJson));
    assert_eq!(seen.findings, Some(findings(2, 1, 1, 2)));
    // Wapiti 3.0.3 and earlier: "1" high, "2" medium, "3" low; the version comes last.
    let old = br#"{"vulnerabilities": {"A": [{"level": "1"}, {"level": "2"}, {"level": "3"}]},
        "anomalies": {}, "infos": {"version": "Wapiti 3.0.3"}}"#;
    let seen = run(old, "wapiti", ResultCheck::Scanner).unwrap();
    assert_eq!(seen.findings, Some(findings(1, 1, 1, 0)));
}

#[test]
fn wapiti_xml_before_3_0_4_counts_level_1_as_high() {
    let xml = String::from_utf8(fixture("wapiti-example.xml")).unwrap();
    let old = xml.replace("Wapiti 3.0.4", "Wapiti 3.0.2");
    assert_ne!(xml, old);
    let seen = run(old.as_bytes(), "wapiti", ResultCheck::Scanner).unwrap();
    assert_eq!(seen.findings, Some(findings(5, 0, 0, 0)));
    assert!(wapiti_before_3_0_4(b"Wapiti 2.3.0"));
    assert!(wapiti_before_3_0_4(b"Wapiti 3.0.3"));
    assert!(!wapiti_before_3_0_4(b"Wapiti 3.0.4"));
    assert!(!wapiti_before_3_0_4(b"Wapiti 3.2.10"));
    assert!(!wapiti_before_3_0_4(b"unknown"));
}

#[test]
fn severity_words() {
    use ReportKind::*;
    assert_eq!(severity(BurpXml, b"High"), Severity::High);
    assert_eq!(severity(BurpXml, b" Information "), Severity::Informational);
    assert_eq!(severity(AppScanXml, b"Critical"), Severity::High);
    assert_eq!(severity(AcunetixXml, b"critical"), Severity::High);
    assert_eq!(severity(AcunetixXml, b""), Severity::Informational);
    assert_eq!(severity(WebInspectXml, b"4"), Severity::High);
    assert_eq!(severity(AppSpiderXml, b"4-High"), Severity::High);
    assert_eq!(severity(AppSpiderXml, b"3-Medium"), Severity::Medium);
    assert_eq!(
        severity(AppSpiderXml, b"1-Informational"),
        Severity::Informational
    );
    assert_eq!(severity(AppSpiderXml, b"0-Safe"), Severity::Informational);
    assert_eq!(severity(ZapXml, b"-1"), Severity::Informational);
}

#[test]
fn result_check_names() {
    for check in ResultCheck::ALL {
        assert_eq!(check.name().parse::<ResultCheck>(), Ok(check));
        assert_eq!(check.to_string(), check.name());
    }
    assert_eq!(ResultCheck::default(), ResultCheck::Wellformed);
    assert!("strict".parse::<ResultCheck>().is_err());
    for kind in ReportKind::ALL {
        assert!(ReportKind::of_scanner(kind.scanner_short_name()).contains(&kind));
    }
    assert!(ReportKind::of_scanner("nessus").is_empty());
}

/// A reader of `head`, then `count` copies of `items` (cycling), then `tail`, made on the fly.
struct Generated {
    parts: Vec<Vec<u8>>,
    cycle: usize,
    count: u64,
    state: usize,
    pos: usize,
}

impl Generated {
    fn new(head: &str, items: &[&str], count: u64, tail: &str) -> Generated {
        let mut parts = vec![head.as_bytes().to_vec()];
        parts.extend(items.iter().map(|i| i.as_bytes().to_vec()));
        parts.push(tail.as_bytes().to_vec());
        Generated {
            cycle: items.len(),
            parts,
            count,
            state: 0,
            pos: 0,
        }
    }

    /// The part being read: 0 the head, 1..=cycle the items, cycle + 1 the tail.
    fn current(&self) -> Option<&[u8]> {
        if self.state == 0 {
            Some(&self.parts[0])
        } else if self.count > 0 {
            Some(&self.parts[self.state])
        } else if self.state <= self.cycle + 1 {
            Some(&self.parts[self.cycle + 1])
        } else {
            None
        }
    }
}

impl Read for Generated {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(part) = self.current() else {
                return Ok(0);
            };
            if self.pos < part.len() {
                let n = (part.len() - self.pos).min(out.len());
                out[..n].copy_from_slice(&part[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            self.pos = 0;
            if self.state == 0 {
                self.state = 1;
            } else if self.count > 0 {
                self.count -= 1;
                self.state = if self.count == 0 {
                    self.cycle + 1
                } else {
                    self.state % self.cycle + 1
                };
            } else {
                self.state = self.cycle + 2;
            }
        }
    }
}

#[test]
fn a_huge_zap_report_is_counted_in_bounded_memory() {
    let alert = |risk: u8| {
        format!(
            "<alertitem><pluginid>10011</pluginid><alert>Cookie Without Secure Flag</alert>\
             <riskcode>{risk}</riskcode><confidence>2</confidence><desc>{}</desc>\
             <instances><instance><uri>https://example.com/</uri><method>GET</method>\
             </instance></instances><count>1</count></alertitem>\n",
            "A cookie has been set without the secure flag. ".repeat(6)
        )
    };
    let items = [alert(3), alert(2), alert(1), alert(0)];
    let size = items.iter().map(String::len).sum::<usize>() as u64;
    // 50 MB of alerts, 4 * n of them.
    let n = 50_000_000 / size;
    let reader = Generated::new(
        "<?xml version=\"1.0\"?><OWASPZAPReport version=\"2.9.0\"><site name=\"https://example.com\"><alerts>\n",
        &[&items[0], &items[1], &items[2], &items[3]],
        4 * n,
        "</alerts></site></OWASPZAPReport>\n",
    );
    tests_support::take_peak();
    let seen = inspect(BufReader::new(reader), "zap", ResultCheck::Scanner).unwrap();
    assert_eq!(seen.findings, Some(findings(n, n, n, n)));
    // The event buffer never held more than one small event.
    let peak = tests_support::take_peak();
    assert!(peak <= 16 * 1024, "peak buffer {peak}");
}

#[test]
fn a_huge_wapiti_json_report_is_counted() {
    let entry = |level: u8| {
        format!(
            "{{\"method\": \"GET\", \"path\": \"/\", \"info\": \"{}\", \"level\": {level}, \
             \"parameter\": \"\", \"http_request\": \"GET / HTTP/1.1\\nhost: 127.0.0.1\"}},\n",
            "X-Frame-Options is not set. ".repeat(4)
        )
    };
    let items = [entry(4), entry(3), entry(2), entry(1), entry(0)];
    let size = items.iter().map(String::len).sum::<usize>() as u64;
    let n = 20_000_000 / size;
    let reader = Generated::new(
        "{\"vulnerabilities\": {\"HTTP Secure Headers\": [\n",
        &[&items[0], &items[1], &items[2], &items[3], &items[4]],
        5 * n,
        "{\"level\": 1}]}, \"infos\": {\"version\": \"Wapiti 3.1.8\"}}",
    );
    let seen = inspect(BufReader::new(reader), "wapiti", ResultCheck::Scanner).unwrap();
    assert_eq!(seen.findings, Some(findings(2 * n, n, n + 1, n)));
}

#[test]
fn a_token_over_the_limit_stops_inspection() {
    let long = MAX_TOKEN_BYTES as usize + 1024;
    // XML text.
    let reader = Generated::new(
        "<OWASPZAPReport><site>",
        &["aaaaaaaaaaaaaaaa"],
        (long / 16) as u64,
        "</site></OWASPZAPReport>",
    );
    tests_support::take_peak();
    let reason = match inspect(BufReader::new(reader), "zap", ResultCheck::Wellformed) {
        Err(InspectError::Refused(reason)) => reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        reason,
        "The result file is not inspected: it has a tag, text or string longer than 16 MiB at byte 22."
    );
    let peak = tests_support::take_peak();
    assert!(
        peak <= MAX_TOKEN_BYTES as usize * 2 + 64 * 1024,
        "peak buffer {peak}"
    );
    let reader = Generated::new("<a>", &["bbbbbbbbbbbbbbbb"], (long / 16) as u64, "</a>");
    let seen = inspect(BufReader::new(reader), "zap", ResultCheck::None).unwrap();
    assert_eq!(
        seen.problem.as_deref(),
        Some(
            "The result file is not inspected: it has a tag, text or string longer than 16 MiB at byte 3."
        )
    );
    assert_eq!(seen.findings, None);
    // A JSON string.
    let reader = Generated::new(
        "{\"a\": [1, \"",
        &["cccccccccccccccc"],
        (long / 16) as u64,
        "\"]}",
    );
    assert_eq!(
        match inspect(BufReader::new(reader), "nessus", ResultCheck::Wellformed) {
            Err(InspectError::Refused(reason)) => reason,
            other => panic!("{other:?}"),
        },
        "The result file is not inspected: it has a tag, text or string longer than 16 MiB at byte 10."
    );
    // Long JSON made of short strings is fine.
    let reader = Generated::new("[", &["\"dddddddddddddddd\","], (long / 16) as u64, "1]");
    assert!(inspect(BufReader::new(reader), "nessus", ResultCheck::Wellformed).is_ok());
}

#[test]
fn deep_nesting_is_bounded() {
    let deep_xml = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
    assert_eq!(
        refusal(deep_xml.as_bytes(), "nessus", ResultCheck::Wellformed),
        "The result file is not inspected: its elements nest deeper than 256 levels at byte 768."
    );
    let ok_xml = format!("{}{}", "<a>".repeat(200), "</a>".repeat(200));
    assert!(run(ok_xml.as_bytes(), "nessus", ResultCheck::Wellformed).is_ok());
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        refusal(deep_json.as_bytes(), "nessus", ResultCheck::Wellformed),
        "The result file is not inspected: its values nest deeper than 64 levels at byte 64."
    );
    let ok_json = format!("{}{}", "[".repeat(64), "]".repeat(64));
    assert!(run(ok_json.as_bytes(), "nessus", ResultCheck::Wellformed).is_ok());
    let deep_in_zap = format!(
        "{{\"@version\": \"1\", \"site\": [{{\"alerts\": [{{\"riskcode\": {}{}}}]}}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let reason = refusal(deep_in_zap.as_bytes(), "zap", ResultCheck::Scanner);
    assert!(reason.contains("nest deeper than 64 levels"), "{reason}");
    let long_name = format!("<{}/>", "n".repeat(MAX_XML_NAME_BYTES + 1));
    assert_eq!(
        refusal(long_name.as_bytes(), "nessus", ResultCheck::Wellformed),
        "The result file is not inspected: an element name is longer than 1024 bytes at byte 0."
    );
}

/// A reader that fails after some bytes.
struct Failing(&'static [u8]);

impl Read for Failing {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "disk on fire",
            ));
        }
        let n = self.0.len().min(out.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn a_read_failure_is_not_the_files_fault() {
    for (bytes, check) in [
        (&b""[..], ResultCheck::None),
        (b"<OWASPZAPReport><site>", ResultCheck::Scanner),
        (b"{\"site\": [", ResultCheck::None),
        (b"  ", ResultCheck::Wellformed),
    ] {
        match inspect(BufReader::new(Failing(bytes)), "zap", check) {
            Err(InspectError::Read(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
                assert_eq!(e.to_string(), "disk on fire");
            }
            other => panic!("{other:?}"),
        }
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn no_panic_on_truncated_or_mutated_fixtures() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let scanners = ["zap", "burp", "wapiti", "nessus"];
    let bytes_of_interest = b"<>/&;\"'[]{}:,!?-\0\xFF\xEF 01234";
    for (name, scanner, ..) in fixtures() {
        let original = fixture(name);
        let mut variants: Vec<Vec<u8>> = Vec::new();
        // Truncations: the first bytes one by one, then 40 points spread over the file.
        for cut in (0..64.min(original.len())).chain((0..40).map(|i| i * original.len() / 40)) {
            variants.push(original[..cut].to_vec());
        }
        // Mutations: overwrite, insert or delete a few bytes.
        for _ in 0..60 {
            let mut v = original.clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(v.len());
                let byte = bytes_of_interest[rng.below(bytes_of_interest.len())];
                match rng.below(3) {
                    0 if at < v.len() => v[at] = byte,
                    1 => v.insert(at, byte),
                    _ if at < v.len() => {
                        let end = (at + 1 + rng.below(16)).min(v.len());
                        v.drain(at..end);
                    }
                    _ => {}
                }
            }
            variants.push(v);
        }
        for v in &variants {
            for check in ResultCheck::ALL {
                for task in [scanner, scanners[rng.below(scanners.len())]] {
                    // Any answer but a panic; none never refuses.
                    let result = inspect(&v[..], task, check);
                    if check == ResultCheck::None {
                        assert!(result.is_ok(), "{name}: {result:?}");
                    }
                    if let Ok(seen) = result {
                        assert_eq!(seen.content_type, seen.format.content_type());
                        if seen.problem.is_some() {
                            assert_eq!(seen.findings, None);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn xml_is_utf8_with_its_declaration_first() {
    assert_eq!(
        refusal(
            b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>caf\xE9</a>",
            "nessus",
            ResultCheck::Wellformed
        ),
        "The result file is not well-formed XML: its text is not UTF-8, the only encoding \
         inspected (cannot decode input using UTF-8: incomplete utf-8 byte sequence from index \
         3) at byte 46."
    );
    assert!(run(b"<a>caf\xC3\xA9</a>", "nessus", ResultCheck::Wellformed).is_ok());
    for late in [
        &b"<a/><?xml version=\"1.0\"?>"[..],
        b"<!-- c --><?xml version=\"1.0\"?><a/>",
    ] {
        let reason = refusal(late, "nessus", ResultCheck::Wellformed);
        assert!(
            reason.starts_with(
                "The result file is not well-formed XML: an XML declaration not at the start at byte "
            ),
            "{reason}"
        );
    }
    // After a byte order mark and whitespace, the declaration is still first.
    assert!(
        run(
            b"\xEF\xBB\xBF\n<?xml version=\"1.0\"?><a/>",
            "nessus",
            ResultCheck::Wellformed
        )
        .is_ok()
    );
}
