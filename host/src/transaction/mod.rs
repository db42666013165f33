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
//! - `server`, `server_invite`, `client`, `client_invite`: the state machines (Figures 8, 7, 6, 5);
//! - `key`: matching keys (17.1.3, 17.2.3) and the sharded transaction table;
//! - `proxy`: [`Core`], inbound dispatch (retransmissions, ACK, CANCEL, loops, malformed);
//! - `servertx`: [`ServerTx`], replies and the server transaction driver;
//! - `inbox`: the server transaction driver's queue, which owns no memory while empty;
//! - `relay`: building forwarded requests (Via, Record-Route, Max-Forwards, next hop);
//! - `fork`: the response context of a relayed request (forking, Timer C, CANCEL, 16.7);
//! - `inject`: OpenSIPS's `t_wait_for_new_branches` / `t_inject_branches` (branches added
//!   later by an unrelated route, e.g. on an event) and [`Core::find_tx`];
//! - `clienttx`: the client transaction driver; `best`: best-response choice (16.7 step 6);
//! - `build`: CANCEL and ACK requests the proxy originates (9.1, 17.1.1.3).

mod best;
mod build;
mod client;
mod client_invite;
mod clienttx;
mod fork;
mod inbox;
mod inject;
mod key;
mod proxy;
mod relay;
mod server;
mod server_invite;
mod servertx;
pub mod timers;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fork;
#[cfg(test)]
mod tests_inject;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use best::choose_best;
pub use proxy::{Core, TmStats};
pub use servertx::ServerTx;
pub use timers::Timers;

use crate::sip;

/// A boxed future the router returns.
pub type BoxFut = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

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
    /// Request-URIs, one branch each; the first is the (possibly rewritten) Request-URI.
    pub targets: Vec<String>,
    /// Insert this proxy's Record-Route.
    pub record_route: bool,
    /// Reply hook for this relay's branches.
    pub on_reply: Option<Arc<str>>,
    /// Failure hook for this relay's branches.
    pub on_failure: Option<Arc<str>>,
    /// Per-target next hop, index-aligned with `targets`: `Some("udp:1.2.3.4:5080")`,
    /// `Some("tcp:[::1]:5060")` (also `"sip:HOST:PORT[;transport=tcp]"` and a bare
    /// `"HOST:PORT"`, UDP) sends that branch there instead of to its top Route or
    /// Request-URI, which stay unchanged (the registrar's `received` for a NAT'd contact).
    /// `None` or a missing entry: as without it.
    pub next_hops: Vec<Option<String>>,
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

/// What a state machine asks its driver to do. Messages stay in the driver: an event
/// classifies the message at hand and the actions refer to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Client: send the request (the first time).
    SendRequest,
    /// Server: send the response carried by the current event and remember it.
    SendResponse,
    /// Client: resend the request. Server: resend the last response (if any).
    Retransmit,
    /// Arm or disarm a timer.
    Timer(timers::TimerOp),
    /// Client: give the current response to the TU.
    PassUp,
    /// INVITE client: ACK the current 300-699 response (17.1.1.3).
    SendAck,
    /// INVITE server (Accepted): give the current ACK to the TU.
    PassAck,
    /// Tell the TU the transaction timed out.
    Timeout,
    /// Tell the TU sending failed.
    TransportError,
}

/// What every state machine step needs to know besides its state.
#[derive(Clone, Debug)]
pub(crate) struct Cfg {
    /// Reliable transport (TCP): no retransmissions, zero wait timers.
    pub(crate) reliable: bool,
    pub(crate) timers: Timers,
}

#[cfg(test)]
pub(crate) mod test_fsm {
    //! Helpers for the state machine tests.
    use std::time::Duration;

    use super::timers::{Timer, TimerOp};
    use super::{Action, Cfg, Timers};

    pub(crate) fn cfg(reliable: bool) -> Cfg {
        Cfg { reliable, timers: Timers::default() }
    }

    /// Parses "start G 500ms", "start J 32s" or "stop A".
    pub(crate) fn d(s: &str) -> Action {
        let parts: Vec<&str> = s.split_whitespace().collect();
        let timer = match parts[1] {
            "A" => Timer::A,
            "B" => Timer::B,
            "D" => Timer::D,
            "E" => Timer::E,
            "F" => Timer::F,
            "G" => Timer::G,
            "H" => Timer::H,
            "I" => Timer::I,
            "J" => Timer::J,
            "K" => Timer::K,
            "L" => Timer::L,
            "M" => Timer::M,
            other => panic!("unknown timer {other}"),
        };
        match parts[0] {
            "stop" => Action::Timer(TimerOp::Stop(timer)),
            "start" => {
                let v = parts[2];
                let dur = if let Some(ms) = v.strip_suffix("ms") {
                    Duration::from_millis(ms.parse().expect("ms"))
                } else {
                    Duration::from_secs(v.strip_suffix('s').expect("unit").parse().expect("s"))
                };
                Action::Timer(TimerOp::Start(timer, dur))
            }
            other => panic!("unknown op {other}"),
        }
    }
}
