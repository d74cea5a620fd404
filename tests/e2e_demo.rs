//! The README's first command, exercised: `scripts/demo` starts, a user logs in through it in a real
//! browser and the real Amundsen frontend knows them, Ctrl-C stops it, and nothing is left behind.

mod support;

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// The demo's fixed loopback ports: Envoy, its admin, the OP, portcullis (gRPC, admin), Amundsen.
const PORTS: [u16; 7] = [8080, 9901, 9000, 9001, 9090, 5000, 5002];

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs scripts/demo on the demo's fixed ports: run scripts/test"]
async fn the_demo_starts_logs_a_user_in_and_stops_cleanly() {
    for port in PORTS {
        assert!(
            port_free(port),
            "port {port} is taken before the demo starts"
        );
    }
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
        for line in stdout.lines().map_while(Result::ok) {
            if line.contains("demo is running") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(180))
        .expect("the demo printed that it is running");

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
