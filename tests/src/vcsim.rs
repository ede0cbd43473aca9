//! One simulated vCenter: the project's vcsim launcher (tests/tools/vcsim) on a free
//! port of its own loopback address, with its own credentials, inventory names and
//! CA-signed certificate.
//!
//! Presets: [`VcsimOptions::source`] and [`VcsimOptions::target`] (one datacenter, one
//! compute cluster; the names in [`source`] and [`target`]), their zonal forms
//! [`VcsimOptions::zonal_source`] and [`VcsimOptions::zonal_target`] (one datacenter with
//! `n` compute clusters, each with a datastore of its own, one per failure domain), and
//! [`VcsimOptions::extra_source`] / [`VcsimOptions::extra_target`] for more vCenters of either
//! side. Each preset records its names in [`Inventory`], which the seed and the tests place
//! machines by.
//!
//! How a preset gets its names: vcsim generates `DC0` with clusters `DC0_C0`, `DC0_C1`, ...
//! and a datastore `LocalDS_0`. The launcher adds the preset's datastores first (each on the
//! hosts of its cluster, or of the whole datacenter for the single-cluster presets: vcsim
//! cannot rename a datastore), then renames the clusters, then the datacenter (children
//! first, so every path still names the generated object).

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

/// The names of a preset's inventory: a datacenter and its compute clusters, each serving
/// as one failure domain with a datastore and a zone, all in the region of the datacenter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    pub datacenter: String,
    /// The region of every failure domain here (OpenShift tags the datacenter with it).
    pub region: String,
    pub clusters: Vec<InventoryCluster>,
    /// The port group machines use (vcsim's standard one).
    pub network: String,
}

/// One compute cluster of an [`Inventory`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryCluster {
    pub name: String,
    /// The datastore its machines use.
    pub datastore: String,
    /// The zone of its failure domain (OpenShift tags the cluster with it).
    pub zone: String,
    /// The name of the failure domain it serves as.
    pub failure_domain: String,
}

impl Inventory {
    /// `/<dc>/host/<cluster>` of cluster `i`.
    pub fn cluster_path(&self, i: usize) -> String {
        format!("/{}/host/{}", self.datacenter, self.clusters[i].name)
    }

    /// `/<dc>/datastore/<datastore>` of cluster `i`.
    pub fn datastore_path(&self, i: usize) -> String {
        format!("/{}/datastore/{}", self.datacenter, self.clusters[i].datastore)
    }

    /// `/<dc>/host/<cluster>/Resources` of cluster `i`.
    pub fn resource_pool_path(&self, i: usize) -> String {
        format!("{}/Resources", self.cluster_path(i))
    }

    /// `/<dc>/vm`
    pub fn vm_folder_path(&self) -> String {
        format!("/{}/vm", self.datacenter)
    }

    /// `/<dc>/network/<network>`
    pub fn network_path(&self) -> String {
        format!("/{}/network/{}", self.datacenter, self.network)
    }

    /// The index of the cluster at inventory path `path`, if it is one of these.
    pub fn cluster_index(&self, path: &str) -> Option<usize> {
        (0..self.clusters.len()).find(|&i| self.cluster_path(i) == path)
    }
}

/// A zonal inventory: datacenter `<prefix>-dc`, region `<prefix>-region`, and for each of
/// `n` clusters (letters `a`, `b`, ...) cluster `<prefix>-cluster-<l>` with datastore
/// `<prefix>-ds-<l>`, zone `<prefix>-zone-<l>` and failure domain `<prefix>-fd-<l>`.
pub fn zonal_inventory(prefix: &str, n: u32) -> Inventory {
    assert!((1..=26).contains(&n), "1 to 26 compute clusters, not {n}");
    Inventory {
        datacenter: format!("{prefix}-dc"),
        region: format!("{prefix}-region"),
        clusters: (0..n)
            .map(|i| {
                let l = char::from(b'a' + i as u8);
                InventoryCluster {
                    name: format!("{prefix}-cluster-{l}"),
                    datastore: format!("{prefix}-ds-{l}"),
                    zone: format!("{prefix}-zone-{l}"),
                    failure_domain: format!("{prefix}-fd-{l}"),
                }
            })
            .collect(),
        network: "VM Network".into(),
    }
}

