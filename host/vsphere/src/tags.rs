//! Tagging over REST (`/rest/com/vmware/cis/tagging/...`): idempotent ensure (look up,
//! then create; an already-exists race is resolved by looking up again), attach, detach.

use std::collections::HashMap;

use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::error::VsphereError;
use crate::inventory::ManagedObject;
use crate::session::Client;

const CATEGORY: &str = "com/vmware/cis/tagging/category";
const TAG: &str = "com/vmware/cis/tagging/tag";
const ASSOCIATION: &str = "com/vmware/cis/tagging/tag-association";
/// Parallel GETs when scanning categories or tags by name.
const SCAN_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cardinality {
    Single,
    Multiple,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategorySpec {
    pub name: String,
    pub description: String,
    pub cardinality: Cardinality,
    /// vSphere types the category's tags may be attached to (`Datacenter`,
    /// `ClusterComputeResource`); empty means any.
    pub associable_types: Vec<String>,
}

/// A tag attached to an object, with its category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    pub id: String,
    pub name: String,
    pub description: String,
    pub category_id: String,
    pub category_name: String,
    pub cardinality: Cardinality,
}

/// A category as vCenter stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub id: String,
    pub spec: CategorySpec,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CategoryModel {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub cardinality: Option<Cardinality>,
    #[serde(default)]
    pub associable_types: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TagModel {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category_id: String,
}

impl CategoryModel {
    fn into_category(self) -> Category {
        Category {
            id: self.id,
            spec: CategorySpec {
                name: self.name,
                description: self.description,
                cardinality: self.cardinality.unwrap_or(Cardinality::Multiple),
                associable_types: self.associable_types,
            },
        }
    }
}

/// `<base>/id:<id>` with the id escaped for a path segment.
fn with_id(base: &str, id: &str) -> String {
    let mut enc = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.' | '~' | ':' => enc.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    enc.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    format!("{base}/id:{enc}")
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    v: Option<serde_json::Value>,
    what: &str,
) -> Result<T, VsphereError> {
    let v = v.unwrap_or(serde_json::Value::Null);
    serde_json::from_value(v).map_err(|e| VsphereError::protocol(format!("{what}: {e}")))
}

/// A list answer; vcsim omits `value` entirely when a list is empty.
pub(crate) fn decode_list<T: for<'de> Deserialize<'de>>(
    v: Option<serde_json::Value>,
    what: &str,
) -> Result<Vec<T>, VsphereError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        v => decode(v, what),
    }
}

/// The associable types a category must be updated to, or None if it already allows
/// all wanted types. vCenter only allows appending to the list.
pub(crate) fn widened_types(existing: &[String], wanted: &[String]) -> Option<Vec<String>> {
    if existing.is_empty() {
        return None; // Any type is allowed already.
    }
    if wanted.is_empty() {
        return None; // Cannot widen to "any" by appending; leave as is.
    }
    let missing: Vec<&String> = wanted.iter().filter(|w| !existing.contains(w)).collect();
    if missing.is_empty() {
        return None;
    }
    let mut out = existing.to_vec();
    out.extend(missing.into_iter().cloned());
    Some(out)
}

impl Client {
    async fn get_category(&self, id: &str) -> Result<CategoryModel, VsphereError> {
        decode(self.rest(Method::GET, &with_id(CATEGORY, id), None, None).await?, "category")
    }

    async fn get_tag(&self, id: &str) -> Result<TagModel, VsphereError> {
        decode(self.rest(Method::GET, &with_id(TAG, id), None, None).await?, "tag")
    }

    async fn find_category(&self, name: &str) -> Result<Option<CategoryModel>, VsphereError> {
        let ids: Vec<String> = decode_list(self.rest(Method::GET, CATEGORY, None, None).await?, "category list")?;
        let found: Vec<CategoryModel> = stream::iter(ids)
            .map(|id| async move {
                match self.get_category(&id).await {
                    // Deleted between list and get.
                    Err(VsphereError::NotFound { .. }) => Ok(None),
                    r => r.map(Some),
                }
            })
            .buffer_unordered(SCAN_CONCURRENCY)
            .try_filter_map(|c| async move { Ok(c.filter(|c| c.name == name)) })
            .try_collect()
            .await?;
        Ok(found.into_iter().next())
    }

