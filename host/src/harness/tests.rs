//! The harness against the embedded default route: it passes what the
//! route does and fails, for the right reason, what it does not.

use super::{Harness, Scenario};
use crate::runtime::RouteSource;

fn run(text: &str) -> super::Report {
    let scenario = Scenario::parse(text).expect("a valid scenario");
    Harness::new(RouteSource::Embedded).run(&scenario).expect("the scenario runs")
}

const CALL: &str = r#"
name = "call"
[[registrations]]
aor = "sip:bob@local"
contact = "sip:bob@192.0.2.20:5060"

[[phones]]
name = "bob"
address = "192.0.2.20:5060"
behaviour = "ring 1s, answer"

[[steps]]
send = "INVITE sip:bob@local from alice"
name = "call"

[[expect]]
relayed = "bob"
method = "INVITE"

[[expect]]
reply = 200
to = "call"
after = "1s"
"#;

#[test]
fn a_registered_phone_answers_through_the_default_route() {
    let report = run(CALL);
    assert!(report.passed(), "{report}");
}
