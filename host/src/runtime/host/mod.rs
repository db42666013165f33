//! The host side of each `sipbox:route` interface, one file per interface.
//! Each `impl` reaches only its slice of [`HostState`](super::state::HostState).

pub(crate) mod config;
pub(crate) mod events;
pub(crate) mod location;
pub(crate) mod log;
pub(crate) mod message;
pub(crate) mod rest;
pub(crate) mod tm;

use super::bindings::types;
use super::state::HostState;

impl types::Host for HostState {}
