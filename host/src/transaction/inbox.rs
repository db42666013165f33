//! [`Inbox`]: the bounded event queue of one transaction driver, kept inside the
//! transaction itself.
//!
//! It replaces a `tokio::sync::mpsc` channel because of what an idle transaction
//! costs: a channel allocates its shared state (512 B) and a first block of 32
//! slots (1.3 KB for a server transaction's events) when it is created, and keeps
//! both for the transaction's life. A call parked in `wait-for-event` keeps its
//! INVITE server transaction alive for minutes, so that was ~1.8 KB of the ~27 KB
//! of heap each parked call holds (benches/suspend_heap.rs). Here the queue owns
//! no memory while empty: the driver takes the whole queue each time it wakes,
//! and the batch is freed once handled. The same holds for the client
//! transactions and the response context, whose channels each allocated a block
//! of 32 messages (10 KB) and kept it for up to Timer M's 32 s: at 1000 calls/s
//! that was most of the proxy's resident memory and of its page faults.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// Why [`Inbox::push`] refused an event, which it hands back.
#[derive(Debug)]
pub(crate) enum PushError<T> {
    /// `capacity` events are already waiting.
    Full(T),
    /// The driver has stopped ([`Inbox::close`]).
    Closed(T),
}

impl<T> std::fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "queue full",
            PushError::Closed(_) => "closed",
        })
    }
}

/// A bounded multi-producer, single-consumer queue.
pub(crate) struct Inbox<T> {
    state: Mutex<State<T>>,
    /// Wakes the consumer. `notify_one` stores a permit when nobody waits, so a
    /// push between the consumer's emptiness check and its wait is not missed.
    ready: Notify,
    /// Wakes producers waiting in [`send`](Inbox::send) for room.
    room: Notify,
    capacity: usize,
}

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
}

impl<T> Inbox<T> {
    /// An empty, open inbox that holds at most `capacity` events; allocates nothing.
    pub(crate) fn new(capacity: usize) -> Inbox<T> {
        Inbox {
            state: Mutex::new(State { queue: VecDeque::new(), closed: false }),
            ready: Notify::new(),
            room: Notify::new(),
            capacity,
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        // Critical sections only push, take or flag; a poisoned lock holds consistent data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `event` for the consumer, or hands it back when the inbox is full or closed.
    pub(crate) fn push(&self, event: T) -> Result<(), PushError<T>> {
        {
            let mut state = self.state();
            if state.closed {
                return Err(PushError::Closed(event));
            }
            if state.queue.len() >= self.capacity {
                return Err(PushError::Full(event));
            }
            state.queue.push_back(event);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Queues `event`, waiting while the inbox is full; hands it back once the inbox is
    /// closed. For producers that must not lose an event (a branch's end), where `push`
    /// would drop it.
    pub(crate) async fn send(&self, mut event: T) -> Result<(), T> {
        loop {
            // Made before the attempt: `notify_waiters` reaches a `Notified` from its creation.
            let room = self.room.notified();
            match self.push(event) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(e)) => return Err(e),
                Err(PushError::Full(e)) => event = e,
            }
            room.await;
        }
    }

    /// Everything queued, in order, waiting until there is at least one event. Cancel
    /// safe: events are taken only in the poll that returns them.
    pub(crate) async fn recv_all(&self) -> VecDeque<T> {
        loop {
            let taken = {
                let mut state = self.state();
                let full = state.queue.len() >= self.capacity;
                (!state.queue.is_empty()).then(|| (std::mem::take(&mut state.queue), full))
            };
            if let Some((batch, was_full)) = taken {
                if was_full {
                    self.room.notify_waiters();
                }
                return batch;
            }
            self.ready.notified().await;
        }
    }

    /// Refuses further events and drops those still queued (the consumer has stopped).
    pub(crate) fn close(&self) {
        drop(self.close_and_take());
    }

    /// Refuses further events and hands back those still queued, for a consumer that must
    /// not lose some of them.
    pub(crate) fn close_and_take(&self) -> VecDeque<T> {
        let left = {
            let mut state = self.state();
            state.closed = true;
            std::mem::take(&mut state.queue)
        };
        self.room.notify_waiters();
        left
    }

    /// Events waiting (tests: wait until a producer's event is queued).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn delivers_in_order_and_owns_no_memory_once_taken() {
        let inbox = Inbox::new(4);
        for i in 0..3 {
            inbox.push(i).unwrap();
        }
        let batch = inbox.recv_all().await;
        assert_eq!(batch.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(inbox.state().queue.capacity(), 0);
    }

    #[tokio::test]
    async fn refuses_beyond_capacity_and_after_close() {
        let inbox = Inbox::new(2);
        inbox.push(1).unwrap();
        inbox.push(2).unwrap();
        assert!(matches!(inbox.push(3), Err(PushError::Full(3))));
        inbox.close();
        assert!(matches!(inbox.push(4), Err(PushError::Closed(4))));
        assert!(inbox.state().queue.is_empty());
    }

    #[tokio::test]
    async fn wakes_a_waiting_consumer() {
        let inbox = Arc::new(Inbox::new(4));
        let consumer = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.recv_all().await.into_iter().collect::<Vec<u32>>() }
        });
        // Give the consumer a chance to park first; the permit covers either order.
        tokio::task::yield_now().await;
        inbox.push(7).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), consumer).await.unwrap().unwrap();
        assert_eq!(got, vec![7]);
    }

    #[tokio::test]
    async fn send_waits_for_room_and_returns_the_event_once_closed() {
        let inbox = Arc::new(Inbox::new(1));
        inbox.push(1).unwrap();
        let producer = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.send(2).await }
        });
        tokio::task::yield_now().await;
        assert!(!producer.is_finished(), "send returned while the inbox was full");
        assert_eq!(inbox.recv_all().await.into_iter().collect::<Vec<_>>(), vec![1]);
        tokio::time::timeout(Duration::from_secs(5), producer).await.unwrap().unwrap().unwrap();
        assert_eq!(inbox.recv_all().await.into_iter().collect::<Vec<_>>(), vec![2]);

        inbox.push(3).unwrap();
        let blocked = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.send(4).await }
        });
        tokio::task::yield_now().await;
        inbox.close();
        let back = tokio::time::timeout(Duration::from_secs(5), blocked).await.unwrap().unwrap();
        assert_eq!(back, Err(4));
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_nothing() {
        let inbox = Inbox::new(4);
        let timed_out = tokio::time::timeout(Duration::from_millis(1), inbox.recv_all()).await;
        assert!(timed_out.is_err());
        inbox.push(5).unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(5), inbox.recv_all()).await.unwrap();
        assert_eq!(batch.into_iter().collect::<Vec<_>>(), vec![5]);
    }
}
