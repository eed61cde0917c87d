//! Closing a connection without losing its answer (what nginx calls a lingering close).
//!
//! The guard answers 401 or 413 without reading the body, and hyper then closes the
//! connection. Closing a socket whose receive buffer still holds unread bytes makes the kernel
//! send a reset, and a reset makes the client's kernel throw away what it had received: a
//! client still sending its body loses the answer it was sent (reqwest reports an incomplete
//! message). So when hyper shuts a connection down, [`Lingering`] first shuts down the write
//! side (the answer and a FIN go out), then reads and discards what the client still sends,
//! until it closes too, for at most [`LINGER`] and [`LINGER_BYTES`]. A client that closes when
//! answered costs nothing; one that keeps sending costs a bounded read into a stack buffer,
//! never memory that grows.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The longest a closed connection is read from.
pub(crate) const LINGER: Duration = Duration::from_secs(2);
/// The most bytes read from a closed connection.
pub(crate) const LINGER_BYTES: usize = 1024 * 1024;

/// A TCP stream whose shutdown lingers (see the module's documentation).
pub(crate) struct Lingering {
    stream: TcpStream,
    /// Set once the write side is shut down: when to stop reading.
    until: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes read and discarded since.
    discarded: usize,
}

impl Lingering {
    pub(crate) fn new(stream: TcpStream) -> Lingering {
        Lingering {
            stream,
            until: None,
            discarded: 0,
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
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
        let this = &mut *self;
        if this.until.is_none() {
            ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            this.until = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut scratch = [0u8; 8192];
        while this.discarded < LINGER_BYTES {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.stream).poll_read(cx, &mut buf) {
                // The client closed too (or reset): done.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => this.discarded += buf.filled().len(),
                Poll::Pending => {
                    return match this.until.as_mut() {
                        Some(until) => until.as_mut().poll(cx).map(Ok),
                        None => Poll::Ready(Ok(())),
                    };
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The client has sent far more than the server read when the server answers and closes:
    /// the client still reads the whole answer and then the end of the stream, not a reset.
    #[tokio::test]
    async fn an_answer_sent_before_closing_is_read_though_the_request_was_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Unread by the server: more than fits in one read, less than the linger's budget.
        client.write_all(&vec![b'x'; 256 * 1024]).await.unwrap();
        let mut server = Lingering::new(server);
        server
            .write_all(b"HTTP/1.1 401 Unauthorized\r\n\r\n")
            .await
            .unwrap();
        let closing = tokio::spawn(async move {
            server.shutdown().await.unwrap();
            drop(server);
        });
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"HTTP/1.1 401 Unauthorized\r\n\r\n");
        drop(client);
        closing.await.unwrap();
    }
}
