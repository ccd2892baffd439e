//! The cert-manager.io kinds as typed Kubernetes resources: kube's metadata with the spec
//! and status as certwright's api types, so that controllers, watches and reads use the
//! same structs as the engine and the local runtime.
//!
//! Why not kube-derive on the api types: a typed list or watch fails whole when one
//! object does not deserialize, so one malformed Certificate (a field certwright's types
//! refuse, written before the CRD was updated, say) would stop the controller for every
//! other. Here the spec is read on its own: an object whose spec does not fit keeps its
//! metadata and status and says why ([`Spec::Unreadable`]); its reconcile reports that
//! in its status, and the rest of the list is unaffected. The api crate stays free of
//! kube (the local runtime does not link it).

use certwright_api::validate::IssuerKind;
use certwright_api::{
    CertificateRequestSpec, CertificateRequestStatus, CertificateSpec, CertificateStatus,
    IssuerSpec, IssuerStatus, Object, API_VERSION, GROUP,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ClusterResourceScope, NamespaceResourceScope};
use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt::Debug;

/// One cert-manager.io/v1 kind: its names and its spec and status types.
pub trait Kind: Clone + Debug + Send + Sync + 'static {
    const KIND: &'static str;
    const PLURAL: &'static str;
    /// The API group (cert-manager.io, or acme.cert-manager.io for Orders and Challenges).
    const GROUP: &'static str = GROUP;
    /// kube's `NamespaceResourceScope` or `ClusterResourceScope`.
    type Scope;
    type Spec: DeserializeOwned + Serialize + Clone + Debug + Send + Sync;
    type Status: DeserializeOwned + Serialize + Clone + Debug + Default + PartialEq + Send + Sync;
}

macro_rules! kind {
    ($marker:ident, $kind:literal, $plural:literal, $scope:ty, $spec:ty, $status:ty) => {
        kind!($marker, $kind, $plural, $scope, $spec, $status, GROUP);
    };
    ($marker:ident, $kind:literal, $plural:literal, $scope:ty, $spec:ty, $status:ty, $group:expr) => {
        #[derive(Clone, Debug)]
        pub struct $marker;
        impl Kind for $marker {
            const KIND: &'static str = $kind;
            const PLURAL: &'static str = $plural;
            const GROUP: &'static str = $group;
            type Scope = $scope;
            type Spec = $spec;
            type Status = $status;
        }
    };
}

kind!(
    Certificates,
    "Certificate",
    "certificates",
    NamespaceResourceScope,
    CertificateSpec,
    CertificateStatus
);
kind!(
    CertificateRequests,
    "CertificateRequest",
    "certificaterequests",
    NamespaceResourceScope,
    CertificateRequestSpec,
    CertificateRequestStatus
);
kind!(
    Issuers,
    "Issuer",
    "issuers",
    NamespaceResourceScope,
    IssuerSpec,
    IssuerStatus
);
kind!(
    ClusterIssuers,
    "ClusterIssuer",
    "clusterissuers",
    ClusterResourceScope,
    IssuerSpec,
    IssuerStatus
);

// ACME orders, written from a pending request's record, and their challenges: every
// replica serves the HTTP-01 tokens of these.
kind!(
    Orders,
    "Order",
    "orders",
    NamespaceResourceScope,
    certwright_api::acme::OrderSpec,
    certwright_api::acme::OrderStatus,
    certwright_api::acme::ACME_GROUP
);
kind!(
    Challenges,
    "Challenge",
    "challenges",
    NamespaceResourceScope,
    certwright_api::acme::ChallengeSpec,
    certwright_api::acme::ChallengeStatus,
    certwright_api::acme::ACME_GROUP
);

// OpenShift's Route (route.openshift.io/v1), read and patched for cert-utils-operator's
// annotations. Its spec and status stay JSON: certwright touches only `spec.tls`.
kind!(
    Routes,
    "Route",
    "routes",
    NamespaceResourceScope,
    Value,
    Value,
    "route.openshift.io"
);

