//! JSON-RPC 2.0 framing as OpenSIPS's MI speaks it (`mi/mi.c`): request
//! validation, error objects, responses, batches, and binding a request's
//! `params` to one of a command's parameter lists ("recipes").
//!
//! OpenSIPS rules kept here, because existing clients depend on them:
//! - `params` may be an array (positional) or an object (named); an empty
//!   array or object counts as no params (opensips-cli sends `{}`);
//! - a command declares recipes (e.g. `[event, socket]` and
//!   `[event, socket, expire]`); positional params pick the recipe with that
//!   many names, named params the recipe with exactly those names, so extra
//!   params are rejected;
//! - a request without `id` is a notification: it gets no reply unless it
//!   could not be parsed or is not a valid request;
//! - errors carry `code`, `message` and, for details, `data`
//!   (`-32602 "Invalid params"` + `"Negative expire value"`; `404 "Event not
//!   registered"` for a command's own failures).
//!
//! Beyond OpenSIPS: batches (a JSON array of requests) are answered with an
//! array, and mismatched params say which parameter is wrong.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value, json};

use super::MiContext;
use super::commands;

/// Most requests one batch may carry.
pub(crate) const MAX_BATCH: usize = 32;

/// JSON-RPC "Parse error".
pub(crate) const PARSE_ERROR: i64 = -32700;
/// JSON-RPC "Invalid Request".
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC "Method not found".
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC "Invalid params".
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// OpenSIPS "Server error" (a command failed internally).
pub(crate) const SERVER_ERROR: i64 = -32000;

/// An MI error: a JSON-RPC code (negative) or an OpenSIPS status-like code
/// (400, 404, 480, 500), its message, and optional details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MiError {
    pub(crate) code: i64,
    pub(crate) message: Cow<'static, str>,
    pub(crate) data: Option<String>,
}

impl MiError {
    /// A command error, e.g. `MiError::new(404, "Event not registered")`.
    pub(crate) fn new(code: i64, message: impl Into<Cow<'static, str>>) -> MiError {
        MiError { code, message: message.into(), data: None }
    }

    /// Adds details (the JSON-RPC `data` member).
    pub(crate) fn with_data(mut self, data: impl Into<String>) -> MiError {
        self.data = Some(data.into());
        self
    }

    pub(crate) fn parse_error(detail: impl Into<String>) -> MiError {
        MiError::new(PARSE_ERROR, "Parse error").with_data(detail)
    }

    pub(crate) fn invalid_request(detail: impl Into<String>) -> MiError {
        MiError::new(INVALID_REQUEST, "Invalid Request").with_data(detail)
    }

    pub(crate) fn method_not_found(method: &str) -> MiError {
        let shown: String = method.chars().take(64).collect();
        MiError::new(METHOD_NOT_FOUND, "Method not found").with_data(format!("unknown command '{shown}'"))
    }

    /// `-32602 "Invalid params"` with what is wrong (naming the parameter).
    pub(crate) fn invalid_params(detail: impl Into<String>) -> MiError {
        MiError::new(INVALID_PARAMS, "Invalid params").with_data(detail)
    }

    /// `-32000 "Server error"`: the command could not run.
    pub(crate) fn server_error(detail: impl Into<String>) -> MiError {
        MiError::new(SERVER_ERROR, "Server error").with_data(detail)
    }

    /// The JSON-RPC error object.
    pub(crate) fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), self.code.into());
        obj.insert("message".into(), Value::String(self.message.clone().into_owned()));
        if let Some(data) = &self.data {
            obj.insert("data".into(), Value::String(data.clone()));
        }
        Value::Object(obj)
    }
}

impl fmt::Display for MiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(data) = &self.data {
            write!(f, " ({data})")?;
        }
        Ok(())
    }
}

/// A command's result or error.
pub(crate) type MiResult = Result<Value, MiError>;

/// The `"OK"` result of commands that only succeed or fail (`init_mi_result_ok`).
pub(crate) fn ok() -> MiResult {
    Ok(Value::String("OK".into()))
}

/// Request params as received.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ParamsIn {
    /// Absent, `[]` or `{}`.
    None,
    Positional(Vec<Value>),
    Named(Map<String, Value>),
}

/// A validated request.
#[derive(Debug)]
struct Request {
    /// `None` = notification (no `id` member); `Some(Value::Null)` is a request with a null id.
    id: Option<Value>,
    method: String,
    params: ParamsIn,
}

