//! SIPp runs: a builder for the command line, a foreground run with a bound
//! ([`Sipp::run`]) and a background peer ([`Sipp::spawn`], killed on drop).
//!
//! SIPp's exit code is the verdict: 0 = every call of the scenario succeeded,
//! 1 = some failed, other values = fatal errors or the global `-timeout`
//! (`-timeout_error`). Its error and message traces go to files in the test
//! directory and are shown when an assertion fails.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{LOCALHOST, SocketKind, TestEnv, port_is_bound, tail_file, wait_child, wait_until};

/// SIPp's own global timeout for one run; a passing run takes well under a second.
const SIPP_TIMEOUT: Duration = Duration::from_secs(15);
/// Extra time the harness grants beyond SIPp's own timeout before killing it.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Where the scenarios live.
pub fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sipp").join(name)
}

/// A SIPp command line under construction.
#[must_use]
pub struct Sipp {
    label: String,
    args: Vec<OsString>,
    local_port: Option<u16>,
    timeout: Duration,
    trace_messages: bool,
    files: Files,
}

/// The trace files of one SIPp run.
#[derive(Clone, Debug)]
struct Files {
    errors: PathBuf,
    messages: PathBuf,
    stdout: PathBuf,
}

impl Sipp {
    /// `sipp -sf tests/sipp/SCENARIO`, one call by default, with traces in the
    /// test directory.
    pub fn new(env: &TestEnv, scenario: &str) -> Sipp {
        let path = scenario_path(scenario);
        assert!(path.is_file(), "no SIPp scenario {}", path.display());
        let stem = scenario.trim_end_matches(".xml");
        let base = env.unique_file(&format!("sipp-{stem}"), "log");
        let files = Files {
            errors: base.with_extension("errors.log"),
            messages: base.with_extension("messages.log"),
            stdout: base.with_extension("stdout.log"),
        };
        let label = format!("{}: sipp {scenario}", env.name());
        Sipp { label, args: Vec::new(), local_port: None, timeout: SIPP_TIMEOUT, trace_messages: true, files }
            .arg("-sf")
            .arg(path)
            .arg("-i")
            .arg(LOCALHOST)
            .arg("-m")
            .arg("1")
    }

    /// Appends a raw argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Sipp {
        self.args.push(arg.into());
        self
    }

    /// The remote host (the proxy); UAS runs have none.
    pub fn remote(self, addr: SocketAddr) -> Sipp {
        self.arg(addr.to_string())
    }

    /// The local SIP port (`-p`).
    pub fn local_port(mut self, port: u16) -> Sipp {
        self.local_port = Some(port);
        self.arg("-p").arg(port.to_string())
    }

    /// Stop after `n` calls (`-m`; replaces the default of 1).
    pub fn calls(mut self, n: u32) -> Sipp {
        if let Some(i) = self.args.iter().position(|a| a == "-m") {
            self.args[i + 1] = n.to_string().into();
        }
        self
    }

    /// The callee user of the R-URI (`-s`).
    pub fn service(self, user: &str) -> Sipp {
        self.arg("-s").arg(user)
    }

    /// Injection file (`-inf`): `[field0]` etc.
    pub fn users(self, csv: &Path) -> Sipp {
        self.arg("-inf").arg(csv)
    }

    /// A scenario keyword `[name]` (`-key name value`).
    pub fn key(self, name: &str, value: impl ToString) -> Sipp {
        self.arg("-key").arg(name).arg(value.to_string())
    }

    /// Calls per second (`-r`).
    pub fn rate(self, cps: u32) -> Sipp {
        self.arg("-r").arg(cps.to_string())
    }

    /// Default pause (`-d`, ms) used by `<pause/>`.
    pub fn pause_ms(self, ms: u32) -> Sipp {
        self.arg("-d").arg(ms.to_string())
    }

    /// The Call-ID format (`-cid_str`, `%u` = call number, `%p` = pid), so a
    /// test knows the Call-ID of the call it makes.
    pub fn call_id_format(self, format: &str) -> Sipp {
        self.arg("-cid_str").arg(format)
    }

    /// SIPp's global timeout for this run (default 15 s), for long load runs.
    pub fn timeout(mut self, timeout: Duration) -> Sipp {
        self.timeout = timeout;
        self
    }

    /// No message trace: for load runs, whose thousands of calls would make
    /// SIPp spend its time writing it (failed calls still go to the error trace).
    pub fn without_message_trace(mut self) -> Sipp {
        self.trace_messages = false;
        self
    }

    /// Use one TCP connection instead of UDP (`-t t1`).
    pub fn tcp(self) -> Sipp {
        self.arg("-t").arg("t1")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("sipp");
        cmd.args(&self.args)
            .arg("-nostdin")
            .arg("-timeout")
            .arg(format!("{}s", self.timeout.as_secs()))
            .arg("-timeout_error")
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&self.files.errors)
            .stdin(Stdio::null());
        if self.trace_messages {
            cmd.arg("-trace_msg").arg("-message_file").arg(&self.files.messages);
        }
        let stdout = std::fs::File::create(&self.files.stdout).expect("create sipp stdout file");
        let stderr = stdout.try_clone().expect("clone sipp stdout file");
        cmd.stdout(stdout).stderr(stderr);
        cmd
    }

    fn start(&self) -> Child {
        self.command()
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot run sipp (is sip-tester installed?): {e}", self.label))
    }

    /// Runs to completion (bounded) and returns the verdict.
    pub fn run(self) -> SippOutcome {
        let child = self.start();
        let proc =
            SippProc { child: Some(child), label: self.label, files: self.files, bound: self.timeout + KILL_GRACE };
        proc.wait()
    }

    /// Starts in the background, e.g. a UAS, and waits (bounded) until its SIP
    /// port is bound so a request sent right after reaches it.
    pub fn spawn(self) -> SippProc {
        let child = self.start();
        let port = self.local_port;
        let mut proc =
            SippProc { child: Some(child), label: self.label, files: self.files, bound: self.timeout + KILL_GRACE };
        if let Some(port) = port {
            let up = wait_until(Duration::from_secs(5), || port_is_bound(SocketKind::Udp, port) || proc.has_exited());
            if !up || proc.has_exited() {
                let outcome = proc.wait();
                panic!("{} did not come up on UDP port {port}\n{outcome}", outcome.label);
            }
        }
        proc
    }
}

