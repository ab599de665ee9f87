//! The host end to end: a real Postgres, real components copied into a plugins directory, the
//! host started in-process (or as the real binary for the CLI and signal tests), and messages
//! followed until they are delivered, retried or dead-lettered.

mod api;
mod cli;
mod delivery;
mod reload;
mod scale_out;
mod webhook;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use courier::config::{Database, Settings};
use courier::host::{Host, HostOptions};
use courier::outbox_bridge::QueueView;
use courier_tests::postgres::TestDatabase;
use tempfile::TempDir;

/// A host running in this process, with its own plugins and data directories.
pub struct TestHost {
    pub host: Host,
    pub plugins: TempDir,
    _data: TempDir,
}

impl TestHost {
    /// Starts a host on `database` with `plugins` (name, component path) and `sidecars`
    /// (name, TOML text), and waits until every plugin is loaded.
    pub async fn start(
        database: &TestDatabase,
        plugins: &[(&str, &str)],
        sidecars: &[(&str, &str)],
    ) -> TestHost {
        let plugins_dir = tempfile::tempdir().unwrap();
        for (name, text) in sidecars {
            write_sidecar(plugins_dir.path(), name, text);
        }
        for (name, component) in plugins {
            install(plugins_dir.path(), name, component);
        }
        TestHost::start_in(database, plugins_dir, |_| {}).await
    }

    /// Starts a host on `database` serving the plugins already in `plugins`, with `adjust`
    /// applied to its settings.
    pub async fn start_in(
        database: &TestDatabase,
        plugins: TempDir,
        adjust: impl FnOnce(&mut Settings),
    ) -> TestHost {
        let data = tempfile::tempdir().unwrap();
        let mut settings = test_settings(database.url(), plugins.path(), data.path());
        adjust(&mut settings);
        let mut options = HostOptions::from_settings(&settings);
        options.reload_debounce = Duration::from_millis(50);
        let host = Host::start_with(settings, options)
            .await
            .unwrap_or_else(|error| panic!("the host did not start: {error:#}"));
        host.wait_for_initial_load().await;
        for status in host.registry().statuses() {
            assert!(
                status.active.is_some(),
                "plugin {} did not load: {:?}",
                status.name,
                status.error
            );
        }
        TestHost {
            host,
            plugins,
            _data: data,
        }
    }

    /// The statistics of `queue` (zeros when it does not exist yet).
    pub async fn queue(&self, queue: &str) -> QueueView {
        queue_view(self.host.outbox(), queue).await
    }

    /// Waits until `queue` has delivered `count` messages and has nothing pending or in
    /// flight, and returns its statistics.
    pub async fn wait_delivered(&self, queue: &str, count: i64) -> QueueView {
        wait_delivered(self.host.outbox(), queue, count).await
    }

    /// The value of a metric line of the host, such as
    /// `courier_calls_total{plugin="noop",queue="bench"}` (0 when absent).
    pub fn metric(&self, line_start: &str) -> f64 {
        metric_value(&self.host.metrics().encode(), line_start)
    }

    /// Waits until a metric line of the host reads `value`. Outcome counters move after the
    /// outcome is committed, so a test that saw the delivery in the database waits for them.
    pub async fn wait_metric(&self, line_start: &str, value: f64) {
        let what = format!("{line_start} = {value}");
        eventually(&what, || async {
            (self.metric(line_start) == value).then_some(())
        })
        .await
    }

    /// The API's base address.
    pub fn address(&self) -> std::net::SocketAddr {
        self.host.api_address()
    }

    /// Stops the host.
    pub async fn stop(self) {
        self.host.shutdown().await;
    }
}

/// Settings for a test host: the test database, port 0, short polls, the shared test cache.
pub fn test_settings(database_url: &str, plugins: &Path, data: &Path) -> Settings {
    let mut settings = Settings::with_defaults(Database::Url(database_url.to_owned()));
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.plugins_dir = plugins.to_owned();
    settings.data_dir = data.to_owned();
    settings.cache_dir = cache_dir();
    settings.poll_interval = Duration::from_millis(200);
    settings.shutdown_grace = Duration::from_secs(10);
    settings
}

/// The compiled-component cache all test hosts share, so each component compiles once.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("courier-host-test-cache")
}

/// Copies a component into the plugins directory as `NAME.wasm`, atomically (a rename), as
/// a deployment would.
pub fn install(dir: &Path, name: &str, component: &str) {
    let staging = dir.join(format!(".{name}.wasm.partial"));
    std::fs::copy(component, &staging).unwrap();
    std::fs::rename(&staging, dir.join(format!("{name}.wasm"))).unwrap();
}

/// Writes `NAME.toml`.
pub fn write_sidecar(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
}

/// A retry policy for tests: retry after 50 ms, at most `max_attempts` attempts.
pub fn quick_retry(max_attempts: u32) -> String {
    format!(
        "[retry]\npolicy = \"constant\"\ndelay = \"50ms\"\njitter = 0\nmax_attempts = {max_attempts}\n"
    )
}

/// Polls `check` until it returns `Some`, for at most a minute (a deadline that only a hang
/// reaches), and panics naming `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The statistics of `queue` (zeros when it does not exist yet).
pub async fn queue_view(outbox: &courier_outbox::Outbox, queue: &str) -> QueueView {
    courier::outbox_bridge::queue_stats(outbox)
        .await
        .unwrap()
        .into_iter()
        .find(|view| view.queue == queue)
        .unwrap_or(QueueView {
            queue: queue.to_owned(),
            pending: 0,
            due: 0,
            scheduled: 0,
            in_flight: 0,
            dead: 0,
            delivered: 0,
        })
}

/// Waits until `queue` delivered `count` and holds nothing pending or in flight.
pub async fn wait_delivered(outbox: &courier_outbox::Outbox, queue: &str, count: i64) -> QueueView {
    let what = format!("{count} deliveries in queue {queue}");
    eventually(&what, || async {
        let view = queue_view(outbox, queue).await;
        (view.delivered >= count && view.pending == 0 && view.in_flight == 0).then_some(view)
    })
    .await
}

/// Publishes `name` with `payload` through the SQL function, as an application would.
pub async fn publish_sql(
    database: &TestDatabase,
    name: &str,
    payload: serde_json::Value,
) -> uuid::Uuid {
    sqlx::query_scalar("select courier.publish($1, $2)")
        .bind(name)
        .bind(payload)
        .fetch_one(database.pool())
        .await
        .unwrap()
}

/// The value at the start of a metrics line (0 when absent).
pub fn metric_value(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The array under `key` of what `GET path` on the host's API answers (empty when absent).
pub async fn api_list(host: &TestHost, path: &str, key: &str) -> Vec<serde_json::Value> {
    let response = courier::api_client::send(host.address(), http::Method::GET, path, None, None)
        .await
        .unwrap();
    response.json()[key].as_array().cloned().unwrap_or_default()
}
