//! Builds the example route modules and hands them to the host.
//!
//! `examples/` is a cargo workspace of its own whose crates only make sense
//! for `wasm32-wasip2`. This script builds it in release mode with the same
//! cargo into `<workspace>/target/wasm-routes` (a target dir of its own, so
//! the nested cargo does not wait on the lock the outer build holds), copies
//! each component to `OUT_DIR` and writes `OUT_DIR/routes.rs`:
//!
//! - `DEFAULT_ROUTE: &[u8]`: the default route, embedded in the binary;
//! - `<NAME>_PATH: &str` per example (`DEFAULT_ROUTE_PATH`,
//!   `TRAP_ROUTE_PATH`, `SERIAL_FORK_PATH`): absolute component paths;
//! - `EXAMPLE_ROUTES` and `example_route_path(name)`: the same, by name.
//!
//! Every directory of `examples/` with a `Cargo.toml` is an example; its
//! package name is the directory name.
//!
//! It also writes `OUT_DIR/sdk.rs` (see `sdk.rs` beside this file): the
//! guest SDK's sources and the WIT, which `sipbox new` writes into a project
//! so it builds with the SDK of this very binary.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[path = "build/sdk.rs"]
mod sdk;

const WASM_TARGET: &str = "wasm32-wasip2";
/// The example the server runs by default, embedded in the binary.
const DEFAULT_EXAMPLE: &str = "default-route";
/// A component starts with the wasm magic, then version 0x0d and layer 1
/// (a core module has version 1, layer 0).
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// Variables the outer cargo sets (or a user exports) that must not leak
/// into the nested build: host rustflags, the outer target dir, clippy.
const CLEARED_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_BUILD_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // One line for cargo's summary, the details (the nested build's
            // own output) on stderr, which cargo prints for a failed script.
            println!("cargo::error={}", failure.summary);
            if !failure.details.is_empty() {
                eprintln!("{}", failure.details);
            }
            ExitCode::FAILURE
        }
    }
}

struct Failure {
    summary: String,
    details: String,
}

impl From<String> for Failure {
    fn from(summary: String) -> Self {
        Failure { summary, details: String::new() }
    }
}

fn run() -> Result<(), Failure> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let workspace =
        manifest_dir.parent().ok_or_else(|| format!("{} has no parent directory", manifest_dir.display()))?;
    let examples_dir = workspace.join("examples");
    let target_dir = workspace.join("target").join("wasm-routes");

    let examples = find_examples(&examples_dir)?;
    emit_rerun_if_changed(workspace, &examples_dir, &examples);
    ensure_wasm_target()?;
    build_examples(&examples_dir, &target_dir)?;

    let release_dir = target_dir.join(WASM_TARGET).join("release");
    let mut routes = Vec::with_capacity(examples.len());
    for name in &examples {
        let built = release_dir.join(format!("{}.wasm", name.replace('-', "_")));
        let bytes = fs::read(&built)
            .map_err(|e| format!("example `{name}` produced no component at {}: {e}", built.display()))?;
        if !bytes.starts_with(&COMPONENT_HEADER) {
            return Err(format!(
                "{} is not a WebAssembly component (header {:02x?}); is `{name}` a cdylib?",
                built.display(),
                &bytes[..bytes.len().min(8)],
            )
            .into());
        }
        let copy = out_dir.join(format!("{name}.wasm"));
        fs::write(&copy, &bytes).map_err(|e| format!("writing {}: {e}", copy.display()))?;
        routes.push((name.as_str(), copy));
    }
    if !examples.iter().any(|name| name == DEFAULT_EXAMPLE) {
        return Err(format!("examples/{DEFAULT_EXAMPLE} is missing: the server embeds it").into());
    }

    let generated = out_dir.join("routes.rs");
    fs::write(&generated, routes_rs(&routes)).map_err(|e| format!("writing {}: {e}", generated.display()))?;
    sdk::write_sdk_rs(workspace, &out_dir)?;
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|e| format!("environment variable {name}: {e}"))
}

