//! CustomResourceDefinitions for the `cert-manager.io/v1` kinds, generated from the Rust
//! types (`certwright crds`; checked in under deploy/crds and diff-checked by the tests).
//!
//! Schemas are made structural as Kubernetes requires (apiextensions.k8s.io/v1): sub-schemas
//! inlined, `additionalProperties: false` and defaults dropped, free-form values marked
//! `x-kubernetes-preserve-unknown-fields`.

use crate::acme::{ChallengeSpec, ChallengeStatus, OrderSpec, OrderStatus, ACME_GROUP};
use crate::types::*;
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

fn structural(v: &mut Value) {
    if let Value::Bool(true) = v {
        *v = json!({"x-kubernetes-preserve-unknown-fields": true});
        return;
    }
    let Value::Object(o) = v else { return };
    for k in [
        "$schema",
        "title",
        "definitions",
        "$defs",
        "examples",
        "default",
    ] {
        o.remove(k);
    }
    if o.get("additionalProperties") == Some(&Value::Bool(false)) {
        o.remove("additionalProperties");
    }
    if let Some(f) = o.get("format").and_then(Value::as_str) {
        if f.starts_with("uint") || f == "int" {
            o.insert("format".into(), Value::String("int64".into()));
        }
    }
    let free_form = ![
        "type",
        "properties",
        "items",
        "anyOf",
        "oneOf",
        "allOf",
        "enum",
        "x-kubernetes-preserve-unknown-fields",
    ]
    .iter()
    .any(|k| o.contains_key(*k));
    if free_form {
        let kept: Vec<(String, Value)> = ["nullable", "description"]
            .iter()
            .filter_map(|k| o.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        o.clear();
        o.insert(
            "x-kubernetes-preserve-unknown-fields".into(),
            Value::Bool(true),
        );
        o.extend(kept);
        return;
    }
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        for (_, p) in props.iter_mut() {
            structural(p);
        }
    }
    for k in ["items", "additionalProperties"] {
        if let Some(p) = o.get_mut(k) {
            structural(p);
        }
    }
    for k in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(a)) = o.get_mut(k) {
            for p in a {
                structural(p);
            }
        }
    }
}

/// The structural OpenAPI v3 schema of a type.
pub fn schema_of<T: JsonSchema>() -> Value {
    let mut settings = SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    settings.meta_schema = None;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut v = serde_json::to_value(schema).unwrap_or(Value::Null);
    structural(&mut v);
    if let Value::Object(o) = &mut v {
        o.remove("description");
    }
    v
}

fn ready_columns() -> Vec<Value> {
    vec![
        json!({"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}),
        json!({"name": "Status", "type": "string", "priority": 1, "jsonPath": ".status.conditions[?(@.type==\"Ready\")].message"}),
    ]
}

fn age() -> Value {
    json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
           "description": "CreationTimestamp is a timestamp representing the server time when this object was created."})
}

#[allow(clippy::too_many_arguments)]
fn crd(
    group: &str,
    plural: &str,
    kind: &str,
    short: &[&str],
    scope: &str,
    spec: Value,
    status: Value,
    columns: Vec<Value>,
    description: &str,
) -> Value {
    let mut names = Map::new();
    names.insert("kind".into(), json!(kind));
    names.insert("listKind".into(), json!(format!("{kind}List")));
    names.insert("plural".into(), json!(plural));
    names.insert("singular".into(), json!(kind.to_lowercase()));
    let category = if group == GROUP {
        "cert-manager"
    } else {
        "cert-manager-acme"
    };
    names.insert("categories".into(), json!([category]));
    if !short.is_empty() {
        names.insert("shortNames".into(), json!(short));
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{plural}.{group}"),
            // The version label is what `cmctl version` reports as the server's version.
            "labels": {"app.kubernetes.io/name": "certwright", "app.kubernetes.io/part-of": "certwright",
                       "app.kubernetes.io/version": concat!("v", env!("CARGO_PKG_VERSION"))}
        },
        "spec": {
            "group": group,
            "names": names,
            "scope": scope,
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "description": description,
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string", "description": format!("The API version of this resource: {group}/v1.")},
                        "kind": {"type": "string", "description": format!("The kind of this resource: {kind}.")},
                        // The API server allows nothing more here (it documents
                        // metadata itself).
                        "metadata": {"type": "object"},
                        "spec": described(spec, &format!("What the {kind} asks for.")),
                        "status": described(status, &format!("What was observed and done for the {kind}, written by certwright."))
                    }
                }}
            }]
        }
    })
}

