//! `sipbox:route/events`: routes raise events into the host's registry (the
//! same one the core, the MI and the registrar raise into).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use wasmtime::component::{HasData, Linker};

use crate::events::ebr::Filters;
use crate::events::{self, Event, EventBus, Params};
use crate::runtime::Services;
use crate::runtime::bindings::events::{self as wit, EventError as WitEventError};
use crate::runtime::bindings::types::{Param, Value};
use crate::runtime::budget::Budget;
use crate::runtime::replay::{Import, Journal, Journaled, Parked, fingerprint};
use crate::runtime::state::{HostState, need_tx, suspended};
use crate::transaction::{ServerTx, Transactions};

/// The events of an invocation: the one it was started for, and a wait the
/// guest gave its instance up for.
#[derive(Default)]
pub(crate) struct EventsState {
    /// The event of an `on-event` / `on-notify` invocation.
    pub(crate) event: Option<Event>,
    /// Set by a `wait-for-event` that gave the instance up (`suspend =
    /// "replay"`): the invocation ends with a trap and resumes by replay.
    pub(crate) parked: Option<Parked>,
}

impl EventsState {
    pub(crate) fn end(&mut self) {
        self.event = None;
        self.parked = None;
    }
}

/// What `events` reaches for one call ([`HostState::events`]).
pub(crate) struct EventsView<'a> {
    /// The subscriber of `notify-on-event`.
    pub(crate) tx: Option<&'a ServerTx>,
    pub(crate) journal: Option<&'a mut Journal>,
    pub(crate) suspended_ms: &'a Arc<AtomicU64>,
    /// The counted `[limits]`: raises, subscriptions, time waited.
    pub(crate) budget: &'a mut Budget,
    pub(crate) parked: &'a mut Option<Parked>,
    pub(crate) bus: Option<&'a EventBus>,
    /// For the live transactions, which a subscription's expiry tells.
    pub(crate) services: &'a Services,
}

impl<'a> EventsView<'a> {
    fn tx(&self) -> wasmtime::Result<&'a ServerTx> {
        need_tx(self.tx)
    }
}

impl Journaled for EventsView<'_> {
    fn journal(&mut self) -> Option<&mut Journal> {
        self.journal.as_deref_mut()
    }
}

struct HasEvents;

impl HasData for HasEvents {
    type Data<'a> = EventsView<'a>;
}

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasEvents>(linker, HostState::events)
}

/// OpenSIPS's MAX_EVENT_NAME.
const MAX_EVENT_NAME: usize = 64;
/// Longest notify subscription or wait a route may ask for, in seconds; the
/// host bounds every EBR wait with its own timer whatever the guest does.
pub(crate) const MAX_EBR_TIMEOUT_S: u32 = 3600;

/// The WIT form of an event registry refusal.
fn to_wit(e: events::EventError) -> WitEventError {
    match e {
        events::EventError::BadName(name) => WitEventError::BadName(name),
        events::EventError::BadFilter(why) => WitEventError::BadFilter(why),
        events::EventError::EbrLimit(limit) => WitEventError::TooManyWaiters(limit.try_into().unwrap_or(u32::MAX)),
        // The rest concern subscriptions to sinks, which routes do not make.
        other => WitEventError::Unavailable(other.to_string()),
    }
}

/// `bad-name`, with the name cut to a length a log line can take (the
/// guest may have passed megabytes).
fn bad_name(name: &str) -> WitEventError {
    WitEventError::BadName(name.chars().take(2 * MAX_EVENT_NAME).collect())
}

/// Why a route's event call needs a bus it does not have.
fn no_bus() -> WitEventError {
    WitEventError::Unavailable("the event interface is not running".into())
}

impl<'a> EventsView<'a> {
    /// Checks an EBR call's arguments: the event name, the timeout (bounded
    /// by the host whatever the guest asks) and the filters.
    fn ebr_request(
        &self,
        event: &str,
        filters: &[String],
        timeout_s: u32,
    ) -> Result<(&'a EventBus, Filters, Duration), WitEventError> {
        if event.is_empty() || event.len() > MAX_EVENT_NAME {
            return Err(bad_name(event));
        }
        if timeout_s == 0 || timeout_s > MAX_EBR_TIMEOUT_S {
            return Err(WitEventError::BadTimeout(timeout_s));
        }
        let bus = self.bus.ok_or_else(no_bus)?;
        let filters = Filters::parse(filters).map_err(to_wit)?;
        Ok((bus, filters, Duration::from_secs(timeout_s.into())))
    }
}

