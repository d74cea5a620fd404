//! The gRPC server: one single-threaded runtime per core, each serving the connections dealt to it.
//!
//! Why not tokio's work-stealing runtime: hyper runs every HTTP/2 stream as its own task, so on
//! that runtime the answers of one connection were finished on whichever worker ran them, and the
//! connection task was woken across threads and flushed them one write at a time. On one thread
//! the answers that are ready together leave in one write, with no cross-thread wakeup; under
//! load that was a third of portcullis's CPU per check (BENCHMARKS.md). A connection stays on its
//! thread; connections are dealt round-robin, and Envoy opens one or more per worker.

use std::io;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::service::Routes;

use crate::app::stopped;

/// HTTP/2 pings on idle connections, so a dead peer is noticed.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Streams Envoy may cancel before portcullis has picked them up, at once, before portcullis
/// closes the connection (h2's guard against the HTTP/2 rapid-reset attack; its default is 20).
/// Envoy cancels every check in flight for clients that went away or whose ext_authz timeout
/// fired, and all of a worker's checks share one connection: closing it would fail them all.
const MAX_PENDING_ACCEPT_RESETS: usize = 1024;
/// After a failed accept (out of file descriptors, say), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The threads serving gRPC; [`Threads::finished`] resolves when all have drained.
pub struct Threads {
    done: Vec<oneshot::Receiver<Result<(), tonic::transport::Error>>>,
}

/// Serves `routes()` on `listener` with `threads` threads until `stop` turns true, then stops
/// accepting (the port closes) and lets in-flight checks finish. Must be called in a runtime:
/// the accept loop runs on it.
pub fn spawn<R>(
    listener: TcpListener,
    threads: NonZeroUsize,
    routes: R,
    stop: watch::Receiver<bool>,
) -> io::Result<Threads>
where
    R: Fn() -> Routes + Clone + Send + 'static,
{
    let mut dealt = Vec::with_capacity(threads.get());
    let mut done = Vec::with_capacity(threads.get());
    for i in 0..threads.get() {
        let (conn_tx, conn_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (routes, stop) = (routes.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("grpc-{i}"))
            .spawn(move || {
                let served = runtime.block_on(
                    tonic::transport::Server::builder()
                        .http2_keepalive_interval(Some(KEEPALIVE))
                        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
                        .add_routes(routes())
                        .serve_with_incoming_shutdown(Dealt(conn_rx), stopped(stop)),
                );
                let _ = done_tx.send(served);
            })?;
        dealt.push(conn_tx);
        done.push(done_rx);
    }
    tokio::spawn(deal(listener, dealt, stop));
    Ok(Threads { done })
}

impl Threads {
    /// The first thread's error, if any; a thread that died is one.
    pub async fn finished(self) -> Result<(), String> {
        let mut result = Ok(());
        for done in self.done {
            let outcome = match done.await {
                Ok(served) => served.map_err(|e| e.to_string()),
                Err(_) => Err("a gRPC thread ended without a result".to_owned()),
            };
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}

/// Accepts connections and hands them to the threads in turn, until `stop`.
async fn deal(
    listener: TcpListener,
    threads: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted.and_then(|(stream, _)| {
            // Without it an answer (headers, data and trailer frames) waits for the peer's
            // delayed ACK: 40 ms per check (found by benches/load.rs).
            stream.set_nodelay(true)?;
            stream.into_std()
        }) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "gRPC: accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // A thread that has stopped has dropped its receiver; the connection is dropped with it.
        let _ = threads[next].send(stream);
        next = (next + 1) % threads.len();
    }
}

/// The connections dealt to one thread, registered with that thread's runtime.
struct Dealt(mpsc::UnboundedReceiver<std::net::TcpStream>);

impl Stream for Dealt {
    type Item = io::Result<TcpStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .poll_recv(cx)
            .map(|stream| stream.map(TcpStream::from_std))
    }
}
