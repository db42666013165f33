//! Write sipbox SIP routes in Rust.
//!
//! A route module is a WebAssembly component (target `wasm32-wasip2`) that
//! exports the `sipbox:route` world (`wit/route.wit`, package
//! `sipbox:route@0.2.1`). This crate generates the bindings and puts an
//! idiomatic API on top, so a route crate depends on `sipbox-guest` alone:
//!
//! ```no_run
//! use sipbox_guest::{Request, Result, Route, proxy, tm};
//!
//! struct MyRoute;
//!
//! impl Route for MyRoute {
//!     fn on_request(req: &Request) -> Result {
//!         // REGISTER, in-dialog requests, stray ACK/CANCEL, OPTIONS pings.
//!         if proxy::handle_common(req)? {
//!             return Ok(());
//!         }
//!         if req.ruri_user().as_deref() == Some("echo") {
//!             return Err("no echo service here".into());
//!         }
//!         tm::record_route();
//!         proxy::relay_to_contacts(req)
//!     }
//! }
//!
//! sipbox_guest::route!(MyRoute);
//! ```
//!
//! Build it as a `cdylib` with `cargo build --release --target wasm32-wasip2`.
//!
//! # Errors and `?`
//!
//! Every call the host can refuse returns [`Result`], whose [`Error`] holds
//! the refusal of its interface ([`TmError`](tm::TmError),
//! [`MessageError`], [`LocationError`](location::LocationError),
//! [`EventError`](events::EventError), [`RestError`](rest::RestError)), a bad
//! setting ([`ConfigError`](config::ConfigError)) or a reason of the route's
//! own. Handlers return `Result` too, so `?` passes a failure on: the host
//! logs it (with the module, the handler and the Call-ID), counts it in the
//! `routes:errors` statistic, and answers a request the route neither
//! answered nor relayed with `500 Server Internal Error`. Where an error is
//! expected and harmless (the caller cancelled during a wait, so a reply
//! fails), match it and log why it is ignored; [`Error::is_finished`] tells
//! those apart.
//!
//! # Version
//!
//! This SDK builds components for `sipbox:route@0.2.1`, the version whose
//! calls return typed errors and whose exports return `result`. A sipbox
//! serving 0.2.0 refuses modules built for 0.1.0 with "rebuild the route
//! against the sipbox-guest SDK of this version": rebuild them with this crate.
//!
//! # Layout
//!
//! - [`Route`] and [`route!`]: the entry points a route module implements.
//! - [`Error`] and [`Result`]: what fallible calls and handlers return.
//! - [`Request`], [`Reply`], [`Method`]: the messages of the invocation.
//! - [`tm`]: answer or forward the request (reply, relay, forking hooks).
//! - [`proxy`]: the default route's building blocks ([`proxy::handle_common`]).
//! - [`location`]: the registrar's bindings.
//! - [`events`]: raise events, and wait for or be notified of them (EBR).
//! - [`rest`]: outbound HTTP; [`json`]: small JSON bodies for it.
//! - [`config`]: typed route settings from `[routes.vars]`.
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
//! ([`uri`], [`json`], [`Method`], [`Error`]) are usable outside WebAssembly.

#![warn(missing_docs)]

// The generated bindings and the export macro name this crate by its
// absolute path (`sipbox_guest::...`), which must resolve here too.
extern crate self as sipbox_guest;

pub mod auth;
pub mod bindings;
pub mod config;
mod error;
pub mod events;
pub mod json;
pub mod location;
pub mod log;
mod message;
pub mod proxy;
pub mod rest;
pub mod tm;
pub mod uri;

pub use error::{Error, MessageError, Result};
pub use message::{Method, Reply, Request};
/// Re-exported so generated code (and route crates that need it) reaches the
/// exact wit-bindgen version the bindings were made with.
pub use wit_bindgen;

/// One registered contact of an address-of-record (see [`location::lookup_aor`]).
pub use bindings::sipbox::route::types::Contact;
/// A named event with its parameters (see [`events`]).
pub use bindings::sipbox::route::types::Event;
/// One event parameter: an optional name and a [`Value`].
pub use bindings::sipbox::route::types::Param;
/// Where a message came from: transport ("udp"/"tcp"), IP address and port.
pub use bindings::sipbox::route::types::Peer;
/// The value of an event parameter: an integer, a string or null.
pub use bindings::sipbox::route::types::Value;