/// Ties a transaction's notify subscriptions to its life (OpenSIPS master's
/// `EBR_SUBS_EXPIRE_NOTIFY` for push notifications): when the last of them
/// expires, the transaction stops waiting for injected branches, so a caller
/// whose callee never registered gets the final response (408, or the 480 of
/// an `on-failure` route) at the subscription's timeout rather than at Timer
/// C; when the transaction ends, they go with it, so a late event runs no
/// `on-notify` for a finished call.
fn tie_to_transaction(bus: &EventBus, tx: &ServerTx, transactions: &Transactions) {
    let tid = tx.id();
    let transactions = transactions.clone();
    bus.on_notifications_expired(tid, move || {
        if transactions.find(tid).is_some_and(|tx| tx.stop_waiting()) {
            tracing::debug!(tid, "notify subscriptions expired: no more branches awaited");
        }
    });
    // One hook per transaction is enough (it cancels them all); a later
    // subscription finds it there already.
    if bus.notify_count(tid) == 1 {
        let owner = bus.clone();
        let hooked = tx.on_end(move |tid| {
            owner.cancel_notifications(tid);
        });
        // It ended meanwhile. (An ACK has no transaction: its subscriptions
        // just live until their timeout.)
        if !hooked && tx.has_transaction() {
            bus.cancel_notifications(tid);
        }
    }
}

/// The bytes a parameter's value holds (an int or null counts as 8).
fn value_len(value: &Value) -> usize {
    match value {
        Value::Str(s) => s.len(),
        Value::Int(_) | Value::Null => 8,
    }
}

fn to_host(value: Value) -> events::Value {
    match value {
        Value::Int(n) => events::Value::Int(n),
        Value::Str(s) => events::Value::Str(s),
        Value::Null => events::Value::Null,
    }
}

fn to_guest(value: &events::Value) -> Value {
    match value {
        events::Value::Int(n) => Value::Int(*n),
        events::Value::Str(s) => Value::Str(s.clone()),
        events::Value::Null => Value::Null,
    }
}

/// The WIT form of a host event, for `on-event`.
pub(crate) fn event_to_guest(event: &Event) -> crate::runtime::bindings::types::Event {
    crate::runtime::bindings::types::Event {
        name: event.name.to_string(),
        params: event.params.0.iter().map(|(n, v)| Param { name: n.clone(), value: to_guest(v) }).collect(),
    }
}

impl wit::Host for EventsView<'_> {
    fn raise_event(&mut self, name: String, params: Vec<Param>) -> wasmtime::Result<Result<u32, WitEventError>> {
        self.once(Import::RaiseEvent, &name, |state| Ok(state.raise(&name, params)))
    }

    fn notify_on_event(
        &mut self,
        event: String,
        filters: Vec<String>,
        route: String,
        timeout_s: u32,
    ) -> wasmtime::Result<Result<(), WitEventError>> {
        self.tx()?;
        self.once(Import::NotifyOnEvent, (&event, &filters, &route, timeout_s), |state| {
            state.subscribe(&event, &filters, route.clone(), timeout_s)
        })
    }

    async fn wait_for_event(
        &mut self,
        event: String,
        filters: Vec<String>,
        timeout_s: u32,
    ) -> wasmtime::Result<WaitResult> {
        if self.journal.is_some() {
            return self.park_for_event(event, filters, timeout_s);
        }
        // A guest parked in place holds a pool slot: at most `max_parked`
        // of them, so waiting calls leave room for calls being routed.
        let services = self.services;
        let Some(slot) = services.limit_stats.park(services.max_parked) else {
            return Ok(Err(WitEventError::TooManyWaiters(services.max_parked)));
        };
        let (wait, timeout) = match self.register_wait(&event, &filters, timeout_s) {
            Ok(Some(registered)) => registered,
            // The invocation's wait time is spent: a timeout, at once.
            Ok(None) => return Ok(Ok(None)),
            Err(e) => return Ok(Err(e)),
        };
        let started = tokio::time::Instant::now();
        let got = suspended(self.suspended_ms, timeout, wait).await;
        self.budget.waited(started.elapsed());
        drop(slot);
        Ok(Ok(got.map(|ev| event_to_guest(&ev))))
    }
}

/// What `wait-for-event` returns to the guest (and what its journal entry
/// holds: a replay's resume records the same type, `Runtime::resume_by_replay`).
pub(crate) type WaitResult = Result<Option<crate::runtime::bindings::types::Event>, WitEventError>;

