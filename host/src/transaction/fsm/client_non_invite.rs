//! Non-INVITE client transaction (RFC 3261 section 17.1.2, Figure 6) as a pure state machine.

use std::time::Duration;

use super::{Action, Cfg};
use crate::transaction::timers::{Timer, TimerOp};

/// States of Figure 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Request sent; retransmitting with Timer E.
    Trying {
        /// The current Timer E interval.
        e: Duration,
    },
    /// A provisional arrived; retransmitting every T2.
    Proceeding,
    /// A final arrived; absorbing response retransmissions until Timer K.
    Completed,
    /// Done; the driver removes the transaction.
    Terminated,
}

/// Inputs of Figure 6. Responses stay in the driver; events only classify them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A 1xx response.
    Resp1xx,
    /// A 200-699 response.
    RespFinal,
    /// Timer E fired.
    TimerE,
    /// Timer F fired.
    TimerF,
    /// Timer K fired.
    TimerK,
    /// Sending failed.
    TransportErr,
    /// The TU gave up on the transaction.
    Abandon,
}

/// 17.1.2.2: send the request, start Timer E (T1) on UDP and Timer F (64*T1).
pub(crate) fn start(cfg: &Cfg) -> (State, Vec<Action>) {
    let t = &cfg.timers;
    let mut a = vec![Action::SendRequest];
    if !cfg.reliable {
        a.push(start_t(Timer::E, t.t1()));
    }
    a.push(start_t(Timer::F, t.t1x64()));
    (State::Trying { e: t.t1() }, a)
}

/// One transition of Figure 6.
pub(crate) fn step(state: State, ev: Event, cfg: &Cfg) -> (State, Vec<Action>) {
    use Event as E;
    use State as S;
    let t = &cfg.timers;
    match (state, ev) {
        // 17.1.2.2: Timer E retransmits, doubling up to T2.
        (S::Trying { e }, E::TimerE) => {
            let e = (e * 2).min(t.t2());
            (S::Trying { e }, vec![Action::Retransmit, start_t(Timer::E, e)])
        }
        // 17.1.2.2: in Proceeding, retransmissions are every T2.
        (S::Proceeding, E::TimerE) => (S::Proceeding, vec![Action::Retransmit, start_t(Timer::E, t.t2())]),
        // 17.1.2.2: provisionals go to the TU and move Trying to Proceeding.
        (S::Trying { .. } | S::Proceeding, E::Resp1xx) => (S::Proceeding, vec![Action::PassUp]),
        // 17.1.2.2: a final goes to the TU; Timer K = T4 on UDP, 0 on reliable transports.
        (S::Trying { .. } | S::Proceeding, E::RespFinal) => {
            let mut a = vec![Action::PassUp, stop(Timer::E), stop(Timer::F)];
            if cfg.reliable {
                (S::Terminated, a)
            } else {
                a.push(start_t(Timer::K, t.t4()));
                (S::Completed, a)
            }
        }
        // 17.1.2.2: Timer F (no final in time) informs the TU of a timeout.
        (S::Trying { .. } | S::Proceeding, E::TimerF) => (S::Terminated, vec![Action::Timeout]),
        // 17.1.4: a transport error informs the TU.
        (S::Trying { .. } | S::Proceeding, E::TransportErr) => (S::Terminated, vec![Action::TransportError]),
        // 17.1.2.2: Completed absorbs response retransmissions until Timer K.
        (S::Completed, E::Resp1xx | E::RespFinal | E::TimerE | E::TimerF | E::TransportErr) => (S::Completed, vec![]),
        (S::Completed, E::TimerK) => (S::Terminated, vec![]),
        (S::Trying { .. } | S::Proceeding, E::TimerK) => (state, vec![]),
        (S::Trying { .. } | S::Proceeding | S::Completed, E::Abandon) => (S::Terminated, vec![]),
        (S::Terminated, _) => (S::Terminated, vec![]),
    }
}

fn start_t(t: Timer, d: Duration) -> Action {
    Action::Timer(TimerOp::Start(t, d))
}

fn stop(t: Timer) -> Action {
    Action::Timer(TimerOp::Stop(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::fsm::test_fsm::{cfg, d};

    #[test]
    fn udp_start_and_timer_e_backoff() {
        let c = cfg(false);
        let (mut s, a) = start(&c);
        assert_eq!(a, vec![Action::SendRequest, d("start E 500ms"), d("start F 32s")]);
        for want in [1000, 2000, 4000, 4000] {
            let (n, a) = step(s, Event::TimerE, &c);
            assert_eq!(a, vec![Action::Retransmit, d(&format!("start E {want}ms"))]);
            s = n;
        }
        assert_eq!(step(s, Event::TimerF, &c), (State::Terminated, vec![Action::Timeout]));
    }

    #[test]
    fn tcp_start_has_no_retransmissions() {
        let c = cfg(true);
        assert_eq!(start(&c).1, vec![Action::SendRequest, d("start F 32s")]);
        let s = State::Trying { e: Duration::from_millis(500) };
        assert_eq!(step(s, Event::RespFinal, &c), (State::Terminated, vec![Action::PassUp, d("stop E"), d("stop F")]));
    }

    #[test]
    fn provisional_then_final_udp() {
        let c = cfg(false);
        let s = State::Trying { e: Duration::from_millis(500) };
        assert_eq!(step(s, Event::Resp1xx, &c), (State::Proceeding, vec![Action::PassUp]));
        assert_eq!(
            step(State::Proceeding, Event::TimerE, &c),
            (State::Proceeding, vec![Action::Retransmit, d("start E 4s")])
        );
        assert_eq!(step(State::Proceeding, Event::Resp1xx, &c), (State::Proceeding, vec![Action::PassUp]));
        let (s, a) = step(State::Proceeding, Event::RespFinal, &c);
        assert_eq!((s, a), (State::Completed, vec![Action::PassUp, d("stop E"), d("stop F"), d("start K 5s")]));
        assert_eq!(step(s, Event::RespFinal, &c), (State::Completed, vec![]));
        assert_eq!(step(s, Event::TimerK, &c), (State::Terminated, vec![]));
    }

    #[test]
    fn timeouts_and_errors() {
        let c = cfg(false);
        assert_eq!(step(State::Proceeding, Event::TimerF, &c), (State::Terminated, vec![Action::Timeout]));
        assert_eq!(step(State::Proceeding, Event::TransportErr, &c), (State::Terminated, vec![Action::TransportError]));
        assert_eq!(step(State::Proceeding, Event::Abandon, &c), (State::Terminated, vec![]));
        assert_eq!(step(State::Terminated, Event::RespFinal, &c), (State::Terminated, vec![]));
    }

    #[test]
    fn every_combination_is_defined_and_terminated_absorbs() {
        use Event as E;
        let events = [E::Resp1xx, E::RespFinal, E::TimerE, E::TimerF, E::TimerK, E::TransportErr, E::Abandon];
        let states =
            [State::Trying { e: Duration::from_millis(500) }, State::Proceeding, State::Completed, State::Terminated];
        for reliable in [false, true] {
            let c = cfg(reliable);
            for s in states {
                for e in events {
                    let (n, a) = step(s, e, &c);
                    if s == State::Terminated {
                        assert_eq!((n, a.clone()), (State::Terminated, vec![]));
                    }
                    // Completed never passes anything up (absorbs retransmissions).
                    if s == State::Completed {
                        assert!(!a.contains(&Action::PassUp));
                    }
                }
            }
        }
    }
}
