//! The bad-input catalogue's Certificates, shared by the local runtime's test
//! (tests/bad_input.rs: each gets its reason in the status) and the operator's (the
//! admission webhook refuses those it can judge alone at apply time, with that message).

/// Rules that need other objects (the issuer, its CA Secret, a password Secret, another
/// Certificate) or are certwright's own limits: a webhook cannot and should not refuse
/// these at apply time; their status says why instead.
pub const NOT_REFUSED_AT_APPLY: &[&str] = &[
    "unknown-issuer",
    "ca-missing",
    "ca-not-ca",
    "ca-key-mismatch",
    "ca-expired",
    "ca-bad-pem",
    "ca-no-key",
    "password-secret-missing",
    "password-key-missing",
    "bad-issuer-spec",
    "rsa-2049",
    "renewal-every",
    "dup-a",
    "dup-b",
];

pub fn cert(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: {name}, namespace: bad}}\nspec:\n{}",
        spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
    )
}

pub fn ok_spec(extra: &str) -> String {
    format!("secretName: SECRET\nissuerRef: {{name: self}}\ncommonName: x.bad.svc\n{extra}")
}

/// (Certificate name, spec, expected reason, message fragment). SECRET in a spec stands
/// for the Secret's name.
pub fn certificate_cases() -> Vec<(&'static str, String, &'static str, &'static str)> {
    vec![
        (
            "no-secret-name",
            "issuerRef: {name: self}\ncommonName: x".into(),
            "MissingSecretName",
            "spec.secretName: required",
        ),
        (
            "bad-dns",
            ok_spec("dnsNames: [ok.example.com, bad_name!.example.com]"),
            "InvalidDNSName",
            "spec.dnsNames[1]",
        ),
        (
            "short-duration",
            ok_spec("duration: 30m"),
            "InvalidDuration",
            "less than the minimum of 1h",
        ),
        (
            "no-history",
            ok_spec("revisionHistoryLimit: 0"),
            "InvalidRevisionHistoryLimit",
            "spec.revisionHistoryLimit: 0: must be at least 1",
        ),
        (
            "renew-too-late",
            ok_spec("duration: 2h\nrenewBefore: 3h"),
            "InvalidRenewBefore",
            "must be less than spec.duration",
        ),
        (
            "renew-too-small",
            ok_spec("renewBefore: 1m"),
            "InvalidRenewBefore",
            "minimum of 5m",
        ),
        (
            "bad-duration",
            ok_spec("duration: 1x"),
            "InvalidDuration",
            "unknown unit",
        ),
        (
            "both-renew",
            ok_spec("renewBefore: 1h\nrenewBeforePercentage: 20"),
            "InvalidRenewBefore",
            "mutually exclusive",
        ),
        (
            "unknown-issuer",
            "secretName: SECRET\nissuerRef: {name: nowhere}\ncommonName: x".into(),
            "IssuerNotFound",
            "Issuer \"nowhere\" in namespace \"bad\" not found",
        ),
        (
            "bad-issuer-kind",
            "secretName: SECRET\nissuerRef: {name: self, kind: Foo}\ncommonName: x".into(),
            "InvalidIssuerRef",
            "must be Issuer or ClusterIssuer",
        ),
        (
            "ca-missing",
            "secretName: SECRET\nissuerRef: {name: ca-missing}\ncommonName: x".into(),
            "IssuerNotReady",
            "CA secret bad/ca-missing not found",
        ),
        (
            "ca-not-ca",
            "secretName: SECRET\nissuerRef: {name: ca-not-ca}\ncommonName: x".into(),
            "IssuerNotReady",
            "is not a CA",
        ),
        (
            "ca-key-mismatch",
            "secretName: SECRET\nissuerRef: {name: ca-key-mismatch}\ncommonName: x".into(),
            "IssuerNotReady",
            "tls.key does not match",
        ),
        (
            "ca-expired",
            "secretName: SECRET\nissuerRef: {name: ca-expired}\ncommonName: x".into(),
            "IssuerNotReady",
            "CA certificate expired",
        ),
        (
            "ca-bad-pem",
            "secretName: SECRET\nissuerRef: {name: ca-bad-pem}\ncommonName: x".into(),
            "IssuerNotReady",
            "tls.crt",
        ),
        (
            "ca-no-key",
            "secretName: SECRET\nissuerRef: {name: ca-no-key}\ncommonName: x".into(),
            "IssuerNotReady",
            "has no tls.key",
        ),
        (
            "rsa-2049",
            ok_spec("privateKey: {algorithm: RSA, size: 2049}"),
            "UnsupportedKeySize",
            "2049 is not supported",
        ),
        (
            "rsa-1024",
            ok_spec("privateKey: {algorithm: RSA, size: 1024}"),
            "InvalidPrivateKey",
            "between 2048 and 8192",
        ),
        (
            "ecdsa-512",
            ok_spec("privateKey: {algorithm: ECDSA, size: 512}"),
            "InvalidPrivateKey",
            "must be 256, 384 or 521",
        ),
        (
            "dsa",
            ok_spec("privateKey: {algorithm: DSA}"),
            "InvalidPrivateKey",
            "must be RSA, ECDSA or Ed25519",
        ),
        (
            "bad-encoding",
            ok_spec("privateKey: {encoding: DER}"),
            "InvalidPrivateKey",
            "must be PKCS1 or PKCS8",
        ),
        (
            "password-secret-missing",
            ok_spec(
                "keystores: {jks: {create: true, passwordSecretRef: {name: nope, key: password}}}",
            ),
            "MissingPasswordSecret",
            "secret bad/nope not found",
        ),
        (
            "password-key-missing",
            ok_spec("keystores: {jks: {create: true, passwordSecretRef: {name: pw, key: other}}}"),
            "MissingPasswordSecret",
            "has no key \"other\"",
        ),
        (
            "no-password",
            ok_spec("keystores: {pkcs12: {create: true}}"),
            "InvalidKeystore",
            "one of password or passwordSecretRef is required",
        ),
        (
            "bad-profile",
            ok_spec("keystores: {pkcs12: {create: true, password: x, profile: Weak}}"),
            "InvalidKeystore",
            "must be LegacyRC2, LegacyDES or Modern2023",
        ),
        (
            "bad-ip",
            ok_spec("ipAddresses: [10.0.0.300]"),
            "InvalidIPAddress",
            "spec.ipAddresses[0]",
        ),
        (
            "bad-uri",
            ok_spec("uris: [not a uri]"),
            "InvalidURI",
            "spec.uris[0]",
        ),
        (
            "bad-email",
            ok_spec("emailAddresses: [nobody]"),
            "InvalidEmailAddress",
            "not an email address",
        ),
        (
            "bad-usage",
            ok_spec("usages: [server auth, world domination]"),
            "InvalidUsage",
            "unknown usage \"world domination\"",
        ),
        (
            "no-identity",
            "secretName: SECRET\nissuerRef: {name: self}".into(),
            "MissingIdentity",
            "at least one of commonName",
        ),
        (
            "typo-field",
            ok_spec("dnsName: [x]"),
            "InvalidManifest",
            "unknown field `dnsName`",
        ),
        (
            "long-cn",
            format!(
                "secretName: SECRET\nissuerRef: {{name: self}}\ncommonName: {}",
                "a".repeat(65)
            ),
            "InvalidCommonName",
            "at most 64",
        ),
        (
            "nc-not-ca",
            ok_spec("nameConstraints: {permitted: {dnsDomains: [example.com]}}"),
            "InvalidNameConstraints",
            "only allowed when isCA is true",
        ),
        (
            "bad-literal",
            "secretName: SECRET\nissuerRef: {name: self}\nliteralSubject: \"CN=a,,O=b\"".into(),
            "InvalidSubject",
            "RFC 4514",
        ),
        (
            "bad-issuer-spec",
            "secretName: SECRET\nissuerRef: {name: empty-issuer}\ncommonName: x".into(),
            "IssuerNotReady",
            "exactly one issuer type",
        ),
        (
            "bad-renewal-policy",
            ok_spec("renewal: {policy: Sometimes}"),
            "InvalidRenewal",
            "spec.renewal.policy: \"Sometimes\" must be RenewBefore or Disabled",
        ),
        (
            "bad-renewal-cron",
            ok_spec("renewal: {policy: RenewBefore, windows: [{cron: \"0 25 * * *\", windowDuration: 1h}]}"),
            "InvalidRenewal",
            "spec.renewal.windows[0].cron",
        ),
        (
            "disabled-with-windows",
            ok_spec("renewal: {policy: Disabled, windows: [{cron: \"@daily\", windowDuration: 1h}]}"),
            "InvalidRenewal",
            "windows cannot be set",
        ),
        (
            "renewal-every",
            ok_spec("renewal: {policy: RenewBefore, windows: [{cron: \"@every 1h\", windowDuration: 1h}]}"),
            "UnsupportedRenewal",
            "@every schedules are not supported",
        ),
        (
            "dup-a",
            "secretName: shared\nissuerRef: {name: self}\ncommonName: a".into(),
            "Ready",
            "",
        ),
        (
            "dup-b",
            "secretName: shared\nissuerRef: {name: self}\ncommonName: b".into(),
            "DuplicateSecretName",
            "already written by Certificate dup-a",
        ),
    ]
}
