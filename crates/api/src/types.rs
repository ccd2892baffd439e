//! `cert-manager.io/v1` resource types with cert-manager's field names, plus the core
//! `v1` Secret and certwright's own local-runtime kinds.
//!
//! Spec structs reject unknown fields so that a typo (`dnsName`) is an error naming the
//! field rather than a silently ignored line.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const GROUP: &str = "cert-manager.io";
pub const API_VERSION: &str = "cert-manager.io/v1";
pub const LEGACY_API_VERSION: &str = "certmanager.k8s.io/v1alpha1";
pub const CERTWRIGHT_API_VERSION: &str = "certwright.io/v1alpha1";
/// OpenShift's Routes.
pub const ROUTE_API_VERSION: &str = "route.openshift.io/v1";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// A reference to an Issuer or ClusterIssuer.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerRef {
    /// Name of the issuer that signs this certificate.
    #[serde(default)]
    pub name: String,
    /// Issuer (in the same namespace; the default) or ClusterIssuer. An external issuer group
    /// may define its own kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// API group of the issuer: cert-manager.io (the default) for Issuer and ClusterIssuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl IssuerRef {
    /// `Issuer` unless `ClusterIssuer` is named (cert-manager's default).
    pub fn kind_or_default(&self) -> &str {
        match self.kind.as_deref() {
            None | Some("") => "Issuer",
            Some(k) => k,
        }
    }

    pub fn group_or_default(&self) -> &str {
        match self.group.as_deref() {
            None | Some("") => GROUP,
            Some(g) => g,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct X509Subject {
    /// Organization (O) attributes of the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
    /// Country (C) attributes of the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Organizational unit (OU) attributes of the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizational_units: Vec<String>,
    /// Locality or city (L) attributes of the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub localities: Vec<String>,
    /// State or province (ST) attributes of the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provinces: Vec<String>,
    /// Street address attributes of the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub street_addresses: Vec<String>,
    /// Postal code attributes of the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub postal_codes: Vec<String>,
    /// The subject serialNumber attribute (not the certificate serial number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretTemplate {
    /// Annotations copied onto the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Labels copied onto the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A key in a Secret.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret, in the namespace of the resource that refers to it (the cluster
    /// resource namespace for a ClusterIssuer).
    #[serde(default)]
    pub name: String,
    /// Key of the entry in the Secret; each field that refers to a Secret says its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JksKeystore {
    /// Write keystore.jks (key and chain under the alias) and truststore.jks (ca.crt) into the
    /// Secret.
    #[serde(default)]
    pub create: bool,
    /// The Secret entry holding the keystore password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// The keystore password, written inline (instead of passwordSecretRef).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Alias of the private key entry (default certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pkcs12Keystore {
    /// Write keystore.p12 (key and chain) and truststore.p12 (ca.crt) into the Secret.
    #[serde(default)]
    pub create: bool,
    /// The Secret entry holding the keystore password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// The keystore password, written inline (instead of passwordSecretRef).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Encryption of the PKCS#12 files: LegacyRC2 (the default), LegacyDES or Modern2023
    /// (AES-256 and PBKDF2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Keystores {
    /// A Java KeyStore and truststore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jks: Option<JksKeystore>,
    /// A PKCS#12 keystore and truststore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs12: Option<Pkcs12Keystore>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivateKeySpec {
    /// Always (the default): a new private key for each issuance; Never: keep the key in the
    /// Secret when it fits the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy: Option<String>,
    /// PEM encoding of tls.key: PKCS1 (the default; SEC 1 for ECDSA) or PKCS8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// RSA (the default), ECDSA or Ed25519.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Key size: 2048 (default), 3072, 4096 or 8192 for RSA; 256 (default), 384 or 521 for
    /// ECDSA; ignored for Ed25519.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdditionalOutputFormat {
    /// DER (the private key as key.der) or CombinedPEM (key and chain as tls-combined.pem).
    #[serde(rename = "type")]
    pub format: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameConstraintItem {
    /// DNS domains (a domain and its subdomains).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_domains: Vec<String>,
    /// IP ranges in CIDR notation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_ranges: Vec<String>,
    /// Email addresses, or domains of email addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_addresses: Vec<String>,
    /// Domains of URIs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uri_domains: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameConstraintsSpec {
    /// Mark the extension critical.
    #[serde(default)]
    pub critical: bool,
    /// Names the CA may sign for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permitted: Option<NameConstraintItem>,
    /// Names the CA may not sign for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<NameConstraintItem>,
}

/// How the certificate is renewed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateRenewal {
    /// `RenewBefore` (renew at the time that renewBefore or renewBeforePercentage gives,
    /// moved into a window when windows are set) or `Disabled` (never renew; the
    /// certificate is still issued when missing, changed or expired).
    #[serde(default)]
    pub policy: String,
    /// When renewal may start: the renewal time is kept when it falls inside a window,
    /// else moved to the start of the next window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<RenewalWindow>,
}

/// A recurring period in which renewal may start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewalWindow {
    /// IANA time zone of the cron expression (for example Europe/Amsterdam); UTC if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// How long each window stays open after it starts (a Go duration, such as 2h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_duration: Option<String>,
    /// When each window starts: five cron fields (minute hour day-of-month month
    /// day-of-week) or @yearly, @monthly, @weekly, @daily, @hourly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
}

/// `Certificate.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateSpec {
    /// Attributes of the subject name besides the common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<X509Subject>,
    /// The whole subject as an RFC 4514 string (such as CN=web,O=Acme), written as given;
    /// replaces commonName and subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal_subject: Option<String>,
    /// Common name (CN) of the subject, at most 64 characters. TLS clients ignore it when the
    /// certificate has SANs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Requested lifetime (a Go duration, at least 1h; default 2160h, 90 days). An issuer may
    /// give another; a CA issuer never exceeds its own notAfter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// How long before expiry to renew (a Go duration, at least 5m, less than the lifetime).
    /// Default: at two thirds of the lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
    /// How long before expiry to renew, as a percentage of the lifetime (1 to 99). Exclusive
    /// with renewBefore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before_percentage: Option<i64>,
    /// Whether renewal is scheduled, and the windows it may start in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal: Option<CertificateRenewal>,
    /// DNS names (SANs); wildcards as *.example.com.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// IP address SANs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// URI SANs (such as SPIFFE IDs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<String>,
    /// Email address SANs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_addresses: Vec<String>,
    /// otherName SANs (not supported by certwright: refused with a reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_names: Vec<serde_json::Value>,
    /// Name of the Secret (in this namespace) that holds tls.crt, tls.key and ca.crt, and the
    /// keystores asked for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_name: String,
    /// Labels and annotations for the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
    /// Keystores to write into the Secret as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keystores: Option<Keystores>,
    /// The issuer that signs the certificate.
    #[serde(default)]
    pub issuer_ref: IssuerRef,
    /// Make a CA certificate (basicConstraints CA:TRUE, with cert sign usage).
    #[serde(default, rename = "isCA", skip_serializing_if = "std::ops::Not::not")]
    pub is_ca: bool,
    /// Key usages and extended key usages, by cert-manager's names (such as server auth, client
    /// auth, digital signature, key encipherment). Default: digital signature and key
    /// encipherment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
    /// The private key: algorithm, size, encoding and rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKeySpec>,
    /// Signature algorithm of the issued certificate (such as SHA256WithRSA, ECDSAWithSHA384,
    /// PureEd25519); default from the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_algorithm: Option<String>,
    /// Put the usages into the request's extensions (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_usages_in_request: Option<bool>,
    /// How many CertificateRequests of this Certificate to keep (at least 1; default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i64>,
    /// More files in the Secret: DER and CombinedPEM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_output_formats: Vec<AdditionalOutputFormat>,
    /// Name constraints for a CA certificate (isCA must be true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_constraints: Option<NameConstraintsSpec>,
}

