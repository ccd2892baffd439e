//! Annotation and label names honoured verbatim from cert-manager, cert-utils-operator
//! and Reloader, plus certwright's own.

// cert-manager, on issued Secrets.
pub const CERT_NAME: &str = "cert-manager.io/certificate-name";
pub const ISSUER_NAME: &str = "cert-manager.io/issuer-name";
pub const ISSUER_KIND: &str = "cert-manager.io/issuer-kind";
pub const ISSUER_GROUP: &str = "cert-manager.io/issuer-group";
pub const COMMON_NAME: &str = "cert-manager.io/common-name";
pub const ALT_NAMES: &str = "cert-manager.io/alt-names";
pub const IP_SANS: &str = "cert-manager.io/ip-sans";
pub const URI_SANS: &str = "cert-manager.io/uri-sans";
pub const EMAIL_SANS: &str = "cert-manager.io/email-sans";
pub const SUBJECT_ORGANIZATIONS: &str = "cert-manager.io/subject-organizations";
pub const SUBJECT_ORGANIZATIONAL_UNITS: &str = "cert-manager.io/subject-organizationalunits";
pub const SUBJECT_COUNTRIES: &str = "cert-manager.io/subject-countries";
pub const SUBJECT_PROVINCES: &str = "cert-manager.io/subject-provinces";
pub const SUBJECT_LOCALITIES: &str = "cert-manager.io/subject-localities";
pub const SUBJECT_POSTAL_CODES: &str = "cert-manager.io/subject-postalcodes";
pub const SUBJECT_STREET_ADDRESSES: &str = "cert-manager.io/subject-streetaddresses";
pub const SUBJECT_SERIAL_NUMBER: &str = "cert-manager.io/subject-serialnumber";
/// cert-manager's label on Secrets it manages.
/// certwright's record on a Secret of what its certificate was issued for (the issuance
/// spec, the certificate's fingerprint, the revision), written in the same update as the
/// certificate so that the Secret itself says what it holds.
pub const LAST_ISSUANCE: &str = "certwright.io/last-issuance";
pub const CONTROLLED_LABEL: &str = "controller.cert-manager.io/fao";

// cert-manager, on CertificateRequests and Certificates.
/// The revision a CertificateRequest was made for (its certificate name is [`CERT_NAME`]).
pub const CERT_REVISION: &str = "cert-manager.io/certificate-revision";
/// Label on the Secret holding a Certificate's next private key while a request is
/// pending (its name is `status.nextPrivateKeySecretName`).
pub const NEXT_PRIVATE_KEY_LABEL: &str = "cert-manager.io/next-private-key";
/// The reason of the `Issuing` condition that `cmctl renew` (and `certwright renew`) set
/// to ask for a new certificate now.
pub const MANUALLY_TRIGGERED: &str = "ManuallyTriggered";

// certwright, on the CertificateRequests it records.
/// The issuance spec the request was made for (JSON), so that a pending request resumes
/// for the same spec after a restart.
pub const REQUEST_SPEC: &str = "certwright.io/issuance-spec";
/// Why the request was made: the trigger reason (`DoesNotExist`, `RequestChanged`,
/// `Renewing`, `ManuallyTriggered`, ...).
pub const REQUEST_REASON: &str = "certwright.io/issuance-reason";
/// The issuer's state of a pending request (JSON; an ACME order, say).
pub const ISSUER_STATE: &str = "certwright.io/issuer-state";
/// On a failed request: the digest of the inputs that failed (spec and issuer), so that
/// a Certificate whose inputs changed retries at once, after a restart too.
pub const FAILED_INPUTS: &str = "certwright.io/failed-inputs";
/// On an Issuer: a test issuer's name (see the engine's `testing` module). Honoured only
/// by runtimes started with test issuers allowed (tests); ignored otherwise.
pub const TEST_ISSUER: &str = "certwright.io/test-issuer";

/// Label on the CertificateRequests certwright records in a cluster: the UID of their
/// Certificate.
pub const CERTIFICATE_UID: &str = "certwright.io/certificate-uid";
/// The label on the requests certwright records for its own Certificates (label, value).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "certwright");
/// On a request for a self-signed issuer: the Secret holding the request's private key.
pub const PRIVATE_KEY_SECRET: &str = "cert-manager.io/private-key-secret-name";
/// On Secrets in a cluster: the secretTemplate keys certwright set (`label:KEY` and
/// `annotation:KEY`, comma-separated), so that a key removed from the template is
/// removed from the Secret while others' keys stay.
pub const TEMPLATE_KEYS: &str = "certwright.io/secret-template-keys";
/// Only in the operator's watch cache, never written to the API server: when a manual
/// renewal was asked for (the Issuing condition's time), so that the cache, which drops
/// the status, still tells a new manual renewal from an old one.
pub const CACHED_MANUAL_TRIGGER: &str = "certwright.io/cached-manual-trigger";
/// Metadata key prefixes of the namespaces certwright (and cert-manager before it) manages.
pub const MANAGED_PREFIXES: [&str; 3] = [
    "cert-manager.io/",
    "certwright.io/",
    "controller.cert-manager.io/",
];