/// Issuers and ClusterIssuers: one spec, in a namespace or cluster-wide.
pub trait IssuerKinds: Kind<Spec = IssuerSpec, Status = IssuerStatus> {
    const KIND_REF: IssuerKind;
    /// Where the issuer `name` is read from, for a resource in namespace `ns` (a
    /// ClusterIssuer: all namespaces).
    fn api(client: &kube::Client, ns: &str) -> kube::Api<Typed<Self>>;
    /// Where the issuer's Secrets (its CA key pair) are read: an Issuer's own namespace
    /// `ns`, a ClusterIssuer's cluster resource namespace.
    fn secret_namespace(cluster_resource_namespace: &str, ns: &str) -> String;
}

impl IssuerKinds for Issuers {
    const KIND_REF: IssuerKind = IssuerKind::Issuer;
    fn api(client: &kube::Client, ns: &str) -> kube::Api<Typed<Self>> {
        kube::Api::namespaced(client.clone(), ns)
    }
    fn secret_namespace(_: &str, ns: &str) -> String {
        ns.to_string()
    }
}

impl IssuerKinds for ClusterIssuers {
    const KIND_REF: IssuerKind = IssuerKind::ClusterIssuer;
    fn api(client: &kube::Client, _: &str) -> kube::Api<Typed<Self>> {
        kube::Api::all(client.clone())
    }
    fn secret_namespace(cluster_resource_namespace: &str, _: &str) -> String {
        cluster_resource_namespace.to_string()
    }
}

pub type CertificateObject = Typed<Certificates>;
pub type RequestObject = Typed<CertificateRequests>;
pub type IssuerObject = Typed<Issuers>;
pub type ClusterIssuerObject = Typed<ClusterIssuers>;
pub type OrderObject = Typed<Orders>;
pub type ChallengeObject = Typed<Challenges>;

/// An object's spec as read.
#[derive(Clone, Debug)]
pub enum Spec<S> {
    Read(S),
    /// The spec does not fit certwright's types: why (with the field's path), and the
    /// issuerRef's group if it could be read, since whose object it is must be answerable
    /// even when the rest is not ours to read.
    Unreadable {
        message: String,
        issuer_group: Option<String>,
    },
    /// Not kept: the watch caches hold metadata only (every reconcile reads its object).
    NotKept,
}

/// A cert-manager.io object: kube's metadata, its spec as read, and its status (a status
/// that does not fit is read as none: certwright writes it whole again).
#[derive(Clone, Debug)]
pub struct Typed<K: Kind> {
    pub metadata: ObjectMeta,
    pub spec: Spec<K::Spec>,
    pub status: Option<K::Status>,
}

impl<K: Kind> Typed<K> {
    /// A new object to create, with a spec.
    pub fn new(metadata: ObjectMeta, spec: K::Spec) -> Self {
        Typed {
            metadata,
            spec: Spec::Read(spec),
            status: None,
        }
    }

    /// The object as certwright's api type (what validation and the engine take), or why
    /// its spec cannot be read.
    pub fn object(&self) -> Result<Object<K::Spec, K::Status>, String> {
        let spec = match &self.spec {
            Spec::Read(s) => s.clone(),
            Spec::Unreadable { message, .. } => return Err(message.clone()),
            Spec::NotKept => return Err("the spec was not kept in the watch cache".into()),
        };
        let m = &self.metadata;
        Ok(Object {
            api_version: <Self as kube::Resource>::api_version(&()).into_owned(),
            kind: K::KIND.into(),
            metadata: certwright_api::ObjectMeta {
                name: m.name.clone().unwrap_or_default(),
                namespace: m.namespace.clone(),
                labels: m.labels.clone().unwrap_or_default(),
                annotations: m.annotations.clone().unwrap_or_default(),
                generation: m.generation,
            },
            spec,
            status: self.status.clone(),
        })
    }

    /// The status, or an empty one.
    pub fn status_or_default(&self) -> K::Status {
        self.status.clone().unwrap_or_default()
    }

    /// Drops what a watch cache does not need: the spec, the status and managedFields.
    pub fn keep_metadata_only(&mut self) {
        self.spec = Spec::NotKept;
        self.status = None;
        self.metadata.managed_fields = None;
    }
}

impl<K: Kind> kube::Resource for Typed<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(_: &()) -> Cow<'_, str> {
        K::KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        K::GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn api_version(_: &()) -> Cow<'_, str> {
        if K::GROUP == GROUP {
            API_VERSION.into()
        } else {
            format!("{}/v1", K::GROUP).into()
        }
    }
    fn plural(_: &()) -> Cow<'_, str> {
        K::PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The spec's parse error, with the path of the field at fault.
