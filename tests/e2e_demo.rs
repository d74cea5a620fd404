//! The README's `scripts/demo`, exercised: it starts, a user logs in through it in a real
//! browser and the real Amundsen frontend knows them, every curl line it prints answers as it says,
//! Ctrl-C stops it, and nothing is left behind; and a port it needs being taken stops it at once,
//! with a line naming the port.

mod support;

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// The demo's fixed loopback ports: Envoy, its admin, the OP, portcullis (gRPC, admin), Amundsen.
const PORTS: [u16; 7] = [8080, 9901, 9000, 9001, 9090, 5000, 5002];

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The demo's ports for one test at a time, whatever `--test-threads` says. No other test binary
/// takes them: `free_port` picks from 10000 up.
fn demo_ports() -> MutexGuard<'static, ()> {
    static PORTS_IN_USE: Mutex<()> = Mutex::new(());
    let guard = PORTS_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    for port in PORTS {
        assert!(
            port_free(port),
            "port {port} is taken before the demo starts"
        );
    }
    guard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs scripts/demo on the demo's fixed ports: run scripts/test"]
async fn the_demo_starts_logs_a_user_in_and_stops_cleanly() {
    let _ports = demo_ports();
    let mut demo = Command::new(repo_root().join("scripts/demo"))
        .env("PORTCULLIS_BIN", env!("CARGO_BIN_EXE_portcullis"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0) // like a terminal: Ctrl-C goes to the whole group
        .spawn()
        .unwrap();
    let pgid = demo.id();
    let _cleanup = KillGroupOnPanic(pgid);
    let stdout = BufReader::new(demo.stdout.take().unwrap());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut printed = String::new();
        for line in stdout.lines().map_while(Result::ok) {
            printed.push_str(&line);
            printed.push('\n');
            if line == "Ctrl-C stops everything." {
                let _ = ready_tx.send(std::mem::take(&mut printed));
            }
        }
    });
    let printed = ready_rx
        .recv_timeout(Duration::from_secs(180))
        .expect("the demo printed that it is running");
    assert!(printed.contains("demo is running"), "{printed}");
    curl_lines_answer_as_they_say(&printed);

    let mut b = Browser::start();
    let at_idp = b.goto("http://127.0.0.1:8080/");
    assert!(
        at_idp["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:9000/"),
        "{at_idp}"
    );
    let home = b.login("bob", "http://127.0.0.1:8080/");
    assert_eq!(home["url"], "http://127.0.0.1:8080/", "{home}");
    let me = b.fetch("http://127.0.0.1:8080/api/auth_user");
    let me: Value =
        serde_json::from_str(me["text"].as_str().unwrap()).unwrap_or_else(|_| panic!("{me}"));
    assert_eq!(me["user"]["email"], "bob@example.com", "{me}");
    drop(b);

    interrupt(pgid);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Every process of the demo is gone: its ports are free again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while PORTS.iter().any(|p| !port_free(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<u16> = PORTS.into_iter().filter(|p| !port_free(*p)).collect();
    assert!(
        left.is_empty(),
        "still listening after the demo stopped: {left:?} (exit {status:?})"
    );
}

/// Every curl line the demo prints, run as printed, answers with the status named on the line above
/// it (`... -> 401 ...`); alice's token gets her Amundsen user, and a JSON answer is JSON.
fn curl_lines_answer_as_they_say(printed: &str) {
    let lines: Vec<&str> = printed.lines().collect();
    let mut checked = 0;
    for pair in lines.windows(2) {
        let (said, command) = (pair[0], pair[1].trim_start());
        let Some(status) = said.split("-> ").nth(1).and_then(|s| s.get(..3)) else {
            continue;
        };
        assert!(command.starts_with("curl "), "{said}\n{command}");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{command} -sS --max-time 10 -w '\\n%{{http_code}}'"
            ))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        let (answer, got) = out.rsplit_once('\n').unwrap_or(("", &out));
        assert_eq!(got, status, "{said}\n{command}\n{answer}");
        if said.contains("her Amundsen user") {
            assert!(
                answer.contains("\"alice@example.com\""),
                "{command}\n{answer}"
            );
        }
        if said.contains("JSON") {
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("content-type: application/json"),
                "{command}\n{answer}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} curl lines in:\n{printed}");
}

#[test]
#[ignore = "runs scripts/demo on the demo's fixed ports: run scripts/test"]
fn a_taken_port_stops_the_demo_at_once_naming_the_port_and_its_part() {
    let _ports = demo_ports();
    // Envoy's admin port, the one a newcomer is least likely to know the demo takes.
    let held = std::net::TcpListener::bind(("127.0.0.1", 9901)).unwrap();
    let started = Instant::now();
    let out = Command::new(repo_root().join("scripts/demo"))
        .env("PORTCULLIS_BIN", env!("CARGO_BIN_EXE_portcullis"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    drop(held);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {stderr}");
    // Checked before anything else: no setup, no build, nothing started.
    assert!(stdout.is_empty(), "{stdout}");
    let taken: Vec<&str> = stderr.lines().filter(|l| l.contains("is taken")).collect();
    assert_eq!(taken.len(), 1, "{stderr}");
    let line = taken[0];
    assert!(
        line.starts_with("demo: port 9901 is taken (by ")
            && line.ends_with("; the demo needs it for Envoy's admin interface"),
        "{line}"
    );
    // Who holds it, when `ss` can tell: this test.
    if Command::new("ss").arg("-V").output().is_ok() {
        assert!(
            line.contains(&format!("pid {}", std::process::id())),
            "{line}"
        );
    }
    for port in PORTS {
        assert!(
            port_free(port),
            "port {port} taken after the demo refused to start"
        );
    }
}

/// Ctrl-C, as a terminal sends it: SIGINT to the whole process group.
fn interrupt(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-s", "INT", "--", &format!("-{pgid}")])
        .status();
}

/// A failing test must not leave the demo holding its ports.
struct KillGroupOnPanic(u32);

impl Drop for KillGroupOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            interrupt(self.0);
            std::thread::sleep(Duration::from_secs(2));
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", self.0)])
                .status();
        }
    }
}
