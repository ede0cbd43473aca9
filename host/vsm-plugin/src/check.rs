//! `vsm-plugin test COMPONENT.wasm`: run a phase component the way the operator runs it,
//! against the real test environment (kube-apiserver, etcd, two vCenter simulators, a
//! seeded OpenShift cluster and its simulated controllers), and check it:
//!
//! 1. execute runs to `done`, without a call outside its declared capabilities;
//! 2. a re-run is idempotent: `done` again, no object it changed changes again, no vSphere
//!    object created again, no new backup;
//! 3. rollback (if it has one) puts every object it changed back as it was, removes what it
//!    created in vCenter, and is idempotent too;
//! 4. a capability audit: what it called, by verb and resource, and which declared
//!    capabilities it never used (ask for less).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use vsm_api::MigrationSpec;
use vsm_host::backends::journal::{Entry, EntryKind};
use vsm_host::backends::kubernetes::{get_json, strip_server_fields};
use vsm_host::runtime::bindings::{CallContext, Migration, Outcome};
use vsm_host::runtime::config::{Limits, PluginEntry};
use vsm_host::runtime::{Direction, LoadedPlugin};
use vsm_testenv::TestEnv;
use vsm_testenv::harness::{Harness, target_spec};
use vsm_testenv::sim::{SeedOptions, SimOptions, Simulator, seed};

use crate::Error;
use crate::audit::{Audited, Call, CallLog};

#[derive(Debug, Clone)]
pub struct TestOptions {
    pub component: PathBuf,
    /// Worker machines in the simulated cluster.
    pub workers: u32,
    /// A MigrationSpec (YAML or JSON) instead of the default one (the seeded cluster to the
    /// target simulator).
    pub spec: Option<PathBuf>,
    /// Give up on a run after this long.
    pub timeout: Duration,
}

/// One check and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// Calls by kind, for the audit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct CallCount {
    pub direction: String,
    pub system: String,
    pub verb: String,
    pub what: String,
    pub namespace: Option<String>,
    pub count: usize,
    pub errors: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestReport {
    pub component: String,
    pub phase: String,
    pub version: String,
    pub sha256: String,
    pub checks: Vec<Check>,
    pub calls: Vec<CallCount>,
    /// Declared Kubernetes permissions (verb group/resource scope) and vSphere classes never used.
    pub unused_capabilities: Vec<String>,
    pub denials: Vec<String>,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

struct RunResult {
    outcome: Outcome,
    calls: u32,
    denials: Vec<String>,
    /// The backups the calls listed (written, or found from an earlier run).
    backups: BTreeSet<String>,
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Done(m) => format!("done: {m}"),
        Outcome::Wait(w) => format!("wait ({}%): {}", w.progress, w.message),
        Outcome::Failed(f) => format!("failed{}: {}", if f.retryable { " (retryable)" } else { "" }, f.message),
    }
}

/// Call the phase until it is done or fails for good, as the operator would (waits are
/// shortened; a retryable failure is retried).
async fn run(
    h: &Harness,
    plugin: &LoadedPlugin,
    direction: Direction,
    log: &CallLog,
    timeout: Duration,
) -> Result<RunResult, Error> {
    let started_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let spec = &h.migration.spec.spec;
    let sources: Vec<String> = h.sources.iter().map(|s| s.server.clone()).collect();
    let targets: Vec<String> = spec.target_servers().into_iter().map(str::to_string).collect();
    let servers: Vec<String> = sources.iter().chain(targets.iter()).cloned().collect();
    let deadline = Instant::now() + timeout;
    let mut denials = Vec::new();
    let mut backups = BTreeSet::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let b = h.backends(false);
        let backends = b.backends.clone().observed(Arc::new(Audited { log: log.clone() }));
        let ctx = CallContext {
            migration: Migration {
                name: h.migration.metadata.name.clone().unwrap_or_default(),
                namespace: h.migration.metadata.namespace.clone().unwrap_or_default(),
                uid: h.migration.metadata.uid.clone().unwrap_or_default(),
                spec_json: serde_json::to_string(spec).expect("the spec serializes"),
                source_servers: sources.clone(),
                target_servers: targets.clone(),
            },
            attempt,
            dry_run: false,
            started_at_ms: started_ms,
        };
        let report = plugin.call(&plugin.info.name, backends, ctx, direction, servers.clone()).await?;
        denials.extend(report.denials.clone());
        backups.extend(b.outputs.take().backups.into_iter().map(|b| b.name));
        let pause = match &report.outcome {
            Outcome::Wait(w) => Duration::from_millis(w.after_ms).min(Duration::from_millis(250)),
            Outcome::Failed(f) if f.retryable => Duration::from_millis(500),
            _ => return Ok(RunResult { outcome: report.outcome, calls: attempt, denials, backups }),
        };
        if Instant::now() > deadline {
            return Ok(RunResult { outcome: report.outcome, calls: attempt, denials, backups });
        }
        tokio::time::sleep(pause).await;
    }
}

