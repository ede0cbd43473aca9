//! `vsm-operator`: run the operator, print its CRD, or inspect a plugin directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use vsm_host::leader::LeaderConfig;
use vsm_host::operator::{Operator, OperatorConfig};
use vsm_host::runtime::config::PluginConfig;
use vsm_vsphere::ClientOptions;

#[derive(Parser)]
#[command(name = "vsm-operator", version, about = "Moves a running OpenShift cluster from one vCenter to another")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(Box<Run>),
    /// Print the VSphereMigration CustomResourceDefinition (YAML).
    Crd,
    /// Load and validate every component of a plugin directory; print what serves which phase.
    Plugins {
        #[arg(long, default_value = "/plugins")]
        plugin_dir: PathBuf,
        #[arg(long)]
        plugin_config: Option<PathBuf>,
    },
    /// Print a vCenter's certificate SHA-256 thumbprint (to confirm, then pin it in
    /// spec.vcenters[].thumbprint).
    Thumbprint { server: String },
}

#[derive(Parser)]
struct Run {
    /// kubeconfig file; in-cluster configuration when absent.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch migrations in this namespace only (default: all namespaces).
    #[arg(long, env = "VSM_WATCH_NAMESPACE")]
    namespace: Option<String>,
    #[arg(long, default_value = "/plugins", env = "VSM_PLUGIN_DIR")]
    plugin_dir: PathBuf,
    /// Plugin configuration (grants, pins, limits), YAML.
    #[arg(long, env = "VSM_PLUGIN_CONFIG")]
    plugin_config: Option<PathBuf>,
    /// Where compiled components are cached across restarts.
    #[arg(long, env = "VSM_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not reload the plugin directory when it changes.
    #[arg(long)]
    no_watch_plugins: bool,
    /// Metrics and health endpoint.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Elect a leader through a Lease (run several replicas).
    #[arg(long)]
    leader_elect: bool,
    #[arg(long, default_value = "vsphere-migration", env = "POD_NAMESPACE")]
    lease_namespace: String,
    #[arg(long, default_value = "vsphere-migration-operator")]
    lease_name: String,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    lease_duration: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    renew_deadline: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    retry_period: Duration,
    /// Identity in the Lease (default: pod name or hostname, plus the process id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Per-operation timeout for vCenter calls.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    vsphere_timeout: Duration,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}

async fn kube_config(kubeconfig: Option<&PathBuf>) -> Result<kube::Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await.context("no kubeconfig and not in a cluster")?,
    })
}

async fn run(args: Run) -> Result<()> {
    init_logs(args.log_format);
    let plugin_config = match &args.plugin_config {
        Some(p) => PluginConfig::load(p)?,
        None => PluginConfig::default(),
    };
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "vsm".into());
        format!("{host}-{}", std::process::id())
    });
    let leader = args.leader_elect.then(|| LeaderConfig {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        identity: identity.clone(),
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline,
        retry_period: args.retry_period,
    });
    let kube = kube_config(args.kubeconfig.as_ref()).await?;
    let vsphere = ClientOptions { operation_timeout: args.vsphere_timeout, ..ClientOptions::default() };
    let config = OperatorConfig {
        plugin_dir: args.plugin_dir,
        plugin_config,
        cache_dir: args.cache_dir,
        namespace: args.namespace,
        leader,
        listen: Some(args.listen),
        identity: identity.clone(),
        watch_plugins: !args.no_watch_plugins,
        vsphere,
    };
    let operator = Operator::start_counted(kube, config).await?;
    tracing::info!(%identity, addr = ?operator.addr, "vsm-operator started");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: handing over"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: handing over"),
    }
    operator.stop().await;
    tracing::info!("stopped");
    Ok(())
}

async fn plugins(plugin_dir: PathBuf, plugin_config: Option<PathBuf>) -> Result<()> {
    let config = match plugin_config {
        Some(p) => PluginConfig::load(&p)?,
        None => PluginConfig::default(),
    };
    let runtime = vsm_host::runtime::Runtime::new(Default::default())?;
    let registry = vsm_host::runtime::Registry::open(runtime, &plugin_dir, config).await?;
    let mut failed = false;
    for s in registry.status() {
        let phase = s.phase.clone().unwrap_or_else(|| "-".into());
        let version = s.version.clone().unwrap_or_else(|| "-".into());
        match &s.error {
            None => println!("{:<24} {:<22} {:<10} {}", s.component, phase, version, &s.file_sha256[..16]),
            Some(e) => {
                failed = true;
                println!("{:<24} REJECTED: {e}", s.component);
            }
        }
        if !s.not_granted.is_empty() {
            println!("{:<24}   not granted: {}", "", s.not_granted.join(", "));
        }
    }
    if failed {
        anyhow::bail!("some components were rejected");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    // Before any TLS client: the Kubernetes client cannot choose between the two rustls
    // providers compiled in and would panic.
    vsm_vsphere::install_default_crypto_provider();
    match Cli::parse().command {
        Command::Run(args) => run(*args).await,
        Command::Crd => {
            print!("{}", vsm_host::api::crd_yaml());
            Ok(())
        }
        Command::Plugins { plugin_dir, plugin_config } => plugins(plugin_dir, plugin_config).await,
        Command::Thumbprint { server } => {
            println!("{}", vsm_vsphere::fetch_thumbprint(&server).await?);
            Ok(())
        }
    }
}
