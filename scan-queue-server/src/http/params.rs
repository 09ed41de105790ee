//! Request parameters, read alike from the query string, a url-encoded body or multipart
//! fields (SPEC §7), with every size bounded. Pure: reading the body is `body.rs`'s.
//!
//! The seed's `curl --data 'message=Just because&…'` sends an unencoded space; the url-encoded
//! parser here takes it as it is. The Python client sends query parameters plus multipart
//! files. When the same parameter appears twice, the first one wins (query before body).

use super::Failure;
use crate::wire;

/// The limits parsing works within.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParseLimits {
    /// Bytes of one text parameter.
    pub(crate) field_bytes: usize,
    /// Bytes of a url-encoded body (or query string).
    pub(crate) form_bytes: usize,
}

/// Parameters in one request.
const MAX_FIELDS: usize = 64;

/// A request's parameters.
#[derive(Debug, Default)]
pub(crate) struct Params {
    fields: Vec<(String, String)>,
}

impl Params {
    /// A parameter as sent (first occurrence), if present.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that must be present and not blank; trimmed.
    pub(crate) fn required(&self, name: &str) -> Result<&str, Failure> {
        match self.get(name).map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(Failure::new(wire::missing_parameter(name))),
        }
    }

    /// A parameter that must be present, verbatim (it may be empty).
    pub(crate) fn present(&self, name: &str) -> Result<&str, Failure> {
        self.get(name)
            .ok_or_else(|| Failure::new(wire::missing_parameter(name)))
    }

    /// An optional parameter; blank counts as absent. Trimmed.
    pub(crate) fn optional(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A required positive integer.
    pub(crate) fn positive_int(&self, name: &str) -> Result<u64, Failure> {
        parse_positive(name, self.required(name)?)
    }

    /// An optional positive integer.
    pub(crate) fn optional_positive_int(&self, name: &str) -> Result<Option<u64>, Failure> {
        self.optional(name)
            .map(|v| parse_positive(name, v))
            .transpose()
    }

    pub(crate) fn push(&mut self, name: String, value: String) -> Result<(), Failure> {
        if self.fields.len() >= MAX_FIELDS {
            return Err(Failure::new(format!(
                "Too many parameters: at most {MAX_FIELDS}."
            )));
        }
        self.fields.push((name, value));
        Ok(())
    }

    /// Adds the pairs of a query string or url-encoded body.
    pub(crate) fn add_form(&mut self, form: &[u8], limits: ParseLimits) -> Result<(), Failure> {
        if form.len() > limits.form_bytes {
            return Err(Failure::new(format!(
                "Request parameters too large: at most {} bytes.",
                limits.form_bytes
            )));
        }
        for (k, v) in form_urlencoded::parse(form) {
            self.push(k.into_owned(), v.into_owned())?;
        }
        Ok(())
    }
}

fn parse_positive(name: &str, value: &str) -> Result<u64, Failure> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Failure::new(wire::not_a_positive_integer(name, value))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ParseLimits = ParseLimits {
        field_bytes: 1024,
        form_bytes: 4096,
    };

    #[test]
    fn the_seeds_unencoded_space_and_first_wins() {
        let mut p = Params::default();
        p.add_form(b"scanQueueTaskId=3&message=Just because&x=%41+b", LIMITS)
            .unwrap();
        p.add_form(b"scanQueueTaskId=4", LIMITS).unwrap();
        assert_eq!(p.get("message"), Some("Just because"));
        assert_eq!(p.get("x"), Some("A b"));
        assert_eq!(p.positive_int("scanQueueTaskId"), Ok(3));
    }

    #[test]
    fn missing_and_malformed() {
        let mut p = Params::default();
        p.add_form(b"a=&b=x&c=0&d= 7 ", LIMITS).unwrap();
        assert_eq!(
            p.required("a").unwrap_err().message,
            "Missing required parameter: a."
        );
        assert_eq!(p.present("a"), Ok(""));
        assert_eq!(
            p.positive_int("b").unwrap_err().message,
            "Invalid b: 'x' is not a positive integer."
        );
        assert!(p.positive_int("c").is_err());
        assert_eq!(p.positive_int("d"), Ok(7));
        assert_eq!(p.optional_positive_int("zz"), Ok(None));
        assert_eq!(
            p.required("secureTaskKey").unwrap_err().message,
            wire::NO_SECURE_TASK_KEY
        );
        assert!(p.add_form(&[b'a'; 5000], LIMITS).is_err());
    }
}
