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

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scenarios_of(example: &str) -> Vec<std::path::PathBuf> {
    let dir = repo().join("examples").join(example).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (every example ships scenarios)", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no scenarios", dir.display());
    files
}

/// Every TOML block of docs/HARNESS.md is a valid scenario (fragment), so
/// the reference cannot drift from the parser.
#[test]
fn the_documented_examples_parse() {
    let doc = std::fs::read_to_string(repo().join("docs/HARNESS.md")).expect("docs/HARNESS.md");
    let mut blocks = 0;
    for block in doc.split("```toml\n").skip(1) {
        let text = block.split("```").next().unwrap_or_default();
        // Steps and expectations that name a step need one to name.
        let text = if text.contains("name = \"call\"") {
            text.to_owned()
        } else {
            format!("[[steps]]\nsend = \"INVITE sip:bob@local\"\nname = \"call\"\n{text}")
        };
        let text = text.replace("mi = \"remove\"", "mi = \"ul_dump\"");
        if let Err(e) = Scenario::parse(&text) {
            panic!("a docs/HARNESS.md example does not parse: {e:#}\n{text}");
        }
        blocks += 1;
    }
    assert!(blocks >= 15, "only {blocks} examples found");
}

/// The `what` of each failure, in order.
fn failed(report: &super::Report) -> Vec<String> {
    report.failures.iter().map(|f| f.what.clone()).collect()
}

