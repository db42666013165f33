//! Checks a scenario's expectations against its trace and writes the
//! report: one line when it passes; when it fails, each failed expectation
//! with what was expected beside what happened (the candidates it looked
//! at, with their virtual times), the SIP text of the messages involved,
//! and the whole SIP timeline.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value as Json;

use super::Outcome;
use super::scenario::{Expect, Scenario, StatusPattern};
use super::trace::{Direction, Trace, WireMessage};
use super::wildcard;
use crate::events;
use crate::sip::{self, Method};

/// The result of one scenario.
pub struct Report {
    /// The scenario's name.
    pub name: String,
    /// Its file.
    pub path: Option<PathBuf>,
    /// Virtual time at the end.
    pub virtual_time: Duration,
    /// Wall time the run took (the route's compilation included).
    pub wall_time: Duration,
    /// What did not hold; empty when it passed.
    pub failures: Vec<Failure>,
    /// Everything recorded.
    pub trace: Trace,
    /// False when it ran to its horizon with something still going on.
    pub settled: bool,
}

/// One expectation that did not hold, or a step that could not be carried out.
pub struct Failure {
    /// "expect 3: reply 200 to \"call\"", or "step 2".
    pub what: String,
    /// What was expected.
    pub expected: String,
    /// What happened instead.
    pub happened: String,
    /// SIP text of the messages involved.
    pub messages: Vec<String>,
}

