//! The `sipbox` process under test: writes its config, starts it, waits until
//! it answers SIP, stops it with SIGTERM (bounded, then SIGKILL).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::{
    LOCALHOST, RawUdp, SocketKind, TestEnv, free_port, port_is_bound, signal, status_of, tail_file, wait_child,
};

/// How long a fresh server may take to answer its first OPTIONS: it compiles
/// the route module (cranelift) before it serves, on a loaded 2-core machine.
const READY_WITHIN: Duration = Duration::from_secs(15);
/// How long a graceful shutdown may take (flushing the location store).
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// Which route module the server runs.
#[derive(Clone, Debug)]
pub enum Route {
    /// `[routes] module` omitted: the route embedded in the binary.
    Embedded,
    /// One of the example modules built by host/build.rs, by file name
    /// (`default_route.wasm`, `trap_route.wasm`, `serial_fork.wasm`).
    Example(&'static str),
    /// A module file the test manages (e.g. replaces while the server runs).
    File(PathBuf),
}

impl Route {
    /// Where host/build.rs leaves the example modules. Integration tests cannot
    /// see the library's OUT_DIR, so they use the fixed build location.
    pub fn example_path(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm-routes/wasm32-wasip2/release").join(name)
    }
}

/// What to write into the test server's `sipbox.toml`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub route: Route,
    /// Also listen on TCP (same port).
    pub tcp: bool,
    /// The SIP port; None = a fresh free port.
    pub port: Option<u16>,
    /// None = `location.redb` in the test directory.
    pub db_path: Option<PathBuf>,
    pub min_expires: u32,
    pub max_expires: u32,
    /// Serve the management interface over HTTP on a fresh port
    /// ([`Server::mi_addr`]); off by default.
    pub mi: bool,
    /// `[routes.vars]`: settings the route reads with `config.get`.
    pub vars: Vec<(String, String)>,
    /// `[timers] timer_c_s`: the proxy's INVITE timeout; None = the default.
    pub timer_c_s: Option<u64>,
    /// More tables appended verbatim (e.g. `[pike]`, `[limits]`).
    pub extra_toml: String,
    /// Lines of the `[auth]` table (its `db_path` is always the test
    /// directory's `subscribers.redb`), e.g. `required = true`.
    pub auth_toml: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            route: Route::Embedded,
            tcp: true,
            port: None,
            db_path: None,
            min_expires: 60,
            max_expires: 3600,
            mi: false,
            vars: Vec::new(),
            timer_c_s: None,
            extra_toml: String::new(),
            auth_toml: String::new(),
        }
    }
}

