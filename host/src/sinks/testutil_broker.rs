//! Test-only: a private `rabbitmq-server` per test, so the `rabbitmq:` sink is
//! tested against a real broker (start, stop for an outage, restart).
//!
//! Each [`Broker`] gets its own node name, data/log directory (a temp dir),
//! AMQP port and distribution port, so tests (and parallel `cargo test` runs)
//! never share a broker. The server runs in its own process group; a small
//! `sh` watchdog kills that group when the test process dies without
//! running [`Drop`] (its stdin pipe closes). The system `epmd` daemon that
//! Erlang starts on first use is shared and left running, as usual.
//!
//! The broker is found at `$SIPBOX_RABBITMQ_SERVER`, then
//! `/usr/lib/rabbitmq/bin/rabbitmq-server` (Debian, bypassing the wrapper
//! that `su`s to the rabbitmq user), then `rabbitmq-server` on `PATH`. When
//! none exists the test FAILS saying to install the `rabbitmq-server` package.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::process::{Child, ChildStdin, Command};

/// How long a broker may take to boot (a cold Erlang VM on a loaded CI box).
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a graceful stop (SIGTERM) may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A running (or stopped, restartable) private RabbitMQ node.
pub(crate) struct Broker {
    dir: tempfile::TempDir,
    node: String,
    port: u16,
    dist_port: u16,
    server: Option<Child>,
    watchdog: Option<(Child, ChildStdin)>,
}

impl Broker {
    /// Starts a fresh broker and waits (bounded) until it accepts AMQP
    /// connections. Panics with a clear message if none is installed.
    pub(crate) async fn start() -> Broker {
        Broker::start_with("").await
    }

    /// As [`start`](Self::start), with `extra` appended to its `rabbitmq.conf`
    /// (e.g. `default_vhost = v`, read at first boot).
    pub(crate) async fn start_with(extra: &str) -> Broker {
        let dir = tempfile::Builder::new().prefix("sipbox-rmq-").tempdir().expect("temp dir");
        for d in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("broker dirs");
        }
        // An empty env file and plugin list: nothing from /etc/rabbitmq applies.
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "").expect("env file");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("plugins file");
        let conf = format!("disk_free_limit.absolute = 1MB\n{extra}\n");
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).expect("conf");
        let node = format!("sipbox-test-{}-{}@localhost", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let mut b = Broker { dir, node, port: free_port(), dist_port: free_port(), server: None, watchdog: None };
        b.launch().await;
        b
    }

    /// The AMQP port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Stops the broker gracefully (SIGTERM to the Erlang VM), bounded; the
    /// data directory is kept for [`restart`](Self::restart).
    pub(crate) async fn stop(&mut self) {
        let Some(mut server) = self.server.take() else { return };
        // The VM, not the `sh` script around it: the script would exit first
        // and leave the VM still holding the port and the data directory.
        match std::fs::read_to_string(self.pid_file()) {
            Ok(pid) => signal("TERM", pid.trim()),
            Err(_) => self.signal_group("TERM", &server),
        }
        if tokio::time::timeout(STOP_TIMEOUT, server.wait()).await.is_err() {
            eprintln!("rabbitmq node {} did not stop in {STOP_TIMEOUT:?}; killing it", self.node);
            self.signal_group("KILL", &server);
            let _ = server.wait().await;
        }
        self.disarm_watchdog().await;
        // The VM is gone once its port is free (the wrapper exits after it).
        wait_port_closed(self.port).await;
    }

    /// Starts the stopped broker again: same node, port and data (durable
    /// queues and exchanges survive).
    pub(crate) async fn restart(&mut self) {
        assert!(self.server.is_none(), "restart() of a running broker");
        self.launch().await;
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("rabbitmq.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    async fn launch(&mut self) {
        let bin = server_binary();
        let _ = std::fs::remove_file(self.pid_file());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_file()).expect("broker log");
        let d = self.dir.path();
        let mut cmd = Command::new(&bin);
        cmd.env("HOME", d)
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", self.pid_file())
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_LOGS", "-")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .process_group(0);
        let server = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot run {}: {e}; {INSTALL_HINT}", bin.display()),
        };
        let pgid = server.id().unwrap_or(0);
        self.server = Some(server);
        self.watchdog = Some(spawn_watchdog(pgid));
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = tokio::time::Instant::now() + BOOT_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.server.as_mut().map(|s| s.try_wait()) {
                panic!("rabbitmq-server exited during boot ({status}); log:\n{}", self.log_tail());
            }
            if tokio::time::Instant::now() > deadline {
                panic!("rabbitmq-server not listening on {addr} after {BOOT_TIMEOUT:?}; log:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn signal_group(&self, sig: &str, server: &Child) {
        if let Some(pgid) = server.id() {
            signal(sig, &format!("-{pgid}"));
        }
    }

    async fn disarm_watchdog(&mut self) {
        if let Some((mut dog, stdin)) = self.watchdog.take() {
            // Kill the watchdog shell first so closing its stdin cannot make
            // it signal a process group id that may have been reused.
            let _ = dog.kill().await;
            drop(stdin);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.signal_group("KILL", &server);
        }
        if let Some((mut dog, stdin)) = self.watchdog.take() {
            let _ = dog.start_kill();
            drop(stdin);
        }
    }
}

const INSTALL_HINT: &str = "the rabbitmq sink tests need a real broker: install the Debian package \
     `rabbitmq-server` (apt-get install -y rabbitmq-server) or set SIPBOX_RABBITMQ_SERVER to its \
     rabbitmq-server script";

fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SIPBOX_RABBITMQ_SERVER") {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
    if debian.is_file() {
        return debian.to_path_buf();
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("rabbitmq-server")).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("rabbitmq-server not found; {INSTALL_HINT}"))
}

/// A free TCP port on 127.0.0.1 (bound, then released for the broker).
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// `kill -s SIG -- TARGET` through `sh` (test-only: the crate has no libc
/// binding and no `unsafe`). The shell builtin, so no procps is needed;
/// this exact form is the one dash accepts for a negative (group) target.
fn signal(sig: &str, target: &str) {
    let _ = std::process::Command::new("sh").arg("-c").arg(format!("kill -s {sig} -- {target} 2>/dev/null")).status();
}

/// `sh` that blocks on its stdin and kills the broker's process group when
/// the pipe closes, i.e. when this test process exits, however it exits.
fn spawn_watchdog(pgid: u32) -> (Child, ChildStdin) {
    let mut dog = Command::new("sh")
        .arg("-c")
        .arg(format!("cat >/dev/null; kill -s KILL -- -{pgid} 2>/dev/null"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watchdog sh");
    let stdin = dog.stdin.take().expect("watchdog stdin");
    (dog, stdin)
}

async fn wait_port_closed(port: u16) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "broker port {port} still open after stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
