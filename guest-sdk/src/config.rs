//! Route settings from the `[routes.vars]` table of sipbox.toml, typed (as
//! spin-sdk's variables): a value is parsed with [`FromStr`], and a value
//! that does not parse is an error naming the setting and the value, not a
//! silent default.
//!
//! ```no_run
//! use sipbox_guest::{Result, config};
//!
//! fn settings() -> Result {
//!     let timeout: u32 = config::get_or("push_timeout", 30)?;  // absent: 30
//!     let url: String = config::require("push_url")?;          // absent: an error
//!     let code: Option<String> = config::get("pickup_code")?;
//!     sipbox_guest::info!("push to {url} for {timeout} s, pickup code {code:?}");
//!     Ok(())
//! }
//! ```
//!
//! Values are trimmed of surrounding whitespace before parsing.

use core::fmt;
use core::str::FromStr;

use crate::Result;
use crate::bindings::sipbox::route::config as raw;

/// A setting that is missing ([`require`]) or does not parse as the type
/// asked for. Its `Display` names the setting and the value:
/// `setting push_timeout = "soon" in [routes.vars]: invalid digit found in string`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting's name.
    pub name: String,
    /// The value as configured; `None` when the setting is missing.
    pub value: Option<String>,
    /// Why the value does not do (the parser's message).
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "setting {} = {value:?} in [routes.vars]: {}", self.name, self.reason),
            None => write!(f, "setting {} is missing from [routes.vars]: {}", self.name, self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The raw text of setting `name`, if configured.
pub fn get_str(name: &str) -> Option<String> {
    raw::get(name)
}

/// Setting `name` parsed as `T`: `Ok(None)` when it is not configured, an
/// error naming the setting and the value when it does not parse.
pub fn get<T>(name: &str) -> Result<Option<T>>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    Ok(parse(name, get_str(name))?)
}

/// Setting `name` parsed as `T`, or `default` when it is not configured.
/// A configured value that does not parse is an error, not the default.
pub fn get_or<T>(name: &str, default: T) -> Result<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    Ok(get(name)?.unwrap_or(default))
}

/// Setting `name` parsed as `T`; missing is an error too.
pub fn require<T>(name: &str) -> Result<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    get(name)?.ok_or_else(|| {
        ConfigError { name: name.to_owned(), value: None, reason: "the route needs it".to_owned() }.into()
    })
}

/// The parsing behind [`get`], apart from the host call so it is tested
/// natively.
fn parse<T>(name: &str, value: Option<String>) -> core::result::Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    let Some(value) = value else { return Ok(None) };
    match value.trim().parse() {
        Ok(parsed) => Ok(Some(parsed)),
        Err(e) => Err(ConfigError { name: name.to_owned(), value: Some(value), reason: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_the_type_asked_for_trimmed() {
        assert_eq!(parse::<u32>("t", Some(" 30 ".into())), Ok(Some(30)));
        assert_eq!(parse::<String>("s", Some(" *8 ".into())), Ok(Some("*8".into())));
        assert_eq!(parse::<bool>("b", Some("true".into())), Ok(Some(true)));
        assert_eq!(parse::<u32>("t", None), Ok(None));
    }

    #[test]
    fn a_bad_value_names_the_setting_and_the_value() {
        let err = parse::<u32>("push_timeout", Some("soon".into())).unwrap_err();
        assert_eq!(err.name, "push_timeout");
        assert_eq!(err.value.as_deref(), Some("soon"));
        assert_eq!(err.to_string(), "setting push_timeout = \"soon\" in [routes.vars]: invalid digit found in string");
        let err = parse::<u16>("port", Some("70000".into())).unwrap_err();
        assert!(err.to_string().contains("port = \"70000\""), "{err}");
        let missing = ConfigError { name: "next_hop".into(), value: None, reason: "the route needs it".into() };
        assert_eq!(missing.to_string(), "setting next_hop is missing from [routes.vars]: the route needs it");
    }
}
