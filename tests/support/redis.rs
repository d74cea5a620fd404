//! Redis (Debian's redis-server) for the shared session store, on a port of its own.

use std::process::Command;
use std::time::Duration;

use super::proc::tempdir;
use super::*;

pub struct Redis {
    pub proc: Proc,
    /// `redis://127.0.0.1:<port>/0`
    pub url: String,
}

impl Redis {
    /// Debian's redis-server on a free loopback port, nothing persisted.
    pub async fn start() -> Self {
        let server = installed("/usr/bin/redis-server");
        let port = free_port();
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
        proc.wait_until("redis", Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Self {
            proc,
            url: format!("redis://127.0.0.1:{port}/0"),
        }
    }
}
