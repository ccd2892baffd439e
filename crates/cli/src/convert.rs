//! `certwright convert`: manifests in, `cert-manager.io/v1` YAML out.

use anyhow::{Context, Result};
use certwright_api::acme::AcmeIssuer;
use certwright_api::legacy;
use certwright_api::manifest::{self, Resource};
use certwright_api::Issuer;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

/// Converts the manifests under `paths` (files, and directories as `local run` reads
/// them: their `.yaml`, `.yml` and `.json` files, subdirectories too with `recursive`).
pub fn run(paths: &[PathBuf], recursive: bool) -> Result<ExitCode> {
    let mut out: Vec<Value> = Vec::new();
    let mut issuer_idx = Vec::new();
    let mut acme_configs = Vec::new();
    let (files, unreadable) = certwright_local::model::manifest_files(paths, recursive);
    let mut errors = unreadable.len();
    for (_, p) in &unreadable {
        eprintln!("error: {}", p.message);
    }
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for doc in manifest::parse_documents(&text, &f.display().to_string()) {
            match doc.result {
                Ok(r) => {
                    let v = match &r {
                        Resource::Certificate(c) => serde_json::to_value(c)?,
                        Resource::Issuer(i) | Resource::ClusterIssuer(i) => {
                            issuer_idx.push((out.len(), i.clone()));
                            Value::Null
                        }
                        Resource::CertificateRequest(c) => serde_json::to_value(c)?,
                        Resource::Secret(s) => serde_json::to_value(s)?,
                        Resource::ConfigMap(c) => serde_json::to_value(c)?,
                        Resource::Route(r) => serde_json::to_value(r)?,
                        Resource::ReloadHook(h) => serde_json::to_value(h)?,
                    };
                    if let Some(acme) = doc.legacy_acme {
                        let id = r.id();
                        acme_configs.push((
                            format!(
                                "{}/{}",
                                if id.namespace.is_empty() {
                                    "default"
                                } else {
                                    &id.namespace
                                },
                                id.name
                            ),
                            acme,
                        ));
                    }
                    out.push(v);
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("error: {}: {}: {}", doc.source, e.reason, e.message);
                }
            }
        }
    }
    // Certificates' acme.config become selectors of the converted issuers' solvers.
    let mut issuers: Vec<Issuer> = issuer_idx.iter().map(|(_, i)| i.clone()).collect();
    {
        let mut refs: Vec<&mut AcmeIssuer> = issuers
            .iter_mut()
            .filter_map(|i| i.spec.acme.as_mut())
            .collect();
        for w in legacy::merge_solver_selectors(&mut refs, &acme_configs) {
            eprintln!("warning: {w}");
        }
    }
    for ((at, _), issuer) in issuer_idx.iter().zip(issuers) {
        out[*at] = serde_json::to_value(issuer)?;
    }
    for v in &out {
        println!("---");
        print!("{}", certwright_api::yaml::to_string(v)?);
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
