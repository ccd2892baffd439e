//! Rollouts with Stakater Reloader's annotations on a real control plane, under the
//! shipped RBAC; kube-controller-manager makes a ReplicaSet per rollout, as in a cluster.
//!
//! - The reference scenario's Deployments (`secret.reloader.stakater.com/reload` naming
//!   their service Secret, keystores generated in it), one with `auto`, a StatefulSet and
//!   a DaemonSet: a Secret's creation and a metadata-only change roll nothing; a renewal
//!   followed by two more writes within the debounce window rolls each follower exactly
//!   once (one new ReplicaSet, one Reloaded Event), with Reloader's env var holding the
//!   data's hash; a workload Reloader already rolled (its env var holds the hash) is not
//!   rolled at startup; an unannotated Deployment is never written; an operator restart
//!   rolls nothing, and after it the annotations strategy writes Reloader's annotation.
//! - The rate limit: four workloads following one Secret roll out at most one per turn
//!   (`--rollouts-per-minute 6`: 10 s apart), the backlog visible in a metric.
//! - A workload whose pods are not updated from its previous rollout (paused) is not
//!   rolled again until they are (unpaused), or until `--rollout-wait` has passed.

mod common;

use base64::Engine;
use certwright_testkube::ControlPlane;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn get(cp: &ControlPlane, path: &str) -> Value {
    cp.admin("GET", path, None).unwrap_or_default()
}

fn workload(cp: &ControlPlane, ns: &str, kind: &str, name: &str) -> Value {
    get(cp, &format!("/apis/apps/v1/namespaces/{ns}/{kind}/{name}"))
}

fn deployment(cp: &ControlPlane, ns: &str, name: &str) -> Value {
    workload(cp, ns, "deployments", name)
}

/// A workload's pod template: a rollout is a change to it. (Not `generation`: a
/// Deployment's moves with its annotations too.)
fn template(w: &Value) -> Value {
    w["spec"]["template"].clone()
}

/// The names of the ReplicaSets of a Deployment (its pods are labelled app=NAME).
fn replica_sets(cp: &ControlPlane, ns: &str, app: &str) -> Vec<String> {
    let list = get(
        cp,
        &format!("/apis/apps/v1/namespaces/{ns}/replicasets?labelSelector=app%3D{app}"),
    );
    let mut names: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// How many times an object's Reloaded Event was recorded (a repeat is counted on the
/// first Event, as Kubernetes' recorder does).
fn reloaded(cp: &ControlPlane, ns: &str, name: &str) -> i64 {
    let list = get(
        cp,
        &format!("/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3D{name},reason%3DReloaded"),
    );
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["count"].as_i64().unwrap_or(1))
        .sum()
}

