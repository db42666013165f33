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
//! and the batch is freed once handled.

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

/// A bounded multi-producer, single-consumer queue.
pub(crate) struct Inbox<T> {
    state: Mutex<State<T>>,
    /// Wakes the consumer. `notify_one` stores a permit when nobody waits, so a
    /// push between the consumer's emptiness check and its wait is not missed.
    ready: Notify,
    capacity: usize,
}

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
}

impl<T> Inbox<T> {
    /// An empty, open inbox that holds at most `capacity` events; allocates nothing.
    pub(crate) fn new(capacity: usize) -> Inbox<T> {
        Inbox { state: Mutex::new(State { queue: VecDeque::new(), closed: false }), ready: Notify::new(), capacity }
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

    /// Everything queued, in order, waiting until there is at least one event. Cancel
    /// safe: events are taken only in the poll that returns them.
    pub(crate) async fn recv_all(&self) -> VecDeque<T> {
        loop {
            {
                let mut state = self.state();
                if !state.queue.is_empty() {
                    return std::mem::take(&mut state.queue);
                }
            }
            self.ready.notified().await;
        }
    }

    /// Refuses further events and drops those still queued (the consumer has stopped).
    pub(crate) fn close(&self) {
        let dropped = {
            let mut state = self.state();
            state.closed = true;
            std::mem::take(&mut state.queue)
        };
        drop(dropped);
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
    async fn a_cancelled_wait_loses_nothing() {
        let inbox = Inbox::new(4);
        let timed_out = tokio::time::timeout(Duration::from_millis(1), inbox.recv_all()).await;
        assert!(timed_out.is_err());
        inbox.push(5).unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(5), inbox.recv_all()).await.unwrap();
        assert_eq!(batch.into_iter().collect::<Vec<_>>(), vec![5]);
    }
}
