//! The pure decision for one Certificate: given its parameters, the Secret it writes, the
//! last request, the failure history and the time, what to do and why, with cert-manager's
//! condition reasons.

use crate::backoff::BackoffPolicy;
use crate::observe::{SecretData, TlsMaterial};
use certwright_api::annotations as ann;
use certwright_api::validate::{
    CertificateParams, IssuanceSpec, RenewBefore, Renewal, RenewalWindow,
};
use certwright_pki::der::rfc3339;
use certwright_pki::inspect::CertInfo;
use certwright_pki::KeyAlgorithm;
use serde::{Deserialize, Serialize};

/// Why a certificate is (re)issued; the names are cert-manager's condition reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    DoesNotExist,
    MissingData,
    InvalidKeyPair,
    InvalidCertificate,
    SecretMismatch,
    IncorrectIssuer,
    IncorrectCertificate,
    RequestChanged,
    Expired,
    Renewing,
    /// `cmctl renew` or `certwright renew` asked for a new certificate.
    ManuallyTriggered,
    /// Its CA issuer now signs with another CA (certwright's; see
    /// [`crate::carotation`]).
    IssuerCAChanged,
}

impl Trigger {
    pub fn reason(self) -> &'static str {
        match self {
            Trigger::DoesNotExist => "DoesNotExist",
            Trigger::MissingData => "MissingData",
            Trigger::InvalidKeyPair => "InvalidKeyPair",
            Trigger::InvalidCertificate => "InvalidCertificate",
            Trigger::SecretMismatch => "SecretMismatch",
            Trigger::IncorrectIssuer => "IncorrectIssuer",
            Trigger::IncorrectCertificate => "IncorrectCertificate",
            Trigger::RequestChanged => "RequestChanged",
            Trigger::Expired => "Expired",
            Trigger::Renewing => "Renewing",
            Trigger::ManuallyTriggered => "ManuallyTriggered",
            Trigger::IssuerCAChanged => "IssuerCAChanged",
        }
    }
}

/// The record of the request that produced the current certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastIssuance {
    pub spec: IssuanceSpec,
    /// SHA-256 fingerprint of the certificate it produced.
    pub certificate_sha256: String,
    /// The Certificate's revision that this issuance made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
}

impl LastIssuance {
    /// The record a Secret carries in its [`certwright_api::annotations::LAST_ISSUANCE`]
    /// annotation, if it is there and readable.
    pub fn from_secret(secret: &SecretData) -> Option<LastIssuance> {
        secret
            .annotations
            .get(ann::LAST_ISSUANCE)
            .and_then(|v| serde_json::from_str(v).ok())
    }
}

/// Failed attempts since the last success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failures {
    pub attempts: u32,
    /// Unix seconds.
    pub last_failure: i64,
    /// Digest of the inputs that failed; new inputs retry at once.
    pub inputs: String,
}

/// The renewBefore time for a certificate valid from `not_before` to `not_after`, as
/// cert-manager computes it: `notAfter - renewBefore`, where a renewBefore that does not
/// fit the actual lifetime falls back to renewing at two thirds of it.
fn renew_before_time(params: &CertificateParams, not_before: i64, not_after: i64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let before = match params.renew_before {
        RenewBefore::Default => lifetime / 3,
        RenewBefore::Duration(d) => d.as_secs() as i64,
        RenewBefore::Percentage(p) => lifetime * i64::from(p) / 100,
    };
    let before = if before >= lifetime {
        lifetime / 3
    } else {
        before
    };
    not_after - before
}

/// When a certificate valid from `not_before` to `not_after` is renewed, as cert-manager
/// computes it: the issuer's suggestion (ACME renewal information) or the renewBefore
/// time, then `spec.renewal`: never (None) when Disabled, and moved into a window when
/// there are windows.
pub fn renewal_time(
    params: &CertificateParams,
    not_before: i64,
    not_after: i64,
    suggested: Option<i64>,
) -> Option<i64> {
    let desired = suggested.unwrap_or_else(|| renew_before_time(params, not_before, not_after));
    match &params.renewal {
        Renewal::Disabled => None,
        Renewal::RenewBefore => Some(desired),
        Renewal::Windows(windows) => Some(in_window(windows, not_before, not_after, desired)),
    }
}

/// cert-manager's window rule: the desired time stands if a window is open then (the last
/// start at or before it is less than a window's duration ago); else renewal moves to the
/// earliest window start after it. Starts are looked for between `not_before` and
/// `not_after`, widened by the window's duration. With no start there, the desired time
/// stands.
fn in_window(windows: &[RenewalWindow], not_before: i64, not_after: i64, desired: i64) -> i64 {
    let mut next: Option<i64> = None;
    for w in windows {
        let d = w.duration.as_secs() as i64;
        let (min, max) = (not_before - d, not_after + d);
        if desired >= min {
            let open = w
                .schedule
                .last_at_or_before(desired.min(max), min)
                .is_some_and(|start| desired < start + d);
            if open {
                return desired;
            }
        }
        if let Some(start) = w.schedule.next_at_or_after(desired.max(min)) {
            if start <= max {
                next = Some(next.map_or(start, |n| n.min(start)));
            }
        }
    }
    next.unwrap_or(desired)
}

