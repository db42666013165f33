//! The host side of each `sipbox:route` interface, one file per interface.
//! Each implements its bindgen `Host` trait on a view of the instance's
//! state that borrows only what the interface needs (built by the projections
//! in `state.rs`), and links itself with its own `add_to_linker`.

pub(crate) mod auth;
pub(crate) mod config;
pub(crate) mod events;
pub(crate) mod location;
pub(crate) mod log;
pub(crate) mod message;
pub(crate) mod rest;
pub(crate) mod tm;

use wasmtime::component::{HasData, Linker};

use super::bindings::types;
use super::state::HostState;

/// Links WASI (granting nothing: `state.rs`) and every `sipbox:route`
/// interface, each through its projection of [`HostState`].
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    types::add_to_linker::<HostState, Stateless>(linker, |_| Stateless)?;
    message::add_to_linker(linker)?;
    tm::add_to_linker(linker)?;
    location::add_to_linker(linker)?;
    log::add_to_linker(linker)?;
    events::add_to_linker(linker)?;
    rest::add_to_linker(linker)?;
    config::add_to_linker(linker)?;
    auth::add_to_linker(linker)?;
    Ok(())
}

/// The host side of `types`, which has no functions.
struct Stateless;

impl HasData for Stateless {
    type Data<'a> = Stateless;
}

impl types::Host for Stateless {}