/// A schema with a description (the top-level ones, which [`schema_of`] leaves out).
fn described(mut schema: Value, description: &str) -> Value {
    if let Value::Object(o) = &mut schema {
        o.insert("description".into(), json!(description));
    }
    schema
}

/// A schema with cert-manager's required fields.
fn requiring(mut schema: Value, fields: &[&str]) -> Value {
    if let Value::Object(o) = &mut schema {
        o.insert("required".into(), json!(fields));
    }
    schema
}

/// The CRDs for Certificate, CertificateRequest, Issuer, ClusterIssuer, and ACME's Order
/// and Challenge.
pub fn all() -> Vec<Value> {
    let mut cert_cols = vec![ready_columns()[0].clone()];
    cert_cols.push(json!({"name": "Secret", "type": "string", "jsonPath": ".spec.secretName"}));
    cert_cols.push(json!({"name": "Issuer", "type": "string", "priority": 1, "jsonPath": ".spec.issuerRef.name"}));
    cert_cols.push(ready_columns()[1].clone());
    cert_cols.push(age());
    let cr_cols = vec![
        json!({"name": "Approved", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Approved\")].status"}),
        json!({"name": "Denied", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Denied\")].status"}),
        ready_columns()[0].clone(),
        json!({"name": "Issuer", "type": "string", "jsonPath": ".spec.issuerRef.name"}),
        json!({"name": "Requester", "type": "string", "jsonPath": ".spec.username"}),
        ready_columns()[1].clone(),
        age(),
    ];
    let mut issuer_cols = ready_columns();
    issuer_cols.push(age());
    [
        crd(
            GROUP,
            "certificates",
            "Certificate",
            &["cert", "certs"],
            "Namespaced",
            requiring(schema_of::<CertificateSpec>(), &["issuerRef", "secretName"]),
            schema_of::<CertificateStatus>(),
            cert_cols,
            "A Certificate asks for a signed certificate and key in a Secret, kept up to date.",
        ),
        crd(
            GROUP,
            "certificaterequests",
            "CertificateRequest",
            &["cr", "crs"],
            "Namespaced",
            requiring(
                schema_of::<CertificateRequestSpec>(),
                &["issuerRef", "request"],
            ),
            schema_of::<CertificateRequestStatus>(),
            cr_cols,
            "A CertificateRequest asks an issuer to sign one certificate signing request.",
        ),
        crd(
            GROUP,
            "issuers",
            "Issuer",
            &[],
            "Namespaced",
            schema_of::<IssuerSpec>(),
            schema_of::<IssuerStatus>(),
            issuer_cols.clone(),
            "An Issuer signs certificates for its namespace.",
        ),
        crd(
            GROUP,
            "clusterissuers",
            "ClusterIssuer",
            &[],
            "Cluster",
            schema_of::<IssuerSpec>(),
            schema_of::<IssuerStatus>(),
            issuer_cols,
            "A ClusterIssuer signs certificates for every namespace.",
        ),
    ]
    .into_iter()
    .chain(acme_crds())
    .collect()
}

