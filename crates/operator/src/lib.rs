//! The operator runtime: certwright in a Kubernetes cluster. kube-rs controllers watch the
//! `cert-manager.io/v1` resources and share one context:
//! - `certificates`: asks the engine what to do with each Certificate, writes its Secret
//!   whole, records the issuance as a CertificateRequest, patches status; renewal is
//!   scheduled from the renewal time, not polled;
//! - `issuers`: Issuer and ClusterIssuer Ready conditions (can this issuer sign?);
//! - `requests`: signs CertificateRequests that others create.
//!
//! Only the Secrets certwright manages (label `controller.cert-manager.io/fao=true`) are
//! watched, so memory does not grow with unrelated Secrets; others (CA key pairs,
//! keystore passwords) are read one by one when needed. `watches` says what wakes each
//! controller, `context` what they share and how failures are retried, `leader` holds the
//! Lease that lets one replica reconcile, `observe` serves metrics and health. This file
//! only wires them together.

mod acme_objects;
mod annotated;
mod cainject;
mod certificates;
mod context;
mod events;
mod http01;
mod issuers;
pub mod kinds;
pub mod leader;
mod lookup;
pub mod observe;
mod requests;
mod resources;
mod rollouts;
mod routes;
mod shim;
mod watches;
pub mod webhook;

pub use certwright_api::annotations::LAST_ISSUANCE;
pub use context::{Capabilities, Config, Context, Error, RolloutConfig};

use context::{error_policy, tracked};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Runs the controllers until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let metrics = Arc::new(observe::Metrics::default());
    if let Some(addr) = config.metrics_address {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Other(format!("metrics address {addr}: {e}")))?;
        tracing::info!(address = %addr, "serving metrics and health");
        tokio::spawn(observe::serve(listener, metrics.clone()));
    }
    client.apiserver_version().await?;
    if let Some(w) = &config.webhook {
        webhook::start(&client, w.clone()).await?;
    }
    let acme = acme_service(&client, &config, &metrics).await?;
    metrics.ready.store(true, Ordering::Relaxed);
    let lost = Arc::new(AtomicBool::new(false));
    let lease = config.leader_election.clone();
    let Some(stopped) = leadership(&client, lease.as_ref(), shutdown, lost.clone()).await else {
        tracing::info!("operator stopped before becoming leader");
        return Ok(());
    };
    let recorder = events::Recorder::new(client.clone(), "certwright", &config.instance);
    let ctx = Arc::new(Context {
        client: client.clone(),
        acme,
        config,
        waiting: Default::default(),
        metrics,
        recorder,
        issuer_labels: Mutex::default(),
        ca_index: Default::default(),
        pending_requests: Default::default(),
        own_writes: Default::default(),
        retries: Default::default(),
        rollouts: Default::default(),
    });
    tracing::info!("operator starting");
    controllers(&ctx, stopped).await;
    if lost.load(Ordering::Relaxed) {
        return Err(Error::Other(
            "leadership lost; stopping so that one replica reconciles".into(),
        ));
    }
    if let Some(cfg) = &lease {
        leader::release(&client, cfg).await;
    }
    tracing::info!("operator stopped");
    Ok(())
}

/// The ACME service, and what every replica does for it whether it leads or not: follow
/// the Challenges and serve their HTTP-01 tokens.
async fn acme_service(
    client: &Client,
    config: &Config,
    metrics: &Arc<observe::Metrics>,
) -> Result<certwright_acme::Service, Error> {
    let watch = http01::Watch::new();
    let mut acme_config = config.acme.clone();
    acme_config.http01_published = Some(watch.published());
    // Orders report progress by being asked again: a Pending Certificate is looked at
    // again within seconds (its next check), so the service needs no wake-ups here.
    let acme = certwright_acme::Service::new(
        tokio::runtime::Handle::current(),
        acme_config,
        Arc::new(|_| {}),
        Some({
            let metrics = metrics.clone();
            Arc::new(move |r: &certwright_acme::http::RequestRecord| metrics.acme_request(r))
        }),
    );
    if let Some(addr) = config.acme_http01_address {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Other(format!("ACME HTTP-01 address {addr}: {e}")))?;
        tracing::info!(address = %addr, "serving ACME HTTP-01 tokens");
        tokio::spawn(certwright_acme::solve::serve_http01(
            listener,
            acme.tokens(),
        ));
    }
    tokio::spawn(watch.run(client.clone(), config.namespace.clone(), acme.tokens()));
    Ok(acme)
}

/// Resolves when the controllers must stop: at `shutdown`, or when the Lease is lost
/// (`lost` is then set). With leader election, waits for leadership first (None: shutdown
/// came before it).
async fn leadership(
    client: &Client,
    lease: Option<&leader::LeaseConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    lost: Arc<AtomicBool>,
) -> Option<Shared<BoxFuture<'static, ()>>> {
    let mut shutdown = Box::pin(shutdown);
    let stop: BoxFuture<'static, ()> = match lease {
        None => Box::pin(shutdown),
        Some(cfg) => {
            tracing::info!(lease = %format!("{}/{}", cfg.namespace, cfg.name), identity = %cfg.identity, "waiting for leadership");
            tokio::select! {
                _ = leader::acquire(client, cfg) => {}
                _ = &mut shutdown => return None,
            }
            tracing::info!(identity = %cfg.identity, "became leader");
            let holding = leader::hold(client.clone(), cfg.clone());
            Box::pin(async move {
                tokio::select! {
                    _ = shutdown => {}
                    _ = holding => lost.store(true, Ordering::Relaxed),
                }
            })
        }
    };
    // The controllers want a Sync shutdown trigger: relay the stop through a channel.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(());
    });
    let stopped: BoxFuture<'static, ()> = Box::pin(async move {
        let _ = stop_rx.await;
    });
    Some(stopped.shared())
}

