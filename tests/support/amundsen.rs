//! The real Amundsen: frontend and metadata service (SQLite), from .venv-amundsen.

use std::process::{Command, Stdio};

use super::proc::tempdir;
use super::*;

pub struct Amundsen {
    /// The assertion [`Amundsen::add_user`] sends, when the metadata service wants one.
    setup: Option<String>,
    pub metadata: Proc,
    pub frontend: Proc,
    pub metadata_url: String,
    pub frontend_port: u16,
    /// Holds the SQLite database and the metadata service's access log.
    data: tempfile::TempDir,
}

/// What the metadata service verifies portcullis's assertions with
/// (deploy/amundsen/portcullis_assertion.py).
pub struct AssertionCheck {
    /// portcullis's admin port's `/.well-known/jwks.json`.
    pub jwks_url: String,
    pub audience: String,
    /// An assertion the test signed itself, for [`Amundsen::add_user`] (as a databuilder job
    /// would be given one).
    pub setup: String,
}

impl Amundsen {
    /// Metadata on a fresh SQLite database, then the frontend configured with
    /// deploy/amundsen/portcullis_auth.py, both under gunicorn on free loopback ports.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// [`Amundsen::start`], the metadata service answering only requests with a valid assertion
    /// when `check` is given.
    pub async fn start_with(check: Option<AssertionCheck>) -> Self {
        let venv = installed(".venv-amundsen/bin");
        let data = tempdir("amundsen-data");
        let db = format!("sqlite:///{}", data.path().join("metadata.db").display());
        let tests_dir = repo_root().join("tests/amundsen");
        let status = Command::new(venv.join("python"))
            .arg(tests_dir.join("sqlite_metadata.py"))
            .env("SQLALCHEMY_DATABASE_URI", &db)
            .env("PYTHONPATH", &tests_dir)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "creating the metadata tables failed");

        let md_port = free_port();
        let mut md = Command::new(venv.join("gunicorn"));
        md.args(["-b", &format!("127.0.0.1:{md_port}"), "--access-logfile"])
            .arg(data.path().join("metadata-access.log"))
            // What the frontend forwarded: the request line and its Authorization header.
            .args(["--access-logformat", "%(r)s auth=%({authorization}i)s"])
            .arg("metadata_service.metadata_wsgi:application")
            .env("SQLALCHEMY_DATABASE_URI", &db)
            .env(
                "PYTHONPATH",
                format!(
                    "{}:{}",
                    tests_dir.display(),
                    repo_root().join("deploy/amundsen").display()
                ),
            );
        match &check {
            Some(check) => md
                .env(
                    "METADATA_SVC_CONFIG_MODULE_CLASS",
                    "sqlite_metadata.SqliteAssertionConfig",
                )
                .env("PORTCULLIS_JWKS_URL", &check.jwks_url)
                .env("PORTCULLIS_ASSERTION_AUDIENCE", &check.audience),
            None => md.env(
                "METADATA_SVC_CONFIG_MODULE_CLASS",
                "sqlite_metadata.SqliteConfig",
            ),
        };
        let mut metadata = Proc::spawn("amundsen-metadata", md, tempdir("amundsen-metadata"));
        let metadata_url = format!("http://127.0.0.1:{md_port}");
        metadata
            .wait_for_http(&format!("{metadata_url}/healthcheck"), 200, None)
            .await;

        let frontend_port = free_port();
        let mut fe = Command::new(venv.join("gunicorn"));
        fe.args([
            "-b",
            &format!("127.0.0.1:{frontend_port}"),
            "amundsen_application.wsgi:application",
        ])
        .env(
            "FRONTEND_SVC_CONFIG_MODULE_CLASS",
            "portcullis_auth.PortcullisAuthConfig",
        )
        .env("PYTHONPATH", repo_root().join("deploy/amundsen"))
        .env("METADATASERVICE_BASE", &metadata_url)
        .env("SEARCHSERVICE_BASE", "http://127.0.0.1:9");
        let mut frontend = Proc::spawn("amundsen-frontend", fe, tempdir("amundsen-frontend"));
        let setup = check.map(|c| c.setup);
        frontend
            .wait_for_http(
                &format!("http://127.0.0.1:{frontend_port}/healthcheck"),
                200,
                None,
            )
            .await;
        Self {
            setup,
            metadata,
            frontend,
            metadata_url,
            frontend_port,
            data,
        }
    }

    /// Creates a user in the metadata service, as Amundsen's databuilder would.
    pub async fn add_user(&self, email: &str) {
        let mut r = http_client().put(format!("{}/user", self.metadata_url));
        if let Some(assertion) = &self.setup {
            r = r.header("x-portcullis-assertion", assertion);
        }
        let r = r
            .json(&serde_json::json!({"user_id": email, "email": email, "display_name": email}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT /user: {}", r.status());
    }

    /// The metadata service's access log: request lines with the Authorization they carried.
    pub fn metadata_access_log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("metadata-access.log")).unwrap_or_default()
    }
}
