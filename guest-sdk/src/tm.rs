//! Transaction management: how a route answers or forwards the request.
//!
//! Every request is processed statefully by the host: it absorbs
//! retransmissions, runs the RFC 3261 timers, sends `100 Trying` for INVITEs
//! and picks the best response across branches.
//!
//! Calls that can be refused return [`TmError`] (in [`Error::Tm`]): see each
//! case for when it happens. [`Error::is_finished`] tells the refusals that
//! only mean someone else finished the request first (a CANCEL, the host's
//! 483), which a route usually logs and moves on from.

use crate::bindings::sipbox::route::tm as raw;
pub use crate::error::TmError;
use crate::{Error, Result};
pub use raw::{BranchSource, InjectFlags};

/// Identifies one server transaction for the lifetime of the host process.
pub type Tid = u64;

/// Sends a response to the request. A final response (>= 200) ends routing:
/// later [`relay`] calls fail. Fails with [`TmError::AlreadyAnswered`] after
/// a final response, [`TmError::Completed`] on an ended transaction,
/// [`TmError::BadReply`] for a code outside 100..=699 or a reason with CR/LF.
pub fn reply(code: u16, reason: &str) -> Result<()> {
    raw::reply(code, reason).map_err(Error::from)
}

/// As [`reply`], with extra headers in order (`("Retry-After", "30")`).
/// Fails as [`reply`], and with [`TmError::BadReply`] for a header name that
/// is no token, a value with CR/LF, or a header the host writes (Via, From,
/// To, Call-ID, CSeq, Content-Length).
pub fn reply_with_headers(code: u16, reason: &str, headers: &[(&str, &str)]) -> Result<()> {
    let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
    raw::reply_with_headers(code, reason, &headers).map_err(Error::from)
}

/// As [`reply`], except that a request already finished by someone else
/// ([`Error::is_finished`]: the caller cancelled while the route waited, the
/// host answered 483) is no error: the reply is skipped and logged (info).
/// For replies after a wait ([`events::wait_for_event`](crate::events::wait_for_event),
/// [`rest`](crate::rest)), where the caller may have hung up meanwhile.
pub fn reply_unless_finished(code: u16, reason: &str) -> Result<()> {
    match reply(code, reason) {
        Err(e) if e.is_finished() => {
            crate::info!("{code} {reason} not sent: {e}");
            Ok(())
        }
        other => other,
    }
}

/// Adds a Record-Route header with this proxy's address, so the dialog's
/// in-dialog requests come back through it.
pub fn record_route() {
    raw::record_route()
}

/// Loose routing (RFC 3261 section 16.4): when the top Route is this proxy
/// (its Record-Route coming back in a dialog, or a phone's outbound-proxy
/// Route), drops it and returns true: the next hop becomes the remaining top
/// Route, or the Request-URI (relay it as is). False without a Route, or
/// when the top Route names another host: relaying that would send the
/// request wherever its sender chose (answer it instead, unless the sender
/// is trusted). A second call returns the same and drops nothing more.
pub fn loose_route() -> bool {
    raw::loose_route()
}

/// Adds one more target that the next [`relay`] forks to in parallel. Fails
/// with [`TmError::BadTarget`] if `uri` is not a SIP or SIPS URI.
pub fn append_branch(uri: &str) -> Result<()> {
    raw::append_branch(uri).map_err(Error::from)
}

/// Forwards the request statefully to the Request-URI and to every branch
/// added since the last relay. From a failure hook it starts a new serial
/// fork stage. Fails with [`TmError::AlreadyAnswered`] (a CANCEL came),
/// [`TmError::Completed`] (a 2xx or 6xx ended the transaction),
/// [`TmError::TooManyHops`] (the host has answered 483 itself, so do not reply
/// again), [`TmError::BadTarget`] or [`TmError::Transport`].
pub fn relay() -> Result<()> {
    raw::relay().map_err(Error::from)
}

/// Runs the route's [`Route::on_reply`](crate::Route::on_reply) with `route`
/// for each reply (except 100) of the branches of the next [`relay`].
pub fn on_reply(route: &str) {
    raw::on_reply(route)
}

/// Runs the route's [`Route::on_failure`](crate::Route::on_failure) with
/// `route` when every branch of the next [`relay`] ended without a 2xx,
/// before the best response goes upstream.
pub fn on_failure(route: &str) {
    raw::on_failure(route)
}

/// The id of the current server transaction.
pub fn current_tid() -> Tid {
    raw::current_tid()
}

/// True when `uri` points at this proxy (one of its listening sockets), like
/// OpenSIPS's `is_myself()`.
pub fn is_myself(uri: &str) -> bool {
    raw::is_myself(uri)
}

/// OpenSIPS `t_newtran`: the server transaction's id (it always exists in
/// sipbox; retransmissions are absorbed while the route waits).
pub fn newtran() -> Tid {
    raw::newtran()
}

/// OpenSIPS `t_wait_for_new_branches`: keep this INVITE transaction open with
/// no branch, for branches injected later by [`inject_branches`]. Ends after
/// `expected` injections, on [`wait_no_more_branches`], when the last
/// [`events::notify_on_event`](crate::events::notify_on_event) subscription of
/// the transaction expires, at the INVITE timeout, or on CANCEL. With no
/// branch at all the caller then gets 408, which a failure route may turn
/// into 480.
pub fn wait_for_new_branches(expected: Option<u32>) -> Result<()> {
    raw::wait_for_new_branches(expected).map_err(Error::from)
}

/// OpenSIPS `t_wait_no_more_branches`: transaction `tid` ([`current_tid`], or
/// the one an `on_notify` subscription came from) stops waiting for injected
/// branches; once its live branches ended (at once if none), the best
/// response or failure route follows. Returns false when it was not waiting;
/// fails with [`TmError::TransactionGone`] when `tid` is gone.
pub fn wait_no_more_branches(tid: Tid) -> Result<bool> {
    raw::wait_no_more_branches(tid).map_err(Error::from)
}

/// OpenSIPS `t_inject_branches`: fork transaction `tid` to more targets,
/// skipping any already forked there. Returns the number of new branches.
/// Fails with [`TmError::TransactionGone`] when `tid` ended, with
/// [`TmError::AlreadyAnswered`] / [`TmError::Completed`] when it was answered
/// or cancelled meanwhile (all [`Error::is_finished`]), with
/// [`TmError::BadTarget`] for an unusable target.
pub fn inject_branches(tid: Tid, source: &BranchSource, flags: InjectFlags) -> Result<u32> {
    raw::inject_branches(tid, source, flags).map_err(Error::from)
}
