//! UpdateSecrets against the real environment: the target credentials land in
//! kube-system/vsphere-creds byte for byte; a re-run changes nothing; the rollback gives
//! the exact before-state back when nobody touched the Secret, and never clobbers a
//! credential rotated in the meantime; two target servers with a changed password work
//! (the Go controller's stale-object conflict and skipped update); a crash anywhere
//! converges; plan mode changes nothing; a missing target Secret is named.

mod phase_support;

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use vsm_host::runtime::Direction;
use vsm_testenv::harness::{Harness, NAMESPACE, TARGET_CREDS, target_spec};
use vsm_testenv::sim::objects::{CREDS_NAME, CREDS_NS};

use phase_support::*;

fn data(s: &Secret) -> BTreeMap<String, ByteString> {
    s.data.clone().unwrap_or_default()
}

fn text(d: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    d.get(key).map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

async fn creds(c: &PhaseEnv) -> Result<Secret> {
    Ok(c.secret(CREDS_NS, CREDS_NAME).await?.expect("vsphere-creds exists"))
}

async fn set_keys(c: &PhaseEnv, keys: serde_json::Value) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(c.client(), CREDS_NS);
    api.patch(CREDS_NAME, &PatchParams::default(), &Patch::Merge(json!({"stringData": keys}))).await?;
    Ok(())
}

#[tokio::test]
async fn update_secrets_adds_updates_and_rolls_back_without_clobbering() -> Result<()> {
    let mut c = start("phase-update-secrets", "update-secrets").await?;
    let (src, dst) = (c.env.source(), c.env.target());
    let (src_host, dst_host) = (src.host(), dst.host());
    let target = c.secret(NAMESPACE, TARGET_CREDS).await?.expect("harness secret");

    // Success: the target keys, byte-exact, nothing else touched.
    let before = creds(&c).await?;
    let run = c.execute_done().await?;
    ensure!(
        run.message() == format!("updated kube-system/vsphere-creds: added {dst_host}.username, {dst_host}.password"),
        "{}",
        run.message()
    );
    let after = creds(&c).await?;
    for k in [format!("{dst_host}.username"), format!("{dst_host}.password")] {
        ensure!(data(&after).get(&k) == data(&target).get(&k), "{k} copied exactly");
    }
    for (k, v) in data(&before) {
        ensure!(data(&after).get(&k) == Some(&v), "{k} untouched");
    }
    ensure!(after.metadata.annotations == before.metadata.annotations);

    // Idempotent.
    c.execute_done().await?;
    ensure!(rv(&creds(&c).await?) == rv(&after), "a second execute wrote vsphere-creds");

    // Rollback, nobody touched it since: the exact before-state.
    let run = c.rollback_done().await?;
    ensure!(
        run.message().starts_with("restored kube-system/vsphere-creds as it was before the migration"),
        "{}",
        run.message()
    );
    same_content("vsphere-creds after rollback", &content(&before), &content(&creds(&c).await?))?;

    // Rollback after the source password was rotated meanwhile: the rotation survives.
    c.execute_done().await?;
    set_keys(&c, json!({format!("{src_host}.password"): "rotated-by-admin"})).await?;
    let run = c.rollback_done().await?;
    ensure!(run.message().contains("changed since this phase ran, so it was undone key by key"), "{}", run.message());
    let now = data(&creds(&c).await?);
    ensure!(text(&now, &format!("{src_host}.password")).as_deref() == Some("rotated-by-admin"), "rotation kept");
    ensure!(!now.contains_key(&format!("{dst_host}.username")) && !now.contains_key(&format!("{dst_host}.password")));
    set_keys(&c, json!({format!("{src_host}.password"): src.password})).await?;
    same_content("vsphere-creds", &content(&before), &content(&creds(&c).await?))?;

    // A crash at any import converges; the rollback still restores exactly.
    let cr = &c;
    let before_content = content(&before);
    let bc = &before_content;
    let key = format!("{dst_host}.password");
    let key = &key;
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |n| async move {
                cr.rollback_done().await?;
                same_content(&format!("vsphere-creds before crash {n}"), bc, &content(&creds(cr).await?))
            },
            move |n| async move {
                let d = data(&creds(cr).await?);
                ensure!(text(&d, key).as_deref() == Some(dst.password.as_str()), "crash at {n}");
                Ok(())
            },
        )
        .await?;
    ensure!(points >= 4, "{points} crash points");
    c.rollback_done().await?;
    same_content("vsphere-creds after the crash tests", &content(&before), &content(&creds(&c).await?))?;

    // Plan mode: validated by the API server (dryRun=All), recorded, not applied.
    let rv_before = rv(&creds(&c).await?);
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(plan.message().starts_with("would update kube-system/vsphere-creds"), "{}", plan.message());
    ensure!(
        plan.outputs.plan.iter().any(|p| p.target == "Secret kube-system/vsphere-creds"),
        "{:?}",
        plan.outputs.plan
    );
    ensure!(rv(&creds(&c).await?) == rv_before, "plan mode wrote vsphere-creds");

    // Bad input: the spec names a Secret that does not exist.
    c.h.migration.spec.spec.target_credentials_secret.name = "no-such-secret".into();
    let run = c.execute().await?;
    ensure!(!failed_with(
        &run,
        "spec.targetVCenterCredentialsSecret: Secret vsphere-migration/no-such-secret does not exist"
    )?);
    c.h.migration.spec.spec.target_credentials_secret.name = TARGET_CREDS.into();

    // The Go controller's bugs: two target servers (it reused a stale object and hit a
    // conflict) and a changed password (it skipped existing usernames).
    let other = "vcenter-b.example.com";
    let two = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "two-target-creds"},
        "stringData": {format!("{dst_host}.username"): dst.username, format!("{dst_host}.password"): dst.password,
                       format!("{other}.username"): "b-user", format!("{other}.password"): "b-pass"}});
    Api::<Secret>::namespaced(c.client(), NAMESPACE)
        .patch("two-target-creds", &PatchParams::apply("phase-test").force(), &Patch::Apply(two))
        .await?;
    set_keys(
        &c,
        json!({format!("{dst_host}.username"): dst.username, format!("{dst_host}.password"): "stale-password"}),
    )
    .await?;
    let stale = creds(&c).await?;
    let mut spec = target_spec(c.env);
    spec.target_credentials_secret.name = "two-target-creds".into();
    let mut b = spec.failure_domains[0].clone();
    b.name = "target-fd-b".into();
    b.server = other.into();
    spec.failure_domains.push(b);
    let h2 = Harness::new(c.env, "phase-update-secrets-two", spec).await?;
    let p2 = h2.phase("update-secrets").await?;
    let run = h2.run(&p2, Direction::Execute).await?;
    ensure_done(&run, "two servers")?;
    ensure!(
        run.message()
            == format!(
                "updated kube-system/vsphere-creds: added {other}.username, {other}.password; updated {dst_host}.password"
            ),
        "{}",
        run.message()
    );
    let d = data(&creds(&c).await?);
    ensure!(
        text(&d, &format!("{dst_host}.password")).as_deref() == Some(dst.password.as_str()),
        "changed password updated"
    );
    ensure!(text(&d, &format!("{other}.password")).as_deref() == Some("b-pass"));
    let run = h2.run(&p2, Direction::Rollback).await?;
    ensure_done(&run, "two servers rollback")?;
    same_content("vsphere-creds after the two-server rollback", &content(&stale), &content(&creds(&c).await?))?;
    Ok(())
}
