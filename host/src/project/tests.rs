use std::path::Path;

use super::*;

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent");
    }
    std::fs::write(path, text).expect("write file");
}

fn err_text<T: std::fmt::Debug>(result: anyhow::Result<T>) -> String {
    format!("{:#}", result.expect_err("an error"))
}

#[test]
fn a_minimal_manifest_gets_the_languages_defaults() {
    let m = Manifest::parse("name = \"my-route\"\nlanguage = \"rust\"\n").expect("parses");
    assert_eq!(m.build, ["cargo", "build", "--release", "--target", "wasm32-wasip2"]);
    assert_eq!(m.output, Path::new("target/wasm32-wasip2/release/my_route.wasm"));
    assert_eq!(m.scenarios, ["scenarios/*.toml"]);
    assert_eq!(m.watch, ["src/**/*.rs", "Cargo.toml"]);
    assert_eq!(m.config, None);
}

#[test]
fn bad_manifests_are_refused_with_the_reason() {
    let said = err_text(Manifest::parse("name = \"r\"\nlanguage = \"rust\"\noutptu = \"x.wasm\"\n"));
    assert!(said.contains("outptu"), "{said}");
    let said = err_text(Manifest::parse("name = \"r\"\nlanguage = \"cobol\"\n"));
    assert!(said.contains("cobol") && said.contains("rust"), "{said}");
    let said = err_text(Manifest::parse("language = \"rust\"\n"));
    assert!(said.contains("name"), "{said}");
    let said = err_text(Manifest::parse("name = \"r\"\nlanguage = \"rust\"\nbuild = []\n"));
    assert!(said.contains("build"), "{said}");
    let said = err_text(Manifest::parse("name = \"r\"\nlanguage = \"rust\"\nwatch = [\"src/[\"]\n"));
    assert!(said.contains("watch") && said.contains("src/["), "{said}");
    let said = err_text(Manifest::parse("name = \"r\"\nlanguage = \"rust\"\nbuild = \"cargo build\"\n"));
    assert!(said.contains("build"), "{said}");
}

#[test]
fn find_walks_up_to_the_manifest_and_reports_a_broken_one_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("proj");
    write(&root.join(MANIFEST), "name = \"proj\"\nlanguage = \"rust\"\nconfig = \"sipbox.toml\"\n");
    let deep = root.join("src").join("a").join("b");
    std::fs::create_dir_all(&deep).expect("mkdir");
    let project = Project::find(&deep).expect("find").expect("a project");
    assert_eq!(project.root, std::fs::canonicalize(&root).expect("canonical"));
    assert_eq!(project.manifest.name, "proj");
    assert_eq!(project.config_path(), Some(project.root.join("sipbox.toml")));

    let outside = dir.path().join("elsewhere");
    std::fs::create_dir_all(&outside).expect("mkdir");
    assert!(Project::find(&outside).expect("find").is_none());

    write(&root.join(MANIFEST), "name = \"proj\"\nlanguage = \"rust\"\nbiuld = []\n");
    let said = err_text(Project::find(&deep));
    assert!(said.contains("route.toml") && said.contains("biuld"), "{said}");
}

#[test]
fn scenarios_are_the_matching_files_sorted() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join(MANIFEST),
        "name = \"p\"\nlanguage = \"rust\"\nscenarios = [\"scenarios/*.toml\", \"more/**/*.toml\"]\n",
    );
    for file in
        ["scenarios/b.toml", "scenarios/a.toml", "scenarios/notes.md", "scenarios/deep/x.toml", "more/1/2/c.toml"]
    {
        write(&dir.path().join(file), "");
    }
    let project = Project::load(dir.path()).expect("load");
    let found: Vec<String> = project
        .scenarios()
        .expect("scenarios")
        .iter()
        .map(|p| p.strip_prefix(&project.root).expect("under root").display().to_string())
        .collect();
    assert_eq!(found, ["more/1/2/c.toml", "scenarios/a.toml", "scenarios/b.toml"]);
}

#[test]
fn glob_bases_are_the_literal_directories() {
    assert_eq!(glob_base("scenarios/*.toml"), (PathBuf::from("scenarios"), false));
    assert_eq!(glob_base("src/**/*.rs"), (PathBuf::from("src"), true));
    assert_eq!(glob_base("Cargo.toml"), (PathBuf::new(), false));
    assert_eq!(glob_base("a/b/c.toml"), (PathBuf::from("a/b"), false));
    assert_eq!(glob_base("**/*.rs"), (PathBuf::new(), true));
}

#[test]
fn a_build_that_writes_no_output_says_what_was_expected_and_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join(MANIFEST),
        "name = \"p\"\nlanguage = \"rust\"\nbuild = [\"true\"]\noutput = \"out/p.wasm\"\n",
    );
    let project = Project::load(dir.path()).expect("load");
    let said = err_text(project.build());
    assert!(said.contains("out/p.wasm") && said.contains("cdylib"), "{said}");

    write(&dir.path().join(MANIFEST), "name = \"p\"\nlanguage = \"rust\"\nbuild = [\"false\"]\n");
    let said = err_text(Project::load(dir.path()).expect("load").build());
    assert!(said.contains("`false`") && said.contains("failed"), "{said}");

    write(&dir.path().join(MANIFEST), "name = \"p\"\nlanguage = \"rust\"\nbuild = [\"sipbox-no-such-tool\"]\n");
    let said = err_text(Project::load(dir.path()).expect("load").build());
    assert!(said.contains("sipbox-no-such-tool") && said.contains("not installed"), "{said}");

    write(&dir.path().join(MANIFEST), "name = \"p\"\nlanguage = \"rust\"\nbuild = [\"true\"]\noutput = \"p.wasm\"\n");
    write(&dir.path().join("p.wasm"), "");
    let built = Project::load(dir.path()).expect("load").build().expect("built");
    assert!(built.is_absolute() && built.ends_with("p.wasm"), "{}", built.display());
}