/// Digest of the inputs a failure is tied to: the issuance spec and the issuer's signing
/// material. When either changes, a failed Certificate retries at once.
pub fn inputs_digest(spec: &IssuanceSpec, issuer_digest: &str) -> String {
    use aws_lc_rs::digest;
    let spec = serde_json::to_vec(spec).unwrap_or_default();
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&spec);
    ctx.update(issuer_digest.as_bytes());
    ctx.finish()
        .as_ref()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Everything the decision depends on.
pub struct Inputs<'a> {
    /// `namespace/name`, for jitter and messages.
    pub key: &'a str,
    pub cert_name: &'a str,
    pub params: &'a CertificateParams,
    pub secret: Option<&'a SecretData>,
    pub material: Option<&'a TlsMaterial>,
    pub last: Option<&'a LastIssuance>,
    pub failures: &'a Failures,
    /// Digest of the current inputs (spec, issuer), compared with `failures.inputs`.
    pub inputs_digest: &'a str,
    pub backoff: BackoffPolicy,
    /// When the issuer suggests renewing the certificate in the Secret (ACME Renewal
    /// Information); it replaces the spec's renewal time.
    pub suggested_renewal: Option<i64>,
    /// Unix seconds.
    pub now: i64,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The certificate in the Secret is good until `renewal_time`; outputs are rendered and
    /// compared by content.
    UpToDate {
        not_before: i64,
        not_after: i64,
        /// None: renewal is disabled (`spec.renewal.policy: Disabled`).
        renewal_time: Option<i64>,
    },
    /// Issue a new certificate.
    Issue {
        trigger: Trigger,
        message: String,
        /// Keep the existing private key (rotationPolicy Never, and it fits the spec).
        reuse_key: bool,
    },
    /// Issuance is needed but backing off after failures.
    Backoff {
        trigger: Trigger,
        message: String,
        until: i64,
    },
}

fn key_fits(spec: &IssuanceSpec, alg: KeyAlgorithm) -> bool {
    spec.key() == alg
}

/// Compares a certificate's content with the spec, for Secrets with no issuance record
/// (for example written by cert-manager before certwright took over).
fn cert_mismatches(spec: &IssuanceSpec, leaf: &CertInfo) -> Vec<&'static str> {
    let mut out = Vec::new();
    let set = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        v
    };
    if spec.subject.literal.is_none() && leaf.common_name != spec.subject.common_name {
        out.push("spec.commonName");
    }
    // Subject fields beyond the common name (or a literal subject): the subject the
    // request would carry, compared with the certificate's. A certificate with only a
    // common name is compared by it alone (another issuer may encode it differently).
    let has_fields = spec.subject.literal.is_some()
        || spec
            .subject
            .fields
            .as_ref()
            .is_some_and(|f| *f != Default::default());
    let leaf_has_more = leaf.subject.contains(',') || leaf.subject.contains('+');
    if has_fields || leaf_has_more {
        if let Ok(p) = crate::issue::profile(spec) {
            if p.subject.to_der() != leaf.subject_der {
                out.push("spec.subject");
            }
        }
    }
    if set(&spec.dns_names) != set(&leaf.dns_names) {
        out.push("spec.dnsNames");
    }
    let mut a = spec.ip_addresses.clone();
    let mut b = leaf.ip_addresses.clone();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    if a != b {
        out.push("spec.ipAddresses");
    }
    if set(&spec.uris) != set(&leaf.uris) {
        out.push("spec.uris");
    }
    if set(&spec.email_addresses) != set(&leaf.email_addresses) {
        out.push("spec.emailAddresses");
    }
    if spec.is_ca != leaf.is_ca {
        out.push("spec.isCA");
    }
    out
}

/// Decides what to do for one Certificate.
pub fn decide(i: &Inputs<'_>) -> Decision {
    let spec = &i.params.issuance;
    let trigger = |t: Trigger, m: String| (t, m);
    let issue = match (i.secret, i.material) {
        (None, _) | (_, None) => Some(trigger(
            Trigger::DoesNotExist,
            "Issuing certificate as Secret does not exist".into(),
        )),
        (Some(secret), Some(m)) => check_secret(i, secret, m, spec),
    };
    let Some((trig, message)) = issue else {
        // Up to date.
        let leaf = i.material.and_then(|m| m.pair()).map(|(_, c)| &c[0]);
        let (nb, na) = leaf
            .map(|l| (l.not_before, l.not_after))
            .unwrap_or((i.now, i.now));
        return Decision::UpToDate {
            not_before: nb,
            not_after: na,
            renewal_time: renewal_time(i.params, nb, na, i.suggested_renewal),
        };
    };
    if i.failures.attempts > 0 && i.failures.inputs == i.inputs_digest {
        let until =
            i.failures.last_failure + i.backoff.delay(i.failures.attempts, i.key).as_secs() as i64;
        if i.now < until {
            return Decision::Backoff {
                trigger: trig,
                message: format!(
                    "Backing off from issuance after {} failed attempt(s); next attempt at {}",
                    i.failures.attempts,
                    rfc3339(until)
                ),
                until,
            };
        }
    }
    let reuse_key = i.params.rotation_policy == certwright_api::validate::RotationPolicy::Never
        && i.material
            .and_then(|m| m.key.as_ref())
            .and_then(|k| k.as_ref().ok())
            .is_some_and(|k| key_fits(spec, k.algorithm()));
    Decision::Issue {
        trigger: trig,
        message,
        reuse_key,
    }
}

