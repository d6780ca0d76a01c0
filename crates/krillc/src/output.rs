//! Printing answers: aligned tables for people, JSON for scripts.
//!
//! Strings from the server are shown through [`escape`] in tables and
//! `name value` lines, so a node name cannot reorder or hide text on the
//! terminal. `--json` output is the server's text, JSON-encoded.

use std::fmt::Write as _;

use serde_json::Value;

/// Unicode general category Cf (format characters), Unicode 15.1: the
/// bidirectional controls, zero-width characters, the byte-order mark,
/// tags and the like. Kept here rather than pulling in a Unicode tables
/// crate for one category.
const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// True for characters shown escaped: control characters (Cc), format
/// characters (Cf) and the line and paragraph separators.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}')
        || FORMAT_CHARS.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
}

/// Server text made safe for a terminal: control and format characters
/// become `\u{XXXX}` (so U+202E shows as `\u{202E}`); everything else is
/// kept.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if hidden(c) {
            let _ = write!(out, "\\u{{{:04X}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Renders rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A JSON value as a table cell: strings bare, null as `-`, others as
/// compact JSON; control and format characters escaped.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => escape(s),
        // JSON encoding escapes control characters but not format ones.
        Some(other) => escape(&other.to_string()),
    }
}

/// `name: value` lines for an object's fields, in the given order first,
/// then any others.
pub fn fields(object: &Value, order: &[&str]) -> String {
    let Some(map) = object.as_object() else {
        return format!("{object}\n");
    };
    let mut keys: Vec<&str> = order
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    keys.extend(
        map.keys()
            .map(String::as_str)
            .filter(|k| !order.contains(k)),
    );
    let names: Vec<String> = keys.iter().map(|k| escape(k)).collect();
    let width = names.iter().map(|k| k.chars().count()).max().unwrap_or(0);
    keys.iter()
        .zip(&names)
        .map(|(k, name)| format!("{name:<width$}  {}\n", cell(map.get(*k))))
        .collect()
}

/// Pretty JSON with a final newline.
pub fn json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["ID", "NAME"],
            &[
                vec!["a".into(), "x".into()],
                vec!["long-id".into(), "y".into()],
            ],
        );
        assert_eq!(text, "ID       NAME\na        x\nlong-id  y\n");
    }

    #[test]
    fn fields_come_in_order_then_the_rest() {
        let text = fields(&json!({"b": 1, "id": "n1", "meta": {"k": true}}), &["id"]);
        assert_eq!(text, "id    n1\nb     1\nmeta  {\"k\":true}\n");
        assert_eq!(cell(Some(&Value::Null)), "-");
    }

    #[test]
    fn control_and_format_characters_are_escaped() {
        assert_eq!(
            escape("abc\u{202E}txt.exe\u{200B}\u{FEFF}\u{2066}\u{1b}[31m\n\u{7f}"),
            "abc\\u{202E}txt.exe\\u{200B}\\u{FEFF}\\u{2066}\\u{001B}[31m\\u{000A}\\u{007F}"
        );
        assert_eq!(escape("Température – 温度 🌡"), "Température – 温度 🌡");
        assert_eq!(
            cell(Some(&json!({"k": "a\u{200F}b"}))),
            "{\"k\":\"a\\u{200F}b\"}"
        );
        let text = fields(&json!({"n\u{202E}x": "v\u{0}"}), &[]);
        assert_eq!(text, "n\\u{202E}x  v\\u{0000}\n");
    }
}
