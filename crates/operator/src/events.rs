//! Events, written as core/v1 Events with their source (component `certwright`, host this
//! replica), first and last timestamps and count. `kubectl describe` and `cmctl status`
//! print their Age and From columns from those fields, and the events.k8s.io API refuses
//! them on create. So kube's recorder is not used here, because it writes only the new fields.
//! An event that repeats (same object, type, reason, action and message) within ten
//! minutes is counted on the first one, as Kubernetes' own recorder does, so a retried
//! failure does not flood the namespace.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a repeat is counted on the first event rather than written anew.
const REPEAT_WINDOW: Duration = Duration::from_secs(600);

/// The events this replica wrote lately: (object, type, reason, action, message) → the
/// Event's namespace and name, its count, and when it was first written.
type Seen = HashMap<(String, String, String, String, String), (String, String, i32, Instant)>;

pub(crate) struct Recorder {
    client: kube::Client,
    component: String,
    instance: String,
    seen: Mutex<Seen>,
}

impl Recorder {
    pub(crate) fn new(client: kube::Client, component: &str, instance: &str) -> Recorder {
        Recorder {
            client,
            component: component.into(),
            instance: instance.into(),
            seen: Mutex::default(),
        }
    }

    /// Records an event about `regarding` (cluster-scoped objects: in `default`).
    pub(crate) async fn publish(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let type_ = if warning { "Warning" } else { "Normal" };
        let object = regarding
            .uid
            .clone()
            .unwrap_or_else(|| format!("{ns}/{:?}", regarding.name));
        let key = (
            object,
            type_.into(),
            reason.into(),
            action.into(),
            note.into(),
        );
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = Time(Timestamp::now());
        let repeat = self.seen.lock().ok().and_then(|mut s| {
            s.retain(|_, v| v.3.elapsed() < REPEAT_WINDOW);
            s.get_mut(&key).map(|v| {
                v.2 += 1;
                (v.1.clone(), v.2)
            })
        });
        if let Some((name, count)) = repeat {
            let patch = serde_json::json!({"count": count, "lastTimestamp": now});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or("certwright"),
            now.0.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: regarding.clone(),
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            message: Some(note.into()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: Some(self.instance.clone()),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        if let Ok(mut s) = self.seen.lock() {
            s.insert(key, (ns, name, 1, Instant::now()));
        }
        Ok(())
    }
}
