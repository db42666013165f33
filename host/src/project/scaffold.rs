//! `sipbox new`: writes a new route project from a [`Language`]'s template
//! files, refusing a name that is not a valid package name and a directory
//! that already holds something.

use std::path::Path;

use anyhow::Context;

use super::{Language, Vars};

/// Names a Rust package cannot have (keywords, and the crates every build
/// links or this project depends on), which cargo would refuse later.
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "Self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "alloc",
    "core",
    "std",
    "proc_macro",
    "proc-macro",
    "test",
    "sipbox-guest",
    "sipbox_guest",
];

/// Longest name accepted (cargo's limit for crates.io is 64).
const MAX_NAME: usize = 64;

/// Checks that `name` can be a route's package name: ASCII letters, digits,
/// `-` and `_`, starting with a letter, not a keyword or reserved crate name.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let bad = |why: &str| anyhow::anyhow!("{name:?} is not a valid route name: {why}");
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(bad(&format!("it is longer than {MAX_NAME} characters")));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(bad("it must start with a letter"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(bad(&format!("{c:?} is not allowed (use ASCII letters, digits, '-' and '_')")));
    }
    if RESERVED.contains(&name) {
        return Err(bad("it is a Rust keyword or a reserved crate name"));
    }
    Ok(())
}

/// Writes the project `name` in `language` into `dir` (created; it may exist
/// if it is empty). Returns the files written, relative to `dir`.
pub fn scaffold(name: &str, language: &Language, dir: &Path) -> anyhow::Result<Vec<String>> {
    validate_name(name)?;
    if dir.exists() {
        anyhow::ensure!(dir.is_dir(), "{} exists and is not a directory", dir.display());
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        anyhow::ensure!(
            entries.next().is_none(),
            "{} exists and is not empty: sipbox new writes a project only into a new or empty directory",
            dir.display()
        );
    }
    let vars = Vars { name, language };
    let mut written = Vec::new();
    for file in language.files.iter().flat_map(|group| group.iter()) {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = if file.fill { vars.fill(file.text) } else { file.text.to_owned() };
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(file.path.to_owned());
    }
    Ok(written)
}
