//! A real PostgreSQL for the tests, started by the harness itself: `initdb` and `postgres` from
//! the machine's PostgreSQL (`PAYRECON_PG_BIN`, else `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`) on a temporary directory and a free loopback port, run as the
//! `postgres` user when the tests run as root. One server per test binary, one fresh database
//! per test. A watchdog stops the server and deletes its directory when the test process ends,
//! however it ends.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

struct Server {
    port: u16,
    /// Held, never waited for: the watchdog ends both after this process.
    _children: (std::process::Child, std::process::Child),
}

static SERVER: OnceLock<Server> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The URL of a new, empty database on the test server (started on first use).
pub fn new_database() -> String {
    let server = SERVER.get_or_init(start);
    let name = format!("t{}", NEXT_DB.fetch_add(1, Ordering::Relaxed));
    admin(server.port, &format!("CREATE DATABASE {name}"));
    format!("postgres://postgres@127.0.0.1:{}/{name}", server.port)
}

/// Runs SQL as the superuser on `postgres` (off any tokio runtime: the client blocks).
fn admin(port: u16, sql: &str) {
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let mut c = postgres::Client::connect(&url, postgres::NoTls)
            .expect("connecting to the test PostgreSQL");
        c.batch_execute(&sql).expect("running admin SQL");
    })
    .join()
    .unwrap();
}

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PAYRECON_PG_BIN") {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
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
    found.pop().expect(
        "PostgreSQL is needed for the PostgreSQL ledger tests: install it (initdb, postgres) \
         or point PAYRECON_PG_BIN at its bin directory",
    )
}

/// `(uid, gid)` of the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn run_as() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> Option<u32> {
        let out = Command::new("id").args(args).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id(&["-u"])? != 0 {
        return None;
    }
    Some((id(&["-u", "postgres"])?, id(&["-g", "postgres"])?))
}

fn command(bin: &Path, user: Option<(u32, u32)>, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(dir);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c
}

fn start() -> Server {
    let bin = bin_dir();
    let user = run_as();
    let dir = tempfile::Builder::new()
        .prefix("payrecon-pg-")
        .tempdir()
        .unwrap()
        .keep();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    }
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
        .expect("running initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Durability settings off: these tests kill daemons, never the database.
    let server = command(&bin.join("postgres"), user, &dir)
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-k")
        .arg(&dir)
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "max_connections=200"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .spawn()
        .expect("starting postgres");
    // The watchdog outlives us: when this test process is gone, it stops the server (smart
    // shutdown first, then immediate) and removes its directory.
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(
            "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; \
             kill -INT \"$2\" 2>/dev/null; i=0; \
             while kill -0 \"$2\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
             kill -QUIT \"$2\" 2>/dev/null; sleep 0.5; rm -rf \"$3\"",
        )
        .args([
            "watchdog",
            &std::process::id().to_string(),
            &server.id().to_string(),
        ])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("starting the PostgreSQL watchdog");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let ok =
            std::thread::spawn(move || postgres::Client::connect(&url, postgres::NoTls).is_ok())
                .join()
                .unwrap();
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the test PostgreSQL did not start; see {}",
            dir.join("server.log").display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Server {
        port,
        _children: (server, watchdog),
    }
}
