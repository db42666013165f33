//! Event Interface commands (OpenSIPS `evi/event_interface.c` MI and
//! `event_flatstore`): `event_subscribe`, `events_list`, `subscribers_list`,
//! `raise_event`, `evi_flat_rotate`, with OpenSIPS's names, params and errors.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Value as Json, json};

use super::{Command, Handler};
use crate::events::{Event, EventError, Params, Value};
use crate::mi::MiContext;
use crate::mi::jsonrpc::{self, Args, MiError, MiResult};

/// Subscription lifetime when `event_subscribe` gets no `expire` (OpenSIPS `DEFAULT_EXPIRE`).
pub(crate) const DEFAULT_EXPIRE: u32 = 3600;

pub(super) const COMMANDS: &[Command] = &[
    Command {
        module: "evi",
        names: &["subscribe", "event_subscribe"],
        recipes: &[&["event", "socket"], &["event", "socket", "expire"]],
        help: "subscribes a socket to an event; expire 0 unsubscribes",
        handler: Handler::Sync(event_subscribe),
    },
    Command {
        module: "evi",
        names: &["list", "events_list"],
        recipes: &[&[]],
        help: "lists the published events",
        handler: Handler::Sync(events_list),
    },
    Command {
        module: "evi",
        names: &["subscribers", "subscribers_list"],
        recipes: &[&[], &["event"], &["event", "socket"]],
        help: "lists the subscribers of all events, one event, or one socket",
        handler: Handler::Sync(subscribers_list),
    },
    Command {
        module: "evi",
        names: &["raise", "raise_event"],
        recipes: &[&["event"], &["event", "params"]],
        help: "raises an event with positional (array) or named (JSON object string) params",
        handler: Handler::Sync(raise_event),
    },
    Command {
        module: "event_flatstore",
        names: &["rotate", "evi_flat_rotate"],
        recipes: &[&["path_to_file"]],
        help: "reopens a flatstore file (after logrotate moved it)",
        handler: Handler::Sync(evi_flat_rotate),
    },
];

/// OpenSIPS's answer for each registry refusal; the reason goes in `data`.
fn mi_error(err: EventError) -> MiError {
    let detail = err.to_string();
    match err {
        EventError::NegativeExpire => MiError::invalid_params("Negative expire value"),
        EventError::NotPublished(_) => MiError::new(404, "Event not published").with_data(detail),
        EventError::NoSuchSubscriber(_) => MiError::new(404, "Subscriber does not exist").with_data(detail),
        EventError::FileNotFound(_) => MiError::new(400, "File not found").with_data(detail),
        EventError::NoRuntime => MiError::new(500, "Internal error").with_data(detail),
        EventError::SubscriptionLimit(_) => MiError::new(400, "Subscription limit reached").with_data(detail),
        _ => MiError::new(400, "Bad parameter value").with_data(detail),
    }
}

/// `event_subscribe`: `"OK"`.
///
/// # Format
/// `event_subscribe event socket [expire]`; `expire` in seconds, default
/// 3600; `0` unsubscribes; subscribing the same socket again refreshes it.
/// `socket` is `udp:host:port`, `unix:/path`, `flatstore:/path`,
/// `tcp:host:port`, `http://...`, `rabbitmq:...`, `xmlrpc:host:port:method`,
/// `route:NAME` or `virtual:POLICY dest...`. Errors: -32602 "Negative expire
/// value", 400 "Bad parameter value" (unknown transport, malformed socket,
/// refusing destination, a destination the `[events]` policy does not allow;
/// `data` says which and names the setting), 400 "Subscription limit
/// reached" (`events.max_subscriptions[_per_destination]`).
fn event_subscribe(ctx: &MiContext, args: &Args) -> MiResult {
    let event = args.non_empty_str("event")?;
    let socket = args.non_empty_str("socket")?;
    let expire = if args.has("expire") {
        let expire = args.int("expire")?;
        if expire < 0 {
            return Err(MiError::invalid_params("Negative expire value"));
        }
        u32::try_from(expire).map_err(|_| MiError::invalid_params(format!("expire {expire} is too large")))?
    } else {
        DEFAULT_EXPIRE
    };
    ctx.bus.subscribe(&event, &socket, Some(expire)).map_err(mi_error)?;
    jsonrpc::ok()
}

/// `events_list`: `{"Events":[{"name","id"}]}`, every published event.
///
/// # Format
/// `events_list` (no params).
fn events_list(ctx: &MiContext, _args: &Args) -> MiResult {
    let events: Vec<Json> = ctx.bus.events().into_iter().map(|(name, id)| json!({"name": name, "id": id})).collect();
    Ok(json!({ "Events": events }))
}

/// `subscribers_list`: `{"Events":[..]}` (events with subscribers), or
/// `{"Event":{"name","id","Subscribers":[..]}}` for one event, or
/// `{"Event":{"name","id","Subscriber":{..}}}` for one socket. A subscriber
/// is `{"socket","expire":N,"ttl":seconds left}` or `{"socket","expire":"never"}`.
///
/// # Format
/// `subscribers_list [event [socket]]`. Errors: 404 "Event not published",
/// 404 "Subscriber does not exist".
fn subscribers_list(ctx: &MiContext, args: &Args) -> MiResult {
    if !args.has("event") {
        return ctx.bus.subscribers(None).map_err(mi_error);
    }
    let event = args.str("event")?;
    if !args.has("socket") {
        return ctx.bus.subscribers(Some(&event)).map_err(mi_error);
    }
    let socket = args.str("socket")?;
    ctx.bus.subscriber(&event, &socket).map_err(|err| match err {
        // As OpenSIPS: a socket that does not parse matches no subscriber.
        EventError::NotPublished(_) | EventError::NoRuntime => mi_error(err),
        other => MiError::new(404, "Subscriber does not exist").with_data(other.to_string()),
    })
}

