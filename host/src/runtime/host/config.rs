//! `sipbox:route/config`: the route's settings, from `[routes.vars]`.

use wasmtime::component::{HasData, Linker};

use crate::runtime::Services;
use crate::runtime::bindings::config;
use crate::runtime::state::HostState;

/// What `config` reaches for one call ([`HostState::config`]).
pub(crate) struct ConfigView<'a> {
    /// For `[routes.vars]`.
    pub(crate) services: &'a Services,
}

struct HasConfig;

impl HasData for HasConfig {
    type Data<'a> = ConfigView<'a>;
}

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    config::add_to_linker::<HostState, HasConfig>(linker, HostState::config)
}

impl config::Host for ConfigView<'_> {
    fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.services.vars.load().get(&name).cloned())
    }
}
