//! INVITE client transaction (RFC 3261 section 17.1.1, Figure 5, with the RFC 6026
//! "Accepted" state) as a pure state machine.

use std::time::Duration;

use super::{Action, Cfg};
use crate::transaction::timers::{Timer, TimerOp};

/// States of Figure 5 as updated by RFC 6026 section 7.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// INVITE sent; retransmitting with Timer A until a response or Timer B.
    Calling {
        /// The current Timer A interval.
        a: Duration,
    },
    /// A provisional arrived.
    Proceeding,
    /// A 300-699 arrived and was ACKed; absorbing its retransmissions until Timer D.
    Completed,
    /// RFC 6026: a 2xx arrived; every further 2xx goes to the TU until Timer M.
    Accepted,
    /// Done; the driver removes the transaction.
    Terminated,
}

/// Inputs of Figure 5. Responses stay in the driver; events only classify them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A 1xx response.
    Resp1xx,
    /// A 2xx response.
    Resp2xx,
    /// A 300-699 response.
    Resp300_699,
    /// Timer A fired.
    TimerA,
    /// Timer B fired.
    TimerB,
    /// Timer D fired.
    TimerD,
    /// Timer M fired.
    TimerM,
    /// Sending failed.
    TransportErr,
    /// The TU gave up (Timer C without a provisional, or no final after a CANCEL).
    Abandon,
}

/// 17.1.1.2: send the INVITE, start Timer A (T1) on UDP and Timer B (64*T1).
pub(crate) fn start(cfg: &Cfg) -> (State, Vec<Action>) {
    let t = &cfg.timers;
    let mut a = vec![Action::SendRequest];
    if !cfg.reliable {
        a.push(start_t(Timer::A, t.t1()));
    }
    a.push(start_t(Timer::B, t.t1x64()));
    (State::Calling { a: t.t1() }, a)
}

