//! nginx (Debian's, with auth_request) running the shipped deploy/nginx config on loopback ports.

use std::process::Command;

use super::proc::tempdir;
use super::*;

pub struct Nginx {
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`
    pub url: String,
}

impl Nginx {
    /// deploy/nginx/nginx.conf and its includes, listening on 127.0.0.1:`port`, with portcullis's
    /// forward-auth port at `portcullis` and the app at `upstream`; logs and temp files in its dir.
    pub async fn start(port: u16, portcullis: u16, upstream: u16) -> Self {
        let nginx = installed("/usr/sbin/nginx");
        let dir = tempdir("nginx");
        let shipped = repo_root().join("deploy/nginx");
        for entry in std::fs::read_dir(&shipped).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "conf") {
                std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
            }
        }
        let conf = dir.path().join("nginx.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let d = dir.path().display();
        let moved = [
            (
                "server 127.0.0.1:9002;",
                format!("server 127.0.0.1:{portcullis};"),
            ),
            (
                "server 127.0.0.1:5000;",
                format!("server 127.0.0.1:{upstream};"),
            ),
            ("listen 8080;", format!("listen 127.0.0.1:{port};")),
            (
                "http {",
                format!(
                    "http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/body;\n    \
                     proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
                     uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;"
                ),
            ),
        ];
        let mut text = text;
        for (from, to) in moved {
            assert_eq!(
                text.matches(from).count(),
                1,
                "deploy/nginx/nginx.conf: one {from:?}"
            );
            text = text.replace(from, &to);
        }
        std::fs::write(&conf, text).unwrap();
        let mut cmd = Command::new(nginx);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg("stderr")
            .arg("-g")
            .arg(format!("daemon off; master_process on; pid {d}/nginx.pid;"));
        let mut proc = Proc::spawn("nginx", cmd, dir);
        proc.wait_for_port(port).await;
        Self {
            proc,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.proc.dir().join("access.log")).unwrap_or_default()
    }
}
