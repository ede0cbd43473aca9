//! `kubectl vsm` against the real environment: the operator runs as `deploy/` installs it
//! (the ServiceAccount's own token and RBAC, the plugin ConfigMap) with the shipped phases
//! on the simulated cluster, and a user drives migrations with the commands: a plan, then a
//! manual migration approved phase by phase (the operator records kubectl-vsm as the
//! approver), paused and resumed, its backups verified (and a tampered one caught), rolled
//! back. None of the operator's requests is refused on the way, the rollback included.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kubectl_vsm::{BackupCheck, Command, Error, Global, Output, Style, Verdict};
use serde_json::json;
use vsm_api::{
    ApprovalMode, MigrationSpec, MigrationState, Mode, PlannedPhase, Stage, VSphereMigration, VSphereMigrationSpec,
};
use vsm_host::operator::Operator;
use vsm_testenv::TestEnv;
use vsm_testenv::deploy;
use vsm_testenv::harness::{NAMESPACE, ensure_secrets, plugin_dir, target_spec};
use vsm_testenv::sim::{SeedOptions, SimOptions, Simulator, seed};

fn global(env: &TestEnv) -> Global {
    Global {
        namespace: Some(NAMESPACE.into()),
        context: None,
        kubeconfig: Some(env.kubeconfig_path().to_path_buf()),
        output: Output::Table,
        color: kubectl_vsm::ColorChoice::Never,
    }
}

/// Run one command as a user would (connecting through the kubeconfig); its output.
async fn vsm(env: &TestEnv, output: Output, command: Command) -> Result<String, Error> {
    let g = global(env);
    let target = kubectl_vsm::connect(&g).await?;
    let mut out = Vec::new();
    kubectl_vsm::execute(&target, command, output, Style::PLAIN, &mut out).await?;
    Ok(String::from_utf8(out).expect("utf-8 output"))
}

async fn ok(env: &TestEnv, command: Command) -> Result<String> {
    let shown = format!("{command:?}");
    vsm(env, Output::Table, command).await.with_context(|| format!("kubectl vsm {shown}"))
}

