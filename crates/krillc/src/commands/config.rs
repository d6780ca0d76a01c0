//! `krillc config get|set`: the server's settings (`/api/config`).
//!
//! Settings inside a group are named with dots, as the server names them
//! in its errors: `auth_throttle.max_failures`. `set a.b=V` sends the
//! merge patch `{"a":{"b":V}}`; `get a.b` reads `b` inside `a`.

use hyper::Method;
use serde_json::{Map, Value};

use crate::api::Client;
use crate::failure::Failure;
use crate::output;

use super::{body_json, Format};

/// `config get [FIELD]`: every setting, or one (dotted for nested ones).
pub async fn get(client: &Client, field: Option<&str>, format: Format) -> Result<String, Failure> {
    let answer = client.call(Method::GET, "/api/config", None).await?;
    let settings = body_json(&answer)?;
    let Some(field) = field else {
        return Ok(show(&settings, format));
    };
    let value = lookup(&settings, field).ok_or_else(|| {
        let mut known = Vec::new();
        leaf_names(&settings, "", &mut known);
        Failure::NotFound(format!(
            "the server has no setting `{field}`; it has: {}",
            known.join(", ")
        ))
    })?;
    Ok(match format {
        Format::Json => output::json(value),
        Format::Human => output::cell(Some(value)) + "\n",
    })
}

/// The value at a dotted name, walking into nested objects.
fn lookup<'a>(settings: &'a Value, field: &str) -> Option<&'a Value> {
    field
        .split('.')
        .try_fold(settings, |value, part| value.as_object()?.get(part))
}

/// The dotted names of every non-object setting, for error messages.
fn leaf_names(value: &Value, prefix: &str, out: &mut Vec<String>) {
    let Some(map) = value.as_object() else {
        out.push(prefix.to_owned());
        return;
    };
    for (name, inner) in map {
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        leaf_names(inner, &full, out);
    }
}

/// `config set KEY=VALUE...`: one PATCH with every assignment. A value
/// that parses as JSON is sent as that JSON (`true`, `30`, `null`,
/// `{"a":1}`); anything else is sent as a string. When the server refuses
/// a JSON value's type, the message says how to send it as text.
pub async fn set(
    client: &Client,
    assignments: &[String],
    format: Format,
) -> Result<String, Failure> {
    let patch = patch_body(assignments)?;
    let answer = client
        .call(Method::PATCH, "/api/config", Some(&patch))
        .await
        .map_err(|failure| quote_hint(failure, assignments))?;
    Ok(show(&body_json(&answer)?, format))
}

/// Adds "quote it" to a type error about a setting whose value krillc
/// read as JSON other than a string (`display_name=123`).
fn quote_hint(failure: Failure, assignments: &[String]) -> Failure {
    let Failure::Rejected(text) = failure else {
        return failure;
    };
    if !text.contains("invalid type") {
        return Failure::Rejected(text);
    }
    let culprit = assignments.iter().find_map(|a| {
        let (key, value) = a.split_once('=')?;
        let parsed: Value = serde_json::from_str(value).ok()?;
        (!parsed.is_string() && text.contains(&format!("`{key}`"))).then_some((key, value))
    });
    match culprit {
        Some((key, value)) => Failure::Rejected(format!(
            "{text}; krillc sent {value} as JSON, so to send it as text, quote it: \
             krillc config set '{key}=\"{value}\"'"
        )),
        None => Failure::Rejected(text),
    }
}

fn patch_body(assignments: &[String]) -> Result<Value, Failure> {
    let mut patch = Map::new();
    for assignment in assignments {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            Failure::Usage(format!(
                "`{assignment}` is not KEY=VALUE; write e.g. `krillc config set \
                 display_name=Greenhouse`"
            ))
        })?;
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(Failure::Usage(format!(
                "`{assignment}` has no setting name, or an empty part in a dotted one; \
                 write e.g. `auth_throttle.max_failures=5`"
            )));
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        let clash = || {
            Failure::Usage(format!(
                "`{key}` is given twice, or inside a setting given as a whole; give each \
                 setting once"
            ))
        };
        let (leaf, groups) = parts.split_last().ok_or_else(clash)?;
        let mut object = &mut patch;
        for group in groups {
            let entry = object
                .entry((*group).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            object = match entry {
                Value::Object(inner) => inner,
                _ => return Err(clash()),
            };
        }
        if object.contains_key(*leaf) {
            return Err(clash());
        }
        object.insert((*leaf).to_owned(), value);
    }
    Ok(Value::Object(patch))
}

fn show(settings: &Value, format: Format) -> String {
    match format {
        Format::Json => output::json(settings),
        Format::Human => output::fields(settings, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn assignments_become_one_patch() {
        let body = patch_body(&[
            "a=1".into(),
            "b=text".into(),
            "c=true".into(),
            "d={\"x\":null}".into(),
        ])
        .unwrap();
        assert_eq!(
            body,
            json!({"a": 1, "b": "text", "c": true, "d": {"x": null}})
        );
        assert!(patch_body(&["novalue".into()]).is_err());
        assert!(patch_body(&["=1".into()]).is_err());
    }

    #[test]
    fn dotted_names_nest_and_clashes_are_refused() {
        let body = patch_body(&[
            "auth_throttle.max_failures=5".into(),
            "auth_throttle.window_seconds=30".into(),
            "display_name=Greenhouse".into(),
        ])
        .unwrap();
        assert_eq!(
            body,
            json!({"auth_throttle": {"max_failures": 5, "window_seconds": 30},
                   "display_name": "Greenhouse"})
        );
        for bad in [
            &["a.=1"][..],
            &[".a=1"],
            &["a..b=1"],
            &["a=1", "a.b=2"],
            &["a.b=1", "a.b=2"],
            &["a.b=1", "a=2"],
        ] {
            let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(patch_body(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dotted_lookup_and_names() {
        let settings = json!({"display_name": "Krill", "auth_throttle": {"max_failures": 10}});
        assert_eq!(
            lookup(&settings, "auth_throttle.max_failures"),
            Some(&json!(10))
        );
        assert_eq!(lookup(&settings, "display_name.x"), None);
        assert_eq!(lookup(&settings, "auth_throttle.nope"), None);
        let mut names = Vec::new();
        leaf_names(&settings, "", &mut names);
        assert_eq!(names, ["auth_throttle.max_failures", "display_name"]);
    }
}
