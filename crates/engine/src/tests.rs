//! Scenario tests of the engine: an injected clock, real keys and certificates, no I/O.

use crate::issue::{self, CaIssuer, CaMaterial, Issuer, Outcome, Request, SelfSigned};
use crate::render::{self, Material, Passwords};
use crate::*;
use certwright_api::annotations::keys;
use certwright_api::validate::{self, CertificateParams};
use certwright_api::Certificate;
use certwright_pki::inspect;
use certwright_pki::PrivateKey;

const NOW: i64 = 1_800_000_000;

fn params(spec_yaml: &str) -> CertificateParams {
    let yaml = format!(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: c, namespace: demo}}\nspec:\n{}",
        spec_yaml.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let c: Certificate = serde_saphyr::from_str(&yaml).expect("fixture parses");
    validate::certificate(&c).expect("fixture is valid")
}

const BASIC: &str =
    "secretName: s\nissuerRef: {name: self}\ncommonName: c.demo.svc\ndnsNames: [c, c.demo.svc]";

/// The key material of a read Secret, as the renderer takes it.
fn material(m: &TlsMaterial) -> Material<'_> {
    let (key, chain) = m.pair().expect("pair");
    Material {
        key,
        chain,
        ca: m.ca_certs(),
    }
}

/// Issues with `issuer` and renders a Secret the way a shell would.
fn issue_with(
    p: &CertificateParams,
    issuer: &dyn Issuer,
    now: i64,
    key: Option<PrivateKey>,
) -> SecretData {
    let key = key.unwrap_or_else(|| PrivateKey::generate(p.issuance.key()).expect("key"));
    let csr = issue::build_request(&p.issuance, &key).expect("csr");
    let out = issuer.process(&Request {
        subject: "demo/test",
        labels: &Default::default(),
        csr_pem: &csr,
        spec: &p.issuance,
        key: Some(&key),
        state: &serde_json::Value::Null,
        current: None,
        now,
    });
    let Outcome::Issued(issued) = out else {
        panic!("not issued: {out:?}")
    };
    let (chain, ca) = issued.check(&key).expect("a certificate for the key");
    let m = Material {
        key: &key,
        chain: &chain,
        ca: &ca,
    };
    let pw = Passwords {
        jks: Some("changeme".into()),
        pkcs12: Some("changeme".into()),
    };
    let ks = render::keystore_options(Some(p), &pw, &Default::default());
    let data = render::render_data(&m, p.encoding, &ks, p.output_der, p.output_combined_pem)
        .expect("render");
    SecretData {
        type_: Some("kubernetes.io/tls".into()),
        data,
        annotations: render::issued_annotations("c", p, &chain[0]),
        labels: Default::default(),
    }
}

fn decide_at(
    p: &CertificateParams,
    s: Option<&SecretData>,
    last: Option<&LastIssuance>,
    f: &Failures,
    now: i64,
) -> Decision {
    decide_suggested(p, s, last, f, now, None)
}

fn decide_suggested(
    p: &CertificateParams,
    s: Option<&SecretData>,
    last: Option<&LastIssuance>,
    f: &Failures,
    now: i64,
    suggested_renewal: Option<i64>,
) -> Decision {
    let m = s.map(TlsMaterial::read);
    decide(&Inputs {
        key: "demo/c",
        cert_name: "c",
        params: p,
        secret: s,
        material: m.as_ref(),
        last,
        failures: f,
        inputs_digest: "d1",
        backoff: BackoffPolicy::LOCAL,
        suggested_renewal,
        now,
    })
}

fn last_for(p: &CertificateParams, s: &SecretData) -> LastIssuance {
    let leaf = &inspect::parse_pem_chain(&s.data[keys::TLS_CRT]).expect("chain")[0];
    LastIssuance {
        spec: p.issuance.clone(),
        certificate_sha256: leaf.sha256_fingerprint(),
        revision: None,
    }
}

fn trigger(d: &Decision) -> Option<Trigger> {
    match d {
        Decision::Issue { trigger, .. } | Decision::Backoff { trigger, .. } => Some(*trigger),
        Decision::UpToDate { .. } => None,
    }
}