/// The CRDs of ACME's Order and Challenge (acme.cert-manager.io/v1).
fn acme_crds() -> [Value; 2] {
    [
        crd(
            ACME_GROUP,
            "orders",
            "Order",
            &[],
            "Namespaced",
            requiring(schema_of::<OrderSpec>(), &["issuerRef", "request"]),
            schema_of::<OrderStatus>(),
            vec![
                json!({"name": "State", "type": "string", "jsonPath": ".status.state"}),
                json!({"name": "Issuer", "type": "string", "priority": 1, "jsonPath": ".spec.issuerRef.name"}),
                json!({"name": "Reason", "type": "string", "priority": 1, "jsonPath": ".status.reason", "description": ""}),
                age(),
            ],
            "An Order is one ACME order, made for a CertificateRequest.",
        ),
        crd(
            ACME_GROUP,
            "challenges",
            "Challenge",
            &[],
            "Namespaced",
            requiring(
                schema_of::<ChallengeSpec>(),
                &[
                    "authorizationURL",
                    "dnsName",
                    "issuerRef",
                    "key",
                    "solver",
                    "token",
                    "type",
                    "url",
                ],
            ),
            schema_of::<ChallengeStatus>(),
            vec![
                json!({"name": "State", "type": "string", "jsonPath": ".status.state"}),
                json!({"name": "Domain", "type": "string", "jsonPath": ".spec.dnsName"}),
                json!({"name": "Reason", "type": "string", "priority": 1, "jsonPath": ".status.reason", "description": ""}),
                age(),
            ],
            "A Challenge is one ACME challenge an Order's authorization is solved with.",
        ),
    ]
}

/// The CRDs as one multi-document YAML text.
pub fn yaml() -> String {
    let mut out = String::from("# Generated by `certwright crds` from crates/api; do not edit.\n");
    for c in all() {
        out.push_str("---\n");
        out.push_str(&crate::yaml::to_string(&c).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field explains itself (`kubectl explain` prints these).
    #[test]
    fn every_field_has_a_description() {
        fn walk(v: &Value, path: &str, missing: &mut Vec<String>) {
            if let Some(Value::Object(props)) = v.get("properties") {
                for (k, p) in props {
                    let here = format!("{path}.{k}");
                    let described = p
                        .get("description")
                        .and_then(Value::as_str)
                        .is_some_and(|d| !d.trim().is_empty());
                    // The API server forbids anything but the type on the top-level
                    // metadata and documents it itself.
                    let top_metadata = k == "metadata" && !path.contains('.');
                    if !described && !top_metadata {
                        missing.push(here.clone());
                    }
                    walk(p, &here, missing);
                }
            }
            if let Some(items) = v.get("items") {
                walk(items, &format!("{path}[]"), missing);
            }
            if let Some(extra) = v.get("additionalProperties").filter(|a| a.is_object()) {
                walk(extra, &format!("{path}{{}}"), missing);
            }
        }
        let mut missing = Vec::new();
        for crd in all() {
            let kind = crd["spec"]["names"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            walk(
                &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
                &kind,
                &mut missing,
            );
        }
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:#?}"
        );
    }

    fn walk(v: &Value, path: &str, bad: &mut Vec<String>) {
        if let Value::Object(o) = v {
            for k in ["$ref", "definitions", "$defs", "$schema"] {
                if o.contains_key(k) {
                    bad.push(format!("{path}: {k}"));
                }
            }
            if o.contains_key("properties") && o.contains_key("additionalProperties") {
                bad.push(format!("{path}: properties with additionalProperties"));
            }
            if !o.contains_key("type")
                && !o.contains_key("x-kubernetes-preserve-unknown-fields")
                && !o.contains_key("anyOf")
            {
                bad.push(format!("{path}: no type"));
            }
            if let Some(Value::Object(p)) = o.get("properties") {
                for (k, s) in p {
                    walk(s, &format!("{path}.{k}"), bad);
                }
            }
            if let Some(i) = o.get("items") {
                walk(i, &format!("{path}[]"), bad);
            }
        }
    }

    #[test]
    fn schemas_are_structural_and_name_cert_manager_fields() {
        for c in all() {
            let s = &c["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            let mut bad = Vec::new();
            walk(
                s,
                c["spec"]["names"]["kind"].as_str().unwrap_or("?"),
                &mut bad,
            );
            assert!(bad.is_empty(), "{bad:?}");
        }
        let cert = &all()[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["spec"]["properties"];
        for field in [
            "secretName",
            "issuerRef",
            "dnsNames",
            "isCA",
            "privateKey",
            "keystores",
            "renewBeforePercentage",
        ] {
            assert!(cert.get(field).is_some(), "{field}");
        }
        assert_eq!(cert["isCA"]["type"], "boolean");
    }
}
