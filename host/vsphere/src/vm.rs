//! Virtual machines: listing for the phases; clone/destroy/template for the test
//! cluster simulator.

use crate::error::VsphereError;
use crate::inventory::{ManagedObject, ObjectKind, normalize_path};
use crate::session::Client;
use crate::soap::envelope::{FilterSpec, Traversal, XmlWriter};
use crate::soap::parse::{MoRef, ObjectContent};

const VM_PROPS: &[&str] = &["name", "config.uuid", "runtime.powerState", "config.template"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerState {
    PoweredOn,
    PoweredOff,
    Suspended,
    Unknown(String),
}

impl PowerState {
    fn parse(s: &str) -> PowerState {
        match s {
            "poweredOn" => PowerState::PoweredOn,
            "poweredOff" => PowerState::PoweredOff,
            "suspended" => PowerState::Suspended,
            other => PowerState::Unknown(other.to_string()),
        }
    }
}

/// What the phases need to know about a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSummary {
    pub name: String,
    pub moref: MoRef,
    pub path: String,
    /// `config.uuid` (the BIOS UUID OpenShift uses as provider ID); empty if unset.
    pub uuid: String,
    pub power_state: PowerState,
    pub template: bool,
}

pub(crate) fn summary(o: &ObjectContent, folder_path: &str) -> Option<VmSummary> {
    let name = o.prop_text("name")?.to_string();
    Some(VmSummary {
        path: format!("{folder_path}/{name}"),
        name,
        moref: o.obj.clone(),
        uuid: o.prop_text("config.uuid").unwrap_or_default().to_string(),
        power_state: PowerState::parse(o.prop_text("runtime.powerState").unwrap_or_default()),
        template: o.prop_text("config.template") == Some("true"),
    })
}

fn returned_task(resp: &crate::soap::Node, method: &str) -> Result<MoRef, VsphereError> {
    resp.child("returnval")
        .and_then(|r| r.moref())
        .ok_or_else(|| VsphereError::protocol(format!("{method} answered without a task")))
}

impl Client {
    /// VMs (and templates) directly inside a folder, sorted by name.
    pub async fn list_vms(&self, folder_path: &str) -> Result<Vec<VmSummary>, VsphereError> {
        self.op("list_vms", async {
            let folder = self.find(ObjectKind::Folder, folder_path).await?;
            let objs = self
                .retrieve(&FilterSpec {
                    props: vec![("VirtualMachine".into(), VM_PROPS.iter().map(|s| s.to_string()).collect())],
                    start: folder.moref.clone(),
                    include_start: false,
                    traversals: vec![Traversal {
                        name: "children",
                        type_name: "Folder",
                        path: "childEntity",
                        select: vec![],
                    }],
                })
                .await?;
            let mut vms: Vec<_> = objs
                .iter()
                .filter(|o| o.obj.type_name == "VirtualMachine")
                .filter_map(|o| summary(o, &folder.path))
                .collect();
            vms.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(vms)
        })
        .await
    }

    /// One VM's summary by path.
    pub async fn vm(&self, path: &str) -> Result<VmSummary, VsphereError> {
        self.op("vm", async {
            let vm = self.find(ObjectKind::VirtualMachine, path).await?;
            self.vm_summary(&vm).await
        })
        .await
    }

    async fn vm_summary(&self, vm: &ManagedObject) -> Result<VmSummary, VsphereError> {
        let objs = self.retrieve(&FilterSpec::object(&vm.moref, VM_PROPS)).await?;
        let folder_path = vm.path.rsplit_once('/').map(|(f, _)| f).unwrap_or("");
        objs.first().and_then(|o| summary(o, folder_path)).ok_or_else(|| VsphereError::not_found(vm.path.clone()))
    }

    /// Clone a VM or template into a folder (test simulator only).
    pub async fn clone_vm(
        &self,
        source_vm_path: &str,
        folder_path: &str,
        name: &str,
        resource_pool: Option<&str>,
        datastore: Option<&str>,
        power_on: bool,
    ) -> Result<VmSummary, VsphereError> {
        self.op("clone_vm", async {
            let source = self.find(ObjectKind::VirtualMachine, source_vm_path).await?;
            let folder = self.find(ObjectKind::Folder, folder_path).await?;
            let pool = match resource_pool {
                Some(p) => Some(self.find(ObjectKind::ResourcePool, p).await?),
                None => None,
            };
            let ds = match datastore {
                Some(d) => Some(self.find(ObjectKind::Datastore, d).await?),
                None => None,
            };
            let mut w = XmlWriter::new();
            w.moref("folder", &folder.moref).text("name", name);
            w.open("spec", None).open("location", None);
            if let Some(ds) = &ds {
                w.moref("datastore", &ds.moref);
            }
            if let Some(p) = &pool {
                w.moref("pool", &p.moref);
            }
            w.close("location").bool("template", false).bool("powerOn", power_on).close("spec");
            let resp = self.soap("CloneVM_Task", &source.moref, &w.into_string()).await?;
            let task = returned_task(&resp, "CloneVM_Task")?;
            let result = self.wait_task(&task).await?;
            let moref = result
                .as_ref()
                .and_then(|r| r.moref())
                .ok_or_else(|| VsphereError::protocol("CloneVM_Task finished without the new VM"))?;
            let path = format!("{}/{name}", normalize_path(folder_path)?);
            self.vm_summary(&ManagedObject { kind: ObjectKind::VirtualMachine, moref, path }).await
        })
        .await
    }

