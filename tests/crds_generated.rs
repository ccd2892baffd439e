//! deploy/crds/crds.yaml is what `certwright crds` generates from the types: regenerate
//! with `certwright crds > deploy/crds/crds.yaml` after changing them.

mod common;

#[test]
fn checked_in_crds_match_the_types() {
    let out = common::run(&["crds"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let checked_in = std::fs::read_to_string(common::repo().join("deploy/crds/crds.yaml"))
        .expect("deploy/crds/crds.yaml");
    assert!(
        String::from_utf8_lossy(&out.stdout) == checked_in,
        "deploy/crds/crds.yaml is stale: run `certwright crds > deploy/crds/crds.yaml`"
    );
}
