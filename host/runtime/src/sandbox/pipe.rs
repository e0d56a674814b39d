//! A guest's stdout or stderr: kept in memory up to a cap, the rest counted and dropped.
//! Unlike wasmtime's `MemoryOutputPipe`, writing past the cap never fails, so a chatty
//! guest is not turned into a trapping one; the truncation is recorded instead.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Clone)]
pub(crate) struct CappedPipe {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    buf: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl CappedPipe {
    pub(crate) fn new(cap: usize) -> Self {
        CappedPipe { inner: Arc::new(Mutex::new(Captured { cap, ..Captured::default() })) }
    }

    /// What was kept, and how many bytes were dropped.
    pub(crate) fn take(&self) -> (Vec<u8>, u64) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (std::mem::take(&mut c.buf), c.dropped)
    }

    /// A copy of what was kept so far, without taking it.
    pub(crate) fn peek(&self) -> (Vec<u8>, u64) {
        let c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (c.buf.clone(), c.dropped)
    }

    fn append(&self, bytes: &[u8]) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let room = c.cap.saturating_sub(c.buf.len());
        let kept = bytes.len().min(room);
        c.buf.extend_from_slice(&bytes[..kept]);
        c.dropped += (bytes.len() - kept) as u64;
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
