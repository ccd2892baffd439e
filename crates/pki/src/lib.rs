//! certwright's PKI core: keys, names, requests, certificates, inspection, and the Java
//! and PKCS#12 keystore formats. Pure computation over bytes; no file or network I/O.
//! One crypto backend: aws-lc-rs (RC2 for the legacy PKCS#12 profile comes from the
//! `rc2` crate, as aws-lc-rs does not expose it).

pub mod cert;
pub mod der;
pub mod inspect;
pub mod jks;
pub mod key;
pub mod name;
pub mod pem;
pub mod pkcs12;

pub use cert::{Csr, Extension, KeyUsage, NameConstraints, Profile, Signer, Validity};
pub use inspect::CertInfo;
pub use key::{Curve, KeyAlgorithm, KeyEncoding, PrivateKey, SignatureAlgorithm};
pub use name::{Name, NameError, SubjectFields};
