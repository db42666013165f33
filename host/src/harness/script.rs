//! A phone's behaviour for an INVITE relayed to it, in words: "ring 2s,
//! answer", "busy", "ring" (rings and never answers), "reply 603 Decline",
//! "silent" (not even a provisional: the proxy's Timer B or C decides).
//! Items are separated by commas (or "then"); a final reply ends the script;
//! a script that ends without one leaves the phone ringing until it is
//! CANCELled (487) or the proxy gives up.

use std::time::Duration;

use anyhow::bail;

use super::scenario::parse_duration;

/// One thing a phone does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this response.
    Reply {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
    /// Let virtual time pass.
    Wait(Duration),
}

/// A parsed behaviour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    /// In order; empty with `silent`.
    pub actions: Vec<Action>,
    /// Answer nothing at all.
    pub silent: bool,
}

fn reply(code: u16) -> Action {
    Action::Reply { code, reason: crate::sip::reason_phrase(code).to_owned() }
}

impl Script {
    /// Parses a behaviour; the error names the item it could not read.
    pub fn parse(text: &str) -> anyhow::Result<Script> {
        let normalized = text.replace(" then ", ",");
        let mut script = Script::default();
        let mut finished = false;
        for item in normalized.split([',', ';']).map(str::trim).filter(|i| !i.is_empty()) {
            if finished {
                bail!("{item:?} comes after the final reply");
            }
            let words: Vec<&str> = item.split_whitespace().collect();
            let mut actions = match words.as_slice() {
                ["silent"] => {
                    script.silent = true;
                    Vec::new()
                }
                ["ring"] | ["no", "answer"] => vec![reply(180)],
                ["ring", d] | ["ring", "for", d] => vec![reply(180), Action::Wait(parse_duration(d)?)],
                ["progress"] => vec![reply(183)],
                ["wait", d] | ["after", d] => vec![Action::Wait(parse_duration(d)?)],
                ["answer"] => vec![reply(200)],
                ["busy"] => vec![reply(486)],
                ["decline"] => vec![reply(603)],
                ["unavailable"] => vec![reply(480)],
                ["reply", code, reason @ ..] => {
                    let code: u16 = code.parse().map_err(|_| anyhow::anyhow!("{code:?} is not a status code"))?;
                    if !(100..=699).contains(&code) || code == 100 {
                        bail!("reply {code}: a phone replies 101..=699");
                    }
                    let reason =
                        if reason.is_empty() { crate::sip::reason_phrase(code).to_owned() } else { reason.join(" ") };
                    vec![Action::Reply { code, reason }]
                }
                _ => bail!(
                    "cannot read {item:?}: use ring [2s], progress, wait 2s, answer, busy, decline, \
                     unavailable, reply CODE [REASON], silent"
                ),
            };
            finished = actions.iter().any(|a| matches!(a, Action::Reply { code: 200.., .. }));
            script.actions.append(&mut actions);
        }
        if script.silent && !script.actions.is_empty() {
            bail!("silent answers nothing: it cannot be combined with other items");
        }
        Ok(script)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviours_read_as_written() {
        let s = Script::parse("ring 2s, answer").unwrap();
        assert_eq!(s.actions, vec![reply(180), Action::Wait(Duration::from_secs(2)), reply(200)]);
        assert_eq!(Script::parse("busy").unwrap().actions, vec![reply(486)]);
        assert_eq!(Script::parse("ring then wait 1s then reply 603 Not Now").unwrap().actions.len(), 3);
        assert!(Script::parse("silent").unwrap().silent);
        assert_eq!(Script::parse("no answer").unwrap().actions, vec![reply(180)]);
    }

    #[test]
    fn bad_behaviours_name_the_item() {
        let err = |t: &str| format!("{:#}", Script::parse(t).unwrap_err());
        assert!(err("ring, dance").contains("\"dance\""));
        assert!(err("answer, busy").contains("after the final reply"));
        assert!(err("reply 99").contains("101..=699"));
        assert!(err("silent, answer").contains("cannot be combined"));
        assert!(err("wait forever").contains("forever"));
    }
}
