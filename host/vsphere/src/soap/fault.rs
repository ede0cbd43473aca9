//! SOAP faults → typed errors: a `<Fault>` (or a task's `LocalizedMethodFault`) read
//! from the response tree and mapped to the [`VsphereError`] variant phases act on.

use super::tree::Node;
use crate::error::VsphereError;

/// Fault types that say "try again later", not "this is wrong".
const TRANSIENT_FAULTS: &[&str] = &[
    "TaskInProgress",
    "ConcurrentAccess",
    "HostCommunication",
    "HostNotConnected",
    "HostNotReachable",
    "Timedout",
    "RequestCanceled",
    "SystemBusy",
];

/// A parsed `<Fault>`.
#[derive(Debug, Clone, PartialEq)]
pub struct SoapFault {
    /// vim25 fault type (`NotAuthenticated`, `DuplicateName`, ...); empty if the server
    /// sent no detail.
    pub kind: String,
    pub message: String,
    pub detail: Option<Node>,
}

impl SoapFault {
    /// Read a `Fault` element (faultstring + detail).
    pub fn from_node(fault: &Node) -> SoapFault {
        let message = fault.child_text("faultstring").unwrap_or_default().trim().to_string();
        let detail = fault.child("detail").and_then(|d| d.children.first()).cloned();
        let kind = detail.as_ref().map(fault_type).unwrap_or_default();
        SoapFault { kind, message, detail }
    }

    pub fn is_transient(&self) -> bool {
        TRANSIENT_FAULTS.contains(&self.kind.as_str())
    }

    /// The typed error for this fault (NotAuthenticated and InvalidLogin are handled by
    /// the session before this is reached; here they map without server context).
    pub fn into_error(self, operation: &str) -> VsphereError {
        if self.is_transient() {
            return VsphereError::Transient {
                operation: operation.to_string(),
                attempts: 1,
                reason: format!("{}: {}", self.kind, self.message),
            };
        }
        match self.detail {
            Some(d) => from_detail(&d, &self.message),
            None => VsphereError::Fault { fault: "ServerFault".into(), message: self.message },
        }
    }
}

/// `xsi:type`, or the element name without its `Fault` suffix (`DuplicateNameFault`).
fn fault_type(n: &Node) -> String {
    match n.xsi_type() {
        Some(t) => t.to_string(),
        None => n.name.strip_suffix("Fault").unwrap_or(&n.name).to_string(),
    }
}

