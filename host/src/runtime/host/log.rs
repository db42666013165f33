//! `sipbox:route/log`: guest log lines go to the host's log, tagged with the
//! route module and the transaction they belong to.

use wasmtime::component::{HasData, Linker};

use crate::runtime::Services;
use crate::runtime::bindings::log;
use crate::runtime::bindings::types::Level;
use crate::runtime::budget::{Budget, LogLine};
use crate::runtime::replay::Journal;
use crate::runtime::state::HostState;
use crate::transaction::ServerTx;

/// Longest log line a guest may write; longer ones are cut, so a guest cannot
/// flood the log with one call.
pub(crate) const MAX_LOG_LINE: usize = 4096;

/// What `log` reaches for one call ([`HostState::log`]).
pub(crate) struct LogView<'a> {
    /// For the transaction id a line is tagged with.
    pub(crate) tx: Option<&'a ServerTx>,
    pub(crate) journal: Option<&'a Journal>,
    pub(crate) module: &'a str,
    /// `[limits] max_log_lines`.
    pub(crate) budget: &'a mut Budget,
    pub(crate) services: &'a Services,
}

struct HasLog;

impl HasData for HasLog {
    type Data<'a> = LogView<'a>;
}

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    log::add_to_linker::<HostState, HasLog>(linker, HostState::log)
}

impl log::Host for LogView<'_> {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        // A replayed guest wrote this line on its first run already
        // (`Import::Log` is skipped on replay).
        if self.journal.is_some_and(Journal::replaying) {
            return Ok(());
        }
        let module = self.module;
        let tid = self.tx.map(|tx| tx.id()).unwrap_or(0);
        match self.budget.log_line(&self.services.limit_stats) {
            LogLine::Write => {}
            LogLine::FirstDropped => {
                tracing::warn!(module, tid, "route log lines dropped from here on ([limits] max_log_lines)");
                return Ok(());
            }
            LogLine::Dropped => return Ok(()),
        }
        let mut text = message.as_str();
        if text.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text = &text[..end];
        }
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
