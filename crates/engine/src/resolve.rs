//! Issuer resolution, once for both runtimes: from what a shell found (the issuer's
//! validated spec, and the CA Secret when the issuer is a CA) to a signer, or to the reason
//! it cannot sign, with cert-manager's issuer condition reasons.
//!
//! A shell looks the issuer up by reference, asks [`IssuerType::ca_secret`] which Secret it
//! needs (if any), reads that Secret, and calls [`check`]. The issuer's own Ready condition
//! and a Certificate's `IssuerNotFound` / `IssuerNotReady` problem both come from here.

use crate::issue::{self, CaIssuer, CaMaterial, Issuer};
use crate::lifecycle::Problem;
use crate::observe::SecretData;
use crate::BackoffPolicy;
use certwright_api::validate::{IssuerKind, IssuerType};
use std::sync::Arc;

/// An issuer that can sign.
#[derive(Clone)]
pub struct Ready {
    pub issuer: Arc<dyn Issuer>,
    pub policy: BackoffPolicy,
    /// Identifies the signing material: a Certificate that failed with an older CA
    /// retries at once when the CA changes.
    pub digest: String,
    /// The issuer's Ready condition: cert-manager's reason and message.
    pub reason: &'static str,
    pub message: &'static str,
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready")
            .field("digest", &self.digest)
            .field("reason", &self.reason)
            .finish()
    }
}

/// What a Certificate's issuerRef resolved to.
#[derive(Clone, Debug)]
pub enum Resolved {
    Ready(Ready),
    /// `IssuerNotFound` or `IssuerNotReady`, naming the issuer and why.
    Unavailable(Problem),
}

/// The issuer as a shell found it.
pub struct Found<'a> {
    /// `Issuer "x" in namespace "y"` or `ClusterIssuer "x"`, for messages.
    pub desc: &'a str,
    /// The validated spec, or why it is invalid.
    pub spec: Result<&'a IssuerType, &'a Problem>,
    /// The namespace of the issuer's Secrets (the cluster resource namespace for a
    /// ClusterIssuer).
    pub secret_ns: &'a str,
    /// The CA Secret, read by the shell when [`IssuerType::ca_secret`] named one:
    /// `Ok(None)` when it does not exist, `Err` with why it could not be read.
    pub ca_secret: Option<Result<Option<&'a SecretData>, &'a Problem>>,
    /// For an ACME issuer, what the shell's ACME service answered (its account checked
    /// and registered); None when the shell runs no ACME service.
    pub acme: Option<&'a Result<Ready, Problem>>,
    /// The value of the test-issuer annotation, when the shell allows test issuers
    /// (see [`crate::testing`]); never set in production.
    pub test_issuer: Option<&'a str>,
    /// Unix seconds.
    pub now: i64,
}

/// How a shell describes an issuer in messages.
pub fn describe(kind: IssuerKind, name: &str, namespace: &str) -> String {
    match kind {
        IssuerKind::ClusterIssuer => format!("ClusterIssuer {name:?}"),
        IssuerKind::Issuer => format!("Issuer {name:?} in namespace {namespace:?}"),
    }
}

