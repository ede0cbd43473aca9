//! Shared setup of the phase integration tests (Preflight … UpdateInfrastructure): the
//! shared environment of the test binary, seeded with the simulated cluster, a harness
//! for one migration, the phase component, and comparisons of objects "field by field"
//! (spec, data, labels, annotations; never resourceVersion, managedFields or generation).
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::{Value, json};
use vsm_host::backends::state::full_key;
use vsm_host::runtime::bindings::Outcome;
use vsm_host::runtime::{Direction, LoadedPlugin};
use vsm_testenv::TestEnv;
use vsm_testenv::harness::{Harness, Run, target_spec};
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{SeedOptions, SeededCluster};

/// Only a guard against hanging.
pub const LIMIT: Duration = Duration::from_secs(300);

pub struct PhaseEnv {
    pub env: &'static TestEnv,
    pub cluster: SeededCluster,
    pub h: Harness,
    pub plugin: LoadedPlugin,
}

/// The binary's environment, seeded (default options), a migration `name` moving it to the
/// target vCenter, and the phase `component` loaded with what it declares granted.
pub async fn start(name: &str, component: &str) -> Result<PhaseEnv> {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let env = TestEnv::shared().await?;
    let cluster = vsm_testenv::sim::seed(env, &SeedOptions::default()).await.context("seeding")?;
    let h = Harness::new(env, name, target_spec(env)).await?;
    let plugin = h.phase(component).await?;
    Ok(PhaseEnv { env, cluster, h, plugin })
}

impl PhaseEnv {
    pub fn client(&self) -> kube::Client {
        self.h.client.clone()
    }

    pub async fn execute(&self) -> Result<Run> {
        self.h.run(&self.plugin, Direction::Execute).await
    }

    pub async fn rollback(&self) -> Result<Run> {
        self.h.run(&self.plugin, Direction::Rollback).await
    }

    /// One execute call (the harness's `run` retries retryable failures until it gives up).
    pub async fn execute_once(&self) -> Result<Outcome> {
        Ok(self.h.call(&self.plugin, Direction::Execute, 1, false).await?.0.outcome)
    }

    /// Execute; it must finish `done`.
    pub async fn execute_done(&self) -> Result<Run> {
        let run = self.execute().await?;
        ensure_done(&run, "execute")?;
        Ok(run)
    }

    /// Roll back; it must finish `done`.
    pub async fn rollback_done(&self) -> Result<Run> {
        let run = self.rollback().await?;
        ensure_done(&run, "rollback")?;
        Ok(run)
    }

    /// The migration's state store (`p.<phase>.<key>`, `m.<key>`).
    pub async fn state(&self) -> Result<BTreeMap<String, String>> {
        self.h.backends(false).state.load().await.map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    /// One migration-scope value.
    pub async fn shared_state(&self, key: &str) -> Result<Option<String>> {
        Ok(self.state().await?.get(&full_key("", vsm_host::runtime::bindings::Scope::Migration, key, false)).cloned())
    }

    /// Remove a state key (phase scope of `phase`, or migration scope when `phase` is None).
    pub async fn forget_state(&self, phase: Option<&str>, key: &str) -> Result<()> {
        use vsm_host::runtime::bindings::Scope;
        let full = match phase {
            Some(p) => full_key(p, Scope::Phase, key, false),
            None => full_key("", Scope::Migration, key, false),
        };
        self.h.backends(false).state.put(&full, None).await.map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    pub async fn secret(&self, ns: &str, name: &str) -> Result<Option<Secret>> {
        Ok(Api::<Secret>::namespaced(self.client(), ns).get_opt(name).await?)
    }

    pub async fn config_map(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>> {
        Ok(Api::<ConfigMap>::namespaced(self.client(), ns).get_opt(name).await?)
    }

    pub async fn deployment(&self, ns: &str, name: &str) -> Result<Deployment> {
        Ok(Api::<Deployment>::namespaced(self.client(), ns).get(name).await?)
    }

    pub async fn pods(&self, ns: &str, labels: &str) -> Result<Vec<Pod>> {
        Ok(Api::<Pod>::namespaced(self.client(), ns).list(&ListParams::default().labels(labels)).await?.items)
    }

    pub async fn infrastructure(&self) -> Result<DynamicObject> {
        Ok(o::infra_api(&self.client()).get(o::INFRA_NAME).await?)
    }

    pub async fn cpms(&self) -> Result<Option<DynamicObject>> {
        Ok(o::cpms_api(&self.client()).get_opt(o::CPMS_NAME).await?)
    }
}

pub fn ensure_done(run: &Run, what: &str) -> Result<()> {
    if !run.done() {
        bail!("{what} did not finish: {:?}", run.outcome);
    }
    Ok(())
}

/// The final outcome is a failure with exactly this message; returns whether retryable.
pub fn failed_with(run: &Run, message: &str) -> Result<bool> {
    match &run.outcome {
        Outcome::Failed(f) if f.message == message => Ok(f.retryable),
        other => bail!("expected failure {message:?}, got {other:?}"),
    }
}

/// A single outcome is a failure with exactly this message; returns whether retryable.
pub fn outcome_failed_with(outcome: &Outcome, message: &str) -> Result<bool> {
    match outcome {
        Outcome::Failed(f) if f.message == message => Ok(f.retryable),
        other => bail!("expected failure {message:?}, got {other:?}"),
    }
}

/// How many calls returned `wait`.
pub fn waits(run: &Run) -> usize {
    run.reports.iter().filter(|r| matches!(r.outcome, Outcome::Wait(_))).count()
}

/// What "the same object" means for these tests: spec, data, labels, annotations (and a
/// Secret's type); never resourceVersion, managedFields, generation or status.
pub fn content<T: serde::Serialize>(object: &T) -> Value {
    let v = serde_json::to_value(object).expect("objects serialize");
    json!({
        "spec": v.get("spec"),
        "data": v.get("data"),
        "type": v.get("type"),
        "labels": v.pointer("/metadata/labels"),
        "annotations": v.pointer("/metadata/annotations"),
    })
}

/// Fail with a field-by-field difference when two contents differ.
pub fn same_content(what: &str, before: &Value, after: &Value) -> Result<()> {
    if before == after {
        return Ok(());
    }
    let mut diffs = Vec::new();
    for field in ["spec", "data", "type", "labels", "annotations"] {
        if before.get(field) != after.get(field) {
            diffs.push(format!("{field}: before {}\n  after {}", before[field], after[field]));
        }
    }
    bail!("{what} differs:\n{}", diffs.join("\n"))
}

/// The resourceVersion of an object.
pub fn rv<T: kube::Resource>(o: &T) -> String {
    o.meta().resource_version.clone().unwrap_or_default()
}

/// Poll `f` until it returns Ok, or fail after [`LIMIT`] with what it last said.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(last) if start.elapsed() > LIMIT => bail!("{what}: still not true after {LIMIT:?}; last: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