impl Report {
    /// Whether every expectation held and every step was carried out.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// `PASS  name  (virtual 20.4s, wall 31ms)`.
    pub fn line(&self) -> String {
        let name = if self.name.is_empty() { "(unnamed scenario)" } else { &self.name };
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        format!("{verdict}  {name}  (virtual {}, wall {})", seconds(self.virtual_time), millis(self.wall_time))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.line())?;
        if self.passed() {
            return Ok(());
        }
        if let Some(path) = &self.path {
            writeln!(f, "  scenario: {}", path.display())?;
        }
        for failure in &self.failures {
            writeln!(f, "  ✗ {}", failure.what)?;
            writeln!(f, "      expected: {}", failure.expected)?;
            for (i, line) in failure.happened.lines().enumerate() {
                let label = if i == 0 { "happened:" } else { "         " };
                writeln!(f, "      {label} {line}")?;
            }
            for text in &failure.messages {
                writeln!(f, "      ----")?;
                for line in text.lines() {
                    writeln!(f, "      | {line}")?;
                }
            }
        }
        if !self.settled {
            writeln!(f, "  note: the scenario ran to its horizon with a transaction or phone still active")?;
        }
        writeln!(f, "  SIP timeline (virtual time, sender -> receiver):")?;
        for m in &self.trace.wire {
            writeln!(f, "    {}", timeline_line(m))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn first_line(msg: &sip::Message) -> String {
    let raw = String::from_utf8_lossy(msg.raw());
    raw.lines().next().unwrap_or_default().trim_end().to_owned()
}

fn timeline_line(m: &WireMessage) -> String {
    let arrow = match m.direction {
        Direction::In => "->",
        Direction::Out => "=>",
    };
    format!("{:>9}  {} {arrow} {}  {}", seconds(m.at), m.from, m.to, first_line(&m.msg))
}

fn sip_text(msg: &sip::Message) -> String {
    String::from_utf8_lossy(msg.raw()).replace("\r\n", "\n").trim_end().to_owned()
}

/// Evaluates every expectation; also reports the steps that could not be carried out.
pub(crate) fn evaluate(scenario: &Scenario, trace: Trace, outcome: Outcome, wall_time: Duration) -> Report {
    let mut failures = Vec::new();
    for (at, problem) in &trace.problems {
        failures.push(Failure {
            what: problem.split(':').next().unwrap_or("a step").to_owned(),
            expected: "the step to be carried out".into(),
            happened: format!("at {}: {problem}", seconds(*at)),
            messages: Vec::new(),
        });
    }
    let checker = Checker { trace: &trace, outcome: &outcome };
    for (i, e) in scenario.expect.iter().enumerate() {
        if let Err(mut failure) = checker.check(i, e) {
            failure.what = format!("expect {}: {}", i + 1, failure.what);
            failures.push(failure);
        }
    }
    Report {
        name: scenario.name.clone(),
        path: scenario.path.clone(),
        virtual_time: outcome.virtual_time,
        wall_time,
        failures,
        trace,
        settled: outcome.settled,
    }
}

struct Checker<'a> {
    trace: &'a Trace,
    outcome: &'a Outcome,
}

/// How many matches an expectation wants.
fn count_wanted(e: &Expect) -> String {
    match e.count {
        None => "at least one".into(),
        Some(0) => "none".into(),
        Some(n) => format!("exactly {n}"),
    }
}

fn count_holds(e: &Expect, n: usize) -> bool {
    match e.count {
        None => n >= 1,
        Some(want) => n == want,
    }
}

fn in_window(e: &Expect, at: Duration) -> bool {
    e.after.is_none_or(|a| at >= a) && e.before.is_none_or(|b| at <= b)
}

fn window(e: &Expect) -> String {
    match (e.after, e.before) {
        (None, None) => String::new(),
        (Some(a), None) => format!(", after {}", seconds(a)),
        (None, Some(b)) => format!(", by {}", seconds(b)),
        (Some(a), Some(b)) => format!(", between {} and {}", seconds(a), seconds(b)),
    }
}

/// Why a message does not satisfy an expectation's header refinements.
fn header_mismatch(e: &Expect, msg: &sip::Message) -> Option<String> {
    for (name, pattern) in &e.headers {
        match msg.header_by_name(name) {
            Some(value) if wildcard::matches(pattern, value.trim()) => {}
            Some(value) => return Some(format!("{name} is {value:?}, not {pattern:?}")),
            None => return Some(format!("no {name} header")),
        }
    }
    if let Some(missing) = e.has.iter().find(|h| msg.header_by_name(h).is_none()) {
        return Some(format!("no {missing} header"));
    }
    if let Some(present) = e.lacks.iter().find(|h| msg.header_by_name(h).is_some()) {
        return Some(format!("has a {present} header"));
    }
    if let Some(pattern) = &e.body {
        let body = String::from_utf8_lossy(msg.body());
        if !contains(pattern, &body) {
            return Some(format!("body does not contain {pattern:?}"));
        }
    }
    None
}

/// `pattern` (with `*` wildcards) occurs somewhere in `text`.
fn contains(pattern: &str, text: &str) -> bool {
    wildcard::matches(&format!("*{pattern}*"), text)
}

fn branch(msg: &sip::Message) -> Option<String> {
    msg.top_via().ok().and_then(|v| v.branch.map(str::to_owned))
}

impl Checker<'_> {
    fn check(&self, index: usize, e: &Expect) -> Result<(), Failure> {
        if let Some(reply) = &e.reply {
            // Validated when the scenario was parsed.
            let pattern = StatusPattern::from_toml(reply).unwrap_or(StatusPattern::Class(0));
            return self.reply(e, pattern);
        }
        if let Some(relayed) = &e.relayed {
            return self.relayed(e, relayed);
        }
        if let Some(name) = &e.event {
            return self.event(e, name);
        }
        if let Some(url) = &e.push {
            return self.push(e, url);
        }
        if let Some(pattern) = &e.log {
            return self.log(e, pattern);
        }
        if let Some(name) = &e.counter {
            return self.counter(e, name);
        }
        if let Some(command) = &e.mi {
            return self.mi(index, e, command);
        }
        Ok(())
    }

    fn reply(&self, e: &Expect, pattern: StatusPattern) -> Result<(), Failure> {
        let named = e.to.as_ref().and_then(|n| self.outcome.named.get(n));
        let answers = |m: &&WireMessage| match named {
            None => true,
            Some(req) => {
                let method = m.msg.cseq().ok().map(|c| c.method);
                branch(&m.msg) == branch(&req.msg) && method.as_ref() == req.msg.method()
            }
        };
        let candidates: Vec<&WireMessage> = self
            .trace
            .wire
            .iter()
            .filter(|m| m.direction == Direction::Out && !m.msg.is_request())
            .filter(answers)
            .filter(|m| in_window(e, m.at))
            .collect();
        let verdict = |m: &WireMessage| -> Result<(), String> {
            let code = m.msg.status().unwrap_or(0);
            if !pattern.matches(code) {
                return Err(format!("status {code}"));
            }
            if let Some(reason) = &e.reason {
                let actual = m.msg.reason().unwrap_or_default();
                if !actual.eq_ignore_ascii_case(reason) {
                    return Err(format!("reason {actual:?}"));
                }
            }
            header_mismatch(e, &m.msg).map_or(Ok(()), Err)
        };
        let matching = candidates.iter().filter(|m| verdict(m).is_ok()).count();
        if count_holds(e, matching) {
            return Ok(());
        }
        let to = e.to.as_ref().map_or(String::new(), |n| format!(" to {n:?}"));
        let reason = e.reason.as_ref().map_or(String::new(), |r| format!(" {r}"));
        let what = format!("reply {pattern}{reason}{to}");
        Err(self.failure(
            what.clone(),
            format!("{} {what}{}{}", count_wanted(e), refinements(e), window(e)),
            matching,
            "replies sent upstream",
            &candidates,
            verdict,
        ))
    }

