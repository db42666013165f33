//! Publisher confirms for the rabbitmq sink. With `confirm.select` the
//! broker acks (or nacks) every publish by delivery tag, 1, 2, 3, ... per
//! channel; amqprs reports those acks, and channel/connection closes,
//! through callback traits. [`Confirms`] turns them into one outcome per
//! publish, so a delivery is reported done only once the broker has taken
//! responsibility for the message.
//!
//! The callback traits are declared with `#[async_trait]` in amqprs; they
//! are implemented here in their expanded form (a boxed `Send` future) so
//! that sipbox does not need the `async-trait` crate for four small methods.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use amqprs::callbacks::{ChannelCallback, ConnectionCallback};
use amqprs::channel::Channel;
use amqprs::connection::Connection;
use amqprs::error::Error as AmqpError;
use amqprs::{Ack, BasicProperties, Cancel, Close, CloseChannel, Nack, Return};
use tokio::sync::oneshot;

/// How the broker answered one publish.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// `basic.ack`: the broker has the message (routed, or unroutable and dropped).
    Ack,
    /// `basic.nack`: the broker could not take it (internal error, queue overflow).
    Nack,
    /// The channel or connection closed first; the text says why.
    Closed(String),
}

/// Delivery-tag bookkeeping for one channel. Publishes on a sink are
/// serialised, so at most one publish waits at a time.
pub(super) struct Confirms {
    state: Mutex<State>,
}

struct State {
    next_tag: u64,
    waiter: Option<(u64, oneshot::Sender<Outcome>)>,
    closed: Option<String>,
}

impl Confirms {
    /// Bookkeeping for a fresh channel (its first delivery tag is 1).
    pub(super) fn new() -> Arc<Confirms> {
        Arc::new(Confirms { state: Mutex::new(State { next_tag: 1, waiter: None, closed: None }) })
    }

    /// Takes the tag of the publish about to be sent; the receiver yields
    /// its outcome. The publish must follow at once: tags count publishes.
    pub(super) fn expect_next(&self) -> Result<oneshot::Receiver<Outcome>, String> {
        let mut st = self.lock();
        if let Some(why) = &st.closed {
            return Err(why.clone());
        }
        let (tx, rx) = oneshot::channel();
        let tag = st.next_tag;
        st.next_tag += 1;
        st.waiter = Some((tag, tx));
        Ok(rx)
    }

    /// Why the channel or connection closed, if it did.
    pub(super) fn closed(&self) -> Option<String> {
        self.lock().closed.clone()
    }

    fn resolve(&self, tag: u64, multiple: bool, outcome: Outcome) {
        let mut st = self.lock();
        let hit = st.waiter.as_ref().is_some_and(|(t, _)| *t == tag || (multiple && *t <= tag));
        if hit && let Some((_, tx)) = st.waiter.take() {
            let _ = tx.send(outcome);
        }
    }

    fn close(&self, why: String) {
        let mut st = self.lock();
        if let Some((_, tx)) = st.waiter.take() {
            let _ = tx.send(Outcome::Closed(why.clone()));
        }
        st.closed.get_or_insert(why);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Only plain field updates happen under the lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The amqprs callbacks of one connection and its channel.
pub(super) struct Callbacks(pub(super) Arc<Confirms>);

type CbFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl ChannelCallback for Callbacks {
    fn close<'s, 'c, 'a>(&'s mut self, _: &'c Channel, close: CloseChannel) -> CbFut<'a, Result<(), AmqpError>>
    where
        's: 'a,
        'c: 'a,
        Self: 'a,
    {
        self.0.close(format!("channel closed by the broker: {} {}", close.reply_code(), close.reply_text()));
        Box::pin(async { Ok(()) })
    }

    fn cancel<'s, 'c, 'a>(&'s mut self, _: &'c Channel, _: Cancel) -> CbFut<'a, Result<(), AmqpError>>
    where
        's: 'a,
        'c: 'a,
        Self: 'a,
    {
        Box::pin(async { Ok(()) }) // we never consume
    }

    fn flow<'s, 'c, 'a>(&'s mut self, _: &'c Channel, active: bool) -> CbFut<'a, Result<bool, AmqpError>>
    where
        's: 'a,
        'c: 'a,
        Self: 'a,
    {
        Box::pin(async move { Ok(active) })
    }

    fn publish_ack<'s, 'c, 'a>(&'s mut self, _: &'c Channel, ack: Ack) -> CbFut<'a, ()>
    where
        's: 'a,
        'c: 'a,
        Self: 'a,
    {
        self.0.resolve(ack.delivery_tag(), ack.mutiple(), Outcome::Ack);
        Box::pin(async {})
    }

    fn publish_nack<'s, 'c, 'a>(&'s mut self, _: &'c Channel, nack: Nack) -> CbFut<'a, ()>
    where
        's: 'a,
        'c: 'a,
        Self: 'a,
    {
        self.0.resolve(nack.delivery_tag(), nack.multiple(), Outcome::Nack);
        Box::pin(async {})
    }

    fn publish_return<'s, 'c, 'a>(
        &'s mut self,
        _: &'c Channel,
        _: Return,
        _: BasicProperties,
        _: Vec<u8>,
    ) -> CbFut<'a, ()>
    where
        's: 'a,
        'c: 'a,
        Self: 'a,
    {
        Box::pin(async {}) // not `mandatory`: nothing is returned
    }
}

impl ConnectionCallback for Callbacks {
    fn close<'s, 'c, 'a>(&'s mut self, _: &'c Connection, close: Close) -> CbFut<'a, Result<(), AmqpError>>
    where
        's: 'a,
        'c: 'a,
        Self: 'a,
    {
        self.0.close(format!("connection closed by the broker: {} {}", close.reply_code(), close.reply_text()));
        Box::pin(async { Ok(()) })
    }

    fn blocked<'s, 'c, 'a>(&'s mut self, _: &'c Connection, reason: String) -> CbFut<'a, ()>
    where
        's: 'a,
        'c: 'a,
        Self: 'a,
    {
        // Publishes now wait for the confirm timeout and are retried.
        tracing::warn!(%reason, "RabbitMQ broker blocked publishing (resource alarm)");
        Box::pin(async {})
    }

    fn unblocked<'s, 'c, 'a>(&'s mut self, _: &'c Connection) -> CbFut<'a, ()>
    where
        's: 'a,
        'c: 'a,
        Self: 'a,
    {
        Box::pin(async {})
    }

    fn secret_updated<'s, 'c, 'a>(&'s mut self, _: &'c Connection) -> CbFut<'a, ()>
    where
        's: 'a,
        'c: 'a,
        Self: 'a,
    {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_delivery_tags() {
        let c = Confirms::new();
        let mut r1 = c.expect_next().expect("open");
        c.resolve(2, false, Outcome::Ack); // not ours
        assert!(r1.try_recv().is_err());
        c.resolve(1, false, Outcome::Nack);
        assert_eq!(r1.try_recv(), Ok(Outcome::Nack));
        let mut r2 = c.expect_next().expect("open");
        c.resolve(5, true, Outcome::Ack); // multiple covers tag 2
        assert_eq!(r2.try_recv(), Ok(Outcome::Ack));
        let mut r3 = c.expect_next().expect("open");
        c.close("gone".into());
        assert_eq!(r3.try_recv(), Ok(Outcome::Closed("gone".into())));
        assert_eq!(c.expect_next().expect_err("closed"), "gone");
        assert_eq!(c.closed().as_deref(), Some("gone"));
    }
}
