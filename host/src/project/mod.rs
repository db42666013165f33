//! Route projects: a directory with a `route.toml` ([`Manifest`]) naming the
//! route's language, how to build it, where the `.wasm` lands, its
//! scenarios, the config `sipbox run` serves it with, and the sources whose
//! change rebuilds it. [`Project`] finds one (walking up from a directory),
//! builds it and lists its scenarios; `sipbox build`, `sipbox test` and
//! `sipbox run` use it.
//!
//! - `language.rs`: the languages as data ([`Language`]: template, build
//!   command, output, watched sources, pre-build checks);
//! - `scaffold.rs`: `sipbox new` ([`scaffold`]);
//! - `rebuild.rs`: rebuilding on a source change under `sipbox run`
//!   ([`rebuild_on_change`]).
//!
//! Output paths: a Rust project's `output` under `target/` follows
//! `CARGO_TARGET_DIR` (or `CARGO_BUILD_TARGET_DIR`) when it is set, as cargo
//! does, so projects may share a target directory (the tests do). A target
//! directory set elsewhere (`.cargo/config.toml`, `--target-dir` in `build`)
//! needs `output` to say where the file is.

mod language;
mod rebuild;
mod scaffold;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

pub use language::{LANGUAGES, Language, SDK_VERSION, TemplateFile, Vars, crate_name, language};
pub use rebuild::{Rebuilds, rebuild_on_change};
pub use scaffold::{scaffold, validate_name};

/// The manifest's file name.
pub const MANIFEST: &str = "route.toml";

/// A route project: its root directory (where `route.toml` is, absolute and
/// canonical) and its manifest.
#[derive(Clone, Debug)]
pub struct Project {
    pub root: PathBuf,
    pub manifest: Manifest,
}

/// `route.toml`, with the language's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The route's name (for Rust, the package name).
    pub name: String,
    /// A [`Language`] name ("rust").
    pub language: String,
    /// The build command as argv, run in the root.
    pub build: Vec<String>,
    /// The `.wasm` the build writes, relative to the root.
    pub output: PathBuf,
    /// Globs of scenario files, relative to the root.
    pub scenarios: Vec<String>,
    /// The config `sipbox run` serves with, relative to the root.
    pub config: Option<PathBuf>,
    /// Globs of the sources whose change rebuilds the route under `sipbox run`.
    pub watch: Vec<String>,
}

/// `route.toml` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    language: String,
    build: Option<Vec<String>>,
    output: Option<PathBuf>,
    scenarios: Option<Vec<String>>,
    config: Option<PathBuf>,
    watch: Option<Vec<String>>,
}

impl Manifest {
    /// Parses `route.toml` text: unknown keys are refused, and so are an
    /// unknown language, an empty build command and globs that do not parse.
    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        let raw: RawManifest = toml::from_str(text)?;
        let lang = language(&raw.language)?;
        anyhow::ensure!(!raw.name.is_empty(), "name must not be empty");
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let manifest = Manifest {
            build: raw.build.unwrap_or_else(|| strings(lang.build)),
            output: raw.output.unwrap_or_else(|| lang.output.replace("{{crate}}", &crate_name(&raw.name)).into()),
            scenarios: raw.scenarios.unwrap_or_else(|| vec!["scenarios/*.toml".to_owned()]),
            watch: raw.watch.unwrap_or_else(|| strings(lang.watch)),
            config: raw.config,
            name: raw.name,
            language: raw.language,
        };
        anyhow::ensure!(
            manifest.build.first().is_some_and(|cmd| !cmd.is_empty()),
            "build must name a command (an argv list such as [\"cargo\", \"build\"])"
        );
        glob_set(&manifest.scenarios).context("scenarios")?;
        glob_set(&manifest.watch).context("watch")?;
        Ok(manifest)
    }

    /// The language this manifest names (checked when it was parsed).
    pub fn language(&self) -> &'static Language {
        language(&self.language).unwrap_or(&language::RUST)
    }
}

impl Project {
    /// The project whose root is `start` or its nearest ancestor holding a
    /// `route.toml`; `None` when there is none. A `route.toml` that cannot be
    /// read or does not parse is an error naming it and the problem.
    pub fn find(start: &Path) -> anyhow::Result<Option<Project>> {
        let start = std::fs::canonicalize(start).with_context(|| format!("cannot resolve {}", start.display()))?;
        for dir in start.ancestors() {
            let path = dir.join(MANIFEST);
            if path.is_file() {
                return Project::load(dir).map(Some);
            }
        }
        Ok(None)
    }

