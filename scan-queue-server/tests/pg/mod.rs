//! A real PostgreSQL for tests: Debian's binaries, a cluster in a temporary directory on a
//! loopback port, run as the unprivileged `postgres` user when the tests run as root
//! (PostgreSQL refuses root). Stopped when dropped.
//!
//! When no PostgreSQL binaries are found the tests skip with a message, unless
//! `SCAN_QUEUE_REQUIRE_POSTGRES` is set (CI sets it): then they fail.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pg {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    as_postgres: bool,
}

/// The newest `/usr/lib/postgresql/*/bin` with `pg_ctl`, or `SCAN_QUEUE_PG_BIN`.
fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SCAN_QUEUE_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Pg {
    /// A new cluster, started; `None` (after saying so) when PostgreSQL is not installed and
    /// not required.
    pub fn start(test: &str) -> Option<Pg> {
        let Some(bin) = find_bin() else {
            if std::env::var_os("SCAN_QUEUE_REQUIRE_POSTGRES").is_some() {
                panic!(
                    "{test}: PostgreSQL is required (SCAN_QUEUE_REQUIRE_POSTGRES) but no /usr/lib/postgresql/*/bin/pg_ctl was found"
                );
            }
            eprintln!(
                "SKIPPED {test}: no PostgreSQL binaries (apt-get install postgresql, or set SCAN_QUEUE_PG_BIN)"
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("scan-queue-pg-")
            .tempdir()
            .unwrap();
        let as_postgres = is_root();
        let pg = Pg {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        if as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the cluster's directory to postgres");
        }
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.ctl(&["start"]);
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let path = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl ACTION` on the cluster (start/restart wait until it accepts connections).
    pub fn ctl(&self, action: &[&str]) {
        let data = self.data();
        let log = self.dir.path().join("log");
        let socket = self.dir.path();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=100",
            self.port,
            socket.display()
        );
        let mut args = vec!["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()];
        args.extend_from_slice(&["-o", &options, "-w", "-t", "30", "-m", "fast"]);
        args.extend_from_slice(action);
        self.run("pg_ctl", &args);
    }

    /// `postgresql://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of database `db` on the cluster.
    pub fn url_of(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL through psql (on the Unix socket); its output, unaligned, tuples only.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                // The Unix socket: plain TCP may be refused (`require_tls`).
                &format!(
                    "host={} port={} user=postgres dbname=postgres",
                    self.dir.path().display(),
                    self.port
                ),
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Turns TLS on with a certificate for 127.0.0.1 signed by a new CA, and refuses plain TCP
    /// from then on (Unix sockets still work). Returns the CA certificate, PEM.
    pub fn require_tls(&self) -> String {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "scan-queue test CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let data = self.data();
        std::fs::write(data.join("server.crt"), cert.pem()).unwrap();
        std::fs::write(data.join("server.key"), key.serialize_pem()).unwrap();
        let hba = data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("hostnossl all all all reject\n{rules}")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if self.as_postgres {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .args([data.join("server.crt"), data.join("server.key"), hba])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the certificate to postgres");
        }
        self.psql("ALTER SYSTEM SET ssl = on");
        self.psql("SELECT pg_reload_conf()");
        ca.pem()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.data();
        let path = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = command
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}
