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
/// cert-manager's label on Secrets it manages.
/// certwright's record on a Secret of what its certificate was issued for (the issuance
/// spec, the certificate's fingerprint, the revision), written in the same update as the
/// certificate so that the Secret itself says what it holds.
pub const LAST_ISSUANCE: &str = "certwright.io/last-issuance";
pub const CONTROLLED_LABEL: &str = "controller.cert-manager.io/fao";

// cert-utils-operator.
pub const CU_GENERATE_JAVA_KEYSTORES: &str =
    "cert-utils-operator.redhat-cop.io/generate-java-keystores";
pub const CU_JAVA_KEYSTORE_PASSWORD: &str =
    "cert-utils-operator.redhat-cop.io/java-keystore-password";
pub const CU_DEFAULT_PASSWORD: &str = "changeme";
pub const CU_KEY_ALIAS: &str = "alias";

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
}

pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";
