//! Privileges: what the session's own user may do on given objects, as vCenter's
//! AuthorizationManager computes it (roles, permissions and their propagation), and which
//! privilege ids the server defines at all (a check for a privilege an older release does
//! not have must not fail). The same questions, asked the same way, as the OpenShift
//! installer's check (`pkg/asset/installconfig/vsphere/permissions.go`): the user as the
//! session names it (`currentSession.userName`), `FetchUserPrivilegeOnEntities`, and the
//! AuthorizationManager's `privilegeList`.

use crate::error::VsphereError;
use crate::session::Client;
use crate::soap::Node;
use crate::soap::envelope::{FilterSpec, XmlWriter};
use crate::soap::parse::MoRef;

/// The privileges the user holds on each object, in the order asked, and the privilege
/// ids the server defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivilegeReport {
    pub defined: Vec<String>,
    pub entities: Vec<(MoRef, Vec<String>)>,
}

/// `FetchUserPrivilegeOnEntities` answers one `UserPrivilegeResult` per object it knows;
/// an object asked about and not answered holds no privilege.
pub(crate) fn user_privilege_results(resp: &Node, asked: &[MoRef]) -> Vec<(MoRef, Vec<String>)> {
    let answered: Vec<(MoRef, Vec<String>)> = resp
        .children_named("returnval")
        .filter_map(|r| {
            let entity = r.child("entity")?.moref()?;
            let privileges = r.children_named("privileges").map(|p| p.text.trim().to_string()).collect();
            Some((entity, privileges))
        })
        .collect();
    asked
        .iter()
        .map(|a| {
            let held = answered.iter().find(|(e, _)| e == a).map(|(_, p)| p.clone()).unwrap_or_default();
            (a.clone(), held)
        })
        .collect()
}

/// `privilegeList` of the AuthorizationManager: its `privId`s.
pub(crate) fn defined_privileges(list: Option<&Node>) -> Vec<String> {
    list.map(|l| l.children.iter().filter_map(|p| p.child_text("privId")).map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

impl Client {
    /// What the session's user holds on each of `entities`, and the server's privilege ids.
    pub async fn user_privileges(&self, entities: &[MoRef]) -> Result<PrivilegeReport, VsphereError> {
        self.op("user_privileges", async {
            let authz = self
                .sc
                .authorization_manager
                .clone()
                .ok_or_else(|| VsphereError::protocol("this server has no AuthorizationManager"))?;
            let session = self.retrieve(&FilterSpec::object(&self.sc.session_manager, &["currentSession"])).await?;
            let user = session
                .first()
                .and_then(|o| o.prop("currentSession"))
                .and_then(|s| s.child_text("userName"))
                .map(str::to_string)
                .ok_or_else(|| VsphereError::protocol("SessionManager.currentSession has no userName"))?;
            let list = self.retrieve(&FilterSpec::object(&authz, &["privilegeList"])).await?;
            let defined = defined_privileges(list.first().and_then(|o| o.prop("privilegeList")));
            if entities.is_empty() {
                return Ok(PrivilegeReport { defined, entities: vec![] });
            }
            let mut w = XmlWriter::new();
            for e in entities {
                w.moref("entities", e);
            }
            w.text("userName", &user);
            let resp = self.soap("FetchUserPrivilegeOnEntities", &authz, &w.into_string()).await?;
            Ok(PrivilegeReport { defined, entities: user_privilege_results(&resp, entities) })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::tree::parse;

    #[test]
    fn results_follow_the_order_asked_and_an_unanswered_object_holds_nothing() {
        let xml = r#"<FetchUserPrivilegeOnEntitiesResponse xmlns="urn:vim25">
            <returnval><entity type="Datastore">datastore-1</entity>
              <privileges>Datastore.Browse</privileges><privileges>System.Read</privileges></returnval>
            <returnval><entity type="Datacenter">datacenter-2</entity>
              <privileges>Folder.Create</privileges></returnval>
          </FetchUserPrivilegeOnEntitiesResponse>"#;
        let resp = parse(xml).unwrap();
        let resp = resp.find("FetchUserPrivilegeOnEntitiesResponse").unwrap();
        let dc = MoRef::new("Datacenter", "datacenter-2");
        let ds = MoRef::new("Datastore", "datastore-1");
        let net = MoRef::new("Network", "network-7");
        let got = user_privilege_results(resp, &[dc.clone(), net.clone(), ds.clone()]);
        assert_eq!(
            got,
            vec![
                (dc, vec!["Folder.Create".to_string()]),
                (net, vec![]),
                (ds, vec!["Datastore.Browse".to_string(), "System.Read".to_string()]),
            ]
        );
    }

    #[test]
    fn defined_privileges_are_the_priv_ids() {
        let xml = r#"<val xmlns="urn:vim25"><AuthorizationPrivilege><privId>System.Read</privId><name>Read</name>
            </AuthorizationPrivilege><AuthorizationPrivilege><privId>Folder.Create</privId></AuthorizationPrivilege></val>"#;
        let node = parse(xml).unwrap();
        let val = node.find("val").unwrap();
        assert_eq!(defined_privileges(Some(val)), vec!["System.Read", "Folder.Create"]);
        assert!(defined_privileges(None).is_empty());
    }
}
