//! `sipbox:route/config`: the route's settings, from `[routes.vars]`.

use crate::runtime::bindings::config;
use crate::runtime::state::HostState;

impl config::Host for HostState {
    fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.services.vars.get(&name).cloned())
    }
}
