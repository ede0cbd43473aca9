//! Terminal output: aligned tables, colours (only when asked for or on a terminal without
//! `NO_COLOR`), times and durations.

use std::io::Write;

use vsm_api::Time;

/// A colour for a table cell or a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Green,
    Red,
    Yellow,
    Cyan,
    Dim,
    Bold,
}

impl Color {
    fn code(self) -> &'static str {
        match self {
            Color::Green => "32",
            Color::Red => "31",
            Color::Yellow => "33",
            Color::Cyan => "36",
            Color::Dim => "2",
            Color::Bold => "1",
        }
    }
}

/// Whether to colour the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub const PLAIN: Style = Style { color: false };

    /// `text` in `color` (unchanged without colours).
    pub fn paint(&self, color: Color, text: &str) -> String {
        if self.color && !text.is_empty() { format!("\x1b[{}m{text}\x1b[0m", color.code()) } else { text.to_string() }
    }
}

/// One table cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub color: Option<Color>,
}

impl Cell {
    pub fn new(text: impl Into<String>) -> Cell {
        Cell { text: text.into(), color: None }
    }

    pub fn colored(text: impl Into<String>, color: Color) -> Cell {
        Cell { text: text.into(), color: Some(color) }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::new(s)
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::new(s)
    }
}

/// Write a table with a header row; columns are as wide as their widest cell, the last one
/// is not padded. Widths are measured on the text, so colours do not break alignment.
pub fn table(out: &mut dyn Write, style: Style, headers: &[&str], rows: &[Vec<Cell>]) -> std::io::Result<()> {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.text.chars().count());
        }
    }
    let line = |cells: Vec<(String, Option<Color>)>| -> String {
        let mut s = String::new();
        for (i, (text, color)) in cells.iter().enumerate() {
            let last = i + 1 == cells.len();
            let pad = if last { 0 } else { widths[i] - text.chars().count() + 2 };
            match color {
                Some(c) => s.push_str(&style.paint(*c, text)),
                None => s.push_str(text),
            }
            s.push_str(&" ".repeat(pad));
        }
        s.trim_end().to_string()
    };
    let head = line(headers.iter().map(|h| (h.to_string(), Some(Color::Bold))).collect());
    writeln!(out, "{head}")?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(|c| (c.text.clone(), c.color)).collect()))?;
    }
    Ok(())
}

/// `1h02m`, `3m05s`, `42s`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// How long ago `t` was, e.g. `5m02s ago`; `in 4s` for a time in the future.
pub fn relative(t: Time, now: Time) -> String {
    let secs = now.seconds_since(t);
    if secs >= 0 { format!("{} ago", duration(secs)) } else { format!("in {}", duration(-secs)) }
}

/// Shorten to `n` characters with an ellipsis.
pub fn truncate(s: &str, n: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() <= n { s } else { format!("{}…", s.chars().take(n.saturating_sub(1)).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_text_not_on_colour_codes() {
        let mut out = Vec::new();
        let rows = vec![
            vec![Cell::colored("done", Color::Green), Cell::new("a")],
            vec![Cell::new("running 40%"), Cell::new("b")],
        ];
        table(&mut out, Style { color: true }, &["STATE", "MESSAGE"], &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let plain: Vec<String> = text
            .lines()
            .map(|l| {
                let mut s = l.to_string();
                for code in ["\x1b[32m", "\x1b[1m", "\x1b[0m"] {
                    s = s.replace(code, "");
                }
                s
            })
            .collect();
        assert_eq!(plain, vec!["STATE        MESSAGE", "done         a", "running 40%  b"]);
        assert!(text.contains("\x1b[32mdone\x1b[0m"));

        let mut out = Vec::new();
        table(&mut out, Style::PLAIN, &["STATE", "MESSAGE"], &rows).unwrap();
        assert!(!String::from_utf8(out).unwrap().contains('\x1b'), "no escape codes without colour");
    }

    #[test]
    fn durations_and_relative_times() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(3720), "1h02m");
        let t = |s: &str| -> Time { s.parse().unwrap() };
        let now = t("2025-01-01T00:10:00Z");
        assert_eq!(relative(t("2025-01-01T00:05:00Z"), now), "5m00s ago");
        assert_eq!(relative(t("2025-01-01T00:10:04Z"), now), "in 4s");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
