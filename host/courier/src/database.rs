//! Where the outbox lives: an existing server (`database_url`), or the embedded cluster under
//! `DATA_DIR/postgres`, started by `courier run` and found (or started) by the other commands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use courier_embedded_postgres::EmbeddedPostgres;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::{Database, Settings, redact_url};

/// An open connection pool, and the embedded cluster behind it when Courier started one.
pub struct Connection {
    /// The pool.
    pub pool: PgPool,
    /// The URL connected to.
    pub url: String,
    embedded: Option<EmbeddedPostgres>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("url", &redact_url(&self.url))
            .field("embedded", &self.embedded.is_some())
            .finish()
    }
}

/// The database could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The embedded cluster could not be started.
    #[error("cannot start the embedded Postgres under {dir}: {source}")]
    Embedded {
        dir: PathBuf,
        #[source]
        source: courier_embedded_postgres::Error,
    },
    /// The server did not accept a connection.
    #[error("cannot connect to the database at {url}: {source}{hint}")]
    Connect {
        url: String,
        hint: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

/// How the pool is sized.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    pub max_connections: u32,
}

impl PoolSize {
    /// For `courier run`: claims, completions, the API and the listener.
    pub const HOST: PoolSize = PoolSize {
        max_connections: 16,
    };
    /// For a one-shot command.
    pub const COMMAND: PoolSize = PoolSize { max_connections: 2 };
}

/// The embedded cluster's directory.
pub fn embedded_dir(settings: &Settings) -> PathBuf {
    settings.data_dir.join("postgres")
}

impl Connection {
    /// Connects for `courier run`: starts the embedded cluster when no URL is configured.
    pub async fn open_for_host(
        settings: &Settings,
        size: PoolSize,
    ) -> Result<Connection, DatabaseError> {
        match &settings.database {
            Database::Url(url) => Connection::connect(url.clone(), size, None).await,
            Database::Embedded => {
                let cluster = start_embedded(&embedded_dir(settings)).await?;
                let url = cluster.url();
                Connection::connect(url, size, Some(cluster)).await
            }
        }
    }

    /// Connects for a one-shot command: to the URL, or to the embedded cluster a running
    /// `courier run` started, or else starts the embedded cluster for the command's duration.
    pub async fn open_for_command(settings: &Settings) -> Result<Connection, DatabaseError> {
        match &settings.database {
            Database::Url(url) => Connection::connect(url.clone(), PoolSize::COMMAND, None).await,
            Database::Embedded => {
                let dir = embedded_dir(settings);
                if let Some(port) = running_cluster_port(&dir) {
                    let url = format!(
                        "postgres://{}@127.0.0.1:{port}/postgres",
                        courier_embedded_postgres::POSTGRES_USER
                    );
                    return Connection::connect(url, PoolSize::COMMAND, None).await;
                }
                tracing::info!(dir = %dir.display(), "no host is running the embedded Postgres; starting it for this command");
                let cluster = start_embedded(&dir).await?;
                let url = cluster.url();
                Connection::connect(url, PoolSize::COMMAND, Some(cluster)).await
            }
        }
    }

    async fn connect(
        url: String,
        size: PoolSize,
        embedded: Option<EmbeddedPostgres>,
    ) -> Result<Connection, DatabaseError> {
        let connect_error = |source| DatabaseError::Connect {
            url: redact_url(&url),
            hint: if embedded.is_some() {
                ""
            } else {
                " (is the server running? Without a database URL, `courier run` starts an embedded Postgres under the data directory)"
            },
            source,
        };
        let options = host_connect_options(&url).map_err(connect_error)?;
        let pool = PgPoolOptions::new()
            .max_connections(size.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        Ok(Connection {
            pool,
            url,
            embedded,
        })
    }

    /// Whether Courier started the cluster behind this connection.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Closes the pool and stops the embedded cluster Courier started, if any.
    pub async fn close(mut self) {
        self.pool.close().await;
        if let Some(mut cluster) = self.embedded.take() {
            let stopped = tokio::task::spawn_blocking(move || cluster.stop()).await;
            match stopped {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "stopping the embedded Postgres failed"),
                Err(error) => tracing::error!(%error, "stopping the embedded Postgres failed"),
            }
        }
    }
}

async fn start_embedded(dir: &Path) -> Result<EmbeddedPostgres, DatabaseError> {
    let owned = dir.to_owned();
    let result = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(owned.parent().unwrap_or(Path::new("."))).ok();
        EmbeddedPostgres::start(&owned, courier_embedded_postgres::Options::default())
    })
    .await
    .expect("starting the embedded Postgres does not panic");
    result.map_err(|source| DatabaseError::Embedded {
        dir: dir.to_owned(),
        source,
    })
}

/// The port of a cluster running in `dir`, from its `postmaster.pid` (whose fourth line is the
/// port), when its postmaster process is alive.
pub fn running_cluster_port(dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    let port: u16 = lines.nth(2)?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(port)
}

/// How Courier connects to `url`: as the URL says, with JIT compilation off. Every statement
/// the host runs is short, and a server's default `jit = on` compiles any statement whose
/// estimated cost crosses `jit_above_cost`: the queue statistics behind `courier queues` and
/// `/metrics` spent half a second compiling, for a millisecond of work, when the planner
/// overestimated a table it had not analysed yet.
pub fn host_connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(url.parse::<PgConnectOptions>()?.options([("jit", "off")]))
}
