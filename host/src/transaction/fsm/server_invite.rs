//! INVITE server transaction (RFC 3261 section 17.2.1, Figure 7, with the RFC 6026
//! "Accepted" state) as a pure state machine.

use std::time::Duration;

use super::{Action, Cfg};
use crate::transaction::timers::{Timer, TimerOp};

/// States of Figure 7 as updated by RFC 6026 section 7.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Request received; provisionals may be sent (the core sends 100 Trying at once).
    Proceeding,
    /// A 300-699 was sent; retransmitting it (Timer G) until the ACK or Timer H.
    Completed {
        /// The current Timer G interval.
        g: Duration,
    },
    /// The ACK arrived; absorbing ACK retransmissions until Timer I.
    Confirmed,
    /// RFC 6026: a 2xx was sent; absorbing INVITE retransmissions and forwarding further
    /// 2xx until Timer L.
    Accepted,
    /// Done; the driver removes the transaction.
    Terminated,
}

/// Inputs of Figure 7 (+ RFC 6026). Tu* events carry their response bytes in the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A retransmission of the INVITE.
    Request,
    /// An ACK matching this transaction (17.2.3).
    Ack,
    /// The TU sends a 101-199 (or the core's 100).
    Tu1xx,
    /// The TU sends (or forwards) a 2xx.
    Tu2xx,
    /// The TU sends a 300-699.
    Tu300_699,
    /// The route neither answered nor relayed.
    TuDropped,
    /// Timer G fired.
    TimerG,
    /// Timer H fired.
    TimerH,
    /// Timer I fired.
    TimerI,
    /// Timer L fired.
    TimerL,
    /// Sending failed.
    TransportErr,
}

/// Where a new transaction starts (17.2.1: "the server transaction MUST be in Proceeding").
pub(crate) fn start() -> State {
    State::Proceeding
}

