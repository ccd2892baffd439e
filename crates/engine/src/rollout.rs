//! Reloader's conventions, so that a cluster moving from Stakater Reloader to certwright
//! sees the same values and does not restart every workload once: the hash Reloader
//! computes of a Secret's or ConfigMap's data, the environment variable it writes it
//! into (`STAKATER_<NAME>_SECRET`), and which Secrets and ConfigMaps a workload follows
//! (its annotations, the resources its pod template references, and their own
//! annotations).
//!
//! It also decides, for the operator's rollout controller, what a workload needs given
//! the resources it follows as read now ([`Workload::decide`]) and writes the patch that
//! does it ([`Workload::patch`]); when it is applied (debounce, rate, progress) is the
//! controller's.

use std::collections::{BTreeMap, BTreeSet};

/// Secret or ConfigMap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    Secret,
    ConfigMap,
}

impl ResourceKind {
    /// Reloader's suffix for the kind (`SECRET`, `CONFIGMAP`).
    pub fn suffix(self) -> &'static str {
        match self {
            ResourceKind::Secret => "SECRET",
            ResourceKind::ConfigMap => "CONFIGMAP",
        }
    }
}

/// A Secret or ConfigMap in the workload's namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceRef {
    pub kind: ResourceKind,
    pub name: String,
}

fn sha1_hex(values: Vec<Vec<u8>>) -> String {
    use aws_lc_rs::digest;
    let mut values = values;
    values.sort();
    let joined = values.join(&b';');
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &joined)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reloader's hash of a Secret's data: SHA-1 of the sorted `key=value` entries joined
/// with `;`, in hex.
pub fn secret_hash(data: &BTreeMap<String, Vec<u8>>) -> String {
    sha1_hex(
        data.iter()
            .map(|(k, v)| [k.as_bytes(), b"=", v].concat())
            .collect(),
    )
}

/// Reloader's hash of a ConfigMap: its data, and its binaryData base64-encoded.
pub fn configmap_hash(
    data: &BTreeMap<String, String>,
    binary: &BTreeMap<String, Vec<u8>>,
) -> String {
    use base64::Engine;
    let mut values: Vec<Vec<u8>> = data
        .iter()
        .map(|(k, v)| format!("{k}={v}").into_bytes())
        .collect();
    values.extend(binary.iter().map(|(k, v)| {
        format!(
            "{k}={}",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
        .into_bytes()
    }));
    sha1_hex(values)
}

/// The environment variable Reloader's env-vars strategy writes for a resource:
/// `STAKATER_`, the name upper-cased with each run of other characters as one `_`
/// (none leading), `_` and the kind's suffix.
pub fn env_var_name(r: &ResourceRef) -> String {
    let mut name = String::new();
    let mut last_valid = false;
    for c in r.name.chars() {
        let c = c.to_ascii_uppercase();
        if c.is_ascii_uppercase() || c.is_ascii_digit() {
            name.push(c);
            last_valid = true;
        } else {
            if last_valid {
                name.push('_');
            }
            last_valid = false;
        }
    }
    format!("STAKATER_{name}_{}", r.kind.suffix())
}

/// The Secrets and ConfigMaps a pod spec (`spec.template.spec` as JSON) references:
/// volumes (projected ones too), and each container's and init container's `envFrom` and
/// `env[].valueFrom`.
pub fn references(pod_spec: &serde_json::Value) -> BTreeSet<ResourceRef> {
    let mut out = BTreeSet::new();
    let mut add = |kind, name: Option<&str>| {
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            out.insert(ResourceRef {
                kind,
                name: n.to_string(),
            });
        }
    };
    let s = |v: &serde_json::Value, path: &[&str]| -> Option<String> {
        let mut cur = v;
        for p in path {
            cur = cur.get(p)?;
        }
        cur.as_str().map(str::to_string)
    };
    let empty = Vec::new();
    let array = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|a| a.as_array())
            .cloned()
            .unwrap_or_default()
    };
    for vol in array(pod_spec, "volumes") {
        add(
            ResourceKind::Secret,
            s(&vol, &["secret", "secretName"]).as_deref(),
        );
        add(
            ResourceKind::ConfigMap,
            s(&vol, &["configMap", "name"]).as_deref(),
        );
        for src in vol
            .get("projected")
            .and_then(|p| p.get("sources"))
            .and_then(|a| a.as_array())
            .unwrap_or(&empty)
        {
            add(ResourceKind::Secret, s(src, &["secret", "name"]).as_deref());
            add(
                ResourceKind::ConfigMap,
                s(src, &["configMap", "name"]).as_deref(),
            );
        }
    }
    for list in ["containers", "initContainers"] {
        for c in array(pod_spec, list) {
            for from in array(&c, "envFrom") {
                add(
                    ResourceKind::Secret,
                    s(&from, &["secretRef", "name"]).as_deref(),
                );
                add(
                    ResourceKind::ConfigMap,
                    s(&from, &["configMapRef", "name"]).as_deref(),
                );
            }
            for e in array(&c, "env") {
                add(
                    ResourceKind::Secret,
                    s(&e, &["valueFrom", "secretKeyRef", "name"]).as_deref(),
                );
                add(
                    ResourceKind::ConfigMap,
                    s(&e, &["valueFrom", "configMapKeyRef", "name"]).as_deref(),
                );
            }
        }
    }
    out
}

