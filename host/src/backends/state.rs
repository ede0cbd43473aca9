//! The phases' key/value store: one ConfigMap per migration, owned by it. Keys are
//! `p.<phase>.<key>` (phase scope) and `m.<key>` (migration scope); plan mode writes under
//! `plan.` so a plan never leaves facts behind for a real run.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::api::FIELD_MANAGER;
use crate::runtime::bindings::{Scope, StateError};
use crate::runtime::{CallScope, StateBackend};

#[derive(Clone)]
pub struct StateStore {
    maps: Api<ConfigMap>,
    name: String,
    owner: OwnerReference,
    migration_uid: String,
}

/// ConfigMap keys allow `[-._a-zA-Z0-9]`; anything else is escaped as `_xx`.
fn escape(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' => out.push(b as char),
            _ => out.push_str(&format!("_{b:02x}")),
        }
    }
    out
}

pub fn full_key(phase: &str, scope: Scope, key: &str, dry_run: bool) -> String {
    let plan = if dry_run { "plan." } else { "" };
    match scope {
        Scope::Phase => format!("{plan}p.{phase}.{}", escape(key)),
        Scope::Migration => format!("{plan}m.{}", escape(key)),
    }
}

impl StateStore {
    pub fn new(client: kube::Client, namespace: &str, migration_name: &str, owner: OwnerReference) -> Self {
        let prefix: String = migration_name.chars().take(240).collect();
        StateStore {
            maps: Api::namespaced(client, namespace),
            name: format!("{prefix}-state"),
            migration_uid: owner.uid.clone(),
            owner,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole store (empty if it does not exist yet).
    pub async fn load(&self) -> Result<BTreeMap<String, String>, StateError> {
        match self.maps.get_opt(&self.name).await {
            Ok(Some(cm)) => Ok(cm.data.unwrap_or_default()),
            Ok(None) => Ok(BTreeMap::new()),
            Err(e) => Err(StateError::Unavailable(e.to_string())),
        }
    }

    /// Set (`Some`) or remove (`None`) one key; durable when it returns.
    pub async fn put(&self, key: &str, value: Option<&str>) -> Result<(), StateError> {
        let patch = json!({"data": {key: value}});
        let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match self.maps.patch(&self.name, &pp, &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                if value.is_none() {
                    return Ok(());
                }
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        owner_references: Some(vec![self.owner.clone()]),
                        labels: Some(BTreeMap::from([(
                            super::journal::labels::MIGRATION_UID.to_string(),
                            self.migration_uid.clone(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(key.to_string(), value.unwrap_or_default().to_string())])),
                    ..Default::default()
                };
                match self
                    .maps
                    .create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &cm)
                    .await
                {
                    Ok(_) => Ok(()),
                    // Created concurrently: the patch now applies.
                    Err(kube::Error::Api(s)) if s.code == 409 => Box::pin(self.put(key, value)).await,
                    Err(e) => Err(StateError::Unavailable(e.to_string())),
                }
            }
            Err(e) => Err(StateError::Unavailable(e.to_string())),
        }
    }

    pub async fn delete_store(&self) -> Result<(), kube::Error> {
        match self.maps.delete(&self.name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The `state` interface over the store, read once per call and kept in step with the
/// call's own writes. Plan mode uses the same store under its own keys.
pub struct StoreState {
    store: StateStore,
    cache: tokio::sync::Mutex<Option<BTreeMap<String, String>>>,
}

impl StoreState {
    pub fn new(store: StateStore) -> Self {
        StoreState { store, cache: tokio::sync::Mutex::new(None) }
    }

    async fn map(&self) -> Result<tokio::sync::MutexGuard<'_, Option<BTreeMap<String, String>>>, StateError> {
        let mut cache = self.cache.lock().await;
        if cache.is_none() {
            *cache = Some(self.store.load().await?);
        }
        Ok(cache)
    }

    async fn put(&self, s: &CallScope, which: Scope, key: &str, value: Option<&str>) -> Result<(), StateError> {
        let full = full_key(&s.phase, which, key, s.dry_run);
        let mut map = self.map().await?;
        self.store.put(&full, value).await?;
        let map = map.get_or_insert_with(BTreeMap::new);
        match value {
            Some(v) => map.insert(full, v.to_string()),
            None => map.remove(&full),
        };
        Ok(())
    }
}

#[async_trait]
impl StateBackend for StoreState {
    async fn get(&self, s: &CallScope, which: Scope, key: &str) -> Option<String> {
        let full = full_key(&s.phase, which, key, s.dry_run);
        match self.map().await {
            Ok(map) => map.as_ref().and_then(|m| m.get(&full).cloned()),
            Err(e) => {
                tracing::warn!(error = ?e, "state store unreadable; the phase sees no state");
                None
            }
        }
    }

    async fn set(&self, s: &CallScope, which: Scope, key: &str, value: &str) -> Result<(), StateError> {
        self.put(s, which, key, Some(value)).await
    }

    async fn delete(&self, s: &CallScope, which: Scope, key: &str) -> Result<(), StateError> {
        self.put(s, which, key, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_scoped_and_escaped_into_configmap_key_syntax() {
        assert_eq!(full_key("CreateTags", Scope::Phase, "tag-ids", false), "p.CreateTags.tag-ids");
        assert_eq!(full_key("CreateTags", Scope::Migration, "a/b c", false), "m.a_2fb_20c");
        assert_eq!(full_key("X", Scope::Phase, "k", true), "plan.p.X.k");
        assert_ne!(escape("a_b"), escape("a/b"), "escaping is injective");
    }
}
