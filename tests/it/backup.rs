//! `payrecon ledger backup` and the restore drill: a backup taken while a `payrecon run` daemon
//! works, restored in place of the ledger, and reconciliation continued from it. Nothing the
//! copy held may be lost or doubled; what happened after the copy is found again (events sent
//! again: at least once, docs/operations.md "Backups").

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Stdio;
use std::time::Duration;

use crate::support::receiver::{Answer, Receiver};
use crate::support::{
    DirectSql, Env, Guard, count, output, settled, sigterm_and_wait, text, wait_for,
};

use payrecon_testkit::BEHAVIOURS as MIX;

const SESSIONS: usize = 900;

/// The rows of a SQLite file, read by hand with its own connection.
fn strings(path: &std::path::Path, sql: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut stmt = c.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// `payrecon ledger backup|restore FILE` with this env's config.
async fn ledger_cmd(env: &Env, what: &str, file: &std::path::Path) -> std::process::Output {
    let mut c = env.cmd();
    c.args(["ledger", what]).arg(file);
    output(c).await
}

/// A ledger holding one PENDING MoPay session `id` of `amount` LSL, backed up to `copy.db` in
/// the env's folder: the backup's path.
async fn one_session_backed_up(
    env: &Env,
    l: &payrecon::ledger::Ledger,
    id: &str,
    amount: &str,
) -> std::path::PathBuf {
    l.execute_batch(&format!(
        "INSERT INTO sessions (provider, session_id, amount, currency) VALUES ('mopay', '{id}', '{amount}', 'LSL')"
    ))
    .unwrap();
    let copy = env.dir.path().join("copy.db");
    assert!(ledger_cmd(env, "backup", &copy).await.status.success());
    copy
}

/// Each event the receiver got: (event id, session id, the state it announced).
fn received(rx: &Receiver) -> Vec<(String, String, String)> {
    rx.requests()
        .into_iter()
        .filter(|r| r.id.starts_with("evt_"))
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            (
                r.id,
                v["data"]["session_id"].as_str().unwrap().to_string(),
                v["data"]["to"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_run_works_restores_and_reconciliation_goes_on() {
    let mut env = Env::start().await;
    // The first delivery of every event fails: at any moment some are waiting.
    let rx = Receiver::first_then_ok(Answer::Status(503)).await;
    env.webhook(&rx.url, r#"["200ms", "400ms", "800ms"]"#, "1s");
    let l = env.ledger();
    let mut expected = BTreeMap::new();
    for i in 0..SESSIONS {
        let (behaviour, want) = MIX[i % MIX.len()];
        // Customers act over eight seconds, so the daemon is busy when the copy is taken.
        let id = format!("drill{i:04}");
        env.session(
            &l,
            &id,
            &format!("{behaviour}.after-{}", (i * 8000) / SESSIONS),
        );
        expected.insert(id, want);
    }
    let spawn = |env: &Env| {
        let mut c = env.cmd();
        c.arg("run").stdout(Stdio::null()).stderr(Stdio::null());
        Guard(c.spawn().unwrap())
    };
    let daemon = spawn(&env);
    assert!(
        wait_for(Duration::from_secs(60), || count(
            &l,
            "SELECT count(*) FROM transitions"
        ) >= (SESSIONS / 4) as i64)
        .await,
        "the daemon made no progress"
    );
    let copy = env.dir.path().join("backup.db");
    let o = ledger_cmd(&env, "backup", &copy).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("integrity_check ok"), "{out}");
    assert!(
        out.contains("sessions") && out.contains(&format!("{SESSIONS} rows")),
        "{out}"
    );

    // What the copy holds, read by hand.
    let held_transitions: BTreeSet<String> = strings(
        &copy,
        "SELECT t.id || '|' || s.session_id || '|' || t.to_status FROM transitions t JOIN sessions s ON s.id = t.session",
    )
    .into_iter()
    .collect();
    let held_events: BTreeSet<String> = strings(&copy, "SELECT id FROM events")
        .into_iter()
        .collect();
    let held_waiting = strings(&copy, "SELECT id FROM events WHERE delivered_at IS NULL").len();
    let held_pending = strings(
        &copy,
        "SELECT session_id FROM sessions WHERE status = 'PENDING'",
    )
    .len();
    assert!(
        !held_transitions.is_empty() && held_pending > 0,
        "the copy was not taken mid-run: {} transitions, {held_pending} pending",
        held_transitions.len()
    );
    assert_eq!(
        strings(&copy, "PRAGMA integrity_check"),
        vec!["ok".to_string()]
    );

    // The original ledger runs on to the end, then is lost; the backup takes its place.
    assert!(
        settled(&l, Duration::from_secs(90)).await,
        "the first run did not settle"
    );
    sigterm_and_wait(daemon).await;
    drop(l);
    let before_restore = received(&rx).len();
    // Restored with the command, over the ledger as the first run left it (its -wal and -shm
    // beside it): the restore writes through the ledger's own WAL.
    let o = ledger_cmd(&env, "restore", &copy).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("the ledger as it was is kept in"), "{out}");
    let kept: Vec<std::path::PathBuf> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        strings(&kept[0], "SELECT CAST(count(*) AS TEXT) FROM transitions"),
        vec![SESSIONS.to_string()],
        "the ledger as it was, kept"
    );

    let daemon = spawn(&env);
    let l = env.ledger();
    assert!(
        settled(&l, Duration::from_secs(90)).await,
        "the restored ledger did not settle: {} pending",
        count(&l, "SELECT count(*) FROM sessions WHERE status = 'PENDING'")
    );
    sigterm_and_wait(daemon).await;

    // Nothing the copy held was lost: its transitions and events are all there, unchanged.
    let now_transitions: BTreeSet<String> = l
        .query_strings(
            "SELECT t.id || '|' || s.session_id || '|' || t.to_status FROM transitions t JOIN sessions s ON s.id = t.session",
        )
        .unwrap()
        .into_iter()
        .collect();
    assert!(held_transitions.is_subset(&now_transitions));
    let now_events: BTreeSet<String> = l
        .query_strings("SELECT id FROM events")
        .unwrap()
        .into_iter()
        .collect();
    assert!(held_events.is_subset(&now_events));
    // Nothing was doubled: one transition and one event per session, each where the simulator's
    // documents say it ends.
    assert_eq!(now_transitions.len(), SESSIONS);
    assert_eq!(
        count(&l, "SELECT count(DISTINCT session) FROM transitions"),
        SESSIONS as i64
    );
    assert_eq!(now_events.len(), SESSIONS);
    for row in l
        .query_strings("SELECT session_id, status FROM sessions")
        .unwrap()
    {
        let (id, status) = row.split_once('|').unwrap();
        assert_eq!(status, expected[id], "{id}");
    }
    // Every event of the restored ledger reached the receiver, and no session was ever
    // announced in two different states (the truth found again is the truth found before).
    let got = received(&rx);
    let got_ids: BTreeSet<&str> = got.iter().map(|g| g.0.as_str()).collect();
    for id in &now_events {
        assert!(got_ids.contains(id.as_str()), "event {id} never delivered");
    }
    let mut announced: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (_, session, to) in &got {
        announced.entry(session).or_default().insert(to);
    }
    for (session, states) in &announced {
        assert_eq!(states.len(), 1, "{session} announced as {states:?}");
        assert_eq!(
            states.iter().next().copied(),
            Some(expected[*session]),
            "{session}"
        );
    }
    let sessions_twice = {
        let mut ids: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for (id, session, _) in &got {
            ids.entry(session).or_default().insert(id);
        }
        ids.values().filter(|v| v.len() > 1).count()
    };
    eprintln!(
        "restore drill: {SESSIONS} sessions; the copy held {} transitions, {} events ({held_waiting} undelivered), {held_pending} pending; {} deliveries before the restore, {} after; {sessions_twice} sessions announced again under a new event id after the restore",
        held_transitions.len(),
        held_events.len(),
        before_restore,
        got.len() - before_restore
    );
}

#[tokio::test]
async fn backup_refuses_an_existing_file_a_missing_ledger_and_postgresql() {
    let env = Env::start().await;
    drop(env.ledger());
    let there = env.dir.path().join("there.db");
    std::fs::write(&there, b"keep me").unwrap();
    let o = ledger_cmd(&env, "backup", &there).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("never overwrites"), "{err}");
    assert_eq!(std::fs::read(&there).unwrap(), b"keep me");

    // A dangling symlink where the copy would go: not followed, not replaced.
    let link = env.dir.path().join("link.db");
    let aim = env.dir.path().join("aimed-at.db");
    std::os::unix::fs::symlink(&aim, &link).unwrap();
    let o = ledger_cmd(&env, "backup", &link).await;
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}{err}");
    assert!(!aim.exists(), "the backup followed a symlink");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let left: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A ledger path with nothing there: no ledger is created by a backup.
    env.set("path", "\"/nonexistent/ledger.db\"");
    let o = ledger_cmd(&env, "backup", &env.dir.path().join("new.db")).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("no ledger there"), "{err}");
    assert!(!env.dir.path().join("new.db").exists());
    assert!(!std::path::Path::new("/nonexistent/ledger.db").exists());
}