const AUTO: &str = "reloader.stakater.com/auto";
const SECRET_AUTO: &str = "secret.reloader.stakater.com/auto";
const CONFIGMAP_AUTO: &str = "configmap.reloader.stakater.com/auto";
const SECRET_RELOAD: &str = "secret.reloader.stakater.com/reload";
const CONFIGMAP_RELOAD: &str = "configmap.reloader.stakater.com/reload";
const SEARCH: &str = "reloader.stakater.com/search";
const MATCH: &str = "reloader.stakater.com/match";
const IGNORE: &str = "reloader.stakater.com/ignore";
const SECRETS_EXCLUDE: &str = "secrets.exclude.reloader.stakater.com/reload";
const CONFIGMAPS_EXCLUDE: &str = "configmaps.exclude.reloader.stakater.com/reload";
/// The pod-template annotation Reloader's annotations strategy writes.
pub const LAST_RELOADED_FROM: &str = "reloader.stakater.com/last-reloaded-from";
/// certwright's record on a workload (metadata, so writing it rolls nothing): the hash
/// of each Secret and ConfigMap it follows as last rolled out or first seen, as JSON
/// (`{"Secret/name": "sha1"}`). With it, a restart or a change that leaves the data
/// alone rolls nothing, and a change made while the operator was down is still rolled.
pub const RECORD: &str = "certwright.io/reloaded-from";
/// When certwright last rolled the workload out (RFC 3339, milliseconds).
pub const ROLLED_OUT_AT: &str = "certwright.io/rolled-out-at";

impl ResourceKind {
    fn reload_key(self) -> &'static str {
        match self {
            ResourceKind::Secret => SECRET_RELOAD,
            ResourceKind::ConfigMap => CONFIGMAP_RELOAD,
        }
    }

    fn typed_auto_key(self) -> &'static str {
        match self {
            ResourceKind::Secret => SECRET_AUTO,
            ResourceKind::ConfigMap => CONFIGMAP_AUTO,
        }
    }

    fn exclude_key(self) -> &'static str {
        match self {
            ResourceKind::Secret => SECRETS_EXCLUDE,
            ResourceKind::ConfigMap => CONFIGMAPS_EXCLUDE,
        }
    }

    /// The kind's name in records (`Secret`, `ConfigMap`).
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Secret => "Secret",
            ResourceKind::ConfigMap => "ConfigMap",
        }
    }
}

impl std::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.name(), self.name)
    }
}

/// How a rollout is made, as Reloader's `--reload-strategy` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// An environment variable `STAKATER_<NAME>_<KIND>` holding the hash, on the
    /// container that uses the resource.
    #[default]
    EnvVars,
    /// The pod-template annotation `reloader.stakater.com/last-reloaded-from`.
    Annotations,
}

