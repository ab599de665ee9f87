//! `courier bench`: measures end-to-end delivery on this machine — publish into the Postgres
//! outbox, claim, call a real WebAssembly plugin, record the outcome — with the same host code
//! `courier run` uses, and reports throughput, publish → handler-start latency, CPU and memory.
//!
//! - `--mode drain`: publish `--messages` in batches, then activate the plugins and time until
//!   every copy is delivered.
//! - `--mode steady`: publish at `--rate` for `--duration` while delivering; the dispatcher's
//!   call probe timestamps every delivery just before its plugin call.
//! - `--mode idle`: no traffic for `--duration`: what an idle host costs.
//!
//! `--rounds N` (and `--plugin` given more than once) repeats the run, alternating between the
//! plugins, and reports every run and each plugin's median and ratio to the first.
//!
//! The database is a throw-away embedded cluster (durable settings: fsync and synchronous
//! commit on) unless `--database-url` is given; then the run uses a schema of its own, dropped
//! at the end. The plugin is the built-in no-op Rust component unless `--plugin` is given.

mod compare;
mod latency;
mod report;
mod usage;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use courier_embedded_postgres::EmbeddedPostgres;
use courier_outbox::{NewMessage, Outbox, OutboxOptions, Route};
use courier_runtime::{CompilerCommand, PluginSettings, Runtime, Subscription};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub use compare::{Comparison, PluginSummary, Spread};
pub use latency::{Percentiles, StartLatencies};
pub use report::Report;
pub use usage::{ProcessUsage, postgres_cpu, thread_cpu};

use crate::config::{Database, Settings};
use crate::host::{Host, HostOptions};
use crate::metrics::PluginQueueMetrics;
use crate::registry::ReloadResult;

/// The built-in no-op handler (`plugins/noop`: queue `bench` ← `bench.noop`, answers ok at
/// once), built from source by this crate's build script.
pub const NOOP_COMPONENT: &[u8] = include_bytes!(env!("COURIER_NOOP_COMPONENT"));

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Publish `--messages`, then deliver them all as fast as possible.
    Drain,
    /// Publish at `--rate` for `--duration` while delivering; latency percentiles.
    Steady,
    /// No traffic for `--duration`: the idle cost of the hosts.
    Idle,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Drain => "drain",
            Mode::Steady => "steady",
            Mode::Idle => "idle",
        }
    }
}

/// Arguments of `courier bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// drain: publish --messages, then deliver them all; steady: publish at --rate for
    /// --duration while delivering; idle: no traffic for --duration.
    #[arg(long, value_enum, default_value_t = Mode::Drain)]
    pub mode: Mode,
    /// Messages to publish (drain).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub messages: u64,
    /// Messages published per second (steady).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rate: u64,
    /// How long to publish (steady) or to stay idle (idle), for example `10s`.
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    pub duration: Duration,
    /// The plugin component to deliver to (default: the built-in no-op Rust handler). Its
    /// first subscription's topic and event are published. Give it more than once to compare
    /// plugins: the runs alternate between them, and each is compared with the first.
    #[arg(long, value_name = "PATH")]
    pub plugin: Vec<PathBuf>,
    /// Runs per plugin, alternating between the plugins, each on a fresh database; the report
    /// gives every run and, per plugin, the median and the spread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Queues subscribed to the topic: every message is copied into each (one plugin copy per
    /// queue).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub fanout: u32,
    /// Size of each payload in bytes (a JSON object `{"pad": "xxx..."}`, at least 10 bytes).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(10..=1_048_576))]
    pub payload_bytes: u64,
    /// The payload of every message, as JSON text, instead of a `--payload-bytes` padding
    /// object (for a plugin that expects fields, for example `{"email": "ada@example.com"}`).
    #[arg(long, value_name = "JSON", conflicts_with = "payload_bytes")]
    pub payload: Option<String>,
    /// Messages per publish statement (drain), or the most one statement carries (steady).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// The most deliveries one claim takes (default: the `claim_batch_size` setting).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub claim_batch_size: Option<u32>,
    /// Concurrent plugin calls per plugin and host (the sidecar's `limits.concurrency`).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Hosts (dispatchers, each with its own runtime and pool) on the one database, in this
    /// process.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub hosts: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// Parses the arguments that follow `courier bench`, as the command line does.
    pub fn parse<I, T>(args: I) -> Result<BenchArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{Args as _, FromArgMatches as _};
        let command = clap::Command::new("courier bench").no_binary_name(true);
        let matches = BenchArgs::augment_args(command).try_get_matches_from(args)?;
        BenchArgs::from_arg_matches(&matches)
    }
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    let duration = crate::units::parse_duration(text)?;
    if duration.is_zero() {
        return Err("the duration must be above zero".to_owned());
    }
    Ok(duration)
}

