//! TLS to PostgreSQL: a throwaway server with `ssl = on` (TCP only over TLS) and a certificate
//! authority made here by `openssl`, not by payrecon; each `sslmode` as libpq means it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use payrecon::ledger::{Ledger, Location};
use payrecon_testkit::pg::{self, TempPg};

/// A CA (`NAME.pem`, `NAME.key`) in `dir`, made by openssl.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    self_signed(
        dir,
        name,
        &format!("/CN=payrecon test {name}"),
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
}

/// A self-signed certificate (`NAME.pem`, `NAME.key`) in `dir` for `subject`, with `extensions`,
/// made by `openssl req -x509` (which marks it a CA unless told otherwise).
fn self_signed(dir: &Path, name: &str, subject: &str, extensions: &[&str]) -> PathBuf {
    let pem = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key")).display().to_string();
    let out = pem.display().to_string();
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        subject,
    ];
    for e in extensions {
        args.extend(["-addext", e]);
    }
    args.extend(["-keyout", &key, "-out", &out]);
    openssl(&args);
    pem
}

/// A server certificate and key for the DNS name `host`, signed by the CA `ca`.
fn make_server_cert(dir: &Path, ca: &str, host: &str) -> (PathBuf, PathBuf) {
    let (key, csr, crt, ext) = (
        dir.join("server.key"),
        dir.join("server.csr"),
        dir.join("server.crt"),
        dir.join("server.ext"),
    );
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=DNS:{host}\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    let s = |p: &Path| p.display().to_string();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &format!("/CN={host}"),
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&dir.join(format!("{ca}.pem"))),
        "-CAkey",
        &s(&dir.join(format!("{ca}.key"))),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&crt),
    ]);
    (crt, key)
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct TlsServer {
    /// The certificates: held by a `static`, so removed by a watchdog after the run.
    dir: std::path::PathBuf,
    _removed_at_exit: std::process::Child,
    pg: TempPg,
}

/// One TLS server for this module: its certificate names `localhost`, signed by `ca`; `other`
/// is a CA that signed nothing of it.
fn server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let removed = pg::removed_at_exit(&dir).unwrap_or_else(|e| panic!("{e}"));
        make_ca(&dir, "ca");
        make_ca(&dir, "other");
        let tls = make_server_cert(&dir, "ca", "localhost");
        let pg = pg::start_with(pg::Options {
            durable: false,
            tls: Some(tls),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        TlsServer {
            dir,
            _removed_at_exit: removed,
            pg,
        }
    })
}

impl TlsServer {
    /// A new database's URL at `host` with `query` (`sslmode=…&sslrootcert=…`, where `CA:NAME`
    /// stands for that CA's file).
    fn url(&self, host: &str, query: &str) -> String {
        let db = self.pg.new_database_name().unwrap();
        let query = query
            .replace("CA:ca", &self.dir.join("ca.pem").display().to_string())
            .replace(
                "CA:other",
                &self.dir.join("other.pem").display().to_string(),
            );
        format!("postgres://postgres@{host}:{}/{db}?{query}", self.pg.port())
    }
}

/// Connects (migrating the ledger) on a thread of its own: the PostgreSQL client blocks.
fn connect(url: String) -> Result<Ledger, String> {
    std::thread::spawn(move || Ledger::connect(&Location::Url(url)).map_err(|e| e.to_string()))
        .join()
        .unwrap()
}

/// Why connecting to `url` failed.
fn refused(url: String) -> String {
    match connect(url) {
        Ok(_) => panic!("connected"),
        Err(e) => e,
    }
}

#[test]
fn verify_full_connects_to_a_server_whose_certificate_names_the_host() {
    let s = server();
    let ledger = connect(s.url("localhost", "sslmode=verify-full&sslrootcert=CA:ca"));
    assert!(ledger.is_ok(), "{:?}", ledger.err());
    // The server takes TCP only over TLS, so a ledger that connected spoke TLS; plain is refused.
    let e = refused(s.url("localhost", "sslmode=disable"));
    assert!(e.contains("no encryption"), "{e}");
}

