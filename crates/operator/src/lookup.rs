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
    /// For an ACME issuer: what the ACME service answered, and the account status.
    pub(crate) acme: Option<(
        Result<Ready, Problem>,
        Option<certwright_api::acme::AcmeIssuerStatus>,
    )>,
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
            acme: self.acme.as_ref().map(|(r, _)| r),
            test_issuer: self.test_issuer.as_deref(),
            now,
        })
    }

    /// The issuer's ACME spec, when it is a valid ACME issuer.
    pub(crate) fn acme_spec(&self) -> Option<&certwright_api::acme::AcmeIssuer> {
        match self.spec.as_ref()? {
            Ok(IssuerType::Acme(a)) => Some(a),
            _ => None,
        }
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
    let acme = match &spec {
        Ok(IssuerType::Acme(a)) => Some(acme_check(ctx, a, &desc, &secret_ns).await?),
        _ => None,
    };
    Ok(IssuerFound {
        desc,
        secret_ns,
        spec: Some(spec),
        ca,
        acme,
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
            acme: None,
            test_issuer: None,
        }),
    }
}

/// Checks an ACME issuer with the service: the Secrets it names are read first (the
/// service reads through a callback and must not wait), a generated account key is
/// created as the `privateKeySecretRef` Secret, then the account is looked up or
/// registered in the background.
async fn acme_check(
    ctx: &Context,
    spec: &certwright_api::acme::AcmeIssuer,
    desc: &str,
    secret_ns: &str,
) -> Result<
    (
        Result<Ready, Problem>,
        Option<certwright_api::acme::AcmeIssuerStatus>,
    ),
    Error,
> {
    let mut names = vec![spec.private_key_secret_ref.name.clone()];
    if let Some(b) = &spec.external_account_binding {
        names.push(b.key_secret_ref.name.clone());
    }
    for s in &spec.solvers {
        if let Some(d) = &s.dns01 {
            if let Some(r) = d
                .rfc2136
                .as_ref()
                .and_then(|r| r.tsig_secret_secret_ref.as_ref())
            {
                names.push(r.name.clone());
            }
            if let Some(r) = &d.route53 {
                names.extend(r.access_key_id_secret_ref.iter().map(|s| s.name.clone()));
                names.extend(
                    r.secret_access_key_secret_ref
                        .iter()
                        .map(|s| s.name.clone()),
                );
            }
        }
    }
    names.sort();
    names.dedup();
    let mut secrets = std::collections::HashMap::new();
    for n in names.iter().filter(|n| !n.is_empty()) {
        secrets.insert(n.clone(), read_secret(&ctx.client, secret_ns, n).await?);
    }
    let read = |name: &str| -> Result<Option<SecretData>, Problem> {
        Ok(secrets.get(name).cloned().flatten())
    };
    let now = crate::resources::now();
    // The inputs hold a `dyn Fn`, which must not live across an await.
    let check = ctx.acme.check_issuer(&certwright_acme::IssuerInputs {
        id: desc,
        spec,
        read_secret: &read,
        now,
    });
    let Some(g) = check.generated_key else {
        return Ok((check.result, check.status));
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), secret_ns);
    let mut data = std::collections::BTreeMap::new();
    data.insert(g.key.clone(), k8s_openapi::ByteString(g.pem.0.into_bytes()));
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(g.secret.clone()),
            namespace: Some(secret_ns.to_string()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    match api.create(&kube::api::PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = %format!("{secret_ns}/{}", g.secret), "generated an ACME account key")
        }
        // Another replica or reconcile made it first: use that one.
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let stored = read_secret(&ctx.client, secret_ns, &g.secret).await?;
    let read = |name: &str| -> Result<Option<SecretData>, Problem> {
        if name == g.secret {
            return Ok(stored.clone());
        }
        Ok(secrets.get(name).cloned().flatten())
    };
    let check = ctx.acme.check_issuer(&certwright_acme::IssuerInputs {
        id: desc,
        spec,
        read_secret: &read,
        now,
    });
    Ok((check.result, check.status))
}