/// The value of an env var on a workload's pod template.
fn env(w: &Value, var: &str) -> Option<String> {
    w["spec"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .find(|e| e["name"] == var)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

fn record(w: &Value) -> Value {
    w["metadata"]["annotations"]["certwright.io/reloaded-from"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

/// Reloader's hash of a Secret's data, computed here with openssl: SHA-1 of the sorted
/// `key=value` entries joined with `;`.
fn reloader_hash(cp: &ControlPlane, ns: &str, secret: &str) -> String {
    let s = get(cp, &format!("/api/v1/namespaces/{ns}/secrets/{secret}"));
    let mut entries: Vec<Vec<u8>> = s["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| {
            let value = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .expect("base64");
            [k.as_bytes(), b"=", &value].concat()
        })
        .collect();
    entries.sort();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("joined");
    std::fs::write(&input, entries.join(&b';')).expect("write");
    let out = Command::new("openssl")
        .args(["dgst", "-sha1", "-r"])
        .arg(&input)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A workload of `kind` with one container mounting `secret` at /keystores.
fn workload_yaml(
    kind: &str,
    ns: &str,
    name: &str,
    annotations: &str,
    secret: &str,
    extra: &str,
) -> String {
    let replicas = if kind == "DaemonSet" {
        ""
    } else {
        "  replicas: 1\n"
    };
    let service = if kind == "StatefulSet" {
        format!("  serviceName: {name}\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations: {{{annotations}}}\nspec:\n{replicas}{service}{extra}  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      - name: app\n        image: example.com/{name}:1\n        volumeMounts: [{{name: keystores, mountPath: /keystores, readOnly: true}}]\n      volumes: [{{name: keystores, secret: {{secretName: {secret}}}}}]\n"
    )
}

fn certificate(name: &str) -> String {
    format!(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  secretName: service-{name}\n  commonName: {name}.demo.svc\n  dnsNames: [{name}, {name}.demo.svc]\n  issuerRef: {{name: internal-issuer, kind: ClusterIssuer}}\n  privateKey: {{encoding: PKCS8}}\n  secretTemplate:\n    annotations: {{cert-utils-operator.redhat-cop.io/generate-java-keystores: 'true'}}\n"
    )
}

fn kubectl(cp: &ControlPlane, args: &[&str]) {
    let (ok, out) = cp.kubectl(args, "");
    assert!(ok, "kubectl {args:?}: {out}");
}

fn renew(kubeconfig: &std::path::Path, names: &[&str]) {
    let out = Command::new(bin())
        .arg("renew")
        .args(names)
        .args(["-n", "demo"])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("renew");
    assert!(out.status.success(), "renew: {}", text(&out));
}

#[test]
fn scenario_workloads_roll_out_once_per_change_and_never_for_metadata_or_restarts() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    let internal =
        std::fs::read_to_string(repo().join("examples/e2e/internal-pki.yaml")).expect("pki");
    let reload = |s: &str| format!("secret.reloader.stakater.com/reload: {s}");
    let mut docs = vec![
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: cert-manager}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n".to_string(),
        internal,
        certificate("customer"),
        certificate("preference"),
        certificate("recommendation"),
    ];
    for (name, secret) in [
        ("customer", "service-customer"),
        ("preference-v1", "service-preference"),
        ("recommendation-v1", "service-recommendation"),
    ] {
        docs.push(workload_yaml(
            "Deployment",
            "demo",
            name,
            &reload(secret),
            secret,
            "",
        ));
    }
    // Following the customer Secret by `auto`, and as a StatefulSet and a DaemonSet.
    docs.push(workload_yaml(
        "Deployment",
        "demo",
        "auto",
        "reloader.stakater.com/auto: 'true'",
        "service-customer",
        "",
    ));
    docs.push(workload_yaml(
        "StatefulSet",
        "demo",
        "stateful",
        "reloader.stakater.com/auto: 'true'",
        "service-customer",
        "",
    ));
    docs.push(workload_yaml(
        "DaemonSet",
        "demo",
        "daemon",
        "secret.reloader.stakater.com/auto: 'true'",
        "service-customer",
        "",
    ));
    // A reload list entry that is a pattern (Reloader matches whole names), for a Secret
    // the pod spec does not use.
    docs.push(workload_yaml(
        "Deployment",
        "demo",
        "patterned",
        &reload("'service-cust.*'"),
        "service-recommendation",
        "",
    ));
    // Not annotated: never written.
    docs.push(workload_yaml(
        "Deployment",
        "demo",
        "unrelated",
        "",
        "service-customer",
        "",
    ));
    cp.create_all(&docs.join("---\n")).expect("manifests");
    let followers = [
        ("deployments", "customer", "service-customer"),
        ("deployments", "preference-v1", "service-preference"),
        ("deployments", "recommendation-v1", "service-recommendation"),
        ("deployments", "auto", "service-customer"),
        ("statefulsets", "stateful", "service-customer"),
        ("daemonsets", "daemon", "service-customer"),
        ("deployments", "patterned", "service-customer"),
    ];
    let initial: std::collections::BTreeMap<&str, Value> = followers
        .iter()
        .map(|(kind, name, _)| (*name, template(&workload(&cp, "demo", kind, name))))
        .collect();
    let unchanged =
        |name: &str, kind: &str| template(&workload(&cp, "demo", kind, name)) == initial[name];

    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let mut op = start_operator(
        &kubeconfig,
        &log,
        &[
            "--metrics-address",
            "",
            "--rollout-debounce",
            "3s",
            "--rollouts-per-minute",
            "0",
        ],
    );
    let logs = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();

    // The Secrets are issued after the workloads exist: their creation is recorded on
    // each follower (first sight), and rolls nothing.
    for (kind, name, secret) in followers {
        cp.wait_for(
            &format!("{name} records {secret}"),
            Duration::from_secs(60),
            || {
                let w = workload(&cp, "demo", kind, name);
                record(&w)[format!("Secret/{secret}")]
                    .as_str()
                    .map(str::to_string)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&log)));
    }
    for (kind, name, secret) in followers {
        let w = workload(&cp, "demo", kind, name);
        assert!(
            unchanged(name, kind),
            "{name} rolled when its Secret was created\n{}",
            logs(&log)
        );
        assert_eq!(
            record(&w)[format!("Secret/{secret}")],
            reloader_hash(&cp, "demo", secret),
            "{name}'s record is Reloader's hash of {secret}"
        );
    }
    // kube-controller-manager made the first ReplicaSet of each Deployment.
    for name in [
        "customer",
        "preference-v1",
        "recommendation-v1",
        "auto",
        "patterned",
        "unrelated",
    ] {
        cp.wait_for(
            &format!("{name}'s first ReplicaSet"),
            Duration::from_secs(30),
            || (replica_sets(&cp, "demo", name).len() == 1).then_some(()),
        )
        .expect("ReplicaSet");
    }
    let unrelated_rv = deployment(&cp, "demo", "unrelated")["metadata"]["resourceVersion"].clone();

    // A workload Reloader rolled before (its env var holds the current hash) is not
    // rolled at startup, nor when recorded.
    let hash = reloader_hash(&cp, "demo", "service-customer");
    let migrated = workload_yaml("Deployment", "demo", "migrated", &reload("service-customer"), "service-customer", "")
        .replace(
            "        volumeMounts:",
            &format!("        env: [{{name: STAKATER_SERVICE_CUSTOMER_SECRET, value: {hash}}}]\n        volumeMounts:"),
        );
    cp.create_all(&migrated).expect("migrated");
    cp.wait_for("migrated recorded", Duration::from_secs(30), || {
        record(&deployment(&cp, "demo", "migrated"))["Secret/service-customer"]
            .as_str()
            .map(str::to_string)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&log)));
    let migrated_template = template(&deployment(&cp, "demo", "migrated"));
    assert_eq!(
        env(
            &deployment(&cp, "demo", "migrated"),
            "STAKATER_SERVICE_CUSTOMER_SECRET"
        ),
        Some(hash.clone())
    );

    // A metadata-only change to a followed Secret rolls nothing.
    kubectl(
        &cp,
        &[
            "-n",
            "demo",
            "annotate",
            "secret",
            "service-customer",
            "example.com/touched=yes",
        ],
    );
    kubectl(
        &cp,
        &[
            "-n",
            "demo",
            "label",
            "secret",
            "service-preference",
            "example.com/touched=yes",
        ],
    );
    std::thread::sleep(Duration::from_secs(12));
    for (kind, name, _) in followers {
        assert!(
            unchanged(name, kind),
            "{name} rolled for a metadata-only change\n{}",
            logs(&log)
        );
    }
    assert_eq!(
        template(&deployment(&cp, "demo", "migrated")),
        migrated_template
    );
    assert!(reloaded(&cp, "demo", "migrated") == 0);

    // A renewal, then two more writes to the same Secret within the debounce window:
    // each follower rolls out once, with the final data's hash.
    renew(&kubeconfig, &["customer"]);
    let before = hash.clone();
    cp.wait_for(
        "the customer Secret renewed",
        Duration::from_secs(30),
        || (reloader_hash(&cp, "demo", "service-customer") != before).then_some(()),
    )
    .expect("renewed");
    for v in ["one", "two"] {
        let patch = format!(
            "{{\"data\":{{\"extra\":\"{}\"}}}}",
            base64::engine::general_purpose::STANDARD.encode(v)
        );
        kubectl(
            &cp,
            &[
                "-n",
                "demo",
                "patch",
                "secret",
                "service-customer",
                "--type=merge",
                "-p",
                &patch,
            ],
        );
    }
    let renewed = reloader_hash(&cp, "demo", "service-customer");
    for (kind, name) in [
        ("deployments", "customer"),
        ("deployments", "auto"),
        ("deployments", "migrated"),
        ("statefulsets", "stateful"),
        ("daemonsets", "daemon"),
        ("deployments", "patterned"),
    ] {
        let w = cp
            .wait_for(
                &format!("{name} rolled out"),
                Duration::from_secs(60),
                || {
                    let w = workload(&cp, "demo", kind, name);
                    (env(&w, "STAKATER_SERVICE_CUSTOMER_SECRET").as_deref()
                        == Some(renewed.as_str()))
                    .then_some(w)
                },
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", logs(&log)));
        assert_eq!(
            env(&w, "STAKATER_SERVICE_CUSTOMER_SECRET").as_deref(),
            Some(renewed.as_str()),
            "{name}: Reloader's env var with the final hash"
        );
        assert_eq!(record(&w)["Secret/service-customer"], renewed.as_str());
    }
    for name in ["customer", "auto", "migrated", "patterned"] {
        cp.wait_for(
            &format!("{name}'s second ReplicaSet"),
            Duration::from_secs(30),
            || (replica_sets(&cp, "demo", name).len() == 2).then_some(()),
        )
        .expect("a new ReplicaSet");
    }
    // Still once after a while, and the others untouched.
    std::thread::sleep(Duration::from_secs(10));
    for name in ["customer", "auto", "migrated", "patterned"] {
        assert_eq!(
            replica_sets(&cp, "demo", name).len(),
            2,
            "{name}: one new ReplicaSet"
        );
        assert_eq!(reloaded(&cp, "demo", name), 1, "{name}: one Reloaded Event");
    }
    for name in ["stateful", "daemon"] {
        assert_eq!(reloaded(&cp, "demo", name), 1, "{name}: one Reloaded Event");
    }
    for name in ["preference-v1", "recommendation-v1"] {
        assert!(unchanged(name, "deployments"), "{name} rolled");
        assert_eq!(replica_sets(&cp, "demo", name).len(), 1);
    }
    let renewed_templates: Vec<Value> = followers
        .iter()
        .map(|(kind, name, _)| template(&workload(&cp, "demo", kind, name)))
        .collect();
    assert_eq!(
        deployment(&cp, "demo", "unrelated")["metadata"]["resourceVersion"],
        unrelated_rv,
        "an unannotated Deployment was written"
    );

    // A restart rolls nothing; afterwards the annotations strategy writes Reloader's
    // annotation.
    terminate(&mut op);
    let log2 = dir.path().join("operator2.log");
    let mut op = start_operator(
        &kubeconfig,
        &log2,
        &[
            "--metrics-address",
            "",
            "--rollout-debounce",
            "3s",
            "--reload-strategy",
            "annotations",
        ],
    );
    cp.wait_for("the restarted operator", Duration::from_secs(30), || {
        logs(&log2).contains("operator starting").then_some(())
    })
    .expect("started");
    std::thread::sleep(Duration::from_secs(15));
    for ((kind, name, _), before) in followers.iter().zip(&renewed_templates) {
        assert_eq!(
            &template(&workload(&cp, "demo", kind, name)),
            before,
            "{name} rolled at the operator's restart\n{}",
            logs(&log2)
        );
    }
    for name in ["customer", "auto", "migrated", "patterned"] {
        assert_eq!(
            replica_sets(&cp, "demo", name).len(),
            2,
            "{name} rolled at the restart"
        );
    }
    renew(&kubeconfig, &["preference"]);
    let w = cp
        .wait_for("preference-v1 rolled out", Duration::from_secs(60), || {
            let w = deployment(&cp, "demo", "preference-v1");
            (template(&w) != initial["preference-v1"]).then_some(w)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&log2)));
    let last: Value = serde_json::from_str(
        w["spec"]["template"]["metadata"]["annotations"]
            ["reloader.stakater.com/last-reloaded-from"]
            .as_str()
            .expect("Reloader's annotation"),
    )
    .expect("JSON");
    assert_eq!(last["type"], "SECRET");
    assert_eq!(last["name"], "service-preference");
    assert_eq!(last["namespace"], "demo");
    assert_eq!(
        last["hash"],
        reloader_hash(&cp, "demo", "service-preference").as_str()
    );
    assert_eq!(last["containerRefs"], serde_json::json!(["app"]));
    assert_eq!(env(&w, "STAKATER_SERVICE_PREFERENCE_SECRET"), None);
    cp.wait_for(
        "preference-v1's second ReplicaSet",
        Duration::from_secs(30),
        || (replica_sets(&cp, "demo", "preference-v1").len() == 2).then_some(()),
    )
    .expect("a new ReplicaSet");
    assert!(unchanged("recommendation-v1", "deployments"));
    assert_eq!(reloaded(&cp, "demo", "preference-v1"), 1);
    terminate(&mut op);
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let out = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// When certwright rolled a workload out, in Unix seconds.
fn rolled_out_at(w: &Value) -> Option<i64> {
    w["metadata"]["annotations"]["certwright.io/rolled-out-at"]
        .as_str()
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| t.unix_timestamp())
}

fn opaque(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: rates}}\nstringData: {{value: '{value}'}}\n"
    )
}

