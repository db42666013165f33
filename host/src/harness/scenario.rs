//! The scenario file (`*.toml`, documented in docs/HARNESS.md): what is
//! given before the first step, the steps at virtual times, and what must
//! have happened. Parsing refuses unknown keys and checks what serde
//! cannot (one action per step, names that exist, scripts that parse), so
//! a bad scenario is refused with its reason before anything runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer};

use super::script::Script;

/// One scenario, as read from its file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in reports; the file's stem when absent.
    #[serde(default)]
    pub name: String,
    /// What the scenario shows, for the reader.
    #[serde(default)]
    pub description: Option<String>,
    /// sipbox.toml tables the route runs under (`[config.routes.vars]`,
    /// `[config.limits]`, `[config.timers]`, ...), over the base config.
    #[serde(default)]
    pub config: toml::Table,
    /// Bindings in the location table before the first step.
    #[serde(default)]
    pub registrations: Vec<Registration>,
    /// Subscribers who may authenticate (`[auth]`).
    #[serde(default)]
    pub users: Vec<User>,
    /// Event subscribers before the first step (as MI `event_subscribe`).
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    /// Devices the proxy relays to, with their behaviour.
    #[serde(default)]
    pub phones: Vec<Phone>,
    /// Answers of the HTTP services routes call through `rest`.
    #[serde(default)]
    pub http: Vec<HttpStub>,
    /// What happens, in order of `at`.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// What must have happened by the end.
    #[serde(default)]
    pub expect: Vec<Expect>,
    /// The latest virtual time the scenario runs to (default: 10 minutes
    /// after the last step); it ends earlier once nothing is left to happen.
    #[serde(default, deserialize_with = "opt_duration")]
    pub until: Option<Duration>,
    /// The file it was read from.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// A binding the location table holds at the start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Address of record, `sip:bob@local`.
    pub aor: String,
    /// The device's Contact URI, `sip:bob@192.0.2.20:5060`.
    pub contact: String,
    /// Contact priority (0.0 ..= 1.0).
    #[serde(default)]
    pub q: Option<f32>,
    /// Seconds the binding lives (default 3600).
    #[serde(default)]
    pub expires: Option<u32>,
}

/// A subscriber in the store at the start, as `sipbox user add`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub password: String,
    /// Default: `[auth] realm`.
    #[serde(default)]
    pub realm: Option<String>,
}

/// An event subscriber at the start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Event name.
    pub event: String,
    /// Destination socket, as for `event_subscribe` (`route:NAME`, `udp:...`).
    pub socket: String,
    /// Seconds the subscription lives (default: `[events] default_expire`).
    #[serde(default)]
    pub expire: Option<u32>,
}

/// A device reached at `address`: it answers what the proxy relays to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phone {
    /// Its name in expectations (`relayed = "bob-desk"`).
    pub name: String,
    /// Where it listens, `ip:port` (the host:port of its Contact).
    pub address: String,
    /// What it does with an INVITE: "ring 2s, answer" (the default),
    /// "busy", "ring" (no answer), "reply 603 Decline", "silent"... see
    /// [`Script`].
    #[serde(default = "default_behaviour")]
    pub behaviour: String,
    /// The parsed behaviour.
    #[serde(skip)]
    pub script: Script,
}

fn default_behaviour() -> String {
    "ring, answer".to_owned()
}

/// What an HTTP service answers to requests matching `url`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStub {
    /// URL pattern (`*` matches anything).
    pub url: String,
    /// `GET` or `POST`; any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Status code (default 200).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Response body.
    #[serde(default)]
    pub body: String,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Virtual time before the answer.
    #[serde(default, deserialize_with = "opt_duration")]
    pub delay: Option<Duration>,
}

fn default_status() -> u16 {
    200
}

/// One step: at most one action, at a virtual time.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Virtual time since the start (default: right after the previous step).
    #[serde(default, deserialize_with = "opt_duration")]
    pub at: Option<Duration>,
    /// A request arriving: full SIP text, or a short form such as
    /// `INVITE sip:bob@local from alice`.
    #[serde(default)]
    pub send: Option<String>,
    /// Name the request for later steps and expectations (`cancel = "call"`).
    #[serde(default)]
    pub name: Option<String>,
    /// Extra header fields of a short-form request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body of a short-form request.
    #[serde(default)]
    pub body: Option<String>,
    /// Where the request comes from, `ip:port` (default: the caller's own address).
    #[serde(default)]
    pub source: Option<String>,
    /// `user:password`: the caller answers a 401/407 to this request once,
    /// with digest credentials (the answered request takes over `name`).
    #[serde(default)]
    pub credentials: Option<String>,
    /// The caller CANCELs the named INVITE.
    #[serde(default)]
    pub cancel: Option<String>,
    /// The caller hangs up the named call (a BYE in its dialog).
    #[serde(default)]
    pub hangup: Option<String>,
    /// An event raised, as the MI's `raise_event` would.
    #[serde(default)]
    pub raise: Option<String>,
    /// The raised event's parameters.
    #[serde(default)]
    pub params: Option<toml::Value>,
    /// An MI command run (with `params`), its result kept for `expect.mi`.
    #[serde(default)]
    pub mi: Option<String>,
}

