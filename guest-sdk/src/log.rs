//! Logging into the host's log, where each line is tagged with the route
//! module and the transaction.
//!
//! Plain functions take a message; the macros of the same names
//! ([`info!`](crate::info) and friends) format one first:
//!
//! ```no_run
//! use sipbox_guest::log;
//! log::info("relaying");
//! log::warn!("no contact for {}", "sip:bob@example.com");
//! ```

use crate::bindings::sipbox::route::log as raw;

/// Severity of a log line.
pub use crate::bindings::sipbox::route::types::Level;

pub use crate::{debug, error, info, trace, warn};

/// Writes `message` at `level`.
pub fn log(level: Level, message: &str) {
    raw::log(level, message)
}

/// Writes `message` at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message)
}

/// Writes `message` at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message)
}

/// Writes `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message)
}

/// Writes `message` at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message)
}

/// Writes `message` at error level.
pub fn error(message: &str) {
    log(Level::Error, message)
}

/// Formats and logs at trace level: `trace!("branch {}", n)`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::trace(&::std::format!($($arg)+)) };
}

/// Formats and logs at debug level: `debug!("branch {}", n)`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::debug(&::std::format!($($arg)+)) };
}

/// Formats and logs at info level: `info!("registered {}", aor)`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::info(&::std::format!($($arg)+)) };
}

/// Formats and logs at warn level: `warn!("relay failed: {}", e)`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::warn(&::std::format!($($arg)+)) };
}

/// Formats and logs at error level: `error!("save failed: {}", e)`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::error(&::std::format!($($arg)+)) };
}
