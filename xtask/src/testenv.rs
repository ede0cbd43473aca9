//! `cargo xtask testenv [--keep]`: build the test tools, start the test environment, and
//! either run a smoke check and stop, or print how to reach it and wait for Ctrl-C.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use vsm_testenv::probe::{self, SoapLogin};
use vsm_testenv::{TestEnv, Vcsim};

pub fn run(keep: bool) -> Result<()> {
    let start = Instant::now();
    let tools = vsm_testenv::tools::ensure_built()?;
    println!(
        "tools ready in {:.1} s (cache {})",
        start.elapsed().as_secs_f64(),
        vsm_testenv::tools::cache_dir()?.display()
    );
    println!("  etcd           {}", tools.etcd.display());
    println!("  kube-apiserver {}", tools.kube_apiserver.display());
    println!("  vcsim          {}", tools.vcsim.display());
    let mapi = &tools.machine_api;
    println!("  machine-api    {}", mapi.vsphere.parent().unwrap_or(&mapi.vsphere).display());

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let start = Instant::now();
        let env = TestEnv::start_with_machine_api().await.context("starting the test environment")?;
        println!("environment started in {:.1} s", start.elapsed().as_secs_f64());
        let info = describe(&env);
        let env_file = env.dir().join("env.sh");
        std::fs::write(&env_file, exports(&env))?;
        print!("{info}");
        if keep {
            println!("\nshell variables: source {}", env_file.display());
            println!("running until Ctrl-C (or SIGTERM); everything is removed on exit");
            wait_for_signal().await?;
            println!("stopping");
        } else {
            smoke(&env).await?;
            println!("smoke check passed; stopping");
        }
        drop(env);
        Ok(())
    })
}

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn describe(env: &TestEnv) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\nKubernetes");
    let _ = writeln!(s, "  KUBECONFIG={}", env.kubeconfig_path().display());
    let _ = writeln!(s, "  API server      {}", env.apiserver_url());
    let _ = writeln!(s, "  operator (non-admin) kubeconfig {}", env.operator_kubeconfig_path().display());
    let _ = writeln!(s, "  CA              {}", env.ca_path().display());
    if let Some(d) = env.openshift_crds_dir() {
        let _ = writeln!(s, "  OpenShift CRDs  {}", d.display());
    }
    let _ = writeln!(s, "  CRDs installed  {}", env.installed_crds().join(", "));
    if let Some(m) = env.machine_api() {
        let _ = writeln!(s, "\nmachine-api (machine-api-operator {})", m.version());
        let _ = writeln!(s, "  webhooks        {}", m.webhook_url());
        for (component, log) in m.log_paths() {
            let _ = writeln!(s, "  {:<15} log {}", component.name(), log.display());
        }
    }
    for vc in [env.source(), env.target()] {
        let _ = writeln!(s, "\nvCenter {}", vc.name);
        let _ = writeln!(s, "  URL             {}", vc.url);
        let _ = writeln!(s, "  server / port   {} / {}", vc.host(), vc.port());
        let _ = writeln!(s, "  username        {}", vc.username);
        let _ = writeln!(s, "  password        {}", vc.password);
        let _ = writeln!(s, "  CA              {}", env.ca_path().display());
        let _ = writeln!(s, "  SHA-256         {}", vc.thumbprint_sha256);
        let _ = writeln!(s, "  control API     {}", vc.control_url);
    }
    s
}

fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// `export` lines for the admin kubeconfig and both vCenters (govc's variable names).
fn exports(env: &TestEnv) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "export KUBECONFIG={}", shell_quote(&env.kubeconfig_path().display().to_string()));
    for (prefix, vc) in [("SOURCE", env.source()), ("TARGET", env.target())] {
        let _ = writeln!(s, "export {prefix}_GOVC_URL={}", shell_quote(&vc.url));
        let _ = writeln!(s, "export {prefix}_GOVC_USERNAME={}", shell_quote(&vc.username));
        let _ = writeln!(s, "export {prefix}_GOVC_PASSWORD={}", shell_quote(&vc.password));
    }
    let _ = writeln!(s, "export GOVC_TLS_CA_CERTS={}", shell_quote(&env.ca_path().display().to_string()));
    let _ = writeln!(
        s,
        "# govc against the source: export GOVC_URL=$SOURCE_GOVC_URL GOVC_USERNAME=$SOURCE_GOVC_USERNAME GOVC_PASSWORD=$SOURCE_GOVC_PASSWORD"
    );
    s
}

/// Checks each part answers: the API server (version, CRDs) and each vCenter (SOAP login
/// and REST session, over TLS verified against the environment CA).
async fn smoke(env: &TestEnv) -> Result<()> {
    let version = env.client().apiserver_version().await?;
    println!(
        "\nsmoke: kube-apiserver {} answers; {} CRDs established",
        version.git_version,
        env.installed_crds().len()
    );
    for vc in [env.source(), env.target()] {
        smoke_vcenter(env, vc).await.with_context(|| format!("vCenter {}", vc.name))?;
    }
    Ok(())
}

async fn smoke_vcenter(env: &TestEnv, vc: &Vcsim) -> Result<()> {
    let http = probe::https_client(Some(env.ca_pem()))?;
    match probe::soap_login(&http, &vc.url, &vc.username, &vc.password).await? {
        SoapLogin::Ok { .. } => {}
        SoapLogin::Fault(f) => bail!("SOAP login refused: {f}"),
    }
    if let Err(status) = probe::rest_login(&http, &vc.url, &vc.username, &vc.password).await? {
        bail!("REST login refused: HTTP {status}");
    }
    println!("smoke: vCenter {} ({}) accepts SOAP and REST logins over verified TLS", vc.name, vc.server());
    Ok(())
}
