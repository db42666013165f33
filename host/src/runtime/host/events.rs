//! `sipbox:route/events`: routes raise events into the host's registry (the
//! same one the core, the MI and the registrar raise into).

use crate::events::{self, Event, Params};
use crate::runtime::bindings::events as wit;
use crate::runtime::bindings::types::{Param, Value};
use crate::runtime::state::HostState;

/// OpenSIPS's MAX_EVENT_NAME.
const MAX_EVENT_NAME: usize = 64;

fn to_host(value: Value) -> events::Value {
    match value {
        Value::Int(n) => events::Value::Int(n),
        Value::Str(s) => events::Value::Str(s),
        Value::Null => events::Value::Null,
    }
}

fn to_guest(value: &events::Value) -> Value {
    match value {
        events::Value::Int(n) => Value::Int(*n),
        events::Value::Str(s) => Value::Str(s.clone()),
        events::Value::Null => Value::Null,
    }
}

/// The WIT form of a host event, for `on-event`.
pub(crate) fn event_to_guest(event: &Event) -> crate::runtime::bindings::types::Event {
    crate::runtime::bindings::types::Event {
        name: event.name.to_string(),
        params: event.params.0.iter().map(|(n, v)| Param { name: n.clone(), value: to_guest(v) }).collect(),
    }
}

impl wit::Host for HostState {
    fn raise_event(&mut self, name: String, params: Vec<Param>) -> wasmtime::Result<Result<u32, String>> {
        if name.is_empty() || name.len() > MAX_EVENT_NAME {
            return Ok(Err(format!("event name must be 1..={MAX_EVENT_NAME} bytes")));
        }
        let Some(bus) = &self.bus else {
            return Ok(Err("the event interface is not running".into()));
        };
        let params = Params(params.into_iter().map(|p| (p.name, to_host(p.value))).collect());
        let reached = bus.raise(Event::new(&name, params));
        Ok(Ok(reached as u32))
    }
}
