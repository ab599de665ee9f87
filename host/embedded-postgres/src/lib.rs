//! A private PostgreSQL cluster started from the Postgres binaries installed on the machine,
//! so that `courier run` and the tests need no database server set up beforehand.
//!
//! [`EmbeddedPostgres::start`] creates the cluster with `initdb` when its data directory is
//! new and reuses it otherwise, starts it with `pg_ctl` on `127.0.0.1` (and a unix socket
//! inside the data directory), waits until it accepts connections and stops it with
//! `pg_ctl stop -m fast` on [`EmbeddedPostgres::stop`] or when dropped. Postgres refuses to
//! run as root: when the current process is root, every command runs as the `postgres` user
//! through `runuser` and the data directory is handed to that user.

mod binaries;
mod settings;

use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub use binaries::{PostgresBinaries, find_binaries};
pub use settings::Settings;

/// The user Postgres runs as when the current process is root.
pub const POSTGRES_USER: &str = "postgres";

/// The file, inside the data directory, that receives the server's log.
pub const LOG_FILE: &str = "postgres.log";

/// The configuration file, inside the data directory, that holds [`Settings`]; it is
/// rewritten on every start and included from `postgresql.conf`.
pub const SETTINGS_FILE: &str = "courier.conf";

/// How to start the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// The TCP port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// The directory holding `initdb`, `pg_ctl` and `postgres`; `None` searches `PATH`, then
    /// `/usr/lib/postgresql/*/bin` (highest version first).
    pub bin_dir: Option<PathBuf>,
    /// Server settings written to the cluster's configuration on every start.
    pub settings: Settings,
    /// Skips `initdb`'s final fsync of the new cluster: faster, for throw-away clusters.
    pub initdb_no_sync: bool,
    /// How long `pg_ctl` may take to start or stop the server.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: None,
            bin_dir: None,
            settings: Settings::default(),
            initdb_no_sync: false,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Why the cluster could not be created, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Postgres server binaries were found.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) were found on PATH or under \
         /usr/lib/postgresql/*/bin; install the PostgreSQL server (for example \
         `apt-get install postgresql`) or give a database URL"
    )]
    BinariesNotFound,
    /// The directory given as `bin_dir` lacks one of the binaries.
    #[error("{dir} does not contain the PostgreSQL binary `{binary}`")]
    BinaryMissing {
        /// The directory searched.
        dir: PathBuf,
        /// The missing program.
        binary: &'static str,
    },
    /// The current process is root and there is no `postgres` user to run the server as.
    #[error(
        "Postgres refuses to run as root and there is no `{POSTGRES_USER}` user to run it as; \
         create that user (installing the `postgresql` package does) or run as another user"
    )]
    NoPostgresUser,
    /// The data directory exists, is not empty and is not a Postgres cluster.
    #[error("{0} is neither empty nor a PostgreSQL data directory")]
    NotADataDirectory(PathBuf),
    /// The data directory was made by another major version of Postgres.
    #[error(
        "{dir} holds a PostgreSQL {found} cluster but the binaries found are version {binaries}; \
         use the matching binaries or another data directory"
    )]
    VersionMismatch {
        /// The data directory.
        dir: PathBuf,
        /// The major version written in its `PG_VERSION`.
        found: String,
        /// The major version of the binaries.
        binaries: String,
    },
    /// The `postgres` user cannot reach the data directory.
    #[error(
        "the `{POSTGRES_USER}` user cannot write to {0}: every directory above it must be \
         searchable by that user (for example `chmod o+x` on each parent)"
    )]
    NotAccessible(PathBuf),
    /// The unix socket path inside the data directory would be too long.
    #[error(
        "the data directory path {0} is too long for a unix socket inside it (108 bytes at most); \
         use a shorter path"
    )]
    PathTooLong(PathBuf),
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A Postgres program could not be run or failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line, for the operator.
        command: String,
        /// Its exit status and output, and the tail of the server log when there is one.
        detail: String,
    },
}

/// A running private cluster. Stopped by [`EmbeddedPostgres::stop`] or when dropped.
pub struct EmbeddedPostgres {
    binaries: PostgresBinaries,
    data_dir: PathBuf,
    port: u16,
    run_as_postgres: bool,
    timeout: Duration,
    running: bool,
}

impl fmt::Debug for EmbeddedPostgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedPostgres")
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .field("running", &self.running)
            .finish()
    }
}

impl EmbeddedPostgres {
    /// Creates the cluster in `data_dir` if the directory is missing or empty, reuses it
    /// otherwise, and starts it. A server left running in that directory by an earlier,
    /// killed run is stopped first; a stale `postmaster.pid` is removed.
    ///
    /// Blocks until the server accepts connections (or `options.timeout` passes). On a
    /// failed start the error carries the tail of the server log.
    pub fn start(data_dir: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let binaries = match &options.bin_dir {
            Some(dir) => PostgresBinaries::in_dir(dir)?,
            None => find_binaries()?,
        };
        let run_as_postgres = current_user_is_root()?;
        if run_as_postgres && !postgres_user_exists() {
            return Err(Error::NoPostgresUser);
        }
        let data_dir = absolute_dir(data_dir.as_ref())?;
        let socket_path_len = data_dir.as_os_str().len() + "/.s.PGSQL.65535".len();
        if socket_path_len >= 108 {
            return Err(Error::PathTooLong(data_dir));
        }

        let mut cluster = Self {
            binaries,
            data_dir,
            port: 0,
            run_as_postgres,
            timeout: options.timeout,
            running: false,
        };
        cluster.prepare_data_dir(options.initdb_no_sync)?;
        cluster.stop_leftover_server()?;

        let attempts = if options.port.is_some() { 1 } else { 3 };
        let mut last_error = None;
        for _ in 0..attempts {
            cluster.port = match options.port {
                Some(port) => port,
                None => free_port()?,
            };
            match cluster.start_server(&options.settings) {
                Ok(()) => {
                    cluster.running = true;
                    tracing::info!(
                        data_dir = %cluster.data_dir.display(),
                        port = cluster.port,
                        "embedded Postgres started"
                    );
                    return Ok(cluster);
                }
                // Another process may have taken the free port between the probe and the
                // start: try another one.
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("at least one start attempt"))
    }

    /// The connection URL: `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The connection URL of another database in this cluster.
    pub fn database_url(&self, database: &str) -> String {
        format!(
            "postgres://{POSTGRES_USER}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    /// The binaries in use.
    pub fn binaries(&self) -> &PostgresBinaries {
        &self.binaries
    }

    /// The process id of the postmaster, read from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        read_postmaster_pid(&self.data_dir)
    }

    /// Stops the server (`pg_ctl stop -m fast`): open sessions are ended, the data is kept.
    pub fn stop(&mut self) -> Result<(), Error> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        self.pg_ctl_stop()?;
        tracing::info!(data_dir = %self.data_dir.display(), "embedded Postgres stopped");
        Ok(())
    }

    fn prepare_data_dir(&self, no_sync: bool) -> Result<(), Error> {
        let dir = &self.data_dir;
        let version_file = dir.join("PG_VERSION");
        if version_file.exists() {
            let found = fs::read_to_string(&version_file)
                .map_err(|source| io_error("reading", &version_file, source))?
                .trim()
                .to_owned();
            let binaries = self.binaries.major_version()?;
            if found != binaries {
                return Err(Error::VersionMismatch {
                    dir: dir.clone(),
                    found,
                    binaries,
                });
            }
            self.hand_over(dir)?;
            return self.check_accessible(dir);
        }
        if dir.exists() {
            let mut entries =
                fs::read_dir(dir).map_err(|source| io_error("reading", dir, source))?;
            if entries.next().is_some() {
                return Err(Error::NotADataDirectory(dir.clone()));
            }
        } else {
            fs::create_dir_all(dir).map_err(|source| io_error("creating", dir, source))?;
        }
        self.hand_over(dir)?;
        self.check_accessible(dir)?;

        let mut initdb = self.command(&self.binaries.initdb);
        initdb
            .arg("--pgdata")
            .arg(dir)
            .args(["--username", POSTGRES_USER])
            .args(["--auth", "trust"])
            .args(["--encoding", "UTF8"])
            .args(["--locale", "C"]);
        if no_sync {
            initdb.arg("--no-sync");
        }
        run(initdb, None)?;

        let conf = dir.join("postgresql.conf");
        let mut text =
            fs::read_to_string(&conf).map_err(|source| io_error("reading", &conf, source))?;
        text.push_str(&format!(
            "\n# Settings managed by Courier, rewritten on every start.\ninclude_if_exists = '{SETTINGS_FILE}'\n"
        ));
        fs::write(&conf, text).map_err(|source| io_error("writing", &conf, source))?;
        Ok(())
    }

    /// A server that an earlier run left behind (its process was killed) still owns the data
    /// directory: stop it. A `postmaster.pid` naming no live server of this directory is stale:
    /// remove it so the new server does not mistake an unrelated process for its predecessor.
    fn stop_leftover_server(&self) -> Result<(), Error> {
        let Some(pid) = read_postmaster_pid(&self.data_dir) else {
            return Ok(());
        };
        if serves_directory(pid, &self.data_dir) {
            tracing::warn!(
                pid,
                data_dir = %self.data_dir.display(),
                "stopping a Postgres server left running by an earlier run"
            );
            return self.pg_ctl_stop();
        }
        let pid_file = self.data_dir.join("postmaster.pid");
        tracing::info!(pid_file = %pid_file.display(), "removing a stale postmaster.pid");
        fs::remove_file(&pid_file).map_err(|source| io_error("removing", &pid_file, source))
    }

    fn start_server(&self, settings: &Settings) -> Result<(), Error> {
        let file = self.data_dir.join(SETTINGS_FILE);
        let text = settings.to_config(self.port, &self.data_dir);
        fs::write(&file, text).map_err(|source| io_error("writing", &file, source))?;
        self.hand_over(&file)?;

        let log = self.log_file();
        let mut pg_ctl = self.command(&self.binaries.pg_ctl);
        pg_ctl
            .arg("start")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .arg("--log")
            .arg(&log)
            .arg("--wait")
            .arg(format!("--timeout={}", self.timeout.as_secs().max(1)));
        run(pg_ctl, Some(&log))
    }

    fn pg_ctl_stop(&self) -> Result<(), Error> {
        let mut pg_ctl = self.command(&self.binaries.pg_ctl);
        pg_ctl
            .arg("stop")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .args(["--mode", "fast", "--wait"])
            .arg(format!("--timeout={}", self.timeout.as_secs().max(1)));
        run(pg_ctl, Some(&self.log_file()))
    }

    /// A command for a Postgres program, run as the `postgres` user when we are root.
    fn command(&self, program: &Path) -> Command {
        if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", POSTGRES_USER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// When the server runs as the `postgres` user, that user must reach the data directory.
    fn check_accessible(&self, dir: &Path) -> Result<(), Error> {
        if !self.run_as_postgres {
            return Ok(());
        }
        let reachable = self
            .command(Path::new("test"))
            .arg("-w")
            .arg(dir)
            .status()
            .is_ok_and(|status| status.success());
        if reachable {
            Ok(())
        } else {
            Err(Error::NotAccessible(dir.to_path_buf()))
        }
    }

    /// Gives `path` (recursively) to the `postgres` user when the server runs as that user.
    fn hand_over(&self, path: &Path) -> Result<(), Error> {
        if !self.run_as_postgres {
            return Ok(());
        }
        let mut chown = Command::new("chown");
        chown.arg("-R").arg(format!("{POSTGRES_USER}:")).arg(path);
        run(chown, None)
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::error!(%error, "could not stop the embedded Postgres");
        }
    }
}

fn current_user_is_root() -> Result<bool, Error> {
    // The owner of /proc/self is the effective user of this process.
    let metadata =
        fs::metadata("/proc/self").map_err(|source| io_error("reading", "/proc/self", source))?;
    Ok(metadata.uid() == 0)
}

fn postgres_user_exists() -> bool {
    fs::read_to_string("/etc/passwd")
        .map(|passwd| {
            passwd
                .lines()
                .any(|line| line.split(':').next() == Some(POSTGRES_USER))
        })
        .unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .arg(POSTGRES_USER)
            .output()
            .is_ok_and(|output| output.status.success())
}

fn absolute_dir(dir: &Path) -> Result<PathBuf, Error> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|source| io_error("reading the current directory", dir, source))?;
    Ok(cwd.join(dir))
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|source| io_error("binding a free port on", "127.0.0.1", source))?;
    let port = listener
        .local_addr()
        .map_err(|source| io_error("binding a free port on", "127.0.0.1", source))?
        .port();
    Ok(port)
}

fn read_postmaster_pid(data_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether process `pid` is a Postgres server working in `data_dir` (its current directory).
fn serves_directory(pid: u32, data_dir: &Path) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(cwd) = fs::read_link(proc_dir.join("cwd")) else {
        return false;
    };
    let same_dir = match (cwd.canonicalize(), data_dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let is_postgres = fs::read_to_string(proc_dir.join("comm"))
        .map(|comm| comm.trim() == "postgres")
        .unwrap_or(false);
    same_dir && is_postgres
}

fn io_error(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
    Error::Io {
        action,
        path: path.into(),
        source,
    }
}

/// Runs a command to completion; a failure carries its output and, if `log` is given, the
/// tail of that log file.
fn run(mut command: Command, log: Option<&Path>) -> Result<(), Error> {
    let line = describe(&command);
    let output = command.output().map_err(|error| Error::Command {
        command: line.clone(),
        detail: format!("could not run it: {error}"),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut detail = format!("{}{}", output.status, output_text(&output));
    if let Some(log) = log
        && let Some(tail) = log_tail(log, 30)
    {
        detail.push_str(&format!("\nlast lines of {}:\n{tail}", log.display()));
    }
    Err(Error::Command {
        command: line,
        detail,
    })
}

fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

fn output_text(output: &Output) -> String {
    let mut text = String::new();
    for stream in [&output.stdout, &output.stderr] {
        let stream = String::from_utf8_lossy(stream);
        let stream = stream.trim();
        if !stream.is_empty() {
            text.push('\n');
            text.push_str(stream);
        }
    }
    text
}

/// The last `lines` lines of a log file, if it can be read.
pub fn log_tail(path: &Path, lines: usize) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let tail = all[start..].join("\n");
    (!tail.is_empty()).then_some(tail)
}
