//! Courier's settings in one place: defaults → `courier.toml` → `COURIER_*` environment →
//! command-line flags, then validated once into [`Settings`].
//!
//! Every key, its environment variable and its flag:
//!
//! | key                | environment                                   | flag             | default          |
//! |--------------------|-----------------------------------------------|------------------|------------------|
//! | `database_url`     | `COURIER_DATABASE_URL`, then `DATABASE_URL`   | `--database-url` | embedded cluster |
//! | `data_dir`         | `COURIER_DATA_DIR`                            | `--data-dir`     | `.courier`       |
//! | `plugins_dir`      | `COURIER_PLUGINS_DIR`                         | `--plugins`      | `./plugins`      |
//! | `cache_dir`        | `COURIER_CACHE_DIR`                           |                  | `DATA_DIR/cache` |
//! | `listen`           | `COURIER_LISTEN`                              | `--listen`       | `127.0.0.1:8080` |
//! | `api_token`        | `COURIER_API_TOKEN`                           |                  | none             |
//! | `schema`           | `COURIER_SCHEMA`                              | `--schema`       | `courier`        |
//! | `log_format`       | `COURIER_LOG_FORMAT`                          | `--log-format`   | `human`          |
//! | `log`              | `COURIER_LOG`, then `RUST_LOG`                | `--log`          | `info,sqlx=warn` |
//! | `shutdown_grace`   | `COURIER_SHUTDOWN_GRACE`                      |                  | `30s`            |
//! | `poll_interval`    | `COURIER_POLL_INTERVAL`                       |                  | `1s`             |
//! | `lease`            | `COURIER_LEASE`                               |                  | `60s`            |
//! | `claim_batch_size` | `COURIER_CLAIM_BATCH_SIZE`                    |                  | `4000`           |
//! | `body_limit`       | `COURIER_BODY_LIMIT`                          |                  | `1MiB`           |
//!
//! The file is `--config-file PATH`, or `./courier.toml` when it exists. Unknown keys in the file
//! are refused; every invalid value is reported with its key and where it was set.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use courier_runtime::{CompilerCommand, RuntimeConfig};
use serde::Deserialize;

use crate::units::{parse_byte_size, parse_duration};

/// The configuration file read when `--config` is not given and it exists.
pub const DEFAULT_CONFIG_FILE: &str = "courier.toml";

/// Validated settings shared by `courier run` and every subcommand that talks to the database.
/// Their `Debug` form hides the API token and the database password.
#[derive(Clone)]
pub struct Settings {
    /// Where the outbox lives.
    pub database: Database,
    /// Courier's own files: the embedded cluster, the compiled-plugin cache.
    pub data_dir: PathBuf,
    /// The directory whose `*.wasm` files are the plugins.
    pub plugins_dir: PathBuf,
    /// Compiled plugins, keyed by content hash and engine version.
    pub cache_dir: PathBuf,
    /// The HTTP API's address.
    pub listen: SocketAddr,
    /// The bearer token every API route but `/healthz` requires.
    pub api_token: Option<String>,
    /// The Postgres schema holding Courier's tables and functions.
    pub schema: String,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// A `tracing` filter, for example `info` or `info,courier=debug`.
    pub log_filter: String,
    /// How long in-flight deliveries may run on shutdown before their leases are released.
    pub shutdown_grace: Duration,
    /// How often queues are polled when no notification arrives.
    pub poll_interval: Duration,
    /// The shortest lease a claim takes; longer when a plugin's timeout needs it.
    pub lease: Duration,
    /// The most deliveries claimed in one statement.
    pub claim_batch_size: u32,
    /// The largest HTTP request body accepted, in bytes.
    pub body_limit: usize,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database", &self.database)
            .field("data_dir", &self.data_dir)
            .field("plugins_dir", &self.plugins_dir)
            .field("cache_dir", &self.cache_dir)
            .field("listen", &self.listen)
            .field("api_token", &self.api_token.as_ref().map(|_| "***"))
            .field("schema", &self.schema)
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("poll_interval", &self.poll_interval)
            .field("lease", &self.lease)
            .field("claim_batch_size", &self.claim_batch_size)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

/// Where the outbox lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// An existing server.
    Url(String),
    /// A private cluster under `DATA_DIR/postgres`, started by Courier.
    Embedded,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Url(url) => write!(f, "Url({})", redact_url(url)),
            Database::Embedded => f.write_str("Embedded"),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event, for a terminal.
    Human,
    /// One JSON object per line, for a log collector.
    Json,
}

