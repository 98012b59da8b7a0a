//! What plumctl prints: column-aligned tables for people (coloured only on a terminal, never
//! with `NO_COLOR`), pretty JSON for scripts (`--json`), and one line per event for watches.

use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::error::{CtlError, Result};

/// Colours are for a person at a terminal: not in a pipe or a file, and never with `NO_COLOR`
/// set (<https://no-color.org>).
pub fn color_wanted(stdout_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stdout_is_terminal && no_color.is_none()
}

/// How this process prints.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub color: bool,
}

impl Output {
    pub fn detect(json: bool) -> Output {
        Output { json, color: color_wanted(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR")) }
    }

    /// The answer as the cluster sent it, pretty-printed.
    pub fn json_value(&self, value: &Value) -> Result<()> {
        let text = serde_json::to_string_pretty(value).map_err(|e| CtlError::Failed(e.to_string()))?;
        print_text(&format!("{text}\n"))
    }

    /// One compact JSON value per line (watch events).
    pub fn json_line(&self, value: &Value) -> Result<()> {
        print_text(&format!("{value}\n"))
    }

    pub fn table(&self, table: &Table) -> Result<()> {
        print_text(&table.render(self.color))
    }

    pub fn line(&self, text: &str) -> Result<()> {
        print_text(&format!("{text}\n"))
    }

    /// A short status word in its colour (`healthy` green, ...), plain without colour.
    pub fn paint(&self, text: &str, paint: Paint) -> String {
        if self.color { paint.apply(text) } else { text.to_string() }
    }
}

/// Writes to stdout; a closed pipe ends the command quietly.
pub fn print_text(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|_| out.flush()).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => CtlError::BrokenPipe,
        _ => CtlError::Failed(format!("writing the output: {e}")),
    })
}

/// Notes for the person running a command (watch started, ...): stderr, so stdout stays data.
pub fn note(text: &str) {
    eprintln!("{text}");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Green,
    Red,
    Yellow,
    Bold,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Green => "32",
            Paint::Red => "31",
            Paint::Yellow => "33",
            Paint::Bold => "1",
        }
    }

    pub fn apply(self, text: &str) -> String {
        format!("\x1b[{}m{text}\x1b[0m", self.code())
    }

    /// Green for good, red for bad.
    pub fn good_bad(good: bool) -> Paint {
        if good { Paint::Green } else { Paint::Red }
    }
}

/// One cell: its text and, on a terminal, its colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    text: String,
    paint: Option<Paint>,
}

impl Cell {
    pub fn painted(text: impl Into<String>, paint: Paint) -> Cell {
        Cell { text: text.into(), paint: Some(paint) }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, paint: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell { text: text.to_string(), paint: None }
    }
}

/// Rows under headers, every column as wide as its widest cell, two spaces between columns,
/// no trailing spaces. Colours never change the widths (they are added after padding).
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn render(&self, color: bool) -> String {
        let columns = self.rows.iter().map(Vec::len).chain([self.headers.len()]).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        let header_cells: Vec<Cell> =
            self.headers.iter().map(|h| Cell { text: h.clone(), paint: Some(Paint::Bold) }).collect();
        for row in std::iter::once(&header_cells).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(width(&clean(&cell.text)));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header_cells).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let text = clean(&cell.text);
                let pad = widths[i].saturating_sub(width(&text));
                let last = i + 1 == row.len();
                if i > 0 {
                    line.push_str("  ");
                }
                match cell.paint {
                    Some(p) if color => line.push_str(&p.apply(&text)),
                    _ => line.push_str(&text),
                }
                if !last {
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Cell text on one line, without control characters (a value could hold an escape sequence).
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `12s ago`, `5m ago`, ... for a Unix-seconds timestamp (`-` when there is none).
pub fn ago(ts: u64, now: u64) -> String {
    if ts == 0 {
        return "-".into();
    }
    let d = now.saturating_sub(ts);
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86400),
    }
}

/// `a=1,b=2`, or `-` for none.
pub fn labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let text: Vec<String> = labels.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if text.is_empty() { "-".into() } else { text.join(",") }
}

/// An optional number, `-` when unknown.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&["NAME", "HEALTH", "ADDRESS"]);
        t.row(vec!["web".into(), Cell::painted("healthy", Paint::Green), "10.0.0.1:8080".into()]);
        t.row(vec!["payments-api".into(), Cell::painted("unhealthy", Paint::Red), "".into()]);
        t
    }

    #[test]
    fn columns_are_aligned_without_trailing_spaces() {
        let text = sample().render(false);
        assert_eq!(
            text,
            "NAME          HEALTH     ADDRESS\n\
             web           healthy    10.0.0.1:8080\n\
             payments-api  unhealthy\n"
        );
        // Every column starts at the same offset on every line.
        let starts = |line: &str| ["HEALTH", "unhealthy", "healthy"].iter().find_map(|w| line.find(w));
        let offsets: Vec<_> = text.lines().map(starts).collect();
        assert!(offsets.iter().all(|o| *o == Some(14)), "{offsets:?}");
    }

    #[test]
    fn no_colour_unless_a_terminal_without_no_color() {
        assert!(!sample().render(false).contains('\x1b'));
        assert!(!color_wanted(false, None));
        assert!(!color_wanted(true, Some("1".into())));
        assert!(!color_wanted(true, Some("".into())));
        assert!(color_wanted(true, None));
        let output = Output { json: false, color: false };
        assert_eq!(output.paint("healthy", Paint::Green), "healthy");
    }

    #[test]
    fn colour_does_not_change_alignment() {
        let plain = sample().render(false);
        let coloured = sample().render(true);
        assert!(coloured.contains("\x1b[1mNAME\x1b[0m"));
        assert!(coloured.contains("\x1b[32mhealthy\x1b[0m"));
        let strip = |s: &str| {
            let mut out = String::new();
            let mut in_escape = false;
            for c in s.chars() {
                match (in_escape, c) {
                    (false, '\x1b') => in_escape = true,
                    (true, 'm') => in_escape = false,
                    (true, _) => {}
                    (false, c) => out.push(c),
                }
            }
            out
        };
        assert_eq!(strip(&coloured), plain);
    }

    #[test]
    fn empty_table_is_its_headers_and_cells_stay_on_one_line() {
        assert_eq!(Table::new(&["SERVICE", "INSTANCE"]).render(false), "SERVICE  INSTANCE\n");
        let mut t = Table::new(&["KEY", "VALUE"]);
        t.row(vec!["k".into(), "two\nlines\x1b[31m".into()]);
        assert_eq!(t.render(false), "KEY  VALUE\nk    two lines [31m\n");
        // A row shorter or longer than the headers does not panic.
        t.row(vec!["a".into(), "b".into(), "c".into()]);
        t.row(vec![]);
        assert_eq!(t.render(false).lines().count(), 4);
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(0, 100), "-");
        assert_eq!(ago(95, 100), "5s ago");
        assert_eq!(ago(100, 95), "0s ago");
        assert_eq!(ago(100, 100 + 125), "2m ago");
        assert_eq!(ago(100, 100 + 7200), "2h ago");
        assert_eq!(ago(100, 100 + 3 * 86400), "3d ago");
    }
}
