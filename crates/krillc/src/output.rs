//! Printing answers: aligned tables for people, JSON for scripts.

use serde_json::Value;

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
/// compact JSON.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
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
    let width = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0);
    keys.iter()
        .map(|k| format!("{k:<width$}  {}\n", cell(map.get(*k))))
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
}
