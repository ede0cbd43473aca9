//! vim25 answers: readers for the shapes the client uses (ServiceContent and the
//! `about` block, RetrievePropertiesEx results, TaskInfo), built on the response tree;
//! a failed task's fault is mapped by [`super::fault`].

use super::fault;
use crate::error::VsphereError;

// The tree types and functions stay reachable here, where they were first published.
pub use super::tree::{MoRef, Node, body_payload, parse};

/// The vCenter's `about` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct About {
    pub name: String,
    pub full_name: String,
    /// License product name (`VMware VirtualCenter Server`), or `name` if absent.
    pub product: String,
    pub version: String,
    pub build: String,
    pub api_version: String,
    /// `VirtualCenter` for a vCenter, `HostAgent` for a bare ESXi.
    pub api_type: String,
    /// Unique per vCenter: how the operator tells two vCenters apart.
    pub instance_uuid: String,
}

/// The parts of the ServiceContent the client uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceContent {
    pub root_folder: MoRef,
    pub property_collector: MoRef,
    pub session_manager: MoRef,
    pub search_index: Option<MoRef>,
    /// Absent on a bare ESXi host agent's older releases; every vCenter has one.
    pub authorization_manager: Option<MoRef>,
    pub about: About,
}

pub fn service_content(resp: &Node) -> Result<ServiceContent, VsphereError> {
    let rv = resp.child("returnval").ok_or_else(|| VsphereError::protocol("RetrieveServiceContent: no returnval"))?;
    let mref = |n: &str| {
        rv.child(n).and_then(Node::moref).ok_or_else(|| VsphereError::protocol(format!("ServiceContent without {n}")))
    };
    let about = rv.child("about").ok_or_else(|| VsphereError::protocol("ServiceContent without about"))?;
    let t = |n: &str| about.child_text(n).unwrap_or_default().to_string();
    Ok(ServiceContent {
        root_folder: mref("rootFolder")?,
        property_collector: mref("propertyCollector")?,
        session_manager: mref("sessionManager")?,
        search_index: rv.child("searchIndex").and_then(Node::moref),
        authorization_manager: rv.child("authorizationManager").and_then(Node::moref),
        about: About {
            name: t("name"),
            full_name: t("fullName"),
            product: if t("licenseProductName").is_empty() { t("name") } else { t("licenseProductName") },
            version: t("version"),
            build: t("build"),
            api_version: t("apiVersion"),
            api_type: t("apiType"),
            instance_uuid: t("instanceUuid"),
        },
    })
}

/// One object of a RetrievePropertiesEx result with its properties (raw `val` nodes).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectContent {
    pub obj: MoRef,
    pub props: Vec<(String, Node)>,
}

