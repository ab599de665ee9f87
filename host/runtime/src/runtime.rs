//! The runtime: one engine, one linker with all of WASI p2, `wasi:http` and the Courier host
//! interface, and the compiled-artifact cache; and loading a component into a [`Plugin`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::{DestinationPluginPre, HandlerPluginPre, host, info_from_wit};
use crate::cache::ComponentCache;
use crate::call_context::CallContext;
use crate::engine::{EpochTicker, RuntimeConfig, build_engine};
use crate::error::{LoadError, RuntimeError};
use crate::http_grants::{Grants, HttpMode, HttpPolicy};
use crate::inspect::plugin_kind;
use crate::instance::{InstanceState, PluginPre, PluginShared, Request, Response};
use crate::limits::{Limits, within};
use crate::logs::{CallTags, LogMode};
use crate::model::PluginKind;
use crate::plugin::Plugin;
use crate::validate::check_info;

/// The plugin runtime. Cheap to clone (all clones share one engine, linker and cache).
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<InstanceState>,
    cache: ComponentCache,
    config: RuntimeConfig,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// How one plugin is run: chosen by the operator (or the test), not by the plugin.
#[derive(Debug, Clone, Default)]
pub struct PluginSettings {
    /// The name its log lines are tagged with; defaults to the name the plugin gives itself.
    pub name: Option<String>,
    /// Memory, time, instance reuse and concurrency limits.
    pub limits: Limits,
    /// The values the plugin reads with `host.config(key)`.
    pub config: BTreeMap<String, String>,
    /// The hosts it may send HTTP requests to (see [`crate::HttpMode`] for the syntax
    /// `host`, `host:port`, `*.domain`). Empty: no network.
    pub allowed_hosts: Vec<String>,
    /// Whether granted requests go to the network or to stubs.
    pub http: HttpMode,
    /// Whether its log lines go to `tracing` or into each call's report.
    pub logs: LogMode,
}

impl Runtime {
    /// Builds the engine (reserving the instance pool) and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let engine = build_engine(&config)?;
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| RuntimeError::CacheDir {
                path: dir.clone(),
                source,
            })?;
        }
        let linker = build_linker(&engine)?;
        let cache = ComponentCache::new(&engine, &config);
        let ticker = EpochTicker::start(engine.weak(), config.epoch_tick)?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                config,
                _ticker: ticker,
            }),
        })
    }

    /// How this runtime was set up.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Reads a component file and loads it (see [`Runtime::load`]).
    pub async fn load_file(
        &self,
        path: impl AsRef<Path>,
        settings: PluginSettings,
    ) -> Result<Plugin, LoadError> {
        let path = path.as_ref();
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        self.load(bytes, settings).await
    }

    /// Checks that `bytes` is a Courier plugin component, compiles it (or reads it from the
    /// compiled-artifact cache; compiling runs on tokio's blocking pool), links it, calls its
    /// `describe` and validates the answer.
    pub async fn load(
        &self,
        bytes: Vec<u8>,
        settings: PluginSettings,
    ) -> Result<Plugin, LoadError> {
        let shared = self.plugin_shared(&settings)?;
        let kind = plugin_kind(&bytes)?;

        let runtime = self.clone();
        let (component, load_stats) = tokio::task::spawn_blocking(move || {
            runtime.inner.cache.load(&runtime.inner.engine, &bytes)
        })
        .await
        .map_err(|error| LoadError::Compile(format!("the compiling task failed: {error}")))??;

        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|error| LoadError::Link(format!("{error:#}")))?;
        let pre = match kind {
            PluginKind::Handler => HandlerPluginPre::new(instance_pre).map(PluginPre::Handler),
            PluginKind::Destination => {
                DestinationPluginPre::new(instance_pre).map(PluginPre::Destination)
            }
        }
        .map_err(|error| LoadError::Link(format!("{error:#}")))?;

        let info = describe(&pre, &shared).await?;
        check_info(&info).map_err(LoadError::InvalidInfo)?;

        let shared = match &settings.name {
            Some(_) => shared,
            None => Arc::new(PluginShared {
                label: info.name.as_str().into(),
                config: shared.config.clone(),
                http: shared.http.clone(),
                limits: shared.limits.clone(),
                log_mode: shared.log_mode,
            }),
        };
        Ok(Plugin::new(
            self.clone(),
            info,
            kind,
            load_stats,
            shared,
            pre,
        ))
    }

    fn plugin_shared(&self, settings: &PluginSettings) -> Result<Arc<PluginShared>, LoadError> {
        let limits = &settings.limits;
        let config = &self.inner.config;
        if limits.memory_bytes == 0 || limits.memory_bytes > config.max_memory_bytes {
            return Err(LoadError::Settings(format!(
                "the memory limit must be between 1 and {} bytes (the runtime's ceiling), not {}",
                config.max_memory_bytes, limits.memory_bytes
            )));
        }
        if limits.timeout.is_zero() {
            return Err(LoadError::Settings("the timeout must not be zero".into()));
        }
        if limits.max_uses == 0 {
            return Err(LoadError::Settings("max_uses must be at least 1".into()));
        }
        if limits.max_instances == 0 || limits.max_instances > config.max_instances {
            return Err(LoadError::Settings(format!(
                "max_instances must be between 1 and {} (the runtime's pool), not {}",
                config.max_instances, limits.max_instances
            )));
        }
        let grants = Grants::parse(&settings.allowed_hosts).map_err(LoadError::Settings)?;
        Ok(Arc::new(PluginShared {
            label: settings.name.as_deref().unwrap_or("loading plugin").into(),
            config: settings.config.clone(),
            http: Arc::new(HttpPolicy {
                grants,
                mode: settings.http.clone(),
                timeout: limits.timeout,
            }),
            limits: limits.clone(),
            log_mode: settings.logs,
        }))
    }
}

/// Calls `describe` on a fresh instance, within the plugin's limits.
async fn describe(
    pre: &PluginPre,
    shared: &Arc<PluginShared>,
) -> Result<crate::PluginInfo, LoadError> {
    let call = Arc::new(CallContext::new(shared.label.clone()));
    call.begin(CallTags::default(), LogMode::Tracing);
    let limit = shared.limits.timeout;
    let started = Instant::now();
    let run = std::pin::pin!(async {
        let mut instance = pre.instantiate(shared, &call, started).await?;
        instance.invoke(Request::Describe).await
    });
    let response = match within(started + limit * 2, run).await {
        Ok(response) => response,
        Err(_elapsed) => Err(crate::Crash::Timeout { limit }),
    };
    call.finish();
    match response.map_err(LoadError::Describe)? {
        Response::Info(info) => Ok(info_from_wit(info)),
        Response::Outcome(_) | Response::Outcomes(_) => {
            unreachable!("describe answers with the plugin's info")
        }
    }
}

fn build_linker(engine: &Engine) -> Result<Linker<InstanceState>, RuntimeError> {
    let mut linker = Linker::new(engine);
    let link_error = |error: wasmtime::Error| RuntimeError::Engine(format!("{error:#}"));
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_error)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link_error)?;
    host::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |state| state)
        .map_err(link_error)?;
    Ok(linker)
}
