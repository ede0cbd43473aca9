//! `kubectl-vsm`: the kubectl plugin (`kubectl vsm ...`). See the library for the commands.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kubectl_vsm::{Cli, Error};

#[tokio::main]
async fn main() -> ExitCode {
    // kube and the vSphere client link rustls with more than one crypto backend: pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let style = cli.global.color.resolve(std::io::stdout().is_terminal(), std::env::var("NO_COLOR").ok().as_deref());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match kubectl_vsm::run(cli, style, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                Error::Refused(_) | Error::Failed(_) => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}
