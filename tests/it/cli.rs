//! The real binary: exit codes, error messages, import, the daemon's shutdown, the demo.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{
    DirectSql, Engine, Env, Guard, bin, count, due_now, one, output, text, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_exit_2_naming_the_key() {
    let env = Env::start().await;
    let cases = [
        ("batch_size", "0", "schedule.batch_size"),
        ("cron", "\"every minute\"", "schedule.cron"),
        ("initial", "\"soonish\"", "backoff.initial"),
        ("lease", "\"1s\"", "schedule.lease"),
        ("kind", "\"paypal\"", "providers.mopay.kind"),
        ("base_url", "\"ftp://x\"", "providers.mopay.base_url"),
    ];
    for (key, value, named) in cases {
        std::fs::write(
            &env.config_path,
            crate::support::config_text(&env.location, &env.base_url),
        )
        .unwrap();
        env.set(key, value);
        let mut c = env.cmd();
        c.arg("check-config");
        let o = output(c).await;
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(named), "{key}: {err}");
        assert!(err.contains("payrecon.toml"), "the file is named: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    }
    std::fs::write(&env.config_path, "[schedule]\nbatch_sise = 5\n").unwrap();
    let mut c = env.cmd();
    c.arg("check-config");
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("line 2") && err.contains("batch_sise"),
        "{err}"
    );
    let mut c = bin();
    c.args(["--config", "/nonexistent/payrecon.toml", "stats"]);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("/nonexistent/payrecon.toml"));
    // A missing secret variable is named.
    std::fs::write(
        &env.config_path,
        crate::support::config_text(&env.location, &env.base_url),
    )
    .unwrap();
    let with_key = std::fs::read_to_string(&env.config_path).unwrap()
        + "api_key_env = \"PAYRECON_TEST_UNSET_KEY\"\n";
    std::fs::write(&env.config_path, with_key).unwrap();
    let mut c = env.cmd();
    c.arg("check-config").env_remove("PAYRECON_TEST_UNSET_KEY");
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("PAYRECON_TEST_UNSET_KEY"));
    // Commands that only read the ledger do not need the secret.
    let mut c = env.cmd();
    c.arg("stats").env_remove("PAYRECON_TEST_UNSET_KEY");
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}

async fn import_is_all_or_nothing_names_the_line_and_is_idempotent(engine: Engine) {
    let env = Env::start_on(engine).await;
    let bad = env.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "provider,session_id,reference,amount,currency,created_at\n\
         mopay,MOP_1_A1,A1,100.00,LSL,2026-11-01T10:00:00Z\n\
         mopay,MOP_2_A2,A2,12.3.4,LSL,\n\
         mopay,MOP_3_A3,A3,5.00,LSL,yesterday\n\
         paypal,P1,,,,\n\
         mopay,\"bad\u{1}id\",,,,\n"
            .to_string()
            + "mopay,"
            + &"x".repeat(300)
            + ",,,,\n",
    )
    .unwrap();
    let mut c = env.cmd();
    c.arg("import").arg(&bad);
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("line 3: amount"), "{err}");
    assert!(err.contains("line 4: created_at"), "{err}");
    assert!(err.contains("line 5: provider"), "{err}");
    assert!(
        err.contains("line 6: session_id") && err.contains("control character"),
        "{err}"
    );
    assert!(
        err.contains("line 7: session_id") && err.contains("300 bytes"),
        "{err}"
    );
    assert!(err.contains("nothing imported"), "{err}");
    assert_eq!(count(&env.ledger(), "SELECT count(*) FROM sessions"), 0);

    let good = env.dir.path().join("good.csv");
    let mut csv = String::from("session_id,provider,amount,provider_ref\n");
    for i in 0..500 {
        csv.push_str(&format!("\"id,{i}\",mopay,{i}.50,trxn_{i}\n"));
    }
    std::fs::write(&good, csv).unwrap();
    for (added, present) in [(500, 0), (0, 500)] {
        let mut c = env.cmd();
        c.arg("import").arg(&good);
        let o = output(c).await;
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(
            out.contains(&format!("{added} added, {present} already present")),
            "{out}"
        );
    }
    let l = env.ledger();
    assert_eq!(count(&l, "SELECT count(*) FROM sessions"), 500);
    assert_eq!(
        one(&l, "SELECT amount FROM sessions WHERE session_id = 'id,7'"),
        "7.50"
    );
    assert_eq!(
        one(
            &l,
            "SELECT provider_ref FROM sessions WHERE session_id = 'id,7'"
        ),
        "trxn_7"
    );

    let mut c = env.cmd();
    c.arg("import").arg(env.dir.path().join("missing.csv"));
    assert_eq!(output(c).await.status.code(), Some(2));
    let header = env.dir.path().join("header.csv");
    std::fs::write(&header, "provider,sessionid\nmopay,x\n").unwrap();
    let mut c = env.cmd();
    c.arg("import").arg(&header);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("line 1: unknown column \"sessionid\""),
        "{}",
        text(&o).1
    );
}

