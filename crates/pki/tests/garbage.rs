//! Malformed bytes never panic a parser: valid encodings are mutated (bit flips,
//! truncations, length bytes) and every parser must answer with an error or a value.

use certwright_pki::cert::{self, Signer, Validity};
use certwright_pki::inspect::CertInfo;
use certwright_pki::{
    jks, pem, pkcs12, Curve, KeyAlgorithm, KeyEncoding, Name, PrivateKey, Profile, SubjectFields,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    match rng.below(4) {
        0 => {
            let i = rng.below(v.len());
            v[i] ^= 1 << rng.below(8);
        }
        1 => v.truncate(rng.below(v.len())),
        2 => {
            let i = rng.below(v.len());
            v[i] = [0x00, 0x7f, 0x80, 0x81, 0x84, 0xff][rng.below(6)];
        }
        _ => {
            let i = rng.below(v.len());
            let extra: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
            v.splice(i..i, extra);
        }
    }
    v
}

#[test]
fn parsers_survive_mutated_input() {
    let key = PrivateKey::generate(KeyAlgorithm::Ecdsa(Curve::P256)).expect("key");
    let profile = Profile {
        subject: Name::from_fields(&SubjectFields {
            common_name: Some("x".into()),
            ..Default::default()
        }),
        dns_names: vec!["x.example.com".into()],
        ..Default::default()
    };
    let csr_der = cert::build_csr(&profile, &key).expect("csr");
    let csr = cert::parse_csr(&csr_der).expect("parse");
    let cert_der = cert::sign_csr(
        &csr,
        false,
        &Validity {
            not_before: 0,
            not_after: 1 << 31,
        },
        &[7; 20],
        &Signer::SelfSigned(&key),
        None,
        &[],
    )
    .expect("sign");
    let key_pem = key.to_pem(KeyEncoding::Pkcs1).expect("pem");
    let entry = pkcs12::KeyEntry {
        alias: "a",
        pkcs8: key.pkcs8_der(),
        chain: std::slice::from_ref(&cert_der),
    };
    let p12 = pkcs12::encode(Some(&entry), &[], "pw", pkcs12::Profile::LegacyRc2).expect("p12");
    let jks_bytes = jks::encode(
        &[jks::Entry::PrivateKey {
            alias: "a".into(),
            pkcs8: key.pkcs8_der().to_vec(),
            chain: vec![cert_der.clone()],
        }],
        "pw",
        0,
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let _ = CertInfo::parse(&mutate(&mut rng, &cert_der));
        let _ = cert::parse_csr(&mutate(&mut rng, &csr_der));
        let _ = PrivateKey::from_pkcs8_der(&mutate(&mut rng, key.pkcs8_der()));
        let _ = PrivateKey::from_pem(&mutate(&mut rng, key_pem.as_bytes()));
        let _ = pem::decode_all(&mutate(&mut rng, key_pem.as_bytes()));
        let _ = jks::decode(&mutate(&mut rng, &jks_bytes), "pw");
    }
    // PKCS#12 decoding runs key derivations: fewer rounds.
    for _ in 0..300 {
        let _ = pkcs12::decode(&mutate(&mut rng, &p12), "pw");
    }
    assert!(
        CertInfo::parse(&cert_der).is_ok(),
        "the unmutated input still parses"
    );
}
