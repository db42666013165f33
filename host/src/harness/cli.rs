//! `sipbox test [ROUTE.wasm] [SCENARIO...]`: runs scenarios and prints one
//! line per scenario (pass or fail, virtual and wall time), the report of
//! each failure, and a summary; `--junit FILE` also writes a JUnit XML
//! report for CI systems. Scenario arguments may be files or directories
//! (their `*.toml`). Without a module the route is the embedded default
//! route, unless the current directory is inside a route project, whose
//! route is built and whose scenarios run when none are named.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::{Harness, Report};
use crate::runtime::RouteSource;

/// What `sipbox test` was given.
pub struct TestArgs {
    /// A `.wasm` route module and/or scenario files and directories.
    pub paths: Vec<PathBuf>,
    /// A sipbox.toml whose tables the scenarios run under.
    pub config: Option<PathBuf>,
    /// Where to write a JUnit XML report.
    pub junit: Option<PathBuf>,
}

/// A route and its scenarios, as a project provides them (see
/// [`run_with_project`]).
pub struct ProjectTests {
    /// The built module.
    pub module: PathBuf,
    /// Its scenarios.
    pub scenarios: Vec<PathBuf>,
    /// Its config file, if it has one.
    pub config: Option<PathBuf>,
}

/// Runs `sipbox test` outside any project; true when every scenario passed.
///
/// # Errors
/// Nothing to run, or a JUnit file that cannot be written.
pub fn run(args: TestArgs) -> anyhow::Result<bool> {
    run_with_project(args, || Ok(None))
}

/// Runs `sipbox test`; `project` is asked for a route and scenarios when
/// the arguments name no module (`sipbox test` inside a route project).
///
/// # Errors
/// As [`run`], and the project's own errors (a failed build).
pub fn run_with_project(
    args: TestArgs,
    project: impl FnOnce() -> anyhow::Result<Option<ProjectTests>>,
) -> anyhow::Result<bool> {
    let (modules, scenario_args): (Vec<PathBuf>, Vec<PathBuf>) =
        args.paths.into_iter().partition(|p| p.extension().is_some_and(|e| e == "wasm"));
    if modules.len() > 1 {
        bail!("one route module at a time; got {}", modules.len());
    }
    let mut config = args.config;
    let mut scenarios = expand(&scenario_args)?;
    let route = match modules.into_iter().next() {
        Some(module) => {
            anyhow::ensure!(module.is_file(), "no route module at {}", module.display());
            RouteSource::File(module)
        }
        None => match project()? {
            Some(p) => {
                if scenario_args.is_empty() {
                    scenarios = p.scenarios;
                }
                config = config.or(p.config);
                RouteSource::File(p.module)
            }
            None => RouteSource::Embedded,
        },
    };
    if scenarios.is_empty() {
        bail!("no scenarios to run: name scenario files or directories (sipbox test ROUTE.wasm scenarios/)");
    }
    let mut harness = Harness::new(route);
    if let Some(config) = &config {
        harness = harness.with_config_file(config)?;
    }

    let mut results = Vec::with_capacity(scenarios.len());
    for path in &scenarios {
        let result = harness.run_file(path);
        match &result {
            Ok(report) => {
                println!("{}", report.line());
                if !report.passed() {
                    // The line is printed already; the rest is the detail.
                    let text = report.to_string();
                    print!("{}", text.split_once('\n').map_or("", |(_, rest)| rest));
                }
            }
            Err(err) => println!("ERROR {}: {err:#}", path.display()),
        }
        results.push((path.clone(), result));
    }
    let passed = results.iter().filter(|(_, r)| r.as_ref().is_ok_and(Report::passed)).count();
    let failed = results.len() - passed;
    let wall: Duration = results.iter().filter_map(|(_, r)| r.as_ref().ok()).map(|r| r.wall_time).sum();
    let virtual_time: Duration = results.iter().filter_map(|(_, r)| r.as_ref().ok()).map(|r| r.virtual_time).sum();
    println!(
        "{passed} passed, {failed} failed ({:.1}s of virtual time in {}ms)",
        virtual_time.as_secs_f64(),
        wall.as_millis()
    );
    if let Some(junit) = &args.junit {
        std::fs::write(junit, junit_xml(&results))
            .with_context(|| format!("cannot write the JUnit report {}", junit.display()))?;
    }
    Ok(failed == 0)
}

/// Files as given, directories as their `*.toml`, sorted.
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
                .collect();
            found.sort();
            anyhow::ensure!(!found.is_empty(), "no *.toml scenarios in {}", path.display());
            out.extend(found);
        } else {
            anyhow::ensure!(path.is_file(), "no scenario file at {}", path.display());
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// The JUnit XML of a run: one test case per scenario, the report as the
/// failure's text.
pub fn junit_xml(results: &[(PathBuf, anyhow::Result<Report>)]) -> String {
    let failures = results.iter().filter(|(_, r)| !r.as_ref().is_ok_and(Report::passed)).count();
    let wall: f64 = results.iter().filter_map(|(_, r)| r.as_ref().ok()).map(|r| r.wall_time.as_secs_f64()).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites tests=\"{}\" failures=\"{failures}\" time=\"{wall:.3}\">\n  \
         <testsuite name=\"sipbox scenarios\" tests=\"{}\" failures=\"{failures}\" time=\"{wall:.3}\">",
        results.len(),
        results.len()
    );
    for (path, result) in results {
        let class = escape(&classname(path));
        match result {
            Ok(report) => {
                let _ = write!(
                    xml,
                    "    <testcase name=\"{}\" classname=\"{class}\" time=\"{:.3}\">",
                    escape(&report.name),
                    report.wall_time.as_secs_f64()
                );
                if !report.passed() {
                    let message = report.failures.first().map_or(String::new(), |f| f.what.clone());
                    let _ = write!(
                        xml,
                        "\n      <failure message=\"{}\">{}</failure>\n    ",
                        escape(&message),
                        escape(&report.to_string())
                    );
                }
                let _ = writeln!(
                    xml,
                    "<system-out>virtual time {:.3}s</system-out></testcase>",
                    report.virtual_time.as_secs_f64()
                );
            }
            Err(err) => {
                let name = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                let _ = writeln!(
                    xml,
                    "    <testcase name=\"{}\" classname=\"{class}\" time=\"0\">\n      \
                     <error message=\"{}\"/>\n    </testcase>",
                    escape(&name),
                    escape(&format!("{err:#}"))
                );
            }
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// `examples/push-wait/scenarios/x.toml` → `push-wait`: the scenario's project.
fn classname(path: &Path) -> String {
    let dir = path.parent();
    let project = match dir.and_then(Path::file_name) {
        Some(name) if name == "scenarios" => dir.and_then(Path::parent).and_then(Path::file_name),
        other => other,
    };
    project.map_or_else(|| "scenarios".into(), |n| n.to_string_lossy().into_owned())
}

/// XML text and attribute escaping; characters XML 1.0 cannot hold are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_escapes_and_names_the_project() {
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(classname(Path::new("examples/push-wait/scenarios/x.toml")), "push-wait");
        let results = vec![(PathBuf::from("s/bad.toml"), Err(anyhow::anyhow!("invalid <scenario>")))];
        let xml = junit_xml(&results);
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(xml.contains("<error message=\"invalid &lt;scenario&gt;\"/>"), "{xml}");
    }
}