/// The phase's journal entries (what it changed, with before-images).
async fn journal(h: &Harness, phase: &str) -> Result<Vec<Entry>, Error> {
    let entries =
        h.backends(false).journal.list(EntryKind::Journal, Some(phase)).await.map_err(|e| Error::Env(e.to_string()))?;
    entries.into_iter().map(|r| r.map(|s| s.entry).map_err(|e| Error::Env(e.to_string()))).collect()
}

/// The object now, without server-owned fields; None if absent.
async fn current(h: &Harness, entry: &Entry) -> Result<Option<Value>, Error> {
    let Entry::Object { namespace, name, .. } = entry else { return Ok(None) };
    let ty = entry.resolved_type().expect("object entries have a type");
    match get_json(&h.client, &ty, namespace.as_deref(), name).await {
        Ok(v) => Ok(v.map(|mut v| {
            strip_server_fields(&mut v);
            v
        })),
        Err(e) => Err(Error::Env(format!("reading {}: {e:?}", entry.subject()))),
    }
}

fn stripped(v: &Option<Value>) -> Option<Value> {
    v.clone().map(|mut v| {
        strip_server_fields(&mut v);
        v
    })
}

/// Whether the rollback undid a vSphere entry: what the phase created is gone, what it
/// deleted is back. A message when not.
async fn vsphere_not_undone(h: &Harness, entry: &Entry) -> Result<Option<String>, Error> {
    let env_err = |e: vsm_vsphere::VsphereError| Error::Env(e.to_string());
    let still = match entry {
        Entry::Object { .. } => return Ok(None),
        Entry::Folder { server, created_from, .. } => {
            let c = h.vsphere(server).await.map_err(|e| Error::Env(e.to_string()))?;
            match c.find(vsm_vsphere::ObjectKind::Folder, created_from).await {
                Ok(_) => true,
                Err(vsm_vsphere::VsphereError::NotFound { .. }) => false,
                Err(e) => return Err(env_err(e)),
            }
        }
        Entry::Category { server, name, .. } => {
            let c = h.vsphere(server).await.map_err(|e| Error::Env(e.to_string()))?;
            c.category_id(name).await.map_err(env_err)?.is_some()
        }
        Entry::Tag { server, category_id, name, .. } => {
            let c = h.vsphere(server).await.map_err(|e| Error::Env(e.to_string()))?;
            match c.tag_id(category_id, name).await {
                Ok(id) => id.is_some(),
                Err(vsm_vsphere::VsphereError::NotFound { .. }) => false,
                Err(e) => return Err(env_err(e)),
            }
        }
        Entry::Attachment { server, tag_id, target } => {
            let c = h.vsphere(server).await.map_err(|e| Error::Env(e.to_string()))?;
            let mo = vsm_host::backends::vcenter::from_ref_json(target).map_err(|e| Error::Env(format!("{e:?}")))?;
            c.list_attached_tags(&mo).await.map_err(env_err)?.iter().any(|t| t.id == *tag_id)
        }
        // What the phase deleted must be back.
        Entry::RemovedFolder { server, path } => {
            let c = h.vsphere(server).await.map_err(|e| Error::Env(e.to_string()))?;
            let back = match c.find(vsm_vsphere::ObjectKind::Folder, path).await {
                Ok(_) => true,
                Err(vsm_vsphere::VsphereError::NotFound { .. }) => false,
                Err(e) => return Err(env_err(e)),
            };
            return Ok((!back).then(|| format!("{} was not created again", entry.subject())));
        }
        Entry::RemovedCategory { server, category, .. } => {
            let c = h.vsphere(server).await.map_err(|e| Error::Env(e.to_string()))?;
            let back = c.category_id(&category.name).await.map_err(env_err)?.is_some();
            return Ok((!back).then(|| format!("{} was not created again", entry.subject())));
        }
        Entry::RemovedTag { server, category, tag } => {
            let c = h.vsphere(server).await.map_err(|e| Error::Env(e.to_string()))?;
            let back = match c.category_id(category).await.map_err(env_err)? {
                Some(id) => c.tag_id(&id, &tag.name).await.map_err(env_err)?.is_some(),
                None => false,
            };
            return Ok((!back).then(|| format!("{} was not created again", entry.subject())));
        }
    };
    Ok(still.then(|| format!("{} is still there", entry.subject())))
}

