//! End-to-end tests: the real `sipbox` binary, driven over loopback by SIPp
//! (scenarios in `tests/sipp/`) and by raw UDP datagrams.
//!
//! Each test gets its own temporary directory, its own ports and its own
//! server process (see [`harness`]), so the tests run in parallel. Every wait is
//! bounded; on a failure the server's log and SIPp's error and message traces
//! are printed with the panic.
//!
//! One file per topic:
//! - [`register`]: registrations, removal with `Expires: 0`, binding queries, TCP;
//! - [`call`]: a whole call through the proxy, and `404` for unknown users;
//! - [`cancel`]: cancelling a ringing call;
//! - [`fork`]: parallel forking to two contacts, the loser is cancelled;
//! - [`restart`]: registrations survive a graceful restart;
//! - [`malformed`]: `400` for broken requests, silence for garbage;
//! - [`trap`]: a trapping, runaway or memory-hungry route answers `500`; the server carries on.
//! - [`abuse`]: every other abuse a route can commit (recursion, event and subscription floods,
//!   waiting for ever, branch, header, HTTP and log floods, a trap in each export) is stopped
//!   at its limit and counted, and the calls around it go through.
//! - [`push`]: push notifications with event-based routing (notify and wait styles), timeouts, CANCEL;
//! - [`pickup`]: call pickup through a raised event and branch injection;
//! - [`dtmf`]: a call waiting for a DTMF event raised over the MI;
//! - [`ebr_trap`]: routes that trap after subscribing to or waiting for an event;
//! - [`events`]: registrar, pike and threshold events to UDP subscribers and an event route.
//! - [`relay`]: the fixed-next-hop relay of the benchmark, with and without Record-Route.
//! - [`check_route`]: `sipbox check-route` under the limits of a `--config`.
//! - [`reload`]: the route module replaced every 2 s under 200 calls/s, broken files refused.
//! - [`project`]: `sipbox new` then `sipbox test` outside the repository, a broken route refused.
//! - [`test_command`]: `sipbox test` over every example's scenarios, its exit status, report and JUnit file.

mod harness;

mod abuse;
mod auth;
mod call;
mod cancel;
mod check_route;
mod dtmf;
mod ebr_trap;
mod events;
mod fork;
mod malformed;
mod pickup;
mod project;
mod push;
mod register;
mod relay;
mod reload;
mod restart;
mod scan;
mod test_command;
mod trap;
