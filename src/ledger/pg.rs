//! PostgreSQL under the ledger: the connection pool, each statement's shape (its `$n` text and
//! the parameter types learned once), binding values as the types PostgreSQL inferred, and the
//! `postgres://` URL read into settings. [`super::db`] runs transactions on it.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use postgres::types::{ToSql, Type};

use super::db::{DbError, Val, outside_runtime};
use super::pgtls::{self, Tls};

/// `?1`, `?2`, … (outside quoted text) as PostgreSQL's `$1`, `$2`, ….
pub fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

/// One parameter as the Rust type PostgreSQL inferred for it.
pub(super) fn pg_param(v: &Val<'_>, ty: &Type) -> Result<Box<dyn ToSql + Sync>, DbError> {
    let bad = |what: &str| DbError::Value(format!("cannot bind {what} as {ty}"));
    Ok(match (v, ty) {
        (Val::Null, &Type::INT8) => Box::new(None::<i64>),
        (Val::Null, &Type::INT4) => Box::new(None::<i32>),
        (Val::Null, &Type::INT2) => Box::new(None::<i16>),
        (Val::Null, _) => Box::new(None::<String>),
        (Val::Int(i), &Type::INT8) => Box::new(*i),
        (Val::Int(i), &Type::INT4) => {
            Box::new(i32::try_from(*i).map_err(|_| bad("a large integer"))?)
        }
        (Val::Int(i), &Type::INT2) => {
            Box::new(i16::try_from(*i).map_err(|_| bad("a large integer"))?)
        }
        (Val::Int(i), _) => Box::new(i.to_string()),
        (Val::Text(t), &Type::INT8) => Box::new(t.parse::<i64>().map_err(|_| bad("text"))?),
        (Val::Text(t), &Type::INT4) => Box::new(t.parse::<i32>().map_err(|_| bad("text"))?),
        (Val::Text(t), _) => Box::new(t.to_string()),
        (Val::Ints(v), &Type::INT8_ARRAY) => Box::new(v.to_vec()),
        (Val::Texts(v), &Type::TEXT_ARRAY) => Box::new(
            v.iter()
                .map(|t| t.map(str::to_string))
                .collect::<Vec<Option<String>>>(),
        ),
        (Val::Ints(_) | Val::Texts(_), _) => return Err(bad("an array")),
    })
}

/// A PostgreSQL connection with the shapes of the statements it has run.
pub struct PgConn {
    pub(super) client: postgres::Client,
    pub(super) shapes: HashMap<String, Shape>,
}

/// A statement as PostgreSQL runs it: its text with `$n` placeholders and the parameter types
/// the server inferred.
///
/// No statement stays prepared on the server between transactions: a pooler in transaction
/// mode (PgBouncer's `pool_mode = transaction`, PgBouncer before 1.21 keeps no prepared
/// statements) may give the next transaction another server connection, where a name prepared
/// earlier does not exist, or exists as another client's. So the types are learned once, with a
/// statement prepared and closed inside one transaction, and each run sends the text with them
/// as the unnamed statement (parse, bind and execute in one round trip).
pub(super) struct Shape {
    pub(super) sql: String,
    pub(super) types: Vec<Type>,
}

/// The PostgreSQL connections of one process: made when needed, at most `max`, reused.
pub struct PgPool {
    config: postgres::Config,
    tls: Tls,
    idle: Mutex<(Vec<PgConn>, usize)>,
    freed: Condvar,
    max: usize,
}