/// A status condition, as Kubernetes and cert-manager write them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: Ready or Issuing for a Certificate; Ready, Approved, Denied or
    /// InvalidRequest for a CertificateRequest; Ready for an issuer.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// Why, in one CamelCase word.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Why, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The metadata.generation the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// `Certificate.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// Ready (the Secret holds a valid certificate matching the spec) and Issuing (an issuance
    /// is in progress).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the last issuance failed (unset after a success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<String>,
    /// notBefore of the certificate in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// notAfter of the certificate in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// When the certificate will be renewed (unset when renewal is disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<String>,
    /// Number of the current issuance; each new CertificateRequest gets the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The Secret holding the private key of the issuance in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_private_key_secret_name: Option<String>,
    /// Failed issuances since the last success; the next attempt backs off exponentially.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_issuance_attempts: Option<i64>,
}

impl CertificateStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// A `cert-manager.io/v1` resource with metadata, spec and status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Object<S, T> {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<T>,
}

pub type Certificate = Object<CertificateSpec, CertificateStatus>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfSignedIssuer {
    /// CRL distribution point URLs to put into the certificates.
    #[serde(
        default,
        rename = "crlDistributionPoints",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub crl_distribution_points: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaIssuer {
    /// The Secret (kubernetes.io/tls) holding the CA certificate and key: in the Issuer's
    /// namespace, or the cluster resource namespace for a ClusterIssuer.
    #[serde(default)]
    pub secret_name: String,
    /// CRL distribution point URLs to put into the certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crl_distribution_points: Vec<String>,
    /// OCSP responder URLs to put into the certificates (Authority Information Access).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ocsp_servers: Vec<String>,
    /// URLs where the issuing CA's certificate is served (cert-manager's spelling;
    /// `issuingCertificateUrls`, which certwright once used, is still read).
    #[serde(
        default,
        rename = "issuingCertificateURLs",
        alias = "issuingCertificateUrls",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub issuing_certificate_urls: Vec<String>,
}

/// `Issuer.spec` / `ClusterIssuer.spec`. Exactly one issuer type must be set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerSpec {
    /// Each certificate is signed by its own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<SelfSignedIssuer>,
    /// Certificates are signed by a CA kept in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaIssuer>,
    /// Certificates come from an ACME server (such as Let's Encrypt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<crate::acme::AcmeIssuer>,
    /// HashiCorp Vault (not supported by certwright: the issuer is not ready and says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<serde_json::Value>,
    /// Venafi (not supported by certwright: the issuer is not ready and says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venafi: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerStatus {
    /// Ready: whether the issuer can sign.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The ACME account, for an ACME issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<crate::acme::AcmeIssuerStatus>,
}