impl Settings {
    /// The plugin runtime's configuration: compiled plugins cached in `cache_dir`, compiled
    /// by `compiler` in a process of its own (`None`: in this one). Every runtime that shares
    /// the cache is built from this, so that one's entries have the key the others look for.
    pub fn runtime_config(&self, compiler: Option<CompilerCommand>) -> RuntimeConfig {
        RuntimeConfig {
            cache_dir: Some(self.cache_dir.clone()),
            compiler,
            ..RuntimeConfig::default()
        }
    }

    /// The settings with every default and the given database.
    pub fn with_defaults(database: Database) -> Settings {
        let data_dir = PathBuf::from(".courier");
        Settings {
            database,
            cache_dir: data_dir.join("cache"),
            data_dir,
            plugins_dir: PathBuf::from("plugins"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_token: None,
            schema: "courier".to_owned(),
            log_format: LogFormat::Human,
            log_filter: "info,sqlx=warn".to_owned(),
            shutdown_grace: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            claim_batch_size: 4000,
            body_limit: 1 << 20,
        }
    }

    /// Reads the configuration file, the process environment and the flags, and validates
    /// them.
    pub fn load(flags: &ConfigArgs) -> Result<Settings, ConfigError> {
        let file = match &flags.config {
            Some(path) => Some(read_file(path)?),
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                Some(read_file(Path::new(DEFAULT_CONFIG_FILE))?)
            }
            None => None,
        };
        Settings::from_sources(file.as_ref(), |name| std::env::var(name).ok(), flags)
    }

    /// Layers a parsed file, an environment and the flags over the defaults. `env` looks up
    /// one variable.
    pub fn from_sources(
        file: Option<&ConfigFile>,
        env: impl Fn(&str) -> Option<String>,
        flags: &ConfigArgs,
    ) -> Result<Settings, ConfigError> {
        let mut layered = Layered::default();
        if let Some(file) = file {
            layered.apply_file(file);
        }
        layered.apply_env(&env);
        layered.apply_flags(flags);
        layered.validate()
    }

    /// The database URL with its password hidden, for messages.
    pub fn database_description(&self) -> String {
        match &self.database {
            Database::Url(url) => redact_url(url),
            Database::Embedded => format!(
                "the embedded cluster under {}",
                self.data_dir.join("postgres").display()
            ),
        }
    }
}

/// The flags shared by every subcommand that reads the configuration. Flattened into the
/// command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file (default: ./courier.toml when it exists). Not `--config`: that is
    /// `courier test`'s plugin configuration (`--config KEY=VALUE`).
    #[arg(long = "config-file", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Postgres URL; without one, `courier run` starts an embedded cluster under the data dir.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Courier's own files: embedded cluster, compiled-plugin cache (default: .courier).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The plugins directory (default: ./plugins).
    #[arg(long = "plugins", global = true, value_name = "DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// The HTTP API's address (default: 127.0.0.1:8080).
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The Postgres schema (default: courier).
    #[arg(long, global = true, value_name = "NAME")]
    pub schema: Option<String>,
    /// Log format: human or json (default: human).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, for example `info,courier=debug` (default: info).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
}

