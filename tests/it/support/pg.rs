//! The tests' PostgreSQL: one throwaway server per test binary ([`payrecon_testkit::pg`]), started
//! on first use, one fresh database per test.

use std::sync::OnceLock;

use payrecon_testkit::pg::TempPg;

static SERVER: OnceLock<TempPg> = OnceLock::new();

/// The URL of a new, empty database on the test server.
pub fn new_database() -> String {
    SERVER
        .get_or_init(|| payrecon_testkit::pg::start(false).unwrap_or_else(|e| panic!("{e}")))
        .new_database()
        .unwrap_or_else(|e| panic!("{e}"))
}