impl Strategy {
    pub fn parse(s: &str) -> Result<Strategy, String> {
        match s {
            "env-vars" => Ok(Strategy::EnvVars),
            "annotations" => Ok(Strategy::Annotations),
            other => Err(format!(
                "unknown reload strategy {other:?}: use env-vars or annotations"
            )),
        }
    }
}

/// Go's strconv.ParseBool truth, which Reloader applies to its auto annotations.
fn parse_bool(v: Option<&String>) -> bool {
    matches!(
        v.map(String::as_str),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True")
    )
}

fn exactly_true(a: &BTreeMap<String, String>, k: &str) -> bool {
    a.get(k).is_some_and(|v| v == "true")
}

fn entries(a: &BTreeMap<String, String>, k: &str) -> Vec<String> {
    a.get(k)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an entry of a reload list is a plain name (compared as is) rather than a
/// pattern. A `.` is both, and a pattern `.` also matches the literal dot.
fn is_plain(entry: &str) -> bool {
    entry
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Whether an annotation map asks for rollouts (see [`Workload::wants`]).
pub fn asks(annotations: &BTreeMap<String, String>) -> bool {
    [
        AUTO,
        SECRET_AUTO,
        CONFIGMAP_AUTO,
        SECRET_RELOAD,
        CONFIGMAP_RELOAD,
        SEARCH,
    ]
    .iter()
    .any(|k| annotations.contains_key(*k))
}

/// A followed resource as read now: its hash and the container a rollout marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub resource: ResourceRef,
    pub hash: String,
    pub container: String,
}

/// What a workload needs, given what it follows as read now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Followed resources whose hash differs from the workload's record: a rollout.
    pub changed: Vec<Observed>,
    /// The record annotation's new value, when it differs from the one written (a
    /// resource seen for the first time, or one no longer followed).
    pub record: Option<String>,
}

/// A Deployment's, StatefulSet's or DaemonSet's part in rollouts, read from the object
/// as JSON: its annotations, its pod template's, and the resources the pod spec uses.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    annotations: BTreeMap<String, String>,
    template_annotations: BTreeMap<String, String>,
    pod_spec: serde_json::Value,
    references: BTreeSet<ResourceRef>,
}

