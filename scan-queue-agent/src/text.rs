//! Bounded text: truncation at a character boundary, a line splitter with a line-length
//! bound (a scanner's output), and the tail of a stream (the last lines of stderr).

use std::borrow::Cow;
use std::collections::VecDeque;

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut (the
/// ellipsis counts towards `max`).
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let room = max.saturating_sub('…'.len_utf8());
    let mut end = room;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

/// Splits a byte stream into lines of at most `max_line` bytes: a longer line keeps its
/// first `max_line` bytes (marked with `…`) and the rest up to the newline is dropped.
/// Invalid UTF-8 is replaced; a trailing `\r` is removed.
#[derive(Debug)]
pub struct LineSplitter {
    max_line: usize,
    current: Vec<u8>,
    cut: bool,
}

impl LineSplitter {
    /// A splitter for lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter {
            max_line,
            current: Vec::new(),
            cut: false,
        }
    }

    /// Feeds bytes; `line` is called for each complete line.
    pub fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(String)) {
        while !bytes.is_empty() {
            let (chunk, newline) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            let room = self.max_line.saturating_sub(self.current.len());
            if chunk.len() > room {
                self.current.extend_from_slice(&chunk[..room]);
                self.cut = true;
            } else {
                self.current.extend_from_slice(chunk);
            }
            bytes = &bytes[chunk.len()..];
            if newline {
                bytes = &bytes[1..];
                line(self.take());
            }
        }
    }

    /// The last line if the stream did not end with a newline.
    pub fn finish(mut self) -> Option<String> {
        (!self.current.is_empty() || self.cut).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.current);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if std::mem::take(&mut self.cut) {
            text = truncate(&text, self.max_line.saturating_sub('…'.len_utf8())).into_owned();
            text.push('…');
        }
        text
    }
}

/// The last lines of a stream, at most `max_lines` lines.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    max_lines: usize,
}

impl Tail {
    /// An empty tail keeping `max_lines` lines.
    pub fn new(max_lines: usize) -> Tail {
        Tail {
            lines: VecDeque::with_capacity(max_lines),
            max_lines,
        }
    }

    /// Adds a line, dropping the oldest past the bound.
    pub fn push(&mut self, line: String) {
        if self.max_lines == 0 {
            return;
        }
        if self.lines.len() == self.max_lines {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The kept lines, oldest first, joined with newlines.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| out.push(l));
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn truncates_at_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("abcdefghij", 6), "abc…");
        let t = truncate("ééééé", 6);
        assert!(t.len() <= 6 && t.ends_with('…'), "{t}");
        assert_eq!(truncate("abc", 0), "…");
    }

    #[test]
    fn lines_across_chunks_crlf_and_no_final_newline() {
        assert_eq!(
            split(100, &[b"one\r\ntw", b"o\n", b"\nthree"]),
            vec!["one", "two", "", "three"]
        );
        assert_eq!(split(100, &[b"a\n"]), vec!["a"]);
        assert!(split(100, &[]).is_empty());
        assert_eq!(split(100, &[b"\xff\xfe ok\n"]), vec!["\u{fffd}\u{fffd} ok"]);
    }

    #[test]
    fn long_lines_are_cut_and_the_next_line_is_intact() {
        let long = vec![b'x'; 10_000];
        let out = split(20, &[&long, &long, b"\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert!(
            out[0].len() <= 20 + '…'.len_utf8() && out[0].ends_with('…'),
            "{}",
            out[0]
        );
        assert_eq!(out[1], "next");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::new(3);
        for i in 0..10 {
            t.push(format!("line {i}"));
        }
        assert_eq!(t.text(), "line 7\nline 8\nline 9");
        let mut none = Tail::new(0);
        none.push("x".into());
        assert_eq!(none.text(), "");
    }
}
