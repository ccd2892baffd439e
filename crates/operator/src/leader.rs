//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several replicas
//! exactly one reconciles. A replica takes the Lease when it is free or expired, renews it
//! every `renew` interval, and steps down (the process stops reconciling) when it cannot
//! renew before the Lease would expire. Writes use the Lease's resourceVersion, so two
//! replicas can never both win the same term.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::Client;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    pub renew: Duration,
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn expired(spec: &LeaseSpec, cfg: &LeaseConfig) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else {
        return true;
    };
    let secs = spec
        .lease_duration_seconds
        .map(i64::from)
        .unwrap_or(cfg.duration.as_secs() as i64);
    let deadline = renewed.0.as_second() + secs;
    k8s_openapi::jiff::Timestamp::now().as_second() > deadline
}

/// One attempt to take or keep the Lease. Ok(true): we hold it now.
pub async fn try_acquire(client: &Client, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let mine = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs() as i32),
        acquire_time: Some(acquired.unwrap_or_else(now_micro)),
        renew_time: Some(now_micro()),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    match api.get_opt(&cfg.name).await? {
        None => {
            let mut lease = Lease {
                spec: Some(mine(0, None)),
                ..Default::default()
            };
            lease.metadata.name = Some(cfg.name.clone());
            lease.metadata.namespace = Some(cfg.namespace.clone());
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let held_by_me = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
            if !held_by_me && !expired(&spec, cfg) {
                return Ok(false);
            }
            let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!held_by_me);
            let acquired = if held_by_me {
                spec.acquire_time.clone()
            } else {
                None
            };
            lease.spec = Some(mine(transitions, acquired));
            // replace carries the resourceVersion read: a concurrent winner makes this 409.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica holds the Lease.
pub async fn acquire(client: &Client, cfg: &LeaseConfig) {
    loop {
        match try_acquire(client, cfg).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election: cannot reach the Lease"),
        }
        tokio::time::sleep(cfg.renew).await;
    }
}

/// Renews the Lease until a renewal fails for longer than the Lease lasts; returns then
/// (leadership is lost and the caller must stop reconciling).
pub async fn hold(client: Client, cfg: LeaseConfig) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew).await;
        match try_acquire(&client, &cfg).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::warn!("leader election: the Lease was taken over");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "leader election: renewal failed"),
        }
        if last_ok.elapsed() > cfg.duration {
            tracing::warn!("leader election: could not renew in time");
            return;
        }
    }
}

/// Gives the Lease up on a clean shutdown, so a standby replica takes over at once.
pub async fn release(client: &Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await {
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() == Some(cfg.identity.as_str()) {
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
        }
    }
}