#[test]
fn an_unregistered_callee_is_404_and_nothing_is_relayed() {
    let report = run(r#"
[[steps]]
send = "INVITE sip:nobody@local from alice"
name = "call"
[[expect]]
reply = 404
to = "call"
[[expect]]
relayed = "*"
count = 0
[[expect]]
reply = 200
"#);
    // The last expectation is wrong on purpose: only it fails, saying what came instead.
    assert_eq!(failed(&report), ["expect 3: reply 200"], "{report}");
    let text = report.to_string();
    assert!(text.contains("SIP/2.0 404 Not Found  [status 404]"), "{text}");
    assert!(text.contains("INVITE sip:nobody@local SIP/2.0"), "the timeline is shown: {text}");
}

#[test]
fn a_device_that_registers_during_the_scenario_is_called() {
    let report = run(r#"
[[steps]]
send = "REGISTER sip:carol@local contact sip:carol@192.0.2.30:5070 expires 600"
name = "register"
[[steps]]
at = "1s"
send = "INVITE sip:carol@local from alice"
name = "call"
[[expect]]
reply = 200
to = "register"
has = ["Contact", "Date"]
[[expect]]
event = "E_UL_CONTACT_INSERT"
params = { aor = "carol", uri = "sip:carol@192.0.2.30:5070" }
[[expect]]
relayed = "sip:carol@192.0.2.30:5070"
method = "INVITE"
has = ["Record-Route"]
headers = { "Max-Forwards" = "69" }
after = "1s"
[[expect]]
reply = 200
to = "call"
[[expect]]
mi = "ul_dump"
result = { Domains = [{ AORs = [{ AOR = "carol*" }] }] }
"#);
    assert!(report.passed(), "{report}");
}

#[test]
fn a_cancel_while_ringing_ends_in_487_on_virtual_time() {
    let scenario = r#"
[[registrations]]
aor = "sip:bob@local"
contact = "sip:bob@192.0.2.20:5060"
[[phones]]
name = "bob"
address = "192.0.2.20:5060"
behaviour = "ring"
[[steps]]
send = "INVITE sip:bob@local from alice"
name = "call"
[[steps]]
at = "40s"
cancel = "call"
[[expect]]
relayed = "bob"
method = "CANCEL"
after = "40s"
[[expect]]
reply = 487
to = "call"
after = "40s"
[[expect]]
reply = 200
count = 1          # the CANCEL's own
"#;
    let report = run(scenario);
    assert!(report.passed(), "{report}");
    assert!(report.virtual_time >= std::time::Duration::from_secs(40), "{report}");
    assert!(report.wall_time < report.virtual_time, "40 s of ringing took {:?} of wall time", report.wall_time);

    // The CANCEL later than Timer C (180 s): the proxy has cancelled the
    // branch itself by then, so the caller's CANCEL finds no transaction
    // (481, not the 200 expected), and the report says so.
    let late = run(&scenario.replace("at = \"40s\"\ncancel", "at = \"200s\"\ncancel"));
    assert_eq!(failed(&late), ["expect 3: reply 200"], "{late}");
    let text = late.to_string();
    assert!(text.contains("180.000s  192.0.2.1:5060 => 198.51.100.10:5060  SIP/2.0 487"), "{text}");
    assert!(text.contains("SIP/2.0 481 Call/Transaction Does Not Exist  [status 481]"), "{text}");
}

#[test]
fn time_windows_and_hangups_are_checked() {
    let scenario = r#"
[[registrations]]
aor = "sip:bob@local"
contact = "sip:bob@192.0.2.20:5060"
[[phones]]
name = "bob"
address = "192.0.2.20:5060"
behaviour = "ring 2s, answer"
[[steps]]
send = "INVITE sip:bob@local from alice"
name = "call"
[[steps]]
at = "10s"
hangup = "call"
[[expect]]
reply = 200
to = "call"
after = "2s"
before = "2.5s"
[[expect]]
relayed = "bob"
method = "BYE"
after = "10s"
"#;
    assert!(run(scenario).passed(), "{}", run(scenario));
    let early = run(&scenario.replace("after = \"2s\"\nbefore = \"2.5s\"", "before = \"1s\""));
    assert_eq!(failed(&early), ["expect 1: reply 200 to \"call\""], "{early}");
}

#[test]
fn steps_that_cannot_be_carried_out_fail_the_scenario() {
    let report = run(r#"
[[steps]]
send = "INVITE sip:nobody@local from alice"
name = "call"
[[steps]]
at = "1s"
hangup = "call"
"#);
    assert!(!report.passed());
    assert!(report.to_string().contains("established no call"), "{report}");
}

#[test]
fn pushes_are_recorded_and_answered_from_the_stubs() {
    // The default route makes no HTTP request: a push expectation fails and
    // says there were none.
    let report = run(r#"
[[steps]]
send = "INVITE sip:bob@local from alice"
[[expect]]
push = "https://push.example.com/*"
"#);
    assert_eq!(failed(&report), ["expect 1: push to https://push.example.com/*"], "{report}");
    assert!(report.to_string().contains("HTTP requests made: 0"), "{report}");
}

/// push-wait's scenarios against the default route: each one about the
/// push fails, and for its own reasons (no push, a 404 where the route
/// would wait, no resumption); the one whose behaviour the two routes share
/// passes. The harness fails a wrong route, not any route.
#[test]
fn push_wait_scenarios_fail_against_the_default_route_each_for_its_reasons() {
    let harness = Harness::new(RouteSource::Embedded);
    let expected: &[(&str, &[&str])] = &[
        (
            "answered-after-registration",
            &[
                "expect 1: push to https://push.example.com/v1/push",
                "expect 2: INVITE relayed to bob-mobile",
                "expect 3: reply 200 to \"call\"",
                "expect 5: log \"bob registered sip:bob@192.0.2.40:5060: resuming call\"",
                "expect 6: counter ebr:woken",
            ],
        ),
        (
            "cancel-while-waiting",
            &["expect 1: push to https://push.example.com/v1/push", "expect 2: reply 487 to \"call\""],
        ),
        (
            "push-refused",
            &[
                "expect 1: reply 480 to \"call\"",
                "expect 2: log \"push for bob refused by https://push.example.com/v1/push: HTTP 503\"",
            ],
        ),
        ("registered-callee", &[]),
        (
            "replay-suspend",
            &[
                "expect 1: push to https://push.example.com/v1/push",
                "expect 2: INVITE relayed to bob-mobile",
                "expect 3: reply 200 to \"call\"",
                "expect 4: counter runtime:replays",
            ],
        ),
        (
            "timeout-480",
            &[
                "expect 1: push to https://push.example.com/v1/push",
                "expect 2: reply 480 Temporarily Unavailable to \"call\"",
                "expect 4: log \"bob did not register within 20 s\"",
                "expect 5: counter ebr:timed_out",
            ],
        ),
    ];
    let files = scenarios_of("push-wait");
    assert_eq!(files.len(), expected.len(), "a push-wait scenario without an expected verdict here");
    for (file, (stem, failures)) in files.iter().zip(expected) {
        assert_eq!(file.file_stem().and_then(|s| s.to_str()), Some(*stem));
        let report = harness.run_file(file).expect("the scenario runs");
        assert_eq!(failed(&report), *failures, "{stem}: {report}");
        // Every failure says what happened instead.
        assert!(report.failures.iter().all(|f| !f.happened.is_empty()), "{report}");
    }
}