/// The launcher's `-rename` pairs and `-add-datastore` flags that turn vcsim's generated
/// inventory (`DC0`, `DC0_C<i>`) into `inv`. With one cluster the datastore goes on every
/// host of the datacenter (as the original presets did); with several, each cluster's on the
/// hosts of that cluster only.
pub fn inventory_flags(inv: &Inventory) -> (Vec<(String, String)>, Vec<String>) {
    let mut renames: Vec<(String, String)> =
        inv.clusters.iter().enumerate().map(|(i, c)| (format!("/DC0/host/DC0_C{i}"), c.name.clone())).collect();
    renames.push(("/DC0".into(), inv.datacenter.clone()));
    let mut args = Vec::new();
    for (i, c) in inv.clusters.iter().enumerate() {
        let on = if inv.clusters.len() == 1 { "/DC0".to_string() } else { format!("/DC0/host/DC0_C{i}") };
        args.extend(["-add-datastore".to_string(), format!("{on}={}", c.datastore)]);
    }
    (renames, args)
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
    /// The names the presets give the inventory (None for hand-made options); kept on the
    /// running [`Vcsim`].
    pub inventory: Option<Inventory>,
}

/// Who a preset vCenter is: name, address and credentials.
struct Identity<'a> {
    name: &'a str,
    host: &'a str,
    user: &'a str,
    pass: &'a str,
}

impl VcsimOptions {
    fn preset(id: Identity<'_>, inventory: Inventory, hosts_per_cluster: u32, vms_per_pool: u32) -> Self {
        let (renames, extra_args) = inventory_flags(&inventory);
        VcsimOptions {
            name: id.name.into(),
            username: id.user.into(),
            password: id.pass.into(),
            renames,
            datacenters: 1,
            clusters: inventory.clusters.len() as u32,
            hosts_per_cluster,
            vms_per_pool,
            folders: 0,
            ca: None,
            listen_ip: id.host.parse().expect("preset address"),
            extra_args,
            inventory: Some(inventory),
        }
    }

    /// The single-cluster inventory of the `source`/`target` presets.
    fn classic_inventory(dc: &str, region: &str, cluster: &str, ds: &str, zone: &str, fd: &str) -> Inventory {
        Inventory {
            datacenter: dc.into(),
            region: region.into(),
            clusters: vec![InventoryCluster {
                name: cluster.into(),
                datastore: ds.into(),
                zone: zone.into(),
                failure_domain: fd.into(),
            }],
            network: "VM Network".into(),
        }
    }

    /// The source vCenter: see [`source`] for its inventory and credentials.
    pub fn source() -> Self {
        use source as s;
        let id = Identity { name: s::NAME, host: s::HOST, user: s::USERNAME, pass: s::PASSWORD };
        let inv =
            Self::classic_inventory(s::DATACENTER, "src-region", s::CLUSTER, s::DATASTORE, "src-zone-a", "source-fd");
        Self::preset(id, inv, s::HOSTS_PER_CLUSTER, s::VMS_PER_POOL)
    }

    /// The target vCenter: see [`target`] for its inventory and credentials.
    pub fn target() -> Self {
        use target as t;
        let id = Identity { name: t::NAME, host: t::HOST, user: t::USERNAME, pass: t::PASSWORD };
        let inv =
            Self::classic_inventory(t::DATACENTER, "dst-region", t::CLUSTER, t::DATASTORE, "dst-zone-a", "target-fd");
        Self::preset(id, inv, t::HOSTS_PER_CLUSTER, t::VMS_PER_POOL)
    }

    /// The source vCenter (address and credentials of [`source`]) with `n` compute clusters,
    /// one per failure domain: [`zonal_inventory`]`("src", n)` (`src-dc`,
    /// `src-cluster-a`/`src-ds-a`/`src-zone-a`/`src-fd-a`, ...). The [`source`] path
    /// constants do not apply to it.
    pub fn zonal_source(n: u32) -> Self {
        use source as s;
        let id = Identity { name: s::NAME, host: s::HOST, user: s::USERNAME, pass: s::PASSWORD };
        Self::preset(id, zonal_inventory("src", n), 2, 0)
    }

    /// The target vCenter (address and credentials of [`target`]) with `n` compute clusters:
    /// [`zonal_inventory`]`("dst", n)`. The [`target`] path constants do not apply to it.
    pub fn zonal_target(n: u32) -> Self {
        use target as t;
        let id = Identity { name: t::NAME, host: t::HOST, user: t::USERNAME, pass: t::PASSWORD };
        Self::preset(id, zonal_inventory("dst", n), 2, 0)
    }

    /// The `k`-th source vCenter (`k` >= 2; for
    /// [`TestEnvOptions::extra_sources`](crate::TestEnvOptions::extra_sources)): named
    /// `source-<k>`, on `127.0.0.<10+k>`, user `administrator@src<k>.vsphere.local`, with
    /// [`zonal_inventory`]`("src<k>", clusters)`.
    pub fn extra_source(k: u32, clusters: u32) -> Self {
        Self::extra("source", "src", 10, k, clusters)
    }

