//! The documentation's commands, run. Every `sh` block in README.md and docs/*.md (except
//! BENCHMARKS.md, which its authors keep) carries a marker in an HTML comment right above
//! it:
//!
//! - `<!-- run -->` (or `<!-- run in=DIR -->`): run here, verbatim, with bash (`set -euo
//!   pipefail`), against the real test environment, in a scratch directory that stands
//!   for the reader's (`crds/`, `deploy/` and `target/` of the checkout are linked into it;
//!   `in=repo` runs in the checkout, `in=SUB` in a subdirectory of the scratch directory);
//! - `<!-- ci: FILE -->`: what CI runs (each command must appear in FILE);
//! - `<!-- not run: REASON -->`: cannot run here (no container engine, no pods).
//!
//! The environment plays what the commands assume and this one lacks: the operator runs
//! in-process as the Deployment would (its ServiceAccount, deploy/'s RBAC and ConfigMap;
//! restarted when a command restarts the Deployment), the cluster simulator plays
//! OpenShift, and the reader's own files (credentials, migrations) are written for this
//! environment's vCenters. The binaries are the workspace's (built first).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::{Value, json};
use vsm_api::{ApprovalMode, MigrationState, Mode, VSphereMigration, VSphereMigrationSpec};
use vsm_host::operator::Operator;
use vsm_host::runtime::config::PluginConfig;
use vsm_testenv::TestEnv;
use vsm_testenv::deploy;
use vsm_testenv::harness::{NAMESPACE, TARGET_CREDS, VCENTER_CA, plugin_dir, target_spec};
use vsm_testenv::sim::{SeedOptions, SimHandle, SimOptions, Simulator, seed};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("the checkout")
}

#[derive(Debug, Clone, PartialEq)]
enum Marker {
    Run { dir: Option<String> },
    Ci(String),
    NotRun(String),
}

#[derive(Debug, Clone)]
struct Block {
    doc: String,
    line: usize,
    lang: String,
    marker: Option<Marker>,
    text: String,
}

fn parse_marker(line: &str) -> Option<Marker> {
    let inner = line.trim().strip_prefix("<!--")?.strip_suffix("-->")?.trim();
    if inner == "run" {
        return Some(Marker::Run { dir: None });
    }
    if let Some(dir) = inner.strip_prefix("run in=") {
        return Some(Marker::Run { dir: Some(dir.trim().to_string()) });
    }
    if let Some(file) = inner.strip_prefix("ci:") {
        return Some(Marker::Ci(file.trim().to_string()));
    }
    inner.strip_prefix("not run:").map(|r| Marker::NotRun(r.trim().to_string()))
}

/// The fenced blocks of a Markdown file, with the marker above each.
fn blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = path.strip_prefix(root()).unwrap_or(path).display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(lang) = lines[i].trim_start().strip_prefix("```").filter(|l| !l.is_empty()) {
            let start = i;
            let marker = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).and_then(|l| parse_marker(l));
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                body.push(lines[i]);
                i += 1;
            }
            out.push(Block {
                doc: doc.clone(),
                line: start + 1,
                lang: lang.trim().to_string(),
                marker,
                text: body.join("\n") + "\n",
            });
        }
        i += 1;
    }
    out
}

fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md") && !p.ends_with("BENCHMARKS.md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

fn shell(b: &Block) -> bool {
    matches!(b.lang.as_str(), "sh" | "bash" | "shell" | "console")
}