// cert-utils-operator.
pub const CU_GENERATE_JAVA_KEYSTORES: &str =
    "cert-utils-operator.redhat-cop.io/generate-java-keystores";
pub const CU_JAVA_KEYSTORE_PASSWORD: &str =
    "cert-utils-operator.redhat-cop.io/java-keystore-password";
pub const CU_DEFAULT_PASSWORD: &str = "changeme";
pub const CU_KEY_ALIAS: &str = "alias";
pub const CU_GENERATE_CERT_INFO: &str = "cert-utils-operator.redhat-cop.io/generate-cert-info";
pub const CU_GENERATE_JAVA_TRUSTSTORE: &str =
    "cert-utils-operator.redhat-cop.io/generate-java-truststore";
pub const CU_SOURCE_CA_KEY: &str = "cert-utils-operator.redhat-cop.io/source-ca-key";
/// A ConfigMap's truststore password when none is given (cert-utils' default for
/// ConfigMaps differs from its default for Secrets).
pub const CU_DEFAULT_TRUSTSTORE_PASSWORD: &str = "changeit";
pub const CU_DEFAULT_SOURCE_CA_KEY: &str = "ca-bundle.crt";
pub const CU_GENERATE_CERT_EXPIRY_ALERT: &str =
    "cert-utils-operator.redhat-cop.io/generate-cert-expiry-alert";
pub const CU_CERT_EXPIRY_CHECK_FREQUENCY: &str =
    "cert-utils-operator.redhat-cop.io/cert-expiry-check-frequency";
pub const CU_SOON_TO_EXPIRE_CHECK_FREQUENCY: &str =
    "cert-utils-operator.redhat-cop.io/cert-soon-to-expire-check-frequency";
pub const CU_SOON_TO_EXPIRE_THRESHOLD: &str =
    "cert-utils-operator.redhat-cop.io/cert-soon-to-expire-threshold";
pub const CU_CERTS_FROM_SECRET: &str = "cert-utils-operator.redhat-cop.io/certs-from-secret";
pub const CU_DESTINATION_CA_FROM_SECRET: &str =
    "cert-utils-operator.redhat-cop.io/destinationCA-from-secret";
pub const CU_INJECT_CA: &str = "cert-utils-operator.redhat-cop.io/inject-CA";
pub const CU_INJECTCA_FROM_SECRET: &str = "cert-utils-operator.redhat-cop.io/injectca-from-secret";
// cert-manager's CA injector.
pub const INJECT_CA_FROM: &str = "cert-manager.io/inject-ca-from";
pub const INJECT_CA_FROM_SECRET: &str = "cert-manager.io/inject-ca-from-secret";
pub const ALLOW_DIRECT_INJECTION: &str = "cert-manager.io/allow-direct-injection";
/// Why certwright left a Route as it was (removed once it is fine again).
pub const ROUTE_PROBLEM: &str = "certwright.io/route-problem";

// Reloader.
pub const RELOADER_AUTO: &str = "reloader.stakater.com/auto";
pub const RELOADER_SECRET_RELOAD: &str = "secret.reloader.stakater.com/reload";
pub const RELOADER_CONFIGMAP_RELOAD: &str = "configmap.reloader.stakater.com/reload";

/// Secret data keys.
pub mod keys {
    pub const TLS_CRT: &str = "tls.crt";
    pub const TLS_KEY: &str = "tls.key";
    pub const CA_CRT: &str = "ca.crt";
    pub const KEYSTORE_JKS: &str = "keystore.jks";
    pub const TRUSTSTORE_JKS: &str = "truststore.jks";
    pub const KEYSTORE_P12: &str = "keystore.p12";
    pub const TRUSTSTORE_P12: &str = "truststore.p12";
    pub const TLS_COMBINED_PEM: &str = "tls-combined.pem";
    pub const KEY_DER: &str = "key.der";
    pub const TLS_CRT_INFO: &str = "tls.crt.info";
    pub const CA_CRT_INFO: &str = "ca.crt.info";
}

pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";