/// The example crates: directories of `examples/` holding a `Cargo.toml`.
fn find_examples(examples_dir: &Path) -> Result<Vec<String>, String> {
    let entries = fs::read_dir(examples_dir).map_err(|e| format!("reading {}: {e}", examples_dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", examples_dir.display()))?;
        if !entry.path().join("Cargo.toml").is_file() {
            continue;
        }
        let name =
            entry.file_name().into_string().map_err(|name| format!("example directory name {name:?} is not UTF-8"))?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

fn emit_rerun_if_changed(workspace: &Path, examples_dir: &Path, examples: &[String]) {
    let mut watched = vec![
        PathBuf::from("build.rs"),
        workspace.join("wit"),
        workspace.join("guest-sdk").join("src"),
        workspace.join("guest-sdk").join("Cargo.toml"),
        // [workspace.package], which the SDK's Cargo.toml inherits (sdk.rs).
        workspace.join("Cargo.toml"),
        PathBuf::from("build/sdk.rs"),
        examples_dir.join("Cargo.toml"),
        examples_dir.join("Cargo.lock"),
        examples_dir.join(".cargo"),
        // Not examples/ itself: the scan is recursive and would include a
        // hand-made examples/target. A new example is added to the members
        // list of examples/Cargo.toml, which is watched.
    ];
    for name in examples {
        watched.push(examples_dir.join(name).join("src"));
        watched.push(examples_dir.join(name).join("Cargo.toml"));
    }
    for path in watched {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}

/// Installs the wasm32-wasip2 standard library with rustup when the active
/// toolchain lacks it (a fresh machine).
fn ensure_wasm_target() -> Result<(), String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .map_err(|e| format!("running `{rustc} --print target-libdir`: {e}"))?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim());
    if has_std(&libdir) {
        return Ok(());
    }
    println!("cargo::warning=installing the {WASM_TARGET} target with rustup (first build only)");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| format!("{WASM_TARGET} is missing and rustup could not run: {e}"))?;
    if !status.success() {
        return Err(format!("`rustup target add {WASM_TARGET}` failed ({status}); route modules need that target"));
    }
    Ok(())
}

fn has_std(libdir: &Path) -> bool {
    fs::read_dir(libdir)
        .is_ok_and(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
}

fn build_examples(examples_dir: &Path, target_dir: &Path) -> Result<(), Failure> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(examples_dir)
        .arg("build")
        .arg("--release")
        .args(["--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(examples_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    // CARGO_MAKEFLAGS stays: the nested cargo shares the outer jobserver, so
    // the two builds together keep to the configured parallelism.
    let output = cmd.output().map_err(|e| format!("running `{cargo} build` for examples/: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Failure {
        summary: format!(
            "building the route modules in {} for {WASM_TARGET} failed ({}); cargo's output follows",
            examples_dir.display(),
            output.status,
        ),
        details: format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    })
}

/// `FOO-BAR` style constant name for an example directory name.
fn const_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

fn routes_rs(routes: &[(&str, PathBuf)]) -> String {
    let mut out = String::from("// @generated by host/build.rs from the crates in examples/; do not edit.\n\n");
    for (name, path) in routes {
        let path = path.display().to_string();
        if *name == DEFAULT_EXAMPLE {
            let _ = write!(
                out,
                "/// The default route module (`examples/{name}`): a WebAssembly component\n\
                 /// embedded in the binary, so the server routes without any file.\n\
                 pub const DEFAULT_ROUTE: &[u8] = include_bytes!({path:?});\n\n"
            );
        }
        let _ = write!(
            out,
            "/// Absolute path of the `{name}` example component (`examples/{name}`).\n\
             #[allow(dead_code, reason = \"example paths serve tests and tools\")]\n\
             pub const {}_PATH: &str = {path:?};\n\n",
            const_name(name),
        );
    }
    out.push_str(
        "/// Every example route module: (name, absolute component path), by name.\n\
         #[allow(dead_code, reason = \"example paths serve tests and tools\")]\n\
         pub const EXAMPLE_ROUTES: &[(&str, &str)] = &[\n",
    );
    for (name, _) in routes {
        let _ = writeln!(out, "    ({name:?}, {}_PATH),", const_name(name));
    }
    out.push_str(
        "];\n\n\
         /// The component path of the example route `name` (\"trap-route\"), if it exists.\n\
         #[allow(dead_code, reason = \"example paths serve tests and tools\")]\n\
         pub fn example_route_path(name: &str) -> Option<&'static str> {\n    \
             EXAMPLE_ROUTES.iter().find(|(n, _)| *n == name).map(|(_, path)| *path)\n\
         }\n",
    );
    out
}
