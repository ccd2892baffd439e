//! certwright's PKI core: keys, names, requests, certificates, inspection, and the Java
//! and PKCS#12 keystore formats. Pure computation over bytes; no file or network I/O.
//! One crypto backend: aws-lc-rs (RC2 for the legacy PKCS#12 profile comes from the
//! `rc2` crate, as aws-lc-rs does not expose it).
//!
//! Requests and certificates are written by rcgen wherever it can write what was asked.
//! Where it cannot (the private `x509` module's doc lists the cases: names with a
//! repeated attribute type or a multi-valued RDN, string types and key algorithms it
//! lacks), and for the keystore formats, certwright uses the small DER writer and reader
//! in [`der`], which has unit tests of its own and is checked against an independent
//! reader (der-parser).

pub mod cert;
pub mod der;
pub mod inspect;
pub mod jks;
pub mod jose;
pub mod key;
pub mod name;
pub mod pem;
pub mod pkcs12;
mod x509;

pub use cert::{Csr, Extension, KeyUsage, NameConstraints, Profile, Signer, Validity};
pub use inspect::CertInfo;
pub use key::{Curve, KeyAlgorithm, KeyEncoding, PrivateKey, SignatureAlgorithm};
pub use name::{Name, NameError, SubjectFields};
