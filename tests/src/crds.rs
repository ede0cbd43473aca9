//! Installs CustomResourceDefinitions (the project's and OpenShift's) and the namespaces the
//! migration uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};

/// Namespaces created in every environment (`kube-system` and `default` exist already).
pub const NAMESPACES: &[&str] = &[
    "openshift-config",
    "openshift-config-managed",
    "openshift-machine-api",
    "openshift-cluster-version",
    "openshift-cloud-controller-manager",
    "openshift-cluster-csi-drivers",
    "openshift-cluster-storage-operator",
    "vsphere-migration",
];

/// Only a guard against hanging; CRDs are normally Established within seconds.
const ESTABLISHED_LIMIT: Duration = Duration::from_secs(180);

/// Where the OpenShift CRDs come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OpenShiftCrds {
    /// The real CRDs from `../shared/fixtures/openshift-crds` (or `$VSM_OPENSHIFT_CRDS`) when
    /// that folder exists, else the project's fallback schemas.
    #[default]
    Auto,
    /// The real CRDs from this folder.
    Fixtures(PathBuf),
    /// The real CRDs (as [`OpenShiftCrds::Auto`] finds them), those of `variants/<name>/`
    /// in place of the ones of the same name: `Variant("techpreview".into())` installs the
    /// TechPreviewNoUpgrade Infrastructure CRD.
    Variant(String),
    /// The project's own schemas in `tests/crds-fallback/`.
    Fallback,
    /// No OpenShift CRDs.
    None,
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The real OpenShift CRDs, if present: `$VSM_OPENSHIFT_CRDS`, else `../shared/fixtures/openshift-crds`.
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("VSM_OPENSHIFT_CRDS").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("../shared/fixtures/openshift-crds"),
    };
    dir.canonicalize().ok().filter(|d| d.is_dir())
}

/// The project's fallback schemas for the OpenShift kinds it touches.
pub fn fallback_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crds-fallback")
}

/// The project's own CRDs (`crds/`).
pub fn project_dir() -> PathBuf {
    workspace_root().join("crds")
}

impl OpenShiftCrds {
    /// The folder to install from, if any.
    pub fn resolve(&self) -> Option<PathBuf> {
        match self {
            OpenShiftCrds::Auto => Some(fixtures_dir().unwrap_or_else(fallback_dir)),
            OpenShiftCrds::Fixtures(d) => Some(d.clone()),
            OpenShiftCrds::Variant(_) => fixtures_dir(),
            OpenShiftCrds::Fallback => Some(fallback_dir()),
            OpenShiftCrds::None => None,
        }
    }
}

impl OpenShiftCrds {
    /// The CRDs to install from `dir` (what [`OpenShiftCrds::resolve`] gave), a variant's in
    /// place of those of the same name.
    pub fn load(&self, dir: &Path) -> Result<Vec<CustomResourceDefinition>> {
        let mut crds = load_dir(dir)?;
        if let OpenShiftCrds::Variant(name) = self {
            let variant = load_dir(&dir.join("variants").join(name))?;
            anyhow::ensure!(!variant.is_empty(), "no CRDs in {}", dir.join("variants").join(name).display());
            crds.retain(|c| !variant.iter().any(|v| v.metadata.name == c.metadata.name));
            crds.extend(variant);
        }
        Ok(crds)
    }
}

/// Every CRD in the `*.yaml`/`*.yml` files of `dir` (multi-document files allowed; other
/// kinds are skipped). A missing folder has none.
pub fn load_dir(dir: &Path) -> Result<Vec<CustomResourceDefinition>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut crds = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).with_context(|| format!("parsing {}", file.display()))?;
            if value.is_null() || value.get("kind").and_then(|k| k.as_str()) != Some("CustomResourceDefinition") {
                continue;
            }
            let crd: CustomResourceDefinition =
                serde_yaml::from_value(value).with_context(|| format!("reading a CRD from {}", file.display()))?;
            crds.push(crd);
        }
    }
    Ok(crds)
}

use serde::Deserialize;

/// Server-side applies `crds` and waits until each is Established. Returns their names.
pub async fn install(client: &kube::Client, crds: Vec<CustomResourceDefinition>) -> Result<Vec<String>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("vsm-testenv").force();
    let mut names = Vec::new();
    for mut crd in crds {
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        crd.metadata.managed_fields = None;
        crd.metadata.resource_version = None;
        crd.status = None;
        api.patch(&name, &pp, &Patch::Apply(&crd)).await.with_context(|| format!("applying CRD {name}"))?;
        names.push(name);
    }
    for name in &names {
        let established = await_condition(api.clone(), name, conditions::is_crd_established());
        tokio::time::timeout(ESTABLISHED_LIMIT, established)
            .await
            .with_context(|| format!("CRD {name} not Established after {ESTABLISHED_LIMIT:?}"))??;
    }
    Ok(names)
}

/// Creates each namespace unless it exists.
pub async fn create_namespaces(client: &kube::Client, names: &[&str]) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in names {
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("creating namespace {name}")),
        }
    }
    Ok(())
}
