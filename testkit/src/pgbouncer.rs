//! A throwaway PgBouncer (Debian's `pgbouncer`, or `PAYRECON_PGBOUNCER`) in front of a
//! [`TempPg`], in transaction pooling mode: each transaction may run on another server
//! connection, so nothing of a session (prepared statements, session advisory locks, `SET`)
//! lasts from one transaction to the next. Every database of the server is reachable through
//! it under the same name. A watchdog stops it when this process ends.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::pg::{TempPg, command, run_as, watchdog};

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
    let dir = tempfile::Builder::new()
        .prefix("payrecon-pgbouncer-")
        .tempdir()
        .map_err(io("creating a directory"))?
        .keep();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(io("chown"))?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io("finding a free port"))?
        .port();
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
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    loop {
        let u = url.clone();
        let ok = std::thread::spawn(move || {
            postgres::Client::connect(&u, postgres::NoTls)
                .and_then(|mut c| c.simple_query("SELECT 1"))
                .is_ok()
        })
        .join()
        .unwrap_or(false);
        if ok {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "PgBouncer did not start; see {}",
                dir.join("pgbouncer.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Bouncer {
        port,
        _children: (server, watchdog),
    })
}