    /// Make sure a category exists as specified. Returns its id and whether it was created.
    /// An existing category with another cardinality is an Invalid error (vCenter cannot
    /// change it); missing associable types are added.
    pub async fn ensure_category(&self, spec: &CategorySpec) -> Result<(String, bool), VsphereError> {
        self.op("ensure_category", async {
            for _ in 0..2 {
                if let Some(c) = self.find_category(&spec.name).await? {
                    if let Some(card) = c.cardinality
                        && card != spec.cardinality
                    {
                        return Err(VsphereError::invalid(format!(
                            "category {} exists with cardinality {card:?}, wanted {:?}",
                            spec.name, spec.cardinality
                        )));
                    }
                    if let Some(types) = widened_types(&c.associable_types, &spec.associable_types) {
                        let body = json!({ "update_spec": { "associable_types": types } });
                        self.rest(Method::PATCH, &with_id(CATEGORY, &c.id), None, Some(&body)).await?;
                    }
                    return Ok((c.id, false));
                }
                let body = json!({ "create_spec": {
                    "name": spec.name,
                    "description": spec.description,
                    "cardinality": spec.cardinality,
                    "associable_types": spec.associable_types,
                }});
                match self.rest(Method::POST, CATEGORY, None, Some(&body)).await {
                    Ok(v) => return Ok((decode::<String>(v, "category id")?, true)),
                    // Created concurrently: look it up again.
                    Err(VsphereError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(VsphereError::protocol(format!("category {} reported as existing but not listed", spec.name)))
        })
        .await
    }

    async fn find_tag(&self, category_id: &str, name: &str) -> Result<Option<TagModel>, VsphereError> {
        let ids: Vec<String> = decode_list(
            self.rest(Method::POST, &with_id(TAG, category_id), Some("~action=list-tags-for-category"), None).await?,
            "tag list",
        )?;
        let found: Vec<TagModel> = stream::iter(ids)
            .map(|id| async move {
                match self.get_tag(&id).await {
                    Err(VsphereError::NotFound { .. }) => Ok(None),
                    r => r.map(Some),
                }
            })
            .buffer_unordered(SCAN_CONCURRENCY)
            .try_filter_map(|t| async move { Ok(t.filter(|t| t.name == name)) })
            .try_collect()
            .await?;
        Ok(found.into_iter().next())
    }

    /// The category with this name, if it exists (no side effect).
    pub async fn category(&self, name: &str) -> Result<Option<Category>, VsphereError> {
        self.op("find_category", async { Ok(self.find_category(name).await?.map(CategoryModel::into_category)) }).await
    }

    /// The category with this id, if it exists.
    pub async fn category_by_id(&self, id: &str) -> Result<Option<Category>, VsphereError> {
        self.op("get_category", async {
            match self.get_category(id).await {
                Ok(c) => Ok(Some(c.into_category())),
                Err(VsphereError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// The tag with this id, with its category; None if it does not exist.
    pub async fn tag(&self, id: &str) -> Result<Option<TagInfo>, VsphereError> {
        self.op("get_tag", async {
            let t = match self.get_tag(id).await {
                Ok(t) => t,
                Err(VsphereError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let c = self.get_category(&t.category_id).await?;
            Ok(Some(TagInfo {
                id: t.id,
                name: t.name,
                description: t.description,
                category_id: t.category_id,
                category_name: c.name,
                cardinality: c.cardinality.unwrap_or(Cardinality::Multiple),
            }))
        })
        .await
    }

    /// Every tag of a category, sorted by name; none if the category does not exist.
    pub async fn tags_of_category(&self, category_id: &str) -> Result<Vec<TagInfo>, VsphereError> {
        self.op("list_tags", async {
            let category = match self.get_category(category_id).await {
                Ok(c) => c,
                Err(VsphereError::NotFound { .. }) => return Ok(vec![]),
                Err(e) => return Err(e),
            };
            let ids: Vec<String> = decode_list(
                self.rest(Method::POST, &with_id(TAG, category_id), Some("~action=list-tags-for-category"), None)
                    .await?,
                "tag list",
            )?;
            let tags: Vec<TagModel> = stream::iter(ids)
                .map(|id| async move {
                    match self.get_tag(&id).await {
                        Err(VsphereError::NotFound { .. }) => Ok(None),
                        r => r.map(Some),
                    }
                })
                .buffer_unordered(SCAN_CONCURRENCY)
                .try_filter_map(|t| async move { Ok(t) })
                .try_collect()
                .await?;
            let mut out: Vec<TagInfo> = tags
                .into_iter()
                .map(|t| TagInfo {
                    id: t.id,
                    name: t.name,
                    description: t.description,
                    category_id: category.id.clone(),
                    category_name: category.name.clone(),
                    cardinality: category.cardinality.unwrap_or(Cardinality::Multiple),
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    /// The id of the category with this name, if it exists (no side effect).
    pub async fn category_id(&self, name: &str) -> Result<Option<String>, VsphereError> {
        self.op("find_category", async { Ok(self.find_category(name).await?.map(|c| c.id)) }).await
    }

    /// The id of the tag with this name in a category, if it exists (no side effect).
    pub async fn tag_id(&self, category_id: &str, name: &str) -> Result<Option<String>, VsphereError> {
        self.op("find_tag", async {
            match self.find_tag(category_id, name).await {
                Err(VsphereError::NotFound { .. }) => Ok(None),
                r => Ok(r?.map(|t| t.id)),
            }
        })
        .await
    }

    /// Make sure a tag exists in a category. Returns its id and whether it was created.
    pub async fn ensure_tag(
        &self,
        category_id: &str,
        name: &str,
        description: &str,
    ) -> Result<(String, bool), VsphereError> {
        self.op("ensure_tag", async {
            for _ in 0..2 {
                if let Some(t) = self.find_tag(category_id, name).await? {
                    return Ok((t.id, false));
                }
                // Only on the create path: an unknown category lists no tags rather than
                // failing on some servers (vcsim), and must not get an orphan tag.
                self.get_category(category_id).await?;
                let body = json!({ "create_spec": {
                    "name": name, "description": description, "category_id": category_id,
                }});
                match self.rest(Method::POST, TAG, None, Some(&body)).await {
                    Ok(v) => return Ok((decode::<String>(v, "tag id")?, true)),
                    Err(VsphereError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(VsphereError::protocol(format!("tag {name} reported as existing but not listed")))
        })
        .await
    }

    /// Delete a tag. `false` if it did not exist.
    pub async fn delete_tag(&self, id: &str) -> Result<bool, VsphereError> {
        self.op("delete_tag", async {
            match self.rest(Method::DELETE, &with_id(TAG, id), None, None).await {
                Ok(_) => Ok(true),
                Err(VsphereError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Delete a category and its tags. `false` if it did not exist.
    pub async fn delete_category(&self, id: &str) -> Result<bool, VsphereError> {
        self.op("delete_category", async {
            match self.rest(Method::DELETE, &with_id(CATEGORY, id), None, None).await {
                Ok(_) => Ok(true),
                Err(VsphereError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    fn object_id(obj: &ManagedObject) -> serde_json::Value {
        json!({ "object_id": { "id": obj.moref.value, "type": obj.moref.type_name } })
    }

    /// Attach a tag to an object (attaching again is harmless).
    pub async fn attach_tag(&self, tag_id: &str, obj: &ManagedObject) -> Result<(), VsphereError> {
        self.op("attach_tag", async {
            let body = Self::object_id(obj);
            self.rest(Method::POST, &with_id(ASSOCIATION, tag_id), Some("~action=attach"), Some(&body)).await?;
            Ok(())
        })
        .await
    }

    /// Detach a tag from an object (detaching a tag that is not attached is harmless).
    pub async fn detach_tag(&self, tag_id: &str, obj: &ManagedObject) -> Result<(), VsphereError> {
        self.op("detach_tag", async {
            let body = Self::object_id(obj);
            self.rest(Method::POST, &with_id(ASSOCIATION, tag_id), Some("~action=detach"), Some(&body)).await?;
            Ok(())
        })
        .await
    }

    /// Tags attached to an object, with their categories, sorted by category then name.
    pub async fn list_attached_tags(&self, obj: &ManagedObject) -> Result<Vec<TagInfo>, VsphereError> {
        self.op("list_attached_tags", async {
            let body = Self::object_id(obj);
            let ids: Vec<String> = decode_list(
                self.rest(Method::POST, ASSOCIATION, Some("~action=list-attached-tags"), Some(&body)).await?,
                "attached tags",
            )?;
            let tags: Vec<TagModel> = stream::iter(ids)
                .map(|id| async move { self.get_tag(&id).await })
                .buffer_unordered(SCAN_CONCURRENCY)
                .try_collect()
                .await?;
            let mut categories: HashMap<String, CategoryModel> = HashMap::new();
            for t in &tags {
                if !categories.contains_key(&t.category_id) {
                    categories.insert(t.category_id.clone(), self.get_category(&t.category_id).await?);
                }
            }
            let mut out: Vec<TagInfo> = tags
                .into_iter()
                .map(|t| {
                    let c = &categories[&t.category_id];
                    TagInfo {
                        id: t.id,
                        name: t.name,
                        description: t.description,
                        category_id: t.category_id,
                        category_name: c.name.clone(),
                        cardinality: c.cardinality.unwrap_or(Cardinality::Multiple),
                    }
                })
                .collect();
            out.sort_by(|a, b| (&a.category_name, &a.name).cmp(&(&b.category_name, &b.name)));
            Ok(out)
        })
        .await
    }

    /// Objects a tag is attached to, as (type, moref value), sorted.
    pub async fn list_attached_objects(&self, tag_id: &str) -> Result<Vec<(String, String)>, VsphereError> {
        #[derive(Deserialize)]
        struct ObjectId {
            id: String,
            #[serde(rename = "type")]
            type_name: String,
        }
        self.op("list_attached_objects", async {
            // vcsim answers an empty 200 unless the request carries a JSON body.
            let body = json!({});
            let v = self
                .rest(Method::POST, &with_id(ASSOCIATION, tag_id), Some("~action=list-attached-objects"), Some(&body))
                .await?;
            let objs: Vec<ObjectId> = decode_list(v, "attached objects")?;
            let mut out: Vec<_> = objs.into_iter().map(|o| (o.type_name, o.id)).collect();
            out.sort();
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_paths() {
        assert_eq!(
            with_id(TAG, "urn:vmomi:InventoryServiceTag:5b0c:GLOBAL"),
            "com/vmware/cis/tagging/tag/id:urn:vmomi:InventoryServiceTag:5b0c:GLOBAL"
        );
        assert_eq!(with_id(TAG, "a/b?c#d e"), "com/vmware/cis/tagging/tag/id:a%2Fb%3Fc%23d%20e");
    }

    #[test]
    fn widening() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(widened_types(&s(&["Datacenter"]), &s(&["Datacenter"])), None);
        assert_eq!(
            widened_types(&s(&["Datacenter"]), &s(&["ClusterComputeResource", "Datacenter"])),
            Some(s(&["Datacenter", "ClusterComputeResource"]))
        );
        assert_eq!(widened_types(&s(&[]), &s(&["Datacenter"])), None);
        assert_eq!(widened_types(&s(&["Datacenter"]), &s(&[])), None);
    }

    #[test]
    fn models_parse_vcsim_json() {
        let c: CategoryModel = serde_json::from_str(
            r#"{"id":"urn:vmomi:InventoryServiceCategory:1:GLOBAL","name":"openshift-region","description":"d","cardinality":"SINGLE","associable_types":["Datacenter"],"used_by":[]}"#,
        )
        .unwrap();
        assert_eq!(c.cardinality, Some(Cardinality::Single));
        let t: TagModel =
            serde_json::from_str(r#"{"id":"t1","name":"us-east","category_id":"c1","used_by":[]}"#).unwrap();
        assert_eq!(t.description, "");
        assert_eq!(serde_json::to_value(Cardinality::Multiple).unwrap(), "MULTIPLE");
    }
}
