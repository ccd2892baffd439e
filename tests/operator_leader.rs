//! Two operator replicas share one Lease: only the holder reconciles, and when it stops the
//! other takes over and keeps issuing. Both run under deploy/rbac.yaml.

mod common;

use certwright_testkube::ControlPlane;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn start(kubeconfig: &std::path::Path, identity: &str, log: &std::path::Path) -> Child {
    Command::new(bin())
        .args(["operator", "--leader-elect", "--metrics-address", ""])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", identity)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).expect("log")))
        .spawn()
        .expect("operator starts")
}

fn certificate(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{{"name":"{name}","namespace":"demo"}},
        "spec":{{"secretName":"{name}-tls","issuerRef":{{"name":"self"}},"dnsNames":["{name}.demo.svc"],"privateKey":{{"algorithm":"ECDSA"}}}}}}"#
    )
}

fn ready(cp: &ControlPlane, name: &str) -> Option<()> {
    let c = cp
        .admin(
            "GET",
            &format!("/apis/cert-manager.io/v1/namespaces/demo/certificates/{name}"),
            None,
        )
        .ok()?;
    c["status"]["conditions"]
        .as_array()?
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
        .then_some(())
}

fn holder(cp: &ControlPlane) -> Option<String> {
    let l = cp
        .admin(
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/certwright/leases/certwright",
            None,
        )
        .ok()?;
    l["spec"]["holderIdentity"].as_str().map(str::to_string)
}

#[test]
fn one_replica_leads_and_a_standby_takes_over() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    cp.create_all(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\napiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: self, namespace: demo}\nspec: {selfSigned: {}}\n",
    )
    .expect("issuer");
    let tmp = tempfile::tempdir().expect("tmp");
    let (la, lb) = (tmp.path().join("a.log"), tmp.path().join("b.log"));
    let mut a = start(&kubeconfig, "replica-a", &la);
    std::thread::sleep(Duration::from_millis(500));
    let mut b = start(&kubeconfig, "replica-b", &lb);
    cp.admin(
        "POST",
        "/apis/cert-manager.io/v1/namespaces/demo/certificates",
        Some(&certificate("first")),
    )
    .expect("create");
    cp.wait_for("the first certificate", Duration::from_secs(30), || {
        ready(&cp, "first")
    })
    .expect("issued");
    let leader = cp
        .wait_for("a Lease holder", Duration::from_secs(10), || holder(&cp))
        .expect("holder");
    let (lead, standby, lead_log, standby_log) = if leader == "replica-a" {
        (&mut a, &mut b, &la, &lb)
    } else {
        (&mut b, &mut a, &lb, &la)
    };
    // The standby may start logging later than the leader issued (a busy machine): wait
    // for its first line, then check that it only waits.
    let slog = cp
        .wait_for(
            "the standby to wait for leadership",
            Duration::from_secs(30),
            || {
                std::fs::read_to_string(standby_log)
                    .ok()
                    .filter(|l| l.contains("waiting for leadership"))
            },
        )
        .unwrap_or_else(|e| {
            panic!(
                "{e}: {}",
                std::fs::read_to_string(standby_log).unwrap_or_default()
            )
        });
    assert!(!slog.contains("became leader"), "standby: {slog}");
    assert!(
        !slog.contains("certificate issued"),
        "the standby reconciled: {slog}"
    );
    assert!(std::fs::read_to_string(lead_log)
        .unwrap_or_default()
        .contains("became leader"));

    // The leader stops (and gives the Lease up); the standby takes over and keeps issuing.
    terminate(lead);
    let new_holder = cp
        .wait_for("the standby to lead", Duration::from_secs(20), || {
            holder(&cp).filter(|h| *h != leader)
        })
        .expect("take-over");
    println!("{leader} stepped down; {new_holder} leads");
    cp.admin(
        "POST",
        "/apis/cert-manager.io/v1/namespaces/demo/certificates",
        Some(&certificate("second")),
    )
    .expect("create");
    cp.wait_for("the second certificate", Duration::from_secs(30), || {
        ready(&cp, "second")
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(standby_log).unwrap_or_default()
        )
    });
    terminate(standby);
}
