//! Tried as an attacker would: sipvicious (`svwar`, `svcrack`, from PyPI)
//! against a sipbox with `[auth] required`. No extension is enumerated, no
//! password from the list is found (the throttle blocks the source long
//! before), the scan creates no binding, and a registered user's calls keep
//! working meanwhile.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Server, ServerConfig, Sipp, TestEnv, free_ports, mi_call, uac, uas, wait_child};

/// Runs a sipvicious tool for at most `within`; its stdout and stderr
/// together, and whether it finished by itself (svcrack, once refused, keeps
/// waiting for challenges that do not come: it is stopped then).
fn sipvicious(tool: &str, args: &[&str], within: Duration) -> (String, bool) {
    let bin = format!("sipvicious_{tool}");
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin} is missing ({e}): tests/run.sh installs it (pip install sipvicious)"));
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let finished = wait_child(&mut child, within).is_some();
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
    }
    (format!("{}{}", out.join().unwrap_or_default(), err.join().unwrap_or_default()), finished)
}

#[test]
fn sipvicious_enumerates_no_extension_and_cracks_no_password() {
    let env = TestEnv::new("scan_sipvicious");
    let config = ServerConfig { mi: true, auth_toml: "required = true\n".into(), ..ServerConfig::default() };
    let server = Server::start(&env, config);
    // 1002's password is in the attacker's list, after the first ten.
    let mut words: Vec<String> = (0..40).map(|i| format!("guess{i:02}")).collect();
    words.insert(25, "password1".into());
    for (user, password) in [("1001", "Tr0ub4dor&3-horse"), ("1002", "password1")] {
        let added = mi_call(server.mi_addr(), "subscriber_add", json!({"username": user, "password": password}));
        assert_eq!(added["result"], "OK", "{added}");
    }
    let [contact_port] = free_ports();
    let csv = env.unique_file("credentials", "csv");
    std::fs::write(&csv, "SEQUENTIAL\n1001;[authentication username=1001 password=Tr0ub4dor&3-horse]\n").expect("csv");
    Sipp::new(&env, "register_auth.xml")
        .remote(server.addr())
        .local_port(contact_port)
        .users(&csv)
        .key("contact_host", "127.0.0.1")
        .key("contact_port", contact_port)
        .key("expires", 600)
        .run()
        .assert_ok("1001 registers with its password");

    let port = server.port().to_string();
    let (scan, finished) =
        sipvicious("svwar", &["-p", &port, "-e", "1000-1020", "--force", "127.0.0.1"], Duration::from_secs(120));
    assert!(finished, "svwar did not finish within 120 s:\n{scan}");
    assert!(!scan.contains("| 1001") && !scan.contains("| 1002"), "svwar enumerated an extension:\n{scan}");

    let list = env.unique_file("words", "txt");
    std::fs::write(&list, words.join("\n") + "\n").expect("word list");
    let list = list.display().to_string();
    let (crack, _) =
        sipvicious("svcrack", &["-p", &port, "-u", "1002", "-d", &list, "127.0.0.1"], Duration::from_secs(20));
    assert!(!crack.contains("password1"), "svcrack found the password:\n{crack}");
    assert!(!crack.contains("Traceback"), "svcrack must have run its attack, not crashed:\n{crack}");

    // A registered user's calls still work during and after the scan.
    let phone = uas(&env, "uas_busy.xml", contact_port);
    uac(&env, &server, "uac_expect_486.xml", "1001").run().assert_ok("a call to 1001 after the scan");
    phone.wait().assert_ok("1001's phone got the call");

    let dump = mi_call(server.mi_addr(), "ul_dump", json!({}));
    let aors = dump["result"]["Domains"][0]["AORs"].as_array().cloned().unwrap_or_default();
    assert_eq!(aors.len(), 1, "the scan registered nothing: {dump}");
    let stats = mi_call(server.mi_addr(), "get_statistics", json!({"statistics": ["auth:"]}));
    assert!(
        stats["result"]["auth:blocked_sources"].as_u64().unwrap_or(0) >= 1,
        "svcrack's source was blocked: {stats}"
    );
}