async fn add_insert_once_show_list_stats_end_to_end(engine: Engine) {
    let env = Env::start_on(engine).await;
    // `add`, with the behaviour picked by the id, and bad input refused with exit 2.
    let mut c = env.cmd();
    c.args([
        "add",
        "--provider",
        "mopay",
        "--session-id",
        "MOP_sim-fail_ORDER7",
        "--amount",
        "100.00",
    ]);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    for (args, named) in [
        (vec!["--session-id", "x", "--amount", "1,00"], "--amount"),
        (vec!["--session-id", "bad\u{7}id"], "--session-id"),
        (
            vec!["--session-id", "x", "--created-at", "now"],
            "--created-at",
        ),
    ] {
        let mut c = env.cmd();
        c.args(["add", "--provider", "mopay"]).args(&args);
        let o = output(c).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(text(&o).1.contains(named), "{args:?}: {}", text(&o).1);
    }
    let mut c = env.cmd();
    c.args(["add", "--provider", "mopy", "--session-id", "x"]);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("\"mopy\" is not configured"));

    // An application's plain INSERT, on its own connection.
    env.ledger()
        .execute_batch(
            "INSERT INTO sessions (provider, session_id, reference, amount, currency) \
             VALUES ('mopay', 'MOP_abc123_ORDER12345', 'ORDER12345', '100.00', 'LSL')",
        )
        .unwrap();

    let mut c = env.cmd();
    c.arg("once");
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("checked 2 sessions"), "{out}");
    assert!(
        out.contains("1 completed") && out.contains("1 failed"),
        "{out}"
    );
    // The event log line.
    assert!(
        err.contains("session.completed") && err.contains("MOP_abc123_ORDER12345"),
        "{err}"
    );

    let mut c = env.cmd();
    c.args(["show", "MOP_abc123_ORDER12345"]);
    let o = output(c).await;
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(out.contains("PENDING -> COMPLETED  source=poll"), "{out}");
    assert!(out.contains("session.completed"), "{out}");

    let mut c = env.cmd();
    c.args(["list", "--status", "failed"]);
    let (out, _) = text(&output(c).await);
    assert!(
        out.contains("MOP_sim-fail_ORDER7") && !out.contains("ORDER12345"),
        "{out}"
    );
    let mut c = env.cmd();
    c.args(["list", "--status", "paid"]);
    assert_eq!(output(c).await.status.code(), Some(2));

    let mut c = env.cmd();
    c.arg("stats");
    let (out, _) = text(&output(c).await);
    assert!(out.contains("events: 2 total, 2 waiting, 0 dead"), "{out}");

    let mut c = env.cmd();
    c.args(["show", "nope"]);
    assert_eq!(output(c).await.status.code(), Some(2));
}

async fn two_processes_on_one_ledger_record_one_transition_each(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    let n = 300;
    for i in 0..n {
        env.session(
            &l,
            &format!("proc{i}"),
            if i % 2 == 0 {
                "complete.slow-10"
            } else {
                "fail"
            },
        );
    }
    env.set("batch_size", "20");
    let spawn = || {
        let mut c = env.cmd();
        c.arg("once").stdout(Stdio::null()).stderr(Stdio::null());
        Guard(c.spawn().unwrap())
    };
    let (mut a, mut b) = (spawn(), spawn());
    let both_done = wait_for(Duration::from_secs(60), || {
        a.0.try_wait().unwrap().is_some() && b.0.try_wait().unwrap().is_some()
    })
    .await;
    assert!(both_done);
    assert_eq!(
        count(&l, "SELECT count(*) FROM sessions WHERE status = 'PENDING'"),
        0
    );
    assert_eq!(count(&l, "SELECT count(*) FROM transitions"), n);
    assert_eq!(count(&l, "SELECT count(*) FROM events"), n);
    for i in 0..n {
        assert_eq!(
            env.sim.polls(&format!("proc{i}")),
            1,
            "proc{i} checked twice"
        );
    }
}

