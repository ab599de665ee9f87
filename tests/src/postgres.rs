//! A real Postgres for the tests: one private cluster shared by the whole test process,
//! started on first use, and a fresh database per test, so tests run in parallel without
//! seeing each other's rows.
//!
//! With `COURIER_TEST_DATABASE_URL` set (a URL whose user may create databases), the test
//! databases are created on that server instead and no cluster is started.
//!
//! The private cluster lives in a temporary directory and is stopped, and the directory
//! removed, when the test process exits: normally through an `atexit` handler, and if the
//! process is killed, by a small watchdog process that notices its parent is gone.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use courier_embedded_postgres::{EmbeddedPostgres, Options, Settings};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// The environment variable naming an existing server for the tests.
pub const DATABASE_URL_VARIABLE: &str = "COURIER_TEST_DATABASE_URL";

/// Connections per test database pool.
const POOL_SIZE: u32 = 16;

/// A database of its own for one test, dropped (best effort) when this value is dropped.
pub struct TestDatabase {
    pool: PgPool,
    url: String,
    name: String,
    admin_url: String,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("url", &self.url)
            .finish()
    }
}

impl TestDatabase {
    /// Creates a database with a random name on the shared test server (starting it if this
    /// is the first database of the process) and connects a pool to it.
    ///
    /// Panics with the reason when the server cannot be started or reached: a test cannot
    /// run without it.
    pub async fn new() -> Self {
        let admin_url = server_url();
        let name = format!("courier_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|error| {
                panic!("cannot connect to the test server {admin_url}: {error}")
            });
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("cannot create the test database {name}: {error}"));
        let _ = admin.close().await;

        let options: PgConnectOptions = admin_url
            .parse::<PgConnectOptions>()
            .unwrap_or_else(|error| panic!("invalid test server URL {admin_url}: {error}"))
            .database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to the test database {name}: {error}"));
        Self {
            pool,
            url,
            name,
            admin_url,
        }
    }

    /// A pool of connections to this database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection of its own (outside the pool), for tests that need one.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.url))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Dropping is async; do it on a thread with a runtime of its own so it works whatever
        // runtime (if any) drops this value.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        });
        let _ = dropped.join();
    }
}

/// The admin URL of the shared test server: `COURIER_TEST_DATABASE_URL`, or the private
/// cluster of this process, started on the first call.
pub fn server_url() -> String {
    if let Ok(url) = std::env::var(DATABASE_URL_VARIABLE)
        && !url.is_empty()
    {
        return url;
    }
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(start_private_cluster)
        .clone()
        .unwrap_or_else(|error| panic!("cannot start the test Postgres: {error}"))
}

/// The private cluster of this process, taken and dropped at process exit.
static PRIVATE_CLUSTER: Mutex<Option<PrivateCluster>> = Mutex::new(None);

fn start_private_cluster() -> Result<String, String> {
    let cluster = PrivateCluster::start(Settings::throwaway())?;
    let url = cluster.url();
    *PRIVATE_CLUSTER
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(cluster);
    register_exit_handler();
    Ok(url)
}

/// A Postgres cluster in a temporary directory of its own, for tests and benchmarks: stopped
/// and removed when dropped, and also if this process is killed (a watchdog process notices
/// and cleans up).
pub struct PrivateCluster {
    // Dropped in this order: the server stops before its directory goes.
    server: EmbeddedPostgres,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for PrivateCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateCluster")
            .field("url", &self.server.url())
            .finish()
    }
}

impl PrivateCluster {
    /// Creates and starts a cluster with `settings` (see [`Settings::throwaway`] for tests,
    /// [`Settings::default`] for durable benchmarks).
    pub fn start(settings: Settings) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("courier-test-pg-")
            .tempdir()
            .map_err(|error| format!("cannot create a temporary directory: {error}"))?;
        // When the server runs as the postgres user, it must be able to enter this directory.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .map_err(|error| format!("cannot open up {}: {error}", dir.path().display()))?;
        let options = Options {
            settings,
            initdb_no_sync: true,
            ..Options::default()
        };
        let server = EmbeddedPostgres::start(dir.path().join("data"), options)
            .map_err(|error| error.to_string())?;
        if let Some(pid) = server.postmaster_pid() {
            spawn_watchdog(pid, dir.path());
        }
        Ok(Self { server, _dir: dir })
    }

    /// The admin URL (`postgres` user, `postgres` database).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The server.
    pub fn server(&self) -> &EmbeddedPostgres {
        &self.server
    }
}

extern "C" fn stop_private_cluster() {
    let taken = PRIVATE_CLUSTER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    // Dropping stops the server (pg_ctl stop -m fast), then removes the directory.
    drop(taken);
}

#[expect(
    unsafe_code,
    reason = "atexit is the one hook std::process::exit runs; the handler only stops a server"
)]
fn register_exit_handler() {
    // SAFETY: `stop_private_cluster` is an `extern "C" fn()` that never unwinds across the
    // FFI boundary (it only takes a mutex and drops values whose Drop does not panic).
    let status = unsafe { libc::atexit(stop_private_cluster) };
    if status != 0 {
        eprintln!("warning: cannot register the test Postgres shutdown at exit");
    }
}

/// A detached shell that waits for this process to end, however it ends, then stops the
/// postmaster (SIGINT: fast shutdown) and removes the cluster's directory. After a normal
/// exit it finds both already gone.
fn spawn_watchdog(postmaster_pid: u32, dir: &std::path::Path) {
    let script = r#"
        trap '' INT TERM HUP
        while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
        if kill -INT "$2" 2>/dev/null; then
            i=0
            while kill -0 "$2" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        fi
        rm -rf "$3"
    "#;
    let spawned = Command::new("setsid")
        .args(["sh", "-c", script, "courier-test-pg-watchdog"])
        .arg(std::process::id().to_string())
        .arg(postmaster_pid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(error) = spawned {
        eprintln!("warning: cannot start the test Postgres watchdog: {error}");
    }
}