    fn relayed(&self, e: &Expect, relayed: &toml::Value) -> Result<(), Failure> {
        let targets: Vec<String> = match relayed {
            toml::Value::String(s) => vec![s.clone()],
            toml::Value::Array(items) => items.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect(),
            other => vec![other.to_string()],
        };
        let method_ok = |m: &sip::Message| match (&e.method, m.method()) {
            (Some(want), Some(have)) => have.as_str().eq_ignore_ascii_case(want),
            (None, Some(have)) => !matches!(have, Method::Ack | Method::Cancel),
            _ => false,
        };
        // Retransmissions are the same relay.
        let mut seen: Vec<(SocketAddr, Option<String>, String)> = Vec::new();
        let candidates: Vec<&WireMessage> = self
            .trace
            .wire
            .iter()
            .filter(|m| m.direction == Direction::Out && m.msg.is_request() && method_ok(&m.msg))
            .filter(|m| in_window(e, m.at))
            .filter(|m| {
                let key = (m.to, branch(&m.msg), m.msg.method().map(|x| x.as_str().to_owned()).unwrap_or_default());
                if seen.contains(&key) {
                    false
                } else {
                    seen.push(key);
                    true
                }
            })
            .collect();
        let target_of = |m: &WireMessage| targets.iter().position(|t| self.is_target(t, m));
        let refined = |m: &WireMessage| header_mismatch(e, &m.msg).map_or(Ok(()), Err);
        let list = targets.join(", ");
        let method = e.method.clone().unwrap_or_else(|| "request".into());
        if targets.len() > 1 {
            // In this order, and only these.
            let order: Vec<Option<usize>> =
                candidates.iter().filter(|m| target_of(m).is_some()).map(|m| target_of(m)).collect();
            let all_refined = candidates.iter().filter(|m| target_of(m).is_some()).all(|m| refined(m).is_ok());
            let wanted: Vec<Option<usize>> = (0..targets.len()).map(Some).collect();
            if order == wanted && all_refined {
                return Ok(());
            }
            let what = format!("{method} relayed to [{list}] in that order");
            let verdict = |m: &WireMessage| match target_of(m) {
                Some(i) => refined(m).map_err(|r| format!("{} ({r})", targets[i])),
                None => Err("not one of the targets".into()),
            };
            let expected = format!("{method} relayed to {list}, in that order, once each{}", refinements(e));
            return Err(self.failure(what, expected, 0, "requests relayed", &candidates, verdict));
        }
        let verdict = |m: &WireMessage| match target_of(m) {
            Some(_) => refined(m),
            None => Err(format!("to {} ({})", m.to, m.msg.request_uri().unwrap_or_default())),
        };
        let matching = candidates.iter().filter(|m| verdict(m).is_ok()).count();
        if count_holds(e, matching) {
            return Ok(());
        }
        let what = format!("{method} relayed to {list}");
        let expected = format!("{} {what}{}{}", count_wanted(e), refinements(e), window(e));
        Err(self.failure(what, expected, matching, "requests relayed", &candidates, verdict))
    }

    /// A phone's name, or a Request-URI pattern.
    fn is_target(&self, target: &str, m: &WireMessage) -> bool {
        match self.outcome.phones.get(target) {
            Some(address) => m.to == *address,
            None => wildcard::matches(target, m.msg.request_uri().unwrap_or_default()),
        }
    }

    fn failure(
        &self,
        what: String,
        expected: String,
        matching: usize,
        kind: &str,
        candidates: &[&WireMessage],
        verdict: impl Fn(&WireMessage) -> Result<(), String>,
    ) -> Failure {
        let mut happened = format!("{matching} matched; {kind}: {}", candidates.len());
        for m in candidates {
            let mark = match verdict(m) {
                Ok(()) => "matches".to_owned(),
                Err(why) => why,
            };
            let _ = write!(happened, "\n  {}  [{mark}]", timeline_line(m));
        }
        // The SIP text of the candidates, the last few (the most telling).
        let messages = candidates.iter().rev().take(3).rev().map(|m| sip_text(&m.msg)).collect();
        Failure { what, expected, happened, messages }
    }