/// One transition of Figure 7 / RFC 6026 Figure 5.
pub(crate) fn step(state: State, ev: Event, cfg: &Cfg) -> (State, Vec<Action>) {
    use Event as E;
    use State as S;
    let t = &cfg.timers;
    match (state, ev) {
        // 17.2.1: a retransmitted INVITE in Proceeding gets the last provisional again.
        (S::Proceeding, E::Request) => (S::Proceeding, vec![Action::Retransmit]),
        (S::Proceeding, E::Tu1xx) => (S::Proceeding, vec![Action::SendResponse]),
        // RFC 6026 7.1: a 2xx moves to Accepted and starts Timer L (64*T1).
        (S::Proceeding, E::Tu2xx) => (S::Accepted, vec![Action::SendResponse, start_t(Timer::L, t.t1x64())]),
        // 17.2.1: a 300-699 moves to Completed; Timer G (T1) on UDP only, Timer H (64*T1) always.
        (S::Proceeding, E::Tu300_699) => {
            let mut a = vec![Action::SendResponse];
            if !cfg.reliable {
                a.push(start_t(Timer::G, t.t1()));
            }
            a.push(start_t(Timer::H, t.t1x64()));
            (S::Completed { g: t.t1() }, a)
        }
        // Nothing will be sent: absorb retransmissions (and pass a stray ACK on) until Timer L.
        (S::Proceeding, E::TuDropped) => (S::Accepted, vec![start_t(Timer::L, t.t1x64())]),
        (S::Proceeding, E::Ack) => (S::Proceeding, vec![]),
        // 17.2.1: a transport failure informs the TU and terminates.
        (S::Proceeding | S::Completed { .. }, E::TransportErr) => (S::Terminated, vec![Action::TransportError]),

        // 17.2.1: in Completed, a retransmitted INVITE gets the final response again.
        (S::Completed { g }, E::Request) => (S::Completed { g }, vec![Action::Retransmit]),
        // 17.2.1: Timer G retransmits and doubles, capped at T2.
        (S::Completed { g }, E::TimerG) => {
            let g = (g * 2).min(t.t2());
            (S::Completed { g }, vec![Action::Retransmit, start_t(Timer::G, g)])
        }
        // 17.2.1: no ACK within Timer H: terminate and tell the TU.
        (S::Completed { .. }, E::TimerH) => (S::Terminated, vec![Action::Timeout]),
        // 17.2.1: the ACK moves to Confirmed; Timer I = T4 on UDP, 0 on reliable transports.
        (S::Completed { .. }, E::Ack) => {
            let a = vec![Action::Timer(TimerOp::Stop(Timer::G)), Action::Timer(TimerOp::Stop(Timer::H))];
            if cfg.reliable {
                (S::Terminated, a)
            } else {
                let mut a = a;
                a.push(start_t(Timer::I, t.t4()));
                (S::Confirmed, a)
            }
        }
        // A 2xx from another branch after the final: RFC 3261 16.7 step 5 forwards every 2xx
        // to an INVITE, so send it without leaving the state.
        (S::Completed { g }, E::Tu2xx) => (S::Completed { g }, vec![Action::SendResponse]),
        (S::Completed { g }, E::Tu1xx | E::Tu300_699 | E::TuDropped | E::TimerL | E::TimerI) => {
            (S::Completed { g }, vec![])
        }

        // 17.2.1: Confirmed absorbs ACK (and INVITE) retransmissions until Timer I.
        (S::Confirmed, E::TimerI) => (S::Terminated, vec![]),
        (S::Confirmed, E::Tu2xx) => (S::Confirmed, vec![Action::SendResponse]),
        (S::Confirmed, _) => (S::Confirmed, vec![]),

        // RFC 6026 7.1: Accepted absorbs INVITE retransmissions (the UAS core, not the
        // transaction, retransmits 2xx), passes an ACK up, sends further 2xx, ends on Timer L.
        (S::Accepted, E::Request) => (S::Accepted, vec![]),
        (S::Accepted, E::Ack) => (S::Accepted, vec![Action::PassAck]),
        (S::Accepted, E::Tu2xx) => (S::Accepted, vec![Action::SendResponse]),
        (S::Accepted, E::TimerL) => (S::Terminated, vec![]),
        // RFC 6026 8.7: a transport error in Accepted is reported but changes nothing.
        (S::Accepted, E::TransportErr) => (S::Accepted, vec![Action::TransportError]),
        (S::Accepted, _) => (S::Accepted, vec![]),

        (S::Proceeding, E::TimerG | E::TimerH | E::TimerI | E::TimerL) => (S::Proceeding, vec![]),
        (S::Terminated, _) => (S::Terminated, vec![]),
    }
}