/// The Secret's key and leaf certificate, if both are there, parse, match each other and
/// fit the spec's key algorithm; otherwise why to issue.
fn key_and_leaf<'m>(
    m: &'m TlsMaterial,
    spec: &IssuanceSpec,
) -> Result<&'m CertInfo, (Trigger, String)> {
    let key = match &m.key {
        None => {
            return Err((
                Trigger::MissingData,
                "Issuing certificate as Secret does not contain a private key".into(),
            ))
        }
        Some(Err(e)) => {
            return Err((
                Trigger::InvalidKeyPair,
                format!("Issuing certificate as Secret contains an invalid private key: {e}"),
            ))
        }
        Some(Ok(k)) => k,
    };
    let chain = match &m.chain {
        None => {
            return Err((
                Trigger::MissingData,
                "Issuing certificate as Secret does not contain a certificate".into(),
            ))
        }
        Some(Err(e)) => {
            return Err((
                Trigger::InvalidCertificate,
                format!("Issuing certificate as Secret contains an invalid certificate: {e}"),
            ))
        }
        Some(Ok(c)) => c,
    };
    let leaf = &chain[0];
    if leaf.spki_der != key.spki_der() {
        return Err((
            Trigger::InvalidKeyPair,
            "Issuing certificate as Secret contains a private key that does not match the certificate".into(),
        ));
    }
    if !key_fits(spec, key.algorithm()) {
        return Err((
            Trigger::SecretMismatch,
            format!(
                "Existing private key is not up to date for spec: the Secret holds a {} key, the spec asks for {}",
                key.algorithm(),
                spec.key()
            ),
        ));
    }
    Ok(leaf)
}

/// Whether the Secret was issued by this Certificate's issuer, for this Certificate
/// (cert-manager's issuer and certificate-name annotations); otherwise why to issue.
fn check_owner(
    i: &Inputs<'_>,
    secret: &SecretData,
    spec: &IssuanceSpec,
) -> Option<(Trigger, String)> {
    let a = &secret.annotations;
    if let Some(name) = a.get(ann::ISSUER_NAME) {
        let kind = a
            .get(ann::ISSUER_KIND)
            .map(String::as_str)
            .unwrap_or("Issuer");
        // Empty (cert-manager writes the spec's group, empty when omitted): the default.
        let group = a
            .get(ann::ISSUER_GROUP)
            .map(String::as_str)
            .filter(|g| !g.is_empty())
            .unwrap_or(certwright_api::GROUP);
        if (name.as_str(), kind, group)
            != (
                spec.issuer_name.as_str(),
                spec.issuer_kind.as_str(),
                spec.issuer_group.as_str(),
            )
        {
            return Some((
                Trigger::IncorrectIssuer,
                format!(
                    "Issuing certificate as Secret was previously issued by {kind}.{group}/{name}"
                ),
            ));
        }
    }
    if let Some(owner) = a.get(ann::CERT_NAME) {
        if owner != i.cert_name {
            return Some((
                Trigger::IncorrectCertificate,
                format!(
                    "Issuing certificate as Secret was previously issued for Certificate {owner:?}"
                ),
            ));
        }
    }
    None
}

fn check_secret(
    i: &Inputs<'_>,
    secret: &SecretData,
    m: &TlsMaterial,
    spec: &IssuanceSpec,
) -> Option<(Trigger, String)> {
    let leaf = match key_and_leaf(m, spec) {
        Ok(leaf) => leaf,
        Err(why) => return Some(why),
    };
    if let Some(why) = check_owner(i, secret, spec) {
        return Some(why);
    }
    let changed: Vec<&str> = match i.last {
        Some(last) if last.certificate_sha256 == leaf.sha256_fingerprint() => {
            spec.changed_fields(&last.spec)
        }
        _ => cert_mismatches(spec, leaf),
    };
    if !changed.is_empty() {
        return Some((
            Trigger::RequestChanged,
            format!(
                "Fields on existing CertificateRequest resource not up to date: [{}]",
                changed.join(" ")
            ),
        ));
    }
    if i.now >= leaf.not_after {
        return Some((
            Trigger::Expired,
            format!("Certificate expired on {}", rfc3339(leaf.not_after)),
        ));
    }
    let renewal = renewal_time(
        i.params,
        leaf.not_before,
        leaf.not_after,
        i.suggested_renewal,
    );
    if let Some(renewal) = renewal.filter(|r| i.now >= *r) {
        return Some((
            Trigger::Renewing,
            format!(
                "Renewing certificate as renewal was scheduled at {}",
                rfc3339(renewal)
            ),
        ));
    }
    None
}