    fn event(&self, e: &Expect, name: &str) -> Result<(), Failure> {
        let raised: Vec<_> = self.trace.events.iter().filter(|r| in_window(e, r.at)).collect();
        let verdict = |r: &super::trace::RaisedEvent| -> Result<(), String> {
            if &*r.event.name != name {
                return Err("another event".into());
            }
            for (key, pattern) in &e.params {
                let value = r.event.params.0.iter().find(|(k, _)| k.as_deref() == Some(key.as_str()));
                match value {
                    Some((_, v)) if wildcard::matches(pattern, &event_value(v)) => {}
                    Some((_, v)) => return Err(format!("{key} = {:?}", event_value(v))),
                    None => return Err(format!("no parameter {key}")),
                }
            }
            Ok(())
        };
        let matching = raised.iter().filter(|r| verdict(r).is_ok()).count();
        if count_holds(e, matching) {
            return Ok(());
        }
        let mut happened = format!("{matching} matched; events raised: {}", raised.len());
        for r in &raised {
            let mark = verdict(r).err().unwrap_or_else(|| "matches".into());
            let params: Vec<String> = r
                .event
                .params
                .0
                .iter()
                .map(|(k, v)| format!("{}={}", k.as_deref().unwrap_or("_"), event_value(v)))
                .collect();
            let _ = write!(happened, "\n  {:>9}  {} {}  [{mark}]", seconds(r.at), r.event.name, params.join(" "));
        }
        let params: Vec<String> = e.params.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let with = if params.is_empty() { String::new() } else { format!(" with {}", params.join(", ")) };
        Err(Failure {
            what: format!("event {name}"),
            expected: format!("{} {name} raised{with}{}", count_wanted(e), window(e)),
            happened,
            messages: Vec::new(),
        })
    }

    fn push(&self, e: &Expect, url: &str) -> Result<(), Failure> {
        let calls: Vec<_> = self.trace.http.iter().filter(|c| in_window(e, c.at)).collect();
        let verdict = |c: &super::trace::HttpCall| -> Result<(), String> {
            if !wildcard::matches(url, &c.url) {
                return Err("another URL".into());
            }
            if let Some(method) = &e.method
                && !c.method.eq_ignore_ascii_case(method)
            {
                return Err(format!("method {}", c.method));
            }
            for (name, pattern) in &e.headers {
                let value = c.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v);
                match value {
                    Some(v) if wildcard::matches(pattern, v) => {}
                    Some(v) => return Err(format!("{name} is {v:?}")),
                    None => return Err(format!("no {name} header")),
                }
            }
            if let Some(pattern) = &e.body
                && !contains(pattern, &c.body)
            {
                return Err(format!("body does not contain {pattern:?}"));
            }
            Ok(())
        };
        let matching = calls.iter().filter(|c| verdict(c).is_ok()).count();
        if count_holds(e, matching) {
            return Ok(());
        }
        let mut happened = format!("{matching} matched; HTTP requests made: {}", calls.len());
        for c in &calls {
            let mark = verdict(c).err().unwrap_or_else(|| "matches".into());
            let _ = write!(
                happened,
                "\n  {:>9}  {} {} -> {}  [{mark}]\n             {}",
                seconds(c.at),
                c.method,
                c.url,
                c.status,
                c.body
            );
        }
        let method = e.method.as_deref().unwrap_or("request");
        let body = e.body.as_ref().map_or(String::new(), |b| format!(" with a body containing {b:?}"));
        Err(Failure {
            what: format!("push to {url}"),
            expected: format!("{} HTTP {method} to {url}{body}{}", count_wanted(e), window(e)),
            happened,
            messages: Vec::new(),
        })
    }

    fn log(&self, e: &Expect, pattern: &str) -> Result<(), Failure> {
        let level = e.level.as_deref().map(str::to_ascii_uppercase);
        let lines: Vec<_> = self
            .trace
            .logs
            .iter()
            .filter(|l| in_window(e, l.at))
            .filter(|l| level.as_deref().is_none_or(|lv| l.level.as_str() == lv))
            .collect();
        let matching = lines.iter().filter(|l| contains(pattern, &l.text)).count();
        if count_holds(e, matching) {
            return Ok(());
        }
        let mut happened = format!(
            "{matching} matched; log lines{}: {}",
            level.as_ref().map_or(String::new(), |l| format!(" at {l}")),
            lines.len()
        );
        for l in lines.iter().rev().take(20).rev() {
            let _ = write!(happened, "\n  {:>9}  {} {}: {}", seconds(l.at), l.level, l.target, l.text);
        }
        Err(Failure {
            what: format!("log {pattern:?}"),
            expected: format!("{} log line containing {pattern:?}{}", count_wanted(e), window(e)),
            happened,
            messages: Vec::new(),
        })
    }

    fn counter(&self, e: &Expect, name: &str) -> Result<(), Failure> {
        let value = self.outcome.statistics.get(name).and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
        let holds = value.is_some_and(|v| e.equals.is_none_or(|w| v == w) && e.at_least.is_none_or(|w| v >= w));
        if holds {
            return Ok(());
        }
        let mut expected = name.to_owned();
        if let Some(w) = e.equals {
            let _ = write!(expected, " = {w}");
        }
        if let Some(w) = e.at_least {
            let _ = write!(expected, " >= {w}");
        }
        let happened = match value {
            Some(v) => format!("{name} = {v}"),
            None => {
                let names: Vec<&str> = self
                    .outcome
                    .statistics
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                format!("no statistic {name}; there are: {}", names.join(", "))
            }
        };
        Err(Failure { what: format!("counter {name}"), expected, happened, messages: Vec::new() })
    }

    fn mi(&self, index: usize, e: &Expect, command: &str) -> Result<(), Failure> {
        let response = match self.trace.mi.iter().find(|c| c.name.as_deref() == Some(command)) {
            Some(call) => Some(&call.response),
            None => self.outcome.final_mi.get(&index),
        };
        let fail = |happened: String| Failure {
            what: format!("mi {command}"),
            expected: match &e.result {
                Some(r) => format!("a result holding {}", super::toml_to_json(r)),
                None => "a result (no error)".into(),
            },
            happened,
            messages: Vec::new(),
        };
        let Some(response) = response else { return Err(fail("no response".into())) };
        if let Some(error) = response.get("error") {
            return Err(fail(format!("error {error}")));
        }
        let result = response.get("result").unwrap_or(&Json::Null);
        match &e.result {
            Some(expected) if !json_holds(&super::toml_to_json(expected), result) => {
                Err(fail(format!("result {}", serde_json::to_string_pretty(result).unwrap_or_default())))
            }
            _ => Ok(()),
        }
    }
}

