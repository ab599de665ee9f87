//! A running Courier host: the database (embedded or not), the migrated outbox, the plugin
//! runtime and registry, the plugins-directory watcher, the dispatcher and the HTTP API. Used
//! by `courier run` and, in-process, by the tests and benchmarks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use courier_runtime::{CompilerCommand, Runtime};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState, ApiToken};
use crate::config::Settings;
use crate::database::{Connection, PoolSize};
use crate::dispatcher::{Dispatcher, DispatcherOptions};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::watcher::{DEFAULT_DEBOUNCE, DirectoryWatch};

/// A running host. Stop it with [`Host::shutdown`].
pub struct Host {
    settings: Settings,
    connection: Connection,
    outbox: courier_outbox::Outbox,
    registry: Arc<Registry>,
    metrics: Metrics,
    dispatcher: Dispatcher,
    api_address: SocketAddr,
    api_stop: watch::Sender<bool>,
    api_task: JoinHandle<()>,
    watch_task: JoinHandle<()>,
    initial_load: watch::Receiver<bool>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("api_address", &self.api_address)
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

/// Knobs of a host beyond its [`Settings`], for tests and benchmarks.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// How claims and completions are batched.
    pub dispatcher: DispatcherOptions,
    /// How long the plugins directory must be quiet before a changed plugin is reloaded.
    pub reload_debounce: Duration,
    /// Whether to watch the plugins directory for changes.
    pub watch_plugins: bool,
    /// The program that compiles plugins in a process of its own (`None`: in the host).
    pub compiler: Option<CompilerCommand>,
}

impl HostOptions {
    /// The options for `settings`, compiling plugins in-process (`courier run` adds its own
    /// executable as the compiler process: see
    /// [`crate::cli::compile_plugin::this_executable`]).
    pub fn from_settings(settings: &Settings) -> HostOptions {
        HostOptions {
            dispatcher: DispatcherOptions {
                claim_batch_size: settings.claim_batch_size,
                lease: settings.lease,
                poll_interval: settings.poll_interval,
                ..DispatcherOptions::default()
            },
            reload_debounce: DEFAULT_DEBOUNCE,
            watch_plugins: true,
            compiler: None,
        }
    }
}

impl Host {
    /// Starts a host with [`HostOptions::from_settings`], compiling plugins in-process.
    pub async fn start(settings: Settings) -> anyhow::Result<Host> {
        let options = HostOptions::from_settings(&settings);
        Host::start_with(settings, options).await
    }

    /// Starts a host: connects (starting the embedded Postgres when configured), migrates,
    /// loads the plugins in the background, and serves the API.
    pub async fn start_with(settings: Settings, options: HostOptions) -> anyhow::Result<Host> {
        if settings.api_token.is_none() && !settings.listen.ip().is_loopback() {
            bail!(
                "refusing to listen on {} without an API token: set COURIER_API_TOKEN (or `api_token` in the configuration file), or listen on a loopback address such as 127.0.0.1",
                settings.listen
            );
        }
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {} (`listen`)", settings.listen))?;
        let api_address = listener.local_addr().context("reading the API's address")?;

        let connection = Connection::open_for_host(&settings, PoolSize::HOST).await?;
        if connection.is_embedded() {
            tracing::info!(url = %connection.url, "embedded Postgres is running; publish with `psql {}`", connection.url);
        }
        let outbox = crate::outbox_bridge::open(&connection, &settings)
            .await
            .context("preparing the outbox")?;

        if !settings.plugins_dir.exists() {
            std::fs::create_dir_all(&settings.plugins_dir).with_context(|| {
                format!(
                    "cannot create the plugins directory {}",
                    settings.plugins_dir.display()
                )
            })?;
        }
        let runtime = Runtime::new(settings.runtime_config(options.compiler.clone()))
            .context("starting the plugin runtime")?;
        let registry = Arc::new(Registry::new(
            &settings.plugins_dir,
            runtime,
            outbox.clone(),
        ));
        let metrics = Metrics::new();
        let dispatcher = Dispatcher::start(
            outbox.clone(),
            registry.subscribe(),
            metrics.clone(),
            options.dispatcher.clone(),
        )
        .await
        .context("starting the dispatcher")?;

        let (loaded_sender, initial_load) = watch::channel(false);
        let watch = if options.watch_plugins {
            Some(
                DirectoryWatch::start(&settings.plugins_dir, options.reload_debounce)
                    .context("watching the plugins directory")?,
            )
        } else {
            None
        };
        let watch_task = tokio::spawn(load_and_watch(registry.clone(), watch, loaded_sender));

        let state = ApiState {
            outbox: outbox.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            body_limit: settings.body_limit,
        };
        let router = api::router(state, ApiToken::new(settings.api_token.as_deref()));
        let (api_stop, mut api_stopped) = watch::channel(false);
        let api_task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = api_stopped.changed().await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "the HTTP API stopped");
            }
        });
        tracing::info!(address = %api_address, plugins = %settings.plugins_dir.display(), "Courier is running");

        Ok(Host {
            settings,
            connection,
            outbox,
            registry,
            metrics,
            dispatcher,
            api_address,
            api_stop,
            api_task,
            watch_task,
            initial_load,
        })
    }

    /// The address the API listens on (useful with port 0).
    pub fn api_address(&self) -> SocketAddr {
        self.api_address
    }

    /// The database URL in use.
    pub fn database_url(&self) -> &str {
        &self.connection.url
    }

    /// The connection pool.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.connection.pool
    }

    /// The outbox.
    pub fn outbox(&self) -> &courier_outbox::Outbox {
        &self.outbox
    }

    /// The plugins.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The settings the host runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Waits until the plugins present at start have been loaded (or failed to load).
    pub async fn wait_for_initial_load(&self) {
        let mut loaded = self.initial_load.clone();
        let _ = loaded.wait_for(|done| *done).await;
    }

    /// Stops the API and the watcher, lets in-flight deliveries finish within the grace period,
    /// releases the other leases, and stops the embedded Postgres.
    pub async fn shutdown(self) {
        tracing::info!(grace = ?self.settings.shutdown_grace, "shutting down");
        let _ = self.api_stop.send(true);
        self.watch_task.abort();
        self.dispatcher.shutdown(self.settings.shutdown_grace).await;
        let _ = self.api_task.await;
        self.connection.close().await;
        tracing::info!("stopped");
    }
}

/// Loads the plugins present now, then reloads each plugin whose files change.
async fn load_and_watch(
    registry: Arc<Registry>,
    watch: Option<DirectoryWatch>,
    loaded: watch::Sender<bool>,
) {
    if let Err(error) = registry.load_all().await {
        tracing::error!(dir = %registry.dir().display(), %error, "cannot read the plugins directory");
    }
    let _ = loaded.send(true);
    let Some(mut watch) = watch else {
        return;
    };
    while let Some(name) = watch.next().await {
        let registry = registry.clone();
        tokio::spawn(async move {
            registry.reload(&name).await;
        });
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
