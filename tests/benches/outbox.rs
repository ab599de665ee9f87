//! Outbox throughput on this machine, against a private, durable Postgres (fsync and
//! synchronous commit on): batched publish, drain through claim → complete (no plugin),
//! fan-out, and claim latency on a deep queue.
//!
//! `cargo bench -p courier-tests --bench outbox [-- --messages N --batch B --workers W
//! --deep N --only publish,drain,deep --ceiling PATH]`. With `--ceiling PATH` (or `COURIER_PG_CEILING=PATH`) it also
//! runs that `pg-ceiling.sh` against the same cluster, so both sets of figures come from one
//! run. `COURIER_BENCH_DATABASE_URL` uses an existing server instead of a private cluster.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use courier_embedded_postgres::Settings;
use courier_outbox::{
    ClaimSpec, CompletedDelivery, Completion, NewMessage, Outbox, OutboxOptions, Route,
};
use courier_tests::postgres::PrivateCluster;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

const LEASE: Duration = Duration::from_secs(300);

struct Args {
    messages: usize,
    batch: usize,
    workers: usize,
    deep: usize,
    ceiling: Option<PathBuf>,
    only: Option<String>,
}

impl Args {
    fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|only| only.split(',').any(|s| s == scenario))
    }
}

fn args() -> Args {
    let mut args = Args {
        messages: 100_000,
        batch: 2_000,
        workers: 2,
        deep: 1_000_000,
        ceiling: std::env::var_os("COURIER_PG_CEILING").map(PathBuf::from),
        only: None,
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let mut value = |name: &str| raw.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match flag.as_str() {
            "--messages" => args.messages = value("--messages").parse().expect("--messages N"),
            "--batch" => args.batch = value("--batch").parse().expect("--batch N"),
            "--workers" => args.workers = value("--workers").parse().expect("--workers N"),
            "--deep" => args.deep = value("--deep").parse().expect("--deep N"),
            "--ceiling" => args.ceiling = Some(PathBuf::from(value("--ceiling"))),
            "--only" => args.only = Some(value("--only")),
            // `cargo bench` passes `--bench`; filters are not used here.
            _ => {}
        }
    }
    args
}

fn main() {
    let args = args();
    let (cluster, server_url) = match std::env::var("COURIER_BENCH_DATABASE_URL") {
        Ok(url) if !url.is_empty() => (None, url),
        _ => {
            // Durable, as a real deployment: fsync and synchronous commit stay on.
            let mut settings = Settings::default();
            settings.set("shared_buffers", "512MB");
            let cluster = PrivateCluster::start(settings).unwrap_or_else(|error| panic!("{error}"));
            let url = cluster.url();
            (Some(cluster), url)
        }
    };
    println!("outbox bench: Postgres at {server_url} (fsync on, synchronous_commit on)");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(&args, &server_url));

    if let Some(script) = &args.ceiling {
        run_ceiling(script, &server_url);
    }
    drop(cluster);
}

async fn run(args: &Args, server_url: &str) {
    if args.runs("publish") {
        publish_scenario(args, server_url).await;
    }
    if args.runs("drain") {
        drain_scenario(args, server_url).await;
    }
    if args.runs("deep") {
        deep_scenario(args, server_url).await;
    }
}

async fn publish_scenario(args: &Args, server_url: &str) {
    let (db, outbox) = fresh_outbox(server_url, "publish").await;
    route(&outbox, "q1", "bench").await;
    for batch in [1_000, args.batch.max(1), 10_000] {
        let rate = publish(&outbox, args.messages, batch, args.workers).await;
        println!(
            "publish       {:>8} messages, {batch:>5}/batch, {} publishers: {:>9.0} messages/s",
            args.messages, args.workers, rate
        );
        truncate(&db).await;
    }
}

async fn drain_scenario(args: &Args, server_url: &str) {
    let mut one_queue_cost = 0.0;
    for queues in [1, 4] {
        let (db, outbox) = fresh_outbox(server_url, &format!("drain{queues}")).await;
        for q in 1..=queues {
            route(&outbox, &format!("q{q}"), "bench").await;
        }
        let published = Instant::now();
        let publish_rate = publish(&outbox, args.messages, args.batch, args.workers).await;
        let publish_secs = published.elapsed().as_secs_f64();
        vacuum(&db).await;
        for batch in [args.batch] {
            let started = Instant::now();
            let drained = drain(&outbox, queues, batch, args.workers).await;
            let drain_secs = started.elapsed().as_secs_f64();
            let delivered = drained.delivered;
            println!(
                "drain         {delivered:>8} deliveries ({queues} queue{}), {batch:>5}/claim, {} workers: {:>9.0} deliveries/s (per delivery: claim {:.1} us, complete {:.1} us)",
                if queues == 1 { "" } else { "s" },
                args.workers,
                delivered as f64 / drain_secs,
                drained.claiming.as_secs_f64() * 1e6 / delivered as f64,
                drained.completing.as_secs_f64() * 1e6 / delivered as f64,
            );
            let per_message = (publish_secs + drain_secs) / args.messages as f64;
            if queues == 1 {
                one_queue_cost = per_message;
            } else {
                println!(
                    "fan-out       publish ({publish_rate:.0} messages/s) + drain to {queues} queues costs {:.2}x one queue per message",
                    per_message / one_queue_cost
                );
            }
        }
        drop(db);
    }
}

