//! Suspension by replay (`[limits] suspend = "replay"`): a guest that calls
//! `wait-for-event` gives its instance back while it waits, and is resumed by
//! running its invocation again in a new instance, where every import with an
//! effect outside the invocation returns what it returned the first time
//! instead of running again, until the guest reaches the wait, which now
//! returns the event.
//!
//! Why: a guest kept parked in its instance holds a pool slot and ~54 KiB of
//! pages and wasmtime data (bench/RESULTS.md) for as long as it waits; a
//! replayed one holds only this journal, a few hundred bytes. The price is
//! the instantiation and the guest's work up to the wait, done again on
//! resume, and one rule for the route: given the same import results it must
//! make the same import calls (the contract of durable-execution engines).
//! WASI randomness is seeded per invocation so that Rust's `HashMap` order,
//! for one, is the same on every run, and WASI clock readings are journaled
//! like calls ([`ClockLog`]), so a replayed guest reads the times its first
//! run read. A guest that diverges is caught at the first import that differs
//! from the journal, and its request is answered 500.
//!
//! What is journaled and what runs again: imports that only read or change
//! the invocation's own state (request accessors, edits, branches, hooks,
//! `config.get`) run again, and rebuild that state; imports that send, store
//! or read shared state (`tm.reply`, `tm.relay`, `location.lookup`,
//! `events.raise-event`, `rest.*`, ...) go through [`Journaled::once`].
//! [`Import`] names every import of the `route` world and says which it is
//! ([`Import::on_replay`]), so a new import is a decision, not an oversight.

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The calls with outside effects one invocation made, in order.
pub(crate) struct Journal {
    entries: Vec<Entry>,
    /// Entries the current run has replayed; while it is below
    /// `entries.len()` the guest is being replayed, after it runs live.
    cursor: usize,
    /// Seed of the invocation's WASI random generators, the same on every run.
    pub(crate) seed: [u8; 32],
    /// The WASI clock readings, shared with the instance's clocks.
    pub(crate) clocks: ClockLog,
}

struct Entry {
    import: Import,
    /// Fingerprint of the arguments, to catch a guest that diverged.
    args: u64,
    result: Box<dyn Any + Send + Sync>,
}

/// A fingerprint of an import's arguments. `DefaultHasher::new()` has fixed
/// keys, so it is the same on every run.
pub(crate) fn fingerprint(args: impl Hash) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    args.hash(&mut hasher);
    hasher.finish()
}

impl Journal {
    pub(crate) fn new() -> Journal {
        Journal { entries: Vec::new(), cursor: 0, seed: rand::random(), clocks: ClockLog::new() }
    }

    /// The guest is re-running calls the journal holds.
    pub(crate) fn replaying(&self) -> bool {
        self.cursor < self.entries.len()
    }

    /// Starts the next run from the first entry.
    pub(crate) fn rewind(&mut self) {
        self.cursor = 0;
        self.clocks.rewind();
    }

    /// During a replay, the recorded result of the next call, which must be
    /// `import` with the same arguments; `None` when the run is live.
    pub(crate) fn replay<T: Clone + 'static>(&mut self, import: Import, args: u64) -> Option<wasmtime::Result<T>> {
        debug_assert_eq!(import.on_replay(), OnReplay::Journaled, "{import} is not a journaled import");
        let entry = self.entries.get(self.cursor)?;
        self.cursor += 1;
        if entry.import != import || entry.args != args {
            let how = if entry.import == import { "with other arguments" } else { "instead" };
            return Some(Err(wasmtime::format_err!(
                "route diverged on replay: call {} of its journal was {}, the guest called {import} {how} \
                 (a route run with suspend = \"replay\" must make the same calls given the same results)",
                self.cursor,
                entry.import,
            )));
        }
        match entry.result.downcast_ref::<T>() {
            Some(result) => Some(Ok(result.clone())),
            None => Some(Err(wasmtime::format_err!("journal entry {} of {import} has another type", self.cursor))),
        }
    }

    /// Appends the result of a live call.
    pub(crate) fn record<T: Send + Sync + 'static>(&mut self, import: Import, args: u64, result: T) {
        debug_assert!(!self.replaying(), "recording in the middle of a replay");
        debug_assert_eq!(import.on_replay(), OnReplay::Journaled, "{import} is not a journaled import");
        self.entries.push(Entry { import, args, result: Box::new(result) });
        self.cursor = self.entries.len();
    }
}