async fn until(
    env: &TestEnv,
    name: &str,
    what: &str,
    pred: impl Fn(&VSphereMigration) -> bool,
) -> Result<VSphereMigration> {
    let api: Api<VSphereMigration> = Api::namespaced(env.client(), NAMESPACE);
    // Only a guard against hanging: a busy 2-core machine is slow.
    for _ in 0..4800 {
        let m = api.get(name).await?;
        if pred(&m) {
            return Ok(m);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let m = api.get(name).await?;
    bail!("timed out waiting for {what}: {}", serde_json::to_string_pretty(&m.status)?)
}

fn awaiting(m: &VSphereMigration, phase: &str) -> bool {
    let s = m.status.clone().unwrap_or_default();
    s.phase.as_ref().and_then(Stage::phase) == Some(phase)
        && s.condition("AwaitingApproval").is_some_and(|c| c.status == "True")
}

fn result(m: &VSphereMigration) -> Option<Stage> {
    m.status.as_ref().filter(|s| s.finished_at.is_some()).and_then(|s| s.phase.clone())
}

async fn create(env: &TestEnv, name: &str, edit: impl FnOnce(&mut MigrationSpec)) -> Result<()> {
    let mut spec = target_spec(env);
    spec.health.stability_window = Some("5s".into());
    edit(&mut spec);
    let api: Api<VSphereMigration> = Api::namespaced(env.client(), NAMESPACE);
    api.create(&PostParams::default(), &VSphereMigration::new(name, VSphereMigrationSpec { spec })).await?;
    Ok(())
}

fn write_kubeconfig_with_contexts(env: &TestEnv, path: &Path) -> Result<()> {
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(env.kubeconfig_path())?)?;
    let base = kc["contexts"][0].clone();
    let mut other = base.clone();
    other["name"] = "elsewhere".into();
    other["context"]["namespace"] = "default".into();
    let mut home = base;
    home["name"] = "home".into();
    home["context"]["namespace"] = NAMESPACE.into();
    kc["contexts"] = serde_yaml::Value::Sequence(vec![home, other]);
    kc["current-context"] = "home".into();
    std::fs::write(path, serde_yaml::to_string(&kc)?)?;
    Ok(())
}

#[tokio::test]
async fn a_user_plans_approves_pauses_verifies_and_rolls_back_with_kubectl_vsm() -> Result<()> {
    let env = TestEnv::start_with_machine_api().await?;
    deploy::install(&env).await?;
    seed(&env, &SeedOptions { workers: 2, ..Default::default() }).await?;
    ensure_secrets(&env, &env.client()).await?;
    let sim = Simulator::start(&env, SimOptions::instant());
    let (client, log) = deploy::operator_client(&env).await?;
    let op = Operator::start(client, deploy::operator_config(&plugin_dir(), "vsm-0")?).await?;

    // Nothing to look at yet.
    let err = vsm(&env, Output::Table, Command::Status { name: None }).await.unwrap_err();
    assert!(matches!(err, Error::Refused(ref m) if m.contains("no VSphereMigration")), "{err}");

    // --- plan mode: the intended changes as a diff; nothing is changed ---
    create(&env, "preview", |s| s.mode = Mode::Plan).await?;
    let m = until(&env, "preview", "the plan to end", |m| result(m).is_some()).await?;
    let plan = ok(&env, Command::Plan { name: Some("preview".into()) }).await?;
    for needle in
        ["Preflight: no changes", "UpdateSecrets:", "UpdateInfrastructure:", "Infrastructure cluster", "change(s) in"]
    {
        assert!(plan.contains(needle), "plan lacks {needle:?}:\n{plan}");
    }
    assert!(plan.lines().any(|l| l.trim_start().starts_with("+ ")), "no added field in:\n{plan}");
    assert!(plan.contains("<redacted>"), "Secret data is never shown:\n{plan}");
    let json: Vec<PlannedPhase> =
        serde_json::from_str(&vsm(&env, Output::Json, Command::Plan { name: Some("preview".into()) }).await?)?;
    assert_eq!(json, m.status.clone().unwrap().plan);
    if result(&m) != Some(Stage::Planned) {
        // A plan that failed part-way is a failed migration: it must be rolled back (which
        // undoes nothing, as nothing was changed) before it may be deleted.
        ok(&env, Command::Rollback { name: Some("preview".into()) }).await?;
        let m = until(&env, "preview", "rolled back", |m| result(m) == Some(Stage::RolledBack)).await?;
        assert!(m.status.unwrap().backups.is_empty(), "a plan writes no backups");
    }
    let api: Api<VSphereMigration> = Api::namespaced(env.client(), NAMESPACE);
    api.delete("preview", &DeleteParams::default()).await?;
    for _ in 0..2400 {
        if api.get_opt("preview").await?.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(api.get_opt("preview").await?.is_none(), "the finished plan's deletion was not let through");

    // --- a manual migration ---
    create(&env, "walkthrough", |s| {
        s.approval_mode = ApprovalMode::Manual;
        s.state = MigrationState::Pending;
    })
    .await?;
    let status = ok(&env, Command::Status { name: None }).await?;
    assert!(status.contains("not started: spec.state is Pending"), "{status}");
    assert!(status.contains("Preflight") && status.contains("pending"), "{status}");
    let err = vsm(&env, Output::Table, Command::Approve { phase: None, migration: None }).await.unwrap_err();
    assert!(matches!(err, Error::Refused(ref m) if m.contains("no phase")), "{err}");

    assert!(ok(&env, Command::Resume { name: None }).await?.starts_with("started"));
    until(&env, "walkthrough", "Preflight awaiting approval", |m| awaiting(m, "Preflight")).await?;
    let status = ok(&env, Command::Status { name: None }).await?;
    assert!(status.contains("awaiting approval"), "{status}");
    assert!(status.contains("Waiting: phase Preflight waits for approval"), "{status}");

    let said = ok(&env, Command::Approve { phase: None, migration: None }).await?;
    assert!(said.contains("approved Preflight"), "{said}");
    let m = until(&env, "walkthrough", "Backup awaiting approval", |m| awaiting(m, "Backup")).await?;
    let approvals = m.status.clone().unwrap().approvals;
    assert_eq!(approvals[0].phase, "Preflight");
    assert_eq!(approvals[0].by, "kubectl-vsm", "the operator records who approved");

    // Approve ahead, by name, in any case; approving twice says so.
    for phase in ["backup", "DisableCVO", "updatesecrets"] {
        ok(&env, Command::Approve { phase: Some(phase.into()), migration: Some("walkthrough".into()) }).await?;
    }
    let again = ok(&env, Command::Approve { phase: Some("Backup".into()), migration: None }).await?;
    assert!(again.contains("already approved"), "{again}");
    let err =
        vsm(&env, Output::Table, Command::Approve { phase: Some("Reboot".into()), migration: None }).await.unwrap_err();
    assert!(err.to_string().contains("not a phase"), "{err}");
    until(&env, "walkthrough", "CreateTags awaiting approval", |m| awaiting(m, "CreateTags")).await?;

    // Pause, then resume: the pause holds at the boundary even once approved.
    assert!(ok(&env, Command::Pause { name: None }).await?.starts_with("pausing"));
    ok(&env, Command::Approve { phase: Some("CreateTags".into()), migration: None }).await?;
    until(&env, "walkthrough", "paused", |m| m.status.as_ref().is_some_and(|s| s.paused_at.is_some())).await?;
    let status = ok(&env, Command::Status { name: None }).await?;
    assert!(status.contains("Waiting: paused since"), "{status}");
    assert!(ok(&env, Command::Pause { name: None }).await?.contains("already paused"));
    assert!(ok(&env, Command::Resume { name: None }).await?.starts_with("resumed"));
    until(&env, "walkthrough", "CreateFolder awaiting approval", |m| awaiting(m, "CreateFolder")).await?;

    let history = ok(&env, Command::History { name: None }).await?;
    for needle in ["Preflight", "CreateTags", "Succeeded", "APPROVED", "kubectl-vsm", "create-tags@"] {
        assert!(history.contains(needle), "history lacks {needle}:\n{history}");
    }

    // Backups: all verify; a tampered snapshot is caught, by name, and the exit is an error.
    let checks: Vec<BackupCheck> =
        serde_json::from_str(&vsm(&env, Output::Json, Command::Backups { name: None }).await?)?;
    assert!(checks.iter().any(|c| c.kind == "snapshot") && checks.iter().any(|c| c.kind == "journal"));
    assert!(checks.iter().all(|c| c.verdict == Verdict::Verified), "{checks:?}");
    let table = ok(&env, Command::Backups { name: None }).await?;
    assert!(table.contains(&format!("{} backup(s), {} verified", checks.len(), checks.len())), "{table}");
    let victim = checks.iter().find(|c| c.kind == "snapshot").unwrap().name.clone();
    let secrets: Api<Secret> = Api::namespaced(env.client(), NAMESPACE);
    let original = secrets.get(&victim).await?.data.unwrap()["entry.json"].clone();
    let tamper = |bytes: ByteString| json!({"data": {"entry.json": bytes}});
    secrets.patch(&victim, &PatchParams::default(), &Patch::Merge(tamper(ByteString(b"{}".to_vec())))).await?;
    let mut out = Vec::new();
    let target = kubectl_vsm::connect(&global(&env)).await?;
    let err = kubectl_vsm::execute(&target, Command::Backups { name: None }, Output::Table, Style::PLAIN, &mut out)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Failed(ref m) if m.contains(&victim)), "{err}");
    assert!(String::from_utf8(out)?.contains("CHECKSUM MISMATCH"));
    secrets.patch(&victim, &PatchParams::default(), &Patch::Merge(tamper(original))).await?;

    // Roll back: everything done so far is undone, newest first.
    let said = ok(&env, Command::Rollback { name: None }).await?;
    assert!(said.contains("undoing CreateTags, UpdateSecrets, DisableCVO, Backup, Preflight"), "{said}");
    let m = until(&env, "walkthrough", "rolled back", |m| result(m).is_some()).await?;
    assert_eq!(result(&m), Some(Stage::RolledBack), "{:?}", m.status);
    let status = ok(&env, Command::Status { name: None }).await?;
    assert!(status.contains("undone"), "{status}");
    assert!(ok(&env, Command::Rollback { name: None }).await?.contains("requested already"));
    let err = vsm(&env, Output::Table, Command::Pause { name: None }).await.unwrap_err();
    assert!(matches!(err, Error::Refused(ref m) if m.contains("has ended (RolledBack)")), "{err}");

    // The namespace can come from the kubeconfig context.
    let kubeconfig = env.dir().join("kubeconfig-contexts");
    write_kubeconfig_with_contexts(&env, &kubeconfig)?;
    let g = Global { namespace: None, kubeconfig: Some(kubeconfig.clone()), ..global(&env) };
    assert_eq!(kubectl_vsm::connect(&g).await?.namespace, NAMESPACE);
    let g = Global { context: Some("elsewhere".into()), ..g };
    let target = kubectl_vsm::connect(&g).await?;
    assert_eq!(target.namespace, "default");
    let err =
        kubectl_vsm::execute(&target, Command::Status { name: None }, Output::Table, Style::PLAIN, &mut Vec::new())
            .await
            .unwrap_err();
    assert!(err.to_string().contains("no VSphereMigration in namespace default"), "{err}");

    // The binary: JSON output, no colour when piped, colour when forced, exit status 1 when refused.
    let bin = vsm_testenv::workspace::binary("kubectl-vsm", "kubectl-vsm")?;
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
            .args(args)
            .env_remove("NO_COLOR")
            .output()
    };
    let out = run(&["status", "-o", "json"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: VSphereMigration = serde_json::from_slice(&out.stdout)?;
    assert_eq!(shown.metadata.name.as_deref(), Some("walkthrough"));
    let plain = run(&["history"])?;
    assert!(plain.status.success() && !plain.stdout.contains(&0x1b), "no colour codes when not a terminal");
    let colored = run(&["history", "--color", "always"])?;
    assert!(colored.stdout.windows(2).any(|w| w == b"\x1b["), "colour when forced");
    let refused = run(&["pause"])?;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("has ended"));
    let completion = run(&["completion", "bash"])?;
    assert!(String::from_utf8_lossy(&completion.stdout).contains("kubectl-vsm"));

    op.stop().await;
    sim.stop().await;
    let refused: Vec<String> = log
        .all()
        .iter()
        .filter(|r| r.status == 401 || r.status == 403)
        .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
        .collect();
    assert!(refused.is_empty(), "the operator's RBAC refused:\n  {}", refused.join("\n  "));
    Ok(())
}
