//! `vsm-plugin`: write, test and inspect vsphere-migration phase components.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use vsm_plugin::{Cli, Command, Output, Scaffold, TestOptions};

async fn run(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::New { name, phase, dir, sdk } => {
            let dir = dir.unwrap_or_else(|| name.clone().into());
            let s = Scaffold { name, phase, sdk: sdk.unwrap_or_else(vsm_plugin::scaffold::default_sdk_path) };
            for f in vsm_plugin::scaffold(&s, &dir)? {
                println!("created {}", f.display());
            }
            println!("\nnext:\n  cd {}\n  cargo test\n  cargo build --release --target wasm32-wasip2", dir.display());
            Ok(true)
        }
        Command::Inspect { component, output } => {
            let i = vsm_plugin::inspect(&component).await?;
            match output {
                Output::Text => print!("{}", vsm_plugin::inspect::render(&i)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&i)?),
            }
            Ok(i.load_error.is_none())
        }
        Command::Test { component, workers, spec, timeout_secs, output } => {
            let opts = TestOptions { component, workers, spec, timeout: timeout_secs };
            let mut say = |line: &str| {
                eprintln!("{line}");
                let _ = std::io::stderr().flush();
            };
            let report = vsm_plugin::test_component(&opts, &mut say).await?;
            match output {
                Output::Text => print!("{}", vsm_plugin::check::render(&report)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(report.passed())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // kube and the vSphere client link rustls with more than one crypto backend: pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(Cli::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