impl ObjectContent {
    pub fn prop(&self, name: &str) -> Option<&Node> {
        self.props.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn prop_text(&self, name: &str) -> Option<&str> {
        self.prop(name).map(|v| v.text.as_str())
    }

    pub fn prop_moref(&self, name: &str) -> Option<MoRef> {
        self.prop(name).and_then(Node::moref)
    }
}

/// Objects and the continuation token of a RetrievePropertiesEx / Continue... answer.
pub fn retrieve_result(resp: &Node) -> Result<(Vec<ObjectContent>, Option<String>), VsphereError> {
    // No returnval at all means "nothing matched".
    let Some(rv) = resp.child("returnval") else {
        return Ok((Vec::new(), None));
    };
    let token = rv.child_text("token").map(str::to_string).filter(|t| !t.is_empty());
    let mut out = Vec::new();
    for o in rv.children_named("objects") {
        let obj =
            o.child("obj").and_then(Node::moref).ok_or_else(|| VsphereError::protocol("ObjectContent without obj"))?;
        let mut props = Vec::new();
        for p in o.children_named("propSet") {
            let name = p.child_text("name").unwrap_or_default().to_string();
            if let Some(v) = p.child("val") {
                props.push((name, v.clone()));
            }
        }
        out.push(ObjectContent { obj, props });
    }
    Ok((out, token))
}

/// True when a property-collector answer withheld properties because the session is
/// gone (vcsim answers that way instead of failing the whole call).
pub fn missing_for_lack_of_session(resp: &Node) -> bool {
    let Some(rv) = resp.child("returnval") else {
        return false;
    };
    rv.children_named("objects").any(|o| {
        o.children_named("missingSet").any(|m| {
            m.child("fault").and_then(|f| f.child("fault")).and_then(Node::xsi_type) == Some("NotAuthenticated")
        })
    })
}

/// Task state as reported by `Task.info`.
#[derive(Debug, Clone)]
pub enum TaskState {
    Running,
    Success(Option<Node>),
    Error(VsphereError),
}

/// Read a `TaskInfo` value node.
pub fn task_info(info: &Node) -> Result<TaskState, VsphereError> {
    match info.child_text("state").unwrap_or_default() {
        "queued" | "running" => Ok(TaskState::Running),
        "success" => Ok(TaskState::Success(info.child("result").cloned())),
        "error" => {
            let err = info.child("error");
            let fault = err.and_then(|e| e.child("fault"));
            let message = err.and_then(|e| e.child_text("localizedMessage")).unwrap_or_default().to_string();
            Ok(TaskState::Error(match fault {
                Some(f) => fault::from_detail(f, &message),
                None => VsphereError::Fault { fault: "unknown".into(), message },
            }))
        }
        other => Err(VsphereError::protocol(format!("task in unknown state {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RPX: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body><RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><token>1</token>
<objects><obj type="Datacenter">datacenter-2</obj><propSet><name>name</name><val xsi:type="xsd:string">DC&amp;0 &#x263A;</val></propSet><propSet><name>parent</name><val type="Folder" xsi:type="ManagedObjectReference">group-d1</val></propSet></objects>
<objects><obj type="Folder">group-d1</obj><propSet><name>name</name><val xsi:type="xsd:string">Datacenters</val></propSet></objects>
</returnval></RetrievePropertiesExResponse></soapenv:Body></soapenv:Envelope>"#;

    #[test]
    fn retrieve_result_with_morefs_entities_and_token() {
        let root = parse(RPX).unwrap();
        let (objs, token) = retrieve_result(body_payload(&root).unwrap()).unwrap();
        assert_eq!(token.as_deref(), Some("1"));
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].obj, MoRef::new("Datacenter", "datacenter-2"));
        assert_eq!(objs[0].prop_text("name"), Some("DC&0 \u{263A}"));
        assert_eq!(objs[0].prop("name").unwrap().xsi_type(), Some("string"));
        assert_eq!(objs[0].prop_moref("parent"), Some(MoRef::new("Folder", "group-d1")));
        assert_eq!(objs[1].prop_moref("parent"), None);
    }

    #[test]
    fn missing_properties_without_session() {
        let xml = r#"<Envelope xmlns:xsi="x"><Body><RetrievePropertiesExResponse><returnval><objects><obj type="Folder">group-d1</obj>
<missingSet><path>name</path><fault><fault xsi:type="NotAuthenticated"><privilegeId>System.View</privilegeId></fault><localizedMessage></localizedMessage></fault></missingSet></objects></returnval></RetrievePropertiesExResponse></Body></Envelope>"#;
        let root = parse(xml).unwrap();
        assert!(missing_for_lack_of_session(body_payload(&root).unwrap()));
        let root = parse(RPX).unwrap();
        assert!(!missing_for_lack_of_session(body_payload(&root).unwrap()));
    }

    #[test]
    fn empty_result() {
        let root =
            parse(r#"<Envelope><Body><RetrievePropertiesExResponse xmlns="urn:vim25"/></Body></Envelope>"#).unwrap();
        let (objs, token) = retrieve_result(body_payload(&root).unwrap()).unwrap();
        assert!(objs.is_empty() && token.is_none());
    }

    #[test]
    fn service_content_fields() {
        let xml = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><RetrieveServiceContentResponse xmlns="urn:vim25"><returnval>
<rootFolder type="Folder">group-d1</rootFolder><propertyCollector type="PropertyCollector">propertyCollector</propertyCollector>
<about><name>VMware vCenter Server</name><fullName>VMware vCenter Server 8.0.3</fullName><version>8.0.3</version><build>1</build><apiType>VirtualCenter</apiType><apiVersion>8.0.3.0</apiVersion><instanceUuid>dbed6e0c-bd88-4ef6-b594-21283e1c677f</instanceUuid><licenseProductName>VMware VirtualCenter Server</licenseProductName></about>
<sessionManager type="SessionManager">SessionManager</sessionManager><searchIndex type="SearchIndex">SearchIndex</searchIndex></returnval></RetrieveServiceContentResponse></soapenv:Body></soapenv:Envelope>"#;
        let root = parse(xml).unwrap();
        let sc = service_content(body_payload(&root).unwrap()).unwrap();
        assert_eq!(sc.root_folder, MoRef::new("Folder", "group-d1"));
        assert_eq!(sc.session_manager.value, "SessionManager");
        assert_eq!(sc.about.api_version, "8.0.3.0");
        assert_eq!(sc.about.instance_uuid, "dbed6e0c-bd88-4ef6-b594-21283e1c677f");
        assert_eq!(sc.about.product, "VMware VirtualCenter Server");
    }

    #[test]
    fn task_infos() {
        let ok = parse(r#"<val xmlns:xsi="x" xsi:type="TaskInfo"><key>task-1</key><state>success</state><result type="VirtualMachine" xsi:type="ManagedObjectReference">vm-9</result></val>"#).unwrap();
        match task_info(&ok).unwrap() {
            TaskState::Success(Some(r)) => {
                assert_eq!(r.moref().unwrap(), MoRef::new("VirtualMachine", "vm-9"))
            }
            other => panic!("{other:?}"),
        }
        let run = parse(r#"<val><state>running</state></val>"#).unwrap();
        assert!(matches!(task_info(&run).unwrap(), TaskState::Running));
        let err = parse(r#"<val xmlns:xsi="x"><state>error</state><error><fault xsi:type="DuplicateName"><name>f1</name><object type="Folder">group-v4</object></fault><localizedMessage>The name 'f1' already exists.</localizedMessage></error></val>"#).unwrap();
        match task_info(&err).unwrap() {
            TaskState::Error(VsphereError::AlreadyExists { name }) => assert_eq!(name, "f1"),
            other => panic!("{other:?}"),
        }
        assert!(task_info(&parse("<val><state>odd</state></val>").unwrap()).is_err());
    }
}