/// Two `run` daemons on one ledger share the provider's budget: together, and while one of
/// them is killed and restarted, the simulator never sees more than `rate_limit` in any second.
/// Every session stays PENDING and is due again 100 ms after each check, so far more is due
/// than the budget allows throughout.
async fn daemons_on_one_ledger_share_one_budget_across_kills(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    for i in 0..300 {
        env.session(&l, &format!("bud{i}"), "pending");
    }
    env.set("rate_limit", "\"20/s\"");
    env.set("concurrency", "16");
    let spawn = || {
        let mut c = env.cmd();
        c.arg("run").stdout(Stdio::null()).stderr(Stdio::null());
        Guard(c.spawn().unwrap())
    };
    env.arrivals.start();
    let a = spawn();
    let mut b = spawn();
    let sim = env.sim.clone();
    let polls = || (0..300).map(|i| sim.polls(&format!("bud{i}"))).sum::<u32>();
    assert!(wait_for(Duration::from_secs(20), || polls() >= 40).await);
    // SIGKILL one daemon mid-pass (its held slots are lost, never reused) and start it again.
    b.0.kill().unwrap();
    b.0.wait().unwrap();
    let _b = spawn();
    let before = polls();
    assert!(wait_for(Duration::from_secs(20), || polls() >= before + 60).await);
    drop(a);
    let most = env.arrivals.max_in_window(Duration::from_secs(1));
    assert!(most <= 20, "{most} requests in one second from two daemons");
    assert!(
        most >= 12,
        "the budget was hardly used: {most} in the busiest second"
    );
}

