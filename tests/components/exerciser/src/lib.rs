//! Test component that calls every host import and reports, as JSON in its `done`
//! message, what each call returned. The spec selects what to do:
//!
//! - `{"action": "noop"}`: return at once (the baseline for call-cost benchmarks);
//! - `{"action": "clock", "count": N}`: N host round trips to `clock.now-ms`;
//! - `{"action": "all", "namespace": NS, "server": S, "datacenter": DC, "name": N}`: every
//!   import once, on objects called N (default `exercised`) so that tests sharing one
//!   environment can run side by side.
//!
//! Built twice by `cargo xtask plugins`: once as is and once with the `v2` feature, so the
//! hot-reload tests can tell two versions of the same phase apart.

use serde_json::{Map, Value, json};
use vsm_sdk::prelude::*;
use vsm_sdk::{Cardinality, CategorySpec};

#[cfg(not(feature = "v2"))]
const VERSION: &str = "0.1.0";
#[cfg(feature = "v2")]
const VERSION: &str = "0.2.0";

pub struct Exerciser;

impl Phase for Exerciser {
    fn describe() -> PhaseInfo {
        let info = PhaseInfo::new("Exerciser", VERSION, "Calls every host import (test component)");
        #[cfg(feature = "quota")]
        let info = info.kube("", "resourcequotas", &["list"], Some("exerciser"));
        info.kube("", "configmaps", &["get", "list", "create", "update", "patch", "delete"], Some("exerciser"))
            .vsphere(VsphereCapability::ReadInventory)
            .vsphere(VsphereCapability::ManageFolders)
            .vsphere(VsphereCapability::ManageTags)
            .with_rollback()
            .deadline_minutes(5)
    }

    fn execute(cx: &Cx) -> Step {
        let spec: Value = serde_json::from_str(&cx.call().migration.spec_json)?;
        match spec.get("action").and_then(Value::as_str).unwrap_or("noop") {
            "noop" if cfg!(feature = "fence") => fence(cx),
            "noop" if cfg!(feature = "quota") => quota(cx),
            "noop" if cfg!(feature = "slow") && cx.attempt() < 3 => {
                Ok(wait(300, (cx.attempt() * 40) as u8, format!("waiting ({} of 2)", cx.attempt())))
            }
            "noop" => Ok(done(format!("exerciser {VERSION}"))),
            "clock" => {
                let count = spec.get("count").and_then(Value::as_u64).unwrap_or(1);
                let mut last = 0;
                for _ in 0..count {
                    last = cx.now_ms();
                }
                Ok(done(format!("{count} clock calls, last {last}")))
            }
            "all" => Ok(done(everything(cx, &spec).to_string())),
            other => Err(PhaseError::invalid(format!("unknown action {other:?}"))),
        }
    }

    fn rollback(cx: &Cx) -> Step {
        let restored = cx.backup().restore_all()?;
        Ok(done(format!("restored {restored}")))
    }
}

/// Done once ResourceQuota `exerciser/go` exists; until then a wait of ten minutes, which
/// only a watch event of that kind cuts short.
fn quota(cx: &Cx) -> Step {
    const RESOURCE_QUOTA: vsm_sdk::types::TypeConst =
        vsm_sdk::types::TypeConst { api_version: "v1", kind: "ResourceQuota" };
    if cx.kube().list(&RESOURCE_QUOTA, Some("exerciser"), None)?.iter().any(|q| q.name() == "go") {
        return Ok(done("ResourceQuota exerciser/go exists"));
    }
    Ok(wait(600_000, 0, "waiting for ResourceQuota exerciser/go"))
}

/// One call that writes, stays busy for two seconds of wall-clock time, and writes again
/// (ConfigMaps `fence-before` and `fence-after` in namespace `exerciser`, by server-side
/// apply, so a repeated call is harmless). A leader frozen between the two writes and
/// deposed meanwhile must not get the second one through when it resumes.
fn fence(cx: &Cx) -> Step {
    let cm = |name: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "exerciser"},
               "data": {"attempt": cx.attempt().to_string()}})
    };
    cx.kube().apply(&types::CONFIG_MAP, Some("exerciser"), "fence-before", &cm("fence-before"), true)?;
    let start = cx.now_ms();
    while cx.now_ms() < start + 2000 {
        std::hint::spin_loop();
    }
    cx.kube().apply(&types::CONFIG_MAP, Some("exerciser"), "fence-after", &cm("fence-after"), true)?;
    Ok(done(format!("fenced write done at attempt {}", cx.attempt())))
}

/// Record each call's result under its name: "ok", a value, or the error text.
struct Report(Map<String, Value>);

impl Report {
    fn put<T, E: std::fmt::Debug>(&mut self, step: &str, result: Result<T, E>, show: impl FnOnce(T) -> Value) {
        let v = match result {
            Ok(v) => show(v),
            Err(e) => json!({"error": format!("{e:?}")}),
        };
        self.0.insert(step.to_string(), v);
    }
}

