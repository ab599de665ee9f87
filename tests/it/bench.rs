//! `courier bench` runs end to end and its counts add up: every message published is
//! delivered once per queue, and steady mode measures the start of every delivery. Speed is
//! never asserted here: figures belong in BENCHMARKS.md.

use std::process::Command;

use courier::bench::{BenchArgs, Report, Spread};
use courier::config::{Database, Settings};
use courier_tests::postgres::TestDatabase;
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_courier-under-test");

/// The settings of a benchmark on `database`, its files (the compiled-plugin cache) under
/// `data_dir`.
fn bench_settings(database: &TestDatabase, data_dir: &std::path::Path) -> Settings {
    let mut settings = Settings::with_defaults(Database::Url(database.url().to_owned()));
    settings.data_dir = data_dir.to_owned();
    settings.cache_dir = data_dir.join("cache");
    settings
}

/// `courier bench ARGS` parsed as the command line would be.
fn bench_args(args: &[&str]) -> BenchArgs {
    BenchArgs::parse(args).unwrap_or_else(|error| panic!("{error}"))
}

/// Runs the binary's `courier bench ARGS --json` on `database`, its files under `data_dir`,
/// and returns what it printed: one JSON object, nothing else, on stdout.
fn bench_json(database: &TestDatabase, data_dir: &std::path::Path, args: &[&str]) -> Value {
    let output = Command::new(BINARY)
        .arg("bench")
        .args(args)
        .args(["--json", "--database-url"])
        .arg(database.url())
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("COURIER_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "courier bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("not one JSON object ({error}): {stdout}"))
}

#[tokio::test]
async fn the_binary_drains_2000_messages_and_reports_consistent_counts_as_json() {
    let database = TestDatabase::new().await;
    let data_dir = tempfile::tempdir().unwrap();
    let report = bench_json(&database, data_dir.path(), &["--messages", "2000"]);
    assert_eq!(report["mode"], "drain");
    assert_eq!(report["plugin"], "noop (built-in)");
    assert_eq!(report["database"], "external");
    assert_eq!(report["published"], 2000);
    assert_eq!(report["expected_deliveries"], 2000);
    assert_eq!(report["delivered"], 2000);
    assert_eq!(report["retried"], 0);
    assert_eq!(report["dead"], 0);
    assert_eq!(report["left_in_outbox"], 0);
    assert_eq!(report["payload_bytes"], 64);
    assert!(report["latency"].is_null(), "drain measures no latency");
    // An external server's CPU is not ours to read.
    assert!(report["postgres_cpu_seconds"].is_null());
    for field in [
        "published_per_second",
        "delivered_per_second",
        "host_cpu_seconds",
        "peak_rss_bytes",
    ] {
        assert!(
            report[field].as_f64().is_some_and(|value| value > 0.0),
            "{field} should be a positive number: {report}"
        );
    }

    // The run cleaned up after itself: its schema is gone.
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'courier_bench_%'",
    )
    .fetch_all(database.pool())
    .await
    .unwrap();
    assert_eq!(schemas, Vec::<String>::new());
    // The plugin was compiled into the data directory's cache, as `courier run` does, so the
    // next run starts without compiling it again.
    let cached = std::fs::read_dir(data_dir.path().join("cache"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert!(cached > 0, "nothing in the compiled-plugin cache");
}

#[tokio::test]
async fn steady_mode_with_two_hosts_and_two_queues_measures_every_delivery_start() {
    let database = TestDatabase::new().await;
    let data_dir = tempfile::tempdir().unwrap();
    let settings = bench_settings(&database, data_dir.path());
    let args = bench_args(&[
        "--mode",
        "steady",
        "--rate",
        "400",
        "--duration",
        "1s",
        "--fanout",
        "2",
        "--hosts",
        "2",
        "--payload-bytes",
        "200",
    ]);
    let report: Report = courier::bench::measure(&settings, &args, None, false)
        .await
        .unwrap_or_else(|error| panic!("the benchmark failed: {error:#}"));
    assert_eq!(report.mode, "steady");
    assert_eq!(report.target_rate, Some(400));
    assert_eq!((report.hosts, report.fanout), (2, 2));
    assert_eq!(report.published, 400);
    assert_eq!(report.expected_deliveries, 800);
    assert_eq!(report.delivered, 800);
    // The warm-up's deliveries count in neither the total nor the rate.
    assert_eq!(
        report.delivered_per_second,
        800.0 / report.deliver_seconds,
        "{report:?}"
    );
    assert_eq!(
        (report.retried, report.dead, report.left_in_outbox),
        (0, 0, 0)
    );
    assert_eq!(report.payload_bytes, 200);
    let latency = report.latency.expect("steady mode measures latency");
    // Every delivery of a measured message was timestamped once, just before its call.
    assert_eq!(latency.samples, 800);
    assert!(latency.p50_ms <= latency.p95_ms);
    assert!(latency.p95_ms <= latency.p99_ms);
    assert!(latency.p99_ms <= latency.max_ms);
    assert!(latency.p50_ms > 0.0);

    let table = report.table();
    assert!(table.contains("steady mode"), "{table}");
    assert!(table.contains("publish → start"), "{table}");
    assert!(table.contains("800 in"), "{table}");
}

#[tokio::test]
async fn idle_mode_publishes_and_delivers_nothing() {
    let database = TestDatabase::new().await;
    let data_dir = tempfile::tempdir().unwrap();
    let settings = bench_settings(&database, data_dir.path());
    let args = bench_args(&["--mode", "idle", "--duration", "300ms"]);
    let report = courier::bench::measure(&settings, &args, None, false)
        .await
        .unwrap_or_else(|error| panic!("the benchmark failed: {error:#}"));
    assert_eq!(report.mode, "idle");
    assert_eq!((report.published, report.delivered), (0, 0));
    assert!(report.latency.is_none());
    assert!(report.deliver_seconds >= 0.3);
}

#[test]
fn bad_arguments_are_refused_with_a_clear_message() {
    for (flag, value) in [("--fanout", "0"), ("--duration", "soon"), ("--rounds", "0")] {
        let output = Command::new(BINARY)
            .args(["bench", flag, value])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{stderr}");
    }
}

#[tokio::test]
async fn a_missing_plugin_file_is_named_in_the_error() {
    let database = TestDatabase::new().await;
    let output = Command::new(BINARY)
        .args([
            "bench",
            "--plugin",
            "/nonexistent/plugin.wasm",
            "--database-url",
        ])
        .arg(database.url())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read the plugin /nonexistent/plugin.wasm"),
        "{stderr}"
    );
}

