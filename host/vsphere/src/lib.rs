//! vCenter client for the operator: SOAP (`/sdk`) for inventory, folders and VMs, REST
//! (`/rest/com/vmware/cis/...`) for sessions and tags.
//!
//! - TLS is verified by default (system roots plus an optional CA bundle), or pinned to
//!   one SHA-256 leaf; `insecure` only when asked, and reported.
//! - One session per (server, user, credentials) in a [`SessionPool`], handed only to
//!   callers with those credentials; keep-alive; transparent re-login when vCenter drops a
//!   session; logout on shutdown.
//! - Retries with backoff on transient faults only; rejected credentials are never sent
//!   again until new ones have been accepted, so directory accounts are not locked out.
//! - Redirects are never followed (a login body carries the password).
//! - Every SOAP method and REST call is a tracing span; bodies at debug level, redacted.
//!
//! Modules, bottom up (each depends only on those above it):
//! - [`error`]: the typed errors; [`redact`]: secrets out of traced text; [`retry`]: when
//!   to try again.
//! - [`soap`]: vim25 envelopes, the response tree, answer readers and faults (no I/O).
//! - `endpoint`: how a vCenter is reached: its address, [`tls`] trust, the HTTP client.
//! - [`session`]: the pool, clients, and the SOAP and REST sessions on an endpoint.
//! - [`inventory`], [`folders`], [`vm`], [`tags`], [`privileges`]: the operations, as methods of [`Client`].

mod endpoint;
pub mod error;
pub mod folders;
pub mod inventory;
pub mod privileges;
pub mod redact;
pub mod retry;
pub mod session;
pub mod soap;
pub mod tags;
pub mod vm;

pub use endpoint::tls;
pub use error::VsphereError;
pub use inventory::{ManagedObject, ObjectKind};
pub use privileges::PrivilegeReport;
pub use retry::RetryPolicy;
pub use session::{Client, ClientOptions, Credentials, PoolStats, Secret, ServerSpec, SessionPool};
pub use soap::MoRef;
pub use soap::parse::About;
pub use tags::{Cardinality, Category, CategorySpec, TagInfo};
pub use tls::{TlsPolicy, fetch_thumbprint, fetch_thumbprint_with_timeout, install_default_crypto_provider};
pub use vm::{PowerState, VmSummary};

/// Entry points for the fuzz targets (`tests/fuzz`): the decoding of vCenter answers,
/// without a connection. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::VsphereError;

    /// A REST answer with this HTTP status and body, decoded as every REST call does.
    pub fn rest_answer(status: u16, body: &str) -> Result<Option<serde_json::Value>, VsphereError> {
        let status = reqwest::StatusCode::from_u16(status).map_err(|e| VsphereError::protocol(e.to_string()))?;
        crate::session::rest::rest_answer("vcenter.fuzz", status, body, "com/vmware/cis/tagging/tag", "GET tagging/tag")
    }

    /// A tag category answer (`value` of a REST answer), as `ensure_category` reads it:
    /// (id, name, associable types).
    pub fn category(value: Option<serde_json::Value>) -> Result<(String, String, Vec<String>), VsphereError> {
        let c: crate::tags::CategoryModel = crate::tags::decode(value, "category")?;
        Ok((c.id, c.name, c.associable_types))
    }

    /// A list of tags (`value` of a REST answer), as the tag calls read it: (id, name, category id).
    pub fn tags(value: Option<serde_json::Value>) -> Result<Vec<(String, String, String)>, VsphereError> {
        let tags: Vec<crate::tags::TagModel> = crate::tags::decode_list(value, "tags")?;
        Ok(tags.into_iter().map(|t| (t.id, t.name, t.category_id)).collect())
    }
}
