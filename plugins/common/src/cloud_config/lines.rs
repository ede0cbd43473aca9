//! A text as lines with their own line endings, so an edit touches only the lines it
//! means to (a CRLF file stays CRLF, a missing final newline stays missing).

#[derive(Debug, Clone)]
pub(super) struct Lines {
    pub body: Vec<String>,
    end: Vec<String>,
    /// The ending new lines get: the file's first one, else "\n".
    nl: String,
}

impl Lines {
    pub fn parse(text: &str) -> Lines {
        let mut body = Vec::new();
        let mut end = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find('\n') {
                Some(i) => {
                    let line = &rest[..i];
                    let (b, e) = match line.strip_suffix('\r') {
                        Some(b) => (b, "\r\n"),
                        None => (line, "\n"),
                    };
                    body.push(b.to_string());
                    end.push(e.to_string());
                    rest = &rest[i + 1..];
                }
                None => {
                    body.push(rest.to_string());
                    end.push(String::new());
                    rest = "";
                }
            }
        }
        let nl = end.iter().find(|e| !e.is_empty()).cloned().unwrap_or_else(|| "\n".into());
        Lines { body, end, nl }
    }

    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Insert `new` before line `at` (`at == len` appends).
    pub fn insert(&mut self, at: usize, new: Vec<String>) {
        if new.is_empty() {
            return;
        }
        let at = at.min(self.len());
        let n = new.len();
        let mut ends = vec![self.nl.clone(); n];
        if at == self.len() && at > 0 && self.end[at - 1].is_empty() {
            // Appending to a file without a final newline: it still has none afterwards.
            self.end[at - 1] = self.nl.clone();
            ends[n - 1] = String::new();
        }
        self.body.splice(at..at, new);
        self.end.splice(at..at, ends);
    }

    /// Remove lines `from..to`.
    pub fn remove(&mut self, from: usize, to: usize) {
        let to = to.min(self.len());
        if from >= to {
            return;
        }
        if to == self.len() && from > 0 && self.end[to - 1].is_empty() {
            self.end[from - 1] = String::new();
        }
        self.body.drain(from..to);
        self.end.drain(from..to);
    }

    /// Replace one line's text (its ending stays).
    pub fn set(&mut self, at: usize, text: String) {
        self.body[at] = text;
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (b, e) in self.body.iter().zip(&self.end) {
            out.push_str(b);
            out.push_str(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_kept_and_new_lines_follow_the_file() {
        for text in ["a\nb\n", "a\r\nb\r\n", "a\nb", "", "a\r\nb"] {
            let l = Lines::parse(text);
            assert_eq!(l.render(), text);
            let mut m = l.clone();
            m.insert(m.len(), vec!["c".into()]);
            m.remove(m.len() - 1, m.len());
            assert_eq!(m.render(), text, "append then remove of {text:?}");
        }
        let mut l = Lines::parse("a\r\nb");
        l.insert(1, vec!["x".into()]);
        assert_eq!(l.render(), "a\r\nx\r\nb");
        l.insert(3, vec!["y".into()]);
        assert_eq!(l.render(), "a\r\nx\r\nb\r\ny");
        let mut e = Lines::parse("");
        e.insert(0, vec!["k: v".into()]);
        assert_eq!(e.render(), "k: v\n");
    }
}
