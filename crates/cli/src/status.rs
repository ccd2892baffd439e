//! `certwright status`: the local runtime's certificates as a table or JSON.

use crate::text::clean;
use anyhow::{bail, Result};
use certwright_local::records::{Overview, StateDir};
use std::path::Path;
use std::process::ExitCode;

pub fn print(state: &Path, output: &str) -> Result<ExitCode> {
    let dir = StateDir::open(state, false).ok();
    let Some(dir) = dir.filter(|d| d.exists()) else {
        bail!(
            "{} is not a certwright state directory (run `certwright local run --state {}` first)",
            state.display(),
            state.display()
        );
    };
    let o = dir.overview();
    // A runtime that cannot write its state (a full disk) cannot update these records.
    let degraded = o.health.as_ref().filter(|h| !h.ok);
    match output {
        "json" => {
            println!("{}", serde_json::to_string_pretty(&o)?);
        }
        "table" | "wide" => {
            if let Some(h) = degraded {
                println!(
                    "WARNING: certwright cannot write its state directory since {}: {}; what follows may be out of date",
                    h.since.as_deref().unwrap_or("?"),
                    clean(&h.message)
                );
                println!();
            }
            print_table(&o);
            print_notes(&o);
        }
        other => bail!("unknown output format {other:?}: use table or json"),
    }
    Ok(if degraded.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One row per Certificate, columns as wide as their widest cell.
fn print_table(o: &Overview) {
    let mut rows = vec![[
        "NAMESPACE".to_string(),
        "NAME".into(),
        "READY".into(),
        "REASON".into(),
        "NOT AFTER".into(),
        "RENEWAL TIME".into(),
        "SECRET".into(),
    ]];
    for c in &o.certificates {
        let ready = c.status.condition("Ready").cloned().unwrap_or_default();
        rows.push([
            c.namespace.clone(),
            c.name.clone(),
            if ready.status.is_empty() {
                "Unknown".into()
            } else {
                ready.status.clone()
            },
            ready.reason.clone(),
            c.status.not_after.clone().unwrap_or_else(|| "-".into()),
            c.status.renewal_time.clone().unwrap_or_else(|| "-".into()),
            c.secret_name.clone(),
        ]);
    }
    print_rows(rows);
    if !o.routes.is_empty() {
        println!();
        let mut rows = vec![[
            "ROUTE".to_string(),
            "HOST".into(),
            "TERMINATION".into(),
            "SERVICE".into(),
            "ADMITTED".into(),
            "SERIAL".into(),
            "NOT AFTER".into(),
        ]];
        for r in &o.routes {
            rows.push([
                format!("{}/{}", r.namespace, r.name),
                r.host.clone(),
                r.termination.clone(),
                format!(
                    "{} ({})",
                    r.service,
                    r.backend.as_deref().unwrap_or("no address")
                ),
                if r.admitted {
                    "True".into()
                } else {
                    "False".into()
                },
                r.serial.clone().unwrap_or_else(|| "-".into()),
                r.not_after.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        print_rows(rows);
    }
}

/// Rows as columns as wide as their widest cell.
fn print_rows<const N: usize>(mut rows: Vec<[String; N]>) {
    for r in rows.iter_mut() {
        for cell in r.iter_mut() {
            *cell = clean(cell);
        }
    }
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// What needs attention, below the table: certificates not ready, issuers not ready,
/// manifest problems, failed hooks.
fn print_notes(o: &Overview) {
    let not_ready: Vec<_> = o.certificates.iter().filter(|c| !c.ready()).collect();
    if !not_ready.is_empty() {
        println!();
        for c in not_ready {
            let r = c.status.condition("Ready").cloned().unwrap_or_default();
            println!(
                "{}/{}: {}",
                clean(&c.namespace),
                clean(&c.name),
                clean(&r.message)
            );
            if let Some(p) = &c.pending {
                print_order(&p.state);
            }
        }
    }
    let bad_issuers: Vec<_> = o
        .issuers
        .iter()
        .filter(|i| {
            i.status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status != "True")
        })
        .collect();
    if !bad_issuers.is_empty() {
        println!();
        for i in bad_issuers {
            let c = i
                .status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
                .unwrap_or_default();
            let ns = if i.namespace.is_empty() {
                String::new()
            } else {
                format!("{}/", i.namespace)
            };
            println!(
                "{} {} not ready: {}: {}",
                i.kind,
                clean(&format!("{ns}{}", i.name)),
                clean(&c.reason),
                clean(&c.message)
            );
        }
    }
    let route_notes: Vec<_> = o.routes.iter().filter(|r| r.reason.is_some()).collect();
    if !route_notes.is_empty() {
        println!();
        for r in route_notes {
            println!(
                "Route {}/{}{}: {}: {}",
                clean(&r.namespace),
                clean(&r.name),
                if r.admitted { "" } else { " not served" },
                clean(r.reason.as_deref().unwrap_or("")),
                clean(r.message.as_deref().unwrap_or(""))
            );
        }
    }
    if !o.problems.is_empty() {
        println!();
        for p in &o.problems {
            println!("problem: {}: {}", clean(&p.reason), clean(&p.message));
        }
    }
    let failed_hooks: Vec<_> = o
        .hooks
        .iter()
        .filter_map(|h| h.last_run.as_ref().filter(|r| !r.ok).map(|r| (h, r)))
        .collect();
    if !failed_hooks.is_empty() {
        println!();
        for (h, r) in failed_hooks {
            println!(
                "ReloadHook {}/{} failed at {}: {}: {}",
                clean(&h.namespace),
                clean(&h.name),
                r.time,
                clean(&r.reason),
                clean(&r.message)
            );
        }
    }
}

/// A pending ACME order and its challenges, indented under its Certificate.
fn print_order(state: &serde_json::Value) {
    let rec = certwright_acme::OrderRecord::from_state(state);
    let Some(url) = &rec.url else {
        return;
    };
    println!(
        "  order {}: {} ({} ACME requests)",
        clean(url),
        rec.state.as_str(),
        rec.requests
    );
    for ch in &rec.challenges {
        let kind = ch.kind.map(|k| k.acme_type()).unwrap_or("-");
        let name = if ch.wildcard {
            format!("*.{}", ch.dns_name)
        } else {
            ch.dns_name.clone()
        };
        println!(
            "  challenge {kind} {}: {}{}",
            clean(&name),
            clean(&ch.state),
            if ch.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", clean(&ch.reason))
            }
        );
    }
}
