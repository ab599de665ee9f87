//! The one wasmtime `Engine` of a runtime: pooling allocator sized from [`RuntimeConfig`]
//! (or, where the address space is too small for the pool, one mapping per instance),
//! epoch interruption driven by a ticker thread that stops when the runtime is dropped.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig,
};

use crate::compiler::CompilerCommand;
use crate::error::RuntimeError;

/// How a [`crate::Runtime`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Where compiled components are kept between runs (`None`: compile on every load).
    pub cache_dir: Option<PathBuf>,
    /// How many plugin instances may exist at once, all plugins together. The pooling
    /// allocator reserves address space for this many up front.
    pub max_instances: u32,
    /// The most linear memory one instance may have; every plugin's
    /// [`crate::Limits::memory_bytes`] must be at most this, and this at most 4 GiB. (Each
    /// pooled memory slot reserves 4 GiB of address space plus a guard region, whatever
    /// this limit: no memory is committed for it, and guest code needs no bounds checks.
    /// Where the process cannot reserve that much, slots reserve this limit instead; where
    /// even that pool does not fit, each instance maps its own memory when created.)
    pub max_memory_bytes: u64,
    /// How often the epoch advances: the granularity of call deadlines.
    pub epoch_tick: Duration,
    /// The program that compiles components in a process of its own, leaving none of the
    /// compiler's memory behind in this one (`None`: compile in this process). Used only with
    /// a `cache_dir`, where the process leaves the compiled component.
    pub compiler: Option<CompilerCommand>,
}

impl Default for RuntimeConfig {
    /// No disk cache, 1000 instances, 256 MiB per instance, a 10 ms tick, compiling in this
    /// process.
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            max_instances: 1000,
            max_memory_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(10),
            compiler: None,
        }
    }
}

/// Core instances, memories and tables per component instance the pool provides for, on
/// average: a Rust component has about three core instances, one memory and two tables;
/// components of interpreted languages have more core instances and tables. Components of
/// every SDK (Rust, Python, JavaScript, C) define one memory, and each pooled memory slot
/// reserves 4 GiB of address space: one per instance keeps an engine of 1,000 instances at
/// about 4 TiB of the 128 TiB a process can address.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const MEMORIES_PER_COMPONENT: u32 = 1;
const TABLES_PER_COMPONENT: u32 = 4;
const TABLE_ELEMENTS: usize = 50_000;
/// What a 32-bit memory index can address.
const WASM32_ADDRESS_SPACE: u64 = 1 << 32;
/// Per pooled slot, how much of a memory (or table) is reset in place rather than unmapped
/// when its instance is dropped; the rest is returned to the kernel.
const KEEP_RESIDENT_MEMORY_BYTES: usize = 2 << 20;
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;

pub(crate) fn build_engine(config: &RuntimeConfig) -> Result<Engine, RuntimeError> {
    if config.max_instances == 0 {
        return Err(RuntimeError::Engine(
            "max_instances must be at least 1".to_string(),
        ));
    }
    if config.max_memory_bytes > WASM32_ADDRESS_SPACE {
        return Err(RuntimeError::Engine(format!(
            "max_memory_bytes must be at most 4 GiB (what a 32-bit memory can address), not {}",
            config.max_memory_bytes
        )));
    }
    let max_memory = usize::try_from(config.max_memory_bytes)
        .map_err(|_| RuntimeError::Engine("max_memory_bytes is too large".to_string()))?;
    let instances = config.max_instances;
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(instances)
        .max_memory_size(max_memory)
        .table_elements(TABLE_ELEMENTS)
        // Reset a slot for its next instance by rewriting only its dirty pages (found with
        // Linux's PAGEMAP_SCAN where available) instead of unmapping them: fresh instances
        // then neither page-fault nor wait on `madvise` and its TLB flushes.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY_BYTES)
        .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES);

    let engine = |reservation: u64, strategy: InstanceAllocationStrategy| {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            // The contract has no async functions: without the component-model concurrency
            // machinery a call is a plain call on a fiber, and dropping a store is cheap.
            .concurrency_support(false)
            .epoch_interruption(true)
            .memory_reservation(reservation)
            .allocation_strategy(strategy);
        Engine::new(&wasm)
    };
    let pooled = || InstanceAllocationStrategy::Pooling(pooling.clone());
    // Reserve the whole 32-bit address space (plus the default guard) for every memory,
    // however small its limit: then every load and store is checked by the MMU rather than
    // by an explicit bounds check compiled into the guest's code. That is about 4 GiB of
    // address space (never memory) per pooled slot. Where the process may not address that
    // much (`ulimit -v`, a small virtual address space), pooled slots reserve only the limit
    // and the guest code checks its bounds; where even that pool does not fit, every
    // instance maps its own memory when it is created (slower to instantiate, but it runs).
    let first = match engine(WASM32_ADDRESS_SPACE, pooled()) {
        Ok(engine) => return Ok(engine),
        Err(error) => error,
    };
    if let Ok(engine) = engine(config.max_memory_bytes, pooled()) {
        tracing::warn!(
            error = %format!("{first:#}"),
            "cannot reserve 4 GiB of address space per plugin memory; plugins run with \
             explicit bounds checks, more slowly"
        );
        return Ok(engine);
    }
    engine(
        config.max_memory_bytes,
        InstanceAllocationStrategy::OnDemand,
    )
    .inspect(|_| {
        tracing::warn!(
            error = %format!("{first:#}"),
            max_instances = instances,
            "cannot reserve address space for a pool of plugin instances (is `ulimit -v` \
             set?); each instance maps its own memory when created, more slowly"
        );
    })
    .map_err(|error| RuntimeError::Engine(format!("{error:#}")))
}

/// Advances the engine's epoch every tick until dropped.
pub(crate) struct EpochTicker {
    _stop: mpsc::Sender<()>,
}

impl EpochTicker {
    pub fn start(engine: EngineWeak, tick: Duration) -> Result<EpochTicker, RuntimeError> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("courier-epoch".to_string())
            .spawn(move || {
                // Ends when the sender is dropped (the runtime is gone) or the engine is.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(RuntimeError::Ticker)?;
        Ok(EpochTicker { _stop: stop })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_limit_beyond_what_wasm32_addresses_is_refused_by_name() {
        let config = RuntimeConfig {
            max_memory_bytes: (4 << 30) + 1,
            max_instances: 1,
            ..RuntimeConfig::default()
        };
        let error = build_engine(&config).unwrap_err().to_string();
        assert!(
            error.contains("max_memory_bytes must be at most 4 GiB"),
            "{error}"
        );
    }
}
