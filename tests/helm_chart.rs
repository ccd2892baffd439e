//! The Helm chart at deploy/helm/certwright: `helm lint` passes; with default values
//! `helm template` renders exactly the objects of the plain manifests in deploy/ (CRDs,
//! RBAC, Deployment, Service; the Namespace is Helm's `--create-namespace`); its values
//! (image, watched namespace, log level and format, leader election, replicas) reach
//! the Deployment; and a rendering with non-default values applies to a real API server.
//!
//! Helm comes from `scripts/helm-bin.sh` (CERTWRIGHT_HELM), else PATH.

mod common;

use certwright_testkube::ControlPlane;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

fn helm() -> Option<String> {
    if let Ok(h) = std::env::var("CERTWRIGHT_HELM") {
        return Some(h);
    }
    require("helm").then(|| "helm".to_string())
}

fn run_helm(helm: &str, args: &[&str]) -> String {
    let out = Command::new(helm).args(args).output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Objects of a multi-document YAML stream, keyed by kind, namespace and name.
fn objects(yaml: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for v in certwright_testkube::yaml_documents(yaml).expect("YAML documents") {
        if v.is_null() {
            continue;
        }
        let key = format!(
            "{} {}/{}",
            v["kind"].as_str().unwrap_or_default(),
            v["metadata"]["namespace"].as_str().unwrap_or_default(),
            v["metadata"]["name"].as_str().unwrap_or_default()
        );
        assert!(out.insert(key.clone(), v).is_none(), "{key} twice");
    }
    out
}

fn render(helm: &str, extra: &[&str]) -> String {
    let chart = repo().join("deploy/helm/certwright");
    let mut args = vec![
        "template",
        "certwright",
        chart.to_str().expect("path"),
        "--namespace",
        "certwright",
    ];
    args.extend_from_slice(extra);
    run_helm(helm, &args)
}

fn deployment_args(objs: &BTreeMap<String, Value>) -> Vec<String> {
    objs["Deployment certwright/certwright"]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn chart_renders_the_plain_manifests_and_its_values() {
    let Some(helm) = helm() else {
        return;
    };
    let lint = run_helm(
        &helm,
        &[
            "lint",
            "--strict",
            repo()
                .join("deploy/helm/certwright")
                .to_str()
                .expect("path"),
        ],
    );
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    // Default values: the same objects as the plain manifests.
    let rendered = objects(&render(&helm, &["--include-crds"]));
    let mut plain = BTreeMap::new();
    for f in [
        "deploy/crds/crds.yaml",
        "deploy/rbac.yaml",
        "deploy/operator.yaml",
    ] {
        plain.extend(objects(
            &std::fs::read_to_string(repo().join(f)).expect("manifest"),
        ));
    }
    plain
        .remove("Namespace /certwright")
        .expect("plain manifests create the namespace");
    let rendered_keys: Vec<_> = rendered.keys().collect();
    let plain_keys: Vec<_> = plain.keys().collect();
    assert_eq!(rendered_keys, plain_keys, "the chart renders other objects");
    for (k, v) in &plain {
        assert_eq!(
            &rendered[k], v,
            "{k} differs between the chart and deploy/ (left: chart)"
        );
    }

    // Values reach the Deployment.
    let custom = render(
        &helm,
        &[
            "--set",
            "image.tag=1.2.3,image.pullPolicy=Always,replicas=1,watchNamespace=demo,logLevel=debug,logFormat=json,leaderElection.enabled=false,webhook.enabled=false,capabilities.routes=false,capabilities.cainjector=false,capabilities.shims=false,capabilities.reloader=false",
        ],
    );
    let objs = objects(&custom);
    let args = deployment_args(&objs);
    for a in ["--namespace=demo", "--log-level=debug", "--log-format=json"] {
        assert!(args.iter().any(|x| x == a), "{a} missing from {args:?}");
    }
    assert!(!args.iter().any(|x| x == "--leader-elect"), "{args:?}");
    // Capabilities turned off leave the flag and take their RBAC rules with them.
    assert!(args.iter().any(|x| x == "--enable=keystores"), "{args:?}");
    let rules = objs["ClusterRole /certwright"]["rules"].to_string();
    for gone in [
        "route.openshift.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "admissionregistration.k8s.io",
        "deployments",
    ] {
        assert!(!rules.contains(gone), "{gone} still granted: {rules}");
    }
    assert!(
        !args.iter().any(|x| x.starts_with("--rollout")),
        "rollout flags without the reloader: {args:?}"
    );
    assert!(
        rules.contains("configmaps"),
        "keystores still need ConfigMaps: {rules}"
    );
    // The webhook is on by default (the plain manifests have it) and can be turned off.
    assert!(!args.iter().any(|x| x.starts_with("--webhook")), "{args:?}");
    for k in [
        "MutatingWebhookConfiguration /certwright-webhook",
        "ValidatingWebhookConfiguration /certwright-webhook",
        "Service certwright/certwright-webhook",
    ] {
        assert!(plain.contains_key(k), "deploy/ has {k}");
        assert!(
            !objs.contains_key(k),
            "{k} rendered with webhook.enabled=false"
        );
    }
    let d = &objs["Deployment certwright/certwright"];
    assert_eq!(d["spec"]["replicas"], 1);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "ghcr.io/certwright/certwright:1.2.3");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert!(
        !objs.contains_key("Role certwright/certwright-leader-election"),
        "no leader-election Role without leader election"
    );

    // The operator accepts the flags the chart renders.
    let out = Command::new(bin())
        .args(["operator", "--help"])
        .output()
        .expect("certwright");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--leader-elect",
        "--cluster-resource-namespace",
        "--metrics-address",
        "--log-level",
        "--log-format",
        "--namespace",
    ] {
        assert!(help.contains(flag), "certwright operator has no {flag}");
    }

    // The non-default rendering applies to a real API server.
    let Some(cp) = ControlPlane::start_or_skip() else {
        return;
    };
    cp.admin(
        "POST",
        "/api/v1/namespaces",
        Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"certwright"}}"#),
    )
    .expect("namespace");
    cp.create_all(&custom).expect("the rendered chart applies");
    let dep = cp
        .admin(
            "GET",
            "/apis/apps/v1/namespaces/certwright/deployments/certwright",
            None,
        )
        .expect("deployment");
    assert_eq!(dep["spec"]["replicas"], 1);
}
