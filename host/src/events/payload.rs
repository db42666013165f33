//! The standard event payload shared by the datagram, stream, HTTP and AMQP
//! transports: OpenSIPS `evi_build_payload` (evi/evi_transport.c), i.e.
//! `cJSON_PrintUnformatted` of `{"jsonrpc":"2.0","method":M,"params":P}`.
//!
//! Written by hand rather than through `serde_json::Value` because the
//! parameter order is part of the format and `serde_json::Map` sorts keys.

use std::fmt::Write as _;

use super::{Event, Params, Value};

/// The notification text for `params` with `method` (the event name, or an
/// event_stream `/method`). `extra` = event_stream's `event_param`: a
/// `(key, event name)` put first inside `params` (first array element when
/// the params are positional). No `params` key when there are no params,
/// and then no extra either (as OpenSIPS).
pub(crate) fn build(params: &Params, method: &str, extra: Option<(&str, &str)>) -> String {
    let mut out = String::with_capacity(48 + method.len() + params.len() * 24);
    out.push_str(r#"{"jsonrpc":"2.0","method":"#);
    push_json_str(&mut out, method);
    if !params.is_empty() {
        let positional = params.is_positional();
        out.push_str(r#","params":"#);
        out.push(if positional { '[' } else { '{' });
        let mut first = true;
        if let Some((key, value)) = extra {
            if !positional {
                push_json_str(&mut out, key);
                out.push(':');
            }
            push_json_str(&mut out, value);
            first = false;
        }
        for (name, value) in &params.0 {
            if !first {
                out.push(',');
            }
            first = false;
            if !positional {
                push_json_str(&mut out, name.as_deref().unwrap_or(""));
                out.push(':');
            }
            push_value(&mut out, value);
        }
        out.push(if positional { ']' } else { '}' });
    }
    out.push('}');
    out
}

/// The same notification as a `serde_json::Value` (object keys sorted).
pub(crate) fn to_value(event: &Event) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    obj.insert("jsonrpc".into(), "2.0".into());
    obj.insert("method".into(), event.name.as_ref().into());
    let params = &event.params;
    if !params.is_empty() {
        let json = |v: &Value| match v {
            Value::Int(n) => serde_json::Value::from(*n),
            Value::Str(s) => serde_json::Value::from(s.as_str()),
            Value::Null => serde_json::Value::Null,
        };
        let p = if params.is_positional() {
            serde_json::Value::Array(params.0.iter().map(|(_, v)| json(v)).collect())
        } else {
            serde_json::Value::Object(params.0.iter().map(|(n, v)| (n.clone().unwrap_or_default(), json(v))).collect())
        };
        obj.insert("params".into(), p);
    }
    serde_json::Value::Object(obj)
}

fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Str(s) => push_json_str(out, s),
        Value::Null => out.push_str("null"),
    }
}

/// A JSON string literal, escaped as cJSON does (`"` `\` and control
/// characters; `/` and non-ASCII are left as they are).
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}
