//! The compiled-artifact cache: a component compiled once is kept on disk as
//! `<cache_dir>/<sha256 of the component>-<engine hash>.cwasm` and memory-mapped on later loads,
//! so loading a known component never recompiles it. With a compiler command configured, a
//! cache miss is compiled in a process of its own (`crate::compiler`), and the entry it wrote
//! is mapped like any other.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::compiler::ChildCompile;
use crate::engine::RuntimeConfig;
use crate::error::LoadError;

/// How a plugin's compiled code was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadStats {
    /// The component was compiled by this load (a cache miss, a corrupt or incompatible cache
    /// entry, or no cache configured); `false` when it was read from the cache.
    pub compiled: bool,
    /// The cache entry for this component, when a cache is configured.
    pub cache_file: Option<PathBuf>,
    /// The SHA-256 of the component's bytes, in hex.
    pub sha256: String,
    /// Time spent compiling or reading the cache.
    pub duration: Duration,
}

/// Where compiled components live, for one engine configuration.
pub(crate) struct ComponentCache {
    /// Hex digest of the engine's compatibility hash: part of every key, so that a component
    /// compiled by another wasmtime version or configuration is never loaded.
    engine_key: String,
    /// The cache directory (none: compile on every load), the engine's settings and the
    /// program that compiles for it in a process of its own (used only with a cache
    /// directory: the process hands its work over as a cache entry).
    config: RuntimeConfig,
    /// Held while a compiler process that was killed is tried again.
    retrying: Mutex<()>,
}

/// Hex digest of `engine`'s compatibility hash.
pub(crate) fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

impl ComponentCache {
    pub fn new(engine: &Engine, config: &RuntimeConfig) -> ComponentCache {
        ComponentCache {
            engine_key: engine_key(engine),
            config: config.clone(),
            retrying: Mutex::new(()),
        }
    }

    /// The compiled component for `bytes`, from the cache when possible. A cache entry that
    /// cannot be used (corrupt, truncated, incompatible) is replaced, never an error.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> Result<(Component, LoadStats), LoadError> {
        let started = Instant::now();
        let sha256 = hex::encode(Sha256::digest(bytes));
        let stats = |compiled: bool, cache_file: Option<PathBuf>| LoadStats {
            compiled,
            cache_file,
            sha256: sha256.clone(),
            duration: started.elapsed(),
        };
        let Some(dir) = &self.config.cache_dir else {
            let component = compile(engine, bytes)?;
            return Ok((component, stats(true, None)));
        };
        let path = dir.join(format!("{sha256}-{}.cwasm", self.engine_key));
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok((component, stats(false, Some(path)))),
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    "unusable compiled-plugin cache entry, recompiling: {error:#}"
                ),
            }
        }
        if let Some(component) = self.compile_in_child(engine, bytes, &path)? {
            return Ok((component, stats(true, Some(path))));
        }
        let component = compile(engine, bytes)?;
        match component.serialize() {
            Ok(compiled) => {
                if let Err(error) = write_atomically(&path, &compiled) {
                    tracing::warn!(
                        path = %path.display(),
                        "cannot write the compiled-plugin cache entry: {error}"
                    );
                }
            }
            Err(error) => tracing::warn!("cannot serialize a compiled plugin: {error:#}"),
        }
        // The serialized copy, freed by now, was as large as the compiled code.
        release_freed_heap();
        Ok((component, stats(true, Some(path))))
    }

    /// Compiles `bytes` in a compiler process, when one is configured, and maps the cache
    /// entry it wrote to `path`. `None` when the process could not do the job or its entry
    /// cannot be used: the caller compiles in this process instead.
    fn compile_in_child(
        &self,
        engine: &Engine,
        bytes: &[u8],
        path: &Path,
    ) -> Result<Option<Component>, LoadError> {
        let Some(compiler) = &self.config.compiler else {
            return Ok(None);
        };
        let mut outcome = compiler.compile(&self.config, &self.engine_key, bytes, path);
        if let ChildCompile::Died(message) = &outcome {
            // Most likely killed for memory while other plugins compiled beside it: once
            // more, alone (no other retry runs at the same time).
            tracing::warn!(
                compiler = %compiler.program.display(),
                "{message}; compiling once more"
            );
            let _alone = self.retrying.lock().unwrap_or_else(|p| p.into_inner());
            outcome = compiler.compile(&self.config, &self.engine_key, bytes, path);
        }
        let unavailable = match outcome {
            ChildCompile::Written => match deserialize(engine, path) {
                Ok(component) => return Ok(Some(component)),
                Err(error) => format!("its cache entry cannot be used: {error:#}"),
            },
            ChildCompile::Invalid(message) => return Err(LoadError::Compile(message)),
            ChildCompile::Died(message) => {
                return Err(LoadError::Compile(format!("{message} (twice)")));
            }
            ChildCompile::Unavailable(message) => message,
        };
        tracing::warn!(
            compiler = %compiler.program.display(),
            "the compiler process did not compile the plugin, compiling in the host: {unavailable}"
        );
        Ok(None)
    }
}

/// Compiles `bytes`, then releases what compiling freed (whether it succeeded or not).
fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, LoadError> {
    let component =
        Component::new(engine, bytes).map_err(|error| LoadError::Compile(format!("{error:#}")));
    release_freed_heap();
    component
}

/// Hands the heap memory freed since the last trim back to the operating system. Compiling a
/// component allocates hundreds of megabytes across the compiler's threads (a JavaScript or
/// Python plugin: 300–400 MB) and frees nearly all of it by the end, but glibc's allocator
/// keeps freed memory in each thread's arena: without this, a host that compiled one such
/// plugin stayed that much larger for the rest of its life.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(
    unsafe_code,
    reason = "malloc_trim takes no pointers and only releases free memory; it is safe to call \
              from any thread at any time."
)]
fn release_freed_heap() {
    // SAFETY: see the `expect` reason above.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_heap() {}

#[expect(
    unsafe_code,
    reason = "Component::deserialize_file trusts the file to be wasmtime's own output. Cache \
              entries are written only by this crate (whole, via rename: by this module, or \
              by `compile_to_file` in the configured compiler process, which is trusted as \
              the host's own executable is), named after the engine's compatibility hash, \
              and wasmtime still checks the header and engine compatibility before use."
)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: see the `expect` reason above.
    unsafe { Component::deserialize_file(engine, path) }
}

/// Writes `bytes` to a temporary file next to `path`, then renames it over `path`, so readers
/// see either no file or a complete one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (dir, prefix) = temporary_prefix(path, std::process::id());
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(
        "{prefix}{}.tmp",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// Where process `pid` puts its temporary files on the way to `path`, and how their names
/// begin: `.NAME.PID.` (so that what a killed process left can be found and removed).
pub(crate) fn temporary_prefix(path: &Path, pid: u32) -> (&Path, String) {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    (dir, format!(".{name}.{pid}."))
}

/// Feeds a `Hash` implementation into SHA-256.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