/// Map a fault object (detail child, or `LocalizedMethodFault.fault`) to an error.
pub fn from_detail(d: &Node, message: &str) -> VsphereError {
    let kind = fault_type(d);
    let obj = || d.child("object").and_then(Node::moref).map(|m| m.to_string()).unwrap_or_default();
    match kind.as_str() {
        "NotAuthenticated" => VsphereError::NotAuthenticated { server: String::new() },
        "NoPermission" => VsphereError::PermissionDenied {
            privilege: d.child_text("privilegeId").unwrap_or_default().to_string(),
            object: obj(),
        },
        "InvalidLogin" | "InvalidLocale" => {
            VsphereError::AuthFailed { server: String::new(), username: String::new(), cached: false }
        }
        "DuplicateName" | "AlreadyExists" => VsphereError::AlreadyExists {
            name: d.child_text("name").map(str::to_string).unwrap_or_else(|| message.to_string()),
        },
        "ManagedObjectNotFound" => VsphereError::NotFound {
            path: d.child("obj").and_then(Node::moref).map(|m| m.to_string()).unwrap_or_else(|| message.to_string()),
        },
        "NotFound" => VsphereError::NotFound { path: message.to_string() },
        "InvalidArgument" => VsphereError::Invalid {
            message: match d.child_text("invalidProperty") {
                Some(p) if !p.is_empty() => format!("invalid argument {p}: {message}"),
                _ => format!("invalid argument: {message}"),
            },
        },
        "InvalidName" | "InvalidState" | "InvalidPowerState" | "NotSupported" | "InvalidRequest" | "ResourceInUse"
        | "InvalidDatastore" | "InvalidFolder" | "VmConfigFault" | "MethodDisabled" => {
            VsphereError::Invalid { message: format!("{kind}: {message}") }
        }
        k if TRANSIENT_FAULTS.contains(&k) => {
            VsphereError::Transient { operation: String::new(), attempts: 1, reason: format!("{k}: {message}") }
        }
        _ => VsphereError::Fault { fault: kind.clone(), message: message.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::tree::{body_payload, parse};

    fn fault(xml_detail: &str, msg: &str) -> SoapFault {
        let xml = format!(
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>{msg}</faultstring><detail>{xml_detail}</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
        );
        let root = parse(&xml).unwrap();
        SoapFault::from_node(body_payload(&root).unwrap())
    }

    #[test]
    fn not_authenticated_from_vcsim_shape() {
        let f = fault(
            r#"<NotAuthenticatedFault xmlns="urn:vim25" xsi:type="NotAuthenticated"><object type="Folder">group-v3</object><privilegeId>System.View</privilegeId></NotAuthenticatedFault>"#,
            "",
        );
        assert_eq!(f.kind, "NotAuthenticated");
        assert!(matches!(f.into_error("CreateFolder"), VsphereError::NotAuthenticated { .. }));
    }

    #[test]
    fn no_permission_names_privilege() {
        let f = fault(
            r#"<NoPermissionFault xmlns="urn:vim25" xsi:type="NoPermission"><object type="Folder">group-v3</object><privilegeId>Folder.Create</privilegeId></NoPermissionFault>"#,
            "Permission to perform this operation was denied.",
        );
        match f.into_error("CreateFolder") {
            VsphereError::PermissionDenied { privilege, object } => {
                assert_eq!(privilege, "Folder.Create");
                assert_eq!(object, "Folder:group-v3");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn login_duplicate_missing_invalid() {
        let f = fault(
            r#"<InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault>"#,
            "Login failure",
        );
        assert!(matches!(f.into_error("Login"), VsphereError::AuthFailed { cached: false, .. }));
        let f = fault(
            r#"<DuplicateNameFault xmlns="urn:vim25" xsi:type="DuplicateName"><name>x</name><object type="Folder">group-v9</object></DuplicateNameFault>"#,
            "dup",
        );
        assert!(matches!(f.into_error("CreateFolder"), VsphereError::AlreadyExists { name } if name == "x"));
        let f = fault(
            r#"<ManagedObjectNotFoundFault xmlns="urn:vim25" xsi:type="ManagedObjectNotFound"><obj type="VirtualMachine">vm-1</obj></ManagedObjectNotFoundFault>"#,
            "gone",
        );
        assert!(
            matches!(f.into_error("Destroy_Task"), VsphereError::NotFound { path } if path == "VirtualMachine:vm-1")
        );
        let f = fault(
            r#"<InvalidArgumentFault xmlns="urn:vim25" xsi:type="InvalidArgument"><invalidProperty>spec.name</invalidProperty></InvalidArgumentFault>"#,
            "bad",
        );
        assert!(matches!(f.into_error("x"), VsphereError::Invalid { message } if message.contains("spec.name")));
        // Element name without xsi:type still identifies the fault.
        let f = fault(r#"<InvalidStateFault xmlns="urn:vim25"></InvalidStateFault>"#, "state");
        assert_eq!(f.kind, "InvalidState");
    }

    #[test]
    fn transient_and_unknown() {
        let f = fault(r#"<TaskInProgressFault xmlns="urn:vim25" xsi:type="TaskInProgress"/>"#, "busy");
        assert!(f.is_transient());
        assert!(f.into_error("PowerOffVM_Task").is_transient());
        let f = fault(r#"<SomethingNewFault xmlns="urn:vim25" xsi:type="SomethingNew"/>"#, "new");
        assert!(matches!(f.clone().into_error("x"), VsphereError::Fault { fault, .. } if fault == "SomethingNew"));
        assert!(!f.is_transient());
        let f = fault("", "plain server fault");
        assert_eq!(f.kind, "");
        assert!(matches!(f.into_error("x"), VsphereError::Fault { message, .. } if message == "plain server fault"));
    }
}
