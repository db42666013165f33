//! RFC 3261 transactions (section 17, with RFC 6026) and the stateful proxy core (section 16).
//!
//! The four transaction state machines are pure functions `step(state, event) -> (state,
//! actions)` named after RFC Figures 5-8; a small async driver per transaction (a tokio task
//! with a bounded inbox, timers on `tokio::time` so tests can pause time) executes the
//! actions. The proxy core ([`Core`]) matches inbound messages to transactions, hands new
//! requests to the [`Router`] (the route runtime) as a [`ServerTx`], and forwards requests
//! statefully on [`ServerTx::relay`]: one client transaction per branch, Timer C, best
//! response selection, CANCEL.
//!
//! # Layout
//! - [`timers`]: [`Timers`] (the `[timers]` config) and the per-transaction timer set;
//! - `fsm`: the four pure state machines (`client_invite`, `client_non_invite`, `server_invite`,
//!   `server_non_invite`: Figures 5-8), their [`Action`](fsm::Action)s and step configuration;
//! - `key`: matching keys (17.1.3, 17.2.3) and the sharded transaction table;
//! - `proxy`: [`Core`], inbound dispatch (retransmissions, ACK, CANCEL, loops, malformed);
//! - `server_tx`: [`ServerTx`], replies and the server transaction driver;
//! - `inbox`: the server transaction driver's queue, which owns no memory while empty;
//! - `relay`: building forwarded requests (Via, Record-Route, Max-Forwards, next hop);
//! - `fork`: the response context of a relayed request (forking, Timer C, CANCEL, 16.7);
//! - `inject`: OpenSIPS's `t_wait_for_new_branches` / `t_inject_branches` (branches added
//!   later by an unrelated route, e.g. on an event) and [`Core::find_tx`];
//! - `client_tx`: the client transaction driver; `best`: best-response choice (16.7 step 6);
//! - `build`: CANCEL and ACK requests the proxy originates (9.1, 17.1.1.3).

mod best;
mod build;
mod client_tx;
mod fork;
mod fsm;
mod inbox;
mod inject;
mod key;
mod proxy;
mod relay;
mod server_tx;
pub mod timers;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fork;
#[cfg(test)]
mod tests_inject;
#[cfg(test)]
mod tests_limits;

use std::sync::Arc;

pub use best::choose_best;
pub use proxy::{Core, DEFAULT_MAX_BRANCHES, DEFAULT_MAX_TRANSACTIONS, TmStats, Transactions};
pub use server_tx::ServerTx;
pub use timers::Timers;

use crate::sip;
use crate::transport::NextHop;

pub use crate::BoxFut;

/// The routing logic the proxy core calls (implemented by the route runtime).
pub trait Router: Send + Sync + 'static {
    /// A new request: not a retransmission, not a CANCEL of a known INVITE, not an ACK of a
    /// non-2xx. ACKs for 2xx come here with a transaction-less [`ServerTx`].
    fn on_request(&self, tx: ServerTx) -> BoxFut;
    /// An armed reply hook, for each non-100 reply; awaited before the reply is forwarded.
    fn on_reply(&self, tx: ServerTx, hook: Arc<str>, reply: sip::Message) -> BoxFut;
    /// An armed failure hook: every branch failed; awaited before the best response goes
    /// upstream. The route may relay again (serial forking) or reply.
    fn on_failure(&self, tx: ServerTx, hook: Arc<str>, best: sip::Message) -> BoxFut;
}

/// What [`ServerTx::relay`] forwards.
#[derive(Clone, Debug, Default)]
pub struct Forward {
    /// Edits applied to every branch's copy of the request (the route's header changes).
    pub edits: sip::Edits,
    /// One branch each; the first is the (possibly rewritten) Request-URI.
    pub targets: Vec<Target>,
    /// Insert this proxy's Record-Route.
    pub record_route: bool,
    /// Reply hook for this relay's branches.
    pub on_reply: Option<Arc<str>>,
    /// Failure hook for this relay's branches.
    pub on_failure: Option<Arc<str>>,
}

/// One branch of a [`Forward`] (or of an injection, [`ServerTx::inject`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The branch's Request-URI (angle brackets allowed).
    pub uri: String,
    /// Where to send it instead of to its top Route or Request-URI, which stay unchanged
    /// (the registrar's `received` for a NAT'd contact). `None`: the top Route, else the
    /// Request-URI (16.6 step 7).
    pub next_hop: Option<NextHop>,
}

impl Target {
    /// A target sent where its URI (or the top Route) says.
    pub fn uri(uri: impl Into<String>) -> Target {
        Target { uri: uri.into(), next_hop: None }
    }
}

/// Why replying or relaying failed.
#[derive(Debug, thiserror::Error)]
pub enum TmError {
    /// A final response was already sent.
    #[error("the request was already answered")]
    AlreadyAnswered,
    /// The transaction cannot take new branches (a 2xx or 6xx ended it, it was CANCELled,
    /// or it has no transaction, as an ACK).
    #[error("the transaction is completed")]
    Completed,
    /// Max-Forwards reached 0 (the core answered 483).
    #[error("Max-Forwards exhausted (483 sent)")]
    TooManyHops,
    /// A target is not a usable SIP URI.
    #[error("bad target: {0}")]
    BadTarget(String),
    /// The message could not be handed to the transport or transaction.
    #[error("transport: {0}")]
    Transport(String),
}