impl ServerConfig {
    /// A route setting for `[routes.vars]`.
    pub fn var(mut self, name: &str, value: impl ToString) -> ServerConfig {
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    fn to_toml(&self, port: u16, db_path: &Path, mi_port: Option<u16>) -> String {
        let subscribers = db_path.with_file_name("subscribers.redb");
        let mut listen = vec![format!("\"udp:{LOCALHOST}:{port}\"")];
        if self.tcp {
            listen.push(format!("\"tcp:{LOCALHOST}:{port}\""));
        }
        let routes = match &self.route {
            Route::Embedded => "# module omitted: the embedded default route\n".to_string(),
            Route::Example(name) => {
                let path = Route::example_path(name);
                assert!(path.is_file(), "route module {} is missing (host/build.rs builds it)", path.display());
                format!("module = {:?}\n", path.display().to_string())
            }
            Route::File(path) => format!("module = {:?}\n", path.display().to_string()),
        };
        let mut vars = String::from("[routes.vars]\n");
        for (name, value) in &self.vars {
            vars.push_str(&format!("{name:?} = {value:?}\n"));
        }
        let timers = self.timer_c_s.map(|c| format!("[timers]\ntimer_c_s = {c}\n\n")).unwrap_or_default();
        // The management interface is off unless asked for, and then on a
        // fresh port: its fixed default ports would collide between servers
        // running in parallel.
        let mi_http = mi_port.map(|p| format!("{LOCALHOST}:{p}")).unwrap_or_default();
        format!(
            "[server]\nlisten = [{}]\n\n[routes]\n{routes}\n{vars}\n[location]\ndb_path = {:?}\nmin_expires = {}\nmax_expires = {}\n\n\
             {timers}[mi]\nhttp = {mi_http:?}\nudp = \"\"\n\n[auth]\ndb_path = {:?}\n{}\n\n{}\n",
            listen.join(", "),
            db_path.display().to_string(),
            self.min_expires,
            self.max_expires,
            subscribers.display().to_string(),
            self.auth_toml,
            self.extra_toml,
        )
    }
}

/// A running `sipbox run --config ...`. Dropping it stops it (SIGTERM, then
/// SIGKILL) and, when the test is failing, prints its log.
pub struct Server {
    child: Option<Child>,
    port: u16,
    mi_port: Option<u16>,
    log: PathBuf,
    config: ServerConfig,
    label: String,
}

impl Server {
    /// Starts the server and waits (bounded) until it answers an OPTIONS.
    pub fn start(env: &TestEnv, config: ServerConfig) -> Server {
        let port = config.port.unwrap_or_else(free_port);
        let db_path = config.db_path.clone().unwrap_or_else(|| env.path().join("location.redb"));
        let mi_port = config.mi.then(free_port);
        let config_path = env.unique_file("sipbox", "toml");
        std::fs::write(&config_path, config.to_toml(port, &db_path, mi_port)).expect("write sipbox.toml");
        let log = config_path.with_extension("log");
        let stderr = std::fs::File::create(&log).expect("create the server log");
        let child = Command::new(env!("CARGO_BIN_EXE_sipbox"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            // Debug logs make a failure readable; a RUST_LOG from the caller wins.
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sipbox=debug".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the sipbox binary");
        let label = format!("{}: sipbox on port {port}", env.name());
        let mut server = Server {
            child: Some(child),
            port,
            mi_port,
            log,
            config: ServerConfig { port: Some(port), ..config },
            label,
        };
        server.wait_ready();
        server
    }

    /// Starts another server with the same config (same port, same database),
    /// e.g. after [`Server::stop`].
    pub fn restart(env: &TestEnv, previous: &Server) -> Server {
        Server::start(env, previous.config.clone())
    }

    /// The UDP (and TCP) address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The management interface's HTTP address (`POST /mi`); panics unless
    /// the config asked for it ([`ServerConfig::mi`]).
    pub fn mi_addr(&self) -> SocketAddr {
        let port = self.mi_port.expect("the server was started without the MI (ServerConfig::mi)");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Polls with OPTIONS until any SIP response comes back; panics with the
    /// log if the process exits or does not answer in time.
    fn wait_ready(&mut self) {
        let probe = RawUdp::new();
        let deadline = std::time::Instant::now() + READY_WITHIN;
        let mut others = Vec::new();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("{} exited during startup ({status})\n{}", self.label, tail_file(&self.log, 80));
            }
            if let Some(reply) = probe.options(self.addr(), Duration::from_millis(200), &mut others) {
                assert!(status_of(&reply).is_some(), "{}: not a SIP response to OPTIONS:\n{reply}", self.label);
                break;
            }
            if std::time::Instant::now() >= deadline {
                panic!("{} did not answer OPTIONS within {READY_WITHIN:?}\n{}", self.label, tail_file(&self.log, 80));
            }
        }
        if let Some(mi_port) = self.mi_port {
            assert!(
                super::wait_until(Duration::from_secs(5), || port_is_bound(SocketKind::TcpListen, mi_port)),
                "{} answers SIP but its MI does not listen on {mi_port}\n{}",
                self.label,
                tail_file(&self.log, 80)
            );
        }
        if self.config.tcp {
            // Listeners open before serving, but do not assume it.
            assert!(
                super::wait_until(Duration::from_secs(5), || port_is_bound(SocketKind::TcpListen, self.port)),
                "{} answers UDP but does not listen on TCP\n{}",
                self.label,
                tail_file(&self.log, 80)
            );
        }
    }

    /// Graceful stop: SIGTERM, then waits (bounded) for the exit. Panics (after
    /// a SIGKILL) if the server does not exit in time.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        signal(child.id(), "TERM");
        match wait_child(&mut child, STOP_WITHIN) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit within {STOP_WITHIN:?} of SIGTERM\n{}", self.label, tail_file(&self.log, 80));
            }
        }
    }
}

impl Server {
    /// SIGTERM, without waiting (a drain test watches what happens meanwhile).
    pub fn terminate(&mut self) {
        let child = self.child.as_ref().expect("server already stopped");
        signal(child.id(), "TERM");
    }

    /// Waits (bounded) for the process to exit, after [`terminate`](Self::terminate).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        match wait_child(&mut child, within) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit within {within:?}\n{}", self.label, tail_file(&self.log, 80));
            }
        }
    }

    /// `kill -9`: no shutdown, no flush; waits for the process to be gone.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("server already stopped");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            if wait_child(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("===== {} log ({}) =====\n{}", self.label, self.log.display(), tail_file(&self.log, 200));
        }
    }
}