pub type Issuer = Object<IssuerSpec, IssuerStatus>;

/// `CertificateRequest.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateRequestSpec {
    /// Requested lifetime (a Go duration, at least 1h; default 2160h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// The issuer asked to sign.
    #[serde(default)]
    pub issuer_ref: IssuerRef,
    /// Base64 of the PEM CSR.
    #[serde(default)]
    pub request: String,
    /// Ask for a CA certificate.
    #[serde(default, rename = "isCA", skip_serializing_if = "std::ops::Not::not")]
    pub is_ca: bool,
    /// Key usages and extended key usages, by cert-manager's names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
    /// Who created the request (set by the admission webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// UID of who created the request (set by the admission webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Groups of who created the request (set by the admission webhook).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes of who created the request (set by the admission webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<BTreeMap<String, Vec<String>>>,
}

/// `CertificateRequest.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestStatus {
    /// Approved or Denied (by an approver), Ready (issued, pending or failed) and
    /// InvalidRequest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Base64 of the PEM certificate chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Base64 of the PEM CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// When the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_time: Option<String>,
}

pub type CertificateRequest = Object<CertificateRequestSpec, CertificateRequestStatus>;

/// A core `v1` Secret manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Base64 values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
}

/// A core `v1` ConfigMap manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Base64 values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
}

/// certwright's local-runtime hook: what to do after secrets change, for host services
/// that cannot reload certificates by themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReloadHookSpec {
    /// Secret names (in the hook's namespace) whose changes trigger the hook.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Command and arguments to run (no shell).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Signal to send instead of, or as well as, running a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalSpec>,
    /// Quiet period after the last change before the hook runs (Go duration, default 2s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<String>,
    /// How long the command may run (Go duration, default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignalSpec {
    /// Signal name: HUP, USR1, USR2, TERM, INT, QUIT.
    pub name: String,
    /// File holding the process id.
    pub pid_file: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NoStatus {}

pub type ReloadHook = Object<ReloadHookSpec, NoStatus>;

/// An OpenShift `route.openshift.io/v1` Route manifest: what the local runtime's edge
/// reads. `spec.tls` stays JSON, read by the engine as the operator reads a Route's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: RouteSpec,
    /// Whatever else the manifest holds (`status`), kept so that `convert` passes a
    /// Route through whole.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// The public host name the edge routes by (SNI and the Host header).
    #[serde(default)]
    pub host: String,
    /// The Service behind the route.
    #[serde(default)]
    pub to: RouteTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<serde_json::Value>,
    /// `termination` (edge, reencrypt, passthrough), `certificate`, `key`,
    /// `caCertificate`, `destinationCACertificate`, `insecureEdgeTerminationPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<serde_json::Value>,
    /// The fields the local edge does not read (`path`, `wildcardPolicy`, ...).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTarget {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}