#[tokio::test]
async fn backup_of_a_postgresql_ledger_points_to_postgresql_s_tools() {
    let env = Env::start_on(crate::support::Engine::Postgres).await;
    let o = ledger_cmd(&env, "backup", &env.dir.path().join("new.db")).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("PostgreSQL's own tools"), "{err}");
    assert!(!env.dir.path().join("new.db").exists());
}

/// The copy is private, and a backup leaves no partial file behind.
#[tokio::test]
async fn a_backup_is_private_and_complete() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::start().await;
    let l = env.ledger();
    l.execute_batch("INSERT INTO sessions (provider, session_id, amount, currency) VALUES ('mopay', 'b1', '12.50', 'LSL'), ('mopay', 'b2', '0.75', 'LSL')")
        .unwrap();
    let copy = env.dir.path().join("copy.db");
    let o = ledger_cmd(&env, "backup", &copy).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("PENDING    LSL           2 sessions"), "{out}");
    assert!(out.contains("13.25"), "{out}");
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let names: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("partial") || n.starts_with("copy.db-")),
        "{names:?}"
    );
    assert_eq!(
        strings(
            &copy,
            "SELECT session_id || ' ' || amount FROM sessions ORDER BY id"
        ),
        vec!["b1 12.50".to_string(), "b2 0.75".to_string()]
    );
}

