//! The languages a route project can be written in, as data: each is one
//! [`Language`] entry (its template files, default build command, output
//! and watched sources, what to check before a build, what to say when the
//! output is missing). Another language is one more entry in [`LANGUAGES`]
//! and one more template, not a new mechanism.

use std::path::Path;

use anyhow::Context;

/// One file a new project gets. With `fill`, `{{name}}`-style placeholders
/// are replaced (see [`Vars`]); files copied verbatim (sources, the SDK) are
/// never touched, so they may contain braces.
#[derive(Clone, Copy, Debug)]
pub struct TemplateFile {
    /// Path inside the project, `/`-separated.
    pub path: &'static str,
    pub text: &'static str,
    pub fill: bool,
}

// SDK_FILES, WIT_FILES, SDK_VERSION, CARGO_LOCK (host/build/sdk.rs).
include!(concat!(env!("OUT_DIR"), "/sdk.rs"));

/// A route language.
#[derive(Debug)]
pub struct Language {
    /// As `language = "..."` in route.toml and `sipbox new --lang`.
    pub name: &'static str,
    /// The files of a new project, in groups (the language's own template,
    /// the SDK, the WIT).
    pub files: &'static [&'static [TemplateFile]],
    /// The default build command, run in the project's root.
    pub build: &'static [&'static str],
    /// The default output, relative to the root; `{{crate}}` is the name
    /// with `-` as `_`.
    pub output: &'static str,
    /// A relative output starting with this directory follows these
    /// environment variables (cargo's `CARGO_TARGET_DIR`): the first set one
    /// replaces the directory.
    pub output_dir_env: Option<(&'static str, &'static [&'static str])>,
    /// Sources whose change rebuilds the route under `sipbox run`.
    pub watch: &'static [&'static str],
    /// Checked before the build command runs: what the build needs that
    /// would otherwise fail late or obscurely.
    pub preflight: fn(root: &Path, build: &[String]) -> anyhow::Result<()>,
    /// Said when the build command is not found.
    pub install_hint: &'static str,
    /// Said when the build succeeded but left no output.
    pub missing_output_hint: &'static str,
}

/// What the filled template files say: the project's name and the versions
/// of what made it.
pub struct Vars<'a> {
    pub name: &'a str,
    pub language: &'a Language,
}

impl Vars<'_> {
    /// `text` with every placeholder replaced.
    pub fn fill(&self, text: &str) -> String {
        let quoted =
            |items: &[&str]| format!("[{}]", items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "));
        let output = self.language.output.replace("{{crate}}", &crate_name(self.name));
        text.replace("{{name}}", self.name)
            .replace("{{crate}}", &crate_name(self.name))
            .replace("{{language}}", self.language.name)
            .replace("{{build}}", &quoted(self.language.build))
            .replace("{{output}}", &output)
            .replace("{{watch}}", &quoted(self.language.watch))
            .replace("{{sipbox_version}}", env!("CARGO_PKG_VERSION"))
            .replace("{{sdk_version}}", SDK_VERSION)
            .replace("{{wit_version}}", crate::runtime::WIT_VERSION)
    }
}

/// A package name as Rust code and file names spell it.
pub fn crate_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Every language sipbox can build.
pub const LANGUAGES: &[&Language] = &[&RUST];

/// The language called `name`.
pub fn language(name: &str) -> anyhow::Result<&'static Language> {
    LANGUAGES.iter().copied().find(|l| l.name == name).ok_or_else(|| {
        let known: Vec<&str> = LANGUAGES.iter().map(|l| l.name).collect();
        anyhow::anyhow!("unknown language {name:?}: sipbox builds routes in {}", known.join(", "))
    })
}

/// The wasm target a Rust route is built for.
const RUST_TARGET: &str = "wasm32-wasip2";

/// The Rust template: the default route's sources are those of
/// `examples/default-route` (embedded, so they cannot drift).
const RUST_TEMPLATE: &[TemplateFile] = &[
    TemplateFile { path: "route.toml", text: include_str!("template/rust/route.toml"), fill: true },
    TemplateFile { path: "Cargo.toml", text: include_str!("template/rust/Cargo.toml"), fill: true },
    TemplateFile { path: "src/lib.rs", text: include_str!("../../../examples/default-route/src/lib.rs"), fill: false },
    TemplateFile { path: "scenarios/call.toml", text: include_str!("template/rust/scenarios/call.toml"), fill: false },
    TemplateFile { path: "sipbox.toml", text: include_str!("template/rust/sipbox.toml"), fill: true },
    TemplateFile { path: "README.md", text: include_str!("template/rust/README.md"), fill: true },
    TemplateFile { path: ".gitignore", text: include_str!("template/rust/gitignore"), fill: false },
    CARGO_LOCK,
];

/// Rust, with cargo and the SDK this binary carries.
pub const RUST: Language = Language {
    name: "rust",
    files: &[RUST_TEMPLATE, SDK_FILES, WIT_FILES],
    build: &["cargo", "build", "--release", "--target", RUST_TARGET],
    output: "target/wasm32-wasip2/release/{{crate}}.wasm",
    output_dir_env: Some(("target", &["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"])),
    watch: &["src/**/*.rs", "Cargo.toml"],
    preflight: rust_preflight,
    install_hint: "install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip2`",
    missing_output_hint: "a Rust route's Cargo.toml needs `[lib] crate-type = [\"cdylib\"]` (without it cargo \
                          builds an .rlib and no .wasm), and route.toml's output must name the file cargo writes",
};

/// Before cargo runs: the crate is a cdylib (else cargo succeeds and writes
/// no .wasm, or leaves an old one), and the wasm target is installed when
/// the build names it.
fn rust_preflight(root: &Path, build: &[String]) -> anyhow::Result<()> {
    let manifest = root.join("Cargo.toml");
    if manifest.is_file() {
        let text = std::fs::read_to_string(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
        let table: toml::Table = text.parse().with_context(|| format!("invalid {}", manifest.display()))?;
        let is_package = table.contains_key("package");
        let cdylib = table
            .get("lib")
            .and_then(|lib| lib.get("crate-type"))
            .and_then(toml::Value::as_array)
            .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
        anyhow::ensure!(
            !is_package || cdylib,
            "{} builds no .wasm: a route is a component, so it needs\n\n    [lib]\n    crate-type = [\"cdylib\"]\n\n\
             (without it cargo builds an .rlib and no .wasm, with no warning)",
            manifest.display()
        );
    }
    if build.iter().any(|arg| arg == RUST_TARGET) {
        check_rust_target(root)?;
    }
    Ok(())
}

/// Whether the toolchain that builds in `root` has the wasm target's
/// standard library. A rustc that cannot be asked is left to cargo to report.
fn check_rust_target(root: &Path) -> anyhow::Result<()> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let Ok(out) = std::process::Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", RUST_TARGET])
        .current_dir(root)
        .output()
    else {
        return Ok(());
    };
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    anyhow::ensure!(
        out.status.success() && has_std(Path::new(&libdir)),
        "the {RUST_TARGET} target is not installed for the Rust toolchain that builds {}: run `rustup target add {RUST_TARGET}`",
        root.display()
    );
    Ok(())
}

/// Whether `libdir` holds a standard library (`libstd-*.rlib`).
pub(crate) fn has_std(libdir: &Path) -> bool {
    std::fs::read_dir(libdir)
        .is_ok_and(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
}