/// `raise_event`: `"OK"` once the event is queued for every subscriber
/// (delivery happens afterwards, as OpenSIPS's IPC dispatch).
///
/// # Format
/// `raise_event event [params]`. `params` is an array (positional string
/// params; numbers become their text) or a string holding a JSON object
/// (named params, in order: numbers → int, strings → string, anything else
/// → its JSON text). A JSON object is accepted in place of the string.
/// Errors: 404 "Event not registered", 480 "Temporarily Unavailable" (no
/// subscribers), 400 "Bad Params", 400 "No Params".
fn raise_event(ctx: &MiContext, args: &Args) -> MiResult {
    let name = args.non_empty_str("event")?;
    if ctx.bus.event_id(&name).is_none() {
        return Err(MiError::new(404, "Event not registered"));
    }
    if !ctx.bus.has_subscribers(&name) {
        return Err(MiError::new(480, "Temporarily Unavailable"));
    }
    let params = match args.get("params") {
        None => Params::new(),
        Some(raw) => event_params(raw)?,
    };
    let reached = ctx.bus.raise(Event::new(&name, params));
    tracing::debug!(event = %name, reached, "event raised over MI");
    jsonrpc::ok()
}

/// Converts `raise_event`'s `params` as OpenSIPS's `w_mi_raise_event` does.
fn event_params(raw: &Json) -> Result<Params, MiError> {
    let bad = || MiError::new(400, "Bad Params");
    let mut params = Params::new();
    match raw {
        Json::Array(items) => {
            for item in items {
                match item {
                    Json::String(s) => params.push_positional(s.as_str()),
                    Json::Number(n) => params.push_positional(n.to_string()),
                    _ => return Err(bad().with_data("array items must be strings or numbers")),
                }
            }
        }
        Json::String(text) => {
            let object = serde_json::from_str::<OrderedObject>(text)
                .map_err(|e| bad().with_data(format!("params is not a JSON object: {e}")))?;
            for (name, value) in object.0 {
                params.push(&name, named_value(value));
            }
        }
        Json::Object(map) => {
            for (name, value) in map {
                params.push(name, named_value(value.clone()));
            }
        }
        Json::Number(_) => return Err(bad().with_data("params is not a JSON object")),
        Json::Null | Json::Bool(_) => return Err(MiError::new(400, "No Params")),
    }
    Ok(params)
}

/// A named param's value: int for numbers (fractions truncate, as cJSON's
/// `valueint`), the string itself, or the JSON text of anything else.
fn named_value(value: Json) -> Value {
    match value {
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            // Saturating float → int, as cJSON's valueint.
            None => Value::Int(n.as_f64().map_or(0, |f| f as i64)),
        },
        Json::String(s) => Value::Str(s),
        other => Value::Str(other.to_string()),
    }
}

/// A JSON object with its members in document order (`serde_json::Map`
/// sorts them, but event params are ordered).
struct OrderedObject(Vec<(String, Json)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Json>()? {
                    members.push(member);
                }
                Ok(OrderedObject(members))
            }
        }
        de.deserialize_map(Members)
    }
}

/// `evi_flat_rotate`: `"OK"`; the flatstore file is reopened (after an
/// external rename, a fresh file is created) and `E_FLATSTORE_ROTATION` raised.
///
/// # Format
/// `evi_flat_rotate path_to_file`. Errors: 400 "File not found" (no
/// flatstore subscriber writes that path).
fn evi_flat_rotate(ctx: &MiContext, args: &Args) -> MiResult {
    let path = args.non_empty_str("path_to_file")?;
    let flatstore = ctx.flatstore.as_ref().ok_or_else(|| EventError::FileNotFound(path.to_string()));
    flatstore.and_then(|f| f.rotate(Some(&path))).map_err(mi_error)?;
    jsonrpc::ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_follow_opensips_conversions() {
        let p = event_params(&json!(["a", 5])).expect("array");
        assert_eq!(p, Params(vec![(None, Value::from("a")), (None, Value::from("5"))]));
        let p = event_params(&json!(r#"{"z": 1, "a": "x", "m": 2.9, "o": {"k": true}, "n": null}"#)).expect("object");
        let expect =
            Params::new().with("z", 1i64).with("a", "x").with("m", 2i64).with("o", r#"{"k":true}"#).with("n", "null");
        assert_eq!(p, expect, "document order kept");
        assert_eq!(event_params(&json!("[1]")).expect_err("not an object").message, "Bad Params");
        assert_eq!(event_params(&json!("{bad")).expect_err("not JSON").message, "Bad Params");
        assert_eq!(event_params(&json!([{"x": 1}])).expect_err("nested item").message, "Bad Params");
        assert_eq!(event_params(&json!(true)).expect_err("bool").message, "No Params");
        assert!(event_params(&json!([])).expect("empty array").is_empty());
    }
}
