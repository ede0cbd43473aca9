//! UpdateConfig against the real API server: the target vCenter is added to the seeded
//! cloud provider config (YAML, then the legacy INI format) with its datacenter, port and
//! the TLS trust the migration gives it (CA, thumbprint, insecure: never a fixed
//! insecureFlag), its CA into the Proxy's trusted CA bundle; every other line stays; idempotent; a crash anywhere converges; the
//! rollback gives back the exact text; plan mode writes nothing; an empty config is refused.

mod part2_support;
mod phase_support;

use anyhow::{Context, Result, ensure};
use vsm_host::runtime::Direction;
use vsm_testenv::sim::cloud_config::{CloudConfigInput, parse, render};
use vsm_testenv::sim::{CloudConfigFormat, SeedOptions};
use vsm_testenv::vcsim::source;

use part2_support::*;
use phase_support::*;

const CA_FILE: &str = "/etc/kubernetes/static-pod-resources/configmaps/cloud-config/ca-bundle.pem";

async fn proxy_trusted_ca(c: &PhaseEnv) -> Result<String> {
    let proxy = c.env.dynamic("config.openshift.io", "v1", "Proxy", "proxies", None).get("cluster").await?;
    Ok(proxy.data["spec"]["trustedCA"]["name"].as_str().unwrap_or_default().to_string())
}

/// Every line of `original` is in `edited`, in order.
fn keeps_lines(original: &str, edited: &str) -> bool {
    let mut it = edited.lines();
    original.lines().all(|l| it.any(|e| e == l))
}