/// A route module: what the host runs for each new request, and for the
/// reply and failure hooks the route armed with [`tm::on_reply`] and
/// [`tm::on_failure`].
///
/// Implement it on a unit type and export it with [`route!`]. The functions
/// take no `self`: an invocation has no instance state of its own (see the
/// crate docs on `instance_reuse`).
///
/// Every handler returns [`Result`]. An `Err` is the route saying it could
/// not handle the invocation: the host logs it (warn, with the module, the
/// handler, the hook's route name and the Call-ID) and counts it in
/// `routes:errors`. From [`on_request`](Route::on_request), a request the
/// route neither answered nor relayed is then answered `500`; from the other
/// handlers the transaction goes on as if the handler had returned `Ok` (the
/// best response follows a failed `on_failure`).
pub trait Route {
    /// A new request (not a retransmission; not an ACK or CANCEL the
    /// transaction layer absorbs). Answer it with [`tm::reply`], forward it
    /// with [`tm::relay`], or [`location::save`] a REGISTER. A request the
    /// route neither answers nor relays (and returns `Ok`) is dropped.
    fn on_request(req: &Request) -> Result;

    /// A reply (other than 100) of a branch, when armed by
    /// [`tm::on_reply`]`(route)`. By default does nothing: the reply is
    /// forwarded as usual.
    fn on_reply(route: &str, req: &Request, reply: &Reply) -> Result {
        ignore((route, req, reply))
    }

    /// Every branch ended without a 2xx, when armed by
    /// [`tm::on_failure`]`(route)`; `reply` is the best response so far. The
    /// route may relay to new targets (serial forking) or reply something
    /// else. By default does nothing: the best response goes upstream.
    fn on_failure(route: &str, req: &Request, reply: &Reply) -> Result {
        ignore((route, req, reply))
    }

    /// An event delivered to this module's event route `route` (a
    /// subscription with the socket `route:NAME`, like OpenSIPS's
    /// `event_route[NAME]`). There is no request in this invocation. By
    /// default does nothing.
    fn on_event(route: &str, event: &Event) -> Result {
        ignore((route, event))
    }

    /// A subscription made with [`events::notify_on_event`] by transaction
    /// `tid` matched `event` (OpenSIPS EBR). There is no request in this
    /// invocation; typically the route calls [`tm::inject_branches`]`(tid, ..)`.
    /// By default does nothing.
    fn on_notify(route: &str, event: &Event, tid: tm::Tid) -> Result {
        ignore((route, event, tid))
    }
}

/// What the default handlers do with their arguments: nothing.
fn ignore<T>(_unused: T) -> Result {
    Ok(())
}

/// The export's result as the WIT carries it: the error's `Display`. Used by
/// [`route!`]; not part of the stable API.
#[doc(hidden)]
pub fn __export_result(result: Result) -> core::result::Result<(), String> {
    result.map_err(|e| e.to_string())
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
                fn on_request(req: &$crate::bindings::Request) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__export_result(<$route as $crate::Route>::on_request(&$crate::Request::__from_raw(req)))
                }

                fn on_reply(
                    route: ::std::string::String,
                    req: &$crate::bindings::Request,
                    reply: &$crate::bindings::Reply,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__export_result(<$route as $crate::Route>::on_reply(
                        &route,
                        &$crate::Request::__from_raw(req),
                        &$crate::Reply::__from_raw(reply),
                    ))
                }

                fn on_failure(
                    route: ::std::string::String,
                    req: &$crate::bindings::Request,
                    reply: &$crate::bindings::Reply,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__export_result(<$route as $crate::Route>::on_failure(
                        &route,
                        &$crate::Request::__from_raw(req),
                        &$crate::Reply::__from_raw(reply),
                    ))
                }

                fn on_event(
                    route: ::std::string::String,
                    event: $crate::Event,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__export_result(<$route as $crate::Route>::on_event(&route, &event))
                }

                fn on_notify(
                    route: ::std::string::String,
                    event: $crate::Event,
                    tid: u64,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__export_result(<$route as $crate::Route>::on_notify(&route, &event, tid))
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
    fn a_handlers_error_reaches_the_host_as_its_display() {
        assert_eq!(__export_result(Ok(())), Ok(()));
        let err = __export_result(Err(tm::TmError::BadTarget("invalid URI \"x\"".into()).into()));
        assert_eq!(err, Err("bad target: invalid URI \"x\"".to_owned()));
        assert_eq!(__export_result(Err("no route".into())), Err("no route".to_owned()));
    }
}
