//! The end-to-end harness: per-test directories and ports, the `sipbox`
//! process ([`Server`]), SIPp runs ([`Sipp`]), raw UDP probes ([`RawUdp`]),
//! and HTTP peers ([`HttpReceiver`] for pushes, [`mi_call`] for the MI).
//!
//! Nothing here sleeps and hopes: readiness is a condition polled with a
//! deadline (a SIP answer to OPTIONS, a socket in `/proc/net/*`), and every
//! child process is killed when its handle drops.

mod http;
mod server;
mod sipp;

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use http::{HttpReceiver, mi_call};
pub use server::{Route, Server, ServerConfig};
pub use sipp::{Sipp, SippProc};

/// The loopback address every test uses; nothing leaves the machine.
pub const LOCALHOST: &str = "127.0.0.1";

/// A test's scratch space: a temporary directory holding its configs, location
/// database, logs and SIPp traces. Removed on drop, unless the test failed and
/// `SIPBOX_E2E_KEEP` is set (then its path is printed).
pub struct TestEnv {
    name: String,
    dir: Option<tempfile::TempDir>,
    seq: AtomicUsize,
}

impl TestEnv {
    /// A fresh directory for the test `name` (used in file names and messages).
    pub fn new(name: &str) -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sipbox-e2e-{name}-"))
            .tempdir()
            .expect("create a temporary directory");
        TestEnv { name: name.to_string(), dir: Some(dir), seq: AtomicUsize::new(0) }
    }

    /// The test's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// A new file name in the directory, `STEM-N.EXT`, unique within the test.
    pub fn unique_file(&self, stem: &str, ext: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.path().join(format!("{stem}-{n}.{ext}"))
    }

    /// Writes a SIPp injection file: one user per line, read in order.
    pub fn users_csv(&self, users: &[&str]) -> PathBuf {
        let path = self.unique_file("users", "csv");
        let mut text = String::from("SEQUENTIAL\n");
        for user in users {
            let _ = writeln!(text, "{user};");
        }
        std::fs::write(&path, text).expect("write users csv");
        path
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::thread::panicking()
            && std::env::var_os("SIPBOX_E2E_KEEP").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("{}: kept {}", self.name, dir.keep().display());
        }
    }
}

/// Where test ports come from: below Linux's ephemeral range (32768..61000), so
/// a socket bound to port 0 (ours, the server's outgoing TCP) never takes a
/// port a test has been handed but not bound yet.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// Ports handed out so far by this process, so parallel tests never share one.
static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
/// The next candidate (offset into `PORT_RANGE`); `usize::MAX` until first use.
static NEXT_PORT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// A loopback port free for both UDP and TCP right now and never handed out
/// before by this process. Other processes (another test run on the same
/// machine) are avoided by probing: both binds must succeed.
pub fn free_port() -> u16 {
    let span = usize::from(PORT_RANGE.end - PORT_RANGE.start);
    // Start at a per-process offset so two test runs at once rarely probe the same ports.
    let _ = NEXT_PORT.compare_exchange(
        usize::MAX,
        (std::process::id() as usize).wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..span {
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed) % span;
        let port = PORT_RANGE.start + n as u16;
        if handed.contains(&port) {
            continue;
        }
        let udp = UdpSocket::bind((LOCALHOST, port));
        let tcp = TcpListener::bind((LOCALHOST, port));
        if udp.is_ok() && tcp.is_ok() {
            handed.push(port);
            return port;
        }
    }
    panic!("no free loopback port in {PORT_RANGE:?}");
}

/// `n` distinct free ports.
pub fn free_ports<const N: usize>() -> [u16; N] {
    std::array::from_fn(|_| free_port())
}

/// Polls `cond` every 10 ms until it holds or `within` has passed.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Which kernel socket table to look in.
#[derive(Clone, Copy, Debug)]
pub enum SocketKind {
    Udp,
    TcpListen,
}

/// Whether some process has a socket bound to 127.0.0.1:`port` (or the
/// wildcard address), read from `/proc/net/{udp,tcp}`. Reading the table
/// instead of trying to bind the port ourselves never races with the process
/// that is about to bind it.
pub fn port_is_bound(kind: SocketKind, port: u16) -> bool {
    let path = match kind {
        SocketKind::Udp => "/proc/net/udp",
        SocketKind::TcpListen => "/proc/net/tcp",
    };
    let Ok(table) = std::fs::read_to_string(path) else {
        return false;
    };
    let wanted = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(_slot), Some(local), Some(_remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        // 0100007F = 127.0.0.1, 00000000 = 0.0.0.0; 0A = TCP_LISTEN.
        let addr_ok = local.starts_with("0100007F:") || local.starts_with("00000000:");
        let state_ok = match kind {
            SocketKind::Udp => true,
            SocketKind::TcpListen => state == "0A",
        };
        addr_ok && state_ok && local.ends_with(&wanted)
    })
}