fn start_t(t: Timer, d: Duration) -> Action {
    Action::Timer(TimerOp::Start(t, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::fsm::test_fsm::{cfg, d};

    const T1: Duration = Duration::from_millis(500);

    #[test]
    fn proceeding_provisionals_and_retransmissions() {
        let c = cfg(false);
        assert_eq!(start(), State::Proceeding);
        assert_eq!(step(State::Proceeding, Event::Tu1xx, &c), (State::Proceeding, vec![Action::SendResponse]));
        assert_eq!(step(State::Proceeding, Event::Request, &c), (State::Proceeding, vec![Action::Retransmit]));
        assert_eq!(step(State::Proceeding, Event::Ack, &c), (State::Proceeding, vec![]));
    }

    #[test]
    fn non_2xx_udp_retransmits_with_g_until_ack() {
        let c = cfg(false);
        let (s, a) = step(State::Proceeding, Event::Tu300_699, &c);
        assert_eq!(s, State::Completed { g: T1 });
        assert_eq!(a, vec![Action::SendResponse, d("start G 500ms"), d("start H 32s")]);
        // G doubles: 1 s, 2 s, 4 s, then stays at T2 = 4 s.
        let mut s = s;
        for want in [1000, 2000, 4000, 4000] {
            let (n, a) = step(s, Event::TimerG, &c);
            assert_eq!(n, State::Completed { g: Duration::from_millis(want) });
            assert_eq!(a, vec![Action::Retransmit, d(&format!("start G {want}ms"))]);
            s = n;
        }
        assert_eq!(step(s, Event::Request, &c), (s, vec![Action::Retransmit]));
        let (n, a) = step(s, Event::Ack, &c);
        assert_eq!(n, State::Confirmed);
        assert_eq!(a, vec![d("stop G"), d("stop H"), d("start I 5s")]);
        assert_eq!(step(State::Confirmed, Event::Ack, &c), (State::Confirmed, vec![]));
        assert_eq!(step(State::Confirmed, Event::Request, &c), (State::Confirmed, vec![]));
        assert_eq!(step(State::Confirmed, Event::TimerI, &c), (State::Terminated, vec![]));
    }

    #[test]
    fn non_2xx_tcp_has_no_g_and_terminates_on_ack() {
        let c = cfg(true);
        let (s, a) = step(State::Proceeding, Event::Tu300_699, &c);
        assert_eq!(a, vec![Action::SendResponse, d("start H 32s")]);
        assert_eq!(step(s, Event::Ack, &c), (State::Terminated, vec![d("stop G"), d("stop H")]));
    }

    #[test]
    fn timer_h_without_ack_times_out() {
        let c = cfg(false);
        assert_eq!(step(State::Completed { g: T1 }, Event::TimerH, &c), (State::Terminated, vec![Action::Timeout]));
    }

    #[test]
    fn accepted_after_2xx_rfc6026() {
        let c = cfg(false);
        let (s, a) = step(State::Proceeding, Event::Tu2xx, &c);
        assert_eq!((s, a), (State::Accepted, vec![Action::SendResponse, d("start L 32s")]));
        assert_eq!(step(s, Event::Request, &c), (State::Accepted, vec![]));
        assert_eq!(step(s, Event::Tu2xx, &c), (State::Accepted, vec![Action::SendResponse]));
        assert_eq!(step(s, Event::Ack, &c), (State::Accepted, vec![Action::PassAck]));
        assert_eq!(step(s, Event::Tu300_699, &c), (State::Accepted, vec![]));
        assert_eq!(step(s, Event::TransportErr, &c), (State::Accepted, vec![Action::TransportError]));
        assert_eq!(step(s, Event::TimerL, &c), (State::Terminated, vec![]));
    }

    #[test]
    fn late_2xx_after_non_2xx_is_still_sent() {
        let c = cfg(false);
        let s = State::Completed { g: T1 };
        assert_eq!(step(s, Event::Tu2xx, &c), (s, vec![Action::SendResponse]));
        assert_eq!(step(s, Event::Tu1xx, &c), (s, vec![]));
    }

    #[test]
    fn dropped_and_transport_errors() {
        let c = cfg(false);
        assert_eq!(step(State::Proceeding, Event::TuDropped, &c), (State::Accepted, vec![d("start L 32s")]));
        assert_eq!(step(State::Proceeding, Event::TransportErr, &c), (State::Terminated, vec![Action::TransportError]));
        assert_eq!(
            step(State::Completed { g: T1 }, Event::TransportErr, &c),
            (State::Terminated, vec![Action::TransportError])
        );
        assert_eq!(step(State::Terminated, Event::Request, &c), (State::Terminated, vec![]));
    }

    #[test]
    fn every_combination_is_defined_and_terminated_absorbs() {
        use Event as E;
        let events = [
            E::Request,
            E::Ack,
            E::Tu1xx,
            E::Tu2xx,
            E::Tu300_699,
            E::TuDropped,
            E::TimerG,
            E::TimerH,
            E::TimerI,
            E::TimerL,
            E::TransportErr,
        ];
        let states =
            [State::Proceeding, State::Completed { g: T1 }, State::Confirmed, State::Accepted, State::Terminated];
        for reliable in [false, true] {
            let c = cfg(reliable);
            for s in states {
                for e in events {
                    let (n, a) = step(s, e, &c);
                    if s == State::Terminated {
                        assert_eq!((n, a.clone()), (State::Terminated, vec![]));
                    }
                    // Only Proceeding sends provisionals; Completed never goes back.
                    if a.contains(&Action::SendResponse) && e == E::Tu1xx {
                        assert_eq!(s, State::Proceeding);
                    }
                    assert!(n != State::Proceeding || s == State::Proceeding);
                }
            }
        }
    }
}
