//! Key material for the engine's unit tests.

use crate::observe::SecretData;
use certwright_api::annotations::keys;
use certwright_pki::cert::{self, Profile, Signer, Validity};
use certwright_pki::{pem, KeyAlgorithm, KeyEncoding, PrivateKey};

/// A self-signed CA certificate for `key`, naming `host`, in PEM.
pub(crate) fn self_signed_pem(key: &PrivateKey, host: &str) -> String {
    let profile = Profile {
        dns_names: vec![host.to_string()],
        is_ca: true,
        ..Default::default()
    };
    let csr = cert::parse_csr(&cert::build_csr(&profile, key).expect("csr")).expect("parse");
    let validity = Validity {
        not_before: 1_800_000_000,
        not_after: 1_900_000_000,
    };
    let der = cert::sign_csr(
        &csr,
        true,
        &validity,
        &cert::random_serial(),
        &Signer::SelfSigned(key),
        None,
        &[],
    )
    .expect("sign");
    pem::encode("CERTIFICATE", &der)
}

/// A Secret made by hand: an ECDSA key, its self-signed certificate, which is its CA.
pub(crate) fn hand_made(host: &str) -> SecretData {
    let key = PrivateKey::generate(KeyAlgorithm::Ecdsa(certwright_pki::Curve::P256)).expect("key");
    let crt = self_signed_pem(&key, host);
    let mut s = SecretData::default();
    s.data
        .insert(keys::TLS_CRT.into(), crt.clone().into_bytes());
    s.data.insert(keys::CA_CRT.into(), crt.into_bytes());
    s.data.insert(
        keys::TLS_KEY.into(),
        key.to_pem(KeyEncoding::Pkcs8).expect("pem").into_bytes(),
    );
    s
}

/// Annotations from pairs.
pub(crate) fn annotations(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