/// Defines [`Import`] from one list, each variant with its WIT name, so the
/// variants, their names and [`Import::ALL`] cannot drift apart.
macro_rules! imports {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// Every function the `route` world imports (`wit/route.wit`), named in the
        /// journal and in divergence errors by its WIT name ([`Import::wit_name`]).
        /// Adding an import to the WIT means adding it here (a test holds the two
        /// together), and the `match` in [`Import::on_replay`] then asks whether a
        /// replay may run it again.
        #[cfg_attr(not(test), allow(dead_code, reason = "rerun imports are named only in tests"))]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Import {
            $($variant,)*
        }

        impl Import {
            /// Every import, in WIT order.
            #[cfg(test)]
            const ALL: &[Import] = &[$(Import::$variant,)*];

            /// The WIT name: `interface.function`, or `interface.resource.method`.
            pub(crate) fn wit_name(self) -> &'static str {
                match self {
                    $(Import::$variant => $name,)*
                }
            }
        }
    };
}

// Imports that run again on replay are named only here, in `on_replay` and
// in the test that holds this list to the WIT.
imports! {
    // message.request
    RequestMethod = "message.request.method",
    RequestRuri = "message.request.ruri",
    RequestSetRuri = "message.request.set-ruri",
    RequestHeader = "message.request.header",
    RequestHeaders = "message.request.headers",
    RequestAddHeader = "message.request.add-header",
    RequestRemoveHeader = "message.request.remove-header",
    RequestBody = "message.request.body",
    RequestSource = "message.request.source",
    RequestCallId = "message.request.call-id",
    RequestFromUri = "message.request.from-uri",
    RequestFromTag = "message.request.from-tag",
    RequestToUri = "message.request.to-uri",
    RequestToTag = "message.request.to-tag",
    // message.reply
    ReplyStatus = "message.reply.status",
    ReplyReason = "message.reply.reason",
    ReplyHeader = "message.reply.header",
    ReplyHeaders = "message.reply.headers",
    ReplySource = "message.reply.source",
    // tm
    TmReply = "tm.reply",
    TmReplyWithHeaders = "tm.reply-with-headers",
    TmRecordRoute = "tm.record-route",
    TmLooseRoute = "tm.loose-route",
    TmAppendBranch = "tm.append-branch",
    TmRelay = "tm.relay",
    TmOnReply = "tm.on-reply",
    TmOnFailure = "tm.on-failure",
    TmCurrentTid = "tm.current-tid",
    TmIsMyself = "tm.is-myself",
    TmNewtran = "tm.newtran",
    TmWaitForNewBranches = "tm.wait-for-new-branches",
    TmWaitNoMoreBranches = "tm.wait-no-more-branches",
    TmInjectBranches = "tm.inject-branches",
    // location
    LocationSave = "location.save",
    LocationLookup = "location.lookup",
    LocationLookupAor = "location.lookup-aor",
    LocationUnregister = "location.unregister",
    // events
    RaiseEvent = "events.raise-event",
    NotifyOnEvent = "events.notify-on-event",
    WaitForEvent = "events.wait-for-event",
    // rest
    RestGet = "rest.get",
    RestPost = "rest.post",
    // auth
    AuthRequired = "auth.required",
    AuthAuthorize = "auth.authorize",
    AuthChallenge = "auth.challenge",
    AuthCheckTo = "auth.check-to",
    AuthCheckFrom = "auth.check-from",
    // config
    ConfigGet = "config.get",
    // log
    Log = "log.log",
}

/// What an import does when a replay runs its invocation again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnReplay {
    /// It runs again: it reads or changes only the invocation's own state
    /// (the request, the route's edits, branches and hooks, the route's
    /// settings), which the replay so rebuilds.
    Reruns,
    /// Its effect outside the invocation happens once: live, the result is
    /// recorded; on replay the recorded result is returned and the effect is
    /// not repeated ([`Journaled::once`]). What it does to the invocation's
    /// own state (`tm.relay` consuming the branches) is redone.
    Journaled,
    /// It is skipped: its only effect, a log line, happened on the first run.
    Skipped,
}

impl Import {
    /// How a replay treats the import. Journaled are those that send
    /// (replies, relays, events, HTTP), store (the registrar) or read state
    /// other invocations change (location, other transactions).
    pub(crate) fn on_replay(self) -> OnReplay {
        use Import::*;
        match self {
            RequestMethod | RequestRuri | RequestSetRuri | RequestHeader | RequestHeaders | RequestAddHeader
            | RequestRemoveHeader | RequestBody | RequestSource | RequestCallId | RequestFromUri | RequestFromTag
            | RequestToUri | RequestToTag => OnReplay::Reruns,
            ReplyStatus | ReplyReason | ReplyHeader | ReplyHeaders | ReplySource => OnReplay::Reruns,
            TmRecordRoute | TmLooseRoute | TmAppendBranch | TmOnReply | TmOnFailure | TmCurrentTid | TmIsMyself
            | TmNewtran => OnReplay::Reruns,
            TmReply | TmReplyWithHeaders | TmRelay | TmWaitForNewBranches | TmWaitNoMoreBranches | TmInjectBranches => {
                OnReplay::Journaled
            }
            LocationSave | LocationLookup | LocationLookupAor | LocationUnregister => OnReplay::Journaled,
            RaiseEvent | NotifyOnEvent | WaitForEvent => OnReplay::Journaled,
            RestGet | RestPost => OnReplay::Journaled,
            // The route's settings are read again as its code is run again: a
            // reload that changes them between the runs changes the route.
            ConfigGet => OnReplay::Reruns,
            // authorize counts nonces and failures; challenge sends.
            AuthAuthorize | AuthChallenge => OnReplay::Journaled,
            AuthRequired | AuthCheckTo | AuthCheckFrom => OnReplay::Reruns,
            Log => OnReplay::Skipped,
        }
    }
}

