//! One simulated vCenter: the project's vcsim launcher (tests/tools/vcsim) on a free
//! 127.0.0.1 port, with its own credentials, inventory names and CA-signed certificate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::pki::TestCa;
use crate::process::{Process, free_low_port, read_announcements};
use crate::tools;

/// Inventory of the `source` preset (the vCenter the cluster runs in before migrating).
pub mod source {
    pub const NAME: &str = "source";
    /// The address it listens on, and the `server` to use in OpenShift objects.
    pub const HOST: &str = "127.0.0.1";
    pub const USERNAME: &str = "administrator@src.vsphere.local";
    pub const PASSWORD: &str = "src-Secret-1!";
    pub const DATACENTER: &str = "src-dc";
    pub const CLUSTER: &str = "src-cluster";
    /// Added next to vcsim's `LocalDS_0` (which holds the generated VMs); vcsim cannot rename datastores.
    pub const DATASTORE: &str = "src-ds";
    /// vcsim's standard port group; the path still differs by datacenter. (vcsim's
    /// FindByInventoryPath cannot find a renamed distributed port group, so none is renamed.)
    pub const NETWORK: &str = "VM Network";
    /// `/src-dc/host/src-cluster`
    pub const CLUSTER_PATH: &str = "/src-dc/host/src-cluster";
    pub const DATASTORE_PATH: &str = "/src-dc/datastore/src-ds";
    pub const NETWORK_PATH: &str = "/src-dc/network/VM Network";
    pub const RESOURCE_POOL_PATH: &str = "/src-dc/host/src-cluster/Resources";
    pub const VM_FOLDER_PATH: &str = "/src-dc/vm";
    pub const HOSTS_PER_CLUSTER: u32 = 3;
    pub const VMS_PER_POOL: u32 = 2;
}

/// Inventory of the `target` preset (the vCenter the cluster moves to).
pub mod target {
    pub const NAME: &str = "target";
    /// A second loopback address: the Infrastructure CRD wants `server` to be a bare IP or
    /// host name (no port) and unique per vCenter, so the two vCenters differ by address.
    pub const HOST: &str = "127.0.0.2";
    pub const USERNAME: &str = "administrator@dst.vsphere.local";
    pub const PASSWORD: &str = "dst-Secret-2!";
    pub const DATACENTER: &str = "dst-dc";
    pub const CLUSTER: &str = "dst-cluster";
    /// Added next to vcsim's `LocalDS_0`; vcsim cannot rename datastores.
    pub const DATASTORE: &str = "dst-ds";
    /// vcsim's standard port group; the path still differs by datacenter. (vcsim's
    /// FindByInventoryPath cannot find a renamed distributed port group, so none is renamed.)
    pub const NETWORK: &str = "VM Network";
    /// `/dst-dc/host/dst-cluster`
    pub const CLUSTER_PATH: &str = "/dst-dc/host/dst-cluster";
    pub const DATASTORE_PATH: &str = "/dst-dc/datastore/dst-ds";
    pub const NETWORK_PATH: &str = "/dst-dc/network/VM Network";
    pub const RESOURCE_POOL_PATH: &str = "/dst-dc/host/dst-cluster/Resources";
    pub const VM_FOLDER_PATH: &str = "/dst-dc/vm";
    pub const HOSTS_PER_CLUSTER: u32 = 2;
    pub const VMS_PER_POOL: u32 = 0;
}

#[derive(Clone, Debug)]
pub struct VcsimOptions {
    /// A label for logs and errors ("source", "target").
    pub name: String,
    pub username: String,
    pub password: String,
    /// `(inventory path, new name)`, applied in order after the inventory is created, so a
    /// later entry must use the path as changed by earlier ones.
    pub renames: Vec<(String, String)>,
    pub datacenters: u32,
    pub clusters: u32,
    pub hosts_per_cluster: u32,
    pub vms_per_pool: u32,
    /// Folders per datacenter; vcsim nests the inventory inside them, which changes paths.
    pub folders: u32,
    /// Signs the serving certificate; `None` uses vcsim's built-in (untrusted) certificate.
    pub ca: Option<Arc<TestCa>>,
    /// The loopback address to listen on (the port is picked in 20000..=32767, which
    /// OpenShift's `vcenters[].port` accepts).
    pub listen_ip: IpAddr,
    /// More launcher flags, e.g. `-trace`. The presets put their `-add-datastore` here:
    /// push to this list rather than replacing it.
    pub extra_args: Vec<String>,
}

