//! The tests' PostgreSQL: one throwaway server per test binary ([`payrecon_testkit::pg`]), started
//! on first use, one fresh database per test.

use std::sync::OnceLock;

use payrecon_testkit::pg::TempPg;
use payrecon_testkit::pgbouncer::Bouncer;

static SERVER: OnceLock<TempPg> = OnceLock::new();

fn server() -> &'static TempPg {
    SERVER.get_or_init(|| payrecon_testkit::pg::start(false).unwrap_or_else(|e| panic!("{e}")))
}

/// The URL of a new, empty database on the test server.
pub fn new_database() -> String {
    server().new_database().unwrap_or_else(|e| panic!("{e}"))
}

/// The URL of a new, empty database on the test server, through a PgBouncer in transaction
/// pooling mode (one per test binary, started on first use).
pub fn new_database_through_pgbouncer() -> String {
    static BOUNCER: OnceLock<Bouncer> = OnceLock::new();
    let bouncer = BOUNCER.get_or_init(|| {
        payrecon_testkit::pgbouncer::start(server()).unwrap_or_else(|e| panic!("{e}"))
    });
    let name = server()
        .new_database_name()
        .unwrap_or_else(|e| panic!("{e}"));
    bouncer.url(&name)
}

/// The server address and database name of a test database's URL
/// (`postgres://postgres@127.0.0.1:PORT/NAME`), to put a fault proxy in front of it.
pub fn address_and_name(url: &str) -> (std::net::SocketAddr, String) {
    let rest = url.trim_start_matches("postgres://postgres@");
    let (addr, db) = rest.split_once('/').expect("a test database URL");
    (addr.parse().expect("an address"), db.to_string())
}