/// One expectation: exactly one of the kind keys (`reply`, `relayed`,
/// `event`, `push`, `log`, `counter`, `mi`) and the fields that refine it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// A reply sent upstream: a status code, or a class such as "4xx".
    #[serde(default)]
    pub reply: Option<toml::Value>,
    /// Requests relayed: a phone's name or a Request-URI pattern; an array
    /// for several, in that order.
    #[serde(default)]
    pub relayed: Option<toml::Value>,
    /// An event raised, by name.
    #[serde(default)]
    pub event: Option<String>,
    /// An HTTP request a route made through `rest`: its URL pattern.
    #[serde(default)]
    pub push: Option<String>,
    /// A log line matching this pattern.
    #[serde(default)]
    pub log: Option<String>,
    /// A statistic (as MI `get_statistics` names it: `runtime:traps`).
    #[serde(default)]
    pub counter: Option<String>,
    /// The result of the step's MI command with this name (`mi` step), or
    /// of this command run at the end.
    #[serde(default)]
    pub mi: Option<String>,

    /// `reply`: the request it answers (a step's `name`; any when absent).
    #[serde(default)]
    pub to: Option<String>,
    /// `reply`: the reason phrase.
    #[serde(default)]
    pub reason: Option<String>,
    /// `relayed`, `push`: the method.
    #[serde(default)]
    pub method: Option<String>,
    /// `reply`, `relayed`, `push`: header fields equal to (a pattern of) these.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `reply`, `relayed`: header fields present.
    #[serde(default)]
    pub has: Vec<String>,
    /// `reply`, `relayed`: header fields absent.
    #[serde(default)]
    pub lacks: Vec<String>,
    /// `event`: parameters equal to (a pattern of) these.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// `push`, `relayed`: body pattern.
    #[serde(default)]
    pub body: Option<String>,
    /// `log`: the level (error, warn, info, debug).
    #[serde(default)]
    pub level: Option<String>,
    /// How many must match (0: none at all); at least one when absent.
    #[serde(default)]
    pub count: Option<usize>,
    /// `counter`: the value.
    #[serde(default)]
    pub equals: Option<i64>,
    /// `counter`: at least this value.
    #[serde(default)]
    pub at_least: Option<i64>,
    /// `mi`: the MI command's params (for a command run at the end).
    #[serde(default)]
    pub mi_params: Option<toml::Value>,
    /// `mi`: values the result holds (a subset: objects compared key by key,
    /// arrays item by item as given).
    #[serde(default)]
    pub result: Option<toml::Value>,
    /// Not before this virtual time.
    #[serde(default, deserialize_with = "opt_duration")]
    pub after: Option<Duration>,
    /// Not after this virtual time.
    #[serde(default, deserialize_with = "opt_duration")]
    pub before: Option<Duration>,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut scenario = Scenario::parse(&text).with_context(|| format!("invalid scenario {}", path.display()))?;
        if scenario.name.is_empty() {
            scenario.name = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        }
        scenario.path = Some(path.to_path_buf());
        Ok(scenario)
    }

    /// Parses and checks scenario text.
    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        let mut scenario: Scenario = toml::from_str(text)?;
        scenario.check()?;
        Ok(scenario)
    }

    fn check(&mut self) -> anyhow::Result<()> {
        for phone in &mut self.phones {
            phone.script = Script::parse(&phone.behaviour)
                .with_context(|| format!("phone {:?}: behaviour {:?}", phone.name, phone.behaviour))?;
            phone
                .address
                .parse::<std::net::SocketAddr>()
                .with_context(|| format!("phone {:?}: address {:?} is not ip:port", phone.name, phone.address))?;
        }
        let mut names: Vec<&str> = Vec::new();
        let mut last = Duration::ZERO;
        for (i, step) in self.steps.iter().enumerate() {
            let n = i + 1;
            let actions = [
                step.send.is_some(),
                step.cancel.is_some(),
                step.hangup.is_some(),
                step.raise.is_some(),
                step.mi.is_some(),
            ];
            if actions.iter().filter(|a| **a).count() > 1 {
                bail!("step {n}: one of send, cancel, hangup, raise, mi per step");
            }
            if let Some(at) = step.at {
                if at < last {
                    bail!("step {n}: at = {at:?} is before the previous step's {last:?}");
                }
                last = at;
            }
            for target in [&step.cancel, &step.hangup].into_iter().flatten() {
                if !names.contains(&target.as_str()) {
                    bail!("step {n}: no earlier step is named {target:?}");
                }
            }
            if step.params.is_some() && step.raise.is_none() && step.mi.is_none() {
                bail!("step {n}: params belong to a raise or mi step");
            }
            let short_only = !step.headers.is_empty() || step.body.is_some();
            if short_only && step.send.is_none() {
                bail!("step {n}: headers and body belong to a send step");
            }
            if let Some(name) = &step.name {
                if names.contains(&name.as_str()) {
                    bail!("step {n}: the name {name:?} is used twice");
                }
                names.push(name);
            }
        }
        for (i, expect) in self.expect.iter().enumerate() {
            let kinds = [
                expect.reply.is_some(),
                expect.relayed.is_some(),
                expect.event.is_some(),
                expect.push.is_some(),
                expect.log.is_some(),
                expect.counter.is_some(),
                expect.mi.is_some(),
            ];
            match kinds.iter().filter(|k| **k).count() {
                1 => {}
                0 => bail!("expect {}: say what is expected: reply, relayed, event, push, log, counter or mi", i + 1),
                _ => bail!("expect {}: one of reply, relayed, event, push, log, counter, mi per expectation", i + 1),
            }
            if let Some(to) = &expect.to
                && !names.contains(&to.as_str())
            {
                bail!("expect {}: to = {to:?} names no step", i + 1);
            }
            if expect.counter.is_some() && expect.equals.is_none() && expect.at_least.is_none() {
                bail!("expect {}: a counter needs equals or at_least", i + 1);
            }
            if let Some(reply) = &expect.reply {
                StatusPattern::from_toml(reply).with_context(|| format!("expect {}: reply", i + 1))?;
            }
        }
        Ok(())
    }
}

