//! The browser: Debian's Chromium driven by playwright-core (tests/browser/driver.mjs).

use super::*;

/// The browser: one JSON command per line in, one JSON answer per line out.
pub struct Browser {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Browser {
    pub fn start() -> Self {
        installed("tests/browser/node_modules/playwright-core");
        let mut child = std::process::Command::new("node")
            .arg(repo_root().join("tests/browser/driver.mjs"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the browser driver");
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub fn run(&mut self, cmd: serde_json::Value) -> serde_json::Value {
        std::io::Write::write_fmt(&mut self.stdin, format_args!("{cmd}\n")).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.stdout, &mut line).unwrap();
        let answer: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("driver said {line:?}"));
        assert_eq!(answer["ok"], true, "{cmd} failed: {answer}");
        answer
    }

    pub fn goto(&mut self, url: &str) -> serde_json::Value {
        self.run(serde_json::json!({"op": "goto", "url": url}))
    }

    pub fn login(&mut self, user: &str, until: &str) -> serde_json::Value {
        self.run(serde_json::json!({"op": "login", "user": user, "until": until}))
    }

    /// Logs `user` in at the provider but stops before the browser requests a URL starting with
    /// `hold`: that URL, and the `Cookie` header the browser would have sent with it.
    pub fn login_held(&mut self, user: &str, hold: &str) -> (String, String) {
        let answer = self.run(serde_json::json!({"op": "login_held", "user": user, "hold": hold}));
        let cookie = answer["cookies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c["name"].as_str().unwrap(),
                    c["value"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        (answer["held"].as_str().unwrap().to_owned(), cookie)
    }

    pub fn fetch(&mut self, url: &str) -> serde_json::Value {
        self.run(serde_json::json!({"op": "fetch", "url": url}))
    }

    pub fn cookie_names(&mut self) -> Vec<String> {
        let c = self.run(serde_json::json!({"op": "cookies"}));
        c["cookies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn navigations(&mut self) -> Vec<String> {
        let n = self.run(serde_json::json!({"op": "navigations"}));
        n["urls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