fn everything(cx: &Cx, spec: &Value) -> Value {
    let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("exerciser");
    let server = spec.get("server").and_then(Value::as_str).unwrap_or("vcenter");
    let dc = spec.get("datacenter").and_then(Value::as_str).unwrap_or("DC0");
    let name = spec.get("name").and_then(Value::as_str).unwrap_or("exercised");
    let mut r = Report(Map::new());

    r.put("clock", Ok::<_, ()>(cx.now_ms()), |v| json!(v));
    cx.log().write(Level::Info, "exercising", &[("step", "log")]);
    cx.log().event(EventType::Normal, "Exercised", "every import is called");
    cx.log().progress(50, "half way");
    r.put("log", Ok::<_, ()>(()), |_| json!("ok"));

    r.put("state.set", cx.state().set("k", "v"), |_| json!("ok"));
    r.put("state.get", Ok::<_, ()>(cx.state().get("k")), |v| json!(v));
    r.put("shared.set", cx.shared().set("k", "shared"), |_| json!("ok"));
    r.put("shared.get", Ok::<_, ()>(cx.shared().get("k")), |v| json!(v));
    r.put("state.delete", cx.state().delete("k"), |_| json!("ok"));

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns}, "data": {"a": "1"}});
    r.put("kube.create", cx.kube().create(&types::CONFIG_MAP, Some(ns), &cm), |o| json!(o.name()));
    r.put("kube.get", cx.kube().get(&types::CONFIG_MAP, Some(ns), name), |o| {
        json!(o.map(|o| o.str_at("/data/a").map(str::to_string)))
    });
    r.put("kube.list", cx.kube().list(&types::CONFIG_MAP, Some(ns), None), |l| json!(l.len()));
    r.put(
        "kube.merge_patch",
        cx.kube().merge_patch(&types::CONFIG_MAP, Some(ns), name, &json!({"data": {"b": "2"}})),
        |o| json!(o.str_at("/data/b")),
    );
    r.put("kube.apply", cx.kube().apply(&types::CONFIG_MAP, Some(ns), name, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"c": "3"}}), true), |o| json!(o.str_at("/data/c")));
    let replaced = cx.kube().get_required(&types::CONFIG_MAP, Some(ns), name).and_then(|mut o| {
        o.set("/data/d", json!("4"));
        cx.kube().replace(&types::CONFIG_MAP, &o)
    });
    r.put("kube.replace", replaced, |o| json!(o.str_at("/data/d")));
    r.put(
        "backup.snapshot",
        cx.backup().snapshot(&types::CONFIG_MAP, Some(ns), name),
        |s| json!({"name": s.name, "created": s.created}),
    );
    r.put("kube.delete", cx.kube().delete(&types::CONFIG_MAP, Some(ns), name, None), |b| json!(b));

    r.put("vsphere.about", cx.vsphere().about(server), |a| json!(a.api_version));
    let dc_ref = cx.vsphere().find(server, ObjectKind::Datacenter, &format!("/{dc}"));
    r.put("vsphere.find", dc_ref.clone(), |o| json!(o.moref));
    r.put("vsphere.list_vms", cx.vsphere().list_vms(server, &format!("/{dc}/vm")), |v| json!(v.len()));
    r.put("vsphere.create_folder", cx.vsphere().create_folder(server, &format!("/{dc}/vm/{name}/deeper")), |e| {
        json!(e.created)
    });
    r.put("vsphere.delete_folder", cx.vsphere().delete_folder(server, &format!("/{dc}/vm/{name}/deeper")), |b| {
        json!(b)
    });
    let category = cx.vsphere().ensure_category(
        server,
        &CategorySpec {
            name: name.into(),
            description: "test".into(),
            cardinality: Cardinality::Single,
            associable_types: vec!["Datacenter".into()],
        },
    );
    r.put("vsphere.ensure_category", category.clone(), |e| json!(e.created));
    if let (Ok(category), Ok(dc_ref)) = (category, dc_ref) {
        let tag = cx.vsphere().ensure_tag(server, &category.id, name, "test");
        r.put("vsphere.ensure_tag", tag.clone(), |e| json!(e.created));
        if let Ok(tag) = tag {
            r.put("vsphere.attach_tag", cx.vsphere().attach_tag(server, &tag.id, &dc_ref), |_| json!("ok"));
            r.put("vsphere.list_attached_tags", cx.vsphere().attached_tags(server, &dc_ref), |t| {
                json!(t.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
            });
            r.put("vsphere.detach_tag", cx.vsphere().detach_tag(server, &tag.id, &dc_ref), |_| json!("ok"));
            r.put("vsphere.delete_tag", cx.vsphere().delete_tag(server, &tag.id), |b| json!(b));
        }
        r.put("vsphere.delete_category", cx.vsphere().delete_category(server, &category.id), |b| json!(b));
    }
    r.put("backup.restore_journal", Ok::<_, ()>(cx.backup().restore_journal()), |reports| {
        json!(reports.iter().map(|r| json!({"subject": r.subject, "error": r.error})).collect::<Vec<_>>())
    });
    Value::Object(r.0)
}

export_phase!(Exerciser);