#[tokio::test]
async fn rounds_alternate_between_plugins_and_compare_each_with_the_first() {
    let database = TestDatabase::new().await;
    let data_dir = tempfile::tempdir().unwrap();
    let settings = bench_settings(&database, data_dir.path());
    let first = data_dir.path().join("first.wasm");
    let second = data_dir.path().join("second.wasm");
    std::fs::copy(courier_tests::components::NOOP, &first).unwrap();
    std::fs::copy(courier_tests::components::NOOP, &second).unwrap();
    let (first, second) = (first.display().to_string(), second.display().to_string());
    let args = bench_args(&[
        "--messages",
        "300",
        "--rounds",
        "2",
        "--plugin",
        &first,
        "--plugin",
        &second,
    ]);
    let comparison = courier::bench::compare(&settings, &args, None, false)
        .await
        .unwrap_or_else(|error| panic!("the comparison failed: {error:#}"));

    // Round 1 of each plugin in the order given, then round 2: A, B, A, B.
    let order: Vec<&str> = comparison
        .runs
        .iter()
        .map(|run| run.plugin.as_str())
        .collect();
    assert_eq!(order, [&first, &second, &first, &second]);
    for run in &comparison.runs {
        assert_eq!((run.published, run.delivered), (300, 300), "{run:?}");
        assert_eq!((run.retried, run.dead, run.left_in_outbox), (0, 0, 0));
    }

    assert_eq!(comparison.rounds, 2);
    let [a, b] = &comparison.plugins[..] else {
        panic!("one summary per plugin: {comparison:?}");
    };
    assert_eq!((a.plugin.as_str(), b.plugin.as_str()), (&*first, &*second));
    let rates = |plugin: &str| -> Vec<f64> {
        let mut rates: Vec<f64> = comparison
            .runs
            .iter()
            .filter(|run| run.plugin == plugin)
            .map(|run| run.delivered_per_second)
            .collect();
        rates.sort_by(f64::total_cmp);
        rates
    };
    let (a_rates, b_rates) = (rates(&first), rates(&second));
    assert_eq!(
        a.delivered_per_second,
        Spread {
            median: (a_rates[0] + a_rates[1]) / 2.0,
            min: a_rates[0],
            max: a_rates[1]
        }
    );
    assert_eq!(b.delivered_per_second.min, b_rates[0]);
    assert_eq!(b.delivered_per_second.max, b_rates[1]);
    // The first plugin is the yardstick; the second is compared round by round.
    assert!(a.ratio_to_first.is_none());
    let ratio = b.ratio_to_first.expect("a ratio to the first plugin");
    let per_round: Vec<f64> = comparison
        .runs
        .chunks(2)
        .map(|round| round[1].delivered_per_second / round[0].delivered_per_second)
        .collect();
    assert_eq!(ratio, Spread::of(per_round).unwrap());
    assert!(a.p99_ms.is_none(), "drain measures no latency");

    let table = comparison.table();
    assert!(table.contains("run   4"), "{table}");
    assert!(table.contains(&format!("vs {first}")), "{table}");
}

#[tokio::test]
async fn the_binary_prints_every_run_of_a_comparison_as_one_json_object() {
    let database = TestDatabase::new().await;
    let data_dir = tempfile::tempdir().unwrap();
    let comparison = bench_json(
        &database,
        data_dir.path(),
        &["--messages", "200", "--rounds", "2"],
    );
    assert_eq!(comparison["rounds"], 2);
    let runs = comparison["runs"].as_array().expect("a list of runs");
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["plugin"], "noop (built-in)");
        assert_eq!(run["delivered"], 200);
    }
    let plugins = comparison["plugins"].as_array().expect("a list of plugins");
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0]["plugin"], "noop (built-in)");
    assert!(plugins[0]["ratio_to_first"].is_null());
    assert!(
        plugins[0]["delivered_per_second"]["median"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[tokio::test]
async fn a_compared_plugin_that_cannot_run_stops_the_comparison_before_any_run() {
    let database = TestDatabase::new().await;
    let data_dir = tempfile::tempdir().unwrap();
    let settings = bench_settings(&database, data_dir.path());
    let args = bench_args(&[
        "--plugin",
        courier_tests::components::NOOP,
        "--plugin",
        "/nonexistent/plugin.wasm",
    ]);
    let error = courier::bench::compare(&settings, &args, None, false)
        .await
        .expect_err("a missing plugin fails the comparison");
    let message = format!("{error:#}");
    assert!(
        message.contains("cannot read the plugin /nonexistent/plugin.wasm"),
        "{message}"
    );
    // Found while loading the plugins, before run 1 (not as "run 2 of 2" after it).
    assert!(!message.contains("run "), "{message}");
}
