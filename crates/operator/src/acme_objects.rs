//! ACME Orders and Challenges (acme.cert-manager.io/v1), and the Service and Ingress that
//! route HTTP-01 validation to the replicas, all written from the order record the engine
//! keeps in a pending CertificateRequest (its issuer state). The record is the truth; these
//! objects show it to `kubectl get orders,challenges` and `cmctl status certificate`, and
//! carry the HTTP-01 tokens to every replica (see `http01`).
//!
//! Names have cert-manager's shape: the Order `<request>-<hash>`, owned by the request; a
//! Challenge `<order>-<hash>`, owned by the Order; the solver's Service and Ingress
//! `cm-acme-http-solver-<hash>`, owned by the Challenge. When the request ends, the Order
//! keeps its final state and the Challenges, Services and Ingresses go.
//!
//! The Service has no selector: it lives in the Certificate's namespace (an Ingress can
//! only route to a Service of its own namespace) while the pods that answer are the
//! operator's. Its EndpointSlice copies the ready addresses of the operator's own HTTP-01
//! Service (`--acme-http01-service NAMESPACE/NAME`), refreshed at every step of the order.

use crate::context::{Context, Error};
use crate::kinds::{ChallengeObject, Kind, OrderObject, RequestObject, Typed};
use certwright_acme::record::object_name;
use certwright_acme::OrderRecord;
use certwright_api::acme::{ChallengeSpec, Http01Ingress, OrderSpec};
use certwright_api::annotations as ann;
use certwright_api::CertificateRequest;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The port of the solver Services (cert-manager's solver port).
const SOLVER_PORT: i32 = 8089;
const SOLVER_LABEL: &str = "acme.cert-manager.io/http01-solver";
const CHALLENGE_LABEL: &str = "certwright.io/challenge";

/// The Order's name for a request: the same at every step and after it ends.
pub(crate) fn order_name(request: &CertificateRequest) -> String {
    let key = serde_json::json!({
        "request": request.spec.request,
        "issuerRef": request.spec.issuer_ref,
        "duration": request.spec.duration,
    });
    object_name(&request.metadata.name, key.to_string().as_bytes())
}

fn owned_by<K: Resource<DynamicType = ()>>(owner: &K) -> Vec<OwnerReference> {
    vec![OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]
}

fn meta(name: &str, ns: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        owner_references: Some(owners),
        ..Default::default()
    }
}

/// Reads an object, creating it when it does not exist.
async fn ensure<K>(api: &Api<Typed<K>>, new: Typed<K>) -> Result<Typed<K>, Error>
where
    K: Kind<Scope = kube::core::NamespaceResourceScope>,
{
    let name = new.name_any();
    if let Some(found) = api.get_opt(&name).await? {
        return Ok(found);
    }
    match api.create(&PostParams::default(), &new).await {
        Ok(o) => Ok(o),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(api.get(&name).await?),
        Err(e) => Err(e.into()),
    }
}

/// Writes an object's status when it differs from what it has.
async fn set_status<K>(api: &Api<Typed<K>>, obj: &Typed<K>, status: &K::Status) -> Result<(), Error>
where
    K: Kind<Scope = kube::core::NamespaceResourceScope>,
{
    if obj.status.as_ref() == Some(status) {
        return Ok(());
    }
    let patch = crate::resources::StatusPatch { status };
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// How a request ended: the Order's final state and, for a failure, why.
fn ended(request: &CertificateRequest) -> Option<(&'static str, Option<String>)> {
    let ready = request
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))?;
    match ready {
        c if c.status == "True" => Some(("valid", None)),
        c if c.reason == "Failed" => Some(("errored", Some(c.message.clone()))),
        _ => None,
    }
}

