//! `sipbox test`: every example's scenarios pass through the command line
//! (as CI runs them), a failing scenario exits non-zero with its report and
//! a JUnit failure, and a bad scenario is refused with its reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::Route;

fn sipbox_test(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sipbox")).arg("test").args(args).output().expect("run sipbox test")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn every_example_passes_its_scenarios_through_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(examples()).expect("examples/").filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    let mut checked = 0;
    for example in entries.iter().filter(|p| p.join("Cargo.toml").is_file()) {
        let name = example.file_name().and_then(|n| n.to_str()).expect("a name");
        let scenarios = example.join("scenarios");
        let files = std::fs::read_dir(&scenarios)
            .unwrap_or_else(|e| panic!("{}: {e} (every example ships scenarios)", scenarios.display()))
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
            .count();
        let module = Route::example_path(&format!("{}.wasm", name.replace('-', "_")));
        let junit = dir.path().join(format!("{name}.xml"));
        let out = sipbox_test(&[
            module.to_str().expect("utf-8"),
            scenarios.to_str().expect("utf-8"),
            "--junit",
            junit.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let said = text(&out);
        assert_eq!(said.lines().filter(|l| l.starts_with("PASS  ")).count(), files, "{name}: {said}");
        assert!(said.contains(&format!("{files} passed, 0 failed")), "{name}: {said}");
        let xml = std::fs::read_to_string(&junit).expect("the JUnit report");
        assert!(xml.contains(&format!("tests=\"{files}\" failures=\"0\"")), "{name}: {xml}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} examples found");
}

#[test]
fn a_failing_scenario_exits_non_zero_with_its_report_and_a_junit_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("wrong.toml");
    std::fs::write(
        &scenario,
        "name = \"expects a call nobody can take\"\n\
         [[steps]]\nsend = \"INVITE sip:nobody@local from alice\"\nname = \"call\"\n\
         [[expect]]\nreply = 200\nto = \"call\"\n",
    )
    .expect("write scenario");
    let junit = dir.path().join("report.xml");
    let out = sipbox_test(&[scenario.to_str().expect("utf-8"), "--junit", junit.to_str().expect("utf-8")]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("FAIL  expects a call nobody can take  (virtual "), "{said}");
    assert!(said.contains("expected: at least one reply 200 to \"call\""), "{said}");
    assert!(said.contains("SIP/2.0 404 Not Found  [status 404]"), "{said}");
    assert!(said.contains("0 passed, 1 failed"), "{said}");
    let xml = std::fs::read_to_string(&junit).expect("the JUnit report");
    assert!(
        xml.contains("failures=\"1\"") && xml.contains("<failure message=\"expect 1: reply 200 to &quot;call&quot;\">"),
        "{xml}"
    );
}

#[test]
fn a_bad_scenario_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("bad.toml");
    std::fs::write(&scenario, "[[steps]]\ncancel = \"call\"\n").expect("write scenario");
    let out = sipbox_test(&[scenario.to_str().expect("utf-8")]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("ERROR") && said.contains("no earlier step is named \"call\""), "{said}");

    let out = sipbox_test(&["/nonexistent/route.wasm", scenario.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no route module at /nonexistent/route.wasm"), "{}", text(&out));
}
