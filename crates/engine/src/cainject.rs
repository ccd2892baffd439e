//! CA injection: which CA bundle an annotated object should carry (cert-manager's
//! cainjector and cert-utils-operator's annotations), decided here for every shell.
//!
//! - `cert-manager.io/inject-ca-from: NAMESPACE/CERTIFICATE`: the ca.crt of that
//!   Certificate's Secret;
//! - `cert-manager.io/inject-ca-from-secret: NAMESPACE/SECRET`: that Secret's ca.crt, if the
//!   Secret allows it with `cert-manager.io/allow-direct-injection: "true"` (as cert-manager
//!   requires, so that naming a Secret is not enough to publish it);
//! - `cert-utils-operator.redhat-cop.io/injectca-from-secret: NAMESPACE/SECRET`: that
//!   Secret's ca.crt (cert-utils asks nothing of the Secret).
//!
//! The first of these that is set is used.

use crate::lifecycle::Problem;
use crate::observe::SecretData;
use certwright_api::annotations::keys;
use certwright_api::validate::{check_name, check_namespace};
use std::collections::BTreeMap;

pub use certwright_api::annotations::{
    ALLOW_DIRECT_INJECTION, CU_INJECTCA_FROM_SECRET, INJECT_CA_FROM, INJECT_CA_FROM_SECRET,
};

/// Where an object's CA bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Certificate's Secret.
    Certificate { namespace: String, name: String },
    /// A Secret named directly; `needs_allow`: cert-manager's annotation, which the Secret
    /// must allow.
    Secret {
        namespace: String,
        name: String,
        needs_allow: bool,
    },
}

/// Whether an object asks for injection.
pub fn wants(annotations: &BTreeMap<String, String>) -> bool {
    [
        INJECT_CA_FROM,
        INJECT_CA_FROM_SECRET,
        CU_INJECTCA_FROM_SECRET,
    ]
    .iter()
    .any(|k| annotations.contains_key(*k))
}

fn namespaced(annotation: &str, value: &str) -> Result<(String, String), Problem> {
    let invalid = |why: String| Problem::new("InvalidInjection", format!("{annotation}: {why}"));
    let (ns, name) = value
        .trim()
        .split_once('/')
        .ok_or_else(|| invalid(format!("{value:?} is not NAMESPACE/NAME")))?;
    check_namespace(ns, annotation).map_err(|e| invalid(e.message))?;
    check_name(name, annotation).map_err(|e| invalid(e.message))?;
    Ok((ns.to_string(), name.to_string()))
}

/// The source an object's annotations name, if any.
pub fn source(annotations: &BTreeMap<String, String>) -> Result<Option<Source>, Problem> {
    if let Some(v) = annotations.get(INJECT_CA_FROM) {
        let (namespace, name) = namespaced(INJECT_CA_FROM, v)?;
        return Ok(Some(Source::Certificate { namespace, name }));
    }
    for (key, needs_allow) in [
        (INJECT_CA_FROM_SECRET, true),
        (CU_INJECTCA_FROM_SECRET, false),
    ] {
        if let Some(v) = annotations.get(key) {
            let (namespace, name) = namespaced(key, v)?;
            return Ok(Some(Source::Secret {
                namespace,
                name,
                needs_allow,
            }));
        }
    }
    Ok(None)
}

/// The bundle to inject: the source Secret's ca.crt (`secret`: None when it does not
/// exist; `desc` names it in messages).
pub fn bundle(
    source: &Source,
    desc: &str,
    secret: Option<&SecretData>,
) -> Result<Vec<u8>, Problem> {
    let secret =
        secret.ok_or_else(|| Problem::new("SecretNotFound", format!("{desc} not found")))?;
    if let Source::Secret {
        needs_allow: true, ..
    } = source
    {
        let allowed = secret
            .annotations
            .get(ALLOW_DIRECT_INJECTION)
            .is_some_and(|v| v.trim() == "true");
        if !allowed {
            return Err(Problem::new(
                "InjectionNotAllowed",
                format!("{desc} does not allow direct injection (annotate it {ALLOW_DIRECT_INJECTION}: \"true\")"),
            ));
        }
    }
    let ca = secret.get(keys::CA_CRT).ok_or_else(|| {
        Problem::new(
            "InvalidSecret",
            format!("{desc}: ca.crt is missing or empty"),
        )
    })?;
    certwright_pki::inspect::parse_pem_chain(ca)
        .map_err(|e| Problem::new("InvalidSecret", format!("{desc}: ca.crt: {e}")))?;
    Ok(ca.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::annotations as a;

    #[test]
    fn sources_in_order_and_their_rules() {
        assert_eq!(source(&a(&[])).expect("none"), None);
        let both = a(&[(CU_INJECTCA_FROM_SECRET, "x/s"), (INJECT_CA_FROM, "ns/web")]);
        assert_eq!(
            source(&both).expect("ok"),
            Some(Source::Certificate {
                namespace: "ns".into(),
                name: "web".into()
            })
        );
        let e = source(&a(&[(INJECT_CA_FROM_SECRET, "no-slash")])).expect_err("bad");
        assert!(e.message.contains("is not NAMESPACE/NAME"), "{e}");
        let e = source(&a(&[(CU_INJECTCA_FROM_SECRET, "ns/Bad_Name")])).expect_err("bad");
        assert_eq!(e.reason, "InvalidInjection");

        let ca = crate::test_support::hand_made("ca.example.com");
        let direct = source(&a(&[(INJECT_CA_FROM_SECRET, "ns/ca")]))
            .expect("ok")
            .expect("some");
        let e = bundle(&direct, "Secret ns/ca", Some(&ca)).expect_err("not allowed");
        assert_eq!(e.reason, "InjectionNotAllowed");
        let mut allowed = ca.clone();
        allowed
            .annotations
            .insert(ALLOW_DIRECT_INJECTION.into(), "true".into());
        assert_eq!(
            bundle(&direct, "Secret ns/ca", Some(&allowed)).expect("ok"),
            ca.data[keys::CA_CRT]
        );
        let cu = source(&a(&[(CU_INJECTCA_FROM_SECRET, "ns/ca")]))
            .expect("ok")
            .expect("some");
        assert!(
            bundle(&cu, "Secret ns/ca", Some(&ca)).is_ok(),
            "cert-utils asks nothing of the Secret"
        );
        assert_eq!(
            bundle(&cu, "Secret ns/ca", None)
                .expect_err("missing")
                .reason,
            "SecretNotFound"
        );
    }
}
