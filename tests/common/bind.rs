//! BIND 9 (`named`) for the DNS-01 tests: authoritative for `example.test` with
//! TSIG-signed dynamic updates allowed, recursive for every other name by forwarding to a
//! given server (pebble-challtestsrv, which answers 127.0.0.1 for any name). It listens on
//! port 53 of a loopback address of its own (127.53.X.Y, added to `lo` for the test and
//! removed after), the port a zone's authoritative servers are asked on, so the DNS-01
//! propagation check can find it through the zone's NS record. Stopped on drop.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// The zone the tests use unless they name another.
pub const ZONE: &str = "example.test";
pub const TSIG_KEY: &str = "certwright-key";
/// A second zone BIND takes updates for, whose NS record names an address where nothing
/// listens: a DNS-01 record there is never seen by the zone's servers.
pub const LAME: &str = "lame.test";
/// The TSIG secret (base64), as the issuer's Secret holds it.
pub const TSIG_SECRET: &str = "c2VjcmV0LWZvci10aGUtY2VydHdyaWdodC10ZXN0cy0xMjM0NTY3ODk=";

pub struct Bind {
    child: Child,
    pub zone: String,
    pub addr: SocketAddr,
    pub log: PathBuf,
    _tmp: tempfile::TempDir,
}

fn named() -> Option<PathBuf> {
    let found = ["/usr/sbin/named", "/usr/bin/named"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        let why = "named (Debian bind9) is not installed; scripts/dns-bin.sh installs it";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{why} (required in CI)");
        }
        eprintln!("SKIPPED: {why}");
    }
    found
}

static NEXT: AtomicU8 = AtomicU8::new(1);

impl Bind {
    /// Starts named, authoritative for `zone`; `forward_to`: where names outside the
    /// zone are asked.
    pub fn start(forward_to: &str, zone: &str) -> Option<Bind> {
        let named = named()?;
        if rustix::process::geteuid().as_raw() != 0 {
            let why =
                "BIND must listen on port 53 (the port of a zone's servers), which needs root";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{why}");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let ip = Ipv4Addr::new(
            127,
            53,
            (std::process::id() % 250) as u8,
            NEXT.fetch_add(1, Ordering::Relaxed),
        );
        let addr = SocketAddr::new(ip.into(), 53);
        // named listens only on addresses an interface has: give the loopback this one.
        let added = Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            added,
            "cannot add {ip} to the loopback interface (ip addr add)"
        );
        let dir = tmp.path();
        let (fwd_ip, fwd_port) = forward_to
            .rsplit_once(':')
            .expect("forward_to is HOST:PORT");
        std::fs::write(
            dir.join("named.conf"),
            format!(
                r#"options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  listen-on port 53 {{ {ip}; }};
  listen-on-v6 {{ none; }};
  recursion yes;
  allow-recursion {{ any; }};
  allow-query {{ any; }};
  forward only;
  forwarders {{ {fwd_ip} port {fwd_port}; }};
  dnssec-validation no;
  notify no;
}};
key "{TSIG_KEY}" {{ algorithm hmac-sha256; secret "{TSIG_SECRET}"; }};
zone "{zone}" {{
  type primary;
  file "{d}/db.zone";
  allow-update {{ key "{TSIG_KEY}"; }};
}};
zone "{LAME}" {{
  type primary;
  file "{d}/db.lame";
  allow-update {{ key "{TSIG_KEY}"; }};
}};
"#,
                d = dir.display()
            ),
        )
        .expect("named.conf");
        std::fs::write(
            dir.join("db.zone"),
            format!(
                "$TTL 60\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 60\n@ IN NS ns.{zone}.\nns IN A {ip}\n* IN A 127.0.0.1\ncaa IN CAA 0 issue \"other-ca.example\"\n"
            ),
        )
        .expect("zone");
        // A zone whose only NS answers nothing: its records are never seen.
        std::fs::write(
            dir.join("db.lame"),
            format!("$TTL 60\n@ IN SOA ns.{LAME}. hostmaster.{LAME}. 1 60 60 600 60\n@ IN NS ns.{LAME}.\nns IN A 127.53.255.254\n* IN A 127.0.0.1\n"),
        )
        .expect("lame zone");
        let log = dir.join("named.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(named)
            .args(["-g", "-4", "-c"])
            .arg(dir.join("named.conf"))
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("starts named");
        let b = Bind {
            child,
            zone: zone.to_string(),
            addr,
            log,
            _tmp: tmp,
        };
        b.wait_up();
        Some(b)
    }

    fn wait_up(&self) {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains("running") && std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "named did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `HOST:PORT` for flags and manifests.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip")
            .args([
                "addr",
                "del",
                &format!("{}/32", self.addr.ip()),
                "dev",
                "lo",
            ])
            .status();
    }
}