/// Brings the Order and Challenges of an ACME request up to date with its record (kept
/// with the request while pending and once issued), and with its end: the Order keeps
/// the final state, the Challenges and their solver resources go.
pub(crate) async fn sync(
    ctx: &Context,
    owner: &RequestObject,
    request: &CertificateRequest,
    issuer: &certwright_api::acme::AcmeIssuer,
) -> Result<(), Error> {
    let ns = owner.namespace().unwrap_or_default();
    let name = order_name(request);
    let orders: Api<OrderObject> = Api::namespaced(ctx.client.clone(), &ns);
    let end = ended(request);
    let record = request
        .metadata
        .annotations
        .get(ann::ISSUER_STATE)
        .and_then(|s| serde_json::from_str(s).ok())
        .map(|v| OrderRecord::from_state(&v))
        .filter(|r| r.url.is_some());
    let order = match record {
        Some(rec) => {
            let order = write_order(&orders, owner, request, &rec, end.as_ref()).await?;
            if end.is_none() {
                return write_challenges(ctx, &order, request, &rec, issuer).await;
            }
            order
        }
        None => {
            let Some((state, reason)) = &end else {
                return Ok(());
            };
            let Some(order) = orders.get_opt(&name).await? else {
                return Ok(());
            };
            let mut status = order.status.clone().unwrap_or_default();
            if status.state.as_deref() != Some(state) {
                status.state = Some(state.to_string());
                if reason.is_some() {
                    status.reason = reason.clone();
                    status.failure_time =
                        request.status.as_ref().and_then(|s| s.failure_time.clone());
                }
                set_status(&orders, &order, &status).await?;
            }
            order
        }
    };
    remove_challenges(ctx, &order).await
}

