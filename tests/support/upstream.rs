//! The protected upstream: an in-process HTTP server that answers 200 and records every request.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
}

impl Seen {
    /// Every value of header `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

/// An upstream on 127.0.0.1 that answers 200 to everything and records every request it got.
/// Runs on the test's tokio runtime and ends with it.
#[derive(Clone)]
pub struct EchoUpstream {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl EchoUpstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(Seen {
                    method: req.method().to_string(),
                    uri: req.uri().to_string(),
                    headers: req.headers().clone(),
                });
                "upstream ok\n"
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { port, seen }
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request (panics if none came).
    pub fn last(&self) -> Seen {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }

    /// The last request whose path starts with `prefix` (panics if none came).
    pub fn last_under(&self, prefix: &str) -> Seen {
        self.requests()
            .into_iter()
            .rev()
            .find(|r| r.uri.starts_with(prefix))
            .unwrap_or_else(|| panic!("the upstream saw nothing under {prefix}"))
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}
