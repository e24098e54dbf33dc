//! BILLmanager's JSON dialect (docs/providers.md §B.1): every scalar is a string inside
//! `{"$": …}`, attributes are `"$name"` keys, and a list may arrive as an array, a bare object
//! (one element), `{}` or nothing at all (empty).
use serde_json::{Map, Value};

use super::ProviderError;

pub(crate) type Object = Map<String, Value>;

fn protocol(message: String) -> ProviderError {
    ProviderError::Protocol(message)
}

/// The value of a wrapped scalar. `{"$": "x"}` is the documented form; a bare string is
/// accepted too (harmless leniency), and `{}`, `null` or absence mean "no value". A number or
/// list where a string belongs breaks the documented contract and is a protocol error.
pub(crate) fn scalar<'a>(object: &'a Object, key: &str) -> Result<Option<&'a str>, ProviderError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Object(inner)) => match inner.get("$") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(protocol(format!("field {key:?} holds a non-string value"))),
        },
        Some(_) => Err(protocol(format!("field {key:?} is not a wrapped string"))),
    }
}

/// Like [`scalar`] but the field must be present and non-empty.
pub(crate) fn required<'a>(object: &'a Object, key: &str) -> Result<&'a str, ProviderError> {
    match scalar(object, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(protocol(format!("field {key:?} is missing"))),
    }
}

/// Normalises a list field to a vector of objects.
pub(crate) fn elems<'a>(doc: &'a Object, key: &str) -> Result<Vec<&'a Object>, ProviderError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(one)) if one.is_empty() => Ok(Vec::new()),
        Some(Value::Object(one)) => Ok(vec![one]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_object()
                    .ok_or_else(|| protocol(format!("an entry of {key:?} is not an object")))
            })
            .collect(),
        Some(_) => Err(protocol(format!("{key:?} is neither a list nor an object"))),
    }
}

/// An error in the body: `doc.error` with `$type` and `msg.$`. Values are returned raw; the
/// caller scrubs them before they reach a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyError {
    /// Lower-cased `$type` (empty when absent).
    pub kind: String,
    pub message: String,
}

pub(crate) fn body_error(doc: &Object) -> Option<BodyError> {
    let error = doc.get("error")?;
    let Some(error) = error.as_object() else {
        // A bare string or other odd shape is still an error answer, never a success.
        return Some(BodyError {
            kind: String::new(),
            message: error.as_str().unwrap_or_default().to_owned(),
        });
    };
    let kind = error
        .get("$type")
        .or_else(|| error.get("type"))
        .and_then(|t| match t {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o.get("$").and_then(Value::as_str),
            _ => None,
        })
        .unwrap_or_default()
        .to_ascii_lowercase();
    let message = match error.get("msg") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("$")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    };
    Some(BodyError { kind, message })
}

/// The session id of a `func=auth` answer: `doc.auth["$id"]` as documented, or `doc.auth["$"]`
/// / a bare string, which BILLmanager versions have also been seen to send.
pub(crate) fn session_id(doc: &Object) -> Option<&str> {
    let id = match doc.get("auth")? {
        Value::String(s) => s.as_str(),
        Value::Object(auth) => auth
            .get("$id")
            .or_else(|| auth.get("$"))
            .and_then(Value::as_str)?,
        _ => return None,
    };
    (!id.trim().is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn scalars_unwrap() {
        let o = obj(
            json!({"a": {"$": "1"}, "b": "2", "c": {}, "d": null, "e": {"$": 3}, "f": [1], "g": {"$": ""}}),
        );
        assert_eq!(scalar(&o, "a").unwrap(), Some("1"));
        assert_eq!(scalar(&o, "b").unwrap(), Some("2"));
        assert_eq!(scalar(&o, "c").unwrap(), None);
        assert_eq!(scalar(&o, "d").unwrap(), None);
        assert_eq!(scalar(&o, "missing").unwrap(), None);
        assert!(scalar(&o, "e").is_err());
        assert!(scalar(&o, "f").is_err());
        assert!(required(&o, "g").is_err());
        assert!(required(&o, "missing").is_err());
        assert_eq!(required(&o, "a").unwrap(), "1");
    }

    #[test]
    fn elem_shapes_normalise() {
        let one = json!({"id": {"$": "1"}});
        for (doc, n) in [
            (json!({"elem": [one.clone(), one.clone()]}), 2),
            (json!({"elem": one.clone()}), 1),
            (json!({"elem": {}}), 0),
            (json!({"elem": []}), 0),
            (json!({"elem": null}), 0),
            (json!({}), 0),
        ] {
            assert_eq!(elems(&obj(doc.clone()), "elem").unwrap().len(), n, "{doc}");
        }
        for doc in [
            json!({"elem": "x"}),
            json!({"elem": [1]}),
            json!({"elem": 5}),
        ] {
            assert!(elems(&obj(doc.clone()), "elem").is_err(), "{doc}");
        }
    }

    #[test]
    fn errors_and_sessions() {
        let d = obj(
            json!({"error": {"$type": "Access", "$object": "x", "msg": {"$": "Insufficient privileges"}}}),
        );
        assert_eq!(
            body_error(&d),
            Some(BodyError {
                kind: "access".into(),
                message: "Insufficient privileges".into()
            })
        );
        assert_eq!(
            body_error(&obj(json!({"error": "weird"}))).unwrap().message,
            "weird"
        );
        assert_eq!(body_error(&obj(json!({"elem": []}))), None);
        assert_eq!(
            session_id(&obj(json!({"auth": {"$id": "abc", "$": "abc"}}))),
            Some("abc")
        );
        assert_eq!(session_id(&obj(json!({"auth": {"$": "def"}}))), Some("def"));
        assert_eq!(session_id(&obj(json!({"auth": "ghi"}))), Some("ghi"));
        assert_eq!(session_id(&obj(json!({"auth": {"$id": ""}}))), None);
        assert_eq!(session_id(&obj(json!({"auth": 5}))), None);
        assert_eq!(session_id(&obj(json!({}))), None);
    }
}
