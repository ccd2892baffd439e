//! Reloader's conventions, so that a cluster moving from Stakater Reloader to certwright
//! sees the same values and does not restart every workload once: the hash Reloader
//! computes of a Secret's or ConfigMap's data, the environment variable it writes it
//! into (`STAKATER_<NAME>_SECRET`), and which Secrets and ConfigMaps a workload follows
//! (its annotations, the resources its pod template references, and their own
//! annotations).
//!
//! These are the pure parts of rollouts; the controller that rolls workloads out is not
//! there yet.

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

fn is_true(a: &BTreeMap<String, String>, k: &str) -> bool {
    a.get(k)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn names(a: &BTreeMap<String, String>, k: &str) -> Vec<String> {
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

/// Whether a workload's annotations ask Reloader (or certwright) to follow anything.
pub fn wants(annotations: &BTreeMap<String, String>) -> bool {
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

/// The resources a workload follows, from its annotations, the resources its pod
/// template references, and those resources' annotations (`resource_annotations`; None
/// for a resource that does not exist): `auto` follows every reference (the `secret.`
/// and `configmap.` forms, one kind), `reload` the names listed, `search` the references
/// annotated `match`; a resource annotated `ignore`, or excluded by the workload, never.
pub fn followed(
    workload: &BTreeMap<String, String>,
    refs: &BTreeSet<ResourceRef>,
    resource_annotations: &dyn Fn(&ResourceRef) -> Option<BTreeMap<String, String>>,
) -> BTreeSet<ResourceRef> {
    let mut out = BTreeSet::new();
    let all = is_true(workload, AUTO);
    for r in refs {
        let kind_auto = match r.kind {
            ResourceKind::Secret => is_true(workload, SECRET_AUTO),
            ResourceKind::ConfigMap => is_true(workload, CONFIGMAP_AUTO),
        };
        let matched = is_true(workload, SEARCH)
            && resource_annotations(r).is_some_and(|a| is_true(&a, MATCH));
        if all || kind_auto || matched {
            out.insert(r.clone());
        }
    }
    for (key, kind) in [
        (SECRET_RELOAD, ResourceKind::Secret),
        (CONFIGMAP_RELOAD, ResourceKind::ConfigMap),
    ] {
        for name in names(workload, key) {
            out.insert(ResourceRef { kind, name });
        }
    }
    let excluded: Vec<ResourceRef> = [
        (SECRETS_EXCLUDE, ResourceKind::Secret),
        (CONFIGMAPS_EXCLUDE, ResourceKind::ConfigMap),
    ]
    .iter()
    .flat_map(|(key, kind)| {
        names(workload, key)
            .into_iter()
            .map(move |name| ResourceRef { kind: *kind, name })
    })
    .collect();
    out.retain(|r| {
        !excluded.contains(r) && !resource_annotations(r).is_some_and(|a| is_true(&a, IGNORE))
    });
    out
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

    #[test]
    fn what_a_workload_follows() {
        let pod = json!({
            "volumes": [{"name": "k", "secret": {"secretName": "service-customer"}},
                        {"name": "p", "projected": {"sources": [{"configMap": {"name": "cfg"}}]}}],
            "containers": [{"name": "app",
                            "envFrom": [{"secretRef": {"name": "env-secret"}}],
                            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "x"}}}]}]
        });
        let refs = references(&pod);
        assert_eq!(refs.len(), 4);
        let r = |kind, name: &str| ResourceRef {
            kind,
            name: name.into(),
        };
        let none = |_: &ResourceRef| None;
        let auto = followed(&a(&[(AUTO, "true")]), &refs, &none);
        assert_eq!(auto, refs);
        let secrets = followed(
            &a(&[(SECRET_AUTO, "true"), (SECRETS_EXCLUDE, "env-secret")]),
            &refs,
            &none,
        );
        assert_eq!(
            secrets,
            BTreeSet::from([r(ResourceKind::Secret, "service-customer")])
        );
        let listed = followed(
            &a(&[(SECRET_RELOAD, "route-customer, service-customer")]),
            &refs,
            &none,
        );
        assert_eq!(listed.len(), 2, "listed names, referenced or not");
        let meta = |x: &ResourceRef| match x.name.as_str() {
            "cfg" => Some(a(&[(MATCH, "true")])),
            "service-customer" => Some(a(&[(IGNORE, "true")])),
            _ => Some(BTreeMap::new()),
        };
        let searched = followed(&a(&[(SEARCH, "true"), (AUTO, "false")]), &refs, &meta);
        assert_eq!(
            searched,
            BTreeSet::from([r(ResourceKind::ConfigMap, "cfg")])
        );
        let ignored = followed(&a(&[(AUTO, "true")]), &refs, &meta);
        assert!(!ignored.contains(&r(ResourceKind::Secret, "service-customer")));
        assert!(wants(&a(&[(SECRET_RELOAD, "x")])) && !wants(&a(&[("other", "x")])));
    }
}