    /// The `k`-th target vCenter (`k` >= 2): named `target-<k>`, on `127.0.0.<20+k>`, user
    /// `administrator@dst<k>.vsphere.local`, with [`zonal_inventory`]`("dst<k>", clusters)`.
    pub fn extra_target(k: u32, clusters: u32) -> Self {
        Self::extra("target", "dst", 20, k, clusters)
    }

    fn extra(role: &str, prefix: &str, base: u32, k: u32, clusters: u32) -> Self {
        assert!((2..=9).contains(&k), "an extra {role} vCenter is the 2nd to the 9th, not the {k}th");
        let (name, host) = (format!("{role}-{k}"), format!("127.0.0.{}", base + k));
        let (user, pass) = (format!("administrator@{prefix}{k}.vsphere.local"), format!("{prefix}{k}-Secret-{k}!"));
        let id = Identity { name: &name, host: &host, user: &user, pass: &pass };
        Self::preset(id, zonal_inventory(&format!("{prefix}{k}"), clusters), 2, 0)
    }

    /// The same vCenter with a serving certificate from a CA of its own (not the
    /// environment's): clients must be given [`Vcsim::ca_pem`] to trust it.
    pub fn with_own_ca(self) -> Result<Self> {
        let ca = TestCa::new(&format!("vsm-vcsim-{}-ca", self.name))?;
        Ok(Self { ca: Some(Arc::new(ca)), ..self })
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
    /// The preset's inventory names ([`VcsimOptions::inventory`]).
    pub inventory: Option<Inventory>,
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
    /// Inventory path of the compute cluster its host is in (`/<dc>/host/<cluster>`).
    #[serde(default)]
    pub compute_cluster: Option<String>,
    /// Names of the datastores its files are on.
    #[serde(default)]
    pub datastores: Vec<String>,
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
                        inventory: opts.inventory.clone(),
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

    /// Takes `privileges` away from the accepted user on the object at inventory `path`
    /// and on everything that inherits from it: the user gets a role with every other
    /// privilege of Admin there, as a vCenter administrator would set a narrower role.
    pub async fn restrict_privileges(&self, path: &str, privileges: &[&str]) -> Result<()> {
        let body = serde_json::json!({"path": path, "without": privileges});
        check(self.http.post(format!("{}/permissions", self.control_url)).json(&body).send().await?).await?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_presets_keep_their_launcher_flags() {
        let s = VcsimOptions::source();
        let renames: Vec<(&str, &str)> = s.renames.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(renames, [("/DC0/host/DC0_C0", source::CLUSTER), ("/DC0", source::DATACENTER)]);
        assert_eq!(s.extra_args, ["-add-datastore", "/DC0=src-ds"]);
        let inv = s.inventory.unwrap();
        assert_eq!(inv.cluster_path(0), source::CLUSTER_PATH);
        assert_eq!(inv.datastore_path(0), source::DATASTORE_PATH);
        assert_eq!(inv.resource_pool_path(0), source::RESOURCE_POOL_PATH);
        assert_eq!(inv.network_path(), source::NETWORK_PATH);
        let t = VcsimOptions::target().inventory.unwrap();
        assert_eq!(
            (t.cluster_path(0).as_str(), t.datastore_path(0).as_str()),
            (target::CLUSTER_PATH, target::DATASTORE_PATH)
        );
    }

    #[test]
    fn a_zonal_preset_renames_every_cluster_and_gives_each_its_datastore() {
        let z = VcsimOptions::zonal_target(3);
        assert_eq!((z.clusters, z.listen_ip.to_string().as_str()), (3, target::HOST));
        assert_eq!(z.renames.last().unwrap(), &("/DC0".to_string(), "dst-dc".to_string()), "the datacenter last");
        assert!(z.renames.contains(&("/DC0/host/DC0_C2".into(), "dst-cluster-c".into())));
        assert_eq!(z.extra_args[2..4], ["-add-datastore".to_string(), "/DC0/host/DC0_C1=dst-ds-b".to_string()]);
        let inv = z.inventory.unwrap();
        assert_eq!(inv.cluster_index("/dst-dc/host/dst-cluster-b"), Some(1));
        assert_eq!(inv.clusters[2].failure_domain, "dst-fd-c");

        let e = VcsimOptions::extra_source(2, 1);
        assert_eq!((e.name.as_str(), e.listen_ip.to_string().as_str()), ("source-2", "127.0.0.12"));
        assert_eq!(e.username, "administrator@src2.vsphere.local");
        assert_eq!(e.inventory.unwrap().clusters[0].zone, "src2-zone-a");
        assert_eq!(VcsimOptions::extra_target(3, 1).listen_ip.to_string(), "127.0.0.23");
    }
}
