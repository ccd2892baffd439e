//! deploy/crds/crds.yaml (and the Helm chart's copy, deploy/helm/certwright/crds/crds.yaml)
//! is what `certwright crds` generates from the types: regenerate both with
//! `certwright crds > deploy/crds/crds.yaml && cp deploy/crds/crds.yaml deploy/helm/certwright/crds/`
//! after changing them.

mod common;

#[test]
fn checked_in_crds_match_the_types() {
    let out = common::run(&["crds"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let generated = String::from_utf8_lossy(&out.stdout);
    for path in [
        "deploy/crds/crds.yaml",
        "deploy/helm/certwright/crds/crds.yaml",
    ] {
        let checked_in =
            std::fs::read_to_string(common::repo().join(path)).expect("checked-in CRDs");
        assert!(
            generated == checked_in,
            "{path} is stale: run `certwright crds > {path}`"
        );
    }
}
