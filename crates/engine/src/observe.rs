//! What a Secret holds, read into typed form (pure: the shell reads the bytes).

use certwright_api::annotations::keys;
use certwright_pki::inspect::{self, CertInfo, InspectError};
use certwright_pki::key::KeyError;
use certwright_pki::PrivateKey;
use std::collections::BTreeMap;

/// A Secret's content as a shell read it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData {
    pub type_: Option<String>,
    pub data: BTreeMap<String, Vec<u8>>,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be keys or passwords: show only their names.
        f.debug_struct("SecretData")
            .field("type", &self.type_)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("annotations", &self.annotations)
            .finish()
    }
}

impl SecretData {
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.data
            .get(key)
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    }
}

/// The certificate material of a TLS Secret, parsed.
#[derive(Debug)]
pub struct TlsMaterial {
    pub key: Option<Result<PrivateKey, KeyError>>,
    pub chain: Option<Result<Vec<CertInfo>, InspectError>>,
    pub ca: Option<Result<Vec<CertInfo>, InspectError>>,
}

impl TlsMaterial {
    pub fn read(secret: &SecretData) -> TlsMaterial {
        TlsMaterial {
            key: secret.get(keys::TLS_KEY).map(PrivateKey::from_pem),
            chain: secret.get(keys::TLS_CRT).map(inspect::parse_pem_chain),
            ca: secret.get(keys::CA_CRT).map(inspect::parse_pem_chain),
        }
    }

    /// The key and leaf if both parsed.
    pub fn pair(&self) -> Option<(&PrivateKey, &[CertInfo])> {
        match (&self.key, &self.chain) {
            (Some(Ok(k)), Some(Ok(c))) if !c.is_empty() => Some((k, c.as_slice())),
            _ => None,
        }
    }

    pub fn ca_certs(&self) -> &[CertInfo] {
        match &self.ca {
            Some(Ok(c)) => c,
            _ => &[],
        }
    }
}
