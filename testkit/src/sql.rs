//! SQL on a ledger's database over a connection of its own, as an application (or an operator
//! with `sqlite3`/`psql`) writes it: for the tests and the benchmark, which write rows payrecon's
//! `Ledger` would never write (it has no raw-SQL door).

use std::path::Path;

/// Where the database is: a SQLite file or a PostgreSQL URL.
#[derive(Clone, Copy)]
pub enum Db<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

/// Runs statements that change the database.
pub fn execute_batch(db: Db<'_>, sql: &str) -> Result<(), String> {
    on_connection(db, sql, |c, sql| match c {
        Conn::Lite(c) => c.execute_batch(sql).map_err(|e| e.to_string()),
        Conn::Pg(c) => c.batch_execute(sql).map_err(pg_error),
    })
}

/// Runs a query; each row is its columns' text joined by `|` (`NULL` for a null).
pub fn query_strings(db: Db<'_>, sql: &str) -> Result<Vec<String>, String> {
    on_connection(db, sql, |c, sql| match c {
        Conn::Lite(c) => {
            let mut stmt = c.prepare(sql).map_err(|e| e.to_string())?;
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    use rusqlite::types::Value;
                    let mut parts = Vec::with_capacity(n);
                    for i in 0..n {
                        parts.push(match r.get::<_, Value>(i)? {
                            Value::Null => "NULL".to_string(),
                            Value::Integer(i) => i.to_string(),
                            Value::Real(f) => f.to_string(),
                            Value::Text(t) => t,
                            Value::Blob(_) => "<blob>".to_string(),
                        });
                    }
                    Ok(parts.join("|"))
                })
                .map_err(|e| e.to_string())?;
            rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
        }
        Conn::Pg(c) => Ok(c
            .simple_query(sql)
            .map_err(pg_error)?
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("NULL").to_string())
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                _ => None,
            })
            .collect()),
    })
}

enum Conn<'a> {
    Lite(&'a rusqlite::Connection),
    Pg(&'a mut postgres::Client),
}

/// The server's message with its detail: what a rule said.
fn pg_error(e: postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Opens a connection to `location` and runs `f` on it, on a thread of its own (PostgreSQL's
/// blocking client cannot run on a tokio worker).
fn on_connection<T: Send>(
    db: Db<'_>,
    sql: &str,
    f: impl FnOnce(Conn<'_>, &str) -> Result<T, String> + Send,
) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| match db {
            Db::Sqlite(p) => {
                let c = rusqlite::Connection::open(p).map_err(|e| e.to_string())?;
                c.busy_timeout(std::time::Duration::from_secs(10))
                    .map_err(|e| e.to_string())?;
                f(Conn::Lite(&c), sql)
            }
            Db::Postgres(u) => {
                let mut c = postgres::Client::connect(u, postgres::NoTls)
                    .map_err(|e| format!("connecting to {u}: {e}"))?;
                f(Conn::Pg(&mut c), sql)
            }
        })
        .join()
        .unwrap_or_else(|_| Err("the SQL thread panicked".into()))
    })
}
