//! A CA issuer's certificate replaced under the certificates it signed, with no moment
//! where a client distrusts a server.
//!
//! A leaf's `ca.crt` is what its workload trusts when it calls others. When the CA is
//! renewed with a new key, a leaf reissued at once would be presented to callers that
//! still trust only the old CA; a leaf not reissued would no longer verify against its
//! issuer at all. So each leaf of a CA issuer moves in three steps, decided here for both
//! runtimes from the leaf's Secret, the issuer's current CA and the time:
//!
//! 1. **Trust first.** The Secret's `ca.crt` gains the issuer's current CA, keeping what it
//!    held (the old CA), and the annotation `certwright.io/trust-extended-at` records when.
//!    The certificate is not touched.
//! 2. **Then the leaf**, `grace` later (time for every workload to load the wider trust: all
//!    leaves of the issuer take step 1 in the same pass, or within seconds in a cluster),
//!    if it does not verify against the current CA: it is reissued, and its `ca.crt`
//!    still holds both.
//! 3. **Then the old CA goes**: `overlap` after step 1 (when every leaf has been reissued
//!    and loaded), `ca.crt` becomes the current CA alone and the annotation goes.
//!
//! A CA renewed with its key kept (rotationPolicy Never) still verifies its leaves: only
//! the trust steps happen, no leaf is reissued.

use certwright_pki::der::{parse_rfc3339, rfc3339};
use certwright_pki::inspect::CertInfo;
use std::collections::BTreeMap;

/// When a leaf's trust was extended to its issuer's new CA (RFC 3339).
pub const TRUST_EXTENDED_AT: &str = "certwright.io/trust-extended-at";

/// The pace of a rotation (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// From trusting the new CA to presenting a leaf it signed.
    pub grace: i64,
    /// From trusting the new CA to no longer trusting the old one.
    pub overlap: i64,
}

impl Timing {
    /// `overlap` is three graces: one for the trust, one for the reissued leaves to be
    /// loaded, one to spare.
    pub fn from_grace(grace: std::time::Duration) -> Timing {
        let g = grace.as_secs().max(1) as i64;
        Timing {
            grace: g,
            overlap: 3 * g,
        }
    }
}

impl Default for Timing {
    /// The local runtime's: workloads there read a Secret the moment it is published.
    fn default() -> Timing {
        Timing::from_grace(std::time::Duration::from_secs(5))
    }
}

/// What a CA issuer's leaf needs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// Nothing; `carry` is the annotation to keep (an overlap still running).
    Settled {
        carry: Option<String>,
        wake: Option<i64>,
    },
    /// The leaf is not the current CA's, and the new trust is still spreading: no leaf is
    /// issued before `until`.
    Wait { until: i64, carry: Option<String> },
    /// Rewrite `ca.crt` as `ca` (current CA first), the annotation set (`Some`) or
    /// removed (`None`); look again at `wake`.
    Trust {
        ca: Vec<CertInfo>,
        annotation: Option<String>,
        wake: Option<i64>,
    },
    /// Reissue now; `carry`: the annotation the new Secret keeps.
    Reissue {
        message: String,
        carry: Option<String>,
    },
}

