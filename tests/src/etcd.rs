//! A single-member etcd on free 127.0.0.1 ports with a temporary data directory.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{Process, free_port, wait_for};

/// Only a guard against hanging forever; etcd is normally healthy within a second.
const READY_LIMIT: Duration = Duration::from_secs(120);
const START_ATTEMPTS: usize = 3;

pub struct Etcd {
    /// `http://127.0.0.1:PORT`
    pub client_url: String,
    pub(crate) process: Process,
}

impl Etcd {
    /// Starts etcd with its data under `dir`; retries with new ports if one was taken.
    pub async fn start(bin: &Path, dir: &Path) -> Result<Etcd> {
        let mut last = None;
        for attempt in 0..START_ATTEMPTS {
            match Self::try_start(bin, dir, attempt).await {
                Ok(etcd) => return Ok(etcd),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap())
    }

    async fn try_start(bin: &Path, dir: &Path, attempt: usize) -> Result<Etcd> {
        let (client, peer) = (free_port()?, free_port()?);
        let data = dir.join(format!("etcd-data-{attempt}"));
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args: Vec<String> = vec![
            "--name=testenv".into(),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=testenv={peer_url}"),
            "--initial-cluster-state=new".into(),
            // Test data needs no durability; fsync dominates write latency otherwise.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ];
        let log = dir.join(format!("etcd-{attempt}.log"));
        let process = Process::spawn("etcd", bin, &args, &[], &log, false)?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let health = format!("{client_url}/health");
        let ready = wait_for("etcd /health", READY_LIMIT, || {
            let running = process.check_running();
            let req = http.get(&health).send();
            async move {
                running?;
                let Ok(resp) = req.await else { return Ok(false) };
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                Ok(body["health"] == "true")
            }
        })
        .await;
        ready.with_context(|| format!("etcd did not become healthy; log tail:\n{}", process.log_tail()))?;
        Ok(Etcd { client_url, process })
    }
}
