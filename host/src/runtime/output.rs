//! Guest stdout/stderr: kept in a bounded buffer (excess is dropped, never a trap) and
//! forwarded to tracing after each call, so a guest panic message is visible.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// A bounded in-memory sink for one guest output stream.
#[derive(Clone)]
pub struct GuestOutput {
    inner: Arc<Mutex<Buffer>>,
}

struct Buffer {
    data: BytesMut,
    capacity: usize,
    dropped: usize,
}

impl GuestOutput {
    pub fn new(capacity: usize) -> Self {
        GuestOutput { inner: Arc::new(Mutex::new(Buffer { data: BytesMut::new(), capacity, dropped: 0 })) }
    }

    fn push(&self, bytes: &[u8]) {
        let mut b = self.inner.lock().expect("guest output lock");
        let room = b.capacity.saturating_sub(b.data.len());
        let take = room.min(bytes.len());
        b.data.extend_from_slice(&bytes[..take]);
        b.dropped += bytes.len() - take;
    }

    /// Everything written so far (lossy UTF-8) and how many bytes were dropped.
    pub fn take(&self) -> (String, usize) {
        let mut b = self.inner.lock().expect("guest output lock");
        let text = String::from_utf8_lossy(&b.data).into_owned();
        b.data.clear();
        (text, std::mem::take(&mut b.dropped))
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept: what does not fit is counted and dropped.
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_output_is_dropped_and_counted() {
        let out = GuestOutput::new(8);
        out.push(b"hello ");
        out.push(b"world");
        assert_eq!(out.take(), ("hello wo".to_string(), 3));
        assert_eq!(out.take(), (String::new(), 0));
    }
}