/// Decides for a leaf signed by `chain[0]`'s issuer, whose Secret holds `ca_crt` and
/// `annotations`, under a CA issuer that signs with `signer` and hands out `top` as
/// `ca.crt`.
pub fn check(
    chain: &[CertInfo],
    ca_crt: &[CertInfo],
    annotations: &BTreeMap<String, String>,
    signer: &CertInfo,
    top: &CertInfo,
    now: i64,
    t: Timing,
) -> Rotation {
    let Some(leaf) = chain.first() else {
        return Rotation::Settled {
            carry: None,
            wake: None,
        };
    };
    let extended_at = annotations
        .get(TRUST_EXTENDED_AT)
        .and_then(|v| parse_rfc3339(v));
    let trusts_current = ca_crt.iter().any(|c| c.der == top.der);
    if !trusts_current {
        let mut ca = vec![top.clone()];
        for c in ca_crt {
            if !ca.iter().any(|x| x.der == c.der) && c.not_after > now {
                ca.push(c.clone());
            }
        }
        return Rotation::Trust {
            ca,
            annotation: Some(rfc3339(now)),
            wake: Some(now + t.grace),
        };
    }
    let verifies = leaf.is_signed_by(signer).is_ok();
    if !verifies {
        return match extended_at {
            Some(at) if now < at + t.grace => Rotation::Wait {
                until: at + t.grace,
                carry: annotations.get(TRUST_EXTENDED_AT).cloned(),
            },
            _ => Rotation::Reissue {
                message: format!(
                    "Issuing certificate as it is not signed by its issuer's current CA {:?} (trusted since {})",
                    top.subject,
                    extended_at.map(rfc3339).unwrap_or_else(|| "before".into())
                ),
                carry: annotations.get(TRUST_EXTENDED_AT).cloned(),
            },
        };
    }
    let extra = ca_crt.iter().any(|c| c.der != top.der);
    match extended_at {
        Some(at) if extra && now < at + t.overlap => Rotation::Settled {
            carry: annotations.get(TRUST_EXTENDED_AT).cloned(),
            wake: Some(at + t.overlap),
        },
        Some(_) => Rotation::Trust {
            ca: vec![top.clone()],
            annotation: None,
            wake: None,
        },
        // Other CAs in ca.crt that no rotation put there: not certwright's to remove.
        None => Rotation::Settled {
            carry: None,
            wake: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certwright_pki::cert::{self, Profile, Signer, Validity};
    use certwright_pki::{KeyAlgorithm, PrivateKey};

    fn key() -> PrivateKey {
        PrivateKey::generate(KeyAlgorithm::Ecdsa(certwright_pki::Curve::P256)).expect("key")
    }

    fn sign(
        name: &str,
        is_ca: bool,
        subject_key: &PrivateKey,
        by: Option<(&CertInfo, &PrivateKey)>,
    ) -> CertInfo {
        let profile = Profile {
            dns_names: vec![name.into()],
            is_ca,
            ..Default::default()
        };
        let csr =
            cert::parse_csr(&cert::build_csr(&profile, subject_key).expect("csr")).expect("parse");
        let validity = Validity {
            not_before: 1_800_000_000,
            not_after: 1_900_000_000,
        };
        let signer = match by {
            None => Signer::SelfSigned(subject_key),
            Some((ca, k)) => Signer::Ca {
                name_der: &ca.subject_der,
                key_id: ca.subject_key_id.as_deref(),
                key: k,
            },
        };
        let der = cert::sign_csr(
            &csr,
            is_ca,
            &validity,
            &cert::random_serial(),
            &signer,
            None,
            &[],
        )
        .expect("sign");
        CertInfo::parse(&der).expect("parse cert")
    }

    #[test]
    fn trust_first_then_the_leaf_then_the_old_ca_goes() {
        let t = Timing {
            grace: 5,
            overlap: 15,
        };
        let (k1, k2, kl) = (key(), key(), key());
        let old = sign("root", true, &k1, None);
        let new = sign("root", true, &k2, None);
        let leaf = sign("svc", false, &kl, Some((&old, &k1)));
        let now = 1_850_000_000;
        let none = BTreeMap::new();
        // Up to date under the old CA.
        assert_eq!(
            check(
                std::slice::from_ref(&leaf),
                std::slice::from_ref(&old),
                &none,
                &old,
                &old,
                now,
                t
            ),
            Rotation::Settled {
                carry: None,
                wake: None
            }
        );
        // The CA changed: trust it first, the leaf stays.
        let Rotation::Trust {
            ca,
            annotation,
            wake,
        } = check(
            std::slice::from_ref(&leaf),
            std::slice::from_ref(&old),
            &none,
            &new,
            &new,
            now,
            t,
        )
        else {
            panic!("trust first")
        };
        assert_eq!(ca, vec![new.clone(), old.clone()]);
        assert_eq!(annotation.as_deref(), Some(rfc3339(now).as_str()));
        assert_eq!(wake, Some(now + 5));
        let ann: BTreeMap<String, String> = [(TRUST_EXTENDED_AT.to_string(), rfc3339(now))].into();
        let both = [new.clone(), old.clone()];
        // Within the grace: wait.
        assert_eq!(
            check(
                std::slice::from_ref(&leaf),
                &both,
                &ann,
                &new,
                &new,
                now + 4,
                t
            ),
            Rotation::Wait {
                until: now + 5,
                carry: Some(rfc3339(now))
            }
        );
        // After it: reissue, keeping the annotation.
        let r = check(
            std::slice::from_ref(&leaf),
            &both,
            &ann,
            &new,
            &new,
            now + 5,
            t,
        );
        assert!(
            matches!(&r, Rotation::Reissue { carry: Some(c), .. } if *c == rfc3339(now)),
            "{r:?}"
        );
        // Reissued: both CAs stay until the overlap ends, then the old one goes.
        let leaf2 = sign("svc", false, &kl, Some((&new, &k2)));
        assert_eq!(
            check(
                std::slice::from_ref(&leaf2),
                &both,
                &ann,
                &new,
                &new,
                now + 6,
                t
            ),
            Rotation::Settled {
                carry: Some(rfc3339(now)),
                wake: Some(now + 15)
            }
        );
        assert_eq!(
            check(
                std::slice::from_ref(&leaf2),
                &both,
                &ann,
                &new,
                &new,
                now + 15,
                t
            ),
            Rotation::Trust {
                ca: vec![new.clone()],
                annotation: None,
                wake: None
            }
        );
        // Done.
        assert_eq!(
            check(
                &[leaf2],
                std::slice::from_ref(&new),
                &none,
                &new,
                &new,
                now + 16,
                t
            ),
            Rotation::Settled {
                carry: None,
                wake: None
            }
        );
    }

    #[test]
    fn a_ca_renewed_with_its_key_reissues_nothing() {
        let t = Timing::default();
        let (k1, kl) = (key(), key());
        let old = sign("root", true, &k1, None);
        let renewed = sign("root", true, &k1, None);
        let leaf = sign("svc", false, &kl, Some((&old, &k1)));
        let now = 1_850_000_000;
        let Rotation::Trust {
            annotation: Some(a),
            ..
        } = check(
            std::slice::from_ref(&leaf),
            std::slice::from_ref(&old),
            &BTreeMap::new(),
            &renewed,
            &renewed,
            now,
            t,
        )
        else {
            panic!("trust")
        };
        let ann: BTreeMap<String, String> = [(TRUST_EXTENDED_AT.to_string(), a)].into();
        let both = [renewed.clone(), old.clone()];
        // The leaf verifies against the renewed CA (same key, same name): never reissued.
        for later in [now + 1, now + t.grace, now + t.grace + 1] {
            assert!(matches!(
                check(
                    std::slice::from_ref(&leaf),
                    &both,
                    &ann,
                    &renewed,
                    &renewed,
                    later,
                    t
                ),
                Rotation::Settled { .. }
            ));
        }
        assert!(matches!(
            check(&[leaf], &both, &ann, &renewed, &renewed, now + t.overlap, t),
            Rotation::Trust {
                annotation: None,
                ..
            }
        ));
        // Extra CAs that no rotation added are left alone.
        let stranger = sign("other", true, &key(), None);
        let leaf = sign("svc", false, &kl, Some((&renewed, &k1)));
        assert_eq!(
            check(
                &[leaf],
                &[renewed.clone(), stranger],
                &BTreeMap::new(),
                &renewed,
                &renewed,
                now,
                t
            ),
            Rotation::Settled {
                carry: None,
                wake: None
            }
        );
    }
}
