//! SQL on a ledger's database over a connection of the test's own, as an application (or an
//! operator with `sqlite3`/`psql`) writes it: payrecon's `Ledger` has no raw-SQL door.

use payrecon::ledger::{Ledger, Location};
use payrecon_testkit::sql::{self, Db};

/// Direct SQL on the database behind a ledger.
pub trait DirectSql {
    /// Runs statements that change the database.
    fn execute_batch(&self, sql: &str) -> Result<(), String>;
    /// Runs a query; each row is its columns' text joined by `|` (`NULL` for a null).
    fn query_strings(&self, sql: &str) -> Result<Vec<String>, String>;
}

impl DirectSql for Ledger {
    fn execute_batch(&self, text: &str) -> Result<(), String> {
        sql::execute_batch(db(self.location()), text)
    }

    fn query_strings(&self, text: &str) -> Result<Vec<String>, String> {
        sql::query_strings(db(self.location()), text)
    }
}

/// Direct SQL on the database a ledger location names, before any `Ledger` has opened (and so
/// migrated) it.
impl DirectSql for Location {
    fn execute_batch(&self, text: &str) -> Result<(), String> {
        sql::execute_batch(db(self), text)
    }

    fn query_strings(&self, text: &str) -> Result<Vec<String>, String> {
        sql::query_strings(db(self), text)
    }
}

fn db(location: &Location) -> Db<'_> {
    match location {
        Location::Path(p) => Db::Sqlite(p),
        Location::Url(u) => Db::Postgres(u),
    }
}
