//! The `log` interface: log lines into tracing (tagged with the migration and phase),
//! Events on the migration (not in plan mode; through the fenced client), progress into
//! the call's outputs.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder};

use super::Outputs;
use crate::runtime::bindings::{EventType, Level};
use crate::runtime::{CallScope, LogBackend};

pub struct OperatorLog {
    pub recorder: Recorder,
    pub migration: ObjectReference,
    pub outputs: Outputs,
}

#[async_trait]
impl LogBackend for OperatorLog {
    fn write(&self, s: &CallScope, level: Level, message: &str, fields: &[(String, String)]) {
        let fields = if fields.is_empty() { String::new() } else { format!("{fields:?}") };
        let (migration, phase) = (&s.migration_name, &s.phase);
        match level {
            Level::Debug => tracing::debug!(target: "vsm::phase", %migration, %phase, %fields, "{message}"),
            Level::Info => tracing::info!(target: "vsm::phase", %migration, %phase, %fields, "{message}"),
            Level::Warn => tracing::warn!(target: "vsm::phase", %migration, %phase, %fields, "{message}"),
            Level::Error => tracing::error!(target: "vsm::phase", %migration, %phase, %fields, "{message}"),
        }
    }

    async fn event(&self, s: &CallScope, ty: EventType, reason: &str, message: &str) {
        if s.dry_run {
            return;
        }
        let event = Event {
            type_: match ty {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: reason.to_string(),
            note: Some(format!("[{}] {message}", s.phase)),
            action: s.phase.clone(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &self.migration).await {
            tracing::warn!(error = %e, reason, "could not publish an event");
        }
    }

    fn progress(&self, _: &CallScope, percent: u8, message: &str) {
        self.outputs.progress(percent, message);
    }
}