/// The configuration file, as written. Every key is optional; unknown keys are refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(skip)]
    path: PathBuf,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    plugins_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    listen: Option<String>,
    api_token: Option<String>,
    schema: Option<String>,
    log_format: Option<String>,
    log: Option<String>,
    shutdown_grace: Option<String>,
    poll_interval: Option<String>,
    lease: Option<String>,
    claim_batch_size: Option<TextOrNumber>,
    body_limit: Option<TextOrNumber>,
}

impl ConfigFile {
    /// Parses the text of a configuration file read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        let mut file: ConfigFile = toml::from_str(text).map_err(|error| ConfigError::File {
            path: path.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        })?;
        file.path = path.to_owned();
        Ok(file)
    }
}

/// A value the file may write as a string or as a number: `body_limit = "1MiB"` or
/// `body_limit = 1048576`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TextOrNumber {
    Text(String),
    Number(u64),
}

impl TextOrNumber {
    fn into_text(self) -> String {
        match self {
            TextOrNumber::Text(text) => text,
            TextOrNumber::Number(number) => number.to_string(),
        }
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has an unknown key.
    #[error("invalid configuration file {path}: {message}")]
    File { path: PathBuf, message: String },
    /// A key has a value Courier cannot use.
    #[error("invalid `{key}` (set by {origin}): {message}")]
    Invalid {
        key: &'static str,
        origin: Origin,
        message: String,
    },
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A key of the configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(name) => write!(f, "the environment variable {name}"),
            Origin::Flag(flag) => write!(f, "the flag {flag}"),
        }
    }
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    ConfigFile::parse(path, &text)
}

/// One value and where it was set.
#[derive(Debug, Clone)]
struct Value {
    text: String,
    origin: Origin,
}

/// The values of every layer merged, the later layer winning, before validation.
#[derive(Debug, Default)]
struct Layered {
    database_url: Option<Value>,
    data_dir: Option<Value>,
    plugins_dir: Option<Value>,
    cache_dir: Option<Value>,
    listen: Option<Value>,
    api_token: Option<Value>,
    schema: Option<Value>,
    log_format: Option<Value>,
    log: Option<Value>,
    shutdown_grace: Option<Value>,
    poll_interval: Option<Value>,
    lease: Option<Value>,
    claim_batch_size: Option<Value>,
    body_limit: Option<Value>,
}

fn set(slot: &mut Option<Value>, text: Option<String>, origin: impl FnOnce() -> Origin) {
    if let Some(text) = text {
        *slot = Some(Value {
            text,
            origin: origin(),
        });
    }
}

fn path_text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref()
        .map(|path| path.to_string_lossy().into_owned())
}

