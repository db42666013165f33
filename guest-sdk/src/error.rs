//! [`Error`], what every fallible call of the SDK returns, and [`Result`].
//!
//! Each host interface refuses a call with its own WIT variant
//! ([`TmError`], [`MessageError`], [`LocationError`], [`EventError`],
//! [`RestError`]), each case documented in `wit/route.wit` with when it
//! happens and what to do. [`Error`] holds any of them, a bad route setting
//! ([`ConfigError`]) or a message of the route's own, so a handler uses `?`
//! on all of them:
//!
//! ```no_run
//! use sipbox_guest::{Request, Result, config, tm};
//!
//! fn forward(req: &Request) -> Result {
//!     let next_hop: String = config::require("next_hop")?;
//!     req.set_ruri(&format!("sip:{next_hop}"))?;
//!     tm::relay()?;
//!     Ok(())
//! }
//! ```
//!
//! An `Err` returned from a [`Route`](crate::Route) handler reaches the host
//! as the export's error string (this type's `Display`): the host logs it
//! with the module and Call-ID, counts it (`routes:errors`) and answers a
//! request the route neither answered nor relayed with `500`.

use core::fmt;

pub use crate::bindings::sipbox::route::auth::AuthError;
pub use crate::bindings::sipbox::route::events::EventError;
pub use crate::bindings::sipbox::route::location::LocationError;
pub use crate::bindings::sipbox::route::message::MessageError;
pub use crate::bindings::sipbox::route::rest::RestError;
pub use crate::bindings::sipbox::route::tm::TmError;
pub use crate::config::ConfigError;

/// Why a call failed: the host's refusal, a bad setting, or the route's own
/// reason.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// An edit of the request was refused ([`Request::set_ruri`](crate::Request::set_ruri),
    /// [`Request::add_header`](crate::Request::add_header)).
    Message(MessageError),
    /// The transaction layer refused a reply, relay or branch ([`tm`](crate::tm)).
    Tm(TmError),
    /// The registrar did not handle the REGISTER ([`location::save`](crate::location::save)).
    Location(LocationError),
    /// An event call was refused ([`events`](crate::events)).
    Event(EventError),
    /// An HTTP exchange gave no response ([`rest`](crate::rest)).
    Rest(RestError),
    /// A request was not authorized ([`auth`](crate::auth)), for a route
    /// that gives up on it with `?`.
    Auth(AuthError),
    /// A route setting is missing or does not parse ([`config`](crate::config)).
    Config(ConfigError),
    /// The route's own reason (`Err("no route for this number".into())`).
    Other(String),
}

/// The result of a fallible call, and of a [`Route`](crate::Route) handler
/// (`Result` alone is `Result<()>`).
pub type Result<T = (), E = Error> = core::result::Result<T, E>;

