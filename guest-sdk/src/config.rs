//! Route settings from the `[routes.vars]` table of sipbox.toml.

use crate::bindings::sipbox::route::config as raw;

/// The value of setting `name`, if configured.
pub fn get(name: &str) -> Option<String> {
    raw::get(name)
}