#[tokio::test]
async fn update_config_adds_the_target_keeping_every_line_in_yaml_and_ini() -> Result<()> {
    let mut c = start_seeded("phase-update-config", "update-config", &SeedOptions::default()).await?;
    let (dst, port) = (c.env.target().host(), c.env.target().port());
    let yaml = cloud_config_text(&c).await?;
    let before = content(&c.config_map("openshift-config", "cloud-provider-config").await?);

    // Success: one entry after the source's, verified with the CA file the config already
    // uses (the source's entry names one), the CA in that file's bundle and in the
    // cluster's trusted CA bundle.
    ensure!(proxy_trusted_ca(&c).await?.is_empty(), "the seeded Proxy names no trusted CA");
    let run = c.execute_done().await?;
    let entry = format!(
        "  {dst}:\n    server: {dst}\n    port: {port}\n    insecureFlag: false\n    datacenters:\n    - dst-dc\n    caFile: {CA_FILE}\n"
    );
    let expected = yaml.replace("    ipFamily: []\n# Topology", &format!("    ipFamily: []\n{entry}# Topology"));
    ensure!(expected != yaml, "the seeded config changed shape; fix the test");
    let after = cloud_config_text(&c).await?;
    ensure!(after == expected, "got:\n{after}\nexpected:\n{expected}");
    ensure!(keeps_lines(&yaml, &after), "every line of the original is kept");
    ensure!(run.message().contains(&format!("{dst} (port {port}, datacenters dst-dc")), "{}", run.message());
    // What the (simulated) cloud provider reads.
    let parsed = parse(&after)?;
    ensure!(parsed.vcenter(&dst).is_some_and(|v| v.datacenters == ["dst-dc"]), "{parsed:?}");
    ensure!(parsed.vcenter(&c.env.source().host()).is_some(), "the source stays until Cleanup");
    ensure!(proxy_trusted_ca(&c).await? == "user-ca-bundle", "{}", run.message());
    let bundle = c.config_map("openshift-config", "user-ca-bundle").await?.context("user-ca-bundle created")?;
    let held = bundle.data.as_ref().and_then(|d| d.get("ca-bundle.crt")).cloned().unwrap_or_default();
    ensure!(held.contains(c.env.vcenter_ca_bundle_pem().trim()), "the spec's CA bundle is trusted:\n{held}");
    ensure!(
        run.message().contains("ConfigMap openshift-config/user-ca-bundle (key ca-bundle.crt) created"),
        "{}",
        run.message()
    );
    let cloud = c.config_map("openshift-config", "cloud-provider-config").await?.context("cloud config")?;
    let file_bundle = cloud.data.as_ref().and_then(|d| d.get("ca-bundle.pem")).cloned().unwrap_or_default();
    ensure!(file_bundle.contains(c.env.vcenter_ca_bundle_pem().trim()), "the CA file's bundle holds the CA too");

    // Idempotent.
    let cm = c.config_map("openshift-config", "cloud-provider-config").await?.unwrap();
    let again = c.execute_done().await?;
    ensure!(again.message().contains("already lists"), "{}", again.message());
    ensure!(rv(&c.config_map("openshift-config", "cloud-provider-config").await?.unwrap()) == rv(&cm));

    // Rollback: the exact before-state, the trust included.
    c.rollback_done().await?;
    ensure!(c.config_map("openshift-config", "user-ca-bundle").await?.is_none(), "the created bundle is gone");
    ensure!(proxy_trusted_ca(&c).await?.is_empty(), "the Proxy names no trusted CA again");
    same_content(
        "cloud config after rollback",
        &before,
        &content(&c.config_map("openshift-config", "cloud-provider-config").await?),
    )?;

    // A crash at any import, then a re-run, converges to the same text.
    let cr = &c;
    let expected_ref = &expected;
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move { cr.rollback_done().await.map(|_| ()) },
            move |n| async move {
                let text = cloud_config_text(cr).await?;
                ensure!(&text == expected_ref, "crash at {n}:\n{text}");
                Ok(())
            },
        )
        .await?;
    ensure!(points >= 2, "{points} crash points");
    c.rollback_done().await?;

    // Trust comes from the migration: insecure only when asked, a thumbprint when pinned.
    let vcenters = c.h.migration.spec.spec.vcenters.clone();
    let target = vcenters.iter().position(|v| v.server == dst).unwrap();
    c.h.migration.spec.spec.vcenters[target].ca_secret = None;
    c.h.migration.spec.spec.vcenters[target].insecure = true;
    c.execute_done().await?;
    let text = cloud_config_text(&c).await?;
    ensure!(
        text.contains(&format!("  {dst}:\n    server: {dst}\n    port: {port}\n    insecureFlag: true\n")),
        "{text}"
    );
    c.rollback_done().await?;
    let thumb = "AB:".repeat(31) + "CD";
    c.h.migration.spec.spec.vcenters[target].insecure = false;
    c.h.migration.spec.spec.vcenters[target].thumbprint = Some(thumb.clone());
    c.execute_done().await?;
    let text = cloud_config_text(&c).await?;
    ensure!(text.contains("    insecureFlag: false\n    datacenters:\n    - dst-dc\n    thumbprint: "), "{text}");
    ensure!(text.contains(&thumb));
    c.rollback_done().await?;
    c.h.migration.spec.spec.vcenters = vcenters;

    // Plan mode: validated and recorded, not written.
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(plan.done(), "{:?}", plan.outcome);
    ensure!(plan.outputs.plan.iter().any(|p| p.target.contains("cloud-provider-config")), "{:?}", plan.outputs.plan);
    ensure!(cloud_config_text(&c).await? == yaml);

    // The legacy INI format: a section of its own, every other line kept.
    let src = c.env.source();
    let ini = render(
        CloudConfigFormat::Ini,
        &CloudConfigInput {
            server: &src.host(),
            port: src.port(),
            datacenter: source::DATACENTER,
            more_vcenters: &[],
            datastore: source::DATASTORE_PATH,
            folder: &c.cluster.source.folder,
            resource_pool: source::RESOURCE_POOL_PATH,
        },
    );
    set_cloud_config_text(&c, &ini).await?;
    let run = c.execute_done().await?;
    let section = format!(
        "\n[VirtualCenter \"{dst}\"]\ndatacenters = \"dst-dc\"\nport = \"{port}\"\ninsecure-flag = \"0\"\nca-file = \"{CA_FILE}\"\n"
    );
    let source_port = format!("port = \"{}\"\n", src.port());
    let expected_ini = ini.replace(&source_port, &format!("{source_port}{section}"));
    let text = cloud_config_text(&c).await?;
    ensure!(text == expected_ini, "{}\n---\n{text}", run.message());
    let parsed = parse(&text)?;
    ensure!(parsed.vcenter(&dst).is_some_and(|v| v.datacenters == ["dst-dc"]), "{parsed:?}");
    c.execute_done().await?;
    ensure!(cloud_config_text(&c).await? == expected_ini, "idempotent on INI");
    c.rollback_done().await?;
    ensure!(cloud_config_text(&c).await? == ini, "INI rolled back exactly");
    set_cloud_config_text(&c, &yaml).await?;

    // Bad input: an empty config is refused, not overwritten.
    set_cloud_config_text(&c, "").await?;
    let run = c.execute().await?;
    let retryable = failed_with(
        &run,
        "ConfigMap openshift-config/cloud-provider-config has no key \"config\" (or it is empty): nothing to add the target vCenters to",
    )?;
    ensure!(!retryable);
    ensure!(cloud_config_text(&c).await?.is_empty());
    set_cloud_config_text(&c, &yaml).await?;
    Ok(())
}