impl std::fmt::Display for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wit_name())
    }
}

/// The WASI clock readings of one invocation, in the order the guest took
/// them (wall and monotonic in one sequence): live, each reading is
/// recorded; on replay the recorded ones are returned in order, then the
/// clocks are live again. Shared (`Arc`) because the clocks live in the
/// instance's WASI context while the journal outlives the instance.
#[derive(Clone)]
pub(crate) struct ClockLog {
    readings: Arc<Mutex<Readings>>,
    /// Monotonic readings count from here, the invocation's start, on every
    /// run: a resumed run's live readings then follow its recorded ones.
    origin: std::time::Instant,
}

#[derive(Default)]
struct Readings {
    nanos: Vec<u64>,
    cursor: usize,
}

impl ClockLog {
    fn new() -> ClockLog {
        ClockLog { readings: Arc::default(), origin: std::time::Instant::now() }
    }

    fn read(&self, live: impl FnOnce() -> u64) -> u64 {
        // A poisoned lock can only come from a panic in this function, which
        // has none; the readings stay usable.
        let mut readings = self.readings.lock().unwrap_or_else(|e| e.into_inner());
        let Readings { nanos, cursor } = &mut *readings;
        let value = match nanos.get(*cursor) {
            Some(recorded) => *recorded,
            None => {
                let value = live();
                nanos.push(value);
                value
            }
        };
        *cursor += 1;
        value
    }

    fn rewind(&self) {
        self.readings.lock().unwrap_or_else(|e| e.into_inner()).cursor = 0;
    }

    /// The invocation's `wasi:clocks/wall-clock`.
    pub(crate) fn wall_clock(&self) -> impl HostWallClock + 'static {
        JournaledClock(self.clone())
    }

    /// The invocation's `wasi:clocks/monotonic-clock`.
    pub(crate) fn monotonic_clock(&self) -> impl HostMonotonicClock + 'static {
        JournaledClock(self.clone())
    }
}

/// A clock reading through a [`ClockLog`]. Monotonic readings are counted
/// from the log's origin (WASI promises only that they never go back), so a
/// replay's new clock returns the recorded readings, then later ones.
struct JournaledClock(ClockLog);

impl HostWallClock for JournaledClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        let live = || {
            let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            since_epoch.map(|d| d.as_nanos() as u64).unwrap_or(0)
        };
        Duration::from_nanos(self.0.read(live))
    }
}

impl HostMonotonicClock for JournaledClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.read(|| self.0.origin.elapsed().as_nanos() as u64)
    }
}

/// A `wait-for-event` the guest gave its instance up for: the registered
/// waiter (bounded by its own timeout), and the call's identity for the
/// journal entry its result becomes.
pub(crate) struct Parked {
    pub(crate) wait: std::pin::Pin<Box<dyn std::future::Future<Output = Option<crate::events::Event>> + Send>>,
    pub(crate) args: u64,
}

/// The journal as the host side of an interface reaches it: implemented by
/// the views (`host::*`) of interfaces with journaled imports.
pub(crate) trait Journaled {
    /// The invocation's journal; `None` with `suspend = "in-place"`.
    fn journal(&mut self) -> Option<&mut Journal>;

