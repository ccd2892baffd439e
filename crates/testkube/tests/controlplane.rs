//! The control plane the operator tests run on is real: RBAC is enforced, the controller
//! manager turns a Deployment into ReplicaSets and a template change into a new one (how a
//! rolling restart is observed without a kubelet), and the test-only Route API is served.

use certwright_testkube::{ControlPlane, NOBODY_TOKEN};
use std::time::{Duration, Instant};

#[test]
fn control_plane_enforces_rbac_runs_controllers_and_serves_routes() {
    let started = Instant::now();
    let Some(cp) = ControlPlane::start_or_skip() else {
        return;
    };
    println!("control plane ready in {:?}", started.elapsed());

    // RBAC: a user with no bindings is refused; a bad token is unauthenticated.
    let (code, _) = cp
        .request(
            NOBODY_TOKEN,
            "GET",
            "/api/v1/namespaces/default/secrets",
            None,
        )
        .expect("request");
    assert_eq!(code, 403, "RBAC denies a user without rights");
    let (code, _) = cp
        .request(
            "wrong-token",
            "GET",
            "/api/v1/namespaces/default/secrets",
            None,
        )
        .expect("request");
    assert_eq!(code, 401);

    // The controller manager publishes the default ServiceAccount and root CA ConfigMap.
    cp.wait_for(
        "the default ServiceAccount",
        Duration::from_secs(30),
        || {
            cp.admin(
                "GET",
                "/api/v1/namespaces/default/serviceaccounts/default",
                None,
            )
            .ok()
        },
    )
    .expect("service account controller");

    // A Deployment gets a ReplicaSet; a pod-template change gets a second one.
    let deployment = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},
        "spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},
        "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"example.invalid/web:1"}]}}}}"#;
    cp.admin(
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        Some(deployment),
    )
    .expect("create deployment");
    let replica_sets = || -> usize {
        cp.admin(
            "GET",
            "/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3Dweb",
            None,
        )
        .ok()
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0)
    };
    cp.wait_for("a ReplicaSet", Duration::from_secs(30), || {
        (replica_sets() == 1).then_some(())
    })
    .expect("first ReplicaSet");
    let restart = r#"{"spec":{"template":{"metadata":{"annotations":{"certwright.io/restartedAt":"2026-11-28T00:00:00Z"}}}}}"#;
    cp.admin(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web",
        Some(restart),
    )
    .expect("patch");
    cp.wait_for(
        "a second ReplicaSet (revision 2)",
        Duration::from_secs(30),
        || (replica_sets() == 2).then_some(()),
    )
    .expect("rolling restart observed");
    let d = cp
        .admin(
            "GET",
            "/apis/apps/v1/namespaces/default/deployments/web",
            None,
        )
        .expect("deployment");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );

    // The test-only Route CRD.
    cp.install_route_crd().expect("route CRD");
    let route = r#"{"apiVersion":"route.openshift.io/v1","kind":"Route","metadata":{"name":"customer","namespace":"default"},
        "spec":{"host":"customer.apps.example.com","to":{"kind":"Service","name":"customer"},"tls":{"termination":"reencrypt"}}}"#;
    cp.admin(
        "POST",
        "/apis/route.openshift.io/v1/namespaces/default/routes",
        Some(route),
    )
    .expect("create route");
    let bad = r#"{"apiVersion":"route.openshift.io/v1","kind":"Route","metadata":{"name":"bad","namespace":"default"},
        "spec":{"tls":{"termination":"sideways"}}}"#;
    let (code, _) = cp
        .request(
            certwright_testkube::ADMIN_TOKEN,
            "POST",
            "/apis/route.openshift.io/v1/namespaces/default/routes",
            Some(bad),
        )
        .expect("request");
    assert_eq!(code, 422, "the schema validates termination");
    println!("control plane test done in {:?}", started.elapsed());
}
