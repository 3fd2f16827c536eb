//! Upgrades from every earlier schema, on both engines: a ledger at each version 1 to this
//! build's (built by the migrations of that version, which are never edited once landed:
//! `migrations_once_landed_are_never_edited` holds that), filled with rows of every state as
//! payrecon and applications wrote them then (`tests/fixtures/upgrade/`), is opened by this
//! build's binary: migrated, every row read or set aside as documented, `stats` as written by
//! hand from the rows, before and after a pass. A ledger from a newer release is refused with a
//! message naming both versions, untouched.

use payrecon::ledger::Location;
use payrecon::ledger::schema::{MIGRATIONS, PG_MIGRATIONS, VERSION};

use crate::support::{DirectSql, Engine, Env, output, text};

const ROWS: &str = include_str!("../fixtures/upgrade/rows.sql");
const BEFORE_5: &str = include_str!("../fixtures/upgrade/before-5.sql");

/// The ledger at `env.location` as schema version `v` left it, with the fixture's rows.
fn build(env: &Env, v: usize) {
    let loc = &env.location;
    let mut sql = String::new();
    match loc {
        Location::Path(_) => {
            for m in &MIGRATIONS[..v] {
                sql.push_str(m);
            }
            sql.push_str(&format!("\nPRAGMA user_version = {v};\n"));
        }
        Location::Url(_) => {
            for m in &PG_MIGRATIONS[..v] {
                sql.push_str(m);
            }
            sql.push_str(&format!(
                "\nCREATE TABLE payrecon_schema (version BIGINT NOT NULL);\nINSERT INTO payrecon_schema VALUES ({v});\n"
            ));
        }
    }
    loc.execute_batch(&sql)
        .unwrap_or_else(|e| panic!("building version {v}: {e}"));
    loc.execute_batch(ROWS)
        .unwrap_or_else(|e| panic!("rows at version {v}: {e}"));
    if v < 5 {
        loc.execute_batch(BEFORE_5)
            .unwrap_or_else(|e| panic!("the pre-5 row at version {v}: {e}"));
    }
    if loc_is_pg(loc) {
        // Rows written with their ids, as a restore would: the sequences move past them.
        loc.execute_batch(
            "SELECT setval(pg_get_serial_sequence('sessions', 'id'), 100); \
             SELECT setval(pg_get_serial_sequence('transitions', 'id'), 100); \
             SELECT setval(pg_get_serial_sequence('events', 'seq'), 100);",
        )
        .unwrap();
    }
}

fn loc_is_pg(l: &Location) -> bool {
    matches!(l, Location::Url(_))
}

async fn stats(env: &Env) -> String {
    let mut c = env.cmd();
    c.arg("stats");
    let o = output(c).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    out
}

/// What `stats` must say of the fixture's rows, written by hand: 2 PENDING (3 with the pre-5
/// row), 3 COMPLETED (LSL 250.50 + 10.25, ZAR 99.99), one each of the rest; 7 events, C2's
/// and R1's waiting, C3's dead. A pass then expires P1 and P2 (created in January, past the
/// test config's `max_age` of an hour: two transitions and two events more, waiting, as no
/// webhook is configured) and sets the pre-5 row aside.
fn expect_stats(out: &str, v: usize, after_pass: bool) {
    let old = usize::from(v < 5);
    let (pending, expired, events, waiting) = if after_pass {
        (old, 3, 9, 4)
    } else {
        (2 + old, 1, 7, 2)
    };
    let row = format!("mopay {pending} 3 1 1 {expired} 1");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == row),
        "version {v} (after a pass: {after_pass}): no row {row:?} in\n{out}"
    );
    for (currency, n, sum) in [("LSL", "2", "260.75"), ("ZAR", "1", "99.99")] {
        assert!(
            lines.iter().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.contains(&currency) && f.contains(&n) && f.contains(&sum)
            }),
            "version {v}: no COMPLETED {currency} {n} {sum} in\n{out}"
        );
    }
    assert!(
        out.contains(&format!(
            "events: {events} total, {waiting} waiting, 1 dead"
        )),
        "version {v} (after a pass: {after_pass}):\n{out}"
    );
    let unreadable = out.contains("UNREADABLE ROWS: 1 ");
    assert_eq!(
        unreadable,
        v < 5 && after_pass,
        "version {v} (after a pass: {after_pass}): the pre-5 row is set aside by a pass, and nothing else is unreadable\n{out}"
    );
}