/// Validates one request object as `parse_mi_request` does. On error, the
/// id to answer with (the request's, when it had a valid one).
fn parse_request(v: Value) -> Result<Request, (Value, MiError)> {
    let Value::Object(mut obj) = v else {
        return Err((Value::Null, MiError::invalid_request("a request must be a JSON object")));
    };
    let id = obj.remove("id");
    let reply_id = match &id {
        Some(v @ (Value::Null | Value::Number(_) | Value::String(_))) => v.clone(),
        Some(_) => {
            return Err((Value::Null, MiError::invalid_request("'id' must be a string, a number or null")));
        }
        None => Value::Null,
    };
    let bad = |detail: &str| Err((reply_id.clone(), MiError::invalid_request(detail.to_owned())));
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        _ => return bad("'jsonrpc' must be \"2.0\""),
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => return bad("'method' must be a string"),
    };
    let params = match obj.remove("params") {
        None => ParamsIn::None,
        Some(Value::Array(a)) if a.is_empty() => ParamsIn::None,
        Some(Value::Object(o)) if o.is_empty() => ParamsIn::None,
        Some(Value::Array(a)) => ParamsIn::Positional(a),
        Some(Value::Object(o)) => ParamsIn::Named(o),
        Some(_) => return bad("'params' must be an array or an object"),
    };
    Ok(Request { id, method, params })
}

pub(crate) fn response(id: Value, result: MiResult) -> Value {
    match result {
        Ok(result) => json!({"jsonrpc": "2.0", "result": result, "id": id}),
        Err(err) => json!({"jsonrpc": "2.0", "error": err.to_json(), "id": id}),
    }
}

/// Handles one payload (an HTTP body or a datagram): a request or a batch.
/// Returns the reply to send, or `None` when there is nothing to answer
/// (notifications only).
/// Deepest nesting of arrays and objects a request may have: no MI command
/// takes more than a few levels; serde_json's own limit (128) only guards
/// the stack.
pub(crate) const MAX_JSON_DEPTH: usize = 16;

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

pub(crate) async fn handle_payload(ctx: &MiContext, payload: &[u8]) -> Option<Value> {
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return Some(response(Value::Null, Err(MiError::parse_error(e.to_string())))),
    };
    if depth(&value) > MAX_JSON_DEPTH {
        let detail = format!("the request nests deeper than {MAX_JSON_DEPTH} levels");
        return Some(response(Value::Null, Err(MiError::invalid_request(detail))));
    }
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Some(response(Value::Null, Err(MiError::invalid_request("empty batch"))));
            }
            if items.len() > MAX_BATCH {
                let detail = format!("a batch holds at most {MAX_BATCH} requests, got {}", items.len());
                return Some(response(Value::Null, Err(MiError::invalid_request(detail))));
            }
            let mut replies = Vec::with_capacity(items.len());
            for item in items {
                if let Some(reply) = handle_one(ctx, item).await {
                    replies.push(reply);
                }
            }
            (!replies.is_empty()).then_some(Value::Array(replies))
        }
        single => handle_one(ctx, single).await,
    }
}

async fn handle_one(ctx: &MiContext, value: Value) -> Option<Value> {
    let req = match parse_request(value) {
        Ok(req) => req,
        Err((id, err)) => return Some(response(id, Err(err))),
    };
    let result = commands::dispatch(ctx, &req.method, req.params).await;
    if let Err(err) = &result {
        tracing::debug!(method = %req.method, error = %err, "MI command failed");
    }
    req.id.map(|id| response(id, result))
}