/// Runs the benchmark and prints its report on stdout (the progress bar goes to stderr when
/// it is a terminal): one run's, or with several plugins or rounds the comparison's.
pub async fn run(settings: &Settings, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let progress = std::io::stderr().is_terminal();
    let compiler = crate::cli::compile_plugin::this_executable();
    let compiler = compiler.as_ref();
    let (json, table) = if args.plugin.len() > 1 || args.rounds > 1 {
        let comparison = compare(settings, args, compiler, progress).await?;
        (serde_json::to_string(&comparison)?, comparison.table())
    } else {
        let report = measure(settings, args, compiler, progress).await?;
        (serde_json::to_string(&report)?, report.table())
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{json}")?;
    } else {
        write!(stdout, "{table}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the benchmark described by `args` once, with the first `--plugin` (or the built-in
/// no-op), and returns what it measured. `settings` gives the database (`--database-url`, or
/// the embedded default) and the host settings (poll interval, lease, claim batch size) the
/// hosts run with. `compiler` compiles the plugin in a process of its own when it is not in
/// the cache (`None`: in this one). `progress` draws a progress bar on stderr.
pub async fn measure(
    settings: &Settings,
    args: &BenchArgs,
    compiler: Option<&CompilerCommand>,
    progress: bool,
) -> anyhow::Result<Report> {
    let path = args.plugin.first().map(PathBuf::as_path);
    let plugin = BenchPlugin::load(settings, path, compiler).await?;
    measure_plugin(settings, args, &plugin, progress).await
}

/// Runs the benchmark `--rounds` times per `--plugin` (or for the built-in no-op),
/// alternating between the plugins, each run on a fresh database (a new embedded cluster, or
/// a new schema). Every plugin is loaded (and compiled into the cache) before the first run,
/// so that a plugin that cannot run stops the comparison before it starts and no run
/// compiles (`compiler` as for [`measure`]). Each run's line goes to stderr as it ends. A run
/// that fails ends the comparison with its error, naming the run and its plugin.
pub async fn compare(
    settings: &Settings,
    args: &BenchArgs,
    compiler: Option<&CompilerCommand>,
    progress: bool,
) -> anyhow::Result<Comparison> {
    let paths: Vec<Option<&Path>> = if args.plugin.is_empty() {
        vec![None]
    } else {
        args.plugin
            .iter()
            .map(|path| Some(path.as_path()))
            .collect()
    };
    let mut plugins = Vec::with_capacity(paths.len());
    for path in paths {
        plugins.push(BenchPlugin::load(settings, path, compiler).await?);
    }
    let width = plugins
        .iter()
        .map(|plugin| plugin.label.chars().count())
        .max()
        .unwrap_or(0);
    let total = args.rounds as usize * plugins.len();
    let mut runs = Vec::with_capacity(total);
    for round in 1..=args.rounds {
        for plugin in &plugins {
            let report = measure_plugin(settings, args, plugin, progress)
                .await
                .with_context(|| {
                    let label = &plugin.label;
                    format!("run {} of {total} (round {round}, {label})", runs.len() + 1)
                })?;
            eprintln!(
                "run {:>3}/{total}  {}",
                runs.len() + 1,
                compare::run_line(&report, width)
            );
            runs.push(report);
        }
    }
    Ok(Comparison::new(args.rounds, plugins.len(), runs))
}

async fn measure_plugin(
    settings: &Settings,
    args: &BenchArgs,
    plugin: &BenchPlugin,
    progress: bool,
) -> anyhow::Result<Report> {
    // The run's own peak, not an earlier run's (or compiler's) in this process.
    usage::reset_peak_rss();
    let work = tempfile::Builder::new()
        .prefix("courier-bench-")
        .tempdir()
        .context("creating a temporary directory for the benchmark")?;
    let database = BenchDatabase::open(settings, work.path()).await?;
    let result = Bench::prepare(settings, args, plugin, &database, work.path(), progress).await;
    let result = match result {
        Ok(bench) => bench.run().await,
        Err(error) => Err(error),
    };
    database.close().await;
    result
}

/// The database of a run: a throw-away embedded cluster, or a schema of its own on the
/// server given.
struct BenchDatabase {
    url: String,
    schema: String,
    pool: PgPool,
    /// The cluster started for the run, if any.
    embedded: Option<EmbeddedPostgres>,
}

impl BenchDatabase {
    async fn open(settings: &Settings, work: &Path) -> anyhow::Result<BenchDatabase> {
        let (url, schema, embedded) = match &settings.database {
            Database::Url(url) => {
                let schema = format!(
                    "courier_bench_{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..12]
                );
                (url.clone(), schema, None)
            }
            Database::Embedded => {
                let dir = work.join("postgres");
                open_up_for_postgres(work)?;
                let cluster = tokio::task::spawn_blocking(move || {
                    EmbeddedPostgres::start(
                        &dir,
                        courier_embedded_postgres::Options {
                            initdb_no_sync: true,
                            ..courier_embedded_postgres::Options::default()
                        },
                    )
                })
                .await
                .context("starting the embedded Postgres")?
                .context("starting a throw-away embedded Postgres for the benchmark")?;
                (cluster.url(), "courier".to_owned(), Some(cluster))
            }
        };
        // Connected as the hosts are (the publisher below connects as an application does).
        let cannot_connect = || format!("cannot connect to {}", crate::config::redact_url(&url));
        let options = crate::database::host_connect_options(&url).with_context(cannot_connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .with_context(cannot_connect)?;
        Ok(BenchDatabase {
            url,
            schema,
            pool,
            embedded,
        })
    }

    fn postmaster_pid(&self) -> Option<u32> {
        self.embedded.as_ref()?.postmaster_pid()
    }

    fn kind(&self) -> &'static str {
        if self.embedded.is_some() {
            "embedded"
        } else {
            "external"
        }
    }

    /// Drops the run's schema (external server) or stops the cluster.
    async fn close(self) {
        if self.embedded.is_none() {
            let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
            if let Err(error) = sqlx::raw_sql(&drop).execute(&self.pool).await {
                tracing::warn!(schema = %self.schema, %error, "cannot drop the benchmark's schema");
            }
        }
        self.pool.close().await;
        if let Some(mut cluster) = self.embedded {
            let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
        }
    }
}

/// Lets the `postgres` user (when running as root) enter the temporary directory.
fn open_up_for_postgres(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot open up {}", dir.display()))
}

/// The plugin a run delivers to: its bytes, its name in reports, and the subscription whose
/// topic and event the run publishes.
struct BenchPlugin {
    bytes: Vec<u8>,
    label: String,
    subscription: Subscription,
}

impl BenchPlugin {
    /// Reads the plugin (`None`: the built-in no-op) and loads it once, before any run: that
    /// checks it and compiles it into the compiled-plugin cache `courier run` uses
    /// (`cache_dir`), which the hosts share, so that their loads, in every run, start without
    /// compiling it again.
    async fn load(
        settings: &Settings,
        plugin: Option<&Path>,
        compiler: Option<&CompilerCommand>,
    ) -> anyhow::Result<BenchPlugin> {
        let (bytes, label) = match plugin {
            None => (NOOP_COMPONENT.to_vec(), "noop (built-in)".to_owned()),
            Some(path) => (
                std::fs::read(path)
                    .with_context(|| format!("cannot read the plugin {}", path.display()))?,
                path.display().to_string(),
            ),
        };
        // The hosts' own runtime configuration, so that the entry is the one they look for.
        let runtime = Runtime::new(settings.runtime_config(compiler.cloned()))
            .context("starting the plugin runtime")?;
        let loaded = runtime
            .load(bytes.clone(), PluginSettings::default())
            .await
            .with_context(|| format!("{label} is not a usable Courier plugin"))?;
        let subscription = loaded
            .info()
            .subscriptions
            .first()
            .cloned()
            .with_context(|| {
                format!(
                    "{label} subscribes to nothing: a benchmark needs a topic and event to publish"
                )
            })?;
        Ok(BenchPlugin {
            bytes,
            label,
            subscription,
        })
    }
}

/// One plugin copy: its file name in the plugins directory and the queue it serves.
#[derive(Debug, Clone)]
struct PluginCopy {
    name: String,
    queue: String,
}

/// A prepared run: the outbox migrated, the routes declared, the hosts started (with no
/// plugin active yet), the plugin files written.
struct Bench<'a> {
    args: &'a BenchArgs,
    database: &'a BenchDatabase,
    outbox: Outbox,
    hosts: Vec<Host>,
    copies: Vec<PluginCopy>,
    /// Per host and plugin copy: the metrics that count outcomes.
    counters: Vec<PluginQueueMetrics>,
    latencies: StartLatencies,
    plugin_label: String,
    message_name: String,
    payload: String,
    claim_batch_size: u32,
    progress: bool,
}

impl<'a> Bench<'a> {
    async fn prepare(
        settings: &Settings,
        args: &'a BenchArgs,
        plugin: &BenchPlugin,
        database: &'a BenchDatabase,
        work: &Path,
        progress: bool,
    ) -> anyhow::Result<Bench<'a>> {
        let BenchPlugin {
            bytes,
            label,
            subscription,
        } = plugin;
        let cache_dir = settings.cache_dir.clone();
        let event = subscription
            .events
            .first()
            .context("the plugin's first subscription names no event")?;
        let message_name = format!("{}.{event}", subscription.topic);

        let outbox = Outbox::new(
            database.pool.clone(),
            OutboxOptions {
                schema: database.schema.clone(),
                ..OutboxOptions::default()
            },
        )?;
        outbox.migrate().await.context("preparing the outbox")?;

        let plugins_dir = work.join("plugins");
        std::fs::create_dir_all(&plugins_dir)?;
        let copies: Vec<PluginCopy> = (1..=args.fanout)
            .map(|index| PluginCopy {
                name: format!("bench-{index}"),
                queue: if args.fanout == 1 {
                    subscription.queue.clone()
                } else {
                    format!("{}-{index}", subscription.queue)
                },
            })
            .collect();
        for copy in &copies {
            let route = Route::new(&copy.queue, &subscription.topic, [event.as_str()])?;
            outbox.declare(&route).await?;
        }

        let claim_batch_size = args.claim_batch_size.unwrap_or(settings.claim_batch_size);
        let latencies = StartLatencies::default();
        let mut hosts = Vec::new();
        for index in 0..args.hosts {
            let mut host_settings = Settings::with_defaults(Database::Url(database.url.clone()));
            host_settings.listen = "127.0.0.1:0".parse().expect("a valid address");
            host_settings.plugins_dir = plugins_dir.clone();
            host_settings.data_dir = work.join(format!("host-{index}"));
            host_settings.cache_dir = cache_dir.clone();
            host_settings.schema = database.schema.clone();
            host_settings.poll_interval = settings.poll_interval;
            host_settings.lease = settings.lease;
            host_settings.claim_batch_size = claim_batch_size;
            host_settings.shutdown_grace = Duration::from_secs(10);
            let mut options = HostOptions::from_settings(&host_settings);
            options.watch_plugins = false;
            if args.mode == Mode::Steady {
                options.dispatcher.call_probe = Some(latencies.probe());
            }
            let host = Host::start_with(host_settings, options)
                .await
                .with_context(|| format!("starting benchmark host {}", index + 1))?;
            host.wait_for_initial_load().await;
            hosts.push(host);
        }
        // Written after the hosts loaded their (empty) directory: nothing runs before
        // `activate`.
        for copy in &copies {
            let sidecar = format!(
                "[limits]\nconcurrency = {}\n\n[[subscriptions]]\nqueue = {}\ntopic = {}\nevents = [{}]\n",
                args.concurrency,
                toml_string(&copy.queue),
                toml_string(&subscription.topic),
                toml_string(event),
            );
            std::fs::write(plugins_dir.join(format!("{}.toml", copy.name)), sidecar)?;
            std::fs::write(plugins_dir.join(format!("{}.wasm", copy.name)), bytes)?;
        }
        let counters = hosts
            .iter()
            .flat_map(|host| {
                copies
                    .iter()
                    .map(|copy| host.metrics().for_plugin_queue(&copy.name, &copy.queue))
            })
            .collect();
        let payload = match &args.payload {
            Some(text) => {
                serde_json::from_str::<serde::de::IgnoredAny>(text)
                    .with_context(|| format!("--payload is not valid JSON: {text}"))?;
                text.clone()
            }
            None => payload_of(args.payload_bytes),
        };
        Ok(Bench {
            args,
            database,
            outbox,
            hosts,
            copies,
            counters,
            latencies,
            plugin_label: label.clone(),
            message_name,
            payload,
            claim_batch_size,
            progress,
        })
    }

    async fn run(self) -> anyhow::Result<Report> {
        let result = match self.args.mode {
            Mode::Drain => self.drain().await,
            Mode::Steady => self.steady().await,
            Mode::Idle => self.idle().await,
        };
        let left = self.left_in_outbox().await;
        for host in self.hosts {
            host.shutdown().await;
        }
        let mut report = result?;
        report.left_in_outbox = left?;
        report.peak_rss_bytes = ProcessUsage::now().peak_rss_bytes;
        Ok(report)
    }

    /// Makes every plugin copy active on every host: from here on, deliveries run.
    async fn activate(&self) -> anyhow::Result<()> {
        let loads = self.hosts.iter().flat_map(|host| {
            self.copies.iter().map(move |copy| async move {
                match host.registry().reload(&copy.name).await {
                    ReloadResult::Loaded | ReloadResult::Unchanged => Ok(()),
                    ReloadResult::Failed(message) => bail!("{message}"),
                    ReloadResult::Removed => bail!("{}.wasm disappeared", copy.name),
                }
            })
        });
        futures::future::try_join_all(loads).await?;
        Ok(())
    }

    /// Outcomes recorded so far: (delivered, retried, dead).
    fn outcomes(&self) -> (u64, u64, u64) {
        self.counters.iter().fold((0, 0, 0), |(d, r, x), c| {
            (d + c.delivered.get(), r + c.retried.get(), x + c.dead.get())
        })
    }

    /// Waits until `target` deliveries ended (delivered or dead) in total, moving `bar`.
    /// Fails when nothing moves for a minute.
    async fn wait_for_outcomes(
        &self,
        target: u64,
        bar: &ProgressBar,
        base: u64,
    ) -> anyhow::Result<Instant> {
        let mut last = (0, Instant::now());
        loop {
            let (delivered, _, dead) = self.outcomes();
            let done = delivered + dead;
            bar.set_position(done.saturating_sub(base));
            if done >= target {
                return Ok(Instant::now());
            }
            if done != last.0 {
                last = (done, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(60) {
                bail!(
                    "no delivery finished for a minute: {} of {} done (is the plugin failing? see the log with --log info)",
                    done.saturating_sub(base),
                    target.saturating_sub(base)
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn drain(&self) -> anyhow::Result<Report> {
        let total = self.args.messages;
        let bar = self.bar(total, "publish");
        let publish_started = Instant::now();
        let published = AtomicU64::new(0);
        let next = AtomicU64::new(0);
        // Two publishers, as two application connections would.
        let publisher = || async {
            loop {
                let start = next.fetch_add(u64::from(self.args.batch_size), Ordering::Relaxed);
                if start >= total {
                    return Ok::<(), anyhow::Error>(());
                }
                let count = (total - start).min(u64::from(self.args.batch_size));
                let messages = self.messages(count)?;
                self.outbox
                    .publish(&self.database.pool, &messages)
                    .await
                    .context("publishing")?;
                let done = published.fetch_add(count, Ordering::Relaxed) + count;
                bar.set_position(done);
            }
        };
        futures::future::try_join(publisher(), publisher()).await?;
        let publish_seconds = publish_started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let expected = total * u64::from(self.args.fanout);
        let bar = self.bar(expected, "deliver");
        let before = self.usage();
        let started = Instant::now();
        self.activate().await?;
        let finished = self.wait_for_outcomes(expected, &bar, 0).await?;
        let after = self.usage();
        bar.finish_and_clear();
        Ok(self.report(
            total,
            publish_seconds,
            finished.duration_since(started),
            before,
            after,
            None,
            Duration::ZERO,
        ))
    }

    async fn steady(&self) -> anyhow::Result<Report> {
        self.activate().await?;
        // Warm-up: connections, instances and caches, not measured.
        let warmup = self.args.rate.clamp(100, 1000);
        let warm_messages = self.messages(warmup)?;
        self.outbox
            .publish(&self.database.pool, &warm_messages)
            .await
            .context("publishing the warm-up messages")?;
        let warm_target = warmup * u64::from(self.args.fanout);
        self.wait_for_outcomes(warm_target, &ProgressBar::hidden(), 0)
            .await?;
        self.latencies.clear();

        let duration = self.args.duration;
        let before = self.usage();
        let since = SystemTime::now();
        let started = Instant::now();
        let publisher = SteadyPublisher {
            url: self.database.url.clone(),
            outbox: self.outbox.clone(),
            name: self.message_name.clone(),
            payload: self.payload.clone(),
            rate: self.args.rate,
            duration,
            batch_size: self.args.batch_size,
        }
        .spawn();
        let bar = self.bar(duration.as_secs().max(1), "steady");
        while !publisher.is_finished() {
            bar.set_position(started.elapsed().as_secs().min(duration.as_secs().max(1)));
            let (delivered, _, _) = self.outcomes();
            bar.set_message(format!(
                "{} delivered",
                delivered.saturating_sub(warm_target)
            ));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let outcome = tokio::task::spawn_blocking(move || publisher.join())
            .await
            .context("the publisher thread")?
            .map_err(|_| anyhow::anyhow!("the publisher thread panicked"))??;
        bar.finish_and_clear();
        let expected = warm_target + outcome.published * u64::from(self.args.fanout);
        let finished = self
            .wait_for_outcomes(expected, &ProgressBar::hidden(), warm_target)
            .await?;
        let after = self.usage();
        let mut report = self.report(
            outcome.published,
            outcome.elapsed.as_secs_f64(),
            finished.duration_since(started),
            before,
            after,
            self.latencies.percentiles(since),
            outcome.cpu,
        );
        report.target_rate = Some(self.args.rate);
        let (delivered, retried, dead) = self.outcomes();
        // The warm-up's deliveries are not part of the run.
        report.delivered = delivered.saturating_sub(warm_target);
        report.delivered_per_second = if report.deliver_seconds > 0.0 {
            report.delivered as f64 / report.deliver_seconds
        } else {
            0.0
        };
        report.retried = retried;
        report.dead = dead;
        Ok(report)
    }

    async fn idle(&self) -> anyhow::Result<Report> {
        self.activate().await?;
        // Let start-up work settle.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let duration = self.args.duration;
        let bar = self.bar(duration.as_secs().max(1), "idle");
        let before = self.usage();
        let started = Instant::now();
        while started.elapsed() < duration {
            bar.set_position(started.elapsed().as_secs());
            tokio::time::sleep(Duration::from_millis(100).min(duration)).await;
        }
        let after = self.usage();
        bar.finish_and_clear();
        Ok(self.report(
            0,
            0.0,
            started.elapsed(),
            before,
            after,
            None,
            Duration::ZERO,
        ))
    }

    /// `count` new messages.
    fn messages(&self, count: u64) -> anyhow::Result<Vec<NewMessage>> {
        (0..count)
            .map(|_| {
                NewMessage::from_json_text(self.message_name.clone(), self.payload.clone())
                    .map_err(anyhow::Error::from)
            })
            .collect()
    }

    fn usage(&self) -> Usage {
        Usage {
            process: ProcessUsage::now(),
            postgres: self.database.postmaster_pid().and_then(postgres_cpu),
        }
    }

    async fn left_in_outbox(&self) -> anyhow::Result<u64> {
        let stats = self.outbox.queue_stats().await?;
        Ok(stats
            .iter()
            .filter(|stats| self.copies.iter().any(|copy| copy.queue == stats.queue))
            .map(|stats| stats.pending)
            .sum())
    }

    fn bar(&self, length: u64, what: &'static str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{bar:40}] {pos}/{len} {per_sec} {msg} ({elapsed})",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(what);
        bar
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per mode, each naming every figure"
    )]
    fn report(
        &self,
        published: u64,
        publish_seconds: f64,
        delivering: Duration,
        before: Usage,
        after: Usage,
        latency: Option<Percentiles>,
        publisher_cpu: Duration,
    ) -> Report {
        let (delivered, retried, dead) = self.outcomes();
        let deliver_seconds = delivering.as_secs_f64();
        let host_cpu = after
            .process
            .cpu
            .saturating_sub(before.process.cpu)
            .saturating_sub(publisher_cpu)
            .as_secs_f64();
        let per_second = |count: u64, seconds: f64| {
            if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            }
        };
        Report {
            mode: self.args.mode.as_str(),
            plugin: self.plugin_label.clone(),
            database: self.database.kind(),
            hosts: self.args.hosts,
            fanout: self.args.fanout,
            concurrency: self.args.concurrency,
            payload_bytes: self.payload.len(),
            batch_size: self.args.batch_size,
            claim_batch_size: self.claim_batch_size,
            target_rate: None,
            published,
            publish_seconds,
            published_per_second: per_second(published, publish_seconds),
            delivered,
            expected_deliveries: published * u64::from(self.args.fanout),
            retried,
            dead,
            left_in_outbox: 0,
            deliver_seconds,
            delivered_per_second: per_second(delivered, deliver_seconds),
            latency,
            host_cpu_seconds: host_cpu,
            host_cpu_percent: if deliver_seconds > 0.0 {
                host_cpu / deliver_seconds * 100.0
            } else {
                0.0
            },
            peak_rss_bytes: after.process.peak_rss_bytes,
            postgres_cpu_seconds: match (before.postgres, after.postgres) {
                (Some(before), Some(after)) => Some(after.saturating_sub(before).as_secs_f64()),
                _ => None,
            },
        }
    }
}

/// A reading of the CPU and memory counters.
#[derive(Debug, Clone, Copy)]
struct Usage {
    process: ProcessUsage,
    postgres: Option<Duration>,
}

/// A payload of exactly `bytes` bytes (at least 10): `{"pad":"xxx..."}`.
fn payload_of(bytes: u64) -> String {
    let pad = usize::try_from(bytes)
        .unwrap_or(usize::MAX)
        .saturating_sub(10);
    format!("{{\"pad\":\"{}\"}}", "x".repeat(pad))
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The steady-mode load generator: publishes at a fixed rate on a thread and runtime of its
/// own, so that its CPU time can be told apart from the hosts'.
struct SteadyPublisher {
    url: String,
    outbox: Outbox,
    name: String,
    payload: String,
    rate: u64,
    duration: Duration,
    batch_size: u32,
}

/// What the steady publisher did.
#[derive(Debug, Clone, Copy)]
struct Published {
    published: u64,
    elapsed: Duration,
    /// CPU time of the publisher's thread.
    cpu: Duration,
}

impl SteadyPublisher {
    fn spawn(self) -> std::thread::JoinHandle<anyhow::Result<Published>> {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the publisher's runtime")?;
            let result = runtime.block_on(self.publish());
            drop(runtime);
            let mut published = result?;
            published.cpu = thread_cpu();
            Ok(published)
        })
    }

    /// Publishes `rate × duration` messages on schedule: every turn publishes what is due by
    /// now (at most `batch_size` in one statement), two statements in flight at most.
    async fn publish(self) -> anyhow::Result<Published> {
        // A pool of this runtime, so that its work stays on this thread.
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .context("connecting the publisher")?;
        let outbox = Outbox::new(
            pool.clone(),
            OutboxOptions {
                schema: self.outbox.schema().to_owned(),
                ..OutboxOptions::default()
            },
        )?;
        let total = (self.rate as f64 * self.duration.as_secs_f64()).round() as u64;
        let reserved = AtomicU64::new(0);
        let started = Instant::now();
        let publisher = || async {
            loop {
                let due = ((self.rate as f64 * started.elapsed().as_secs_f64()) as u64).min(total);
                let taken = reserved.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                    (r < due).then(|| (r + u64::from(self.batch_size)).min(due))
                });
                match taken {
                    Ok(from) => {
                        let to = (from + u64::from(self.batch_size)).min(due);
                        let messages = (from..to)
                            .map(|_| {
                                NewMessage::from_json_text(self.name.clone(), self.payload.clone())
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        outbox
                            .publish(&pool, &messages)
                            .await
                            .context("publishing")?;
                    }
                    Err(reserved_now) => {
                        if reserved_now >= total {
                            return Ok::<(), anyhow::Error>(());
                        }
                        // Sleep until the next message is due.
                        let next_at =
                            Duration::from_secs_f64((reserved_now + 1) as f64 / self.rate as f64);
                        let wait = next_at.saturating_sub(started.elapsed());
                        tokio::time::sleep(wait.max(Duration::from_micros(100))).await;
                    }
                }
            }
        };
        futures::future::try_join(publisher(), publisher()).await?;
        let elapsed = started.elapsed();
        pool.close().await;
        Ok(Published {
            published: total,
            elapsed,
            cpu: Duration::ZERO,
        })
    }
}
