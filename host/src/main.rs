//! The `sipbox` command line: run the server, or check a route module.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

use sipbox::config::Config;
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
    Run {
        /// Path to sipbox.toml.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
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
    /// without a module, the embedded default route.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(config),
        Command::CheckRoute { module, config } => check_route(module, config),
        Command::Mi { url, command, args } => mi(&url, &command, &args),
        Command::Test { paths, config, junit } => {
            match sipbox::harness::cli::run(sipbox::harness::cli::TestArgs { paths, config, junit }) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(err) => Err(err),
            }
        }
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

fn run(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = match config {
        Some(path) => Config::load(&path)?,
        None => Config::default(),
    };
    sipbox::server::init_logging(&config.server.log);
    tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("sipbox").build()?.block_on(async {
        let stop = interrupted_or_terminated()?;
        sipbox::server::run(config, stop).await
    })
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
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        sipbox::server::check_route(&config, RouteSource::File(module.clone())).await?;
        println!("{}: ok, a sipbox:route@{} component", module.display(), sipbox::runtime::WIT_VERSION);
        Ok(())
    })
}

fn mi(url: &str, command: &str, args: &[String]) -> anyhow::Result<()> {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(sipbox::mi::client::run_cli(url, command, args))?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