/// A reply status as an expectation gives it: `200`, or `"4xx"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusPattern {
    /// Exactly this code.
    Code(u16),
    /// Any code of this class (`4` for "4xx").
    Class(u16),
}

impl StatusPattern {
    pub(crate) fn from_toml(v: &toml::Value) -> anyhow::Result<StatusPattern> {
        let pattern = match v {
            toml::Value::Integer(code) => u16::try_from(*code).ok().map(StatusPattern::Code),
            toml::Value::String(s) => match s.as_bytes() {
                [c @ b'1'..=b'6', b'x' | b'X', b'x' | b'X'] => Some(StatusPattern::Class(u16::from(c - b'0'))),
                _ => s.parse().ok().map(StatusPattern::Code),
            },
            _ => None,
        };
        match pattern {
            Some(StatusPattern::Code(c)) if !(100..=699).contains(&c) => bail!("{c} is not a SIP status code"),
            Some(p) => Ok(p),
            None => bail!("{v} is neither a status code (200) nor a class (\"4xx\")"),
        }
    }

    pub(crate) fn matches(self, code: u16) -> bool {
        match self {
            StatusPattern::Code(c) => c == code,
            StatusPattern::Class(class) => code / 100 == class,
        }
    }
}

impl std::fmt::Display for StatusPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusPattern::Code(c) => write!(f, "{c}"),
            StatusPattern::Class(c) => write!(f, "{c}xx"),
        }
    }
}

/// Parses "2s", "500ms", "1.5s", "3m" or a bare number of seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 =
        number.parse().with_context(|| format!("{text:?} is not a duration such as \"2s\" or \"500ms\""))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => bail!("unknown unit {other:?} in {text:?} (ms, s, m or h)"),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&seconds) {
        bail!("{text:?} is out of range");
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Float(f64),
        Text(String),
    }
    let parsed = match Raw::deserialize(d)? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Float(s) => parse_duration(&s.to_string()),
        Raw::Text(t) => parse_duration(&t),
    };
    parsed.map(Some).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("2 fortnights").is_err());
    }

    #[test]
    fn status_patterns_take_codes_and_classes() {
        let p = |v: toml::Value| StatusPattern::from_toml(&v);
        assert_eq!(p(toml::Value::Integer(486)).unwrap(), StatusPattern::Code(486));
        assert!(p(toml::Value::String("4xx".into())).unwrap().matches(404));
        assert!(!p(toml::Value::String("4xx".into())).unwrap().matches(500));
        assert!(p(toml::Value::Integer(99)).is_err());
        assert!(p(toml::Value::String("big".into())).is_err());
    }

    #[test]
    fn bad_scenarios_are_refused_with_the_reason() {
        let err = |text: &str| format!("{:#}", Scenario::parse(text).unwrap_err());
        assert!(err("[[steps]]\nsend = \"x\"\nraise = \"E\"\n").contains("one of send"));
        assert!(err("[[steps]]\ncancel = \"call\"\n").contains("no earlier step is named \"call\""));
        assert!(err("[[expect]]\ncount = 1\n").contains("say what is expected"));
        assert!(err("[[expect]]\nreply = 200\nto = \"nope\"\n").contains("names no step"));
        assert!(err("[[phones]]\nname = \"b\"\naddress = \"nowhere\"\n").contains("not ip:port"));
        assert!(
            err("[[phones]]\nname = \"b\"\naddress = \"192.0.2.1:5060\"\nbehaviour = \"dance\"\n").contains("dance")
        );
        assert!(err("bogus = 1\n").contains("unknown field"));
        assert!(err("[[steps]]\nat = \"3s\"\n[[steps]]\nat = \"1s\"\n").contains("before the previous"));
        assert!(err("[[expect]]\ncounter = \"runtime:traps\"\n").contains("equals or at_least"));
    }
}
