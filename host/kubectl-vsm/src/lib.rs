//! `kubectl vsm`: look at and steer `VSphereMigration`s from the command line.
//!
//! ```text
//! kubectl vsm status            # phase table, progress, conditions, what it waits for
//! kubectl vsm approve [PHASE]   # Manual mode: approve the phase waiting (or PHASE)
//! kubectl vsm pause | resume | rollback
//! kubectl vsm plan              # plan mode: the intended changes as a diff
//! kubectl vsm history           # every phase run and rollback step, approvals
//! kubectl vsm backups           # the backup Secrets, checksums verified
//! kubectl vsm completion bash   # shell completion
//! ```
//!
//! The migration is the one named, else the only one (or the only active one) in the
//! namespace. Edits are merge patches with field manager `kubectl-vsm` and the
//! resourceVersion read, so an approval is recorded as made by `kubectl-vsm` and a
//! concurrent edit is never overwritten.

mod actions;
mod backups;
pub mod render;
mod status;
mod views;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::api::{Api, ListParams};
use vsm_api::VSphereMigration;

pub use backups::{BackupCheck, Verdict, check_backups};
pub use render::Style;

/// Field manager of every edit, so the operator records who approved.
pub const FIELD_MANAGER: &str = "kubectl-vsm";
/// Namespace used when neither `-n` nor the kubeconfig context names one.
pub const DEFAULT_NAMESPACE: &str = "vsphere-migration";

#[derive(Debug, Parser)]
#[command(name = "kubectl-vsm", version, about = "Look at and steer vSphere migrations (VSphereMigration objects)")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Namespace of the migration (default: the context's namespace, else vsphere-migration).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, global = true, default_value_t = Output::Table)]
    pub output: Output,
    /// Colours: auto (a terminal without NO_COLOR), always or never.
    #[arg(long, value_enum, global = true, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour, given whether stdout is a terminal and the NO_COLOR variable.
    pub fn resolve(self, is_terminal: bool, no_color: Option<&str>) -> Style {
        let color = match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && no_color.is_none_or(str::is_empty),
        };
        Style { color }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// The phases with their state and progress, what the migration waits for, conditions.
    Status { name: Option<String> },
    /// Approve a phase (Manual mode): by default the one waiting for approval.
    Approve {
        /// Phase name, e.g. CreateWorkers (case-insensitive).
        phase: Option<String>,
        /// The migration (default: the only one in the namespace).
        #[arg(short = 'm', long)]
        migration: Option<String>,
    },
    /// Call no phase until resumed; a call in flight finishes (spec.state: Paused).
    Pause { name: Option<String> },
    /// Go on after a pause, or start a Pending migration (spec.state: Running).
    Resume { name: Option<String> },
    /// Undo the completed phases, newest first (spec.state: Rollback; cannot be cancelled).
    Rollback { name: Option<String> },
    /// Plan mode: the changes each phase would make, as a diff.
    Plan { name: Option<String> },
    /// Every phase run and rollback step, the approvals and the rollback.
    History { name: Option<String> },
    /// The migration's backup Secrets, each checksum verified (exit status 1 if one fails).
    Backups { name: Option<String> },
    /// Print a shell completion script.
    Completion { shell: clap_complete::Shell },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The request makes no sense for this migration; nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// The command ran and found a problem (e.g. a backup failing its checksum).
    #[error("{0}")]
    Failed(String),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding output: {0}")]
    Encode(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client and the namespace to work in.
pub struct Target {
    pub client: kube::Client,
    pub namespace: String,
}

/// Connect as kubectl would: `--kubeconfig` or `$KUBECONFIG` or `~/.kube/config` (with
/// `--context`), else the in-cluster service account.
pub async fn connect(global: &Global) -> Result<Target> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let kubeconfig = match &global.kubeconfig {
        Some(path) => Some(Kubeconfig::read_from(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?),
        None => Kubeconfig::read().ok(),
    };
    let options = KubeConfigOptions { context: global.context.clone(), ..Default::default() };
    let (config, context_namespace) = match kubeconfig {
        Some(kc) => {
            let context = global.context.clone().or_else(|| kc.current_context.clone());
            let ns = kc
                .contexts
                .iter()
                .find(|c| Some(&c.name) == context.as_ref())
                .and_then(|c| c.context.as_ref())
                .and_then(|c| c.namespace.clone());
            let config =
                kube::Config::from_custom_kubeconfig(kc, &options).await.map_err(|e| Error::Config(e.to_string()))?;
            (config, ns)
        }
        None => {
            if global.context.is_some() {
                return Err(Error::Config("--context given, but there is no kubeconfig".into()));
            }
            (
                kube::Config::incluster()
                    .map_err(|e| Error::Config(format!("no kubeconfig, not in a cluster: {e}")))?,
                None,
            )
        }
    };
    let namespace = global.namespace.clone().or(context_namespace).unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let client = kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    Ok(Target { client, namespace })
}

/// The migration named, or the only one (or the only active one) in the namespace.
pub async fn select(api: &Api<VSphereMigration>, name: Option<&str>, namespace: &str) -> Result<VSphereMigration> {
    if let Some(name) = name {
        return api
            .get_opt(name)
            .await?
            .ok_or_else(|| Error::Refused(format!("VSphereMigration {namespace}/{name} does not exist")));
    }
    let all = api.list(&ListParams::default()).await?.items;
    let names = || all.iter().filter_map(|m| m.metadata.name.clone()).collect::<Vec<_>>().join(", ");
    match all.len() {
        0 => Err(Error::Refused(format!("no VSphereMigration in namespace {namespace} (use -n)"))),
        1 => Ok(all.into_iter().next().expect("one")),
        _ => {
            let active: Vec<&VSphereMigration> = all
                .iter()
                .filter(|m| m.status.as_ref().is_some_and(|s| s.started_at.is_some() && s.finished_at.is_none()))
                .collect();
            match active.as_slice() {
                [one] => Ok((*one).clone()),
                _ => Err(Error::Refused(format!("several migrations in {namespace} ({}): name one", names()))),
            }
        }
    }
}

/// Print `value` as JSON or YAML.
pub(crate) fn encode<T: serde::Serialize>(out: &mut dyn Write, output: Output, value: &T) -> Result<()> {
    match output {
        Output::Json => {
            let text = serde_json::to_string_pretty(value).map_err(|e| Error::Encode(e.to_string()))?;
            writeln!(out, "{text}")?;
        }
        Output::Yaml | Output::Table => {
            let text = serde_yaml::to_string(value).map_err(|e| Error::Encode(e.to_string()))?;
            write!(out, "{text}")?;
        }
    }
    Ok(())
}

/// Run one command against a cluster (what the binary does after connecting).
pub async fn execute(
    target: &Target,
    command: Command,
    output: Output,
    style: Style,
    out: &mut dyn Write,
) -> Result<()> {
    let api: Api<VSphereMigration> = Api::namespaced(target.client.clone(), &target.namespace);
    let ns = target.namespace.as_str();
    match command {
        Command::Status { name } => {
            let m = select(&api, name.as_deref(), ns).await?;
            status::show(&m, output, style, out)
        }
        Command::Approve { phase, migration } => {
            let m = select(&api, migration.as_deref(), ns).await?;
            actions::approve(&api, m, phase.as_deref(), out).await
        }
        Command::Pause { name } => {
            let m = select(&api, name.as_deref(), ns).await?;
            actions::pause(&api, m, out).await
        }
        Command::Resume { name } => {
            let m = select(&api, name.as_deref(), ns).await?;
            actions::resume(&api, m, out).await
        }
        Command::Rollback { name } => {
            let m = select(&api, name.as_deref(), ns).await?;
            actions::rollback(&api, m, out).await
        }
        Command::Plan { name } => {
            let m = select(&api, name.as_deref(), ns).await?;
            views::plan(&m, output, style, out)
        }
        Command::History { name } => {
            let m = select(&api, name.as_deref(), ns).await?;
            views::history(&m, output, style, out)
        }
        Command::Backups { name } => {
            let m = select(&api, name.as_deref(), ns).await?;
            backups::show(&target.client, &m, output, style, out).await
        }
        Command::Completion { shell } => {
            completion(shell, out);
            Ok(())
        }
    }
}

/// The completion script for `shell`.
pub fn completion(shell: clap_complete::Shell, out: &mut dyn Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "kubectl-vsm", out);
}

