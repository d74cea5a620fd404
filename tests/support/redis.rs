//! Redis (Debian's redis-server) for the shared session store, on a port of its own.

use std::process::Command;
use std::time::Duration;

use super::proc::tempdir;
use super::*;

pub struct Redis {
    pub proc: Proc,
    pub port: u16,
    /// `redis://127.0.0.1:<port>/0`
    pub url: String,
}

impl Redis {
    /// Debian's redis-server on a free loopback port, nothing persisted.
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// On `port` (a Redis started again where it was).
    pub async fn start_on(port: u16) -> Self {
        let server = installed("/usr/bin/redis-server");
        let mut cmd = Command::new(server);
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        let mut proc = Proc::spawn("redis", cmd, tempdir("redis"));
        proc.wait_for_port(port).await;
        Self {
            proc,
            port,
            url: format!("redis://127.0.0.1:{port}/0"),
        }
    }

    pub fn stop(&mut self) {
        self.proc.terminate(Duration::from_secs(5));
    }
}
