//! Outbound HTTP (e.g. a push notification to a push provider). The route is
//! suspended while the request is in flight; other calls keep running.

use crate::bindings::sipbox::route::rest as raw;
use crate::{Error, Result};

pub use raw::{Header, Response};

fn headers(list: &[(&str, &str)]) -> Vec<Header> {
    list.iter().map(|(n, v)| Header { name: (*n).to_owned(), value: (*v).to_owned() }).collect()
}

/// GET `url` with extra `headers`, giving up after `timeout_ms`.
pub fn get(url: &str, extra: &[(&str, &str)], timeout_ms: u32) -> Result<Response> {
    raw::get(url, &headers(extra), timeout_ms).map_err(Error::from)
}

/// POST `body` to `url` with extra `headers`, giving up after `timeout_ms`.
pub fn post(url: &str, extra: &[(&str, &str)], body: &[u8], timeout_ms: u32) -> Result<Response> {
    raw::post(url, &headers(extra), body, timeout_ms).map_err(Error::from)
}

/// POST a JSON text (`Content-Type: application/json`).
pub fn post_json(url: &str, json: &str, timeout_ms: u32) -> Result<Response> {
    post(url, &[("Content-Type", "application/json")], json.as_bytes(), timeout_ms)
}