fn set_secret(cp: &ControlPlane, name: &str, value: &str) {
    let patch = format!("{{\"stringData\":{{\"value\":\"{value}\"}}}}");
    kubectl(
        cp,
        &[
            "-n",
            "rates",
            "patch",
            "secret",
            name,
            "--type=merge",
            "-p",
            &patch,
        ],
    );
}

#[test]
fn rollouts_keep_the_rate_and_wait_for_the_previous_rollout() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    if !require("curl") {
        return;
    }
    let mut docs = vec![
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: rates}\n".to_string(),
        opaque("shared", "1"),
        opaque("progress", "1"),
    ];
    let auto = "reloader.stakater.com/auto: 'true'";
    for i in 0..4 {
        docs.push(workload_yaml(
            "Deployment",
            "rates",
            &format!("rate-{i}"),
            auto,
            "shared",
            "",
        ));
    }
    for name in ["resumed", "stuck"] {
        docs.push(workload_yaml(
            "Deployment",
            "rates",
            name,
            auto,
            "progress",
            "",
        ));
    }
    cp.create_all(&docs.join("---\n")).expect("manifests");
    let port = certwright_testkube::free_port().expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let address = format!("127.0.0.1:{port}");
    let mut op = start_operator(
        &kubeconfig,
        &log,
        &[
            "--metrics-address",
            &address,
            "--rollout-debounce",
            "1s",
            "--rollouts-per-minute",
            "6",
            "--rollout-wait",
            "45s",
        ],
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let names: Vec<String> = (0..4).map(|i| format!("rate-{i}")).collect();
    for name in names.iter().map(String::as_str).chain(["resumed", "stuck"]) {
        cp.wait_for(&format!("{name} recorded"), Duration::from_secs(60), || {
            record(&deployment(&cp, "rates", name))
                .as_object()
                .map(|_| ())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    }

    // Four rollouts at six a minute: turns 10 s apart, the backlog in the metric.
    set_secret(&cp, "shared", "2");
    let mut backlog_seen = 0.0f64;
    let start = Instant::now();
    let times = cp
        .wait_for("four rollouts", Duration::from_secs(60), || {
            backlog_seen =
                backlog_seen.max(metric(port, "certwright_rollouts_backlog").unwrap_or(0.0));
            let times: Vec<i64> = names
                .iter()
                .filter_map(|n| rolled_out_at(&deployment(&cp, "rates", n)))
                .collect();
            (times.len() == 4).then_some(times)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let mut times = times;
    times.sort();
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!("rollouts at six a minute: gaps {gaps:?} s, largest backlog {backlog_seen}, all done in {:?}", start.elapsed());
    assert!(
        gaps.iter().all(|g| *g >= 9),
        "rollouts closer than the rate allows: {gaps:?}"
    );
    assert!(
        backlog_seen >= 2.0,
        "the backlog metric never showed the waiting rollouts"
    );
    cp.wait_for("the backlog drained", Duration::from_secs(10), || {
        (metric(port, "certwright_rollouts_backlog") == Some(0.0)).then_some(())
    })
    .expect("backlog 0");
    assert!(metric(port, "certwright_rollouts_total").unwrap_or(0.0) >= 4.0);
    for n in &names {
        cp.wait_for(
            &format!("{n}'s second ReplicaSet"),
            Duration::from_secs(30),
            || (replica_sets(&cp, "rates", n).len() == 2).then_some(()),
        )
        .expect("a new ReplicaSet");
        assert_eq!(reloaded(&cp, "rates", n), 1, "{n} rolled out once");
    }

    // Not again before the pods of the previous rollout are updated: both Deployments
    // are paused, rolled once, then the Secret changes again.
    for name in ["resumed", "stuck"] {
        cp.wait_for(
            &format!("{name}'s first ReplicaSet"),
            Duration::from_secs(30),
            || (replica_sets(&cp, "rates", name).len() == 1).then_some(()),
        )
        .expect("ReplicaSet");
        kubectl(
            &cp,
            &[
                "-n",
                "rates",
                "patch",
                "deployment",
                name,
                "--type=merge",
                "-p",
                "{\"spec\":{\"paused\":true}}",
            ],
        );
    }
    set_secret(&cp, "progress", "2");
    let first = |name: &str| {
        cp.wait_for(
            &format!("{name} rolled out"),
            Duration::from_secs(60),
            || {
                let w = deployment(&cp, "rates", name);
                rolled_out_at(&w).map(|t| (t, w))
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()))
    };
    let (_, resumed1) = first("resumed");
    let (stuck_at, _) = first("stuck");
    let h2 = env(&resumed1, "STAKATER_PROGRESS_SECRET").expect("env var");
    // Paused: kube-controller-manager sees the new template, but makes no pods for it.
    cp.wait_for("paused status", Duration::from_secs(30), || {
        let w = deployment(&cp, "rates", "resumed");
        (w["status"]["observedGeneration"] == w["metadata"]["generation"]
            && w["status"]["updatedReplicas"].as_i64().unwrap_or(0) == 0)
            .then_some(())
    })
    .expect("not updated");
    set_secret(&cp, "progress", "3");
    std::thread::sleep(Duration::from_secs(20));
    for name in ["resumed", "stuck"] {
        let w = deployment(&cp, "rates", name);
        assert_eq!(
            env(&w, "STAKATER_PROGRESS_SECRET").as_deref(),
            Some(h2.as_str()),
            "{name} rolled again before its pods were updated\n{}",
            logs()
        );
    }
    assert!(metric(port, "certwright_rollouts_pending").unwrap_or(0.0) >= 2.0);
    // Unpaused, its pods are updated (a ReplicaSet for the new template), and the
    // second change rolls out.
    kubectl(
        &cp,
        &[
            "-n",
            "rates",
            "patch",
            "deployment",
            "resumed",
            "--type=merge",
            "-p",
            "{\"spec\":{\"paused\":false}}",
        ],
    );
    let resumed2 = cp
        .wait_for("resumed rolled out again", Duration::from_secs(60), || {
            let w = deployment(&cp, "rates", "resumed");
            (env(&w, "STAKATER_PROGRESS_SECRET").as_deref() != Some(h2.as_str())).then_some(w)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(
        env(&resumed2, "STAKATER_PROGRESS_SECRET"),
        Some(reloader_hash(&cp, "rates", "progress")),
        "the second rollout has the latest data"
    );
    assert_eq!(reloaded(&cp, "rates", "resumed"), 2, "two rollouts");
    // Still paused: rolled again only once the wait is over.
    let stuck2 = cp
        .wait_for("stuck rolled out again", Duration::from_secs(60), || {
            let w = deployment(&cp, "rates", "stuck");
            (env(&w, "STAKATER_PROGRESS_SECRET").as_deref() != Some(h2.as_str())).then_some(w)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let waited = rolled_out_at(&stuck2).expect("rolled") - stuck_at;
    println!("a paused Deployment rolled again after {waited} s (--rollout-wait 45s)");
    assert!(
        waited >= 44,
        "stuck rolled again after {waited} s, before --rollout-wait"
    );
    terminate(&mut op);
}