async fn deep_scenario(args: &Args, server_url: &str) {
    let (db, outbox) = fresh_outbox(server_url, "deep").await;
    route(&outbox, "q1", "bench").await;
    let started = Instant::now();
    publish(&outbox, args.deep, 10_000, args.workers).await;
    vacuum(&db).await;
    println!(
        "deep queue    {} messages published and vacuumed in {:.1} s",
        args.deep,
        started.elapsed().as_secs_f64()
    );
    for limit in [1, 100, 1_000] {
        let mut latencies = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            let claimed = outbox
                .claim(&[ClaimSpec::new("q1", ["bench.run"])], limit, LEASE)
                .await
                .expect("claim");
            latencies.push(started.elapsed());
            let completions: Vec<CompletedDelivery> = claimed
                .iter()
                .map(|d| CompletedDelivery::new(d.key(), Completion::Delivered))
                .collect();
            outbox.complete(&completions).await.expect("complete");
        }
        latencies.sort();
        println!(
            "claim latency {} pending, {limit:>5}/claim: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            args.deep,
            ms(latencies[latencies.len() / 2]),
            ms(latencies[latencies.len() * 99 / 100]),
            ms(*latencies.last().expect("samples"))
        );
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn fresh_outbox(server_url: &str, name: &str) -> (PgPool, Outbox) {
    let database = format!("courier_bench_{name}");
    let mut admin = PgConnection::connect(server_url).await.expect("connect");
    for statement in [
        format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
        format!("CREATE DATABASE {database}"),
    ] {
        sqlx::raw_sql(&statement)
            .execute(&mut admin)
            .await
            .expect("create database");
    }
    let options: PgConnectOptions = server_url
        .parse::<PgConnectOptions>()
        .expect("url")
        .database(&database);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect_with(options)
        .await
        .expect("pool");
    let outbox = Outbox::new(pool.clone(), OutboxOptions::default()).expect("outbox");
    outbox.migrate().await.expect("migrate");
    (pool, outbox)
}

async fn route(outbox: &Outbox, queue: &str, topic: &str) {
    outbox
        .declare(&Route::new(queue, topic, ["run"]).expect("route"))
        .await
        .expect("declare");
}

async fn truncate(pool: &PgPool) {
    sqlx::raw_sql("TRUNCATE courier.messages, courier.deliveries, courier.queue_counters")
        .execute(pool)
        .await
        .expect("truncate");
    vacuum(pool).await;
}

async fn vacuum(pool: &PgPool) {
    for statement in [
        "VACUUM ANALYZE courier.messages, courier.deliveries",
        "CHECKPOINT",
    ] {
        sqlx::raw_sql(statement)
            .execute(pool)
            .await
            .expect("vacuum");
    }
}

/// Publishes `total` messages in batches from `workers` concurrent publishers; messages/s.
async fn publish(outbox: &Outbox, total: usize, batch: usize, workers: usize) -> f64 {
    let batches: Vec<Vec<NewMessage>> = (0..total)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(|chunk| {
            chunk
                .iter()
                .map(|n| {
                    NewMessage::new("bench.run", &serde_json::json!({ "n": n })).expect("message")
                })
                .collect()
        })
        .collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let outbox = outbox.clone();
        let queue = std::sync::Arc::clone(&queue);
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(batch) = queue.lock().expect("lock").pop() else {
                    return;
                };
                outbox
                    .publish(outbox.pool(), &batch)
                    .await
                    .expect("publish");
            }
        }));
    }
    for task in tasks {
        task.await.expect("publisher");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Claims and completes until every queue is empty, with `workers` workers per queue;
/// returns the deliveries made and the time spent in claims and in completions.
async fn drain(outbox: &Outbox, queues: usize, batch: usize, workers: usize) -> Drained {
    let mut tasks = Vec::new();
    for q in 1..=queues {
        for _ in 0..workers {
            let outbox = outbox.clone();
            let spec = ClaimSpec::new(format!("q{q}"), ["bench.run"]);
            tasks.push(tokio::spawn(async move {
                let mut drained = Drained::default();
                loop {
                    let started = Instant::now();
                    let claimed = outbox
                        .claim(std::slice::from_ref(&spec), batch as u32, LEASE)
                        .await
                        .expect("claim");
                    drained.claiming += started.elapsed();
                    if claimed.is_empty() {
                        return drained;
                    }
                    let completions: Vec<CompletedDelivery> = claimed
                        .iter()
                        .map(|d| CompletedDelivery::new(d.key(), Completion::Delivered))
                        .collect();
                    let started = Instant::now();
                    drained.delivered += outbox
                        .complete(&completions)
                        .await
                        .expect("complete")
                        .delivered;
                    drained.completing += started.elapsed();
                }
            }));
        }
    }
    let mut total = Drained::default();
    for task in tasks {
        let drained = task.await.expect("worker");
        total.delivered += drained.delivered;
        total.claiming += drained.claiming;
        total.completing += drained.completing;
    }
    total
}

#[derive(Debug, Default)]
struct Drained {
    delivered: usize,
    claiming: Duration,
    completing: Duration,
}

fn run_ceiling(script: &std::path::Path, server_url: &str) {
    let options: PgConnectOptions = server_url.parse().expect("url");
    println!(
        "pg-ceiling    {} against the same server:",
        script.display()
    );
    let status = Command::new("bash")
        .arg(script)
        .env("PGHOST_CEILING", options.get_host())
        .env("PGPORT_CEILING", options.get_port().to_string())
        .status();
    match status {
        Ok(status) if status.success() => {}
        other => println!("pg-ceiling did not complete: {other:?}"),
    }
}
