//! A throwaway PostgreSQL: `initdb` and `postgres` from the machine's PostgreSQL (`PAYRECON_PG_BIN`, else `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`) on a temporary directory and a free loopback port, run as the
//! `postgres` user when we run as root (PostgreSQL refuses root). Durability is off for the
//! tests (they kill daemons, never the database). A watchdog stops the server and deletes its directory when this
//! process ends, however it ends.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running throwaway server.
pub struct TempPg {
    port: u16,
    /// Its directory, which holds its Unix socket (`-k`).
    dir: PathBuf,
    next_db: AtomicU32,
    /// How the server is started, again on [`TempPg::restart`].
    launch: Launch,
    server: Mutex<std::process::Child>,
    /// Held, never waited for: it stops the server after this process.
    _watchdog: std::process::Child,
}

struct Launch {
    bin: PathBuf,
    user: Option<(u32, u32)>,
    args: Vec<std::ffi::OsString>,
}

impl Launch {
    fn spawn(&self, dir: &Path) -> Result<std::process::Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .map_err(|e| format!("opening the server log: {e}"))?;
        command(&self.bin, self.user, dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))
    }
}

/// Waits until the server in `dir` takes connections on its socket.
fn wait_ready(dir: &Path, port: u16) -> Result<(), String> {
    let url = format!(
        "host={} port={port} user=postgres dbname=postgres",
        dir.display()
    );
    wait_until_answers(&url, "the throwaway PostgreSQL", &dir.join("server.log"))
}

/// Waits (up to a minute) until a `SELECT 1` at `url` is answered; else names `what` and its
/// log.
pub(crate) fn wait_until_answers(url: &str, what: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let u = url.to_string();
        let ok = std::thread::spawn(move || {
            postgres::Client::connect(&u, postgres::NoTls)
                .and_then(|mut c| c.simple_query("SELECT 1"))
                .is_ok()
        })
        .join()
        .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{what} did not start; see {}", log.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A new directory (kept: the watchdog removes it), owned by `user` when given.
pub(crate) fn server_dir(prefix: &str, user: Option<(u32, u32)>) -> Result<PathBuf, String> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("creating a directory: {e}"))?
        .keep();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| format!("chown: {e}"))?;
    }
    Ok(dir)
}

/// A loopback port free when asked.
pub(crate) fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

impl TempPg {
    /// The URL of a new, empty database on this server.
    pub fn new_database(&self) -> Result<String, String> {
        let name = self.new_database_name()?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    /// The name of a new, empty database on this server.
    pub fn new_database_name(&self) -> Result<String, String> {
        let name = format!("t{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        self.admin(&format!("CREATE DATABASE {name}"))?;
        Ok(name)
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: open transactions are rolled back, clients cut off),
    /// keeps it down for `down`, then starts it again on the same port and data, and waits
    /// until it takes connections.
    pub fn restart(&self, down: Duration) -> Result<(), String> {
        let mut server = self.server.lock().unwrap_or_else(|p| p.into_inner());
        let pid = server.id().to_string();
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .map_err(|e| format!("kill -INT {pid}: {e}"))?;
        server
            .wait()
            .map_err(|e| format!("waiting for postgres to stop: {e}"))?;
        std::thread::sleep(down);
        *server = self.launch.spawn(&self.dir)?;
        wait_ready(&self.dir, self.port)
    }

    /// Runs SQL as the superuser on `postgres`, over the Unix socket (which `hostssl`-only
    /// servers still take without TLS), on a thread of its own: the client blocks.
    pub fn admin(&self, sql: &str) -> Result<(), String> {
        let (sql, url) = (sql.to_string(), self.socket_url("postgres"));
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls)
                .map_err(|e| format!("connecting to the throwaway PostgreSQL: {e}"))?;
            c.batch_execute(&sql).map_err(|e| format!("{sql}: {e}"))
        })
        .join()
        .map_err(|_| "the admin thread panicked".to_string())?
    }

    /// Connection settings (key=value) for `db` over the server's Unix socket.
    pub fn socket_url(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.dir.display(),
            self.port
        )
    }
}

/// How a throwaway server is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// PostgreSQL's durability defaults; `false` turns fsync off (for tests, which kill
    /// daemons, never the database).
    pub durable: bool,
    /// `ssl = on` with this certificate and key (PEM files, copied for the server), and TCP
    /// connections only over TLS (`hostssl` in pg_hba.conf; the Unix socket stays plain).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A directory removed when this process is gone (by a watchdog that outlives it), for what a