/// A restore refuses, changing nothing, while a daemon holds leases, and a backup that is not a
/// sound payrecon ledger of this build's schema or older.
#[tokio::test]
async fn restore_refuses_a_busy_ledger_a_bad_backup_and_a_newer_one() {
    let env = Env::start().await;
    let l = env.ledger();
    let copy = one_session_backed_up(&env, &l, "r1", "1.00").await;
    l.execute_batch("INSERT INTO sessions (provider, session_id, amount, currency) VALUES ('mopay', 'r2', '2.00', 'LSL')")
        .unwrap();
    let sessions = || count(&l, "SELECT count(*) FROM sessions");

    // A daemon's lease: refused.
    l.execute_batch("UPDATE sessions SET lease_owner = 'daemon-1', lease_until = '2999-01-01T00:00:00.000Z' WHERE session_id = 'r2'")
        .unwrap();
    let o = ledger_cmd(&env, "restore", &copy).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains("holds 1 leases") && err.contains("stop every daemon"),
        "{err}"
    );
    assert_eq!(sessions(), 2);
    l.execute_batch("UPDATE sessions SET lease_owner = NULL, lease_until = NULL")
        .unwrap();

    // Not a SQLite file, and a damaged one: refused.
    let junk = env.dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let o = ledger_cmd(&env, "restore", &junk).await;
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}{err}");
    assert_eq!(sessions(), 2);
    let damaged = env.dir.path().join("damaged.db");
    let mut bytes = std::fs::read(&copy).unwrap();
    let page = 4096;
    for b in &mut bytes[page * 2..page * 3] {
        *b = 0xA5;
    }
    std::fs::write(&damaged, bytes).unwrap();
    let o = ledger_cmd(&env, "restore", &damaged).await;
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}{err}");
    assert_eq!(sessions(), 2);

    // From a newer release: refused naming both versions.
    let newer = env.dir.path().join("newer.db");
    std::fs::copy(&copy, &newer).unwrap();
    let v = payrecon::ledger::schema::VERSION + 1;
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", v)
        .unwrap();
    let o = ledger_cmd(&env, "restore", &newer).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains(&format!(
            "schema version {v} is newer than this build's {}",
            payrecon::ledger::schema::VERSION
        )),
        "{err}"
    );
    assert_eq!(sessions(), 2);

    // The sound backup: restored, the session added after it gone, the ledger as it was kept.
    let o = ledger_cmd(&env, "restore", &copy).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(
        l.query_strings("SELECT session_id FROM sessions").unwrap(),
        vec!["r1".to_string()]
    );
}

/// A ledger that no longer reads (the usual reason to restore) does not stand in the way: its
/// files are moved aside as they were, and the backup becomes the ledger.
#[tokio::test]
async fn restore_over_a_damaged_ledger_moves_it_aside_as_found() {
    let env = Env::start().await;
    let l = env.ledger();
    let copy = one_session_backed_up(&env, &l, "d1", "3.00").await;
    drop(l);
    // Every page after the header's, overwritten.
    let mut bytes = std::fs::read(&env.ledger_path).unwrap();
    let len = bytes.len();
    for b in &mut bytes[4096..len] {
        *b = 0x5A;
    }
    std::fs::write(&env.ledger_path, &bytes).unwrap();
    let o = ledger_cmd(&env, "restore", &copy).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("moved aside as found"), "{out}");
    let aside: Vec<std::path::PathBuf> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.to_string_lossy();
            name.contains(".before-restore-") && !name.ends_with("-wal") && !name.ends_with("-shm")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        bytes,
        "the damaged ledger, as found"
    );
    assert_eq!(
        env.ledger()
            .query_strings("SELECT session_id || ' ' || amount FROM sessions")
            .unwrap(),
        vec!["d1 3.00".to_string()]
    );
}