/// One transition of Figure 5 / RFC 6026 Figure 4.
pub(crate) fn step(state: State, ev: Event, cfg: &Cfg) -> (State, Vec<Action>) {
    use Event as E;
    use State as S;
    let t = &cfg.timers;
    match (state, ev) {
        // 17.1.1.2: Timer A retransmits and doubles (no cap; Timer B bounds it).
        (S::Calling { a }, E::TimerA) => {
            let a = a * 2;
            (S::Calling { a }, vec![Action::Retransmit, start_t(Timer::A, a)])
        }
        // 17.1.1.2: no response before Timer B: timeout to the TU.
        (S::Calling { .. }, E::TimerB) => (S::Terminated, vec![Action::Timeout]),
        // 17.1.1.2: a provisional stops retransmissions and moves to Proceeding (Timer B only
        // applies in Calling; the proxy's Timer C bounds Proceeding).
        (S::Calling { .. }, E::Resp1xx) => (S::Proceeding, vec![stop(Timer::A), stop(Timer::B), Action::PassUp]),
        (S::Proceeding, E::Resp1xx) => (S::Proceeding, vec![Action::PassUp]),
        // RFC 6026 7.2: a 2xx goes to the TU and moves to Accepted with Timer M (64*T1).
        (S::Calling { .. } | S::Proceeding, E::Resp2xx) => {
            (S::Accepted, vec![stop(Timer::A), stop(Timer::B), Action::PassUp, start_t(Timer::M, t.t1x64())])
        }
        // 17.1.1.2: a 300-699 goes to the TU and is ACKed; Timer D on UDP, 0 on reliable.
        (S::Calling { .. } | S::Proceeding, E::Resp300_699) => {
            let mut a = vec![stop(Timer::A), stop(Timer::B), Action::PassUp, Action::SendAck];
            if cfg.reliable {
                (S::Terminated, a)
            } else {
                a.push(start_t(Timer::D, t.d()));
                (S::Completed, a)
            }
        }
        // 17.1.1.3: a transport error in Calling informs the TU.
        (S::Calling { .. } | S::Proceeding, E::TransportErr) => (S::Terminated, vec![Action::TransportError]),
        // 17.1.1.2: a retransmitted final in Completed is ACKed again, not passed up.
        (S::Completed, E::Resp300_699) => (S::Completed, vec![Action::SendAck]),
        (S::Completed, E::TimerD) => (S::Terminated, vec![]),
        // Figure 5: a transport error in Completed terminates (the TU already has the final).
        (S::Completed, E::TransportErr) => (S::Terminated, vec![]),
        (S::Completed, E::Resp1xx | E::Resp2xx | E::TimerA | E::TimerB | E::TimerM) => (S::Completed, vec![]),
        // RFC 6026 7.2: every 2xx (retransmission or another UAS's) goes to the TU.
        (S::Accepted, E::Resp2xx) => (S::Accepted, vec![Action::PassUp]),
        (S::Accepted, E::TimerM) => (S::Terminated, vec![]),
        (S::Accepted, _) => (S::Accepted, vec![]),
        (S::Calling { .. } | S::Proceeding | S::Completed, E::Abandon) => (S::Terminated, vec![]),
        (S::Calling { .. } | S::Proceeding, E::TimerD | E::TimerM) | (S::Proceeding, E::TimerA | E::TimerB) => {
            (state, vec![])
        }
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

    const T1: Duration = Duration::from_millis(500);

    #[test]
    fn udp_start_and_timer_a_doubles_until_b() {
        let c = cfg(false);
        let (mut s, a) = start(&c);
        assert_eq!(a, vec![Action::SendRequest, d("start A 500ms"), d("start B 32s")]);
        for want in [1000, 2000, 4000, 8000, 16000] {
            let (n, a) = step(s, Event::TimerA, &c);
            assert_eq!(a, vec![Action::Retransmit, d(&format!("start A {want}ms"))]);
            s = n;
        }
        assert_eq!(step(s, Event::TimerB, &c), (State::Terminated, vec![Action::Timeout]));
    }

    #[test]
    fn tcp_start_has_no_timer_a() {
        let c = cfg(true);
        assert_eq!(start(&c).1, vec![Action::SendRequest, d("start B 32s")]);
    }

    #[test]
    fn provisional_then_non_2xx_udp() {
        let c = cfg(false);
        let s = State::Calling { a: T1 };
        assert_eq!(step(s, Event::Resp1xx, &c), (State::Proceeding, vec![d("stop A"), d("stop B"), Action::PassUp]));
        assert_eq!(step(State::Proceeding, Event::Resp1xx, &c), (State::Proceeding, vec![Action::PassUp]));
        let (s, a) = step(State::Proceeding, Event::Resp300_699, &c);
        assert_eq!(s, State::Completed);
        assert_eq!(a, vec![d("stop A"), d("stop B"), Action::PassUp, Action::SendAck, d("start D 32s")]);
        assert_eq!(step(s, Event::Resp300_699, &c), (State::Completed, vec![Action::SendAck]));
        assert_eq!(step(s, Event::Resp2xx, &c), (State::Completed, vec![]));
        assert_eq!(step(s, Event::TimerD, &c), (State::Terminated, vec![]));
    }

    #[test]
    fn non_2xx_tcp_terminates_at_once() {
        let c = cfg(true);
        let (s, a) = step(State::Calling { a: T1 }, Event::Resp300_699, &c);
        assert_eq!((s, a), (State::Terminated, vec![d("stop A"), d("stop B"), Action::PassUp, Action::SendAck]));
    }

    #[test]
    fn accepted_forwards_every_2xx_rfc6026() {
        let c = cfg(false);
        let (s, a) = step(State::Calling { a: T1 }, Event::Resp2xx, &c);
        assert_eq!((s, a), (State::Accepted, vec![d("stop A"), d("stop B"), Action::PassUp, d("start M 32s")]));
        assert_eq!(step(s, Event::Resp2xx, &c), (State::Accepted, vec![Action::PassUp]));
        assert_eq!(step(s, Event::Resp1xx, &c), (State::Accepted, vec![]));
        assert_eq!(step(s, Event::Resp300_699, &c), (State::Accepted, vec![]));
        assert_eq!(step(s, Event::TimerM, &c), (State::Terminated, vec![]));
        assert_eq!(step(State::Proceeding, Event::Resp2xx, &c).0, State::Accepted);
    }

    #[test]
    fn errors_and_abandon() {
        let c = cfg(false);
        assert_eq!(
            step(State::Calling { a: T1 }, Event::TransportErr, &c),
            (State::Terminated, vec![Action::TransportError])
        );
        assert_eq!(step(State::Completed, Event::TransportErr, &c), (State::Terminated, vec![]));
        assert_eq!(step(State::Proceeding, Event::Abandon, &c), (State::Terminated, vec![]));
        assert_eq!(step(State::Proceeding, Event::TimerB, &c), (State::Proceeding, vec![]));
        assert_eq!(step(State::Terminated, Event::Resp2xx, &c), (State::Terminated, vec![]));
    }

    #[test]
    fn every_combination_is_defined_and_terminated_absorbs() {
        use Event as E;
        let events = [
            E::Resp1xx,
            E::Resp2xx,
            E::Resp300_699,
            E::TimerA,
            E::TimerB,
            E::TimerD,
            E::TimerM,
            E::TransportErr,
            E::Abandon,
        ];
        let states =
            [State::Calling { a: T1 }, State::Proceeding, State::Completed, State::Accepted, State::Terminated];
        for reliable in [false, true] {
            let c = cfg(reliable);
            for s in states {
                for e in events {
                    let (n, a) = step(s, e, &c);
                    if s == State::Terminated {
                        assert_eq!((n, a.clone()), (State::Terminated, vec![]));
                    }
                    // Only a 2xx is passed up once a final arrived (RFC 6026).
                    if matches!(s, State::Completed | State::Accepted) && a.contains(&Action::PassUp) {
                        assert_eq!(e, E::Resp2xx);
                    }
                    // Retransmissions only in Calling, and only by Timer A.
                    if a.contains(&Action::Retransmit) {
                        assert!(matches!(s, State::Calling { .. }) && e == E::TimerA);
                    }
                }
            }
        }
    }
}
