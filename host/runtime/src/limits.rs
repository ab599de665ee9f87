//! The limits every call runs under: a memory ceiling enforced by a `ResourceLimiter` on the
//! store, and a deadline enforced through epoch interruption while the guest runs and, while
//! a call waits in a host function, by a timer ([`within`]).

use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::time::error::Elapsed;

/// Per-plugin limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory an instance may grow to, in bytes (all its memories together).
    /// A growth beyond it fails inside the guest; a trap that follows is reported as
    /// [`crate::Crash::Memory`]. At most [`crate::RuntimeConfig::max_memory_bytes`].
    pub memory_bytes: u64,
    /// How long one call (including instantiating a fresh instance) may run.
    pub timeout: Duration,
    /// How many calls one instance serves before it is dropped; `1` gives every delivery a
    /// fresh instance. An instance is always dropped after a trap, timeout or memory kill.
    pub max_uses: u32,
    /// How many instances of this plugin may exist at once (so how many calls run
    /// concurrently; further calls wait). At most [`crate::RuntimeConfig::max_instances`].
    pub max_instances: u32,
}

impl Default for Limits {
    /// 64 MiB, 10 s, a fresh instance per call, 16 concurrent instances.
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(10),
            max_uses: 1,
            max_instances: 16,
        }
    }
}

/// The memory ceiling of one store. Records a denied growth so that the trap it usually causes
/// is reported as a memory kill.
pub(crate) struct MemoryLimiter {
    pub limit_bytes: usize,
    /// Bytes held by the store's memories (growths add up across memories).
    pub used_bytes: usize,
    /// A growth was denied during the current call.
    pub denied: bool,
}

impl MemoryLimiter {
    pub fn new(limit_bytes: u64) -> MemoryLimiter {
        MemoryLimiter {
            limit_bytes: usize::try_from(limit_bytes).unwrap_or(usize::MAX),
            used_bytes: 0,
            denied: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.used_bytes.saturating_add(growth);
        if total > self.limit_bytes {
            self.denied = true;
            return Ok(false);
        }
        self.used_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pooling allocator's per-table element limit.
        Ok(true)
    }
}

/// The deadline of the call in progress on a store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub at: Instant,
    /// The deadline passed while the guest was running.
    pub expired: bool,
}

impl Deadline {
    pub fn at(at: Instant) -> Deadline {
        Deadline { at, expired: false }
    }
}

/// Runs `future` until `deadline`: `Err` if the deadline passes first. A call that finishes
/// without ever waiting (a guest that neither blocks in a host function nor runs long enough
/// to yield at an epoch tick, so nearly every call) finishes in its first poll and never
/// touches the timer wheel; only a call that waits arms a timer.
pub(crate) async fn within<F: Future>(
    deadline: Instant,
    mut future: Pin<&mut F>,
) -> Result<F::Output, Elapsed> {
    let first = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => {
            tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), future).await
        }
    }
}
