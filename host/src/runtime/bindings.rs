//! The one `bindgen!` over `wit/`: Rust types and traits for the `sipbox:route`
//! world. Host implementations live in `runtime/host/`, one file per interface.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "route",
    // Guests run on fibers (async) so a host call may later park a guest
    // (wait-for-event) without blocking a tokio worker.
    exports: { default: async },
    // Host functions return wasmtime::Result so a misuse the guest cannot
    // recover from (e.g. touching a request outside a request invocation)
    // traps that guest instead of panicking the host.
    imports: {
        // These suspend the calling guest (its fiber) while the host awaits:
        // an event, or an HTTP response. Everything else is synchronous.
        "sipbox:route/events.wait-for-event": async | trappable,
        "sipbox:route/rest.get": async | trappable,
        "sipbox:route/rest.post": async | trappable,
        // Answers only once the bindings are durable (group commit).
        "sipbox:route/location.save": async | trappable,
        default: trappable,
    },
    with: {
        // One request (and at most one reply) exists per invocation; the
        // resources are views of the invocation's state (`host::message`), so the handle
        // carries no data of its own.
        "sipbox:route/message.request": super::host::message::RequestHandle,
        "sipbox:route/message.reply": super::host::message::ReplyHandle,
    },
});

pub use sipbox::route::{auth, config, events, location, log, message, rest, tm, types};
