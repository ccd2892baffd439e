//! Admission webhooks for the cert-manager.io resources, served by every replica (the API
//! server calls whichever pod its Service picks, leader or not):
//! - `/mutate`: a CertificateRequest being created gets `spec.username`, `uid`, `groups`
//!   and `extra` from whoever asks the API server, whatever the request said, as with
//!   cert-manager (approvers and `kubectl get` then see who asked);
//! - `/validate`: Certificates, Issuers, ClusterIssuers and CertificateRequests are checked
//!   by `certwright_api::validate::admission`, the rules and messages of the status
//!   reasons, so a bad manifest is refused at apply time instead of failing later.
//!
//! The webhook names itself `webhook.cert-manager.io` in the configurations (see
//! deploy/webhook.yaml): `cmctl check api` and install scripts look for that name in the
//! API server's refusal. TLS comes from `tls`: a CA kept in a Secret, a short-lived serving
//! certificate per replica, and the CA injected into the two webhook configurations.

mod tls;

use crate::Error;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use kube::Client;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub use tls::WebhookConfig;

/// Binds the webhook's address and starts serving it, and keeps its TLS (CA Secret,
/// serving certificate, injected CA bundle) current. Fails only if the address cannot be
/// bound; TLS problems are logged and retried.
pub async fn start(client: &Client, config: WebhookConfig) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(config.address)
        .await
        .map_err(|e| Error::Other(format!("webhook address {}: {e}", config.address)))?;
    let resolver = Arc::new(tls::Resolver::default());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("webhook TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    tracing::info!(address = %config.address, configuration = %config.configuration, "serving admission webhooks");
    tokio::spawn(tls::maintain(client.clone(), config, resolver));
    tokio::spawn(serve(
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
    ));
    Ok(())
}

/// The largest AdmissionReview read (the API server's own request limit is 3 MiB).
const MAX_BODY: usize = 4 << 20;

async fn serve(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor) {
    loop {
        let sock = crate::observe::accept(&listener, "webhook").await;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "webhook: TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async {
                Ok::<_, std::convert::Infallible>(answer(req).await)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "webhook: connection ended with an error");
            }
        });
    }
}

async fn answer(req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if req.method() != hyper::Method::POST || !matches!(path.as_str(), "/mutate" | "/validate") {
        return plain(StatusCode::NOT_FOUND, "not found\n".into());
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("reading the body: {e}\n")),
    };
    match review(&path, &body) {
        Ok(v) => {
            let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => plain(StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp
}

/// Answers one AdmissionReview (`path`: `/mutate` or `/validate`).
fn review(path: &str, body: &[u8]) -> Result<Value, String> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    let req: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|e| format!("not an AdmissionReview request: {e}"))?;
    let resp = if path == "/mutate" {
        mutate(&req)
    } else {
        validate(&req)
    };
    serde_json::to_value(resp.into_review()).map_err(|e| e.to_string())
}

/// A CertificateRequest being created records its requester.
fn mutate(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let allow = AdmissionResponse::from(req);
    if req.kind.kind != "CertificateRequest" || req.operation != Operation::Create {
        return allow;
    }
    let object = req
        .object
        .as_ref()
        .and_then(|o| serde_json::to_value(o).ok())
        .unwrap_or(Value::Null);
    let ops = requester_patch(&object, &req.user_info);
    match serde_json::from_value::<json_patch::Patch>(Value::Array(ops)) {
        Ok(patch) => match allow.clone().with_patch(patch) {
            Ok(r) => r,
            Err(e) => AdmissionResponse::from(req).deny(format!("webhook: {e}")),
        },
        Err(e) => allow.deny(format!("webhook: {e}")),
    }
}

/// JSON Patch operations that set the requester fields from `user`, replacing what the
/// request said and removing groups or extra the requester does not have.
fn requester_patch(
    object: &Value,
    user: &k8s_openapi::api::authentication::v1::UserInfo,
) -> Vec<Value> {
    let spec = object.get("spec");
    let mut ops = Vec::new();
    if spec.is_none_or(Value::is_null) {
        ops.push(json!({"op": "add", "path": "/spec", "value": {}}));
    }
    let has = |field: &str| spec.and_then(|s| s.get(field)).is_some();
    ops.push(json!({"op": "add", "path": "/spec/username", "value": user.username.clone().unwrap_or_default()}));
    ops.push(
        json!({"op": "add", "path": "/spec/uid", "value": user.uid.clone().unwrap_or_default()}),
    );
    let groups = user.groups.clone().unwrap_or_default();
    if !groups.is_empty() {
        ops.push(json!({"op": "add", "path": "/spec/groups", "value": groups}));
    } else if has("groups") {
        ops.push(json!({"op": "remove", "path": "/spec/groups"}));
    }
    let extra = user.extra.clone().unwrap_or_default();
    if !extra.is_empty() {
        ops.push(json!({"op": "add", "path": "/spec/extra", "value": extra}));
    } else if has("extra") {
        ops.push(json!({"op": "remove", "path": "/spec/extra"}));
    }
    ops
}

