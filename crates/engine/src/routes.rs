//! cert-utils-operator's Route annotations (route.openshift.io/v1): which TLS fields of a
//! Route to set from which Secrets. Computed here for both runtimes (the operator patches
//! Routes; the local runtime will drive its edge proxy from the same answer).
//!
//! - `certs-from-secret: NAME`: for `edge` and `reencrypt` Routes, `spec.tls.certificate`
//!   and `key` from the Secret's tls.crt and tls.key, and `caCertificate` from its ca.crt
//!   when `inject-CA` is set to anything but `"false"`. cert-utils' README says the CA is
//!   injected by default, but its code injects it only when the annotation is there; a
//!   cluster moving from it keeps its Routes as they are, so certwright does what the code
//!   does.
//! - `destinationCA-from-secret: NAME`: `spec.tls.destinationCACertificate` from the
//!   Secret's ca.crt (any termination with a `tls` block).
//!
//! A Secret that is missing or does not hold a matching certificate and key is a problem
//! for the Route, which is then left as it was. Fields are compared by their PEM
//! content, so a Route holding the same certificates is not written again.

use crate::lifecycle::Problem;
use crate::observe::{SecretData, TlsMaterial};
use certwright_api::annotations::keys;
use certwright_pki::pem;
use serde_json::Value;
use std::collections::BTreeMap;

use certwright_api::annotations::{
    CU_CERTS_FROM_SECRET as CERTS_FROM_SECRET,
    CU_DESTINATION_CA_FROM_SECRET as DESTINATION_CA_FROM_SECRET, CU_INJECT_CA as INJECT_CA,
};