fn spec_error(e: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if path == "." {
        format!("spec: {inner}")
    } else {
        format!("spec.{path}: {inner}")
    }
}

impl<'de, K: Kind> Deserialize<'de> for Typed<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            metadata: ObjectMeta,
            #[serde(default)]
            spec: Option<Value>,
            #[serde(default)]
            status: Option<Value>,
        }
        let raw = Raw::deserialize(d)?;
        let spec = match raw.spec {
            None => Spec::Unreadable {
                message: "spec: required".into(),
                issuer_group: None,
            },
            Some(v) => match serde_path_to_error::deserialize::<_, K::Spec>(&v) {
                Ok(s) => Spec::Read(s),
                Err(e) => Spec::Unreadable {
                    message: spec_error(e),
                    issuer_group: v
                        .pointer("/issuerRef/group")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                },
            },
        };
        let status = raw.status.and_then(|v| K::Status::deserialize(&v).ok());
        Ok(Typed {
            metadata: raw.metadata,
            spec,
            status,
        })
    }
}

impl<K: Kind> Serialize for Typed<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a, P, T> {
            api_version: &'a str,
            kind: &'a str,
            metadata: &'a ObjectMeta,
            #[serde(skip_serializing_if = "Option::is_none")]
            spec: Option<&'a P>,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<&'a T>,
        }
        let api_version = <Self as kube::Resource>::api_version(&());
        Out {
            api_version: &api_version,
            kind: K::KIND,
            metadata: &self.metadata,
            spec: match &self.spec {
                Spec::Read(p) => Some(p),
                _ => None,
            },
            status: self.status.as_ref(),
        }
        .serialize(s)
    }
}

/// What kube's Controller needs of a watched object.
pub(crate) trait Watched:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<T> Watched for T where
    T: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_that_does_not_fit_keeps_the_object_and_says_why() {
        let list = serde_json::json!([
            {"metadata": {"name": "good", "namespace": "a"},
             "spec": {"secretName": "s", "issuerRef": {"name": "ca"}, "commonName": "x"},
             "status": {"revision": 2}},
            {"metadata": {"name": "bad", "namespace": "a"},
             "spec": {"secretName": "s", "issuerRef": {"name": "ca", "group": "example.com"},
                      "dnsName": ["x"]},
             "status": {"revision": 3}},
            {"metadata": {"name": "empty", "namespace": "a"}}
        ]);
        let objs: Vec<CertificateObject> =
            serde_json::from_value(list).expect("a list reads whole");
        assert!(matches!(objs[0].spec, Spec::Read(_)));
        let cert = objs[0].object().expect("fits");
        assert_eq!(cert.metadata.name, "good");
        assert_eq!(cert.kind, "Certificate");
        match &objs[1].spec {
            Spec::Unreadable {
                message,
                issuer_group,
            } => {
                assert!(
                    message.starts_with("spec.dnsName: unknown field `dnsName`"),
                    "{message}"
                );
                assert_eq!(issuer_group.as_deref(), Some("example.com"));
            }
            other => panic!("expected unreadable, got {other:?}"),
        }
        assert_eq!(
            objs[1].status.as_ref().and_then(|s| s.revision),
            Some(3),
            "status kept"
        );
        assert_eq!(objs[2].object().expect_err("no spec"), "spec: required");
    }

    #[test]
    fn it_writes_what_it_reads() {
        let v = serde_json::json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
            "metadata": {"name": "ca", "namespace": "a"},
            "spec": {"ca": {"secretName": "root"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KeyPairVerified",
                                        "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        });
        let obj: IssuerObject = serde_json::from_value(v.clone()).expect("reads");
        let back = serde_json::to_value(&obj).expect("writes");
        assert_eq!(back["spec"], v["spec"]);
        assert_eq!(back["kind"], "Issuer");
        assert_eq!(back["status"]["conditions"][0]["reason"], "KeyPairVerified");
        let mut cached = obj.clone();
        cached.keep_metadata_only();
        let trimmed = serde_json::to_value(&cached).expect("writes");
        assert!(trimmed.get("spec").is_none() && trimmed.get("status").is_none());
    }
}