/// One API handle per watched resource: the namespace's, or all namespaces'.
fn api<K: kinds::Kind<Scope = kube::core::NamespaceResourceScope>>(
    client: &Client,
    namespace: Option<&str>,
) -> Api<kinds::Typed<K>> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controllers until `stopped` resolves.
async fn controllers(ctx: &Arc<Context>, stopped: Shared<BoxFuture<'static, ()>>) {
    let client = &ctx.client;
    let ns = ctx.config.namespace.as_deref();
    let secrets: Api<Secret> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let issuers_api = api::<kinds::Issuers>(client, ns);
    let certificates =
        watches::certificates_controller(ctx, api(client, ns), secrets.clone(), &issuers_api);
    let certificates_done = drive(certificates, certificates::reconcile, ctx, &stopped);
    let issuers = issuers::controller(issuers_api.clone(), secrets.clone(), ctx.clone());
    let issuers_done = drive(issuers, issuers::reconcile, ctx, &stopped);
    // Watching one namespace, ClusterIssuers are not watched (see `watches`).
    let cluster_issuers_done = async {
        if ns.is_none() {
            let all = Api::<kinds::ClusterIssuerObject>::all(client.clone());
            let controller = issuers::controller(all, secrets.clone(), ctx.clone());
            drive(controller, issuers::reconcile, ctx, &stopped).await;
        }
    };
    let requests = watches::requests_controller(ctx, api(client, ns), &issuers_api);
    let requests_done = drive(requests, requests::reconcile, ctx, &stopped);
    let caps = ctx.config.capabilities;
    // One watch of Secret changes for the Routes, CA injection and rollout controllers. CA
    // injection targets are cluster-wide, so it watches every namespace when that is on.
    let feed_ns = if caps.cainjector { None } else { ns };
    let feed = annotated::SecretFeed::new(client, feed_ns);
    // ConfigMap changes matter to rollouts only.
    let configmap_feed = annotated::Feed::<k8s_openapi::api::core::v1::ConfigMap>::new(client, ns);
    let route_secrets = caps.routes.then(|| feed.subscribe());
    // cert-utils' annotations on Secrets and ConfigMaps no Certificate writes.
    let keystores_done = async {
        if caps.keystores {
            futures::join!(
                drive(
                    annotated::secrets_controller(client, ns),
                    annotated::reconcile_secret,
                    ctx,
                    &stopped,
                ),
                drive(
                    annotated::configmaps_controller(client, ns),
                    annotated::reconcile_configmap,
                    ctx,
                    &stopped,
                )
            );
        }
    };
    // Routes exist on OpenShift (and where their CRD is installed); elsewhere nothing is
    // watched for them.
    let routes_done = async {
        let Some(secret_changes) = route_secrets else {
            return;
        };
        if routes_served(client).await {
            drive(
                routes::controller(client, ns, secret_changes),
                routes::reconcile,
                ctx,
                &stopped,
            )
            .await;
        } else {
            tracing::info!("route.openshift.io/v1 is not served: Routes are not watched");
        }
    };
    futures::join!(
        certificates_done,
        issuers_done,
        cluster_issuers_done,
        requests_done,
        keystores_done,
        routes_done,
        async {
            if caps.shims {
                drive(shim::controller(client, ns), shim::reconcile, ctx, &stopped).await;
            }
        },
        async {
            if caps.cainjector {
                cainject::run(ctx, &feed, &stopped).await;
            }
        },
        async {
            if caps.reloader {
                rollouts::run(ctx, &feed, &configmap_feed, &stopped).await;
            }
        },
        // Last: the CA injection and rollout controllers above subscribe on their first
        // poll.
        async {
            if caps.cainjector || caps.routes || caps.reloader {
                tokio::select! {
                    _ = feed.run() => {}
                    _ = stopped.clone() => {}
                }
            }
        },
        async {
            if caps.reloader {
                tokio::select! {
                    _ = configmap_feed.run() => {}
                    _ = stopped.clone() => {}
                }
            }
        }
    );
}

/// Whether the API server serves route.openshift.io/v1 Routes.
async fn routes_served(client: &Client) -> bool {
    match client
        .list_api_group_resources("route.openshift.io/v1")
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.name == "routes"),
        Err(e) => {
            tracing::debug!(error = %e, "route.openshift.io/v1 discovery");
            false
        }
    }
}

/// Runs a controller until `stopped`, with at most `--max-concurrent-reconciles` in
/// flight, each reconcile tracked for the backoff and failures handled by
/// [`error_policy`].
pub(crate) async fn drive<R, F, Fut>(
    controller: kube::runtime::Controller<R>,
    reconcile: F,
    ctx: &Arc<Context>,
    stopped: &Shared<BoxFuture<'static, ()>>,
) where
    R: kinds::Watched,
    F: Fn(Arc<R>, Arc<Context>) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, Error>>
        + Send
        + 'static,
{
    controller
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(ctx.config.max_concurrent_reconciles.max(1)),
        )
        .graceful_shutdown_on(stopped.clone())
        .run(
            move |o, c| tracked(reconcile, o, c),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()))
        .await
}
