//! The plugin runtime's costs on this machine, for the Rust `noop` and `welcome-email` plugins:
//! a call on a fresh instance (`max_uses = 1`: instantiate, call, drop), a call on a reused
//! warm instance, and loading a plugin from the compiled-artifact cache (check the world, map
//! the compiled code, link, instantiate and call `describe`).
//!
//! `cargo bench -p courier-tests --bench runtime`. Targets: fresh ≤ 25 µs, reused ≤ 2 µs,
//! cached load ≤ 5 ms (p50). Nothing here asserts a speed.

use std::path::PathBuf;

use courier_runtime::{
    Delivery, Limits, Message, Outcome, Plugin, PluginSettings, Runtime, RuntimeConfig,
};
use courier_tests::components::{NOOP, WELCOME_EMAIL};
use criterion::{Criterion, criterion_group, criterion_main};
use uuid::Uuid;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-cache")),
        max_instances: 64,
        ..RuntimeConfig::default()
    })
    .expect("the runtime starts")
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

fn delivery(name: &str, payload: &str, queue: &str) -> Delivery {
    Delivery {
        message: Message {
            id: Uuid::now_v7(),
            name: name.to_string(),
            payload: payload.as_bytes().to_vec(),
            published_at_ms: 1_700_000_000_000,
            deliver_at_ms: 1_700_000_000_000,
            headers: Vec::new(),
        },
        queue: queue.to_string(),
        attempt: 1,
    }
}

fn load(tokio: &tokio::runtime::Runtime, runtime: &Runtime, path: &str, max_uses: u32) -> Plugin {
    tokio
        .block_on(runtime.load_file(path, settings(max_uses)))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn calls(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = runtime();
    let cases = [
        ("noop", NOOP, delivery("bench.noop", "{}", "bench")),
        (
            "welcome-email",
            WELCOME_EMAIL,
            delivery("user.created", r#"{"email": "ada@example.com"}"#, "emails"),
        ),
    ];
    let mut group = c.benchmark_group("call");
    for (name, path, delivery) in &cases {
        for (mode, max_uses) in [("fresh", 1), ("reused", u32::MAX)] {
            let plugin = load(&tokio, &runtime, path, max_uses);
            let check = tokio.block_on(plugin.handle(delivery));
            assert_eq!(check.result, Ok(Outcome::Ok), "{name}");
            group.bench_function(format!("{name}/{mode}_instance"), |b| {
                b.to_async(&tokio).iter(|| plugin.handle(delivery));
            });
        }
    }
    group.finish();
}

fn loads(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = runtime();
    let mut group = c.benchmark_group("load");
    for (name, path) in [("noop", NOOP), ("welcome-email", WELCOME_EMAIL)] {
        let bytes = std::fs::read(path).unwrap();
        // The first load fills the cache; every measured one reads it.
        let first = load(&tokio, &runtime, path, 1);
        let cached = tokio
            .block_on(runtime.load(bytes.clone(), settings(1)))
            .unwrap();
        assert!(
            !cached.load_stats().compiled,
            "{name} is read from the cache"
        );
        drop(first);
        group.bench_function(format!("{name}/from_cache"), |b| {
            b.to_async(&tokio)
                .iter(|| runtime.load(bytes.clone(), settings(1)));
        });
    }
    group.finish();
}

criterion_group!(benches, calls, loads);
criterion_main!(benches);
