//! Command templates: an argument (or environment value) with placeholders such as
//! `{target_url}`, parsed once when the configuration is read and filled in per task.

use std::fmt;

/// A value a placeholder stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Placeholder {
    /// `{target_url}`: the task's target URL.
    TargetUrl,
    /// `{output}`: the path of the report file the scanner must write.
    Output,
    /// `{config_file}`: the path of the task's scan configuration file (`dataBlobs.configFile`).
    ConfigFile,
    /// `{task_id}`: the task's id.
    TaskId,
    /// `{work_dir}`: the task's private working directory (the scanner's current directory).
    WorkDir,
}

impl Placeholder {
    /// Every placeholder.
    pub const ALL: [Placeholder; 5] = [
        Placeholder::TargetUrl,
        Placeholder::Output,
        Placeholder::ConfigFile,
        Placeholder::TaskId,
        Placeholder::WorkDir,
    ];

    /// Its name between the braces.
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::TargetUrl => "target_url",
            Placeholder::Output => "output",
            Placeholder::ConfigFile => "config_file",
            Placeholder::TaskId => "task_id",
            Placeholder::WorkDir => "work_dir",
        }
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.name())
    }
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value(Placeholder),
}

/// A string with placeholders. `{{` and `}}` stand for literal braces.
///
/// ```
/// use scan_queue_agent::{Placeholder, Template};
/// let t = Template::parse("--url={target_url}").unwrap();
/// let filled = t.fill(|p| (p == Placeholder::TargetUrl).then(|| "http://app/".to_owned()));
/// assert_eq!(filled.unwrap(), "--url=http://app/");
/// assert!(Template::parse("{nope}").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// The longest template accepted, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 4096;

impl Template {
    /// Parses a template; an unknown placeholder or an unmatched brace is an error.
    pub fn parse(text: &str) -> Result<Template, String> {
        if text.len() > MAX_TEMPLATE_LEN {
            return Err(format!(
                "an argument is longer than {MAX_TEMPLATE_LEN} bytes"
            ));
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{") {
                literal.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                literal.push('}');
                rest = after;
            } else if tail.starts_with('}') {
                return Err(format!(
                    "unmatched '}}' in \"{text}\" (write '}}}}' for a brace)"
                ));
            } else {
                let end = tail.find('}').ok_or_else(|| {
                    format!("unclosed '{{' in \"{text}\" (write '{{{{' for a brace)")
                })?;
                let name = &tail[1..end];
                let placeholder = Placeholder::ALL
                    .into_iter()
                    .find(|p| p.name() == name)
                    .ok_or_else(|| {
                        let known: Vec<String> =
                            Placeholder::ALL.iter().map(ToString::to_string).collect();
                        format!(
                            "unknown placeholder {{{name}}} in \"{text}\" (known: {})",
                            known.join(", ")
                        )
                    })?;
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Value(placeholder));
                rest = &tail[end + 1..];
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// Whether the template uses this placeholder.
    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.pieces.contains(&Piece::Value(placeholder))
    }

    /// The text with every placeholder replaced by `value(placeholder)`; the first
    /// placeholder without a value is the error.
    pub fn fill(
        &self,
        value: impl Fn(Placeholder) -> Option<String>,
    ) -> Result<String, Placeholder> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value(p) => out.push_str(&value(*p).ok_or(*p)?),
            }
        }
        Ok(out)
    }
}

impl<'de> serde::Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Template, D::Error> {
        let text = String::deserialize(deserializer)?;
        Template::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: Placeholder) -> Option<String> {
        Some(format!("<{}>", p.name()))
    }

    #[test]
    fn fills_every_placeholder_and_keeps_text() {
        let t =
            Template::parse("a{target_url}b{output}{config_file}-{task_id}/{work_dir}z").unwrap();
        assert_eq!(
            t.fill(all).unwrap(),
            "a<target_url>b<output><config_file>-<task_id>/<work_dir>z"
        );
        for p in Placeholder::ALL {
            assert!(t.uses(p));
        }
        let plain = Template::parse("--json").unwrap();
        assert_eq!(plain.fill(|_| None).unwrap(), "--json");
        assert!(!plain.uses(Placeholder::Output));
        assert_eq!(Template::parse("").unwrap().fill(|_| None).unwrap(), "");
    }

    #[test]
    fn braces_escape_and_errors() {
        let t = Template::parse("{{\"a\": {task_id}}}").unwrap();
        assert_eq!(t.fill(all).unwrap(), "{\"a\": <task_id>}");
        assert!(
            Template::parse("{target}")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(Template::parse("{output").unwrap_err().contains("unclosed"));
        assert!(Template::parse("x}").unwrap_err().contains("unmatched"));
        assert!(Template::parse(&"a".repeat(MAX_TEMPLATE_LEN + 1)).is_err());
    }

    #[test]
    fn a_missing_value_names_its_placeholder() {
        let t = Template::parse("{target_url} {config_file}").unwrap();
        let missing = t.fill(|p| (p == Placeholder::TargetUrl).then(String::new));
        assert_eq!(missing, Err(Placeholder::ConfigFile));
        assert_eq!(Placeholder::ConfigFile.to_string(), "{config_file}");
    }
}