    /// Runs an import whose effect reaches outside the invocation once per
    /// invocation: live, it runs `live` and records the result; on replay it
    /// returns the recorded result and `live` does not run. Without a
    /// journal (`suspend = "in-place"`) it just runs `live`.
    fn once<T: Clone + Send + Sync + 'static>(
        &mut self,
        import: Import,
        args: impl Hash,
        live: impl FnOnce(&mut Self) -> wasmtime::Result<T>,
    ) -> wasmtime::Result<T> {
        let Some(journal) = self.journal() else { return live(self) };
        let args = fingerprint(args);
        if let Some(recorded) = journal.replay(import, args) {
            return recorded;
        }
        let result = live(self)?;
        self.record(import, args, result.clone());
        Ok(result)
    }

    /// The first half of [`once`](Self::once) for an import that awaits
    /// (`rest.*`): the recorded result when the guest is being replayed.
    fn replayed<T: Clone + 'static>(&mut self, import: Import, args: u64) -> Option<wasmtime::Result<T>> {
        self.journal()?.replay(import, args)
    }

    /// The second half: records a live result, when there is a journal.
    fn record<T: Send + Sync + 'static>(&mut self, import: Import, args: u64, result: T) {
        if let Some(journal) = self.journal() {
            journal.record(import, args, result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_returns_recorded_results_in_order_then_goes_live() {
        let mut journal = Journal::new();
        journal.record(Import::TmReply, fingerprint((180u16, "Ringing")), Ok::<(), String>(()));
        journal.record(
            Import::LocationLookup,
            fingerprint("sip:bob@x"),
            vec![("sip:bob@1.2.3.4".to_string(), None::<String>)],
        );
        journal.rewind();
        assert!(journal.replaying());
        let reply: Result<(), String> =
            journal.replay(Import::TmReply, fingerprint((180u16, "Ringing"))).unwrap().unwrap();
        assert_eq!(reply, Ok(()));
        let found: Vec<(String, Option<String>)> =
            journal.replay(Import::LocationLookup, fingerprint("sip:bob@x")).unwrap().unwrap();
        assert_eq!(found[0].0, "sip:bob@1.2.3.4");
        assert!(!journal.replaying());
        assert!(journal.replay::<u32>(Import::RaiseEvent, 0).is_none(), "live after the last entry");
    }

    #[test]
    fn clock_readings_are_replayed_in_order_then_live() {
        let journal = Journal::new();
        let (wall, mono) = (journal.clocks.wall_clock(), journal.clocks.monotonic_clock());
        let first = (wall.now(), mono.now(), wall.now());
        let mut journal = journal;
        journal.rewind();
        // A replay's instance gets new clocks over the same log.
        let (wall, mono) = (journal.clocks.wall_clock(), journal.clocks.monotonic_clock());
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!((wall.now(), mono.now(), wall.now()), first, "the replay read other times");
        assert!(wall.now() > first.2, "after the recorded readings the clock is live again");
        assert!(mono.now() > first.1, "the monotonic clock went back after the replay");
    }

    #[test]
    fn a_guest_that_calls_something_else_on_replay_is_caught() {
        let mut journal = Journal::new();
        journal.record(Import::TmReply, fingerprint((180u16, "Ringing")), Ok::<(), String>(()));
        journal.rewind();
        let err = journal.replay::<Result<(), String>>(Import::TmRelay, fingerprint(())).unwrap().unwrap_err();
        let err = err.to_string();
        assert!(err.contains("diverged") && err.contains("was tm.reply, the guest called tm.relay instead"), "{err}");
        journal.rewind();
        let err = journal
            .replay::<Result<(), String>>(Import::TmReply, fingerprint((183u16, "Progress")))
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("other arguments"), "{err}");
    }

    /// Every function `wit/route.wit` imports into the `route` world, as
    /// `interface.function` or `interface.resource.method`: the WIT's
    /// interfaces hold only imports (the world's exports are its own).
    fn wit_imports() -> Vec<String> {
        let wit = include_str!("../../../wit/route.wit");
        let mut scopes: Vec<Option<String>> = Vec::new();
        let mut names = Vec::new();
        for line in wit.lines() {
            let code = line.split("//").next().unwrap_or_default().trim();
            let mut words = code.split_whitespace();
            let opens = match (words.next(), words.next()) {
                (Some("interface" | "resource"), Some(name)) => Some(name.trim_end_matches('{').to_string()),
                _ => None,
            };
            if let Some((name, rest)) = code.split_once(':')
                && rest.trim_start().starts_with("func(")
                && scopes.first().is_some_and(Option::is_some)
            {
                let path: Vec<&str> = scopes.iter().flatten().map(String::as_str).collect();
                names.push(format!("{}.{}", path.join("."), name.trim().trim_start_matches('%')));
            }
            for c in code.chars() {
                match c {
                    '{' => scopes.push(opens.clone().filter(|_| !code.contains('}'))),
                    '}' => drop(scopes.pop()),
                    _ => {}
                }
            }
        }
        names
    }

    #[test]
    fn every_wit_import_is_an_import_variant() {
        let wit = wit_imports();
        let known: Vec<&str> = Import::ALL.iter().map(|i| i.wit_name()).collect();
        assert_eq!(wit, known, "wit/route.wit and Import disagree: add the import to Import and decide its on_replay");
        assert!(wit.contains(&"tm.relay".to_string()) && wit.contains(&"message.request.set-ruri".to_string()));
    }
}