impl EventsView<'_> {
    /// `wait-for-event` with `suspend = "replay"`: on replay, the event (or
    /// timeout) the first run waited for; live, the waiter is registered and
    /// the run ends with the guest parked ([`Parked`]), its instance dropped.
    fn park_for_event(&mut self, event: String, filters: Vec<String>, timeout_s: u32) -> wasmtime::Result<WaitResult> {
        let args = fingerprint((&event, &filters, timeout_s));
        if let Some(recorded) = self.replayed(Import::WaitForEvent, args) {
            return recorded;
        }
        match self.register_wait(&event, &filters, timeout_s) {
            Ok(Some((wait, _))) => {
                *self.parked = Some(Parked { wait: Box::pin(wait), args });
                Err(wasmtime::format_err!("parked in wait-for-event, to be resumed by replay"))
            }
            Ok(None) => {
                self.record(Import::WaitForEvent, args, WaitResult::Ok(None));
                Ok(Ok(None))
            }
            // Recorded: a later run must see the same refusal (the registry's
            // limits may have room by then).
            Err(e) => {
                self.record(Import::WaitForEvent, args, WaitResult::Err(e.clone()));
                Ok(Err(e))
            }
        }
    }

    /// Registers a `wait-for-event` waiter after checking the call and
    /// spending a subscription of the invocation's budget; the waiter
    /// resolves with the event or `None` at the returned timeout, which is
    /// what is left of the wait budget at most. `None` when none is left.
    #[allow(clippy::type_complexity, reason = "an impl Future in a tuple in an Option in a Result: named nowhere else")]
    fn register_wait(
        &mut self,
        event: &str,
        filters: &[String],
        timeout_s: u32,
    ) -> Result<Option<(impl Future<Output = Option<Event>> + Send + 'static, Duration)>, WitEventError> {
        let (bus, filters, asked) = self.ebr_request(event, filters, timeout_s)?;
        let stats = &self.services.limit_stats;
        if !self.budget.subscription(stats) {
            return Err(WitEventError::TooManyWaiters(self.budget.max_subscriptions()));
        }
        let timeout = self.budget.wait_for(asked, stats);
        if timeout.is_zero() {
            return Ok(None);
        }
        let wait = bus.wait_for_event(event, filters, timeout).map_err(to_wit)?;
        Ok(Some((wait, timeout)))
    }

    fn raise(&mut self, name: &str, params: Vec<Param>) -> Result<u32, WitEventError> {
        if name.is_empty() || name.len() > MAX_EVENT_NAME {
            return Err(bad_name(name));
        }
        let Some(bus) = self.bus else {
            return Err(no_bus());
        };
        if !self.budget.raise(&self.services.limit_stats) {
            return Err(WitEventError::Unavailable(
                "this invocation raised as many events as [limits] max_raises allows".into(),
            ));
        }
        let bytes: usize = params.iter().map(|p| p.name.as_ref().map_or(0, String::len) + value_len(&p.value)).sum();
        if !self.budget.fits_one(bytes, &self.services.limit_stats) {
            return Err(WitEventError::Unavailable(format!(
                "event parameters of {bytes} bytes: more than [limits] max_edit_bytes"
            )));
        }
        let params = Params(params.into_iter().map(|p| (p.name, to_host(p.value))).collect());
        let reached = bus.raise(Event::new(name, params));
        Ok(reached as u32)
    }

    /// `notify-on-event`: the subscription, tied to the transaction.
    fn subscribe(
        &mut self,
        event: &str,
        filters: &[String],
        route: String,
        timeout_s: u32,
    ) -> wasmtime::Result<Result<(), WitEventError>> {
        // The subscriber is the invocation's transaction: on-notify gets its
        // id back to inject branches into it.
        let tx = self.tx()?;
        let tid = tx.id();
        let (bus, filters, timeout) = match self.ebr_request(event, filters, timeout_s) {
            Ok(request) => request,
            Err(e) => return Ok(Err(e)),
        };
        if !self.budget.subscription(&self.services.limit_stats) {
            return Ok(Err(WitEventError::TooManyWaiters(self.budget.max_subscriptions())));
        }
        if let Err(e) = bus.notify_on_event(event, filters, Arc::from(route), tid, timeout) {
            return Ok(Err(to_wit(e)));
        }
        tie_to_transaction(bus, tx, &self.services.transactions);
        Ok(Ok(()))
    }
}
