//! The `sipbox` command line: run the server, check a route module, make and
//! build route projects (`new`, `build`, and `run` inside a project).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

use sipbox::config::Config;
use sipbox::project::Project;
use sipbox::runtime::RouteSource;

/// glibc's malloc grows and trims each worker thread's arena with mprotect
/// and page faults as requests come and go (half of the proxy's page faults
/// under call load, measured with `perf stat`); mimalloc keeps freed pages
/// per thread for reuse.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A SIP proxy and registrar whose routing logic runs as WebAssembly components.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Without --config the embedded defaults serve UDP and TCP
    /// on 127.0.0.1:5060 with the built-in registrar + proxy route.
    /// SIGHUP, MI reload_routes and a change to a module file ([routes] watch)
    /// reload the route modules, re-reading [routes] from --config; a bad
    /// module or config is refused and the old ones keep serving.
    /// SIGINT/SIGTERM stop gracefully.
    ///
    /// Without --config inside a route project (a route.toml here or in a
    /// parent directory): builds the project, then serves its route with its
    /// config (route.toml's config, else the embedded defaults) and [routes]
    /// module set to the build's output, watched; a change to a source
    /// (route.toml's watch) rebuilds it, a successful build is reloaded, a
    /// failed one is logged and the running version keeps serving.
    Run {
        /// Path to sipbox.toml (then no project is looked for).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Make a route project: NAME/ (or --dir) with route.toml, the route's
    /// sources (the default registrar + proxy), a passing scenario, a
    /// sipbox.toml serving it on loopback, a README, and the guest SDK and
    /// WIT this sipbox carries (sdk/), so it builds with no other download
    /// than the language's packages.
    New {
        /// The route's name (a valid package name: letters, digits, '-', '_').
        name: String,
        /// The route's language.
        #[arg(long, default_value = "rust")]
        lang: String,
        /// The directory to create (new or empty); default ./NAME.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the route project of this directory (route.toml here or in a
    /// parent), print the module's path, and check it as check-route does,
    /// under the [limits] of the project's config.
    Build,
    /// Check that a .wasm file is a route module this server can run: a
    /// component exporting the sipbox:route world that instantiates cleanly
    /// under the [limits] it will run with (those of --config, else the
    /// embedded defaults).
    CheckRoute {
        /// The route module (.wasm component); default: --config's [routes] module.
        module: Option<PathBuf>,
        /// Path to sipbox.toml: its [limits] apply, and its [routes] module is
        /// checked when no module is given.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Run a management (MI) command on a running server, like opensips-cli:
    /// `sipbox mi event_subscribe E_UL_CONTACT_INSERT udp:127.0.0.1:9999 60`.
    /// Arguments are positional; `name=value` arguments are sent as named
    /// parameters. Prints the JSON result.
    Mi {
        /// The server's MI endpoint.
        #[arg(long, default_value = "http://127.0.0.1:8888/mi")]
        url: String,
        /// The command (`which` lists them).
        command: String,
        /// Its parameters.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Run route scenarios (docs/HARNESS.md) in the sample harness, on
    /// virtual time: one line per scenario, the report of each failure, a
    /// non-zero exit when any fails. `sipbox test ROUTE.wasm scenarios/`;
    /// without a module, inside a route project (route.toml) the project's
    /// route, built first, with its scenarios; elsewhere the embedded
    /// default route.
    Test {
        /// A route module (.wasm), then scenario files or directories.
        paths: Vec<PathBuf>,
        /// A sipbox.toml whose tables ([routes.vars], [limits], ...) the
        /// scenarios run under, before each scenario's own [config].
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Also write a JUnit XML report here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Print the embedded default configuration.
    Defaults,
    /// Manage the subscribers who may authenticate ([auth]): HA1 hashes in
    /// the subscriber database of --config ([auth] db_path; by default
    /// sipbox-subscribers.redb here). A running server holds its database:
    /// then use its MI (`sipbox mi subscriber_add NAME PASSWORD`).
    User {
        #[command(subcommand)]
        action: UserCommand,
        /// Path to sipbox.toml ([auth] db_path and realm).
        #[arg(short, long, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a subscriber, or set a new password for one.
    Add {
        /// The user name (the user part of its AOR, and the digest username).
        name: String,
        /// The password; only its hashes are stored.
        #[arg(long)]
        password: String,
        /// The realm; default: [auth] realm.
        #[arg(long)]
        realm: Option<String>,
    },
    /// Remove a subscriber.
    Remove {
        name: String,
        #[arg(long)]
        realm: Option<String>,
    },
    /// List subscribers (user and realm, tab-separated).
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config: None } => match current_project() {
            Ok(Some(project)) => run_project(project),
            Ok(None) => run(None),
            Err(err) => Err(err),
        },
        Command::Run { config } => run(config),
        Command::New { name, lang, dir } => new_project(&name, &lang, dir),
        Command::Build => build_project(),
        Command::CheckRoute { module, config } => check_route(module, config),
        Command::Mi { url, command, args } => mi(&url, &command, &args),
        Command::Test { paths, config, junit } => {
            let args = sipbox::harness::cli::TestArgs { paths, config, junit };
            match sipbox::harness::cli::run_with_project(args, project_tests) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(err) => Err(err),
            }
        }
        Command::User { action, config } => user(action, config),
        Command::Defaults => {
            print!("{}", sipbox::server::DEFAULTS_TOML);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sipbox: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `sipbox test` inside a route project: its route, built now, and its
/// scenarios and config.
fn project_tests() -> anyhow::Result<Option<sipbox::harness::cli::ProjectTests>> {
    let Some(project) = Project::find(&std::env::current_dir()?)? else { return Ok(None) };
    let module = project.build()?;
    Ok(Some(sipbox::harness::cli::ProjectTests {
        module,
        scenarios: project.scenarios()?,
        config: project.config_path(),
    }))
}

fn run(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = match config {
        Some(path) => Config::load(&path)?,
        None => Config::default(),
    };
    serve(config, None)
}

/// Serves `config`, rebuilding `project` on source changes when given.
fn serve(config: Config, project: Option<Project>) -> anyhow::Result<()> {
    sipbox::server::init_logging(&config.server.log);
    tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("sipbox").build()?.block_on(async {
        let stop = interrupted_or_terminated()?;
        // Dropped when the server has stopped: the watch and its task end.
        let _rebuilds = project.map(sipbox::project::rebuild_on_change).transpose()?;
        sipbox::server::run(config, stop).await
    })
}

/// The project of the working directory, if it is in one.
fn current_project() -> anyhow::Result<Option<Project>> {
    Project::find(&std::env::current_dir()?)
}

/// The project's config (route.toml's config, else the embedded defaults).
fn project_config(project: &Project) -> anyhow::Result<Config> {
    match project.config_path() {
        Some(path) => Config::load(&path),
        None => Ok(Config::default()),
    }
}

/// `sipbox run` in a project: build, then serve the built module, watched
/// (the rebuilds replace it and the server's module watch reloads it).
fn run_project(project: Project) -> anyhow::Result<()> {
    let wasm = project.build()?;
    let config = project_config(&project)?.serving_module(wasm);
    serve(config, Some(project))
}

fn new_project(name: &str, lang: &str, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let language = sipbox::project::language(lang)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    sipbox::project::scaffold(name, language, &dir)?;
    let shown = dir.display();
    println!(
        "made the {lang} route project {name} in {shown} (sipbox-guest {}, sipbox:route@{})\n\n    \
         cd {shown}\n    sipbox build     # build and check the module\n    \
         sipbox test      # run scenarios/*.toml\n    sipbox run       # serve it on 127.0.0.1:5060, rebuilding on save",
        sipbox::project::SDK_VERSION,
        sipbox::runtime::WIT_VERSION,
    );
    Ok(())
}

fn build_project() -> anyhow::Result<()> {
    let cwd = std::env::current_dir()?;
    let Some(project) = Project::find(&cwd)? else {
        anyhow::bail!(
            "no {} in {} or any parent directory: `sipbox new NAME` makes a route project",
            sipbox::project::MANIFEST,
            cwd.display()
        );
    };
    let wasm = project.build()?;
    println!("built {}", wasm.display());
    let config = project_config(&project)?;
    check_module(&config, &wasm)
}

/// Completes on the first SIGINT or SIGTERM. Both are caught from here on, so
/// one that arrives while the server is still starting stops it once it is up.
fn interrupted_or_terminated() -> anyhow::Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT"),
            _ = terminate.recv() => tracing::info!("SIGTERM"),
        }
    })
}

fn check_route(module: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<()> {
    sipbox::server::init_logging("warn");
    let config = match &config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let Some(module) = module.or_else(|| config.routes.module.clone()) else {
        anyhow::bail!("no route module: name one, or give a --config whose [routes] sets module");
    };
    check_module(&config, &module)
}

/// Loads `module` as `run` would under `config`'s [limits] and says so.
fn check_module(config: &Config, module: &Path) -> anyhow::Result<()> {
    sipbox::server::init_logging("warn");
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        sipbox::server::check_route(config, RouteSource::File(module.to_path_buf())).await?;
        println!("{}: ok, a sipbox:route@{} component", module.display(), sipbox::runtime::WIT_VERSION);
        Ok(())
    })
}

fn user(action: UserCommand, config: Option<PathBuf>) -> anyhow::Result<()> {
    use sipbox::auth::cli::UserAction;
    let config = match &config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let action = match action {
        UserCommand::Add { name, password, realm } => UserAction::Add { name, password, realm },
        UserCommand::Remove { name, realm } => UserAction::Remove { name, realm },
        UserCommand::List => UserAction::List,
    };
    print!("{}", sipbox::auth::cli::run(&config.auth, action)?);
    println!();
    Ok(())
}

fn mi(url: &str, command: &str, args: &[String]) -> anyhow::Result<()> {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(sipbox::mi::client::run_cli(url, command, args))?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