/// Daemons started together on a new ledger all come up: each creates what the others have not
/// (found by hand: the second of two `run`s on a new SQLite file failed "table sessions already
/// exists").
async fn processes_started_together_on_a_new_ledger_all_migrate_it(engine: Engine) {
    let env = Env::start_on(engine).await;
    let children: Vec<_> = (0..6)
        .map(|_| {
            let mut c = env.cmd();
            c.arg("stats").stdout(Stdio::null()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

async fn sigterm_stops_the_daemon_promptly_and_releases_leases(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    env.set("timeout", "\"8s\"");
    env.set("lease", "\"60s\"");
    for i in 0..4 {
        env.session(&l, &format!("slow{i}"), "complete.slow-6000");
    }
    let mut c = env.cmd();
    c.arg("run").stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = Guard(c.spawn().unwrap());
    let sim = env.sim.clone();
    assert!(
        wait_for(Duration::from_secs(10), || (0..4)
            .all(|i| sim.polls(&format!("slow{i}")) > 0))
        .await
    );
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let sent = Instant::now();
    // "A few seconds": generous for a loaded CI machine; an idle one takes well under one.
    let exited = wait_for(Duration::from_secs(10), || {
        child.0.try_wait().unwrap().is_some()
    })
    .await;
    assert!(exited, "still running {:?} after SIGTERM", sent.elapsed());
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // The in-flight checks were abandoned and their sessions given back, due at once.
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE lease_owner IS NOT NULL"
        ),
        0
    );
    assert_eq!(
        count(&l, "SELECT count(*) FROM sessions WHERE status = 'PENDING'"),
        4
    );
    assert_eq!(due_now(&l), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_without_config_and_every_session_settles() {
    let mut c = bin();
    c.arg("demo");
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(
        out.contains("every session reached the state its behaviour leads to"),
        "{out}"
    );
    for state in [
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "EXPIRED",
        "REVIEW",
        "PENDING",
    ] {
        assert!(out.contains(state), "{state} missing from the demo");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_key_is_sent_and_a_refusal_stops_the_provider() {
    let env = Env::start_with_key(Some("sk_test_s3cr3t_value")).await;
    let l = env.ledger();
    for i in 0..5 {
        env.session(&l, &format!("auth{i}"), "complete");
    }
    let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text_cfg + "api_key_env = \"PAYRECON_TEST_MOPAY_KEY\"\n",
    )
    .unwrap();

    // A wrong key: one error line, exit 1, sessions released uncharged, the key never printed.
    let mut c = env.cmd();
    c.arg("once")
        .env("PAYRECON_TEST_MOPAY_KEY", "sk_test_wrong_value")
        .env("RUST_LOG", "trace");
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("credentials refused by mopay"), "{err}");
    assert_eq!(
        err.matches("no more calls to this provider").count(),
        1,
        "{err}"
    );
    assert!(
        !err.contains("sk_test_wrong_value") && !out.contains("sk_test_wrong_value"),
        "the key leaked"
    );
    assert_eq!(count(&l, "SELECT sum(checks) FROM sessions"), 0);
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE lease_owner IS NOT NULL"
        ),
        0
    );
    let calls: u32 = (0..5).map(|i| env.sim.polls(&format!("auth{i}"))).sum();
    assert!(calls < 5, "calls continued after the refusal: {calls}");

    // `stats` reports the refusal until the provider answers again.
    let mut c = env.cmd();
    c.arg("stats");
    let (out, _) = text(&output(c).await);
    assert!(
        out.contains("provider mopay: CREDENTIALS REFUSED at"),
        "{out}"
    );
    assert!(out.contains("HTTP 401"), "{out}");

    // The right key: every session completes.
    let mut c = env.cmd();
    c.arg("once")
        .env("PAYRECON_TEST_MOPAY_KEY", "sk_test_s3cr3t_value");
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE status = 'COMPLETED'"
        ),
        5
    );
    let mut c = env.cmd();
    c.arg("stats");
    let (out, _) = text(&output(c).await);
    assert!(!out.contains("CREDENTIALS REFUSED"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_one_structured_line_per_event() {
    let env = Env::start().await;
    let l = env.ledger();
    env.session(&l, "json1", "complete");
    env.session(&l, "json2", "cancel");
    let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(&env.config_path, text_cfg + "[log]\nformat = \"json\"\n").unwrap();
    let mut c = env.cmd();
    c.arg("once");
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every log line is JSON"))
        .filter(|v| v["target"] == "payrecon::event")
        .collect();
    assert_eq!(events.len(), 2, "{err}");
    let types: Vec<&str> = events
        .iter()
        .map(|v| v["event_type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"session.completed") && types.contains(&"session.cancelled"),
        "{types:?}"
    );
    assert!(
        events
            .iter()
            .all(|v| v["event_id"].as_str().unwrap().starts_with("evt_"))
    );
}

crate::on_both_engines!(
    import_is_all_or_nothing_names_the_line_and_is_idempotent,
    add_insert_once_show_list_stats_end_to_end,
    two_processes_on_one_ledger_record_one_transition_each,
    daemons_on_one_ledger_share_one_budget_across_kills,
    processes_started_together_on_a_new_ledger_all_migrate_it,
    sigterm_stops_the_daemon_promptly_and_releases_leases,
);

/// An interrupted `once --all` releases what it claimed and exits 1, saying how many sessions
/// were left unchecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backfill_exits_1_with_what_is_left() {
    let env = Env::start().await;
    let l = env.ledger();
    env.set("timeout", "\"8s\"");
    env.set("lease", "\"60s\"");
    env.set("concurrency", "2");
    for i in 0..6 {
        env.session(&l, &format!("bf{i}"), "complete.slow-6000");
    }
    let mut c = env.cmd();
    c.args(["once", "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Guard(c.spawn().unwrap());
    let sim = env.sim.clone();
    assert!(
        wait_for(Duration::from_secs(10), || (0..6)
            .filter(|i| sim.polls(&format!("bf{i}")) > 0)
            .count()
            >= 2)
        .await
    );
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(
        wait_for(Duration::from_secs(10), || child
            .0
            .try_wait()
            .unwrap()
            .is_some())
        .await,
        "still running after SIGINT"
    );
    let out = std::mem::replace(
        &mut child.0,
        std::process::Command::new("true").spawn().unwrap(),
    )
    .wait_with_output()
    .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("interrupted: 6 sessions were left unchecked"),
        "{err}"
    );
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE lease_owner IS NOT NULL"
        ),
        0
    );
}

/// `add` and `import` share the API's rules: a conflicting amount is exit 2 naming both values
/// (the CSV: its line, nothing imported), whitespace around an id is refused, never trimmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_import_refuse_conflicts_and_untrusted_text() {
    let env = Env::start().await;
    let run = |args: &[&str]| {
        let mut c = env.cmd();
        c.args(args);
        output(c)
    };
    let add = [
        "add",
        "--provider",
        "mopay",
        "--session-id",
        "k1",
        "--amount",
        "100.00",
    ];
    assert!(run(&add).await.status.success());
    assert!(run(&add).await.status.success(), "the same session again");
    let mut other = add;
    other[6] = "90.00";
    let o = run(&other).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--amount") && err.contains("\"100.00\", not \"90.00\""),
        "{err}"
    );
    for (flag, value) in [
        ("--session-id", " k2"),
        ("--reference", "a\nb"),
        ("--currency", "L$L"),
    ] {
        let mut args = vec!["add", "--provider", "mopay", "--session-id", "k2"];
        if flag == "--session-id" {
            args[4] = value;
        } else {
            args.extend([flag, value]);
        }
        let o = run(&args).await;
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {value:?}: {err}");
        assert!(err.contains(flag), "{flag}: {err}");
        assert!(
            !err.contains('\n') || err.trim_end().lines().count() == 1,
            "one line: {err}"
        );
    }
    let csv = env.dir.path().join("twice.csv");
    std::fs::write(
        &csv,
        "provider,session_id,amount\nmopay,k3,5.00\nmopay,k4,1.00\nmopay,k3,6.00\nmopay, k5,1.00\n",
    )
    .unwrap();
    let o = run(&["import", csv.to_str().unwrap()]).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 4: amount:") && err.contains("\"5.00\", not \"6.00\""),
        "{err}"
    );
    assert!(
        err.contains("line 5: session_id:") && err.contains("whitespace"),
        "{err}"
    );
    let l = env.ledger();
    assert_eq!(
        count(&l, "SELECT count(*) FROM sessions"),
        1,
        "nothing imported"
    );
}