impl Error {
    /// True when the error says the request (or transaction `tid`) is
    /// already finished, by someone else: answered (the host's 483 or 487,
    /// another branch's 200), cancelled, ended, or gone. Nothing is left to
    /// do for it, so a route usually logs such an error and returns `Ok`
    /// instead of failing.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            Error::Tm(TmError::AlreadyAnswered | TmError::Completed | TmError::TooManyHops | TmError::TransactionGone)
                | Error::Location(LocationError::AlreadyAnswered)
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Message(e) => match e {
                MessageError::BadUri(why) => write!(f, "bad URI: {why}"),
                MessageError::BadHeader(why) => write!(f, "bad header: {why}"),
                MessageError::HostOwnedHeader(name) => write!(f, "header {name} is written by the host"),
            },
            Error::Tm(e) => match e {
                TmError::AlreadyAnswered => f.write_str("the request was already answered"),
                TmError::Completed => f.write_str("the transaction is completed"),
                TmError::TransactionGone => f.write_str("the transaction is gone (ended or never existed)"),
                TmError::TooManyHops => f.write_str("Max-Forwards exhausted (483 sent)"),
                TmError::BadTarget(why) => write!(f, "bad target: {why}"),
                TmError::BadReply(why) => write!(f, "bad reply: {why}"),
                TmError::Transport(why) => write!(f, "transport: {why}"),
            },
            Error::Location(e) => match e {
                LocationError::NotRegister => f.write_str("location::save needs a REGISTER request"),
                LocationError::AlreadyAnswered => f.write_str("the REGISTER was already answered"),
                LocationError::Transport(why) => write!(f, "the REGISTER's response was not sent: {why}"),
            },
            Error::Event(e) => match e {
                EventError::BadName(name) => {
                    write!(f, "bad event name {name:?}: 1..=64 bytes without whitespace or control characters")
                }
                EventError::BadFilter(why) => write!(f, "bad event filter {why}"),
                EventError::BadTimeout(s) => write!(f, "event timeout of {s} s is outside 1..=3600"),
                EventError::TooManyWaiters(limit) => {
                    write!(f, "too many event waiters and notify subscriptions (limit {limit})")
                }
                EventError::Unavailable(why) => write!(f, "events unavailable: {why}"),
            },
            Error::Rest(e) => match e {
                RestError::BadUrl(why) => write!(f, "bad URL: {why}"),
                RestError::BadHeader(name) => write!(f, "HTTP header {name:?} contains CR or LF"),
                RestError::BadTimeout(ms) => write!(f, "HTTP timeout of {ms} ms is outside 1..=60000"),
                RestError::Timeout => f.write_str("HTTP request timed out"),
                RestError::BodyTooLarge => f.write_str("HTTP response body larger than 1 MiB"),
                RestError::Transport(why) => write!(f, "HTTP request failed: {why}"),
            },
            Error::Auth(e) => match e {
                AuthError::NoCredentials => f.write_str("no credentials"),
                AuthError::StaleNonce => f.write_str("stale nonce"),
                AuthError::InvalidCredentials => f.write_str("invalid credentials"),
                AuthError::Replayed => f.write_str("replayed nonce count"),
                AuthError::Malformed(why) => write!(f, "malformed credentials: {why}"),
                AuthError::Throttled(s) => write!(f, "source throttled for {s} s after failed authentications"),
            },
            Error::Config(e) => e.fmt(f),
            Error::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl From<MessageError> for Error {
    fn from(e: MessageError) -> Self {
        Error::Message(e)
    }
}

impl From<TmError> for Error {
    fn from(e: TmError) -> Self {
        Error::Tm(e)
    }
}

impl From<LocationError> for Error {
    fn from(e: LocationError) -> Self {
        Error::Location(e)
    }
}

impl From<EventError> for Error {
    fn from(e: EventError) -> Self {
        Error::Event(e)
    }
}

impl From<RestError> for Error {
    fn from(e: RestError) -> Self {
        Error::Rest(e)
    }
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Error {
        Error::Auth(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::Other(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::Other(message.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_problem_and_keeps_the_hosts_detail() {
        assert_eq!(Error::from(TmError::AlreadyAnswered).to_string(), "the request was already answered");
        assert_eq!(
            Error::from(TmError::BadTarget("invalid URI \"x\"".into())).to_string(),
            "bad target: invalid URI \"x\""
        );
        assert_eq!(Error::from(RestError::Timeout).to_string(), "HTTP request timed out");
        assert_eq!(Error::from(RestError::Transport("refused".into())).to_string(), "HTTP request failed: refused");
        assert_eq!(Error::from(EventError::BadTimeout(0)).to_string(), "event timeout of 0 s is outside 1..=3600");
        assert_eq!(
            Error::from(MessageError::HostOwnedHeader("Via".into())).to_string(),
            "header Via is written by the host"
        );
        assert_eq!(Error::from("no route").to_string(), "no route");
        assert_eq!(Error::from(String::from("x")), Error::Other("x".into()));
    }

    #[test]
    fn finished_means_nothing_is_left_to_do_for_the_request() {
        for finished in [
            Error::Tm(TmError::AlreadyAnswered),
            Error::Tm(TmError::Completed),
            Error::Tm(TmError::TooManyHops),
            Error::Tm(TmError::TransactionGone),
            Error::Location(LocationError::AlreadyAnswered),
        ] {
            assert!(finished.is_finished(), "{finished:?}");
        }
        for failed in [
            Error::Tm(TmError::BadTarget("x".into())),
            Error::Tm(TmError::Transport("x".into())),
            Error::Rest(RestError::Timeout),
            Error::Other("x".into()),
        ] {
            assert!(!failed.is_finished(), "{failed:?}");
        }
    }

    #[test]
    fn question_mark_converts_every_error() {
        fn tm() -> Result {
            Err(TmError::Completed)?
        }
        fn text() -> Result<u32> {
            Err("mine")?
        }
        assert_eq!(tm(), Err(Error::Tm(TmError::Completed)));
        assert_eq!(text(), Err(Error::Other("mine".into())));
    }
}