/// `static` holds for the whole test run and so never drops. Hold the child as long as the
/// directory is used.
pub fn removed_at_exit(dir: &Path) -> Result<std::process::Child, String> {
    watchdog(&dir.join("no pid file: nothing to stop"), dir)
}

/// Outlives us: when this process is gone, it stops the server whose pid is the first line of
/// `pid_file` (SIGINT first — PostgreSQL's fast shutdown, PgBouncer's safe one — then SIGQUIT,
/// then SIGKILL) and removes `dir`.
pub(crate) fn watchdog(pid_file: &Path, dir: &Path) -> Result<std::process::Child, String> {
    Command::new("sh")
        .arg("-c")
        .arg(
            "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; \
             p=$(head -n 1 \"$2\" 2>/dev/null); \
             if [ -n \"$p\" ]; then kill -INT \"$p\" 2>/dev/null; i=0; \
             while kill -0 \"$p\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
             kill -QUIT \"$p\" 2>/dev/null; sleep 0.5; kill -KILL \"$p\" 2>/dev/null; fi; \
             rm -rf \"$3\"",
        )
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(pid_file)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting the watchdog: {e}"))
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PAYRECON_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|d| d.join("initdb").exists());
    found.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().ok_or_else(|| {
        "PostgreSQL not found: install it (initdb, postgres) or point PAYRECON_PG_BIN at its \
         bin directory"
            .to_string()
    })
}

/// `(uid, gid)` of the `postgres` user when we are root (PostgreSQL refuses to run as root).
pub(crate) fn run_as() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> Option<u32> {
        let out = Command::new("id").args(args).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id(&["-u"])? != 0 {
        return None;
    }
    Some((id(&["-u", "postgres"])?, id(&["-g", "postgres"])?))
}

pub(crate) fn command(bin: &Path, user: Option<(u32, u32)>, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(dir);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c
}

/// Starts a server and waits until it takes connections. `durable: false` turns fsync off (for
/// tests, which kill daemons, never the database); the benchmark keeps PostgreSQL's defaults.
pub fn start(durable: bool) -> Result<TempPg, String> {
    start_with(Options {
        durable,
        ..Options::default()
    })
}

/// Starts a server as `options` say and waits until it takes connections.
pub fn start_with(options: Options) -> Result<TempPg, String> {
    let durable = options.durable;
    let bin = bin_dir()?;
    let user = run_as();
    let io = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
    let dir = server_dir("payrecon-pg-", user)?;
    let data = dir.join("data");
    let out = command(&bin.join("initdb"), user, &dir)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .map_err(io("running initdb"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port()?;
    let mut args: Vec<std::ffi::OsString> = vec!["-D".into(), data.clone().into()];
    for a in [
        "-p",
        &port.to_string(),
        "-c",
        "listen_addresses=127.0.0.1",
        "-k",
    ] {
        args.push(a.into());
    }
    args.push(dir.clone().into());
    if let Some((cert, key)) = &options.tls {
        // The server reads them as its own user, and refuses a key others can read.
        for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
            let to = dir.join(to);
            std::fs::copy(from, &to).map_err(io("copying the TLS files"))?;
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(io("chmod"))?;
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).map_err(io("chown"))?;
            }
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .map_err(io("writing pg_hba.conf"))?;
        for a in [
            "ssl=on".to_string(),
            format!("ssl_cert_file={}", dir.join("server.crt").display()),
            format!("ssl_key_file={}", dir.join("server.key").display()),
        ] {
            args.push("-c".into());
            args.push(a.into());
        }
    }
    let mut settings = vec!["max_connections=200"];
    if !durable {
        settings.extend([
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ]);
    }
    for s in settings {
        args.push("-c".into());
        args.push(s.into());
    }
    let launch = Launch {
        bin: bin.join("postgres"),
        user,
        args,
    };
    let server = launch.spawn(&dir)?;
    // The server's pid is read from its pid file at the end: a restart changes it.
    let watchdog = watchdog(&data.join("postmaster.pid"), &dir)?;
    wait_ready(&dir, port)?;
    Ok(TempPg {
        port,
        dir,
        next_db: AtomicU32::new(0),
        launch,
        server: Mutex::new(server),
        _watchdog: watchdog,
    })
}