/// A SIPp process running in the background; killed on drop.
pub struct SippProc {
    child: Option<Child>,
    label: String,
    files: Files,
    bound: Duration,
}

impl SippProc {
    fn has_exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// The message trace so far (SIPp writes each message as it goes), e.g.
    /// to wait until a UAS has received its INVITE.
    pub fn messages_so_far(&self) -> String {
        read_lossy(&self.files.messages)
    }

    /// Waits (bounded by SIPp's timeout plus a grace period) for the exit.
    pub fn wait(mut self) -> SippOutcome {
        let mut child = self.child.take().expect("sipp process already reaped");
        let started = Instant::now();
        let status = wait_child(&mut child, self.bound);
        let code = match status {
            Some(status) => status.code(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        };
        SippOutcome {
            label: self.label.clone(),
            code,
            killed: status.is_none(),
            waited: started.elapsed(),
            errors: read_lossy(&self.files.errors),
            messages: tail_file(&self.files.messages, 150),
            stdout: tail_file(&self.files.stdout, 30),
        }
    }
}

impl Drop for SippProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "===== {} (killed at test end) =====\n--- errors ---\n{}--- messages ---\n{}",
                    self.label,
                    read_lossy(&self.files.errors),
                    tail_file(&self.files.messages, 150)
                );
            }
        }
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// What a finished SIPp run left behind.
#[derive(Debug)]
pub struct SippOutcome {
    pub label: String,
    /// Exit code; None if killed by a signal (or by the harness).
    pub code: Option<i32>,
    /// The harness had to kill it: it outlived its own -timeout.
    pub killed: bool,
    /// How long the harness waited for it.
    pub waited: Duration,
    /// SIPp's -trace_err log (unexpected messages, failed checks).
    pub errors: String,
    /// The tail of SIPp's -trace_msg log.
    pub messages: String,
    /// The tail of stdout/stderr: fatal errors and the final statistics screen.
    pub stdout: String,
}

impl SippOutcome {
    /// Every call of the run succeeded.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the traces unless every call succeeded.
    pub fn assert_ok(&self, what: &str) {
        assert!(self.success(), "{what}: SIPp run failed\n{self}");
    }
}

impl std::fmt::Display for SippOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "===== {} =====", self.label)?;
        match (self.code, self.killed) {
            (_, true) => writeln!(f, "killed by the harness after {:?}", self.waited)?,
            (Some(code), _) => writeln!(f, "exit code {code} (0 = all calls ok, 1 = some failed, else fatal/timeout)")?,
            (None, _) => writeln!(f, "terminated by a signal")?,
        }
        writeln!(f, "--- errors ---\n{}", self.errors)?;
        writeln!(f, "--- messages (tail) ---\n{}", self.messages)?;
        write!(f, "--- stdout/stderr (tail) ---\n{}", self.stdout)
    }
}