/// The Secrets a Route's annotations name: (certificates, destination CA).
pub fn referenced_secrets(annotations: &BTreeMap<String, String>) -> (Option<&str>, Option<&str>) {
    let get = |k: &str| {
        annotations
            .get(k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    (get(CERTS_FROM_SECRET), get(DESTINATION_CA_FROM_SECRET))
}

/// Whether a Route's annotations ask for anything here (cert-manager's route shim
/// included).
pub fn wants(annotations: &BTreeMap<String, String>) -> bool {
    let (c, d) = referenced_secrets(annotations);
    c.is_some() || d.is_some() || crate::shim::wants(annotations)
}

/// The annotations as [`desired_tls`] reads them: a Route that asks the shim for its
/// certificate, and names no `certs-from-secret`, reads it from the shim's Secret.
pub fn effective_annotations(
    route_name: &str,
    annotations: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = annotations.clone();
    if crate::shim::wants(annotations) && !out.contains_key(CERTS_FROM_SECRET) {
        out.insert(
            CERTS_FROM_SECRET.to_string(),
            crate::shim::route_secret_name(route_name),
        );
    }
    out
}

/// A Secret a Route names, as the shell found it.
pub enum Lookup<'a> {
    Found(&'a SecretData),
    Missing,
}

fn same_pem(have: Option<&str>, want: &str) -> bool {
    match have {
        Some(h) if h == want => true,
        Some(h) => match (
            pem::decode_all(h.as_bytes()),
            pem::decode_all(want.as_bytes()),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
        None => false,
    }
}

fn text(secret: &SecretData, key: &str) -> Option<String> {
    secret
        .get(key)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The `spec.tls` fields to set (by their JSON names), empty when the Route already holds
/// them. `tls` is the Route's current `spec.tls`; `certs` and `dest_ca` are the Secrets
/// the annotations name, when they name them (`namespace` for messages).
pub fn desired_tls(
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    tls: Option<&Value>,
    certs: Option<Lookup<'_>>,
    dest_ca: Option<Lookup<'_>>,
) -> Result<BTreeMap<&'static str, String>, Problem> {
    let Some(tls) = tls.filter(|t| t.is_object()) else {
        return Ok(BTreeMap::new());
    };
    let (certs_name, dest_name) = referenced_secrets(annotations);
    let current = |field: &str| tls.get(field).and_then(Value::as_str);
    let termination = current("termination").unwrap_or_default();
    let missing = |name: &str, which: &str| {
        Problem::new(
            "SecretNotFound",
            format!("Secret {namespace}/{name} ({which}) not found"),
        )
    };
    let mut want: Vec<(&'static str, String)> = Vec::new();
    if let (Some(name), Some(lookup)) = (certs_name, certs) {
        if matches!(termination, "edge" | "reencrypt") {
            let secret = match lookup {
                Lookup::Found(s) => s,
                Lookup::Missing => return Err(missing(name, "certs-from-secret")),
            };
            let m = TlsMaterial::read(secret);
            let broken = |why: String| {
                Problem::new("InvalidSecret", format!("Secret {namespace}/{name}: {why}"))
            };
            let (key, chain) = match (&m.key, &m.chain) {
                (Some(Ok(k)), Some(Ok(c))) if !c.is_empty() => (k, c),
                (None, _) | (_, None) => {
                    return Err(broken("tls.crt and tls.key are required".into()))
                }
                (Some(Err(e)), _) => return Err(broken(format!("tls.key: {e}"))),
                (_, Some(Err(e))) => return Err(broken(format!("tls.crt: {e}"))),
                _ => return Err(broken("tls.crt holds no certificate".into())),
            };
            if key.spki_der() != chain[0].spki_der.as_slice() {
                return Err(broken(
                    "tls.key does not match the certificate in tls.crt".into(),
                ));
            }
            want.push((
                "certificate",
                text(secret, keys::TLS_CRT).unwrap_or_default(),
            ));
            want.push(("key", text(secret, keys::TLS_KEY).unwrap_or_default()));
            let inject = annotations
                .get(INJECT_CA)
                .is_some_and(|v| v.trim() != "false");
            if let (true, Some(ca)) = (inject, text(secret, keys::CA_CRT)) {
                want.push(("caCertificate", ca));
            }
        }
    }
    if let (Some(name), Some(lookup)) = (dest_name, dest_ca) {
        let secret = match lookup {
            Lookup::Found(s) => s,
            Lookup::Missing => return Err(missing(name, "destinationCA-from-secret")),
        };
        let ca = text(secret, keys::CA_CRT).ok_or_else(|| {
            Problem::new(
                "InvalidSecret",
                format!("Secret {namespace}/{name}: ca.crt is missing or empty"),
            )
        })?;
        want.push(("destinationCACertificate", ca));
    }
    Ok(want
        .into_iter()
        .filter(|(field, value)| !same_pem(current(field), value))
        .collect())
}

/// The Route's `spec.tls` once the annotations are applied: what an edge serves (the
/// local runtime's HAProxy). The same [`desired_tls`] answer the operator patches Routes
/// with, laid over the manifest's own fields.
pub fn applied_tls(
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    tls: Option<&Value>,
    certs: Option<Lookup<'_>>,
    dest_ca: Option<Lookup<'_>>,
) -> Result<Option<Value>, Problem> {
    let set = desired_tls(namespace, annotations, tls, certs, dest_ca)?;
    Ok(tls.filter(|t| t.is_object()).map(|t| {
        let mut out = t.clone();
        for (field, value) in set {
            out[field] = Value::String(value);
        }
        out
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(host: &str) -> SecretData {
        crate::test_support::hand_made(host)
    }

    use crate::test_support::annotations;

    #[test]
    fn a_reencrypt_route_gets_its_certificates_once() {
        let route = secret("route.example.com");
        let service = secret("svc.demo.svc");
        let a = annotations(&[
            (CERTS_FROM_SECRET, "route"),
            (DESTINATION_CA_FROM_SECRET, "service"),
        ]);
        let tls = json!({"termination": "reencrypt"});
        let set = desired_tls(
            "demo",
            &a,
            Some(&tls),
            Some(Lookup::Found(&route)),
            Some(Lookup::Found(&service)),
        )
        .expect("fields");
        let fields: Vec<&str> = set.keys().copied().collect();
        assert_eq!(
            fields,
            ["certificate", "destinationCACertificate", "key"],
            "no caCertificate without inject-CA"
        );
        // Applied, nothing more to do.
        let mut applied = tls.clone();
        for (k, v) in &set {
            applied[*k] = json!(v);
        }
        let again = desired_tls(
            "demo",
            &a,
            Some(&applied),
            Some(Lookup::Found(&route)),
            Some(Lookup::Found(&service)),
        )
        .expect("fields");
        assert!(again.is_empty(), "{again:?}");
        // inject-CA: anything but "false" adds the CA.
        let mut with_ca = a.clone();
        with_ca.insert(INJECT_CA.into(), "true".into());
        let set = desired_tls(
            "demo",
            &with_ca,
            Some(&applied),
            Some(Lookup::Found(&route)),
            None,
        )
        .expect("fields");
        assert_eq!(set.keys().copied().collect::<Vec<_>>(), ["caCertificate"]);
    }

    #[test]
    fn passthrough_missing_and_broken_secrets() {
        let route = secret("route.example.com");
        let a = annotations(&[(CERTS_FROM_SECRET, "route")]);
        let passthrough = json!({"termination": "passthrough"});
        assert!(desired_tls(
            "demo",
            &a,
            Some(&passthrough),
            Some(Lookup::Found(&route)),
            None
        )
        .expect("ignored")
        .is_empty());
        let edge = json!({"termination": "edge"});
        let e =
            desired_tls("demo", &a, Some(&edge), Some(Lookup::Missing), None).expect_err("missing");
        assert_eq!(e.reason, "SecretNotFound");
        assert_eq!(e.message, "Secret demo/route (certs-from-secret) not found");
        let mut broken = route.clone();
        broken.data.insert(
            keys::TLS_KEY.into(),
            secret("other").data[keys::TLS_KEY].clone(),
        );
        let e = desired_tls("demo", &a, Some(&edge), Some(Lookup::Found(&broken)), None)
            .expect_err("mismatch");
        assert!(e.message.contains("tls.key does not match"), "{e}");
        assert!(!e.message.contains("PRIVATE KEY"));
        assert!(
            desired_tls("demo", &a, None, Some(Lookup::Found(&route)), None)
                .expect("no tls block")
                .is_empty()
        );
    }
}