fn load_spec(path: &Path) -> Result<MigrationSpec, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    serde_yaml::from_str(&text).map_err(|e| Error::Usage(format!("{}: not a MigrationSpec: {e}", path.display())))
}

fn check(checks: &mut Vec<Check>, name: &str, passed: bool, detail: impl Into<String>) {
    checks.push(Check { name: name.into(), passed, detail: detail.into() });
}

fn audit(plugin: &LoadedPlugin, calls: &[Call]) -> (Vec<CallCount>, Vec<String>) {
    type Key = (String, String, String, String, Option<String>);
    let mut counts: BTreeMap<Key, (usize, usize)> = BTreeMap::new();
    for c in calls {
        let key = (c.direction.clone(), c.system.clone(), c.verb.clone(), c.what.clone(), c.namespace.clone());
        let e = counts.entry(key).or_default();
        e.0 += 1;
        e.1 += usize::from(c.error.is_some());
    }
    let summary: Vec<CallCount> = counts
        .into_iter()
        .map(|((direction, system, verb, what, namespace), (count, errors))| CallCount {
            direction,
            what: if system == "event" { "(event)".into() } else { what },
            system,
            verb,
            namespace,
            count,
            errors,
        })
        .collect();
    let used: BTreeSet<(String, String, Option<String>)> = calls
        .iter()
        .filter(|c| c.system == "kube")
        .map(|c| (c.verb.clone(), c.what.clone(), c.namespace.clone()))
        .collect();
    let mut unused = Vec::new();
    for rule in &plugin.caps.declared.kube {
        let group = if rule.group.is_empty() { "core" } else { rule.group.as_str() };
        let what = format!("{group}/{}", rule.resource);
        for verb in &rule.verbs {
            let hit = used
                .iter()
                .any(|(v, w, ns)| v == verb && *w == what && (rule.namespace.is_none() || rule.namespace == *ns));
            if !hit {
                let scope = rule.namespace.as_deref().map(|n| format!(" in {n}")).unwrap_or_default();
                unused.push(format!("kube {verb} {what}{scope}"));
            }
        }
    }
    for class in &plugin.caps.declared.vsphere {
        let used = calls.iter().any(|c| {
            c.system == "vsphere" && vsm_host::runtime::capability::VsphereClass::from(vsphere_class(&c.verb)) == *class
        });
        if !used {
            unused.push(format!(
                "vsphere {}",
                serde_json::to_value(class).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            ));
        }
    }
    (summary, unused)
}

fn vsphere_class(op: &str) -> vsm_host::runtime::bindings::VsphereCapability {
    use vsm_host::runtime::bindings::VsphereCapability as C;
    match op {
        "create-folder" | "delete-folder" => C::ManageFolders,
        "ensure-category" | "ensure-tag" | "delete-tag" | "delete-category" | "attach-tag" | "detach-tag" => {
            C::ManageTags
        }
        _ => C::ReadInventory,
    }
}