/// A command's params bound to one of its recipes, by name.
#[derive(Debug)]
pub(crate) struct Args {
    items: Vec<(&'static str, Value)>,
}

impl Args {
    /// Picks the recipe `params` fit (see the module docs).
    pub(crate) fn bind(recipes: &'static [&'static [&'static str]], params: ParamsIn) -> Result<Args, MiError> {
        match params {
            ParamsIn::None => match recipes.iter().find(|r| r.is_empty()) {
                Some(_) => Ok(Args { items: Vec::new() }),
                None => Err(MiError::invalid_params(format!(
                    "Too few or too many parameters: expected {}",
                    describe(recipes)
                ))),
            },
            ParamsIn::Positional(values) => {
                let Some(recipe) = recipes.iter().find(|r| r.len() == values.len()) else {
                    return Err(MiError::invalid_params(format!(
                        "Too few or too many parameters: got {}, expected {}",
                        values.len(),
                        describe(recipes)
                    )));
                };
                Ok(Args { items: recipe.iter().copied().zip(values).collect() })
            }
            ParamsIn::Named(mut map) => {
                let fits = |r: &&&[&str]| r.len() == map.len() && r.iter().all(|n| map.contains_key(*n));
                if let Some(recipe) = recipes.iter().find(fits) {
                    let items = recipe.iter().map(|n| (*n, map.remove(*n).unwrap_or(Value::Null))).collect();
                    return Ok(Args { items });
                }
                let known = |k: &str| recipes.iter().any(|r| r.contains(&k));
                let detail = if let Some(unknown) = map.keys().find(|k| !known(k)) {
                    format!("Named parameters do not match: unknown parameter '{unknown}'")
                } else if let Some(missing) = recipes
                    .iter()
                    .filter(|r| map.keys().all(|k| r.contains(&k.as_str())))
                    .flat_map(|r| r.iter())
                    .find(|n| !map.contains_key(**n))
                {
                    format!("Named parameters do not match: missing parameter '{missing}'")
                } else {
                    "Named parameters do not match".to_owned()
                };
                Err(MiError::invalid_params(format!("{detail}; expected {}", describe(recipes))))
            }
        }
    }

    /// True when the bound recipe has this parameter.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.items.iter().any(|(n, _)| *n == name)
    }

    /// The parameter's raw JSON value.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.items.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn require(&self, name: &str) -> Result<&Value, MiError> {
        // A recipe matched, so a missing name is a bug in the command table.
        self.get(name).ok_or_else(|| MiError::server_error(format!("Failed to handle parameter '{name}'")))
    }

    /// A string parameter; a number is taken as its decimal text (as
    /// OpenSIPS `get_mi_string_param` does).
    pub(crate) fn str(&self, name: &str) -> Result<Cow<'_, str>, MiError> {
        match self.require(name)? {
            Value::String(s) => Ok(Cow::Borrowed(s)),
            Value::Number(n) => Ok(Cow::Owned(n.to_string())),
            _ => Err(bad_type(name)),
        }
    }

    /// A non-empty string parameter.
    pub(crate) fn non_empty_str(&self, name: &str) -> Result<Cow<'_, str>, MiError> {
        let s = self.str(name)?;
        if s.is_empty() {
            return Err(MiError::invalid_params(format!("Empty value for parameter '{name}'")));
        }
        Ok(s)
    }

    /// An integer parameter: a JSON integer or a string holding one (as
    /// OpenSIPS `get_mi_int_param`; opensips-cli sends every value as a string).
    pub(crate) fn int(&self, name: &str) -> Result<i64, MiError> {
        match self.require(name)? {
            Value::Number(n) => n.as_i64().ok_or_else(|| bad_type(name)),
            Value::String(s) => s.trim().parse::<i64>().map_err(|_| bad_type(name)),
            _ => Err(bad_type(name)),
        }
    }
}

fn bad_type(name: &str) -> MiError {
    MiError::invalid_params(format!("Bad type for parameter '{name}'"))
}

