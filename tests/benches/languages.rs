//! What a plugin costs by the language it is written in: the four `welcome-email` variants
//! (Rust, Python, JavaScript, C) measured on the production runtime for component size, cold
//! compile, load from the compiled-artifact cache, a call on a fresh instance and a call on a
//! reused instance.
//!
//! `cargo bench -p courier-tests --bench languages [-- --calls N --loads N]`
//!
//! Times are medians (p50) with the p90 beside them; compile and load include checking the
//! world and calling `describe`, as `courier run` does. Nothing here asserts a speed.

use std::path::Path;
use std::time::{Duration, Instant};

use courier_runtime::{
    Delivery, Limits, Message, Outcome, Plugin, PluginSettings, Runtime, RuntimeConfig,
};
use courier_tests::components::{
    WELCOME_EMAIL, WELCOME_EMAIL_C, WELCOME_EMAIL_JS, WELCOME_EMAIL_PY,
};

const VARIANTS: &[(&str, &str)] = &[
    ("rust", WELCOME_EMAIL),
    ("python", WELCOME_EMAIL_PY),
    ("javascript", WELCOME_EMAIL_JS),
    ("c", WELCOME_EMAIL_C),
];

struct Args {
    calls: usize,
    loads: usize,
}

fn args() -> Args {
    let mut args = Args {
        calls: 2_000,
        loads: 5,
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let mut value = |name: &str| -> usize {
            raw.next()
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match flag.as_str() {
            "--calls" => args.calls = value("--calls"),
            "--loads" => args.loads = value("--loads"),
            // `cargo bench` passes `--bench`; filters are not used here.
            _ => {}
        }
    }
    args
}

/// p50 and p90 of some durations.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

fn show(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros >= 10_000.0 {
        format!("{:.0} ms", micros / 1e3)
    } else if micros >= 1_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{micros:.1} µs")
    }
}

fn delivery() -> Delivery {
    Delivery {
        message: Message {
            id: uuid::Uuid::now_v7(),
            name: "user.created".into(),
            payload: br#"{"email": "ada@example.com"}"#.to_vec(),
            published_at_ms: 0,
            deliver_at_ms: 0,
            headers: Vec::new(),
        },
        queue: "emails".into(),
        attempt: 1,
    }
}

fn settings(max_uses: u32) -> PluginSettings {
    PluginSettings {
        limits: Limits {
            max_uses,
            ..Limits::default()
        },
        ..PluginSettings::default()
    }
}

async fn load(cache: &Path, path: &str, max_uses: u32) -> (Plugin, Duration) {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.to_path_buf()),
        ..RuntimeConfig::default()
    })
    .expect("a runtime");
    let started = Instant::now();
    let plugin = runtime
        .load_file(path, settings(max_uses))
        .await
        .unwrap_or_else(|error| panic!("cannot load {path}: {error}"));
    (plugin, started.elapsed())
}

async fn calls(plugin: &Plugin, count: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let delivery = delivery();
        let started = Instant::now();
        let report = plugin.handle(&delivery).await;
        samples.push(started.elapsed());
        assert_eq!(report.result, Ok(Outcome::Ok), "{:?}", report.logs);
    }
    samples
}

#[tokio::main]
async fn main() {
    let args = args();
    println!(
        "{:<11} {:>9} {:>10} {:>21} {:>21} {:>21}",
        "language",
        "size",
        "compile",
        "cache load p50/p90",
        "fresh call p50/p90",
        "reused call p50/p90"
    );
    for &(language, path) in VARIANTS {
        let size = std::fs::metadata(path).expect("the component exists").len();
        let cache = tempfile::tempdir().expect("a cache directory");

        // Cold: an empty cache, so this load compiles.
        let (plugin, compile) = load(cache.path(), path, 1).await;
        assert!(
            plugin.load_stats().compiled,
            "{language}: the first load must compile"
        );
        drop(plugin);

        // Warm: new runtimes (new engines) over the same cache directory.
        let mut cache_loads = Vec::new();
        for _ in 0..args.loads {
            let (plugin, took) = load(cache.path(), path, 1).await;
            assert!(
                !plugin.load_stats().compiled,
                "{language}: a cached load must not compile"
            );
            cache_loads.push(took);
        }

        let (fresh, _) = load(cache.path(), path, 1).await;
        calls(&fresh, 10).await;
        let fresh_calls = calls(&fresh, args.calls.min(500)).await;

        let (reused, _) = load(cache.path(), path, u32::MAX).await;
        calls(&reused, 10).await;
        let reused_calls = calls(&reused, args.calls).await;

        let (cache_p50, cache_p90) = percentiles(cache_loads);
        let (fresh_p50, fresh_p90) = percentiles(fresh_calls);
        let (reused_p50, reused_p90) = percentiles(reused_calls);
        println!(
            "{:<11} {:>6} KB {:>10} {:>21} {:>21} {:>21}",
            language,
            size / 1024,
            show(compile),
            format!("{} / {}", show(cache_p50), show(cache_p90)),
            format!("{} / {}", show(fresh_p50), show(fresh_p90)),
            format!("{} / {}", show(reused_p50), show(reused_p90)),
        );
    }
}
