//! A plugin's standard output and standard error: every line becomes a log line of the call in
//! progress (or, between calls, a `tracing` event tagged with the plugin's name).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::call_context::CallContext;
use crate::logs::{CallTags, LogMode, LogSource};

/// The call in progress on one instance, shared by the instance's state and its output streams.
#[derive(Clone, Default)]
pub(crate) struct CallSlot(Arc<Mutex<Option<Arc<CallContext>>>>);

impl CallSlot {
    pub fn set(&self, call: Option<Arc<CallContext>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = call;
    }

    fn current(&self) -> Option<Arc<CallContext>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One of the guest's output streams.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    pub slot: CallSlot,
    pub source: LogSource,
    pub plugin: Arc<str>,
}

impl GuestOutput {
    fn write_bytes(&self, bytes: &[u8]) {
        match self.slot.current() {
            Some(call) => call.write_output(self.source, bytes),
            None => {
                // Output outside any call (there is none today: instantiation happens within a
                // call) still reaches the operator.
                let call =
                    CallContext::new(self.plugin.clone(), CallTags::default(), LogMode::Tracing);
                call.write_output(self.source, bytes);
                call.finish();
            }
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
