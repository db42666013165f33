//! Write sipbox SIP routes in Rust.
//!
//! A route module is a WebAssembly component (target `wasm32-wasip2`) that
//! exports the `sipbox:route` world (`wit/route.wit`). This crate generates
//! the bindings and puts an idiomatic API on top, so a route crate depends on
//! `sipbox-guest` alone:
//!
//! ```no_run
//! use sipbox_guest::{Method, Request, Route, location, tm};
//!
//! struct Registrar;
//!
//! impl Route for Registrar {
//!     fn on_request(req: &Request) {
//!         if req.method() == Method::Register {
//!             let _ = location::save();
//!         } else if location::lookup() == 0 {
//!             let _ = tm::reply(404, "Not Found");
//!         } else if let Err(e) = tm::relay() {
//!             sipbox_guest::warn!("relay of {} failed: {e}", req.call_id());
//!         }
//!     }
//! }
//!
//! sipbox_guest::route!(Registrar);
//! ```
//!
//! Build it as a `cdylib` with `cargo build --release --target wasm32-wasip2`.
//!
//! # Layout
//!
//! - [`Route`] and [`route!`]: the entry points a route module implements.
//! - [`Request`], [`Reply`], [`Method`]: the messages of the invocation.
//! - [`tm`]: answer or forward the request (reply, relay, forking hooks).
//! - [`location`]: the registrar's bindings.
//! - [`log`]: logging into the host's log ([`info!`] and friends).
//! - [`uri`]: small helpers to pick SIP URIs apart.
//! - [`bindings`]: the raw generated bindings, for anything the wrappers lack.
//!
//! By default every invocation runs in a fresh instance: a route keeps no
//! state between calls (statics reset), anything lasting lives in the host.
//! With the operator's `[limits] instance_reuse` above 1 an instance may
//! serve several invocations and statics carry over, so do not rely on
//! either.
//!
//! The crate also compiles for native targets so that workspaces and tests
//! can build it, but calling into the host there panics: only pure helpers
//! ([`uri`], [`Method`]) are usable outside WebAssembly.

// The generated bindings and the export macro name this crate by its
// absolute path (`sipbox_guest::...`), which must resolve here too.
extern crate self as sipbox_guest;

pub mod bindings;
pub mod config;
pub mod events;
pub mod location;
pub mod log;
mod message;
pub mod proxy;
pub mod rest;
pub mod tm;
pub mod uri;

pub use message::{Method, Reply, Request};
/// Re-exported so generated code (and route crates that need it) reaches the
/// exact wit-bindgen version the bindings were made with.
pub use wit_bindgen;

/// One registered contact of an address-of-record (see [`location::lookup_aor`]).
pub use bindings::sipbox::route::types::Contact;
/// Where a message came from: transport ("udp"/"tcp"), IP address and port.
pub use bindings::sipbox::route::types::Peer;
pub use bindings::sipbox::route::types::{Event, Param, Value};

/// An operation the host refused, with the host's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// The host's explanation ("request already answered", ...).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error { message }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The result of a host operation that can be refused.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// A route module: what the host runs for each new request, and for the
/// reply and failure hooks the route armed with [`tm::on_reply`] and
/// [`tm::on_failure`].
///
/// Implement it on a unit type and export it with [`route!`]. The functions
/// take no `self`: an invocation has no instance state of its own (see the
/// crate docs on `instance_reuse`).
pub trait Route {
    /// A new request (not a retransmission; not an ACK or CANCEL the
    /// transaction layer absorbs). Answer it with [`tm::reply`], forward it
    /// with [`tm::relay`], or [`location::save`] a REGISTER. A request the
    /// route neither answers nor relays is dropped.
    fn on_request(req: &Request);

    /// A reply (other than 100) of a branch, when armed by
    /// [`tm::on_reply`]`(route)`. By default does nothing: the reply is
    /// forwarded as usual.
    fn on_reply(route: &str, req: &Request, reply: &Reply) {
        let _ = (route, req, reply);
    }

    /// Every branch ended without a 2xx, when armed by
    /// [`tm::on_failure`]`(route)`; `reply` is the best response so far. The
    /// route may relay to new targets (serial forking) or reply something
    /// else. By default does nothing: the best response goes upstream.
    fn on_failure(route: &str, req: &Request, reply: &Reply) {
        let _ = (route, req, reply);
    }

    /// An event delivered to this module's event route `route` (a
    /// subscription with the socket `route:NAME`, like OpenSIPS's
    /// `event_route[NAME]`). There is no request in this invocation. By
    /// default does nothing.
    fn on_event(route: &str, event: &Event) {
        let _ = (route, event);
    }

    /// A subscription made with [`events::notify_on_event`] by transaction
    /// `tid` matched `event` (OpenSIPS EBR). There is no request in this
    /// invocation; typically the route calls [`tm::inject_branches`]`(tid, ..)`.
    /// By default does nothing.
    fn on_notify(route: &str, event: &Event, tid: tm::Tid) {
        let _ = (route, event, tid);
    }
}

/// Exports a [`Route`] implementation as this component's `route` world.
///
/// Use it once per route crate (a `cdylib`), at module level:
/// `sipbox_guest::route!(MyRoute);`.
#[macro_export]
macro_rules! route {
    ($route:ty) => {
        const _: () = {
            struct __SipboxRouteExport;

            impl $crate::bindings::Guest for __SipboxRouteExport {
                fn on_request(req: &$crate::bindings::Request) {
                    <$route as $crate::Route>::on_request(&$crate::Request::__from_raw(req))
                }

                fn on_reply(
                    route: ::std::string::String,
                    req: &$crate::bindings::Request,
                    reply: &$crate::bindings::Reply,
                ) {
                    <$route as $crate::Route>::on_reply(
                        &route,
                        &$crate::Request::__from_raw(req),
                        &$crate::Reply::__from_raw(reply),
                    )
                }

                fn on_failure(
                    route: ::std::string::String,
                    req: &$crate::bindings::Request,
                    reply: &$crate::bindings::Reply,
                ) {
                    <$route as $crate::Route>::on_failure(
                        &route,
                        &$crate::Request::__from_raw(req),
                        &$crate::Reply::__from_raw(reply),
                    )
                }

                fn on_event(route: ::std::string::String, event: $crate::Event) {
                    <$route as $crate::Route>::on_event(&route, &event)
                }

                fn on_notify(route: ::std::string::String, event: $crate::Event, tid: u64) {
                    <$route as $crate::Route>::on_notify(&route, &event, tid)
                }
            }

    $crate::bindings::export!(__SipboxRouteExport with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shows_the_host_reason() {
        let e = Error::from("request already answered".to_owned());
        assert_eq!(e.to_string(), "request already answered");
        assert_eq!(e.message(), "request already answered");
    }
}
