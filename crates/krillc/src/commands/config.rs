//! `krillc config get|set`: the server's settings (`/api/config`).

use hyper::Method;
use serde_json::{Map, Value};

use crate::api::Client;
use crate::failure::Failure;
use crate::output;

use super::{body_json, Format};

/// `config get [FIELD]`: every setting, or one.
pub async fn get(client: &Client, field: Option<&str>, format: Format) -> Result<String, Failure> {
    let answer = client.call(Method::GET, "/api/config", None).await?;
    let settings = body_json(&answer)?;
    let Some(field) = field else {
        return Ok(show(&settings, format));
    };
    let value = settings.get(field).ok_or_else(|| {
        let known = settings
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        Failure::NotFound(format!(
            "the server has no setting `{field}`; it has: {known}"
        ))
    })?;
    Ok(match format {
        Format::Json => output::json(value),
        Format::Human => output::cell(Some(value)) + "\n",
    })
}

/// `config set KEY=VALUE...`: one PATCH with every assignment. A value
/// that parses as JSON is sent as that JSON (`true`, `30`, `null`,
/// `{"a":1}`); anything else is sent as a string.
pub async fn set(
    client: &Client,
    assignments: &[String],
    format: Format,
) -> Result<String, Failure> {
    let patch = patch_body(assignments)?;
    let answer = client
        .call(Method::PATCH, "/api/config", Some(&patch))
        .await?;
    Ok(show(&body_json(&answer)?, format))
}

fn patch_body(assignments: &[String]) -> Result<Value, Failure> {
    let mut patch = Map::new();
    for assignment in assignments {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            Failure::Usage(format!(
                "`{assignment}` is not KEY=VALUE; write e.g. `krillc config set log_level=debug`"
            ))
        })?;
        if key.is_empty() {
            return Err(Failure::Usage(format!(
                "`{assignment}` has no setting name"
            )));
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        patch.insert(key.to_owned(), value);
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
}