#[test]
fn a_rust_crate_without_cdylib_is_refused_before_cargo_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `false` would fail the build: the refusal must come first.
    write(&dir.path().join(MANIFEST), "name = \"p\"\nlanguage = \"rust\"\nbuild = [\"false\"]\n");
    write(&dir.path().join("Cargo.toml"), "[package]\nname = \"p\"\nversion = \"0.1.0\"\n");
    let said = err_text(Project::load(dir.path()).expect("load").build());
    assert!(said.contains("crate-type = [\"cdylib\"]") && said.contains(".rlib"), "{said}");
}

#[test]
fn names_that_cannot_be_crates_are_refused_with_the_reason() {
    for (name, reason) in [
        ("", "empty"),
        ("9lives", "letter"),
        ("my route", "' '"),
        ("héllo", "'é'"),
        ("fn", "keyword"),
        ("std", "reserved"),
        ("sipbox-guest", "reserved"),
    ] {
        let said = err_text(validate_name(name));
        assert!(said.contains(reason), "{name:?}: {said}");
    }
    validate_name("my-route_2").expect("a good name");
}

#[test]
fn scaffold_refuses_a_non_empty_directory_and_writes_a_loadable_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = dir.path().join("taken");
    write(&taken.join("keep.txt"), "mine");
    let said = err_text(scaffold("taken", &language::RUST, &taken));
    assert!(said.contains("not empty"), "{said}");
    assert_eq!(std::fs::read_to_string(taken.join("keep.txt")).expect("untouched"), "mine");
    let said = err_text(scaffold("bad name", &language::RUST, &dir.path().join("bad")));
    assert!(said.contains("not a valid route name"), "{said}");
    assert!(!dir.path().join("bad").exists());

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let written = scaffold("my-route", &language::RUST, &empty).expect("scaffold");
    assert!(written.iter().any(|f| f == "sdk/wit/route.wit"), "{written:?}");
    let project = Project::find(&empty.join("src")).expect("find").expect("project");
    assert_eq!(
        project.manifest,
        Manifest::parse(&std::fs::read_to_string(empty.join(MANIFEST)).expect("read")).expect("parse")
    );
    assert_eq!(project.manifest.output, Path::new("target/wasm32-wasip2/release/my_route.wasm"));
    assert_eq!(project.scenarios().expect("scenarios"), [project.root.join("scenarios/call.toml")]);
    let cargo = std::fs::read_to_string(empty.join("Cargo.toml")).expect("Cargo.toml");
    assert!(cargo.contains("name = \"my-route\"") && cargo.contains("\"cdylib\"") && cargo.contains("[workspace]"));
    assert!(!cargo.contains("{{"), "{cargo}");
    let config = crate::config::Config::load(&empty.join("sipbox.toml")).expect("the scaffold's config loads");
    assert!(config.server.listen.iter().all(|l| l.contains("127.0.0.1")), "{:?}", config.server.listen);
    assert!(config.routes.module.is_some_and(|m| m.ends_with("my_route.wasm")));
    let sdk = std::fs::read_to_string(empty.join("sdk/sipbox-guest/Cargo.toml")).expect("SDK Cargo.toml");
    assert!(!sdk.contains("workspace"), "{sdk}");
    let lib = std::fs::read_to_string(empty.join("src/lib.rs")).expect("lib.rs");
    assert_eq!(lib, include_str!("../../../examples/default-route/src/lib.rs"));
}

/// Every file of the SDK's src/ and of wit/ is embedded (a file added there
/// and missing from a new project would break its build), and the template
/// embeds every file of examples/default-route/src (only lib.rs today).
#[test]
fn every_sdk_and_wit_file_is_embedded() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let on_disk = |dir: &str, prefix: &str| -> Vec<String> {
        let mut files: Vec<String> = list_files(&repo.join(dir), true)
            .expect("list")
            .iter()
            .map(|f| format!("{prefix}{}", f.strip_prefix(repo.join(dir)).expect("under").display()))
            .collect();
        files.sort();
        files
    };
    let embedded = |set: &[TemplateFile]| -> Vec<String> {
        let mut files: Vec<String> = set.iter().map(|f| f.path.to_owned()).collect();
        files.sort();
        files
    };
    let mut sdk = on_disk("guest-sdk/src", "sdk/sipbox-guest/src/");
    sdk.push("sdk/sipbox-guest/Cargo.toml".to_owned());
    sdk.sort();
    assert_eq!(embedded(language::SDK_FILES), sdk);
    assert_eq!(embedded(language::WIT_FILES), on_disk("wit", "sdk/wit/"));
    for file in language::SDK_FILES.iter().chain(language::WIT_FILES) {
        let source = if file.path == "sdk/sipbox-guest/Cargo.toml" {
            continue;
        } else if let Some(rest) = file.path.strip_prefix("sdk/sipbox-guest/") {
            repo.join("guest-sdk").join(rest)
        } else {
            repo.join(file.path.trim_start_matches("sdk/"))
        };
        assert_eq!(file.text, std::fs::read_to_string(&source).expect("source"), "{} differs", file.path);
    }
    let mut route = on_disk("examples/default-route/src", "");
    route.sort();
    assert_eq!(route, ["lib.rs"], "the template embeds every default-route source");
}
