//! The cloud-provider-config editors (YAML and legacy INI), on any text: add a vCenter,
//! remove one, point the INI workspace at one.
//!
//! Properties: nothing panics; an edit that succeeds did what it says (the vCenter and
//! its datacenters are listed after an add and gone after a remove), doing it again
//! changes nothing, and a remove of a vCenter that is not there leaves the text as is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsm_common::cloud_config::{
    Trust, VCenter, Workspace, add_vcenter, ca_file, remove_vcenter, set_workspace, vcenters, workspace_server,
};

const SERVERS: [&str; 4] = ["127.0.0.2", "vcenter.example.com", "127.0.0.1", "10.0.0.5"];
const DATACENTERS: [&str; 3] = ["dst-dc", "dc two", "src-dc"];

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let server = SERVERS[(op as usize >> 2) % SERVERS.len()];
    let _ = vcenters(&text);
    let _ = ca_file(&text);
    let _ = workspace_server(&text);
    match op % 4 {
        0 | 1 => {
            let datacenters: Vec<String> =
                DATACENTERS.iter().take(1 + (op as usize >> 4) % 2).map(|d| d.to_string()).collect();
            let trust = match (op >> 5) % 4 {
                0 => Trust::Default,
                1 => Trust::CaFile("/etc/ca.pem".into()),
                2 => Trust::Thumbprint("AA:BB".into()),
                _ => Trust::Insecure,
            };
            let vc = VCenter { server: server.into(), port: 443 + (op as u16 >> 6), datacenters: datacenters.clone(), trust };
            let Ok(out) = add_vcenter(&text, &vc) else { return };
            let listed = vcenters(&out).expect("an edited config parses");
            let entry = listed.iter().find(|l| l.server == server).expect("the added vCenter is listed");
            for dc in &datacenters {
                assert!(entry.datacenters.contains(dc), "datacenter {dc} of {server} listed: {entry:?}");
            }
            assert_eq!(add_vcenter(&out, &vc).as_deref(), Ok(out.as_str()), "adding twice changes nothing");
            if let Ok(removed) = remove_vcenter(&out, server) {
                let left = vcenters(&removed).expect("an edited config parses");
                assert!(left.iter().all(|l| l.server != server), "{server} removed: {left:?}");
            }
        }
        2 => {
            let before = vcenters(&text);
            let Ok(out) = remove_vcenter(&text, server) else { return };
            let left = vcenters(&out).expect("an edited config parses");
            assert!(left.iter().all(|l| l.server != server), "{server} removed: {left:?}");
            if before.is_ok_and(|b| b.iter().all(|l| l.server != server)) {
                assert_eq!(out, text, "removing what is not there changes nothing");
            }
            assert_eq!(remove_vcenter(&out, server).as_deref(), Ok(out.as_str()), "removing twice changes nothing");
        }
        _ => {
            let ws = Workspace {
                server: server.into(),
                datacenter: "dst-dc".into(),
                default_datastore: "dst-ds".into(),
                folder: "/dst-dc/vm/infra".into(),
                resource_pool: "/dst-dc/host/dst-cluster/Resources".into(),
            };
            let Ok(out) = set_workspace(&text, &ws) else { return };
            if let Some(s) = workspace_server(&out) {
                assert_eq!(s, server, "the workspace points at {server}");
            }
            assert_eq!(set_workspace(&out, &ws).as_deref(), Ok(out.as_str()), "setting twice changes nothing");
        }
    }
});