fn string_map(v: Option<&serde_json::Value>) -> BTreeMap<String, String> {
    v.and_then(serde_json::Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl Workload {
    pub fn from_object(obj: &serde_json::Value) -> Workload {
        let pod_spec = obj
            .pointer("/spec/template/spec")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        Workload {
            annotations: string_map(obj.pointer("/metadata/annotations")),
            template_annotations: string_map(obj.pointer("/spec/template/metadata/annotations")),
            references: references(&pod_spec),
            pod_spec,
        }
    }

    /// Whether the workload (or, as Reloader reads it, its pod template) asks for
    /// rollouts: `auto` (either form), a reload list, or `search`.
    pub fn wants(&self) -> bool {
        asks(&self.annotations) || asks(&self.template_annotations)
    }

    /// The annotations Reloader reads for a kind: the workload's, unless it has none of
    /// the kind's keys, then the pod template's.
    fn governing(&self, kind: ResourceKind) -> &BTreeMap<String, String> {
        let keys = [kind.reload_key(), AUTO, kind.typed_auto_key(), SEARCH];
        if keys.iter().any(|k| self.annotations.contains_key(*k)) {
            &self.annotations
        } else {
            &self.template_annotations
        }
    }

    /// Whether the kind's reload list names `r`: an entry equal to the name, or a
    /// pattern matching all of it (Reloader's `^entry$`). A pattern that is not a valid
    /// regular expression matches nothing (see [`Workload::problems`]).
    fn listed(&self, r: &ResourceRef) -> bool {
        entries(self.governing(r.kind), r.kind.reload_key())
            .iter()
            .any(|e| {
                e == &r.name
                    || (!is_plain(e)
                        && regex::Regex::new(&format!("^{e}$"))
                            .is_ok_and(|re| re.is_match(&r.name)))
            })
    }

    /// Reload-list entries that are not valid regular expressions, as messages.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for kind in [ResourceKind::Secret, ResourceKind::ConfigMap] {
            let key = kind.reload_key();
            for e in entries(self.governing(kind), key) {
                if let Err(err) = regex::Regex::new(&format!("^{e}$")) {
                    out.push(format!("{key}: {e:?} is not a regular expression: {err}"));
                }
            }
        }
        out
    }

    /// A cheap first look for a changed resource: whether the workload might follow it
    /// (its pod spec uses it, or a reload list names it). [`Workload::follows`] decides.
    pub fn may_follow(&self, r: &ResourceRef) -> bool {
        self.references.contains(r) || self.listed(r)
    }

    /// The resources to read to know what the workload follows: those its pod spec uses
    /// and those its reload lists name; and the kinds whose lists hold patterns (their
    /// matches must be found among the namespace's names).
    pub fn candidates(&self) -> (BTreeSet<ResourceRef>, Vec<ResourceKind>) {
        let mut names = self.references.clone();
        let mut patterns = Vec::new();
        for kind in [ResourceKind::Secret, ResourceKind::ConfigMap] {
            let list = entries(self.governing(kind), kind.reload_key());
            if list.iter().any(|e| !is_plain(e)) {
                patterns.push(kind);
            }
            names.extend(
                list.into_iter()
                    .filter(|e| is_plain(e))
                    .map(|name| ResourceRef { kind, name }),
            );
        }
        (names, patterns)
    }

    /// Whether the workload follows `r` (whose annotations are `r_annotations`), as
    /// Reloader decides it, and the container a rollout marks: the resource's `ignore`
    /// and the workload's exclude lists come first; then a reload list naming it; then
    /// `search` with the resource's `match`, and `auto` in either form, which follow
    /// only what the pod spec uses.
    pub fn follows(
        &self,
        r: &ResourceRef,
        r_annotations: &BTreeMap<String, String>,
    ) -> Option<String> {
        if exactly_true(r_annotations, IGNORE) {
            return None;
        }
        if entries(&self.annotations, r.kind.exclude_key()).contains(&r.name) {
            return None;
        }
        let g = self.governing(r.kind);
        let searched = exactly_true(g, SEARCH) && exactly_true(r_annotations, MATCH);
        let auto = parse_bool(g.get(AUTO)) || parse_bool(g.get(r.kind.typed_auto_key()));
        let auto = if self.listed(r) {
            false
        } else if searched || auto {
            true
        } else {
            return None;
        };
        self.container_for(r, auto)
    }

    fn containers(&self, list: &str) -> Vec<serde_json::Value> {
        self.pod_spec
            .get(list)
            .and_then(|a| a.as_array())
            .cloned()
            .unwrap_or_default()
    }

    /// The container Reloader marks for a resource: the one mounting its volume, else
    /// the one taking it in its environment (an init container's use marks the first
    /// container), else, for a resource named in a reload list, the first container.
    fn container_for(&self, r: &ResourceRef, auto: bool) -> Option<String> {
        let name_of =
            |c: &serde_json::Value| c.get("name").and_then(|n| n.as_str()).map(str::to_string);
        let containers = self.containers("containers");
        let init = self.containers("initContainers");
        let first = containers.first().and_then(name_of);
        let single = BTreeSet::from([r.clone()]);
        let volume = self
            .containers("volumes")
            .into_iter()
            .find(|v| references(&serde_json::json!({ "volumes": [v] })) == single);
        if let Some(vname) = volume
            .as_ref()
            .and_then(|v| v.get("name"))
            .and_then(|n| n.as_str())
        {
            let mounts = |c: &serde_json::Value| {
                c.get("volumeMounts")
                    .and_then(|m| m.as_array())
                    .is_some_and(|m| {
                        m.iter()
                            .any(|m| m.get("name").and_then(|n| n.as_str()) == Some(vname))
                    })
            };
            if let Some(c) = containers.iter().find(|c| mounts(c)) {
                return name_of(c);
            }
            if init.iter().any(mounts) {
                return first;
            }
        }
        let uses = |c: &serde_json::Value| {
            let mut only_env = c.clone();
            if let Some(o) = only_env.as_object_mut() {
                o.retain(|k, _| k == "env" || k == "envFrom");
            }
            references(&serde_json::json!({ "containers": [only_env] })).contains(r)
        };
        if let Some(c) = containers.iter().find(|c| uses(c)) {
            return name_of(c);
        }
        if init.iter().any(uses) {
            return first;
        }
        if auto {
            None
        } else {
            first
        }
    }

    /// The hash the workload last rolled out (or first saw) for `r`: certwright's
    /// record, else Reloader's: the env var of the env-vars strategy, or the pod-template
    /// annotation of the annotations strategy when it names `r`. So a workload Reloader
    /// rolled is not rolled again for the same data.
    fn recorded(&self, r: &ResourceRef) -> Option<String> {
        let record: Option<BTreeMap<String, String>> = self
            .annotations
            .get(RECORD)
            .and_then(|v| serde_json::from_str(v).ok());
        if let Some(h) = record.and_then(|m| m.get(&r.to_string()).cloned()) {
            return Some(h);
        }
        let var = env_var_name(r);
        for list in ["containers", "initContainers"] {
            for c in self.containers(list) {
                for e in c
                    .get("env")
                    .and_then(|e| e.as_array())
                    .into_iter()
                    .flatten()
                {
                    if e.get("name").and_then(|n| n.as_str()) == Some(var.as_str()) {
                        return e.get("value").and_then(|v| v.as_str()).map(str::to_string);
                    }
                }
            }
        }
        let last: serde_json::Value = self
            .template_annotations
            .get(LAST_RELOADED_FROM)
            .and_then(|v| serde_json::from_str(v).ok())?;
        let is_r = last.get("type").and_then(|t| t.as_str()) == Some(r.kind.suffix())
            && last.get("name").and_then(|n| n.as_str()) == Some(r.name.as_str());
        is_r.then(|| {
            last.get("hash")
                .and_then(|h| h.as_str())
                .map(str::to_string)
        })
        .flatten()
    }

    /// What to do, given every resource the workload follows as read now: roll out for
    /// those whose hash differs from the record; record those seen for the first time
    /// (no rollout: nothing says they changed).
    pub fn decide(&self, observed: &[Observed]) -> Decision {
        let mut changed = Vec::new();
        let mut record = BTreeMap::new();
        for o in observed {
            if let Some(h) = self.recorded(&o.resource) {
                if h != o.hash {
                    changed.push(o.clone());
                }
            }
            record.insert(o.resource.to_string(), o.hash.clone());
        }
        let value = serde_json::to_string(&record).unwrap_or_default();
        let written = self.annotations.get(RECORD);
        let record = (written != Some(&value) && !(observed.is_empty() && written.is_none()))
            .then_some(value);
        Decision { changed, record }
    }

    /// The strategic-merge patch that applies a decision: the record (and, with a
    /// rollout, when) in the workload's metadata, and for a rollout the strategy's change
    /// to the pod template, as Reloader writes it. `now_ms` is Unix milliseconds.
    pub fn patch(
        &self,
        d: &Decision,
        strategy: Strategy,
        namespace: &str,
        now_ms: i64,
    ) -> serde_json::Value {
        use serde_json::json;
        let now = now_ms.div_euclid(1000);
        let mut annotations = serde_json::Map::new();
        if let Some(r) = &d.record {
            annotations.insert(RECORD.into(), json!(r));
        }
        let mut patch = json!({});
        if !d.changed.is_empty() {
            let seconds = certwright_pki::der::rfc3339(now);
            let at = format!(
                "{}.{:03}Z",
                seconds.trim_end_matches('Z'),
                now_ms.rem_euclid(1000)
            );
            annotations.insert(ROLLED_OUT_AT.into(), json!(at));
            patch["spec"] = match strategy {
                Strategy::EnvVars => {
                    let mut by_container: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
                    for o in &d.changed {
                        by_container
                            .entry(o.container.as_str())
                            .or_default()
                            .push(json!({"name": env_var_name(&o.resource), "value": o.hash}));
                    }
                    let containers: Vec<_> = by_container
                        .into_iter()
                        .map(|(name, env)| json!({"name": name, "env": env}))
                        .collect();
                    json!({"template": {"spec": {"containers": containers}}})
                }
                Strategy::Annotations => {
                    let last = d.changed.last().map(|o| {
                        json!({
                            "type": o.resource.kind.suffix(),
                            "name": o.resource.name,
                            "namespace": namespace,
                            "hash": o.hash,
                            "containerRefs": [o.container],
                            "observedAt": now,
                        })
                        .to_string()
                    });
                    json!({"template": {"metadata": {"annotations": {LAST_RELOADED_FROM: last}}}})
                }
            };
        }
        if !annotations.is_empty() {
            patch["metadata"] = json!({ "annotations": annotations });
        }
        patch
    }

    /// When certwright last rolled the workload out (Unix seconds).
    pub fn rolled_out_at(&self) -> Option<i64> {
        self.annotations
            .get(ROLLED_OUT_AT)
            .and_then(|v| certwright_pki::der::parse_rfc3339(v))
    }
}

