//! A route that misbehaves on request, to test that the host confines a
//! broken or hostile guest to its own invocation, each abuse within a limit
//! of `[limits]` (docs/LIMITS.md). An INVITE whose Request-URI user is
//! - `trap` panics (a trap: `unreachable` under `panic = "abort"`),
//! - `loop` spins forever (until the host's CPU deadline),
//! - `oom` allocates until its memory limit,
//! - `recurse` recurses until its stack overflows,
//! - `error` returns an error (no trap: the handler fails, the host answers
//!   500 and counts it in `routes:errors`),
//! - `raise` raises events until refused (`max_raises`),
//! - `subscribe` subscribes with `notify-on-event` until refused
//!   (`max_subscriptions`),
//! - `wait` waits for an event that never comes, again and again (the wait
//!   budget `max_wait_s`, then its CPU time, end it),
//! - `branches` appends branches until refused (`[server] max_branches`),
//! - `headers` adds headers until refused (`max_edit_bytes`),
//! - `http` makes HTTP requests until refused (`max_http_requests`),
//!
//! each of which then returns the refusal as its error (500), and
//! - `logs` writes 10,000 log lines (`max_log_lines` keeps 100), then is
//!   routed like `erin`;
//! - `reply-trap` and `failure-trap` are routed like `erin` with an
//!   `on-reply` / `on-failure` hook that traps;
//! - `notify-trap` subscribes `notify-on-event` to `E_ABUSE` with an
//!   `on-notify` route that traps, and waits for branches (5 s).
//!
//! Every other request is routed like the default route. The event route
//! `error` returns an error, the event route `trap` traps (any other does
//! nothing).

use sipbox_guest::{Event, Method, Reply, Request, Result, Route, events, log, proxy, rest, tm};

struct TrapRoute;

impl Route for TrapRoute {
    fn on_request(req: &Request) -> Result {
        if req.method() == Method::Invite {
            match req.ruri_user().as_deref() {
                Some("trap") => panic!("trap requested by {}", req.call_id()),
                Some("loop") => spin_forever(),
                Some("oom") => exhaust_memory(),
                Some("recurse") => {
                    let depth = recurse(std::hint::black_box(1));
                    return Err(format!("recursion ended at {depth}").into());
                }
                Some("error") => return Err(format!("error requested by {}", req.call_id()).into()),
                Some("raise") => return until_refused("raise-event", || events::raise("E_ABUSE", &[]).map(drop)),
                Some("subscribe") => {
                    return until_refused("notify-on-event", || events::notify_on_event("E_NEVER", &[], "never", 60));
                }
                Some("wait") => wait_forever(),
                Some("branches") => {
                    let target = "sip:nobody@127.0.0.1:9".to_string();
                    return until_refused("append-branch", || tm::append_branch(&target));
                }
                Some("headers") => {
                    let value = "x".repeat(1000);
                    return until_refused("add-header", || req.add_header("X-Abuse", &value));
                }
                Some("http") => {
                    // A closed port: each request fails at once, so only the
                    // count bounds the loop, not the time.
                    return until_refused("rest.get", || match rest::get("http://127.0.0.1:9/", &[], 1000) {
                        Err(e) if e.to_string().contains("max_http_requests") => Err(e),
                        _ => Ok(()),
                    });
                }
                Some("logs") => {
                    for n in 0..10_000 {
                        log::info(&format!("log flood line {n}"));
                    }
                    return relay_as(req, "erin");
                }
                Some("reply-trap") => {
                    tm::on_reply("trap");
                    return relay_as(req, "erin");
                }
                Some("failure-trap") => {
                    tm::on_failure("trap");
                    return relay_as(req, "erin");
                }
                Some("notify-trap") => {
                    events::notify_on_event("E_ABUSE", &[], "trap", 5)?;
                    return tm::wait_for_new_branches(None);
                }
                _ => {}
            }
        }
        // Everything else as the default route.
        if proxy::handle_common(req)? {
            return Ok(());
        }
        tm::record_route();
        proxy::relay_to_contacts(req)
    }

    fn on_reply(route: &str, _req: &Request, reply: &Reply) -> Result {
        match route {
            "trap" => panic!("on-reply trap for a {}", reply.status()),
            _ => Ok(()),
        }
    }

    fn on_failure(route: &str, _req: &Request, reply: &Reply) -> Result {
        match route {
            "trap" => panic!("on-failure trap for a {}", reply.status()),
            _ => Ok(()),
        }
    }

    fn on_event(route: &str, event: &Event) -> Result {
        match route {
            "error" => Err(format!("error requested by event {}", event.name).into()),
            "trap" => panic!("on-event trap for {}", event.name),
            _ => Ok(()),
        }
    }

    fn on_notify(route: &str, event: &Event, _tid: tm::Tid) -> Result {
        match route {
            "trap" => panic!("on-notify trap for {}", event.name),
            _ => Ok(()),
        }
    }
}

/// Routes the request to `user`'s contacts, as if it had been sent to them.
fn relay_as(req: &Request, user: &str) -> Result {
    let ruri = req.ruri();
    let host = ruri.split_once('@').map_or("127.0.0.1", |(_, host)| host);
    req.set_ruri(&format!("sip:{user}@{host}"))?;
    tm::record_route();
    proxy::relay_to_contacts(req)
}

/// Calls `abuse` until the host refuses it, then fails with the count and
/// the refusal (the test reads both from the log).
fn until_refused(what: &str, mut abuse: impl FnMut() -> Result) -> Result {
    let mut calls: u64 = 0;
    loop {
        if let Err(e) = abuse() {
            return Err(format!("{what} refused after {calls} calls: {e}").into());
        }
        calls += 1;
    }
}

fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        // black_box keeps the loop from being optimised into a bare trap.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch each MiB so it is really committed; when memory.grow is
        // refused the allocator aborts, which traps.
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

/// Recurses without end. The frame lives in WebAssembly locals (no array,
/// which Rust would put on its shadow stack in linear memory, whose overflow
/// is an out-of-bounds access instead), so the host's stack limit is what
/// stops it; the addition after the call keeps it from becoming a loop.
#[expect(unconditional_recursion, reason = "the abuse under test: it ends in a stack overflow")]
fn recurse(depth: u64) -> u64 {
    recurse(std::hint::black_box(depth + 1)).wrapping_add(depth)
}

/// Waits for an event nobody raises, for an hour each time, for ever: the
/// host cuts the waits to `max_wait_s` altogether, after which each returns
/// at once and the loop spends its CPU time.
fn wait_forever() -> ! {
    loop {
        let _ = std::hint::black_box(events::wait_for_event("E_NEVER", &[], 3600));
    }
}

sipbox_guest::route!(TrapRoute);
