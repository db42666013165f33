//! `sipbox check-route`: a module is checked against the `[limits]` it will run
//! under (`--config`), and the module `[routes]` names is checked when none is given.

use std::process::{Command, Output};

use crate::harness::Route;

fn check_route(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sipbox")).arg("check-route").args(args).output().expect("run sipbox check-route")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn config_file(dir: &tempfile::TempDir, body: &str) -> String {
    let path = dir.path().join("sipbox.toml");
    std::fs::write(&path, body).expect("write config");
    path.display().to_string()
}

#[test]
fn a_module_that_fits_the_default_limits_is_ok() {
    let module = Route::example_path("default_route.wasm").display().to_string();
    let out = check_route(&[&module]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok, a sipbox:route"), "{}", text(&out));
}

#[test]
fn the_config_limits_apply_and_a_module_that_cannot_start_under_them_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 1 MiB is less than the default route's initial linear memory (its stack alone).
    let config = config_file(&dir, "[limits]\nmemory_mb = 1\n");
    let module = Route::example_path("default_route.wasm").display().to_string();
    let out = check_route(&["--config", &config, &module]);
    assert!(!out.status.success(), "accepted under 1 MiB: {}", text(&out));
    let said = text(&out);
    assert!(said.contains("default_route.wasm") || said.contains("default-route"), "module not named: {said}");
    assert!(said.contains("exceeds the limit"), "no reason given: {said}");
    assert!(!said.contains("(embedded)"), "checked the embedded route instead: {said}");
}

#[test]
fn without_a_module_the_one_the_config_names_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = Route::example_path("serial_fork.wasm");
    let config = config_file(&dir, &format!("[routes]\nmodule = {:?}\n", module.display().to_string()));
    let out = check_route(&["--config", &config]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("serial_fork.wasm: ok"), "{}", text(&out));

    let out = check_route(&[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no route module"), "{}", text(&out));
}
