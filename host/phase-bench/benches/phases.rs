//! The 16 shipped phase components against a stub host, and the same phase logic called
//! natively, in the same run: per phase, one `execute` call on a fresh fixture (the call
//! that does the phase's work), as a component (fresh instance from the pre-linked
//! component, capability checks, canonical ABI, the adapter to the stub host) and
//! natively (`P::execute`, what the component's export runs). Needs the phase components:
//! `cargo xtask plugins`.
//!
//! Prints p50/p99 of single calls and the sandbox overhead (component p50 / native p50),
//! native and component samples interleaved so both see the same machine; writes them to
//! `target/bench/phases.json` (read by `cargo xtask bench`). Then criterion's own report
//! (`iter_batched`, fixture built outside the measurement) unless `VSM_BENCH_CRITERION=0`.
//!
//! `VSM_BENCH_SAMPLES` (default 2000) sets the single-call samples per phase and mode.

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use serde_json::json;
use vsm_host::runtime::{LoadedPlugin, Runtime, RuntimeConfig};
use vsm_phase_bench::{Case, cases, load, target_dir, wasm};
use vsm_sdk::Outcome;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

fn kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Done(_) => "done",
        Outcome::Wait(_) => "wait",
        Outcome::Failed(_) => "failed",
    }
}

struct Measured {
    component: &'static str,
    wasm: Vec<Duration>,
    native: Vec<Duration>,
    imports: u64,
    outcome: &'static str,
}

fn measure(tokio: &tokio::runtime::Runtime, case: &Case, plugin: &LoadedPlugin, n: usize) -> Measured {
    // Same outcome both ways, and neither failed: otherwise the comparison is meaningless.
    let (native, _) = case.native(case.prepare());
    let (component, imports, _) = tokio.block_on(wasm(plugin, case.prepare()));
    assert_eq!(native, component, "{}: native and component outcomes differ", case.component);
    assert!(!matches!(native, Outcome::Failed(_)), "{}: the fixture makes it fail: {native:?}", case.component);

    let (mut w, mut nat) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n + n / 10 {
        let p = case.prepare();
        let start = Instant::now();
        let o = case.native(p);
        let native_took = start.elapsed();
        std::hint::black_box(o);
        let p = case.prepare();
        let start = Instant::now();
        let o = tokio.block_on(wasm(plugin, p));
        let wasm_took = start.elapsed();
        std::hint::black_box(o);
        if i >= n / 10 {
            nat.push(native_took);
            w.push(wasm_took);
        }
    }
    w.sort();
    nat.sort();
    Measured { component: case.component, wasm: w, native: nat, imports, outcome: kind(&native) }
}

fn report(results: &[Measured], n: usize) {
    println!("\n== phases: one execute call on a fresh fixture, {n} single calls per mode (interleaved) ==");
    println!(
        "{:<22} {:>7} {:>8} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "phase", "outcome", "imports", "wasm p50", "wasm p99", "nat p50", "nat p99", "ratio"
    );
    let mut rows = Vec::new();
    for r in results {
        let (wp50, wp99) = (percentile(&r.wasm, 0.5), percentile(&r.wasm, 0.99));
        let (np50, np99) = (percentile(&r.native, 0.5), percentile(&r.native, 0.99));
        let ratio = us(wp50) / us(np50).max(0.001);
        println!(
            "{:<22} {:>7} {:>8} {:>8.1}µs {:>8.1}µs {:>8.1}µs {:>8.1}µs {:>7.1}×",
            r.component,
            r.outcome,
            r.imports,
            us(wp50),
            us(wp99),
            us(np50),
            us(np99),
            ratio
        );
        rows.push(json!({
            "component": r.component, "outcome": r.outcome, "imports": r.imports, "samples": n,
            "wasm_p50_us": us(wp50), "wasm_p99_us": us(wp99), "wasm_min_us": us(r.wasm[0]),
            "native_p50_us": us(np50), "native_p99_us": us(np99), "native_min_us": us(r.native[0]),
            "ratio_p50": ratio, "difference_p50_us": us(wp50) - us(np50),
        }));
    }
    let dir = target_dir().join("bench");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("phases.json");
    match std::fs::write(&path, serde_json::to_string_pretty(&json!({"phases": rows})).expect("json")) {
        Ok(()) => println!("written to {}", path.display()),
        Err(e) => println!("could not write {}: {e}", path.display()),
    }
}

fn main() {
    let n: usize = std::env::var("VSM_BENCH_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let cases = cases();
    let plugins: Vec<LoadedPlugin> = cases.iter().map(|c| tokio.block_on(load(&runtime, c.component))).collect();

    let results: Vec<Measured> = cases.iter().zip(&plugins).map(|(c, p)| measure(&tokio, c, p, n)).collect();
    report(&results, n);

    if std::env::var("VSM_BENCH_CRITERION").as_deref() == Ok("0") {
        return;
    }
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut g = c.benchmark_group("phase execute");
    for (case, plugin) in cases.iter().zip(&plugins) {
        g.bench_function(format!("{} wasm", case.component), |b| {
            b.iter_batched(|| case.prepare(), |p| tokio.block_on(wasm(plugin, p)), BatchSize::PerIteration)
        });
        g.bench_function(format!("{} native", case.component), |b| {
            b.iter_batched(|| case.prepare(), |p| case.native(p), BatchSize::PerIteration)
        });
    }
    g.finish();
    c.final_summary();
}