/// Registers each of `users` (one REGISTER each, all must get 200) with the
/// Contact `sip:USER@127.0.0.1:contact_port`, sent from `contact_port` itself
/// so the source address and the Contact agree (no NAT fix-up applies).
/// Run it before a UAS takes `contact_port`. `expires` 0 removes the bindings.
pub fn register(env: &TestEnv, server: &Server, users: &[&str], contact_port: u16, expires: u32) {
    let csv = env.users_csv(users);
    let calls = u32::try_from(users.len()).expect("a few users");
    Sipp::new(env, "register.xml")
        .remote(server.addr())
        .local_port(contact_port)
        .users(&csv)
        .calls(calls)
        .rate(100)
        .key("contact_host", LOCALHOST)
        .key("contact_port", contact_port)
        .key("expires", expires)
        .run()
        .assert_ok(&format!("REGISTER {users:?} -> 127.0.0.1:{contact_port} (Expires {expires})"));
}

/// A SIPp UAS on `port` playing `scenario` for one call, in the background;
/// returns once its port is bound.
pub fn uas(env: &TestEnv, scenario: &str, port: u16) -> SippProc {
    Sipp::new(env, scenario).local_port(port).spawn()
}

/// A SIPp UAC calling `user` at the server with `scenario`, from a fresh port.
pub fn uac(env: &TestEnv, server: &Server, scenario: &str, user: &str) -> Sipp {
    Sipp::new(env, scenario).remote(server.addr()).local_port(free_port()).service(user)
}

/// A UDP socket on an ephemeral loopback port for hand-made messages.
pub struct RawUdp {
    sock: UdpSocket,
    seq: AtomicUsize,
}

impl RawUdp {
    pub fn new() -> RawUdp {
        let sock = UdpSocket::bind((LOCALHOST, 0)).expect("bind a raw UDP socket");
        RawUdp { sock, seq: AtomicUsize::new(0) }
    }

    /// This socket's port, for the Via of hand-made requests.
    pub fn port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// A branch unique to this socket and call.
    pub fn branch(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("z9hG4bK-e2e-{}-{}-{n}", std::process::id(), self.port())
    }

    pub fn send(&self, to: SocketAddr, bytes: &[u8]) {
        self.sock.send_to(bytes, to).expect("send a raw UDP datagram");
    }

    /// The next datagram received within `within`, as text (lossy), if any.
    pub fn recv_within(&self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).ok()?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted) => continue,
                // WouldBlock / TimedOut: the window has passed.
                Err(_) => return None,
            }
        }
    }

    /// Sends an OPTIONS to `to` and returns the first response carrying its
    /// branch within `within`; every other datagram received meanwhile is
    /// appended to `others`.
    pub fn options(&self, to: SocketAddr, within: Duration, others: &mut Vec<String>) -> Option<String> {
        let branch = self.branch();
        self.send(to, options_request(to, self.port(), &branch).as_bytes());
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let msg = self.recv_within(left)?;
            if msg.starts_with("SIP/2.0 ") && msg.contains(&branch) {
                return Some(msg);
            }
            others.push(msg);
        }
    }
}

/// An out-of-dialog OPTIONS from `local_port` to `to` (the server itself).
pub fn options_request(to: SocketAddr, local_port: u16, branch: &str) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {LOCALHOST}:{local_port};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{LOCALHOST}:{local_port}>;tag={branch}\r\n\
         To: <sip:{to}>\r\n\
         Call-ID: {branch}@e2e\r\n\
         CSeq: 1 OPTIONS\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The status code of a SIP response's start line.
pub fn status_of(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The last `max_lines` lines of a file, for failure reports.
pub fn tail_file(path: &Path, max_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(max_lines);
            let mut out = String::new();
            if start > 0 {
                let _ = writeln!(out, "[... {start} earlier lines of {} ...]", path.display());
            }
            for line in &lines[start..] {
                let _ = writeln!(out, "{line}");
            }
            out
        }
        Err(e) => format!("[{}: {e}]\n", path.display()),
    }
}

/// Sends `kill -SIGNAL pid` (there is no libc here); false if it failed.
pub fn signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Waits for `child` to exit within `within`; `None` if it is still running.
pub fn wait_child(child: &mut std::process::Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => return None,
            Err(_) => return None,
        }
    }
}
