//! A throwaway PgBouncer (Debian's `pgbouncer`, or `PAYRECON_PGBOUNCER`) in front of a
//! [`TempPg`], in transaction pooling mode: each transaction may run on another server
//! connection, so nothing of a session (prepared statements, session advisory locks, `SET`)
//! lasts from one transaction to the next. Every database of the server is reachable through
//! it under the same name. A watchdog stops it when this process ends.

use std::path::PathBuf;
use std::process::Stdio;

use crate::pg::{TempPg, command, free_port, run_as, server_dir, wait_until_answers, watchdog};

/// A running PgBouncer.
pub struct Bouncer {
    port: u16,
    /// Held, never waited for: the watchdog ends both after this process.
    _children: (std::process::Child, std::process::Child),
}

impl Bouncer {
    /// The URL of database `db` through the pooler.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

fn binary() -> PathBuf {
    std::env::var_os("PAYRECON_PGBOUNCER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/pgbouncer"))
}

/// Starts PgBouncer in transaction mode before `pg` and waits until it answers.
pub fn start(pg: &TempPg) -> Result<Bouncer, String> {
    let bin = binary();
    if !bin.exists() {
        return Err(format!(
            "PgBouncer not found at {}: install Debian's pgbouncer (apt-get install pgbouncer) \
             or point PAYRECON_PGBOUNCER at it",
            bin.display()
        ));
    }
    let user = run_as();
    let io = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
    let dir = server_dir("payrecon-pgbouncer-", user)?;
    let port = free_port()?;
    let ini = dir.join("pgbouncer.ini");
    let pid_file = dir.join("pgbouncer.pid");
    std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").map_err(io("users.txt"))?;
    std::fs::write(
        &ini,
        format!(
            "[databases]\n* = host=127.0.0.1 port={pg_port}\n\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\n\
             pool_mode = transaction\nmax_client_conn = 1000\ndefault_pool_size = 8\n\
             logfile = {dir}/pgbouncer.log\npidfile = {pid}\n",
            pg_port = pg.port(),
            dir = dir.display(),
            pid = pid_file.display(),
        ),
    )
    .map_err(io("writing pgbouncer.ini"))?;
    let server = command(&bin, user, &dir)
        .arg(&ini)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).map_err(io("creating the log"))?)
        .spawn()
        .map_err(io("starting pgbouncer"))?;
    let watchdog = watchdog(&pid_file, &dir)?;
    wait_until_answers(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        "PgBouncer",
        &dir.join("pgbouncer.log"),
    )?;
    Ok(Bouncer {
        port,
        _children: (server, watchdog),
    })
}
