//! Fuzz targets, run for a bounded time by the test suite: the manifest parser and its
//! validation, PEM / DER / CSR / private-key parsing, the JKS and PKCS#12 readers, and the
//! path rules (names that become paths). Each target starts from the seeds in
//! tests/fuzz/corpus/TARGET/ and feeds mutations of them (bit flips, byte changes,
//! insertions, deletions, truncations, splices of two seeds, repeated chunks) to the code
//! under test; a panic fails the test and leaves the input in
//! `$CARGO_TARGET_TMPDIR/fuzz-crashes/` for a regression seed.
//!
//! This is a mutation fuzzer, not a coverage-guided one: cargo-fuzz needs a nightly
//! compiler, which this project does not use. `FUZZ_SECONDS` sets the time per target
//! (default 10); `FUZZ_SEED` the random seed (default: from the clock, printed).

use certwright_api::{manifest, validate};
use certwright_local::fsroot;
use certwright_pki::inspect::{self, CertInfo};
use certwright_pki::{cert, jks, pem, pkcs12, PrivateKey};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fuzz/corpus")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .flatten()
        .map(|e| std::fs::read(e.path()).expect("seed"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "corpus {target} is empty");
    out
}

const INTERESTING: [u8; 12] = [
    0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff, b'[', b'{', b'\n', b'-',
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                let extra: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                v.splice(i..i, extra);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i + 1).min(64);
                v.drain(i..i + n);
            }
            4 => v.truncate(rng.below(len + 1)),
            5 => {
                // Splice: a prefix of this seed and a suffix of another.
                let other = &seeds[rng.below(seeds.len())];
                let a = rng.below(len + 1);
                let b = rng.below(other.len() + 1);
                v.truncate(a);
                v.extend_from_slice(&other[b..]);
            }
            6 if len > 0 => {
                // Repeat a chunk (deep nesting, long lists).
                let i = rng.below(len);
                let n = (1 + rng.below(8)).min(len - i);
                let chunk = v[i..i + n].to_vec();
                for _ in 0..1 + rng.below(64) {
                    v.splice(i..i, chunk.iter().copied());
                }
            }
            _ if len > 1 => {
                // A length byte of a DER header somewhere.
                let i = rng.below(len - 1);
                v[i + 1] = [0x81, 0x82, 0x83, 0x84, 0x80, 0x00][rng.below(6)];
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

fn seconds() -> Duration {
    Duration::from_secs(
        std::env::var("FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    )
}

fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
        | 1
}

fn crash_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes")
}

/// Runs `f` on mutated inputs for the configured time; a panic fails the test with the
/// input saved.
fn fuzz(target: &str, f: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let seeds = corpus(target);
    let s = seed();
    let mut rng = Rng(s);
    let limit = seconds();
    let start = Instant::now();
    // The seeds themselves first.
    for input in &seeds {
        f(input);
    }
    let mut runs = 0u64;
    while start.elapsed() < limit {
        let input = mutate(&mut rng, &seeds);
        if std::panic::catch_unwind(|| f(&input)).is_err() {
            let dir = crash_dir();
            std::fs::create_dir_all(&dir).expect("crash dir");
            let path = dir.join(format!("{target}-{s}-{runs}"));
            std::fs::write(&path, &input).expect("save crash");
            panic!(
                "fuzz target {target} panicked (seed {s}, run {runs}); input saved in {}",
                path.display()
            );
        }
        runs += 1;
    }
    println!(
        "fuzz {target}: {runs} inputs in {:?}, seed {s}",
        start.elapsed()
    );
    assert!(runs > 0, "the {target} target ran no input");
}

#[test]
fn fuzz_manifest_parser_and_validation() {
    fuzz("manifest", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        for doc in manifest::parse_documents(&text, "fuzz.yaml") {
            if let Some(id) = &doc.id {
                let _ = certwright_local::model::check_identity(id);
            }
            match doc.result {
                Ok(manifest::Resource::Certificate(c)) => {
                    if let Ok(p) = validate::certificate(&c) {
                        // What validation accepts must be usable: a request can be built.
                        let _ = certwright_engine::issue::profile(&p.issuance);
                    }
                }
                Ok(manifest::Resource::Issuer(i)) | Ok(manifest::Resource::ClusterIssuer(i)) => {
                    let _ = validate::issuer(&i);
                }
                _ => {}
            }
        }
    });
}

#[test]
fn fuzz_pem_der_csr_and_keys() {
    fuzz("pem", |bytes| {
        if let Ok(blocks) = pem::decode_all(bytes) {
            for b in blocks {
                let _ = CertInfo::parse(&b.der);
                let _ = cert::parse_csr(&b.der);
                let _ = PrivateKey::from_pkcs8_der(&b.der);
            }
        }
        let _ = inspect::parse_pem_chain(bytes);
        let _ = PrivateKey::from_pem(bytes);
        // Raw DER too.
        let _ = CertInfo::parse(bytes);
        let _ = cert::parse_csr(bytes);
    });
}

#[test]
fn fuzz_jks_reader() {
    fuzz("jks", |bytes| {
        let _ = jks::decode(bytes, "changeme");
        let _ = jks::decode(bytes, "");
    });
}

#[test]
fn fuzz_pkcs12_reader() {
    fuzz("pkcs12", |bytes| {
        let _ = pkcs12::decode(bytes, "changeme");
    });
}

#[test]
fn fuzz_names_never_escape_the_state_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    let store = certwright_local::store::SecretStore::open(&root).expect("store");
    let secret = certwright_engine::SecretData {
        data: [("tls.crt".to_string(), b"x".to_vec())].into(),
        ..Default::default()
    };
    fuzz("names", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let mut parts = text.lines();
        let ns = parts.next().unwrap_or_default();
        let name = parts.next().unwrap_or(ns);
        let accepted = validate::check_namespace(ns, "ns").is_ok()
            && validate::check_name(name, "name").is_ok();
        if accepted {
            // What the model accepts is always a plain component.
            assert!(fsroot::component(ns).is_ok() && fsroot::component(name).is_ok());
        }
        // Whatever reaches the store (defence in depth), nothing lands outside its root.
        let _ = store.write(ns, name, &secret);
        let _ = store.read(ns, name);
    });
    let outside: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(outside, ["root"], "nothing was written beside the root");
    // And nothing under the root is a link leading out of it.
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let t = e.file_type().expect("type");
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_symlink() {
                let target = std::fs::read_link(e.path()).expect("link");
                assert!(
                    target.is_relative() && !target.starts_with(".."),
                    "{} -> {}",
                    e.path().display(),
                    target.display()
                );
            }
        }
    }
}
