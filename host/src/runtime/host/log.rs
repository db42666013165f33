//! `sipbox:route/log`: guest log lines go to the host's log, tagged with the
//! route module and the transaction they belong to.

use crate::runtime::bindings::log;
use crate::runtime::bindings::types::Level;
use crate::runtime::state::HostState;

/// Longest log line a guest may write; longer ones are cut, so a guest cannot
/// flood the log with one call.
const MAX_LOG_LINE: usize = 4096;

impl log::Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        // A replayed guest wrote this line on its first run already.
        if self.replaying() {
            return Ok(());
        }
        let mut text = message.as_str();
        if text.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text = &text[..end];
        }
        let module = &*self.module;
        let tid = self.tx.as_ref().map(|tx| tx.id()).unwrap_or(0);
        match level {
            Level::Trace => tracing::trace!(target: "route", module, tid, "{text}"),
            Level::Debug => tracing::debug!(target: "route", module, tid, "{text}"),
            Level::Info => tracing::info!(target: "route", module, tid, "{text}"),
            Level::Warn => tracing::warn!(target: "route", module, tid, "{text}"),
            Level::Error => tracing::error!(target: "route", module, tid, "{text}"),
        }
        Ok(())
    }
}