impl VcsimOptions {
    fn preset(name: &str, host: &str, user: &str, pass: &str, dc: &str, cluster: &str, ds: &str) -> Self {
        // Children first: renaming the datacenter last keeps the earlier paths valid.
        let renames = [("/DC0/host/DC0_C0", cluster), ("/DC0", dc)];
        VcsimOptions {
            name: name.into(),
            username: user.into(),
            password: pass.into(),
            renames: renames.iter().map(|(p, n)| (p.to_string(), n.to_string())).collect(),
            datacenters: 1,
            clusters: 1,
            hosts_per_cluster: 3,
            vms_per_pool: 2,
            folders: 0,
            ca: None,
            listen_ip: host.parse().expect("preset address"),
            // vcsim cannot rename datastores, so the launcher adds one with our name.
            extra_args: vec!["-add-datastore".into(), format!("/DC0={ds}")],
        }
    }

    /// The source vCenter: see [`source`] for its inventory and credentials.
    pub fn source() -> Self {
        use source as s;
        Self {
            hosts_per_cluster: s::HOSTS_PER_CLUSTER,
            vms_per_pool: s::VMS_PER_POOL,
            ..Self::preset(s::NAME, s::HOST, s::USERNAME, s::PASSWORD, s::DATACENTER, s::CLUSTER, s::DATASTORE)
        }
    }

    /// The target vCenter: see [`target`] for its inventory and credentials.
    pub fn target() -> Self {
        use target as t;
        Self {
            hosts_per_cluster: t::HOSTS_PER_CLUSTER,
            vms_per_pool: t::VMS_PER_POOL,
            ..Self::preset(t::NAME, t::HOST, t::USERNAME, t::PASSWORD, t::DATACENTER, t::CLUSTER, t::DATASTORE)
        }
    }
}

/// A running vcsim. Stopped (and its files removed) on drop.
pub struct Vcsim {
    pub name: String,
    /// `https://127.0.0.1:PORT/sdk`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub host_port: String,
    pub username: String,
    pub password: String,
    /// The CA that signed the serving certificate, when one did.
    pub ca_pem: Option<String>,
    /// SHA-256 of the serving certificate, `AA:BB:...`.
    pub thumbprint_sha256: String,
    /// Base URL of the launcher's control API (`http://127.0.0.1:PORT`).
    pub control_url: String,
    process: Process,
    http: reqwest::Client,
    // Dropped after `process` (field order), so the launcher never loses its files mid-run.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Vcsim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vcsim").field("name", &self.name).field("url", &self.url).finish_non_exhaustive()
    }
}

/// Counters from the launcher's control API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VcsimStats {
    /// SOAP and REST logins since start (the launcher's own excluded).
    pub login_attempts: u64,
    pub login_failures: u64,
    /// Keys of the live SOAP sessions (the launcher's own excluded).
    pub sessions: Vec<String>,
}

/// A template VM for [`Vcsim::ensure_template`]: inventory paths of where it goes.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSpec<'a> {
    pub folder: &'a str,
    pub name: &'a str,
    pub pool: &'a str,
    pub datastore: &'a str,
    /// The size of its one disk: machines may ask for this or more, never less.
    #[serde(rename = "diskGiB")]
    pub disk_gib: u32,
}

/// A VM as its guest sees itself ([`Vcsim::guest_vms`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestVm {
    pub name: String,
    /// The BIOS UUID (`config.uuid`), lower case: a kubelet's provider ID is `vsphere://<uuid>`.
    pub uuid: String,
    /// `poweredOn`, `poweredOff` or `suspended`.
    pub power_state: String,
    /// `guestinfo.hostname` (set by the machine actuator), if any.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The ignition config in `guestinfo.ignition.config.data`, decoded; empty if none.
    #[serde(default)]
    pub user_data: String,
}

/// The longest a launcher may take to print its URLs; only a guard against hanging.
const START_LIMIT: Duration = Duration::from_secs(120);
const START_ATTEMPTS: usize = 3;

impl Vcsim {
    pub async fn start(opts: VcsimOptions) -> Result<Vcsim> {
        Self::start_in(opts, &std::env::temp_dir()).await
    }

