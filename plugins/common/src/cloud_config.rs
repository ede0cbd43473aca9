//! The vSphere cloud provider configuration (`openshift-config/cloud-provider-config`, key
//! `config`), edited line by line: a vCenter is added (`vcenter.<server>` in the YAML
//! format, `[VirtualCenter "<server>"]` in the legacy INI format) or removed, and every
//! other line, comment and key order stays exactly as it was.
//!
//! Every edit is checked before it is returned: the old and new text are both parsed and
//! the new one must equal the old one with exactly the intended change, so a document the
//! line editor misreads is refused, never damaged.

mod ini;
mod lines;
mod yaml;

use serde_yaml::Value as Yaml;

/// The two formats OpenShift writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `global`, `vcenter`, `labels` (OpenShift 4.13 and later).
    Yaml,
    /// `[Global]`, `[Workspace]`, `[VirtualCenter "..."]`, `[Labels]`.
    Ini,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Ini => "INI",
        })
    }
}

/// The first line that is neither blank nor a comment (`#`, or INI's `;`).
fn first_meaningful(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
}

/// INI when the first meaningful line is a `[section]`, YAML otherwise.
pub fn format_of(text: &str) -> Format {
    match first_meaningful(text) {
        Some(l) if l.starts_with('[') => Format::Ini,
        _ => Format::Yaml,
    }
}

/// How the cloud provider verifies a vCenter's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system roots, or what the config's global section says.
    Default,
    /// A CA bundle file (PEM) inside the cloud provider's pods.
    CaFile(String),
    /// The certificate's thumbprint.
    Thumbprint(String),
    /// No verification (only when the migration asks for it).
    Insecure,
}

/// A vCenter as the cloud config describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VCenter {
    pub server: String,
    pub port: u16,
    /// Datacenters the cloud provider looks in; an existing entry keeps its own and gains
    /// the missing ones.
    pub datacenters: Vec<String>,
    pub trust: Trust,
}

/// A vCenter listed in the config, as the cloud provider reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub server: String,
    pub datacenters: Vec<String>,
}

/// Why a config cannot be read or edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The text does not parse.
    Parse(String),
    /// Valid, but written in a way this editor does not change line by line.
    Unsupported(String),
    /// The edit did not come out as intended (a bug); nothing is written.
    Mismatch(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Parse(m) => write!(f, "the cloud provider config does not parse: {m}"),
            ConfigError::Unsupported(m) => write!(f, "the cloud provider config cannot be edited safely: {m}"),
            ConfigError::Mismatch(m) => {
                write!(f, "refusing to write the cloud provider config: the edit would change more than intended ({m})")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for vsm_sdk::PhaseError {
    fn from(e: ConfigError) -> Self {
        vsm_sdk::PhaseError::invalid(e.to_string())
    }
}

/// Add `vc` (or bring its existing entry up to date: port, trust, missing datacenters).
/// Returns the text unchanged if there is nothing to do.
pub fn add_vcenter(text: &str, vc: &VCenter) -> Result<String, ConfigError> {
    match format_of(text) {
        Format::Yaml => yaml::add(text, vc),
        Format::Ini => ini::add(text, vc),
    }
}

/// Remove `server`'s entry. Returns the text unchanged if it has none.
pub fn remove_vcenter(text: &str, server: &str) -> Result<String, ConfigError> {
    match format_of(text) {
        Format::Yaml => yaml::remove(text, server),
        Format::Ini => ini::remove(text, server),
    }
}

/// The vCenters the config lists, in order. A config of comments only lists none, as the
/// cloud provider reads it (its YAML reader refuses what its INI fallback accepts, such as
/// control characters in a comment); removing an INI config's last section leaves one.
pub fn vcenters(text: &str) -> Result<Vec<Listed>, ConfigError> {
    if first_meaningful(text).is_none() {
        return Ok(Vec::new());
    }
    match format_of(text) {
        Format::Yaml => yaml::listed(text),
        Format::Ini => ini::listed(text),
    }
}

/// The CA bundle file the config already uses (its global setting, else the first vCenter
/// entry with one).
pub fn ca_file(text: &str) -> Option<String> {
    match format_of(text) {
        Format::Yaml => yaml::ca_file(text),
        Format::Ini => ini::ca_file(text),
    }
}

/// Whether the global settings turn certificate verification off for every vCenter (the
/// installer writes `insecure-flag = "1"`); a vCenter entry cannot turn it back on (the
/// provider reads a false per-vCenter flag as "inherit").
pub fn globally_insecure(text: &str) -> bool {
    match format_of(text) {
        Format::Yaml => yaml::globally_insecure(text),
        Format::Ini => ini::globally_insecure(text),
    }
}

/// The legacy provider's default placement (`[Workspace]`, INI only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub server: String,
    pub datacenter: String,
    /// Datastore name (not a path).
    pub default_datastore: String,
    pub folder: String,
    pub resource_pool: String,
}

/// `[Workspace] server` of an INI config (None for YAML or when absent).
pub fn workspace_server(text: &str) -> Option<String> {
    match format_of(text) {
        Format::Yaml => None,
        Format::Ini => ini::workspace_server(text),
    }
}

/// Point an INI config's `[Workspace]` at `ws` (YAML has no workspace: unchanged).
pub fn set_workspace(text: &str, ws: &Workspace) -> Result<String, ConfigError> {
    match format_of(text) {
        Format::Yaml => Ok(text.to_string()),
        Format::Ini => ini::set_workspace(text, ws),
    }
}

/// A YAML scalar as this editor writes it: plain when that reads back as the same string,
/// double-quoted otherwise.
fn yaml_scalar(s: &str) -> String {
    if plain_safe(s) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Plain scalars that YAML reads back as the same string: a conservative alphabet, and
/// nothing that resolves to a bool, null or number (dotted quads stay plain).
fn plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-')) {
        return false;
    }
    if !(first.is_ascii_alphanumeric() || first == '/' || first == '_') {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    if ["true", "false", "yes", "no", "on", "off", "y", "n", "null"].contains(&lower.as_str()) {
        return false;
    }
    let numeric_looking =
        s.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | '_' | '-' | 'x' | 'o' | 'X' | 'O'));
    let dotted_quad = s.split('.').count() >= 3 && s.chars().all(|c| c.is_ascii_digit() || c == '.');
    !(first.is_ascii_digit() && numeric_looking && !dotted_quad)
}

/// The YAML document, or Null for an empty one.
fn parse_yaml(text: &str) -> Result<Yaml, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Yaml::Null);
    }
    serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
}

#[cfg(test)]
mod tests;
