//! Outbound HTTP (e.g. a push notification to a push provider). The route is
//! suspended while the request is in flight; other calls keep running.
//!
//! A response of any status is `Ok` (check [`Response::is_success`]); an
//! `Err` means no response came ([`RestError`]: bad URL, timeout, transport,
//! a body over 1 MiB).
//!
//! ```no_run
//! use sipbox_guest::{Result, rest};
//!
//! fn push(url: &str, user: &str, call_id: &str) -> Result<bool> {
//!     let response = rest::post_object(url, &[("aor", user), ("call_id", call_id)], 2000)?;
//!     Ok(response.is_success())
//! }
//! ```

use crate::Result;
use crate::bindings::sipbox::route::rest as raw;

pub use crate::error::RestError;
pub use raw::{Header, Response};

impl Response {
    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header called `name` (case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }
}

fn headers(list: &[(&str, &str)]) -> Vec<Header> {
    list.iter().map(|(n, v)| Header { name: (*n).to_owned(), value: (*v).to_owned() }).collect()
}

/// GET `url` with extra `headers`, giving up after `timeout_ms` (at most 60000).
pub fn get(url: &str, extra: &[(&str, &str)], timeout_ms: u32) -> Result<Response> {
    Ok(raw::get(url, &headers(extra), timeout_ms)?)
}

/// POST `body` to `url` with extra `headers`, giving up after `timeout_ms`.
pub fn post(url: &str, extra: &[(&str, &str)], body: &[u8], timeout_ms: u32) -> Result<Response> {
    Ok(raw::post(url, &headers(extra), body, timeout_ms)?)
}

/// POST a JSON text (`Content-Type: application/json`), e.g. one built with
/// [`json::Object`](crate::json::Object).
pub fn post_json(url: &str, json: &str, timeout_ms: u32) -> Result<Response> {
    post(url, &[("Content-Type", "application/json")], json.as_bytes(), timeout_ms)
}

/// POST a flat JSON object of string members, escaped
/// ([`json::object`](crate::json::object)): `{"aor":"alice","call_id":"..."}`.
pub fn post_object(url: &str, fields: &[(&str, &str)], timeout_ms: u32) -> Result<Response> {
    post_json(url, &crate::json::object(fields), timeout_ms)
}