    /// Like [`Vcsim::start`], with the launcher's files in a new directory under `parent`.
    pub async fn start_in(opts: VcsimOptions, parent: &std::path::Path) -> Result<Vcsim> {
        let bin = tools::ensure_built_async().await?.vcsim;
        let dir = tempfile::Builder::new().prefix(&format!("vsm-vcsim-{}-", opts.name)).tempdir_in(parent)?;
        let mut args: Vec<String> = vec![
            "-control".into(),
            "127.0.0.1:0".into(),
            "-username".into(),
            opts.username.clone(),
            "-password".into(),
            opts.password.clone(),
            format!("-dc={}", opts.datacenters),
            format!("-cluster={}", opts.clusters),
            format!("-host={}", opts.hosts_per_cluster),
            format!("-vm={}", opts.vms_per_pool),
            format!("-folder={}", opts.folders),
        ];
        for (path, name) in &opts.renames {
            args.push("-rename".into());
            args.push(format!("{path}={name}"));
        }
        let ca_pem = match &opts.ca {
            Some(ca) => {
                let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
                if !ips.contains(&opts.listen_ip) {
                    ips.push(opts.listen_ip);
                }
                let (cert, key) = ca.issue_server(&["localhost"], &ips)?;
                let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
                std::fs::write(&cert_path, cert)?;
                std::fs::write(&key_path, key)?;
                args.extend(["-tlscert".into(), path_arg(&cert_path), "-tlskey".into(), path_arg(&key_path)]);
                Some(ca.cert_pem.clone())
            }
            None => None,
        };
        args.extend(opts.extra_args.iter().cloned());
        // TMPDIR inside our temp dir: vcsim's datastore directories go away with it even if
        // the launcher had to be SIGKILLed.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp)?;

        // The port is picked here (not by the kernel) to stay within 20000..=32767; another
        // process may grab it first, so a failed start is retried on a new port.
        let mut last_err = None;
        for attempt in 0..START_ATTEMPTS {
            let port = free_low_port(opts.listen_ip)?;
            let mut run_args = vec!["-l".to_string(), SocketAddr::new(opts.listen_ip, port).to_string()];
            run_args.extend(args.iter().cloned());
            let log = dir.path().join(format!("vcsim-{attempt}.log"));
            match launch(&opts.name, &bin, &run_args, &tmp, &log).await {
                Ok((process, lines)) => {
                    let get = |k: &str| {
                        lines
                            .iter()
                            .find(|(key, _)| key == k)
                            .map(|(_, v)| v.clone())
                            .with_context(|| format!("vcsim printed no {k}"))
                    };
                    let url = get("VCSIM_URL")?;
                    let host_port = url
                        .strip_prefix("https://")
                        .and_then(|rest| rest.split('/').next())
                        .with_context(|| format!("unexpected VCSIM_URL {url}"))?
                        .to_string();
                    return Ok(Vcsim {
                        name: opts.name,
                        host_port,
                        username: opts.username,
                        password: opts.password,
                        ca_pem,
                        thumbprint_sha256: get("VCSIM_THUMBPRINT_SHA256")?,
                        control_url: get("VCSIM_CONTROL")?,
                        url,
                        process,
                        // No pooled connections: a pooled connection belongs to the runtime that opened
                        // it, and a shared Vcsim is called from many short-lived test runtimes.
                        http: reqwest::Client::builder()
                            .timeout(Duration::from_secs(60))
                            .pool_max_idle_per_host(0)
                            .build()?,
                        _dir: dir,
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// `HOST:PORT`, e.g. `127.0.0.1:24567`: where clients connect.
    ///
    /// Not valid as an OpenShift `server` value: the Infrastructure CRD accepts only an IP or
    /// host name there (no port), and Secret keys such as `<server>.username` refuse `:`.
    /// Use [`Vcsim::host`] and [`Vcsim::port`] for OpenShift objects.
    pub fn server(&self) -> String {
        self.host_port.clone()
    }

    /// The address alone (`127.0.0.1` for the source preset, `127.0.0.2` for the target):
    /// what OpenShift stores as the vCenter `server` and uses in credential keys.
    pub fn host(&self) -> String {
        self.host_port.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default()
    }

    /// The HTTPS port, within 1..=32767 as the Infrastructure CRD's `vcenters[].port` requires.
    pub fn port(&self) -> u16 {
        self.host_port.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub async fn stats(&self) -> Result<VcsimStats> {
        let resp = self.http.get(format!("{}/stats", self.control_url)).send().await?;
        let resp = check(resp).await?;
        Ok(resp.json().await?)
    }

    /// Changes the credentials the simulator accepts (SOAP and REST); live sessions stay.
    pub async fn set_credentials(&self, username: &str, password: &str) -> Result<()> {
        let body = serde_json::json!({"username": username, "password": password});
        let resp = self.http.post(format!("{}/credentials", self.control_url)).json(&body).send().await?;
        check(resp).await?;
        Ok(())
    }

    /// Ends every SOAP session server-side (like a vCenter restart or session timeout);
    /// returns how many were ended.
    pub async fn terminate_sessions(&self) -> Result<usize> {
        #[derive(Deserialize)]
        struct Terminated {
            terminated: usize,
        }
        let resp = self.http.post(format!("{}/sessions/terminate", self.control_url)).send().await?;
        let t: Terminated = check(resp).await?.json().await?;
        Ok(t.terminated)
    }

    /// Makes a template VM at `<template.folder>/<template.name>` that the OpenShift vSphere
    /// machine actuator can clone (hardware version 19, one disk, no network card), unless
    /// a VM of that name is there; returns the template's BIOS UUID.
    pub async fn ensure_template(&self, template: &TemplateSpec<'_>) -> Result<String> {
        #[derive(Deserialize)]
        struct Made {
            uuid: String,
        }
        let resp = self.http.post(format!("{}/templates", self.control_url)).json(template).send().await?;
        let made: Made = check(resp).await?.json().await?;
        Ok(made.uuid)
    }

    /// Gives the VM with BIOS UUID `uuid` a network card on `network` (a name in its
    /// datacenter), unless it has one: a VM cloned from the template has none.
    pub async fn add_network_card(&self, uuid: &str, network: &str) -> Result<()> {
        let body = serde_json::json!({"uuid": uuid, "network": network});
        check(self.http.post(format!("{}/vms/network", self.control_url)).json(&body).send().await?).await?;
        Ok(())
    }

    /// Every VM (templates left out) as its guest sees itself.
    pub async fn guest_vms(&self) -> Result<Vec<GuestVm>> {
        guest_vms_at(&self.http, &self.control_url).await
    }

    /// Reports `ip` as the address of the guest of the VM with BIOS UUID `uuid` (as VMware
    /// Tools would): it shows in `guest.net` and `guest.ipAddress`.
    pub async fn set_guest_ip(&self, uuid: &str, ip: &str) -> Result<()> {
        set_guest_ip_at(&self.http, &self.control_url, uuid, ip).await
    }

    /// Stops the simulator now (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(&self) {
        self.process.stop();
    }

    pub(crate) fn process(&self) -> &Process {
        &self.process
    }
}

/// Starts the launcher and waits for its `VCSIM_READY` line.
async fn launch(
    name: &str,
    bin: &std::path::Path,
    args: &[String],
    tmp: &std::path::Path,
    log: &std::path::Path,
) -> Result<(Process, Vec<(String, String)>)> {
    let process = Process::spawn(&format!("vcsim {name}"), bin, args, &[("TMPDIR", tmp.as_os_str())], log, true)?;
    let stdout = process.take_stdout().context("vcsim stdout")?;
    let log2 = log.to_path_buf();
    let reading = tokio::task::spawn_blocking(move || read_announcements(stdout, "VCSIM_READY", &log2));
    match tokio::time::timeout(START_LIMIT, reading).await {
        Ok(Ok(Ok(lines))) => Ok((process, lines)),
        Ok(Ok(Err(e))) => anyhow::bail!("vcsim {name}: {e:#}; log tail:\n{}", process.log_tail()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => anyhow::bail!("vcsim {name} did not start in {START_LIMIT:?}; log tail:\n{}", process.log_tail()),
    }
}

/// [`Vcsim::guest_vms`] of the launcher whose control API is at `control_url`.
pub(crate) async fn guest_vms_at(http: &reqwest::Client, control_url: &str) -> Result<Vec<GuestVm>> {
    let resp = http.get(format!("{control_url}/vms")).send().await?;
    Ok(check(resp).await?.json().await?)
}

/// [`Vcsim::set_guest_ip`] of the launcher whose control API is at `control_url`.
pub(crate) async fn set_guest_ip_at(http: &reqwest::Client, control_url: &str, uuid: &str, ip: &str) -> Result<()> {
    let body = serde_json::json!({"uuid": uuid, "ip": ip});
    check(http.post(format!("{control_url}/vms/guest-ip")).json(&body).send().await?).await?;
    Ok(())
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    anyhow::bail!("vcsim control API: {status}: {body}")
}

fn path_arg(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}
