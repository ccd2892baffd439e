//! The cert-manager.io resources as kube sees them, and the small conversions between
//! kube's objects and certwright's types that every controller uses.

use certwright_api::API_VERSION;
use certwright_engine::SecretData;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::EventType;

use crate::context::Context;
use crate::kinds::CertificateObject;

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

pub(crate) fn secret_data(s: &Secret) -> SecretData {
    SecretData {
        type_: s.type_.clone(),
        data: s
            .data
            .as_ref()
            .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
            .unwrap_or_default(),
        annotations: s.metadata.annotations.clone().unwrap_or_default(),
        labels: s.metadata.labels.clone().unwrap_or_default(),
    }
}

/// Records a Kubernetes Event on an object; failing to record one is logged, not fatal.
pub(crate) async fn event<K: kube::Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: &str,
    action: &str,
) {
    let reference = obj.object_ref(&());
    let note: String = note.chars().take(1000).collect();
    let warning = matches!(type_, EventType::Warning);
    if let Err(e) = ctx
        .recorder
        .publish(&reference, warning, reason, action, &note)
        .await
    {
        tracing::warn!(error = %e, "cannot record event");
    }
}

/// Records a problem as a Warning Event on an object (its reason, its message).
pub(crate) async fn warn<K: kube::Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    problem: &certwright_engine::Problem,
    action: &str,
) {
    event(
        ctx,
        obj,
        EventType::Warning,
        &problem.reason,
        &problem.message,
        action,
    )
    .await;
}

/// A merge patch of an object's status only.
#[derive(Debug, serde::Serialize)]
pub(crate) struct StatusPatch<T> {
    pub status: T,
}

/// A merge patch of an object's annotations only: `None` removes one.
#[derive(Debug, serde::Serialize)]
pub(crate) struct AnnotationsPatch {
    metadata: Annotations,
}

#[derive(Debug, serde::Serialize)]
struct Annotations {
    annotations: std::collections::BTreeMap<String, Option<String>>,
}

impl AnnotationsPatch {
    pub(crate) fn new(annotations: std::collections::BTreeMap<String, Option<String>>) -> Self {
        AnnotationsPatch {
            metadata: Annotations { annotations },
        }
    }
}

/// The owner reference that makes an object go with its Certificate (deleted with it by
/// the garbage collector).
pub(crate) fn owned_by_certificate(
    cert: &CertificateObject,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    use kube::ResourceExt;
    vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: API_VERSION.into(),
            kind: "Certificate".into(),
            name: cert.name_any(),
            uid: cert.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    ]
}
