//! `certwright renew`: asks for new certificates now, in a local state directory or in a
//! cluster. In a cluster it sets the Certificate's `Issuing` condition to True with reason
//! `ManuallyTriggered`, exactly as `cmctl renew` does, so either tool works with either
//! runtime; locally it leaves a marker that the runtime turns into that same condition.

use anyhow::{bail, Context, Result};
use certwright_api::CertificateStatus;
use certwright_engine::lifecycle::request_renewal;
use std::path::Path;

/// What to renew.
pub struct Selection<'a> {
    pub names: &'a [String],
    pub namespace: &'a str,
    pub all: bool,
    pub all_namespaces: bool,
}

impl Selection<'_> {
    fn check(&self) -> Result<()> {
        match (self.names.is_empty(), self.all || self.all_namespaces) {
            (true, false) => bail!("name the certificates to renew, or pass --all"),
            (false, true) => bail!("either name certificates or pass --all, not both"),
            _ => Ok(()),
        }
    }

    fn wants(&self, ns: &str, name: &str) -> bool {
        if self.all_namespaces {
            return true;
        }
        ns == self.namespace && (self.all || self.names.iter().any(|n| n == name))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Marks Certificates of a local state directory for renewal.
pub fn local(state: &Path, sel: &Selection<'_>) -> Result<()> {
    sel.check()?;
    let dir = certwright_local::records::StateDir::open(state, false)
        .with_context(|| format!("state directory {}", state.display()))?;
    let known: Vec<(String, String)> = dir.load_records().into_keys().collect();
    let mut chosen: Vec<&(String, String)> =
        known.iter().filter(|(ns, n)| sel.wants(ns, n)).collect();
    for n in sel.names {
        if !chosen
            .iter()
            .any(|(ns, name)| ns == sel.namespace && name == n)
        {
            bail!(
                "Certificate {}/{n} is not in the state directory {} (has the runtime seen it yet?)",
                sel.namespace,
                state.display()
            );
        }
    }
    chosen.sort();
    for (ns, name) in chosen {
        dir.request_renewal(ns, name)
            .with_context(|| format!("marking {ns}/{name} for renewal"))?;
        println!("Manually triggered issuance of Certificate {ns}/{name}");
    }
    Ok(())
}

/// Sets the Issuing condition of Certificates in a cluster, as cmctl does.
pub fn cluster(sel: &Selection<'_>) -> Result<()> {
    use certwright_operator::kinds::CertificateObject;
    use kube::api::{Api, ListParams, Patch, PatchParams};
    use kube::ResourceExt;
    sel.check()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = kube::Client::try_default().await?;
        let api: Api<CertificateObject> = if sel.all_namespaces {
            Api::all(client.clone())
        } else {
            Api::namespaced(client.clone(), sel.namespace)
        };
        let certs: Vec<CertificateObject> = if sel.names.is_empty() {
            api.list(&ListParams::default()).await?.items
        } else {
            let mut out = Vec::new();
            for n in sel.names {
                out.push(
                    api.get(n)
                        .await
                        .with_context(|| format!("Certificate {}/{n}", sel.namespace))?,
                );
            }
            out
        };
        for c in certs {
            let ns = c.namespace().unwrap_or_default();
            let name = c.name_any();
            let mut status: CertificateStatus = c.status_or_default();
            request_renewal(&mut status, now());
            if let Some(cond) = status.conditions.iter_mut().find(|c| c.type_ == "Issuing") {
                cond.observed_generation = c.metadata.generation;
            }
            let api: Api<CertificateObject> = Api::namespaced(client.clone(), &ns);
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&ConditionsPatch::of(&status)),
            )
            .await
            .with_context(|| format!("setting the Issuing condition of {ns}/{name}"))?;
            println!("Manually triggered issuance of Certificate {ns}/{name}");
        }
        anyhow::Ok(())
    })
}

/// A merge patch of a Certificate's status conditions only (what cmctl renew writes).
#[derive(Debug, serde::Serialize)]
struct ConditionsPatch<'a> {
    status: Conditions<'a>,
}

#[derive(Debug, serde::Serialize)]
struct Conditions<'a> {
    conditions: &'a [certwright_api::Condition],
}

impl<'a> ConditionsPatch<'a> {
    fn of(status: &'a CertificateStatus) -> Self {
        ConditionsPatch {
            status: Conditions {
                conditions: &status.conditions,
            },
        }
    }
}