impl Layered {
    fn apply_file(&mut self, file: &ConfigFile) {
        let origin = || Origin::File(file.path.clone());
        set(&mut self.database_url, file.database_url.clone(), origin);
        set(&mut self.data_dir, path_text(&file.data_dir), origin);
        set(&mut self.plugins_dir, path_text(&file.plugins_dir), origin);
        set(&mut self.cache_dir, path_text(&file.cache_dir), origin);
        set(&mut self.listen, file.listen.clone(), origin);
        set(&mut self.api_token, file.api_token.clone(), origin);
        set(&mut self.schema, file.schema.clone(), origin);
        set(&mut self.log_format, file.log_format.clone(), origin);
        set(&mut self.log, file.log.clone(), origin);
        set(
            &mut self.shutdown_grace,
            file.shutdown_grace.clone(),
            origin,
        );
        set(&mut self.poll_interval, file.poll_interval.clone(), origin);
        set(&mut self.lease, file.lease.clone(), origin);
        let batch = file.claim_batch_size.clone().map(TextOrNumber::into_text);
        set(&mut self.claim_batch_size, batch, origin);
        let body_limit = file.body_limit.clone().map(TextOrNumber::into_text);
        set(&mut self.body_limit, body_limit, origin);
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        let from = |slot: &mut Option<Value>, name: &'static str| {
            set(slot, env(name).filter(|v| !v.is_empty()), || {
                Origin::Env(name)
            });
        };
        // The generic names first, so that the Courier-specific ones win.
        from(&mut self.database_url, "DATABASE_URL");
        from(&mut self.database_url, "COURIER_DATABASE_URL");
        from(&mut self.data_dir, "COURIER_DATA_DIR");
        from(&mut self.plugins_dir, "COURIER_PLUGINS_DIR");
        from(&mut self.cache_dir, "COURIER_CACHE_DIR");
        from(&mut self.listen, "COURIER_LISTEN");
        from(&mut self.api_token, "COURIER_API_TOKEN");
        from(&mut self.schema, "COURIER_SCHEMA");
        from(&mut self.log_format, "COURIER_LOG_FORMAT");
        from(&mut self.log, "RUST_LOG");
        from(&mut self.log, "COURIER_LOG");
        from(&mut self.shutdown_grace, "COURIER_SHUTDOWN_GRACE");
        from(&mut self.poll_interval, "COURIER_POLL_INTERVAL");
        from(&mut self.lease, "COURIER_LEASE");
        from(&mut self.claim_batch_size, "COURIER_CLAIM_BATCH_SIZE");
        from(&mut self.body_limit, "COURIER_BODY_LIMIT");
    }

    fn apply_flags(&mut self, flags: &ConfigArgs) {
        set(&mut self.database_url, flags.database_url.clone(), || {
            Origin::Flag("--database-url")
        });
        set(&mut self.data_dir, path_text(&flags.data_dir), || {
            Origin::Flag("--data-dir")
        });
        set(&mut self.plugins_dir, path_text(&flags.plugins_dir), || {
            Origin::Flag("--plugins")
        });
        set(&mut self.listen, flags.listen.clone(), || {
            Origin::Flag("--listen")
        });
        set(&mut self.schema, flags.schema.clone(), || {
            Origin::Flag("--schema")
        });
        set(&mut self.log_format, flags.log_format.clone(), || {
            Origin::Flag("--log-format")
        });
        set(&mut self.log, flags.log.clone(), || Origin::Flag("--log"));
    }

    fn validate(self) -> Result<Settings, ConfigError> {
        let mut settings = Settings::with_defaults(Database::Embedded);
        if let Some(value) = self.database_url {
            let url = check(value, "database_url", |text| {
                if text.starts_with("postgres://") || text.starts_with("postgresql://") {
                    Ok(text.to_owned())
                } else {
                    Err("expected a URL starting with postgres:// or postgresql://".to_owned())
                }
            })?;
            settings.database = Database::Url(url);
        }
        if let Some(value) = self.data_dir {
            settings.data_dir = check(value, "data_dir", non_empty_path)?;
            settings.cache_dir = settings.data_dir.join("cache");
        }
        if let Some(value) = self.plugins_dir {
            settings.plugins_dir = check(value, "plugins_dir", non_empty_path)?;
        }
        if let Some(value) = self.cache_dir {
            settings.cache_dir = check(value, "cache_dir", non_empty_path)?;
        }
        if let Some(value) = self.listen {
            settings.listen = check(value, "listen", |text| {
                text.parse::<SocketAddr>().map_err(|_| {
                    format!("`{text}` is not an address and port, such as 127.0.0.1:8080")
                })
            })?;
        }
        if let Some(value) = self.api_token {
            settings.api_token = Some(check(value, "api_token", |text| {
                if text.trim().len() < 16 {
                    Err("use a token of at least 16 characters".to_owned())
                } else {
                    Ok(text.trim().to_owned())
                }
            })?);
        }
        if let Some(value) = self.schema {
            settings.schema = check(value, "schema", |text| {
                let valid = text.len() <= 63
                    && text.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && text
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if valid {
                    Ok(text.to_owned())
                } else {
                    Err(format!(
                        "`{text}` is not a schema name: use lowercase letters, digits and _, starting with a letter"
                    ))
                }
            })?;
        }
        if let Some(value) = self.log_format {
            settings.log_format = check(value, "log_format", |text| match text {
                "human" => Ok(LogFormat::Human),
                "json" => Ok(LogFormat::Json),
                other => Err(format!("`{other}` is not a log format: use human or json")),
            })?;
        }
        if let Some(value) = self.log {
            settings.log_filter = check(value, "log", |text| {
                tracing_subscriber::EnvFilter::builder()
                    .parse(text)
                    .map(|_| text.to_owned())
                    .map_err(|error| format!("`{text}` is not a log filter: {error}"))
            })?;
        }
        if let Some(value) = self.shutdown_grace {
            settings.shutdown_grace = check(value, "shutdown_grace", parse_duration)?;
        }
        if let Some(value) = self.poll_interval {
            settings.poll_interval = check(value, "poll_interval", |text| {
                let interval = parse_duration(text)?;
                if interval < Duration::from_millis(10) {
                    return Err("poll at most every 10ms".to_owned());
                }
                Ok(interval)
            })?;
        }
        if let Some(value) = self.lease {
            settings.lease = check(value, "lease", |text| {
                let lease = parse_duration(text)?;
                if lease < Duration::from_secs(1) {
                    return Err("a lease must last at least 1s".to_owned());
                }
                Ok(lease)
            })?;
        }
        if let Some(value) = self.claim_batch_size {
            settings.claim_batch_size = check(value, "claim_batch_size", |text| {
                match text.trim().parse::<u32>() {
                    Ok(size) if (1..=100_000).contains(&size) => Ok(size),
                    _ => Err(format!("`{text}` is not a number from 1 to 100000")),
                }
            })?;
        }
        if let Some(value) = self.body_limit {
            settings.body_limit = check(value, "body_limit", |text| {
                let size = parse_byte_size(text)?;
                match usize::try_from(size) {
                    Ok(size) if size >= 1024 => Ok(size),
                    _ => Err("use a limit of at least 1KiB".to_owned()),
                }
            })?;
        }
        Ok(settings)
    }
}