/// Whether a workload's pods are updated to the template of generation `since` (the
/// one a rollout wrote), from its status: the controller has seen that generation, and
/// as many pods run its template as are wanted (Deployment and StatefulSet
/// `updatedReplicas` against `spec.replicas`, DaemonSet `updatedNumberScheduled` against
/// `desiredNumberScheduled`). A later generation that changed only annotations (a
/// Deployment's generation moves with them) need not be seen.
pub fn pods_updated(kind: &str, obj: &serde_json::Value, since: i64) -> bool {
    let int = |p: &str| obj.pointer(p).and_then(serde_json::Value::as_i64);
    if int("/status/observedGeneration").unwrap_or(0) < since {
        return false;
    }
    match kind {
        "DaemonSet" => {
            int("/status/updatedNumberScheduled").unwrap_or(0)
                >= int("/status/desiredNumberScheduled").unwrap_or(0)
        }
        _ => int("/status/updatedReplicas").unwrap_or(0) >= int("/spec/replicas").unwrap_or(1),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::annotations as a;
    use serde_json::json;

    #[test]
    fn hashes_and_names_are_reloaders() {
        let data = BTreeMap::from([
            ("tls.crt".to_string(), b"abc".to_vec()),
            ("tls.key".to_string(), b"k".to_vec()),
            ("ca.crt".to_string(), b"ca".to_vec()),
        ]);
        // sha1("ca.crt=ca;tls.crt=abc;tls.key=k"), as Reloader computes it.
        assert_eq!(
            secret_hash(&data),
            "370eb71e48dfc62f3617eeb7a746c867a68e19d9"
        );
        let cm = configmap_hash(
            &BTreeMap::from([("a".to_string(), "1".to_string())]),
            &BTreeMap::from([("b".to_string(), vec![0u8, 1])]),
        );
        assert_eq!(cm, "517724d7b9d86f445165ad52230863e4112a04f8");
        let r = |kind, name: &str| ResourceRef {
            kind,
            name: name.into(),
        };
        assert_eq!(
            env_var_name(&r(ResourceKind::Secret, "service-customer")),
            "STAKATER_SERVICE_CUSTOMER_SECRET"
        );
        assert_eq!(
            env_var_name(&r(ResourceKind::ConfigMap, "-a..b-")),
            "STAKATER_A_B__CONFIGMAP"
        );
    }

    fn deployment(annotations: serde_json::Value, template: serde_json::Value) -> Workload {
        Workload::from_object(&json!({
            "metadata": {"annotations": annotations},
            "spec": {"template": {"metadata": {"annotations": template}, "spec": {
                "volumes": [{"name": "keys", "secret": {"secretName": "service-customer"}},
                            {"name": "p", "projected": {"sources": [{"configMap": {"name": "cfg"}}]}}],
                "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-only"}}]}],
                "containers": [{"name": "app", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "x"}}}]},
                               {"name": "sidecar", "volumeMounts": [{"name": "keys", "mountPath": "/k"}, {"name": "p", "mountPath": "/p"}]}]
            }}}
        }))
    }

    fn r(kind: ResourceKind, name: &str) -> ResourceRef {
        ResourceRef {
            kind,
            name: name.into(),
        }
    }

    use ResourceKind::{ConfigMap as Cm, Secret as S};

    #[test]
    fn what_a_workload_follows_and_which_container_it_marks() {
        let none = BTreeMap::new();
        let auto = deployment(json!({AUTO: "true"}), json!({}));
        assert!(auto.wants());
        // The container mounting the volume, the one with the env reference, and an
        // init container's use marks the first container.
        assert_eq!(
            auto.follows(&r(S, "service-customer"), &none).as_deref(),
            Some("sidecar")
        );
        assert_eq!(
            auto.follows(&r(Cm, "cfg"), &none).as_deref(),
            Some("sidecar")
        );
        assert_eq!(auto.follows(&r(Cm, "other"), &none).as_deref(), Some("app"));
        assert_eq!(
            auto.follows(&r(S, "init-only"), &none).as_deref(),
            Some("app")
        );
        // auto follows only what the pod spec uses.
        assert_eq!(auto.follows(&r(S, "unused"), &none), None);
        assert!(!auto.may_follow(&r(S, "unused")));
        // Go's ParseBool; the typed form covers one kind.
        let typed = deployment(json!({SECRET_AUTO: "True"}), json!({}));
        assert!(typed.follows(&r(S, "service-customer"), &none).is_some());
        assert_eq!(typed.follows(&r(Cm, "cfg"), &none), None);
        assert_eq!(
            deployment(json!({AUTO: "yes"}), json!({})).follows(&r(S, "service-customer"), &none),
            None
        );
        // A reload list names resources, used or not (unused: the first container), as
        // names or as whole-name patterns.
        let listed = deployment(json!({SECRET_RELOAD: " route-.* , plain"}), json!({}));
        assert_eq!(
            listed.follows(&r(S, "route-customer"), &none).as_deref(),
            Some("app")
        );
        assert_eq!(
            listed.follows(&r(S, "plain"), &none).as_deref(),
            Some("app")
        );
        assert_eq!(listed.follows(&r(S, "xroute-customer"), &none), None);
        assert_eq!(listed.follows(&r(S, "service-customer"), &none), None);
        assert!(
            listed.may_follow(&r(S, "route-x")) && listed.may_follow(&r(S, "service-customer"))
        );
        let (names, patterns) = listed.candidates();
        assert!(names.contains(&r(S, "plain")) && names.contains(&r(Cm, "other")));
        assert_eq!(patterns, vec![S]);
        assert!(listed.problems().is_empty());
        assert_eq!(
            deployment(json!({SECRET_RELOAD: "a(b"}), json!({}))
                .problems()
                .len(),
            1
        );
        // search follows the used resources annotated match.
        let search = deployment(json!({SEARCH: "true"}), json!({}));
        let matched = a(&[(MATCH, "true")]);
        assert!(search
            .follows(&r(S, "service-customer"), &matched)
            .is_some());
        assert_eq!(search.follows(&r(S, "service-customer"), &none), None);
        assert_eq!(search.follows(&r(S, "unused"), &matched), None);
        // ignore on the resource, exclude on the workload.
        assert_eq!(
            auto.follows(&r(S, "service-customer"), &a(&[(IGNORE, "true")])),
            None
        );
        let excluded = deployment(
            json!({AUTO: "true", SECRETS_EXCLUDE: "x, service-customer"}),
            json!({}),
        );
        assert_eq!(excluded.follows(&r(S, "service-customer"), &none), None);
        assert!(excluded.follows(&r(Cm, "cfg"), &none).is_some());
        // The pod template's annotations count when the workload has none of the kind's.
        let templated = deployment(json!({"other": "x"}), json!({CONFIGMAP_RELOAD: "cfg"}));
        assert!(templated.wants());
        assert!(templated.follows(&r(Cm, "cfg"), &none).is_some());
        let both = deployment(json!({SECRET_RELOAD: "plain"}), json!({AUTO: "true"}));
        assert_eq!(
            both.follows(&r(S, "service-customer"), &none),
            None,
            "the workload's own keys win"
        );
        assert!(!deployment(json!({"other": "x"}), json!({})).wants());
    }

    #[test]
    fn records_decisions_and_patches() {
        let obs = |name: &str, hash: &str| Observed {
            resource: r(S, name),
            hash: hash.into(),
            container: "sidecar".into(),
        };
        let fresh = deployment(json!({AUTO: "true"}), json!({}));
        // First sight: a record, no rollout.
        let first = fresh.decide(&[obs("service-customer", "h1")]);
        assert!(first.changed.is_empty());
        let record = first.record.clone().expect("a record");
        assert_eq!(record, r#"{"Secret/service-customer":"h1"}"#);
        let p = fresh.patch(&first, Strategy::EnvVars, "ns", 1_700_000_000_123);
        assert_eq!(
            p,
            json!({"metadata": {"annotations": {RECORD: record}}}),
            "metadata only"
        );
        // Recorded: the same hash needs nothing; another rolls out.
        let recorded = deployment(json!({AUTO: "true", RECORD: record}), json!({}));
        assert_eq!(
            recorded.decide(&[obs("service-customer", "h1")]),
            Decision::default()
        );
        let d = recorded.decide(&[obs("service-customer", "h2")]);
        assert_eq!(d.changed, vec![obs("service-customer", "h2")]);
        let p = recorded.patch(&d, Strategy::EnvVars, "ns", 1_700_000_000_123);
        assert_eq!(
            p["spec"],
            json!({"template": {"spec": {"containers": [{"name": "sidecar", "env": [{"name": "STAKATER_SERVICE_CUSTOMER_SECRET", "value": "h2"}]}]}}})
        );
        assert_eq!(
            p["metadata"]["annotations"][ROLLED_OUT_AT],
            "2023-11-14T22:13:20.123Z"
        );
        let p = recorded.patch(&d, Strategy::Annotations, "ns", 1_700_000_000_123);
        let last: serde_json::Value = serde_json::from_str(
            p["spec"]["template"]["metadata"]["annotations"][LAST_RELOADED_FROM]
                .as_str()
                .expect("the annotation"),
        )
        .expect("JSON");
        assert_eq!(
            last,
            json!({"type": "SECRET", "name": "service-customer", "namespace": "ns", "hash": "h2", "containerRefs": ["sidecar"], "observedAt": 1_700_000_000})
        );
        // Reloader's env var and annotation are records too: a workload Reloader rolled
        // is not rolled again for the same data.
        let mut from_env = deployment(json!({AUTO: "true"}), json!({}));
        from_env.pod_spec["containers"][1]["env"] =
            json!([{"name": "STAKATER_SERVICE_CUSTOMER_SECRET", "value": "h1"}]);
        let d = from_env.decide(&[obs("service-customer", "h1")]);
        assert!(d.changed.is_empty() && d.record.is_some());
        assert_eq!(
            from_env
                .decide(&[obs("service-customer", "h3")])
                .changed
                .len(),
            1
        );
        let last = json!({"type": "SECRET", "name": "service-customer", "hash": "h1"}).to_string();
        let from_annotation = deployment(json!({AUTO: "true"}), json!({LAST_RELOADED_FROM: last}));
        assert!(from_annotation
            .decide(&[obs("service-customer", "h1")])
            .changed
            .is_empty());
        assert_eq!(
            from_annotation
                .decide(&[obs("service-customer", "h4")])
                .changed
                .len(),
            1
        );
        // Nothing followed and nothing recorded: nothing to write.
        assert_eq!(fresh.decide(&[]), Decision::default());
    }

    #[test]
    fn pods_updated_from_status() {
        let d = |gen: i64, observed: i64, updated: i64| {
            json!({"metadata": {"generation": gen}, "spec": {"replicas": 2},
                   "status": {"observedGeneration": observed, "updatedReplicas": updated}})
        };
        assert!(pods_updated("Deployment", &d(3, 3, 2), 3));
        assert!(!pods_updated("Deployment", &d(3, 2, 2), 3));
        assert!(!pods_updated("Deployment", &d(3, 3, 1), 3));
        // Generation 3 only changed annotations after the rollout of generation 2.
        assert!(pods_updated("Deployment", &d(3, 2, 2), 2));
        let ds = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 0}});
        assert!(pods_updated("DaemonSet", &ds, 1));
    }
}