#[test]
fn a_certificate_from_another_ca_is_refused_naming_the_host_and_the_ca() {
    let s = server();
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = refused(s.url("localhost", &format!("sslmode={mode}&sslrootcert=CA:other")));
        let port = s.pg.port();
        // `require` with a root certificate checks the chain, as libpq's does.
        let shown = if mode == "require" { "verify-ca" } else { mode };
        assert!(
            e.contains(&format!(
                "the PostgreSQL server at localhost:{port} was refused (sslmode={shown}): its \
                 certificate is not signed by a CA in sslrootcert"
            )) && e.contains("other.pem"),
            "{mode}: {e}"
        );
    }
    // No sslrootcert: the system's roots, which never signed a test CA.
    let e = refused(s.url("localhost", "sslmode=verify-full"));
    assert!(
        e.contains("its certificate is not signed by a CA in the system's CA certificates"),
        "{e}"
    );
}

#[test]
fn a_certificate_for_another_host_is_refused_by_verify_full_only() {
    let s = server();
    let e = refused(s.url("127.0.0.1", "sslmode=verify-full&sslrootcert=CA:ca"));
    let port = s.pg.port();
    assert!(
        e.contains(&format!(
            "the PostgreSQL server at 127.0.0.1:{port} was refused (sslmode=verify-full): its \
             certificate is not issued for 127.0.0.1 (it names localhost)"
        )),
        "{e}"
    );
    // verify-ca checks the chain, not the name; require and prefer check nothing.
    for query in [
        "sslmode=verify-ca&sslrootcert=CA:ca",
        "sslmode=require",
        "sslmode=prefer",
    ] {
        let ledger = connect(s.url("127.0.0.1", query));
        assert!(ledger.is_ok(), "{query}: {:?}", ledger.err());
    }
}

#[test]
fn require_refuses_a_server_without_tls_and_prefer_falls_back() {
    // The plain test server (ssl off).
    let url = crate::support::pg::new_database();
    let e = refused(format!("{url}?sslmode=require"));
    assert!(
        e.contains(
            "was refused (sslmode=require): it does not offer TLS, which sslmode=require needs"
        ) && e.contains("127.0.0.1:"),
        "{e}"
    );
    let e = refused(format!("{url}?sslmode=verify-full"));
    assert!(e.contains("it does not offer TLS"), "{e}");
    let ledger = connect(format!("{url}?sslmode=prefer"));
    assert!(ledger.is_ok(), "{:?}", ledger.err());
}

/// A self-signed server certificate (what `openssl req -x509` makes: a CA certificate) given as
/// its own `sslrootcert` is trusted with verify-full, as libpq trusts it; its name is still
/// checked, and another self-signed certificate is refused.
#[test]
fn a_self_signed_certificate_as_its_own_root_works_with_verify_full() {
    let dir = tempfile::tempdir().unwrap();
    let crt = self_signed(
        dir.path(),
        "self",
        "/CN=localhost",
        &["subjectAltName=DNS:localhost"],
    );
    let key = dir.path().join("self.key");
    let pg = pg::start_with(pg::Options {
        durable: false,
        tls: Some((crt.clone(), key)),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let url = |host: &str, root: &Path| {
        format!(
            "postgres://postgres@{host}:{}/{}?sslmode=verify-full&sslrootcert={}",
            pg.port(),
            pg.new_database_name().unwrap(),
            root.display()
        )
    };
    let ledger = connect(url("localhost", &crt));
    assert!(ledger.is_ok(), "{:?}", ledger.err());
    let e = refused(url("127.0.0.1", &crt));
    assert!(e.contains("its certificate is not issued for"), "{e}");
    // Another self-signed certificate, not the server's: refused.
    let other = make_ca(dir.path(), "stranger");
    let e = refused(url("localhost", &other));
    assert!(e.contains("was refused (sslmode=verify-full)"), "{e}");
}
