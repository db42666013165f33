//! A route project as a new user makes one, outside this repository:
//! `sipbox new demo` → `sipbox test` (which builds it with cargo for
//! wasm32-wasip2 against the SDK the binary carries) passes its scenario,
//! and a broken route fails the build with cargo's reason.

use std::path::Path;
use std::process::{Command, Output};

fn sipbox(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sipbox"))
        .args(args)
        .current_dir(dir)
        // The SDK's wasm build is cached across runs in the repository's target/.
        .env("CARGO_TARGET_DIR", Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold-test"))
        .output()
        .expect("run sipbox")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn sipbox_new_then_sipbox_test_passes_outside_the_repository() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
    let out = sipbox(dir.path(), &["new", "demo"]);
    assert!(out.status.success(), "{}", text(&out));
    let project = dir.path().join("demo");
    for file in ["route.toml", "Cargo.toml", "src/lib.rs", "scenarios/call.toml", "sdk/wit/route.wit"] {
        assert!(project.join(file).is_file(), "sipbox new wrote no {file}");
    }
    // From a subdirectory: the project is found by walking up.
    let out = sipbox(&project.join("src"), &["test"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("PASS  a registered phone is called through the proxy"), "{said}");
    assert!(said.contains("1 passed, 0 failed"), "{said}");

    // A route that does not compile: the build fails with the reason, nothing runs.
    std::fs::write(project.join("src/lib.rs"), "this is not rust").expect("break the route");
    let out = sipbox(&project, &["test"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("PASS"), "{}", text(&out));
}

#[test]
fn sipbox_new_refuses_a_directory_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("taken")).expect("mkdir");
    std::fs::write(dir.path().join("taken/file"), "x").expect("write");
    let out = sipbox(dir.path(), &["new", "taken"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("taken"), "{}", text(&out));
}