/// Checks an issuer: a signer, or the issuer-level problem (reason `ErrGetKeyPair`,
/// `ErrInvalidKeyPair`, `NotSupported`, a validation reason) for its own condition.
pub fn check(found: &Found<'_>) -> Result<Ready, Problem> {
    let kind = found.spec.map_err(Clone::clone)?;
    if let Some(name) = found.test_issuer {
        return crate::testing::issuer(name);
    }
    match kind {
        IssuerType::SelfSigned(urls) => Ok(Ready {
            issuer: Arc::new(issue::SelfSigned {
                extra: url_extensions(urls),
            }),
            policy: BackoffPolicy::LOCAL,
            digest: "selfSigned".into(),
            reason: "IsReady",
            message: "",
        }),
        IssuerType::Ca { secret_name, urls } => {
            let sdesc = format!("{}/{secret_name}", found.secret_ns);
            let secret = match &found.ca_secret {
                Some(Ok(Some(s))) => *s,
                None | Some(Ok(None)) => {
                    return Err(Problem::new(
                        "ErrGetKeyPair",
                        format!("CA secret {sdesc} not found"),
                    ))
                }
                Some(Err(e)) => {
                    return Err(Problem::new(
                        "ErrGetKeyPair",
                        format!("CA secret {sdesc}: {}", e.message),
                    ))
                }
            };
            let m = CaMaterial::from_secret(&sdesc, secret, found.now)
                .map_err(|e| Problem::new(e.reason, e.message))?;
            let digest = format!("ca:{}", m.chain[0].sha256_fingerprint());
            Ok(Ready {
                issuer: Arc::new(CaIssuer {
                    material: m,
                    extra: url_extensions(urls),
                }),
                policy: BackoffPolicy::LOCAL,
                digest,
                reason: "KeyPairVerified",
                message: "Signing CA verified",
            })
        }
        IssuerType::Acme(_) => match found.acme {
            Some(r) => r.clone(),
            None => Err(Problem::new(
                "NotSupported",
                "ACME issuers are not served by this runtime",
            )),
        },
    }
}

fn url_extensions(
    u: &certwright_api::validate::IssuerUrls,
) -> Vec<certwright_pki::cert::Extension> {
    certwright_pki::cert::url_extensions(
        &u.crl_distribution_points,
        &u.ocsp_servers,
        &u.issuing_certificate_urls,
    )
}

/// Resolves a Certificate's (or CertificateRequest's) issuer: `None` when it does not
/// exist.
pub fn resolve(found: Option<&Found<'_>>, desc: &str) -> Resolved {
    let Some(found) = found else {
        return Resolved::Unavailable(Problem::new("IssuerNotFound", format!("{desc} not found")));
    };
    match check(found) {
        Ok(r) => Resolved::Ready(r),
        Err(p) => Resolved::Unavailable(Problem::new(
            "IssuerNotReady",
            format!("{} is not ready: {}: {}", found.desc, p.reason, p.message),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cert_managers() {
        let ss = IssuerType::SelfSigned(Default::default());
        let found = |spec, ca| Found {
            desc: "Issuer \"x\" in namespace \"demo\"",
            spec,
            secret_ns: "demo",
            ca_secret: ca,
            acme: None,
            test_issuer: None,
            now: 1_800_000_000,
        };
        let r = check(&found(Ok(&ss), None)).expect("self-signed");
        assert_eq!((r.reason, r.message), ("IsReady", ""));
        let ca = IssuerType::Ca {
            secret_name: "root".into(),
            urls: Default::default(),
        };
        let e = check(&found(Ok(&ca), Some(Ok(None)))).expect_err("missing");
        assert_eq!(e.reason, "ErrGetKeyPair");
        assert_eq!(e.message, "CA secret demo/root not found");
        let junk = SecretData::default();
        let e = check(&found(Ok(&ca), Some(Ok(Some(&junk))))).expect_err("empty");
        assert_eq!(e.reason, "ErrGetKeyPair");
        match resolve(Some(&found(Ok(&ca), Some(Ok(None)))), "unused") {
            Resolved::Unavailable(p) => {
                assert_eq!(p.reason, "IssuerNotReady");
                assert_eq!(
                    p.message,
                    "Issuer \"x\" in namespace \"demo\" is not ready: ErrGetKeyPair: CA secret demo/root not found"
                );
            }
            Resolved::Ready(_) => panic!("not ready"),
        }
        match resolve(None, "ClusterIssuer \"y\"") {
            Resolved::Unavailable(p) => {
                assert_eq!(p.reason, "IssuerNotFound");
                assert_eq!(p.message, "ClusterIssuer \"y\" not found");
            }
            Resolved::Ready(_) => panic!("not found"),
        }
    }
}