async fn upgrades_from_every_earlier_schema(engine: Engine) {
    for v in 1..=VERSION as usize {
        let env = Env::start_on(engine).await;
        build(&env, v);
        // Opened by this build: migrated, and every total as it was.
        expect_stats(&stats(&env).await, v, false);
        let version = if loc_is_pg(&env.location) {
            env.location
                .query_strings("SELECT version FROM payrecon_schema")
                .unwrap()
        } else {
            env.location.query_strings("PRAGMA user_version").unwrap()
        };
        assert_eq!(version, vec![VERSION.to_string()], "from version {v}");
        // The tables and indexes are a fresh ledger's.
        let fresh = Env::start_on(engine).await;
        assert_eq!(
            crate::engines::shape(&env.ledger()),
            crate::engines::shape(&fresh.ledger()),
            "from version {v}"
        );
        if let (Location::Path(old), Location::Path(new)) = (&env.location, &fresh.location) {
            drop(fresh.ledger());
            let sql = "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY name";
            assert_eq!(
                Location::Path(old.clone()).query_strings(sql).unwrap(),
                Location::Path(new.clone()).query_strings(sql).unwrap(),
                "from version {v}: the schema differs from a fresh ledger's"
            );
        }
        // A pass reads every row: the PENDING ones are past max_age and expire, the pre-5 row
        // is set aside; nothing else moves.
        let mut c = env.cmd();
        c.arg("once");
        let o = output(c).await;
        let (out, err) = text(&o);
        assert!(o.status.success(), "from version {v}: {out}{err}");
        expect_stats(&stats(&env).await, v, true);
        for id in ["C1", "C3", "R1", "E1", "MOP_sim-pending_P1"] {
            let mut c = env.cmd();
            c.args(["show", id]);
            let o = output(c).await;
            let (out, err) = text(&o);
            assert!(
                o.status.success(),
                "from version {v}, show {id}: {out}{err}"
            );
            assert!(out.contains(id), "{out}");
        }
    }
}

/// A ledger written by a newer release: refused by every command that opens it, with both
/// versions named, and not changed.
async fn a_ledger_from_a_newer_release_is_refused_naming_both_versions(engine: Engine) {
    let env = Env::start_on(engine).await;
    drop(env.ledger());
    let newer = VERSION + 3;
    let (set, read) = if loc_is_pg(&env.location) {
        (
            format!("UPDATE payrecon_schema SET version = {newer}"),
            "SELECT version FROM payrecon_schema",
        )
    } else {
        (
            format!("PRAGMA user_version = {newer}"),
            "PRAGMA user_version",
        )
    };
    env.location.execute_batch(&set).unwrap();
    for args in [&["stats"][..], &["once"], &["run"]] {
        let mut c = env.cmd();
        c.args(args);
        let o = output(c).await;
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!(
                "schema version {newer} is newer than this build's {VERSION}"
            )),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        env.location.query_strings(read).unwrap(),
        vec![newer.to_string()]
    );
}

crate::on_both_engines!(
    upgrades_from_every_earlier_schema,
    a_ledger_from_a_newer_release_is_refused_naming_both_versions,
);

/// Each landed migration, as a SHA-256 of its text per engine (`tests/fixtures/upgrade/
/// migrations.sha256`): an edit to one would leave ledgers made by the release that had it
/// with a schema no test builds. A new migration appends a line.
#[test]
fn migrations_once_landed_are_never_edited() {
    use sha2::{Digest, Sha256};
    let pinned = include_str!("../fixtures/upgrade/migrations.sha256");
    let hex = |s: &str| {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut seen = 0;
    for line in pinned
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (engine, n, hash) = (f[0], f[1].parse::<usize>().unwrap(), f[2]);
        let list = match engine {
            "sqlite" => MIGRATIONS,
            "postgresql" => PG_MIGRATIONS,
            other => panic!("unknown engine {other}"),
        };
        assert_eq!(
            hex(list[n - 1]),
            hash,
            "migration {n} ({engine}) was edited after it landed: add a new migration instead"
        );
        seen += 1;
    }
    let lines: Vec<String> = [("sqlite", MIGRATIONS), ("postgresql", PG_MIGRATIONS)]
        .iter()
        .flat_map(|(engine, list)| {
            list.iter()
                .enumerate()
                .map(move |(i, m)| format!("{engine} {} {}", i + 1, hex(m)))
        })
        .collect();
    assert_eq!(
        seen,
        2 * MIGRATIONS.len(),
        "pin every migration in tests/fixtures/upgrade/migrations.sha256; its lines are:\n{}",
        lines.join("\n")
    );
}