    /// Create an empty, powered-off VM (test simulator only: vcsim's target vCenter starts
    /// without VMs, so its template has to be made from nothing).
    pub async fn create_vm(
        &self,
        folder_path: &str,
        name: &str,
        resource_pool: &str,
        datastore: &str,
    ) -> Result<VmSummary, VsphereError> {
        self.op("create_vm", async {
            let folder = self.find(ObjectKind::Folder, folder_path).await?;
            let pool = self.find(ObjectKind::ResourcePool, resource_pool).await?;
            let ds = self.find(ObjectKind::Datastore, datastore).await?;
            let ds_name = ds.path.rsplit('/').next().unwrap_or_default();
            let mut w = XmlWriter::new();
            // VirtualMachineConfigSpec fields in schema order.
            w.open("config", None).text("name", name).text("guestId", "rhel9_64Guest");
            w.open("files", None).text("vmPathName", &format!("[{ds_name}]")).close("files");
            w.text("numCPUs", "2").text("memoryMB", "4096").close("config");
            w.moref("pool", &pool.moref);
            let resp = self.soap("CreateVM_Task", &folder.moref, &w.into_string()).await?;
            let task = returned_task(&resp, "CreateVM_Task")?;
            let result = self.wait_task(&task).await?;
            let moref = result
                .as_ref()
                .and_then(|r| r.moref())
                .ok_or_else(|| VsphereError::protocol("CreateVM_Task finished without the new VM"))?;
            let path = format!("{}/{name}", normalize_path(folder_path)?);
            self.vm_summary(&ManagedObject { kind: ObjectKind::VirtualMachine, moref, path }).await
        })
        .await
    }

    /// Power off (if needed) and destroy a VM. `false` if it does not exist.
    pub async fn destroy_vm(&self, path: &str) -> Result<bool, VsphereError> {
        self.op("destroy_vm", async {
            let vm = match self.find(ObjectKind::VirtualMachine, path).await {
                Ok(v) => v,
                Err(VsphereError::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(e),
            };
            let s = self.vm_summary(&vm).await?;
            if s.power_state == PowerState::PoweredOn || s.power_state == PowerState::Suspended {
                let resp = self.soap("PowerOffVM_Task", &vm.moref, "").await?;
                match self.wait_task(&returned_task(&resp, "PowerOffVM_Task")?).await {
                    // Already off by the time the task ran.
                    Ok(_) | Err(VsphereError::Invalid { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let resp = self.soap("Destroy_Task", &vm.moref, "").await?;
            match self.wait_task(&returned_task(&resp, "Destroy_Task")?).await {
                Ok(_) | Err(VsphereError::NotFound { .. }) => Ok(true),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Turn a powered-off VM into a template.
    pub async fn mark_as_template(&self, path: &str) -> Result<(), VsphereError> {
        self.op("mark_as_template", async {
            let vm = self.find(ObjectKind::VirtualMachine, path).await?;
            self.soap("MarkAsTemplate", &vm.moref, "").await?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::Node;

    #[test]
    fn summaries() {
        let text = |t: &str| Node { name: "val".into(), text: t.into(), ..Default::default() };
        let o = ObjectContent {
            obj: MoRef::new("VirtualMachine", "vm-1"),
            props: vec![
                ("name".into(), text("m0")),
                ("config.uuid".into(), text("4210-aa")),
                ("runtime.powerState".into(), text("poweredOn")),
                ("config.template".into(), text("false")),
            ],
        };
        let s = summary(&o, "/dc/vm/f").unwrap();
        assert_eq!(s.path, "/dc/vm/f/m0");
        assert_eq!(s.uuid, "4210-aa");
        assert_eq!(s.power_state, PowerState::PoweredOn);
        assert!(!s.template);
        let t = ObjectContent {
            obj: o.obj.clone(),
            props: vec![("name".into(), text("t")), ("config.template".into(), text("true"))],
        };
        let s = summary(&t, "/dc/vm").unwrap();
        assert!(s.template);
        assert_eq!(s.power_state, PowerState::Unknown(String::new()));
        assert!(summary(&ObjectContent { obj: o.obj, props: vec![] }, "/x").is_none());
    }
}
