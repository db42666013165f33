//! The event interface: raise named events (OpenSIPS's `raise_event()`), which
//! external subscribers and event routes receive.
//!
//! ```ignore
//! use sipbox_guest::events::{self, param};
//! events::raise("E_CALL_SCREENED", &[param("caller", "alice"), param("score", 7)])?;
//! ```
//!
//! Refusals are [`EventError`]s (a bad name, filter or timeout, or the
//! operator's limit on waiters reached).

use crate::bindings::sipbox::route::events as raw;
pub use crate::error::EventError;
use crate::{Error, Param, Result, Value};

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::Int(n.into())
    }
}

/// A named parameter.
pub fn param(name: &str, value: impl Into<Value>) -> Param {
    Param { name: Some(name.to_owned()), value: value.into() }
}

/// Raises `name` with `params` (unknown names are registered on first use).
/// Never blocks; returns how many subscribers the event was queued for.
pub fn raise(name: &str, params: &[Param]) -> Result<u32> {
    raw::raise_event(name, params).map_err(Error::from)
}

/// OpenSIPS `notify_on_event`: until `timeout_s` passes, each `event` matching
/// every `key=glob` filter runs this module's [`Route::on_notify`](crate::Route::on_notify)
/// with `route` and this transaction's id. The subscription goes when the
/// transaction ends; when its last one expires, a
/// [`tm::wait_for_new_branches`](crate::tm::wait_for_new_branches) wait ends.
pub fn notify_on_event(event: &str, filters: &[&str], route: &str, timeout_s: u32) -> Result<()> {
    let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
    raw::notify_on_event(event, &filters, route, timeout_s).map_err(Error::from)
}

/// OpenSIPS `wait_for_event`: suspends this route until an `event` matching
/// every `key=glob` filter is raised (`Ok(Some(event))`) or `timeout_s`
/// passes (`Ok(None)`). The code after it runs when the event arrives.
pub fn wait_for_event(event: &str, filters: &[&str], timeout_s: u32) -> Result<Option<crate::Event>> {
    let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
    raw::wait_for_event(event, &filters, timeout_s).map_err(Error::from)
}

/// `value` as a glob that matches only itself, for building filters from
/// data (a Call-ID or user name may contain `*`, `?` or `[`).
pub fn glob_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl crate::Event {
    /// The value of the first parameter called `name` (case-sensitive, like
    /// OpenSIPS's `$param(name)`).
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.params.iter().find(|p| p.name.as_deref() == Some(name)).map(|p| &p.value)
    }

    /// The parameter `name` as text (integers formatted), if present.
    pub fn param_str(&self, name: &str) -> Option<String> {
        match self.param(name)? {
            Value::Str(s) => Some(s.clone()),
            Value::Int(n) => Some(n.to_string()),
            Value::Null => None,
        }
    }
}