/// A conflicting `add` names the session as it is: underscores in the provider's name and the
/// session id are theirs, not a flag's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_names_the_real_session() {
    let env = Env::start_all_providers().await;
    let run = |amount: &str| {
        let mut c = env.cmd();
        c.args([
            "add",
            "--provider",
            "mopay_ng",
            "--session-id",
            "MOP_abc_ORDER1",
            "--amount",
            amount,
        ]);
        output(c)
    };
    assert!(run("100.00").await.status.success());
    let o = run("90.00").await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--amount: session mopay_ng MOP_abc_ORDER1 is already in the ledger"),
        "{err}"
    );
}

/// `add --provider-ref` writes the provider's second id; the same session again without it is
/// the same session, with another one a conflict naming the flag; a bad one is refused before
/// the ledger is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_keeps_the_providers_second_id() {
    let env = Env::start_all_providers().await;
    let add = |extra: &[&str]| {
        let mut c = env.cmd();
        c.args(["add", "--provider", "moflay", "--session-id", "pay_ABC123"]);
        c.args(extra);
        output(c)
    };
    assert!(
        add(&["--provider-ref", "trxn_ABC123"])
            .await
            .status
            .success()
    );
    assert_eq!(
        one(
            &env.ledger(),
            "SELECT provider_ref FROM sessions WHERE session_id = 'pay_ABC123'"
        ),
        "trxn_ABC123"
    );
    let again = add(&[]).await;
    assert!(again.status.success(), "{}", text(&again).1);
    let other = add(&["--provider-ref", "trxn_OTHER"]).await;
    let (_, err) = text(&other);
    assert_eq!(other.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--provider-ref: session moflay pay_ABC123"),
        "{err}"
    );
    let padded = add(&["--provider-ref", " trxn_X"]).await;
    let (_, err) = text(&padded);
    assert_eq!(padded.status.code(), Some(2), "{err}");
    assert!(err.starts_with("payrecon: --provider-ref:"), "{err}");
}