/// Creates and updates are checked; deletes and connects pass.
fn validate(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    use certwright_api::validate::admission;
    let allow = AdmissionResponse::from(req);
    let op = match req.operation {
        Operation::Create => admission::Operation::Create,
        Operation::Update => admission::Operation::Update,
        _ => return allow,
    };
    let as_value = |o: &Option<DynamicObject>| {
        o.as_ref()
            .and_then(|o| serde_json::to_value(o).ok())
            .unwrap_or(Value::Null)
    };
    let mut object = as_value(&req.object);
    // A namespaced object's namespace comes from the request path.
    if let (Some(ns), Some(meta)) = (
        req.namespace.as_deref(),
        object.get_mut("metadata").and_then(Value::as_object_mut),
    ) {
        meta.entry("namespace")
            .or_insert_with(|| Value::String(ns.to_string()));
    }
    let old = req.old_object.as_ref().map(|_| as_value(&req.old_object));
    match admission::check(op, object, old.as_ref()) {
        Ok(()) => allow,
        Err(message) => {
            tracing::debug!(kind = %req.kind.kind, namespace = req.namespace.as_deref().unwrap_or(""), name = %req.name, %message, "webhook: refused");
            allow.deny(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review_body(kind: &str, operation: &str, object: Value) -> Vec<u8> {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "r-1",
                "kind": {"group": "cert-manager.io", "version": "v1", "kind": kind},
                "resource": {"group": "cert-manager.io", "version": "v1", "resource": "x"},
                "namespace": "demo",
                "operation": operation,
                "userInfo": {"username": "alice", "uid": "u-1", "groups": ["dev", "system:authenticated"],
                             "extra": {"scopes": ["a"]}},
                "object": object,
                "dryRun": true
            }
        })
        .to_string()
        .into_bytes()
    }

    /// The patch as the API server decodes a Go []byte: base64, or an array of bytes
    /// (which is how kube's AdmissionResponse serializes it).
    fn patch_of(v: &Value) -> Vec<Value> {
        use base64::Engine;
        let p = &v["response"]["patch"];
        let raw: Vec<u8> = match p.as_str() {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64"),
            None => serde_json::from_value(p.clone()).expect("patch bytes"),
        };
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        serde_json::from_slice(&raw).expect("json")
    }

    #[test]
    fn a_new_request_records_who_asked_whatever_it_said() {
        let cr = json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
                        "metadata": {"generateName": "x-"},
                        "spec": {"request": "", "issuerRef": {"name": "i"}, "username": "mallory",
                                 "groups": ["system:masters"]}});
        let v =
            review("/mutate", &review_body("CertificateRequest", "CREATE", cr)).expect("review");
        assert_eq!(v["response"]["allowed"], true, "{v}");
        assert_eq!(v["response"]["uid"], "r-1");
        let ops = patch_of(&v);
        let value = |path: &str| {
            ops.iter()
                .find(|o| o["path"] == path)
                .map(|o| o["value"].clone())
        };
        assert_eq!(value("/spec/username"), Some(json!("alice")));
        assert_eq!(value("/spec/uid"), Some(json!("u-1")));
        assert_eq!(
            value("/spec/groups"),
            Some(json!(["dev", "system:authenticated"]))
        );
        assert_eq!(value("/spec/extra"), Some(json!({"scopes": ["a"]})));
    }

    #[test]
    fn validation_refuses_with_the_status_message_and_passes_the_rest() {
        let bad = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                         "metadata": {"name": "c"},
                         "spec": {"secretName": "s", "issuerRef": {"name": "i"}, "dnsNames": ["x"],
                                  "duration": "10m"}});
        let v = review("/validate", &review_body("Certificate", "CREATE", bad)).expect("review");
        assert_eq!(v["response"]["allowed"], false, "{v}");
        let msg = v["response"]["status"]["message"]
            .as_str()
            .expect("message");
        assert!(
            msg.contains("spec.duration") && msg.contains("minimum of 1h"),
            "{msg}"
        );
        let ok = json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
                        "metadata": {"name": "i"}, "spec": {"selfSigned": {}}});
        let v = review("/validate", &review_body("Issuer", "CREATE", ok)).expect("review");
        assert_eq!(v["response"]["allowed"], true, "{v}");
        assert!(review("/validate", b"{}").is_err());
    }
}