    /// The project rooted at `root` (which must hold a `route.toml`).
    pub fn load(root: &Path) -> anyhow::Result<Project> {
        let root = std::fs::canonicalize(root).with_context(|| format!("cannot resolve {}", root.display()))?;
        let path = root.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let manifest = Manifest::parse(&text).with_context(|| format!("invalid {}", path.display()))?;
        Ok(Project { root, manifest })
    }

    /// The absolute path of the `.wasm` the build writes (see the module
    /// docs for `CARGO_TARGET_DIR`).
    pub fn output_path(&self) -> PathBuf {
        let output = &self.manifest.output;
        if let Some((dir, vars)) = self.manifest.language().output_dir_env
            && output.is_relative()
            && let Ok(rest) = output.strip_prefix(dir)
            && let Some(target) = vars.iter().find_map(|var| std::env::var_os(var).filter(|v| !v.is_empty()))
        {
            return self.root.join(PathBuf::from(target)).join(rest);
        }
        self.root.join(output)
    }

    /// Runs the build command in the root (its output goes to this
    /// process's stdout and stderr) and returns the absolute path of the
    /// `.wasm` it made.
    ///
    /// # Errors
    /// What the language checks first (for Rust: a `cdylib` crate, the wasm
    /// target installed), a command that is not found or fails, or an output
    /// file that is not there afterwards, each saying what to do.
    pub fn build(&self) -> anyhow::Result<PathBuf> {
        let lang = self.manifest.language();
        (lang.preflight)(&self.root, &self.manifest.build)?;
        let argv = &self.manifest.build;
        let (program, args) = argv.split_first().context("route.toml's build is empty")?;
        let shown = argv.join(" ");
        let status = match Command::new(program).args(args).current_dir(&self.root).status() {
            Ok(status) => status,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "cannot build {}: `{program}` (route.toml's build) is not installed or not on PATH; {}",
                self.manifest.name,
                lang.install_hint
            ),
            Err(err) => anyhow::bail!("cannot run `{shown}` in {}: {err}", self.root.display()),
        };
        anyhow::ensure!(
            status.success(),
            "building {} failed: `{shown}` in {} exited with {status} (its output is above)",
            self.manifest.name,
            self.root.display()
        );
        let output = self.output_path();
        anyhow::ensure!(
            output.is_file(),
            "`{shown}` succeeded but {} is not there (route.toml's output): {}",
            output.display(),
            lang.missing_output_hint
        );
        Ok(output)
    }

    /// The scenario files, sorted: every file under the root matching one
    /// of the manifest's `scenarios` globs.
    pub fn scenarios(&self) -> anyhow::Result<Vec<PathBuf>> {
        let set = glob_set(&self.manifest.scenarios).context("route.toml's scenarios")?;
        let mut found = Vec::new();
        for pattern in &self.manifest.scenarios {
            let (base, recursive) = glob_base(pattern);
            for file in list_files(&self.root.join(&base), recursive)? {
                let relative = file.strip_prefix(&self.root).unwrap_or(&file);
                if set.is_match(relative) {
                    found.push(file);
                }
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// The config file `sipbox run` and `sipbox test` use, if route.toml names one.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.manifest.config.as_ref().map(|config| self.root.join(config))
    }
}

/// The globs as one set; `*` does not cross a `/` (`**` does).
pub(crate) fn glob_set(patterns: &[String]) -> anyhow::Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .with_context(|| format!("bad glob {pattern:?}"))?;
        builder.add(glob);
    }
    Ok(builder.build()?)
}

/// The directory a glob's matches are under (its leading components without
/// glob syntax), and whether they can be deeper than its direct entries.
pub(crate) fn glob_base(pattern: &str) -> (PathBuf, bool) {
    let parts: Vec<&str> = pattern.split('/').collect();
    let literal = parts.iter().take_while(|p| !p.contains(['*', '?', '[', '{'])).count();
    // "a/b.toml" is under "a", as "a/*.toml" is; "a/**/x" and "a/*/x" go deeper.
    let base_len = literal.min(parts.len().saturating_sub(1));
    let base: PathBuf = parts[..base_len].iter().collect();
    (base, parts.len() - base_len > 1)
}

/// The files in `dir` (and below it when `recursive`); none when `dir` does
/// not exist.
fn list_files(dir: &Path, recursive: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("cannot list {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let kind = entry.file_type().with_context(|| format!("cannot stat {}", entry.path().display()))?;
            if kind.is_dir() {
                if recursive {
                    pending.push(entry.path());
                }
            } else {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}