impl PgPool {
    pub fn new((config, tls): (postgres::Config, Tls), max: usize) -> PgPool {
        PgPool {
            config,
            tls,
            idle: Mutex::new((Vec::new(), 0)),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    pub fn connect(&self) -> Result<PgConn, DbError> {
        let client = self
            .config
            .connect(self.tls.clone())
            .map_err(|e| self.refused(e))?;
        Ok(PgConn {
            client,
            shapes: HashMap::new(),
        })
    }

    /// A connection that failed over TLS, told as the server it was and why.
    fn refused(&self, e: postgres::Error) -> DbError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut text = None;
        while let Some(c) = cause {
            // An io::Error's `source` skips the error it wraps: look inside.
            let inner = c
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|e| e as &(dyn std::error::Error + 'static));
            if let Some(tls) = inner.unwrap_or(c).downcast_ref::<rustls::Error>() {
                text = Some(pgtls::reason(tls, &self.tls));
                break;
            }
            if c.to_string() == "server does not support TLS" {
                text = Some(format!(
                    "it does not offer TLS, which sslmode={} needs",
                    self.tls.mode
                ));
                break;
            }
            cause = c.source();
        }
        match text {
            Some(reason) => DbError::Value(format!(
                "the PostgreSQL server at {} was refused (sslmode={}): {reason}",
                self.server(),
                self.tls.mode
            )),
            None => DbError::Pg(e),
        }
    }

    /// `host:port` of the server (every one when the URL names several).
    fn server(&self) -> String {
        let ports = self.config.get_ports();
        self.config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match h {
                    postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                    postgres::config::Host::Unix(p) => format!("{}", p.display()),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn lock(&self) -> MutexGuard<'_, (Vec<PgConn>, usize)> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection, a new one while fewer than `max` exist, else the next one freed.
    fn take(&self) -> Result<PgConn, DbError> {
        let mut g = self.lock();
        loop {
            if let Some(c) = g.0.pop() {
                return Ok(c);
            }
            if g.1 < self.max {
                g.1 += 1;
                drop(g);
                return self.connect().inspect_err(|_| {
                    // The slot is free again for whoever waits.
                    self.lock().1 -= 1;
                    self.freed.notify_one();
                });
            }
            g = self.freed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Runs `f` on a pooled connection, off any tokio worker, and returns the connection.
    pub(super) fn with<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&mut PgConn) -> Result<T, E>,
    ) -> Result<T, E> {
        outside_runtime(|| {
            let mut conn = self.take()?;
            let result = f(&mut conn);
            self.give(conn);
            result
        })
    }

    /// Returns a connection; a closed one is dropped so the next `take` makes a new one.
    fn give(&self, c: PgConn) {
        let mut g = self.lock();
        if c.client.is_closed() {
            g.1 -= 1;
        } else {
            g.0.push(c);
        }
        self.freed.notify_one();
    }
}

impl Drop for PgPool {
    /// Closing a client blocks on its runtime, which a tokio worker must not do: inside tokio
    /// the idle connections are closed on a thread of their own.
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.idle.get_mut().unwrap_or_else(|p| p.into_inner()).0);
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::spawn(move || drop(idle));
        }
    }
}

/// PostgreSQL connection settings from a `postgres://` URL, with payrecon's defaults, and the
/// TLS its `sslmode` and `sslrootcert` ask for ([`pgtls`](super::pgtls)).
pub fn pg_config(url: &str) -> Result<(postgres::Config, Tls), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!("{:?} is not a postgres:// URL", redact(url)));
    }
    let (rest, tls) = super::pgtls::split_url(url)?;
    let mut c: postgres::Config = rest
        .parse()
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    c.ssl_mode(tls.mode.wire());
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(Duration::from_secs(10));
    }
    if c.get_application_name().is_none() {
        c.application_name("payrecon");
    }
    Ok((c, tls))
}

/// `url` with `password` set in it (kept in memory only; shown redacted).
pub fn with_password(url: &str, password: &str) -> Result<String, String> {
    let mut u = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    u.set_password(Some(password))
        .map_err(|()| "a password needs a host".to_string())?;
    Ok(u.to_string())
}

/// A URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            // A password in the query (refused, but named in the refusal's context) too.
            if u.query_pairs().any(|(k, _)| k == "password") {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" {
                            "***".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => "postgres://…".to_string(),
    }
}
