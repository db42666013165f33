//! The four transaction state machines of RFC 3261 section 17 (with RFC 6026), each a pure
//! function `step(state, event, cfg) -> (state, actions)` named after its RFC figure. They
//! touch no socket, clock or task: the drivers (`client_tx`, `server_tx`) feed them events
//! and carry out the [`Action`]s they return, which keeps every transition unit-testable.
//!
//! - `client_invite`: Figure 5 (INVITE client, with RFC 6026's Accepted state);
//! - `client_non_invite`: Figure 6;
//! - `server_invite`: Figure 7 (INVITE server, with Accepted);
//! - `server_non_invite`: Figure 8.

pub(crate) mod client_invite;
pub(crate) mod client_non_invite;
pub(crate) mod server_invite;
pub(crate) mod server_non_invite;

use super::timers::{TimerOp, Timers};

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
    Timer(TimerOp),
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

    use super::{Action, Cfg};
    use crate::transaction::timers::{Timer, TimerOp, Timers};

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