#[test]
fn every_command_block_is_run_by_a_test_or_by_ci_and_every_yaml_block_parses() {
    let mut problems = Vec::new();
    let mut not_run = Vec::new();
    let mut runs = 0;
    for path in documents() {
        for b in blocks(&path) {
            let at = format!("{}:{}", b.doc, b.line);
            if b.lang == "yaml" {
                for doc in serde_yaml::Deserializer::from_str(&b.text) {
                    if let Err(e) = <serde_yaml::Value as serde::Deserialize>::deserialize(doc) {
                        problems.push(format!("{at}: YAML does not parse: {e}"));
                    }
                }
            }
            if !shell(&b) {
                continue;
            }
            match &b.marker {
                None => problems.push(format!("{at}: a command block without a marker (run / ci / not run)")),
                Some(Marker::Run { .. }) => runs += 1,
                Some(Marker::Ci(file)) => {
                    let ci = std::fs::read_to_string(root().join(file)).unwrap_or_default();
                    for line in b.text.lines().map(|l| l.split(" #").next().unwrap_or("").trim()) {
                        if !line.is_empty() && !ci.lines().any(|c| c.trim() == line) {
                            problems.push(format!("{at}: `{line}` is not what {file} runs"));
                        }
                    }
                }
                Some(Marker::NotRun(reason)) => not_run.push(format!("{at}: {reason}")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(runs >= 20, "only {runs} command blocks are run");
    // Few, and each says why.
    assert!(not_run.len() <= 6, "too many commands not run:\n{}", not_run.join("\n"));
    eprintln!("not run:\n  {}", not_run.join("\n  "));
}

#[test]
fn local_links_and_paths_named_in_the_docs_exist() {
    let mut missing = Vec::new();
    for path in documents() {
        let text = std::fs::read_to_string(&path).unwrap();
        let base = path.parent().unwrap().to_path_buf();
        // Markdown links to files in the repository.
        for part in text.split("](").skip(1) {
            let target = part.split(')').next().unwrap_or("").split('#').next().unwrap_or("");
            if !target.is_empty() && !target.contains("://") && !base.join(target).exists() {
                missing.push(format!("{}: link {target}", path.display()));
            }
        }
        // `deploy/...`, `host/...` and the like in backticks.
        for part in text.split('`').skip(1).step_by(2) {
            let first = part.split_whitespace().next().unwrap_or("");
            let is_path = ["deploy/", "host/", "plugins/", "tests/", "wit/", "crds/", "docs/"]
                .iter()
                .any(|p| first.starts_with(p));
            if is_path && !first.contains('<') && !first.contains('*') && !root().join(first).exists() {
                missing.push(format!("{}: path {first}", path.display()));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Build the binaries the commands call and put them on a PATH of their own.
async fn binaries() -> Result<tempfile::TempDir> {
    let out = tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "-p", "vsm-host", "-p", "kubectl-vsm", "-p", "vsm-plugin"])
        .args(["--bin", "vsm-operator", "--bin", "kubectl-vsm", "--bin", "vsm-plugin"])
        .current_dir(root())
        .output()
        .await?;
    if !out.status.success() {
        bail!("building the binaries: {}", String::from_utf8_lossy(&out.stderr));
    }
    let dir = tempfile::tempdir()?;
    for bin in ["vsm-operator", "kubectl-vsm", "vsm-plugin"] {
        std::os::unix::fs::symlink(root().join("target/debug").join(bin), dir.path().join(bin))?;
    }
    Ok(dir)
}

/// Runs blocks the way a reader would, with the variables and directories of this
/// environment.
struct Runner {
    scratch: tempfile::TempDir,
    vars: BTreeMap<String, String>,
}

impl Runner {
    fn new(bin: &Path) -> Result<Runner> {
        let scratch = tempfile::Builder::new().prefix("vsm-docs-").tempdir()?;
        for link in ["crds", "deploy", "target"] {
            std::os::unix::fs::symlink(root().join(link), scratch.path().join(link))?;
        }
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let vars = BTreeMap::from([("PATH".to_string(), path), ("NO_COLOR".to_string(), "1".to_string())]);
        Ok(Runner { scratch, vars })
    }

    fn write(&self, name: &str, docs: &[Value]) -> Result<()> {
        let text: Vec<String> = docs.iter().map(|d| serde_yaml::to_string(d).unwrap()).collect();
        std::fs::write(self.scratch.path().join(name), text.join("---\n"))?;
        Ok(())
    }

    async fn run(&self, b: &Block) -> Result<String> {
        let Some(Marker::Run { dir }) = &b.marker else { return Ok(String::new()) };
        let cwd = match dir.as_deref() {
            None => self.scratch.path().to_path_buf(),
            Some("repo") => root(),
            Some(sub) => self.scratch.path().join(sub),
        };
        eprintln!("--- {}:{} (in {})\n{}", b.doc, b.line, cwd.display(), b.text);
        let script = format!("set -euo pipefail\n{}", b.text);
        let out = tokio::process::Command::new("bash")
            .args(["-c", &script])
            .current_dir(&cwd)
            .envs(&self.vars)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .with_context(|| format!("{}:{}", b.doc, b.line))?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        eprintln!("{text}");
        if !out.status.success() {
            bail!("{}:{} failed ({}):\n{}\n{text}", b.doc, b.line, out.status, b.text);
        }
        Ok(text)
    }
}

/// The environment the install commands and the walk-through assume: a seeded cluster,
/// its simulated controllers, and (once `deploy/` is applied) the operator.
struct Cluster {
    env: TestEnv,
    sim: Option<SimHandle>,
    operator: Option<Operator>,
    plugins: PathBuf,
}

impl Cluster {
    async fn start(plugins: PathBuf) -> Result<Cluster> {
        let env = TestEnv::start_with_machine_api().await?;
        seed(&env, &SeedOptions { workers: 2, ..Default::default() }).await?;
        let sim = Simulator::start(&env, SimOptions::instant());
        Ok(Cluster { env, sim: Some(sim), operator: None, plugins })
    }

    /// Start (or restart, as a rollout would) the operator with the plugin ConfigMap as the
    /// API server has it now. Returns its metrics address.
    async fn start_operator(&mut self) -> Result<String> {
        if let Some(op) = self.operator.take() {
            op.stop().await;
        }
        let cms: Api<ConfigMap> = Api::namespaced(self.env.client(), NAMESPACE);
        let cm = cms.get(deploy::PLUGIN_CONFIGMAP).await?;
        let text = cm.data.unwrap_or_default().remove(deploy::PLUGIN_CONFIG_KEY).context("plugins.yaml")?;
        let mut config = deploy::operator_config(&self.plugins, "vsphere-migration-operator-docs")?;
        config.plugin_config = PluginConfig::from_yaml(&text)?;
        let (client, _) = deploy::operator_client(&self.env).await?;
        let op = Operator::start(client, config).await?;
        let addr = format!("http://{}", op.addr.context("no metrics address")?);
        self.operator = Some(op);
        Ok(addr)
    }

    async fn stop(mut self) {
        if let Some(op) = self.operator.take() {
            op.stop().await;
        }
        if let Some(sim) = self.sim.take() {
            sim.stop().await;
        }
    }

    /// The reader's Secrets and migrations, for this environment's vCenters.
    fn credentials(&self) -> Value {
        let dst = self.env.target();
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": TARGET_CREDS, "namespace": NAMESPACE},
            "stringData": {format!("{}.username", dst.host()): dst.username, format!("{}.password", dst.host()): dst.password}})
    }

    fn ca(&self) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": VCENTER_CA, "namespace": NAMESPACE},
            "stringData": {"ca.crt": self.env.ca_pem()}})
    }

    fn migration(&self, name: &str, edit: impl FnOnce(&mut vsm_api::MigrationSpec)) -> Value {
        let mut spec = target_spec(&self.env);
        spec.health.stability_window = Some("5s".into());
        edit(&mut spec);
        let mut m = serde_json::to_value(VSphereMigration::new(name, VSphereMigrationSpec { spec })).unwrap();
        m["metadata"]["namespace"] = json!(NAMESPACE);
        m
    }
}

fn doc_blocks(name: &str) -> Vec<Block> {
    blocks(&root().join(name)).into_iter().filter(shell).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_and_operations_commands_run() -> Result<()> {
    let bin = binaries().await?;
    let mut runner = Runner::new(bin.path())?;
    let mut cluster: Option<Cluster> = None;
    let mut blocks = doc_blocks("README.md");
    blocks.extend(doc_blocks("docs/OPERATIONS.md"));
    blocks.extend(doc_blocks("docs/ARCHITECTURE.md"));
    for b in &blocks {
        let repo = matches!(&b.marker, Some(Marker::Run { dir: Some(d) }) if d == "repo");
        if !repo && cluster.is_none() && matches!(b.marker, Some(Marker::Run { .. })) {
            let c = Cluster::start(plugin_dir()).await?;
            let dst = c.env.target();
            runner.vars.insert("KUBECONFIG".into(), c.env.kubeconfig_path().display().to_string());
            runner.vars.insert("VCENTER".into(), format!("{}:{}", dst.host(), dst.port()));
            runner.write("target-credentials.yaml", &[c.credentials()])?;
            runner.write(
                "plan.yaml",
                &[
                    c.ca(),
                    c.migration("move-plan", |s| {
                        s.mode = Mode::Plan;
                        s.state = MigrationState::Running;
                    }),
                ],
            )?;
            runner.write(
                "migration.yaml",
                &[
                    c.ca(),
                    c.migration("move-with-approvals", |s| {
                        s.approval_mode = ApprovalMode::Manual;
                        s.state = MigrationState::Pending;
                    }),
                ],
            )?;
            cluster = Some(c);
        }
        runner.run(b).await?;
        if b.text.contains("kubectl apply -f deploy/") {
            // What the Deployment would now run.
            let c = cluster.as_mut().context("the install ran without a cluster")?;
            let addr = c.start_operator().await?;
            runner.vars.insert("OPERATOR".into(), addr);
        }
    }
    if let Some(c) = cluster {
        c.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_tutorial_runs() -> Result<()> {
    let bin = binaries().await?;
    let mut runner = Runner::new(bin.path())?;
    // The operator's plugin directory: the shipped components, where the tutorial copies its own.
    let plugins = tempfile::tempdir()?;
    for entry in std::fs::read_dir(plugin_dir()).context("run `cargo xtask plugins`")? {
        let p = entry?.path();
        std::fs::copy(&p, plugins.path().join(p.file_name().unwrap()))?;
    }
    runner.vars.insert("PLUGIN_DIR".into(), plugins.path().display().to_string());
    let mut cluster: Option<Cluster> = None;
    for b in &doc_blocks("docs/PLUGINS.md") {
        let needs_cluster = b.text.contains("kubectl ");
        if needs_cluster && cluster.is_none() {
            let mut c = Cluster::start(plugins.path().to_path_buf()).await?;
            for file in ["namespace.yaml", "rbac.yaml", "plugin-config.yaml", "deployment.yaml"] {
                deploy::apply(&c.env.client(), &deploy::manifest(file)?).await?;
            }
            c.start_operator().await?;
            runner.vars.insert("KUBECONFIG".into(), c.env.kubeconfig_path().display().to_string());
            runner.write(
                "node-gate-plan.yaml",
                &[
                    c.credentials(),
                    c.ca(),
                    c.migration("plan-with-node-gate", |s| {
                        s.mode = Mode::Plan;
                        s.plugins.insert(
                            "MonitorHealth".into(),
                            serde_json::from_value(json!({"component": "node-gate"})).unwrap(),
                        );
                    }),
                ],
            )?;
            cluster = Some(c);
        }
        runner.run(b).await?;
        if b.text.contains("vsm-plugin new node-gate") {
            // The crate builds in the workspace's target directory (no second one).
            std::os::unix::fs::symlink(root().join("target"), runner.scratch.path().join("node-gate/target"))?;
        }
        if b.text.contains("rollout restart deployment/vsphere-migration-operator") {
            // The rollout: the operator starts again and reads the new configuration.
            cluster.as_mut().context("no cluster")?.start_operator().await?;
        }
    }
    if let Some(c) = cluster {
        c.stop().await;
    }
    Ok(())
}

#[test]
fn markers_are_parsed() {
    assert_eq!(parse_marker("<!-- run -->"), Some(Marker::Run { dir: None }));
    assert_eq!(parse_marker(" <!-- run in=repo --> "), Some(Marker::Run { dir: Some("repo".into()) }));
    assert_eq!(parse_marker("<!-- ci: .ci/run -->"), Some(Marker::Ci(".ci/run".into())));
    assert_eq!(parse_marker("<!-- not run: no pods -->"), Some(Marker::NotRun("no pods".into())));
    assert_eq!(parse_marker("<!-- something else -->"), None);
}