/// The Order as the record has it (with the final state once the request ended).
async fn write_order(
    orders: &Api<OrderObject>,
    owner: &RequestObject,
    request: &CertificateRequest,
    rec: &OrderRecord,
    end: Option<&(&'static str, Option<String>)>,
) -> Result<OrderObject, Error> {
    let ns = owner.namespace().unwrap_or_default();
    let name = order_name(request);
    let mut spec = OrderSpec {
        request: request.spec.request.clone(),
        issuer_ref: request.spec.issuer_ref.clone(),
        duration: request.spec.duration.clone(),
        ..Default::default()
    };
    // What is ordered: the request's names, as cert-manager's Order says. (The order
    // record's challenges are no substitute: right after the order is created they are
    // placeholders whose names come with their authorizations.)
    let (dns, ips) = request_names(request);
    spec.dns_names = dns;
    spec.ip_addresses = ips;
    if spec.dns_names.is_empty() && spec.ip_addresses.is_empty() {
        for c in rec.challenges.iter().filter(|c| !c.dns_name.is_empty()) {
            let n = match c.wildcard {
                true => format!("*.{}", c.dns_name),
                false => c.dns_name.clone(),
            };
            if !spec.dns_names.contains(&n) {
                spec.dns_names.push(n);
            }
        }
    }
    let order = ensure(
        orders,
        OrderObject::new(meta(&name, &ns, owned_by(owner)), spec),
    )
    .await?;
    let mut status = rec.order_status();
    if let Some((state, reason)) = end {
        status.state = Some(state.to_string());
        if reason.is_some() {
            status.reason = reason.clone();
        }
    }
    set_status(orders, &order, &status).await?;
    Ok(order)
}

/// The Challenges of an order in flight, and (once presented) their solver resources.
async fn write_challenges(
    ctx: &Context,
    order: &OrderObject,
    request: &CertificateRequest,
    rec: &OrderRecord,
    issuer: &certwright_api::acme::AcmeIssuer,
) -> Result<(), Error> {
    let ns = order.namespace().unwrap_or_default();
    let name = order.name_any();
    let challenges: Api<ChallengeObject> = Api::namespaced(ctx.client.clone(), &ns);
    for (spec, mut status) in rec.challenge_objects(issuer, &request.spec.issuer_ref) {
        let cname = object_name(
            &name,
            serde_json::to_string(&spec).unwrap_or_default().as_bytes(),
        );
        let ingress = spec
            .solver
            .http01
            .as_ref()
            .and_then(|h| h.ingress.clone())
            .filter(|_| spec.type_ == "HTTP-01");
        let new = ChallengeObject::new(meta(&cname, &ns, owned_by(order)), spec.clone());
        let ch = ensure(&challenges, new).await?;
        if status.presented {
            if let Some(ing) = &ingress {
                // Marked presented only once traffic can reach the replicas.
                status.presented = false;
                solver_resources(ctx, &ch, &spec, ing).await?;
                status.presented = true;
            }
        }
        set_status(&challenges, &ch, &status).await?;
    }
    Ok(())
}

/// Deletes an order's Challenges and their solver resources.
async fn remove_challenges(ctx: &Context, order: &OrderObject) -> Result<(), Error> {
    let ns = order.namespace().unwrap_or_default();
    let challenges: Api<ChallengeObject> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = order.metadata.uid.clone().unwrap_or_default();
    for ch in challenges.list(&ListParams::default()).await? {
        let mine = ch.owner_references().iter().any(|o| o.uid == uid);
        if !mine {
            continue;
        }
        remove_solver_resources(ctx, &ch).await?;
        match challenges
            .delete(&ch.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn solver_name(challenge: &str) -> String {
    object_name("cm-acme-http-solver", challenge.as_bytes())
}

fn solver_labels(challenge: &ChallengeObject, spec: &ChallengeSpec) -> BTreeMap<String, String> {
    let hash = |s: &str| {
        object_name("", s.as_bytes())
            .trim_start_matches('-')
            .to_string()
    };
    BTreeMap::from([
        (SOLVER_LABEL.to_string(), "true".to_string()),
        (
            "acme.cert-manager.io/http-domain".into(),
            hash(&spec.dns_name),
        ),
        ("acme.cert-manager.io/http-token".into(), hash(&spec.token)),
        (CHALLENGE_LABEL.into(), challenge.name_any()),
    ])
}

/// The Service, EndpointSlice and Ingress (or the path in a named Ingress) that route a
/// challenge's token to the replicas.
async fn solver_resources(
    ctx: &Context,
    ch: &ChallengeObject,
    spec: &ChallengeSpec,
    ing: &Http01Ingress,
) -> Result<(), Error> {
    let ns = ch.namespace().unwrap_or_default();
    let name = solver_name(&ch.name_any());
    let labels = solver_labels(ch, spec);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    if services.get_opt(&name).await?.is_none() {
        let svc = Service {
            metadata: ObjectMeta {
                labels: Some(labels.clone()),
                ..meta(&name, &ns, owned_by(ch))
            },
            spec: Some(ServiceSpec {
                type_: Some(
                    ing.service_type
                        .clone()
                        .unwrap_or_else(|| "NodePort".into()),
                ),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: SOLVER_PORT,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        create_tolerating_conflict(&services, &svc).await?;
    }
    endpoints(ctx, ch, &name, &labels).await?;
    let path = format!("{}{}", certwright_acme::solve::HTTP01_PREFIX, spec.token);
    let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ns);
    match &ing.name {
        Some(existing) => {
            let Some(mut found) = ingresses.get_opt(existing).await? else {
                return Err(Error::Other(format!(
                    "the Ingress {ns}/{existing} named by the HTTP-01 solver does not exist"
                )));
            };
            let rules = found
                .spec
                .get_or_insert_with(Default::default)
                .rules
                .get_or_insert_with(Vec::new);
            if !rules.iter().any(|r| rule_is(r, &spec.dns_name, &path)) {
                rules.push(rule(&spec.dns_name, &path, &name));
                ingresses
                    .replace(existing, &PostParams::default(), &found)
                    .await?;
            }
        }
        None if ingresses.get_opt(&name).await?.is_none() => {
            let template = ing
                .ingress_template
                .as_ref()
                .and_then(|t| t.metadata.clone())
                .unwrap_or_default();
            let mut annotations = template.annotations.clone();
            if let Some(class) = &ing.class {
                annotations.insert("kubernetes.io/ingress.class".into(), class.clone());
            }
            let mut all_labels = template.labels.clone();
            all_labels.extend(labels.clone());
            let new = Ingress {
                metadata: ObjectMeta {
                    labels: Some(all_labels),
                    annotations: Some(annotations).filter(|a| !a.is_empty()),
                    ..meta(&name, &ns, owned_by(ch))
                },
                spec: Some(IngressSpec {
                    ingress_class_name: ing.ingress_class_name.clone(),
                    rules: Some(vec![rule(&spec.dns_name, &path, &name)]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            create_tolerating_conflict(&ingresses, &new).await?;
        }
        None => {}
    }
    Ok(())
}

async fn create_tolerating_conflict<K>(api: &Api<K>, obj: &K) -> Result<(), Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn rule(host: &str, path: &str, service: &str) -> IngressRule {
    IngressRule {
        host: Some(host.into()),
        http: Some(HTTPIngressRuleValue {
            paths: vec![HTTPIngressPath {
                path: Some(path.into()),
                path_type: "ImplementationSpecific".into(),
                backend: IngressBackend {
                    service: Some(IngressServiceBackend {
                        name: service.into(),
                        port: Some(ServiceBackendPort {
                            number: Some(SOLVER_PORT),
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                },
            }],
        }),
    }
}

fn rule_is(r: &IngressRule, host: &str, path: &str) -> bool {
    r.host.as_deref() == Some(host)
        && r.http
            .as_ref()
            .is_some_and(|h| h.paths.iter().any(|p| p.path.as_deref() == Some(path)))
}

/// The solver Service's EndpointSlice: the ready addresses of the operator's own HTTP-01
/// Service, on its port.
async fn endpoints(
    ctx: &Context,
    ch: &ChallengeObject,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let Some((op_ns, op_svc)) = &ctx.config.acme_http01_service else {
        return Ok(());
    };
    let ns = ch.namespace().unwrap_or_default();
    let source: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), op_ns);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={op_svc}"));
    let mut addresses = Vec::new();
    let mut port = None;
    let mut address_type = "IPv4".to_string();
    for s in source.list(&lp).await? {
        address_type = s.address_type.clone();
        port = port.or_else(|| s.ports.iter().flatten().find_map(|p| p.port));
        for e in s.endpoints.iter().flatten() {
            if e.conditions.as_ref().and_then(|c| c.ready) != Some(false) {
                addresses.extend(e.addresses.iter().cloned());
            }
        }
    }
    addresses.sort();
    addresses.dedup();
    let mut slice_labels = labels.clone();
    slice_labels.insert("kubernetes.io/service-name".into(), name.into());
    slice_labels.insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        "certwright.io".into(),
    );
    let desired = EndpointSlice {
        metadata: ObjectMeta {
            labels: Some(slice_labels),
            ..meta(name, &ns, owned_by(ch))
        },
        address_type,
        endpoints: Some(
            addresses
                .iter()
                .map(|a| Endpoint {
                    addresses: vec![a.clone()],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(port.unwrap_or(SOLVER_PORT)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    };
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    match slices.get_opt(name).await? {
        None => create_tolerating_conflict(&slices, &desired).await,
        Some(cur) if cur.endpoints == desired.endpoints && cur.ports == desired.ports => Ok(()),
        Some(cur) => {
            let mut next = desired;
            next.metadata.resource_version = cur.metadata.resource_version;
            slices.replace(name, &PostParams::default(), &next).await?;
            Ok(())
        }
    }
}

/// Removes what [`solver_resources`] made for a challenge (the owner references would
/// too, through the garbage collector; this does not wait for it).
async fn remove_solver_resources(ctx: &Context, ch: &ChallengeObject) -> Result<(), Error> {
    let ns = ch.namespace().unwrap_or_default();
    let name = solver_name(&ch.name_any());
    let dp = DeleteParams::default();
    let gone = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        r => r,
    };
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    gone(services.delete(&name, &dp).await.map(|_| ()))?;
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    gone(slices.delete(&name, &dp).await.map(|_| ()))?;
    let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ns);
    gone(ingresses.delete(&name, &dp).await.map(|_| ()))?;
    // A path added to a named Ingress: taken out again.
    let Ok(obj) = ch.object() else { return Ok(()) };
    let existing = obj
        .spec
        .solver
        .http01
        .as_ref()
        .and_then(|h| h.ingress.as_ref())
        .and_then(|i| i.name.clone());
    if let Some(existing) = existing {
        let path = format!(
            "{}{}",
            certwright_acme::solve::HTTP01_PREFIX,
            obj.spec.token
        );
        if let Some(mut found) = ingresses.get_opt(&existing).await? {
            let rules = found.spec.as_mut().and_then(|s| s.rules.as_mut());
            if let Some(rules) = rules {
                let before = rules.len();
                rules.retain(|r| !rule_is(r, &obj.spec.dns_name, &path));
                if rules.len() != before {
                    ingresses
                        .replace(&existing, &PostParams::default(), &found)
                        .await?;
                }
            }
        }
    }
    Ok(())
}
/// The DNS names and IP addresses of a request's CSR (none when it cannot be read).
fn request_names(request: &CertificateRequest) -> (Vec<String>, Vec<String>) {
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(request.spec.request.trim())
        .ok()
        .and_then(|pem| certwright_pki::pem::decode_all(&pem).ok())
        .and_then(|blocks| {
            blocks
                .into_iter()
                .find(|b| b.label.contains("CERTIFICATE REQUEST"))
        })
        .map(|b| b.der);
    match der.map(|d| certwright_pki::inspect::csr_alt_names(&d)) {
        Some(Ok((dns, ips))) => (dns, ips.iter().map(ToString::to_string).collect()),
        _ => (Vec::new(), Vec::new()),
    }
}
