//! Non-INVITE server transaction (RFC 3261 section 17.2.2, Figure 8) as a pure state machine.

use super::{Action, Cfg};
use crate::transaction::timers::{Timer, TimerOp};

/// States of Figure 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Request received, nothing sent yet.
    Trying,
    /// A provisional response was sent.
    Proceeding,
    /// A final response was sent (or the route dropped the request); absorbing retransmissions.
    Completed,
    /// Done; the driver removes the transaction.
    Terminated,
}

/// Inputs of Figure 8. Tu* events carry their response bytes in the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A retransmission of the request.
    Request,
    /// The TU sends a provisional response.
    Tu1xx,
    /// The TU sends a final response (200-699).
    TuFinal,
    /// The route neither answered nor relayed: absorb retransmissions silently, then end.
    TuDropped,
    /// Timer J fired.
    TimerJ,
    /// Sending failed.
    TransportErr,
}

/// Where a new transaction starts (17.2.2: "the state machine is initialized in Trying").
pub(crate) fn start() -> State {
    State::Trying
}

/// One transition of Figure 8.
pub(crate) fn step(state: State, ev: Event, cfg: &Cfg) -> (State, Vec<Action>) {
    use Event as E;
    use State as S;
    match (state, ev) {
        // 17.2.2: retransmissions received in Trying are discarded.
        (S::Trying, E::Request) => (S::Trying, vec![]),
        // 17.2.2: in Proceeding, a retransmission gets the last provisional again.
        (S::Proceeding, E::Request) => (S::Proceeding, vec![Action::Retransmit]),
        // 17.2.2: provisionals from the TU move Trying to Proceeding and are sent.
        (S::Trying | S::Proceeding, E::Tu1xx) => (S::Proceeding, vec![Action::SendResponse]),
        // 17.2.2: a final response is sent; Timer J = 64*T1 on UDP, 0 on reliable transports.
        (S::Trying | S::Proceeding, E::TuFinal) => completed(cfg, vec![Action::SendResponse]),
        (S::Trying | S::Proceeding, E::TuDropped) => completed(cfg, vec![]),
        // 17.2.2: in Completed, every retransmission gets the final response again.
        (S::Completed, E::Request) => (S::Completed, vec![Action::Retransmit]),
        // 17.2.2: further TU responses after the final are discarded.
        (S::Completed, E::Tu1xx | E::TuFinal | E::TuDropped) => (S::Completed, vec![]),
        // 17.2.2: Timer J ends the transaction.
        (S::Completed, E::TimerJ) => (S::Terminated, vec![]),
        // 17.2.4: a transport failure informs the TU and terminates.
        (S::Trying | S::Proceeding | S::Completed, E::TransportErr) => (S::Terminated, vec![Action::TransportError]),
        (S::Trying | S::Proceeding, E::TimerJ) => (state, vec![]),
        (S::Terminated, _) => (S::Terminated, vec![]),
    }
}

fn completed(cfg: &Cfg, mut actions: Vec<Action>) -> (State, Vec<Action>) {
    if cfg.reliable {
        (State::Terminated, actions)
    } else {
        actions.push(Action::Timer(TimerOp::Start(Timer::J, cfg.timers.t1x64())));
        (State::Completed, actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::fsm::test_fsm::{cfg, d};

    #[test]
    fn trying_absorbs_then_final_completes_udp() {
        let c = cfg(false);
        assert_eq!(step(start(), Event::Request, &c), (State::Trying, vec![]));
        assert_eq!(
            step(State::Trying, Event::TuFinal, &c),
            (State::Completed, vec![Action::SendResponse, d("start J 32s")])
        );
        assert_eq!(step(State::Completed, Event::Request, &c), (State::Completed, vec![Action::Retransmit]));
        assert_eq!(step(State::Completed, Event::TuFinal, &c), (State::Completed, vec![]));
        assert_eq!(step(State::Completed, Event::TimerJ, &c), (State::Terminated, vec![]));
    }

    #[test]
    fn provisional_then_final() {
        let c = cfg(false);
        assert_eq!(step(State::Trying, Event::Tu1xx, &c), (State::Proceeding, vec![Action::SendResponse]));
        assert_eq!(step(State::Proceeding, Event::Request, &c), (State::Proceeding, vec![Action::Retransmit]));
        assert_eq!(step(State::Proceeding, Event::Tu1xx, &c), (State::Proceeding, vec![Action::SendResponse]));
        assert_eq!(step(State::Proceeding, Event::TuFinal, &c).0, State::Completed);
    }

    #[test]
    fn reliable_final_terminates_at_once() {
        let c = cfg(true);
        assert_eq!(step(State::Trying, Event::TuFinal, &c), (State::Terminated, vec![Action::SendResponse]));
        assert_eq!(step(State::Proceeding, Event::TuDropped, &c), (State::Terminated, vec![]));
    }

    #[test]
    fn dropped_absorbs_silently() {
        let c = cfg(false);
        assert_eq!(step(State::Trying, Event::TuDropped, &c), (State::Completed, vec![d("start J 32s")]));
    }

    #[test]
    fn transport_error_terminates() {
        let c = cfg(false);
        for s in [State::Trying, State::Proceeding, State::Completed] {
            assert_eq!(step(s, Event::TransportErr, &c), (State::Terminated, vec![Action::TransportError]));
        }
        assert_eq!(step(State::Terminated, Event::Request, &c), (State::Terminated, vec![]));
    }

    #[test]
    fn every_combination_is_defined_and_terminated_absorbs() {
        use Event as E;
        let events = [E::Request, E::Tu1xx, E::TuFinal, E::TuDropped, E::TimerJ, E::TransportErr];
        for reliable in [false, true] {
            let c = cfg(reliable);
            for s in [State::Trying, State::Proceeding, State::Completed, State::Terminated] {
                for e in events {
                    let (n, a) = step(s, e, &c);
                    if s == State::Terminated {
                        assert_eq!((n, a.clone()), (State::Terminated, vec![]));
                    }
                    // Nothing ever goes back to Trying.
                    assert!(n != State::Trying || s == State::Trying);
                }
            }
        }
    }
}