#[test]
fn missing_secret_issues_and_fresh_certificate_is_up_to_date() {
    let p = params(BASIC);
    let none = Failures::default();
    assert_eq!(
        trigger(&decide_at(&p, None, None, &none, NOW)),
        Some(Trigger::DoesNotExist)
    );
    let s = issue_with(&p, &SelfSigned::default(), NOW, None);
    let last = last_for(&p, &s);
    match decide_at(&p, Some(&s), Some(&last), &none, NOW + 1) {
        Decision::UpToDate {
            not_before,
            not_after,
            renewal_time,
        } => {
            assert_eq!(not_before, NOW);
            assert_eq!(not_after, NOW + 90 * 86_400);
            assert_eq!(
                renewal_time,
                Some(NOW + 60 * 86_400),
                "renews at two thirds by default"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        trigger(&decide_at(
            &p,
            Some(&s),
            Some(&last),
            &none,
            NOW + 60 * 86_400
        )),
        Some(Trigger::Renewing)
    );
    assert_eq!(
        trigger(&decide_at(
            &p,
            Some(&s),
            Some(&last),
            &none,
            NOW + 90 * 86_400
        )),
        Some(Trigger::Expired)
    );
}

#[test]
fn issued_certificates_are_checked_against_the_request_key() {
    let p = params(BASIC);
    let key = PrivateKey::generate(p.issuance.key()).expect("key");
    let csr = issue::build_request(&p.issuance, &key).expect("csr");
    let out = SelfSigned::default().process(&Request {
        subject: "demo/test",
        labels: &Default::default(),
        csr_pem: &csr,
        spec: &p.issuance,
        key: Some(&key),
        state: &serde_json::Value::Null,
        current: None,
        now: 1_800_000_000,
    });
    let Outcome::Issued(issued) = out else {
        panic!("not issued: {out:?}")
    };
    assert!(issued.check(&key).is_ok());
    let other = PrivateKey::generate(p.issuance.key()).expect("key");
    let e = issued.check(&other).expect_err("another key");
    assert!(e.to_string().contains("another key"), "{e}");
    let empty = issue::Issued {
        chain: vec![],
        ca: vec![],
        state: serde_json::Value::Null,
    };
    assert!(empty
        .check(&key)
        .expect_err("empty")
        .to_string()
        .contains("no certificate"));
    let garbage = issue::Issued {
        chain: vec![vec![0x30, 0x03, 0x02, 0x01]],
        ca: vec![],
        state: serde_json::Value::Null,
    };
    assert!(garbage
        .check(&key)
        .expect_err("garbage")
        .to_string()
        .contains("cannot be read"));
    // A duration whose notAfter would pass 9999-12-31 fails, it is not encoded wrongly.
    let far = params(&format!("{BASIC}\nduration: 100000000h"));
    let out = SelfSigned::default().process(&Request {
        subject: "demo/test",
        labels: &Default::default(),
        csr_pem: &issue::build_request(&far.issuance, &key).expect("csr"),
        spec: &far.issuance,
        key: Some(&key),
        state: &serde_json::Value::Null,
        current: None,
        now: 1_800_000_000,
    });
    assert!(
        matches!(&out, Outcome::Failed { reason, .. } if reason == "InvalidDuration"),
        "{out:?}"
    );
}

#[test]
fn one_minute_renewal_demo() {
    let p = params(&format!("{BASIC}\nduration: 1h1m\nrenewBefore: 1h"));
    let s = issue_with(&p, &SelfSigned::default(), NOW, None);
    let last = last_for(&p, &s);
    match decide_at(&p, Some(&s), Some(&last), &Failures::default(), NOW) {
        Decision::UpToDate { renewal_time, .. } => assert_eq!(renewal_time, Some(NOW + 60)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        trigger(&decide_at(
            &p,
            Some(&s),
            Some(&last),
            &Failures::default(),
            NOW + 60
        )),
        Some(Trigger::Renewing)
    );
}

/// `spec.renewal`: Disabled schedules no renewal (an expired certificate is still
/// reissued); windows keep a renewal time that falls in one and move any other to the
/// next window's start.
#[test]
fn renewal_policy_disabled_and_windows() {
    let p = params(&format!(
        "{BASIC}\nduration: 2h\nrenewal: {{policy: Disabled}}"
    ));
    let s = issue_with(&p, &SelfSigned::default(), NOW, None);
    let last = last_for(&p, &s);
    let f = Failures::default();
    match decide_at(&p, Some(&s), Some(&last), &f, NOW) {
        Decision::UpToDate { renewal_time, .. } => assert_eq!(renewal_time, None),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        trigger(&decide_at(&p, Some(&s), Some(&last), &f, NOW + 7000)),
        None
    );
    assert_eq!(
        trigger(&decide_at(&p, Some(&s), Some(&last), &f, NOW + 7200)),
        Some(Trigger::Expired)
    );
    // NOW is 2027-01-15T08:00:00Z; the default renewal time (two thirds of 90 days) is
    // 2027-03-16T08:00:00Z, a Tuesday.
    let window = |cron: &str, tz: &str| {
        let p = params(&format!(
            "{BASIC}\nrenewal:\n  policy: RenewBefore\n  windows:\n  - {{cron: \"{cron}\", windowDuration: 3h, timezone: \"{tz}\"}}"
        ));
        crate::decide::renewal_time(&p, NOW, NOW + 90 * 86_400, None)
    };
    let at = |t: &str| t.parse::<jiff::Timestamp>().expect("time").as_second();
    assert_eq!(
        window("0 7 * * *", ""),
        Some(at("2027-03-16T08:00:00Z")),
        "inside: kept"
    );
    assert_eq!(
        window("0 22 * * 6", ""),
        Some(at("2027-03-20T22:00:00Z")),
        "the next Saturday night"
    );
    assert_eq!(
        window("0 22 * * 6", "America/New_York"),
        Some(at("2027-03-21T02:00:00Z")),
        "22:00 in New York (EDT, UTC-4)"
    );
}

/// An issuer's suggested renewal time (ACME Renewal Information) replaces the spec's,
/// earlier or later.
#[test]
fn an_issuers_suggested_renewal_replaces_the_specs() {
    let p = params(&format!("{BASIC}\nduration: 1h1m\nrenewBefore: 1h"));
    let s = issue_with(&p, &SelfSigned::default(), NOW, None);
    let last = last_for(&p, &s);
    let f = Failures::default();
    match decide_suggested(&p, Some(&s), Some(&last), &f, NOW, Some(NOW + 1800)) {
        Decision::UpToDate { renewal_time, .. } => assert_eq!(renewal_time, Some(NOW + 1800)),
        other => panic!("{other:?}"),
    }
    // Later than the spec's time (NOW + 60): not renewed at the spec's time.
    let at60 = decide_suggested(&p, Some(&s), Some(&last), &f, NOW + 60, Some(NOW + 1800));
    assert_eq!(trigger(&at60), None);
    let at1800 = decide_suggested(&p, Some(&s), Some(&last), &f, NOW + 1800, Some(NOW + 1800));
    assert_eq!(trigger(&at1800), Some(Trigger::Renewing));
    // A window in the past: renew now.
    let past = decide_suggested(&p, Some(&s), Some(&last), &f, NOW + 10, Some(NOW - 5));
    assert_eq!(trigger(&past), Some(Trigger::Renewing));
}

#[test]
fn spec_changes_reissue_and_name_the_fields() {
    let p = params(BASIC);
    let s = issue_with(&p, &SelfSigned::default(), NOW, None);
    let last = last_for(&p, &s);
    let p2 = params("secretName: s\nissuerRef: {name: self}\ncommonName: c.demo.svc\ndnsNames: [c, c.demo.svc, extra]\nduration: 48h");
    match decide_at(&p2, Some(&s), Some(&last), &Failures::default(), NOW) {
        Decision::Issue {
            trigger: Trigger::RequestChanged,
            message,
            ..
        } => {
            assert!(
                message.contains("spec.dnsNames") && message.contains("spec.duration"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Without a record (a Secret from another tool) the certificate's content is compared.
    match decide_at(&p2, Some(&s), None, &Failures::default(), NOW) {
        Decision::Issue {
            trigger: Trigger::RequestChanged,
            message,
            ..
        } => assert!(message.contains("spec.dnsNames")),
        other => panic!("{other:?}"),
    }
    // Output-only changes do not reissue.
    let p3 = params(&format!(
        "{BASIC}\nkeystores: {{jks: {{create: true, password: other}}}}"
    ));
    assert!(matches!(
        decide_at(&p3, Some(&s), Some(&last), &Failures::default(), NOW),
        Decision::UpToDate { .. }
    ));
    let p4 = params(&format!("{BASIC}\nprivateKey: {{algorithm: ECDSA}}"));
    assert_eq!(
        trigger(&decide_at(
            &p4,
            Some(&s),
            Some(&last),
            &Failures::default(),
            NOW
        )),
        Some(Trigger::SecretMismatch)
    );
    let p5 = params("secretName: s\nissuerRef: {name: other, kind: ClusterIssuer}\ncommonName: c.demo.svc\ndnsNames: [c, c.demo.svc]");
    assert_eq!(
        trigger(&decide_at(
            &p5,
            Some(&s),
            Some(&last),
            &Failures::default(),
            NOW
        )),
        Some(Trigger::IncorrectIssuer)
    );
}

#[test]
fn broken_secrets_reissue() {
    let p = params(BASIC);
    let mut s = issue_with(&p, &SelfSigned::default(), NOW, None);
    let other = PrivateKey::generate(p.issuance.key()).expect("key");
    s.data.insert(
        keys::TLS_KEY.into(),
        other.to_pem(p.encoding).expect("pem").into_bytes(),
    );
    assert_eq!(
        trigger(&decide_at(&p, Some(&s), None, &Failures::default(), NOW)),
        Some(Trigger::InvalidKeyPair)
    );
    s.data.insert(keys::TLS_KEY.into(), b"garbage".to_vec());
    assert_eq!(
        trigger(&decide_at(&p, Some(&s), None, &Failures::default(), NOW)),
        Some(Trigger::InvalidKeyPair)
    );
    s.data.remove(keys::TLS_KEY);
    assert_eq!(
        trigger(&decide_at(&p, Some(&s), None, &Failures::default(), NOW)),
        Some(Trigger::MissingData)
    );
}

#[test]
fn failures_back_off_until_inputs_change() {
    let p = params(BASIC);
    let f = Failures {
        attempts: 2,
        last_failure: NOW,
        inputs: "d1".into(),
    };
    match decide_at(&p, None, None, &f, NOW + 5) {
        Decision::Backoff { until, .. } => {
            assert!((NOW + 18..=NOW + 22).contains(&until), "{until}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decide_at(&p, None, None, &f, NOW + 30),
        Decision::Issue { .. }
    ));
    let changed = Failures {
        inputs: "d0".into(),
        ..f
    };
    assert!(matches!(
        decide_at(&p, None, None, &changed, NOW + 5),
        Decision::Issue { .. }
    ));
}

#[test]
fn rotation_policy_never_reuses_a_fitting_key() {
    let p = params(&format!("{BASIC}\nprivateKey: {{rotationPolicy: Never}}"));
    let s = issue_with(&p, &SelfSigned::default(), NOW, None);
    let last = last_for(&p, &s);
    match decide_at(
        &p,
        Some(&s),
        Some(&last),
        &Failures::default(),
        NOW + 61 * 86_400,
    ) {
        Decision::Issue { reuse_key, .. } => assert!(reuse_key),
        other => panic!("{other:?}"),
    }
    let p2 = params(BASIC);
    match decide_at(
        &p2,
        Some(&s),
        Some(&last),
        &Failures::default(),
        NOW + 61 * 86_400,
    ) {
        Decision::Issue { reuse_key, .. } => assert!(!reuse_key),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ca_issuer_chains_to_root_and_caps_lifetime() {
    let root_p = params("secretName: rootca\nissuerRef: {name: self}\ncommonName: ca.self-signer.cert-manager\nisCA: true\nduration: 100h");
    let root = issue_with(&root_p, &SelfSigned::default(), NOW, None);
    let ca = CaMaterial::from_secret("cert-manager/rootca", &root, NOW).expect("valid CA");
    let leaf_p = params("secretName: s\nissuerRef: {name: internal-issuer, kind: ClusterIssuer}\ncommonName: c.demo.svc\ndnsNames: [c]\nprivateKey: {algorithm: ECDSA, encoding: PKCS8}");
    let leaf = issue_with(
        &leaf_p,
        &CaIssuer {
            material: ca,
            extra: vec![],
        },
        NOW,
        None,
    );
    let chain = inspect::parse_pem_chain(&leaf.data[keys::TLS_CRT]).expect("chain");
    let roots = inspect::parse_pem_chain(&leaf.data[keys::CA_CRT]).expect("ca");
    assert_eq!(chain.len(), 1, "a root is not repeated in tls.crt");
    inspect::verify_chain(&chain, &roots, NOW + 1).expect("chain verifies");
    assert_eq!(
        chain[0].not_after,
        NOW + 100 * 3600,
        "capped at the CA's notAfter"
    );
    assert_eq!(chain[0].authority_key_id, roots[0].subject_key_id);
    assert!(
        String::from_utf8_lossy(&leaf.data[keys::TLS_KEY]).starts_with("-----BEGIN PRIVATE KEY")
    );
    // A leaf is not a CA.
    let err = CaMaterial::from_secret("demo/s", &leaf, NOW).expect_err("not a CA");
    assert_eq!(err.reason, "ErrInvalidKeyPair");
    assert!(err.message.contains("not a CA"));
    let expired = CaMaterial::from_secret("cert-manager/rootca", &root, NOW + 101 * 3600)
        .expect_err("expired");
    assert!(expired.message.contains("expired"));
}

#[test]
fn rendering_is_stable_and_compares_content() {
    let p = params(&format!("{BASIC}\nkeystores: {{jks: {{create: true, password: changeme}}, pkcs12: {{create: true, password: changeme}}}}"));
    let s = issue_with(&p, &SelfSigned::default(), NOW, None);
    let m = TlsMaterial::read(&s);
    let mat = material(&m);
    let pw = Passwords {
        jks: Some("changeme".into()),
        pkcs12: Some("changeme".into()),
    };
    let ks = render::keystore_options(Some(&p), &pw, &Default::default());
    let again = render::render_data(&mat, p.encoding, &ks, false, false).expect("render");
    assert_eq!(again, s.data, "same input, same bytes");
    assert!(render::changed_keys(&again, &s, &ks).is_empty());
    // A password change rewrites the keystores only.
    let pw2 = Passwords {
        jks: Some("other".into()),
        pkcs12: Some("changeme".into()),
    };
    let ks2 = render::keystore_options(Some(&p), &pw2, &Default::default());
    let d2 = render::render_data(&mat, p.encoding, &ks2, false, false).expect("render");
    assert_eq!(
        render::changed_keys(&d2, &s, &ks2),
        vec!["keystore.jks".to_string(), "truststore.jks".to_string()]
    );
    // PEM with different line breaks is the same content.
    let mut reflowed = s.clone();
    let crt = String::from_utf8_lossy(&s.data[keys::TLS_CRT]).replace('\n', "\r\n");
    reflowed.data.insert(keys::TLS_CRT.into(), crt.into_bytes());
    assert!(render::changed_keys(&again, &reflowed, &ks).is_empty());
}

#[test]
fn cert_utils_annotation_gives_java_keystores() {
    let p = params(BASIC);
    let s = issue_with(&p, &SelfSigned::default(), NOW, None);
    let m = TlsMaterial::read(&s);
    let mat = material(&m);
    let mut ann = std::collections::BTreeMap::new();
    ann.insert(
        certwright_api::annotations::CU_GENERATE_JAVA_KEYSTORES.to_string(),
        "true".to_string(),
    );
    let ks = render::keystore_options(Some(&p), &Passwords::default(), &ann);
    let d = render::render_data(&mat, p.encoding, &ks, false, false).expect("render");
    let entries = certwright_pki::jks::decode(&d[keys::KEYSTORE_JKS], "changeme")
        .expect("decodes with changeme");
    assert!(
        matches!(&entries[0], certwright_pki::jks::Entry::PrivateKey { alias, .. } if alias == "alias")
    );
    let trust =
        certwright_pki::jks::decode(&d[keys::TRUSTSTORE_JKS], "changeme").expect("truststore");
    assert!(
        matches!(&trust[0], certwright_pki::jks::Entry::TrustedCert { alias, .. } if alias == "alias0")
    );
}

#[test]
fn in_a_cluster_others_labels_and_annotations_stay_and_are_no_change() {
    let with_template = |labels: &str| {
        params(&format!(
            "{BASIC}\nsecretTemplate: {{labels: {{{labels}}}, annotations: {{team: web}}}}"
        ))
    };
    let p = with_template("tier: front");
    let s = issue_with(&p, &SelfSigned::default(), NOW, None);
    let m = TlsMaterial::read(&s);
    let mat = material(&m);
    let pw = Passwords::default();
    let render = |p: &CertificateParams, current: Option<&SecretData>, md| {
        render::certificate_secret("c", p, &mat, &pw, None, current, md).expect("render")
    };
    let first = render(&p, None, render::Metadata::KeepOthers).secret;
    assert_eq!(
        first.annotations[certwright_api::annotations::TEMPLATE_KEYS],
        "annotation:team,label:tier"
    );
    // Someone else labels and annotates the Secret: kept, and not a change.
    let mut touched = first.clone();
    touched.labels.insert("backup".into(), "daily".into());
    touched
        .annotations
        .insert("replicator/allowed".into(), "true".into());
    let again = render(&p, Some(&touched), render::Metadata::KeepOthers);
    assert!(!again.changed, "others' metadata is no change");
    assert_eq!(again.secret.labels["backup"], "daily");
    // A label removed from the template goes; others' stay.
    let p2 = with_template("");
    let after = render(&p2, Some(&touched), render::Metadata::KeepOthers);
    assert!(after.changed);
    assert!(
        !after.secret.labels.contains_key("tier"),
        "{:?}",
        after.secret.labels
    );
    assert_eq!(after.secret.labels["backup"], "daily");
    assert_eq!(after.secret.annotations["replicator/allowed"], "true");
    assert_eq!(after.secret.annotations["team"], "web");
    // A stale cert-manager.io annotation is certwright's to remove.
    let mut stale = first.clone();
    stale
        .annotations
        .insert("cert-manager.io/stale".into(), "x".into());
    assert!(render(&p, Some(&stale), render::Metadata::KeepOthers).changed);
    // Locally the manifests define the whole Secret: anything else is removed.
    let local = render(&p, Some(&touched), render::Metadata::Exact);
    assert!(local.changed);
    assert!(!local.secret.labels.contains_key("backup"));
}

#[test]
fn usages_come_from_the_spec_even_when_the_request_does_not_carry_them() {
    // encodeUsagesInRequest: false leaves them out of the CSR; the issuer adds them.
    let p = params(&format!(
        "{BASIC}\nusages: [digital signature, client auth]\nencodeUsagesInRequest: false"
    ));
    let key = PrivateKey::generate(p.issuance.key()).expect("key");
    let csr_pem = issue::build_request(&p.issuance, &key).expect("csr");
    let blocks = certwright_pki::pem::decode_all(csr_pem.as_bytes()).expect("pem");
    let csr = certwright_pki::cert::parse_csr(&blocks[0].der).expect("csr");
    assert!(
        !csr.extensions.iter().any(
            |e| e.oid == certwright_pki::cert::OID_KU || e.oid == certwright_pki::cert::OID_EKU
        ),
        "no usages in the request"
    );
    let s = issue_with(&p, &SelfSigned::default(), NOW, Some(key));
    let material = TlsMaterial::read(&s);
    let leaf = &material.pair().expect("pair").1[0];
    assert_eq!(leaf.key_usages, ["digital signature"]);
    assert_eq!(leaf.ext_key_usages, ["client auth"]);
}

#[test]
fn secret_annotations_are_cert_managers() {
    let p = params(
        "secretName: s\nissuerRef: {name: self}\ncommonName: c.demo.svc\ndnsNames: [c.demo.svc]\nsubject:\n  serialNumber: \"1234\"\n  organizations: [\"Acme, Inc.\", Ops]\n  countries: [NL]\n  streetAddresses: [\" Damrak 1\"]",
    );
    let secret = issue_with(&p, &SelfSigned::default(), NOW, None);
    let a = &secret.annotations;
    let get = |k: &str| a.get(k).map(String::as_str);
    assert_eq!(
        get("cert-manager.io/subject-organizations"),
        Some("\"Acme, Inc.\",Ops")
    );
    assert_eq!(get("cert-manager.io/subject-countries"), Some("NL"));
    assert_eq!(
        get("cert-manager.io/subject-streetaddresses"),
        Some("\" Damrak 1\"")
    );
    assert_eq!(get("cert-manager.io/subject-serialnumber"), Some("1234"));
    for absent in [
        "cert-manager.io/subject-organizationalunits",
        "cert-manager.io/subject-provinces",
        "cert-manager.io/subject-localities",
        "cert-manager.io/subject-postalcodes",
        "cert-manager.io/email-sans",
    ] {
        assert_eq!(
            get(absent),
            None,
            "{absent}: left out when empty, as cert-manager"
        );
    }
    for empty in [
        "cert-manager.io/ip-sans",
        "cert-manager.io/uri-sans",
        "cert-manager.io/issuer-group",
    ] {
        assert_eq!(
            get(empty),
            Some(""),
            "{empty}: written, empty, as cert-manager"
        );
    }
    assert_eq!(get("cert-manager.io/issuer-kind"), Some("Issuer"));
}
