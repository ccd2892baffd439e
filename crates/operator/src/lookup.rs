//! Reading what the engine needs from the cluster: an issuer with its CA Secret, and
//! the Secrets a Certificate depends on. The engine decides; this module only reads.

use crate::context::{Context, Error};
use crate::kinds::{ClusterIssuers, IssuerKinds, Issuers, Typed};
use crate::resources::secret_data;
use certwright_api::annotations as ann;
use certwright_api::validate::{self, IssuerKind, IssuerType};
use certwright_engine::resolve::{self, Found, Ready};
use certwright_engine::{Problem, Resolved, SecretData};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::Client;

pub(crate) async fn read_secret(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<SecretData>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.as_ref().map(secret_data))
}

/// An issuer as read from the cluster, owned, for the engine's [`Found`].
pub(crate) struct IssuerFound {
    pub(crate) desc: String,
    pub(crate) secret_ns: String,
    /// None: there is no such issuer.
    spec: Option<Result<IssuerType, Problem>>,
    ca: Option<Result<Option<SecretData>, Problem>>,
    test_issuer: Option<String>,
}

impl IssuerFound {
    fn found(&self, now: i64) -> Option<Found<'_>> {
        let spec = self.spec.as_ref()?;
        Some(Found {
            desc: &self.desc,
            spec: spec.as_ref(),
            secret_ns: &self.secret_ns,
            ca_secret: self.ca.as_ref().map(|r| r.as_ref().map(Option::as_ref)),
            acme: None,
            test_issuer: self.test_issuer.as_deref(),
            now,
        })
    }

    /// What a Certificate's or CertificateRequest's issuerRef resolves to.
    pub(crate) fn resolve(&self, now: i64) -> Resolved {
        resolve::resolve(self.found(now).as_ref(), &self.desc)
    }

    /// The issuer's own readiness (for its Ready condition).
    pub(crate) fn check(&self, now: i64) -> Result<Ready, Problem> {
        match self.found(now) {
            Some(f) => resolve::check(&f),
            None => Err(Problem::new("NotFound", format!("{} not found", self.desc))),
        }
    }
}

/// Reads an issuer object's spec, and its CA Secret if it names one.
pub(crate) async fn issuer_object<K: IssuerKinds>(
    ctx: &Context,
    obj: &Typed<K>,
    desc: String,
    secret_ns: String,
) -> Result<IssuerFound, Error> {
    let spec = match obj.object() {
        Err(e) => Err(Problem::new("InvalidIssuer", format!("invalid: {e}"))),
        Ok(i) => validate::issuer(&i).map_err(|e| Problem::new(e[0].reason, validate::join(&e))),
    };
    let ca = match spec.as_ref().ok().and_then(IssuerType::ca_secret) {
        Some(name) => Some(Ok(read_secret(&ctx.client, &secret_ns, name).await?)),
        None => None,
    };
    let test_issuer = obj
        .metadata
        .annotations
        .as_ref()
        .filter(|_| ctx.config.test_issuers)
        .and_then(|a| a.get(ann::TEST_ISSUER))
        .cloned();
    Ok(IssuerFound {
        desc,
        secret_ns,
        spec: Some(spec),
        ca,
        test_issuer,
    })
}

/// Looks up the issuer an issuerRef names, from a resource in namespace `ns`.
pub(crate) async fn issuer(
    ctx: &Context,
    ns: &str,
    name: &str,
    kind: IssuerKind,
) -> Result<IssuerFound, Error> {
    match kind {
        IssuerKind::ClusterIssuer => issuer_of::<ClusterIssuers>(ctx, ns, name).await,
        IssuerKind::Issuer => issuer_of::<Issuers>(ctx, ns, name).await,
    }
}

async fn issuer_of<K: IssuerKinds>(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<IssuerFound, Error> {
    let desc = resolve::describe(K::KIND_REF, name, ns);
    let secret_ns = K::secret_namespace(&ctx.config.cluster_resource_namespace, ns);
    match K::api(&ctx.client, ns).get_opt(name).await? {
        Some(obj) => issuer_object(ctx, &obj, desc, secret_ns).await,
        None => Ok(IssuerFound {
            desc,
            secret_ns,
            spec: None,
            ca: None,
            test_issuer: None,
        }),
    }
}
