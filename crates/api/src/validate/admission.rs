//! What the admission webhook decides: the object as the API server holds it is read as a
//! manifest document would be, and checked with the same rules, so a refusal at apply time
//! carries the message the status reason would have carried.
//!
//! Only rules about the object itself refuse it. Rules that need other objects (the issuer
//! exists, its CA Secret holds a CA) are left to reconciliation, as with cert-manager. So
//! are certwright's own limits (reasons starting with `Unsupported`): cert-manager accepts
//! such manifests, and a GitOps apply of them must not fail because of one of them; the
//! resource says why in its status instead.

use super::{certificate, certificate_request, issuer, join, FieldError};
use crate::manifest::{parse_value, Resource};
use serde_json::Value;

/// Admission operations (the AdmissionRequest's `operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// Checks a cert-manager.io object being created or updated (`old`: the stored object on
/// update). Err holds the message the API server returns to the client.
pub fn check(op: Operation, mut object: Value, old: Option<&Value>) -> Result<(), String> {
    // An update that leaves the spec as it was (labels, annotations) is not judged: an
    // object made before the webhook, or by an older version, can still be labelled.
    if op == Operation::Update && old.is_some_and(|o| o.get("spec") == object.get("spec")) {
        return Ok(());
    }
    name_for_generate_name(&mut object);
    let doc = parse_value(object, String::new());
    let resource = doc.result.map_err(|e| e.message)?;
    let errors: Vec<FieldError> = match &resource {
        Resource::Certificate(c) => certificate(c).err().unwrap_or_default(),
        Resource::Issuer(i) | Resource::ClusterIssuer(i) => issuer(i).err().unwrap_or_default(),
        Resource::CertificateRequest(cr) => {
            if op == Operation::Update {
                if let Some(old) = old {
                    immutable_spec(cr, old)?;
                }
            }
            certificate_request(cr).err().unwrap_or_default()
        }
        Resource::Secret(_)
        | Resource::ConfigMap(_)
        | Resource::Route(_)
        | Resource::ReloadHook(_) => Vec::new(),
    };
    let refused: Vec<FieldError> = errors
        .into_iter()
        .filter(|e| !e.reason.starts_with("Unsupported"))
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(join(&refused))
    }
}

/// A create with `generateName` reaches admission without a name (the API server makes it
/// up afterwards): the name rules are checked on the prefix plus a generated-like suffix.
fn name_for_generate_name(object: &mut Value) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let named = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if named {
        return;
    }
    if let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
        let name = format!("{prefix}x0000");
        meta.insert("name".into(), Value::String(name));
    }
}

/// A CertificateRequest's spec is fixed once created (it is what the requester asked for
/// and what an approver approved), as in cert-manager.
fn immutable_spec(cr: &crate::types::CertificateRequest, old: &Value) -> Result<(), String> {
    let old_typed: Option<crate::types::CertificateRequestSpec> =
        serde_json::from_value(old.get("spec").cloned().unwrap_or(Value::Null)).ok();
    match old_typed {
        Some(o) if o != cr.spec => {
            let as_value = |s| serde_json::to_value(s).unwrap_or(Value::Null);
            Err(format!(
                "spec: field is immutable (changed: {})",
                changed_keys(&as_value(&o), &as_value(&cr.spec))
            ))
        }
        _ => Ok(()),
    }
}

/// The top-level spec fields that differ, for the immutability message.
fn changed_keys(a: &Value, b: &Value) -> String {
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut all = keys(a);
    all.extend(keys(b));
    all.sort();
    all.dedup();
    all.retain(|k| a.get(k) != b.get(k));
    all.iter()
        .map(|k| format!("spec.{k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cert(spec: Value) -> Value {
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
               "metadata": {"name": "c", "namespace": "n", "uid": "u", "managedFields": []},
               "spec": spec})
    }

    #[test]
    fn refuses_what_the_status_would_refuse_with_its_message() {
        let bad = cert(json!({"secretName": "s", "issuerRef": {"name": "i"},
                              "dnsNames": ["x"], "privateKey": {"algorithm": "RSA", "size": 1024}}));
        let e = check(Operation::Create, bad, None).expect_err("refused");
        assert!(e.contains("spec.privateKey.size"), "{e}");
        assert!(e.contains("between 2048 and 8192"), "{e}");
        let short = cert(json!({"secretName": "s", "issuerRef": {"name": "i"},
                                "dnsNames": ["x"], "duration": "10m"}));
        let e = check(Operation::Create, short, None).expect_err("refused");
        assert!(e.contains("less than the minimum of 1h"), "{e}");
    }

    #[test]
    fn accepts_valid_objects_and_certwright_limits() {
        let ok = cert(json!({"secretName": "s", "issuerRef": {"name": "i"}, "dnsNames": ["x"]}));
        check(Operation::Create, ok, None).expect("valid");
        // RSA 2049 is valid for cert-manager; certwright reports it in the status instead.
        let limit = cert(
            json!({"secretName": "s", "issuerRef": {"name": "i"}, "dnsNames": ["x"],
                                "privateKey": {"algorithm": "RSA", "size": 2049}}),
        );
        check(Operation::Create, limit, None).expect("left to the status");
    }

    #[test]
    fn generate_name_and_request_immutability() {
        use base64::Engine;
        let pem = super::super::test_csr_pem();
        let request = base64::engine::general_purpose::STANDARD.encode(pem);
        let cr = |req: &str, user: &str| {
            json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
                   "metadata": {"generateName": "check-", "namespace": "n"},
                   "spec": {"request": req, "issuerRef": {"name": "i"}, "username": user}})
        };
        check(Operation::Create, cr(&request, "a"), None).expect("valid, unnamed");
        let garbage = base64::engine::general_purpose::STANDARD.encode("invalid-csr");
        let e = check(Operation::Create, cr(&garbage, "a"), None).expect_err("refused");
        assert!(e.starts_with("spec.request:"), "{e}");
        let e = check(
            Operation::Update,
            cr(&request, "b"),
            Some(&cr(&request, "a")),
        )
        .expect_err("immutable");
        assert!(
            e.contains("immutable") && e.contains("spec.username"),
            "{e}"
        );
        check(
            Operation::Update,
            cr(&request, "a"),
            Some(&cr(&request, "a")),
        )
        .expect("unchanged");
        // A metadata-only update of an invalid object (made before the webhook) passes.
        check(
            Operation::Update,
            cr(&garbage, "a"),
            Some(&cr(&garbage, "a")),
        )
        .expect("spec unchanged: not judged");
    }
}