/// What a `reply`/`relayed` expectation adds to its kind.
fn refinements(e: &Expect) -> String {
    let mut out = String::new();
    for (name, pattern) in &e.headers {
        let _ = write!(out, ", {name}: {pattern:?}");
    }
    for name in &e.has {
        let _ = write!(out, ", with {name}");
    }
    for name in &e.lacks {
        let _ = write!(out, ", without {name}");
    }
    if let Some(body) = &e.body {
        let _ = write!(out, ", body containing {body:?}");
    }
    out
}

fn event_value(v: &events::Value) -> String {
    match v {
        events::Value::Int(i) => i.to_string(),
        events::Value::Str(s) => s.clone(),
        events::Value::Null => String::new(),
    }
}

/// `actual` holds `expected`: objects key by key, arrays item by item, a
/// string as a pattern of the actual value's text.
fn json_holds(expected: &Json, actual: &Json) -> bool {
    match (expected, actual) {
        (Json::Object(want), Json::Object(have)) => {
            want.iter().all(|(k, w)| have.get(k).is_some_and(|h| json_holds(w, h)))
        }
        (Json::Array(want), Json::Array(have)) => {
            want.len() <= have.len() && want.iter().zip(have).all(|(w, h)| json_holds(w, h))
        }
        (Json::String(pattern), Json::String(text)) => wildcard::matches(pattern, text),
        (Json::String(pattern), other) => wildcard::matches(pattern, &other.to_string()),
        (Json::Number(w), Json::Number(h)) => w.as_f64() == h.as_f64(),
        (w, h) => w == h,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::json_holds;

    #[test]
    fn results_are_held_as_subsets() {
        let actual = json!({ "Events": [{ "name": "E_A", "id": 1 }, { "name": "E_B" }], "n": 2 });
        assert!(json_holds(&json!({ "n": 2 }), &actual));
        assert!(json_holds(&json!({ "Events": [{ "name": "E_*" }] }), &actual));
        assert!(!json_holds(&json!({ "n": 3 }), &actual));
        assert!(!json_holds(&json!({ "missing": 1 }), &actual));
        assert!(json_holds(&json!("2"), &json!(2)));
    }
}