/// `(a, b) or (a, b, c)`, for error details.
fn describe(recipes: &[&[&str]]) -> String {
    let forms: Vec<String> = recipes
        .iter()
        .map(|r| if r.is_empty() { "no parameters".to_owned() } else { format!("({})", r.join(", ")) })
        .collect();
    forms.join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBSCRIBE: &[&[&str]] = &[&["event", "socket"], &["event", "socket", "expire"]];
    const LIST: &[&[&str]] = &[&[], &["event"], &["event", "socket"]];

    fn named(v: Value) -> ParamsIn {
        match v {
            Value::Object(o) => ParamsIn::Named(o),
            _ => unreachable!("test helper takes objects"),
        }
    }

    #[test]
    fn positional_params_pick_the_recipe_by_count() {
        let args = Args::bind(SUBSCRIBE, ParamsIn::Positional(vec![json!("E"), json!("udp:1.2.3.4:5"), json!("60")]))
            .expect("three params fit");
        assert_eq!(args.str("event").expect("event").as_ref(), "E");
        assert_eq!(args.int("expire").expect("numeric string"), 60);
        let args = Args::bind(SUBSCRIBE, ParamsIn::Positional(vec![json!("E"), json!(5)])).expect("two fit");
        assert!(!args.has("expire"));
        assert_eq!(args.str("socket").expect("number as text").as_ref(), "5");
        let err = Args::bind(SUBSCRIBE, ParamsIn::Positional(vec![json!("E")])).expect_err("one is too few");
        assert_eq!(err.code, INVALID_PARAMS);
        assert!(err.data.as_deref().is_some_and(|d| d.contains("Too few or too many")), "{err}");
        let four = ParamsIn::Positional(vec![json!(1), json!(2), json!(3), json!(4)]);
        assert_eq!(Args::bind(SUBSCRIBE, four).expect_err("extra rejected").code, INVALID_PARAMS);
    }

    #[test]
    fn named_params_must_match_a_recipe_exactly() {
        let args = Args::bind(SUBSCRIBE, named(json!({"socket": "s", "event": "E"}))).expect("fits");
        assert_eq!(args.str("socket").expect("socket").as_ref(), "s");
        let err = Args::bind(SUBSCRIBE, named(json!({"event": "E", "socket": "s", "bogus": 1}))).expect_err("extra");
        assert!(err.data.as_deref().is_some_and(|d| d.contains("unknown parameter 'bogus'")), "{err}");
        let err = Args::bind(SUBSCRIBE, named(json!({"event": "E", "expire": 1}))).expect_err("missing socket");
        assert!(err.data.as_deref().is_some_and(|d| d.contains("missing parameter 'socket'")), "{err}");
        assert!(Args::bind(LIST, ParamsIn::None).is_ok());
        let err = Args::bind(SUBSCRIBE, ParamsIn::None).expect_err("needs params");
        assert!(err.data.as_deref().is_some_and(|d| d.contains("(event, socket) or (event, socket, expire)")));
    }

    #[test]
    fn typed_getters_name_the_parameter() {
        let args =
            Args::bind(SUBSCRIBE, ParamsIn::Positional(vec![json!(["x"]), json!("s"), json!("ten")])).expect("binds");
        let err = args.str("event").expect_err("array is not a string");
        assert_eq!(err.data.as_deref(), Some("Bad type for parameter 'event'"));
        let err = args.int("expire").expect_err("not a number");
        assert_eq!(err.data.as_deref(), Some("Bad type for parameter 'expire'"));
        let args = Args::bind(SUBSCRIBE, ParamsIn::Positional(vec![json!(""), json!("s"), json!(1.5)])).expect("b");
        assert!(args.non_empty_str("event").is_err());
        assert!(args.int("expire").is_err(), "a fraction is not an integer");
    }

    #[test]
    fn requests_are_validated_like_opensips() {
        let ok = parse_request(json!({"jsonrpc": "2.0", "method": "ps", "id": "7", "params": {}})).expect("valid");
        assert_eq!((ok.id, ok.params), (Some(json!("7")), ParamsIn::None));
        let note = parse_request(json!({"jsonrpc": "2.0", "method": "ps"})).expect("notification");
        assert!(note.id.is_none());
        for bad in [
            json!([1]),
            json!("ps"),
            json!({"jsonrpc": "1.0", "method": "ps", "id": 1}),
            json!({"jsonrpc": "2.0", "method": 5, "id": 1}),
            json!({"jsonrpc": "2.0", "method": "ps", "id": {}}),
            json!({"jsonrpc": "2.0", "method": "ps", "id": 1, "params": "x"}),
        ] {
            let (_, err) = parse_request(bad.clone()).expect_err("invalid");
            assert_eq!(err.code, INVALID_REQUEST, "{bad}");
        }
        let (id, _) = parse_request(json!({"jsonrpc": "2.0", "id": 9})).expect_err("no method");
        assert_eq!(id, json!(9), "the reply keeps a valid id");
    }

    #[test]
    fn errors_serialise_with_optional_data() {
        assert_eq!(
            MiError::new(404, "Event not registered").to_json(),
            json!({"code": 404, "message": "Event not registered"})
        );
        assert_eq!(
            MiError::invalid_params("Negative expire value").to_json(),
            json!({"code": -32602, "message": "Invalid params", "data": "Negative expire value"})
        );
    }
}
