//! Plugin runtime costs: one sandboxed call of a no-op phase (fresh instance each time), one
//! host import round trip, and loading a component from the precompiled cache versus
//! compiling it. Needs the test components: `cargo xtask plugins`.
//!
//! Besides criterion's report, prints p50/p99 of the call latency measured over many
//! single calls (criterion reports means and medians of batches).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use vsm_host::runtime::bindings::{CallContext, Migration};
use vsm_host::runtime::config::{Limits, PluginEntry};
use vsm_host::runtime::{Backends, Direction, LoadedPlugin, Runtime, RuntimeConfig};

fn component(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugins").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|_| panic!("{} missing: run `cargo xtask plugins`", path.display()))
}

fn context(spec: &str) -> CallContext {
    CallContext {
        migration: Migration {
            name: "bench".into(),
            namespace: "default".into(),
            uid: "uid".into(),
            spec_json: spec.into(),
            source_servers: vec![],
            target_servers: vec![],
        },
        attempt: 1,
        dry_run: false,
        started_at_ms: 0,
    }
}

struct Fixture {
    tokio: tokio::runtime::Runtime,
    plugin: LoadedPlugin,
    backends: Backends,
}

impl Fixture {
    fn new() -> Self {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let entry = PluginEntry { grant_declared: true, ..Default::default() };
        let plugin = tokio.block_on(rt.load("exerciser", &component("exerciser"), &entry, Limits::default())).unwrap();
        Fixture { tokio, plugin, backends: Backends::unavailable() }
    }

    fn call(&self, spec: &str) {
        let report = self
            .tokio
            .block_on(self.plugin.call(
                &self.plugin.info.name,
                self.backends.clone(),
                context(spec),
                Direction::Execute,
                vec![],
            ))
            .unwrap();
        std::hint::black_box(report);
    }
}

const NOOP: &str = r#"{"action":"noop"}"#;
const CLOCK_1000: &str = r#"{"action":"clock","count":1000}"#;
const CLOCK_0: &str = r#"{"action":"clock","count":0}"#;

fn calls(c: &mut Criterion) {
    let f = Fixture::new();
    let mut g = c.benchmark_group("runtime");
    g.bench_function("instantiate+execute no-op phase", |b| b.iter(|| f.call(NOOP)));
    g.bench_function("execute with 1000 host imports (clock.now-ms)", |b| b.iter(|| f.call(CLOCK_1000)));
    g.finish();
}

fn loading(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let bytes = component("exerciser");
    let entry = PluginEntry { grant_declared: true, ..Default::default() };
    let cache = tempfile::tempdir().unwrap();
    let cached = Runtime::new(RuntimeConfig { cache_dir: Some(cache.path().into()), ..Default::default() }).unwrap();
    tokio.block_on(cached.load("exerciser", &bytes, &entry, Limits::default())).unwrap();
    let uncached = Runtime::new(RuntimeConfig::default()).unwrap();

    let mut g = c.benchmark_group("load component (incl. validation call)");
    g.sample_size(10);
    g.bench_function("from precompiled cache", |b| {
        b.iter(|| tokio.block_on(cached.load("exerciser", &bytes, &entry, Limits::default())).unwrap())
    });
    g.bench_function("compile", |b| {
        b.iter(|| tokio.block_on(uncached.load("exerciser", &bytes, &entry, Limits::default())).unwrap())
    });
    g.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn sample(f: &Fixture, spec: &str, n: usize) -> Vec<Duration> {
    for _ in 0..n / 10 {
        f.call(spec);
    }
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            f.call(spec);
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

/// p50/p99 of single calls, and the import round trip from the difference of medians.
fn latency_report() {
    let f = Fixture::new();
    let n = 5_000;
    let noop = sample(&f, NOOP, n);
    let clock0 = sample(&f, CLOCK_0, n / 5);
    let clock1000 = sample(&f, CLOCK_1000, n / 5);
    let import_ns = (percentile(&clock1000, 0.5).saturating_sub(percentile(&clock0, 0.5))).as_nanos() as f64 / 1000.0;
    println!("\n== runtime latency report ({n} single calls) ==");
    println!(
        "no-op call (fresh instance + execute): p50 {:.1} µs, p99 {:.1} µs, min {:.1} µs",
        us(percentile(&noop, 0.5)),
        us(percentile(&noop, 0.99)),
        us(noop[0])
    );
    println!(
        "host import round trip (clock.now-ms): {import_ns:.0} ns (median of 1000-import calls minus median of 0-import calls, / 1000)"
    );
}

fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

criterion_group!(benches, calls, loading);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    latency_report();
}