fn check<T>(
    value: Value,
    key: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    parse(&value.text).map_err(|message| ConfigError::Invalid {
        key,
        origin: value.origin,
        message,
    })
}

fn non_empty_path(text: &str) -> Result<PathBuf, String> {
    if text.trim().is_empty() {
        Err("the path is empty".to_owned())
    } else {
        Ok(PathBuf::from(text))
    }
}

/// Hides the password of a database URL.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(file: &str, env: &[(&str, &str)], flags: ConfigArgs) -> Result<Settings, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let file = ConfigFile::parse(Path::new("courier.toml"), file).map_err(|e| e.to_string())?;
        Settings::from_sources(Some(&file), |name| env.get(name).cloned(), &flags)
            .map_err(|e| e.to_string())
    }

    fn check_error(file: &str, env: &[(&str, &str)], expected: &[&str]) {
        let error = load(file, env, ConfigArgs::default()).unwrap_err();
        for part in expected {
            assert!(error.contains(part), "`{error}` should contain `{part}`");
        }
    }

    #[test]
    fn defaults() {
        let settings = load("", &[], ConfigArgs::default()).unwrap();
        assert_eq!(settings.database, Database::Embedded);
        assert_eq!(settings.data_dir, PathBuf::from(".courier"));
        assert_eq!(settings.cache_dir, PathBuf::from(".courier/cache"));
        assert_eq!(settings.plugins_dir, PathBuf::from("plugins"));
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.schema, "courier");
        assert_eq!(settings.log_format, LogFormat::Human);
        assert_eq!(settings.body_limit, 1 << 20);
        assert_eq!(settings.api_token, None);
    }

    #[test]
    fn later_layers_win() {
        let file = "listen = \"127.0.0.1:9000\"\nschema = \"from_file\"\nclaim_batch_size = 10\ndata_dir = \"/srv/courier\"";
        let env = [
            ("COURIER_SCHEMA", "from_env"),
            ("COURIER_LISTEN", "127.0.0.1:9001"),
        ];
        let flags = ConfigArgs {
            listen: Some("127.0.0.1:9002".to_owned()),
            ..ConfigArgs::default()
        };
        let settings = load(file, &env, flags).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:9002");
        assert_eq!(settings.schema, "from_env");
        assert_eq!(settings.claim_batch_size, 10);
        assert_eq!(settings.cache_dir, PathBuf::from("/srv/courier/cache"));
    }

    #[test]
    fn courier_database_url_beats_database_url() {
        let env = [
            ("DATABASE_URL", "postgres://generic/db"),
            ("COURIER_DATABASE_URL", "postgres://courier/db"),
        ];
        let settings = load("", &env, ConfigArgs::default()).unwrap();
        assert_eq!(
            settings.database,
            Database::Url("postgres://courier/db".to_owned())
        );
        let settings = load("", &env[..1], ConfigArgs::default()).unwrap();
        assert_eq!(
            settings.database,
            Database::Url("postgres://generic/db".to_owned())
        );
    }

    #[test]
    fn units_in_files_and_environment() {
        let file = "body_limit = \"2MiB\"\nshutdown_grace = \"5s\"";
        let env = [("COURIER_POLL_INTERVAL", "250ms"), ("COURIER_LEASE", "2m")];
        let settings = load(file, &env, ConfigArgs::default()).unwrap();
        assert_eq!(settings.body_limit, 2 << 20);
        assert_eq!(settings.shutdown_grace, Duration::from_secs(5));
        assert_eq!(settings.poll_interval, Duration::from_millis(250));
        assert_eq!(settings.lease, Duration::from_secs(120));
    }

    #[test]
    fn errors_name_the_key_and_where_it_was_set() {
        check_error(
            "lisen = \"x\"",
            &[],
            &["courier.toml", "unknown field `lisen`"],
        );
        check_error(
            "listen = \"nowhere\"",
            &[],
            &["`listen`", "courier.toml", "nowhere"],
        );
        check_error(
            "",
            &[("COURIER_LISTEN", "x")],
            &["`listen`", "COURIER_LISTEN"],
        );
        check_error(
            "",
            &[("COURIER_LOG_FORMAT", "xml")],
            &["`log_format`", "human or json"],
        );
        check_error(
            "",
            &[("COURIER_POLL_INTERVAL", "5")],
            &["`poll_interval`", "30s"],
        );
        check_error(
            "",
            &[("COURIER_LEASE", "10ms")],
            &["`lease`", "at least 1s"],
        );
        check_error(
            "claim_batch_size = 0",
            &[],
            &["`claim_batch_size`", "1 to 100000"],
        );
        check_error("body_limit = \"1 parsec\"", &[], &["`body_limit`"]);
        check_error("schema = \"Drop Table\"", &[], &["`schema`", "lowercase"]);
        check_error(
            "database_url = \"mysql://x\"",
            &[],
            &["`database_url`", "postgres://"],
        );
        check_error(
            "",
            &[("COURIER_API_TOKEN", "short")],
            &["`api_token`", "16 characters"],
        );
        check_error("listen = 8080", &[], &["courier.toml", "listen"]);
    }

    #[test]
    fn passwords_are_hidden_in_descriptions() {
        assert_eq!(
            redact_url("postgres://courier:secret@localhost:5432/db"),
            "postgres://courier:***@localhost:5432/db"
        );
        assert_eq!(
            redact_url("postgres://localhost/db"),
            "postgres://localhost/db"
        );
        let mut settings = Settings::with_defaults(Database::Url("postgres://a:b@h/d".to_owned()));
        settings.api_token = Some("secret-token-0123456789".to_owned());
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains(":b@") && !debug.contains("secret-token"),
            "{debug}"
        );
    }
}