/// Run the whole test; `say` gets a line per step (progress for a terminal).
pub async fn test_component(opts: &TestOptions, say: &mut (dyn FnMut(&str) + Send)) -> Result<TestReport, Error> {
    let bytes =
        std::fs::read(&opts.component).map_err(|e| Error::Usage(format!("{}: {e}", opts.component.display())))?;
    let component = opts.component.file_stem().and_then(|s| s.to_str()).unwrap_or("component").to_string();
    let spec = opts.spec.as_deref().map(load_spec).transpose()?;

    say("starting the test environment (kube-apiserver, etcd, two vCenter simulators)…");
    let env = TestEnv::start_default().await.map_err(|e| Error::Env(format!("{e:#}")))?;
    say(&format!("seeding an OpenShift cluster with 3 masters and {} workers…", opts.workers));
    seed(&env, &SeedOptions { workers: opts.workers, ..Default::default() })
        .await
        .map_err(|e| Error::Env(format!("{e:#}")))?;
    let sim = Simulator::start(&env, SimOptions::instant());
    let result = test_in(&env, &bytes, &component, spec, opts.timeout, say).await;
    sim.stop().await;
    result
}

async fn test_in(
    env: &TestEnv,
    bytes: &[u8],
    component: &str,
    spec: Option<MigrationSpec>,
    timeout: Duration,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<TestReport, Error> {
    let spec = spec.unwrap_or_else(|| target_spec(env));
    let h = Harness::new(env, "vsm-plugin-test", spec).await.map_err(|e| Error::Env(format!("{e:#}")))?;
    let entry = PluginEntry { grant_declared: true, ..Default::default() };
    let plugin = h.runtime.load(component, bytes, &entry, Limits::default()).await?;
    let phase = plugin.info.name.clone();
    say(&format!("loaded {component}: phase {phase} {} (sha256 {})", plugin.info.version, &plugin.sha256[..16]));
    let log = CallLog::default();
    let mut checks = Vec::new();
    let mut denials = Vec::new();

    // 1. execute
    say("execute…");
    let first = run(&h, &plugin, Direction::Execute, &log, timeout).await?;
    denials.extend(first.denials.clone());
    let done = matches!(first.outcome, Outcome::Done(_));
    check(&mut checks, "execute", done, format!("{} after {} call(s)", outcome_text(&first.outcome), first.calls));
    check(
        &mut checks,
        "capabilities",
        first.denials.is_empty(),
        if first.denials.is_empty() {
            "no call outside the declared capabilities".to_string()
        } else {
            format!("refused: {}", first.denials.join("; "))
        },
    );
    let changed = journal(&h, &phase).await?;

    if done {
        // 2. idempotent re-run
        say("execute again (idempotence)…");
        let mut before = Vec::new();
        for e in &changed {
            before.push(current(&h, e).await?);
        }
        let calls_before = log.all().len();
        let second = run(&h, &plugin, Direction::Execute, &log, timeout).await?;
        denials.extend(second.denials.clone());
        let mut problems = Vec::new();
        if !matches!(second.outcome, Outcome::Done(_)) {
            problems.push(outcome_text(&second.outcome));
        }
        for (e, b) in changed.iter().zip(&before) {
            let now = current(&h, e).await?;
            if now != *b {
                let diff = match (b, &now) {
                    (Some(b), Some(n)) => vsm_host::backends::plan::diff::diff(b, n).join(", "),
                    _ => "created or deleted".into(),
                };
                problems.push(format!("{} changed again: {diff}", e.subject()));
            }
        }
        let created: Vec<String> = log.all()[calls_before..]
            .iter()
            .filter(|c| c.created)
            .map(|c| format!("{} on {}", c.verb, c.what))
            .collect();
        if !created.is_empty() {
            problems.push(format!("created again in vCenter: {}", created.join(", ")));
        }
        let new_backups: Vec<&String> = second.backups.difference(&first.backups).collect();
        if !new_backups.is_empty() {
            problems.push(format!("{} new backup(s): it changed something new", new_backups.len()));
        }
        check(
            &mut checks,
            "idempotent",
            problems.is_empty(),
            if problems.is_empty() {
                format!(
                    "re-run {} with no change to the {} thing(s) it changed",
                    outcome_text(&second.outcome),
                    changed.len()
                )
            } else {
                problems.join("; ")
            },
        );

        // 3. rollback
        if plugin.info.has_rollback {
            say("rollback…");
            let back = run(&h, &plugin, Direction::Rollback, &log, timeout).await?;
            denials.extend(back.denials.clone());
            let mut problems = Vec::new();
            if !matches!(back.outcome, Outcome::Done(_)) {
                problems.push(outcome_text(&back.outcome));
            }
            for e in &changed {
                if let Entry::Object { before, .. } = e {
                    let now = current(&h, e).await?;
                    let want = stripped(before);
                    if now != want {
                        let diff = match (&want, &now) {
                            (Some(w), Some(n)) => vsm_host::backends::plan::diff::diff(w, n).join(", "),
                            (None, Some(_)) => "it did not exist before, and still does".into(),
                            (Some(_), None) => "it existed before, and is gone".into(),
                            (None, None) => String::new(),
                        };
                        problems.push(format!("{} not restored: {diff}", e.subject()));
                    }
                } else if let Some(p) = vsphere_not_undone(&h, e).await? {
                    problems.push(p);
                }
            }
            let again = run(&h, &plugin, Direction::Rollback, &log, timeout).await?;
            if !matches!(again.outcome, Outcome::Done(_)) {
                problems.push(format!("a second rollback: {}", outcome_text(&again.outcome)));
            }
            check(
                &mut checks,
                "rollback",
                problems.is_empty(),
                if problems.is_empty() {
                    format!(
                        "{}; {} change(s) undone and checked; a second rollback is done too",
                        outcome_text(&back.outcome),
                        changed.len()
                    )
                } else {
                    problems.join("; ")
                },
            );
        } else {
            check(&mut checks, "rollback", true, "none declared (has-rollback false)");
        }
    }

    let (calls, unused) = audit(&plugin, &log.all());
    denials.sort();
    denials.dedup();
    Ok(TestReport {
        component: component.to_string(),
        phase,
        version: plugin.info.version.clone(),
        sha256: plugin.sha256.clone(),
        checks,
        calls,
        unused_capabilities: unused,
        denials,
    })
}

/// The human-readable report.
pub fn render(r: &TestReport) -> String {
    let mut s = String::new();
    s.push_str(&format!("{} — phase {} {} (sha256 {})\n\n", r.component, r.phase, r.version, r.sha256));
    for c in &r.checks {
        s.push_str(&format!("{} {:<13} {}\n", if c.passed { "PASS" } else { "FAIL" }, c.name, c.detail));
    }
    s.push_str("\ncapability audit (calls by direction, verb, resource):\n");
    for c in &r.calls {
        let ns = c.namespace.as_deref().map(|n| format!(" in {n}")).unwrap_or_default();
        let errors = if c.errors > 0 { format!(" ({} failed)", c.errors) } else { String::new() };
        s.push_str(&format!(
            "  {:<8} {:<7} {:<17} {}{ns}  ×{}{errors}\n",
            c.direction, c.system, c.verb, c.what, c.count
        ));
    }
    if !r.unused_capabilities.is_empty() {
        s.push_str("\ndeclared but never used (consider not asking for them):\n");
        for u in &r.unused_capabilities {
            s.push_str(&format!("  {u}\n"));
        }
    }
    if !r.denials.is_empty() {
        s.push_str("\nrefused calls:\n");
        for d in &r.denials {
            s.push_str(&format!("  {d}\n"));
        }
    }
    s.push_str(&format!("\n{}\n", if r.passed() { "PASSED" } else { "FAILED" }));
    s
}