/// Parse-and-run entry point of the binary: connects unless the command needs no cluster.
pub async fn run(cli: Cli, style: Style, out: &mut dyn Write) -> Result<()> {
    if let Command::Completion { shell } = cli.command {
        completion(shell, out);
        return Ok(());
    }
    let target = connect(&cli.global).await?;
    execute(&target, cli.command, cli.global.output, style, out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color_unless_forced() {
        assert!(ColorChoice::Auto.resolve(true, None).color);
        assert!(ColorChoice::Auto.resolve(true, Some("")).color, "an empty NO_COLOR does not count");
        assert!(!ColorChoice::Auto.resolve(true, Some("1")).color);
        assert!(!ColorChoice::Auto.resolve(false, None).color, "not a terminal");
        assert!(ColorChoice::Always.resolve(false, Some("1")).color);
        assert!(!ColorChoice::Never.resolve(true, None).color);
    }

    #[test]
    fn flags_go_before_or_after_the_command() {
        let cli = Cli::try_parse_from(["kubectl-vsm", "-n", "ns1", "status", "m1", "-o", "json"]).unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("ns1"));
        assert_eq!(cli.global.output, Output::Json);
        assert!(matches!(cli.command, Command::Status { name: Some(ref n) } if n == "m1"));
        let cli = Cli::try_parse_from(["kubectl-vsm", "approve", "Backup", "-m", "m1", "--context", "c"]).unwrap();
        assert_eq!(cli.global.context.as_deref(), Some("c"));
        assert!(
            matches!(cli.command, Command::Approve { phase: Some(ref p), migration: Some(ref m) } if p == "Backup" && m == "m1")
        );
        assert!(Cli::try_parse_from(["kubectl-vsm", "status", "-o", "xml"]).is_err());
    }

    #[test]
    fn completion_scripts_name_the_commands() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut out = Vec::new();
            completion(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            for cmd in ["approve", "rollback", "backups"] {
                assert!(text.contains(cmd), "{shell:?} completion lacks {cmd}");
            }
        }
    }
}
