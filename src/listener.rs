//! Listeners that keep connections in bounds: at most `max_connections` open at once (the next one
//! waits in the kernel's backlog), closed when they send nothing within `handshake` of connecting
//! (an HTTP/2 preface, an HTTP/1 request line) or nothing for `idle` after that. Both ports use
//! them; without, a client that connects and never speaks holds a socket and a task forever.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// `listen.handshake_timeout`, `listen.idle_timeout`, `listen.max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub handshake: Duration,
    pub idle: Duration,
    pub max_connections: usize,
}

/// A TCP listener whose connections hold to [`Limits`].
pub struct GuardedListener {
    listener: TcpListener,
    limits: Limits,
    permits: Arc<Semaphore>,
}

impl GuardedListener {
    pub fn new(listener: TcpListener, limits: Limits) -> Self {
        Self {
            listener,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
        }
    }

    /// The next connection, once one of the `max_connections` is free. Accept errors (out of
    /// file descriptors, a connection reset before it was taken) are logged and waited out.
    pub async fn next(&mut self) -> (Guarded, SocketAddr) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    // Answers go out at once rather than waiting for the peer's delayed ACK.
                    let _ = stream.set_nodelay(true);
                    return (Guarded::new(stream, self.limits, permit), peer);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = io::Result<Guarded>> + Send + 'static {
        futures_util::stream::unfold(self, |mut listener| async move {
            let (conn, _) = listener.next().await;
            Some((Ok(conn), listener))
        })
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.next().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// One connection under [`Limits`]: reading fails with `TimedOut` once its deadline passes, which
/// makes the server drop it. Only what the peer sends moves the deadline; portcullis's own writes
/// (an HTTP/2 keepalive ping) do not.
pub struct Guarded {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    idle: Duration,
    spoke: bool,
    _permit: OwnedSemaphorePermit,
}

impl Guarded {
    fn new(stream: TcpStream, limits: Limits, permit: OwnedSemaphorePermit) -> Self {
        Self {
            stream,
            deadline: Box::pin(tokio::time::sleep(limits.handshake)),
            idle: limits.idle,
            spoke: false,
            _permit: permit,
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.spoke = true;
                    let next = Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    if self.spoke {
                        "the connection was idle too long"
                    } else {
                        "the connection sent nothing"
                    },
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}
