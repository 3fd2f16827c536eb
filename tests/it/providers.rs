//! One test suite for every provider kind: each behaviour runs against each adapter through
//! the simulator, which answers in that provider's shape and demands its credentials. The
//! expectations differ only where a provider's own status table does.

use std::time::Duration;

use crate::support::hostile::{Hostile, Mode};
use crate::support::{DirectSql, Env, KINDS, count, one, output, text};

/// What `behaviour` must lead to at `kind`.
fn expected(kind: &str, behaviour: &str) -> &'static str {
    match (kind, behaviour) {
        // Little and Vesicash have no cancelled state; Little, Moflay and Vesicash no expired
        // one: the simulator sends a word outside their tables, which is never guessed.
        ("little" | "vesicash", "cancel") => "PENDING",
        ("little" | "moflay" | "vesicash", "expire") => "PENDING",
        // Vesicash returns no merchant reference, and Little's `key` is "" as in its seed: it
        // cannot differ.
        ("vesicash" | "little", "reference") => "COMPLETED",
        // MoPay and Little return no currency.
        ("mopay" | "little", "currency") => "COMPLETED",
        (_, "currency" | "underpaid") => "REVIEW",
        (_, "cancel") => "CANCELLED",
        (_, "expire" | "notfound") => "EXPIRED",
        (_, "fail" | "fail-2") => "FAILED",
        (_, "amount" | "reference") => "REVIEW",
        (_, "unknown" | "unpaid" | "pending") => "PENDING",
        _ => "COMPLETED",
    }
}

const BEHAVIOURS: &[&str] = &[
    "complete",
    "complete-2",
    "fail",
    "fail-2",
    "cancel",
    "expire",
    "notfound",
    "pending",
    "5xx-2.complete",
    "429-1.complete",
    "html-1.complete",
    "truncated-1.complete",
    "oversized-1.complete",
    "falsesuccess-1.complete",
    "404-2.complete",
    "amount",
    "reference",
    "unknown",
    "unpaid",
    "underpaid",
    "currency",
    "422-1.complete",
    "429reset-1.complete",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_behaviour_at_every_provider() {
    let env = Env::start_all_providers().await;
    let l = env.ledger();
    for kind in KINDS {
        for b in BEHAVIOURS {
            env.session_at(&l, kind, &format!("{kind}:{b}"), b);
        }
    }
    let still_pending = KINDS
        .iter()
        .flat_map(|k| BEHAVIOURS.iter().map(move |b| expected(k, b)))
        .filter(|s| *s == "PENDING")
        .count() as i64;
    env.settle(&l, still_pending, Duration::from_secs(20)).await;
    let mut wrong = Vec::new();
    for kind in KINDS {
        for b in BEHAVIOURS {
            let id = format!("{kind}:{b}");
            let got = one(
                &l,
                &format!("SELECT status FROM sessions WHERE session_id = '{id}'"),
            );
            if got != expected(kind, b) {
                let err = one(
                    &l,
                    &format!(
                        "SELECT coalesce(last_error, '') FROM sessions WHERE session_id = '{id}'"
                    ),
                );
                wrong.push(format!(
                    "{id}: expected {}, got {got} ({err})",
                    expected(kind, b)
                ));
            }
        }
        // Transient faults were retried inside one check, and a 429 never counted.
        for b in [
            "5xx-2.complete",
            "html-1.complete",
            "429-1.complete",
            "falsesuccess-1.complete",
        ] {
            let checks = one(
                &l,
                &format!("SELECT checks FROM sessions WHERE session_id = '{kind}:{b}'"),
            );
            assert_eq!(checks, "1", "{kind}:{b}");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // One transition and one event per resolved session, whatever the provider.
    let resolved = count(
        &l,
        "SELECT count(*) FROM sessions WHERE status <> 'PENDING'",
    );
    assert_eq!(count(&l, "SELECT count(*) FROM transitions"), resolved);
    assert_eq!(count(&l, "SELECT count(*) FROM events"), resolved);
    // Unknown words are kept raw.
    for (kind, word) in [
        ("mopay", "ON_HOLD"),
        ("little", "ON_HOLD"),
        ("mopay_ng", "ON_HOLD"),
        ("moflay", "on_hold"),
        ("vesicash", "on_hold"),
    ] {
        assert_eq!(
            one(
                &l,
                &format!(
                    "SELECT provider_status FROM sessions WHERE session_id = '{kind}:unknown'"
                )
            ),
            word
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_at_every_provider_and_never_printed() {
    let env = Env::start_all_providers().await;
    let l = env.ledger();
    for kind in KINDS {
        for i in 0..3 {
            env.session_at(&l, kind, &format!("{kind}:auth{i}"), "complete");
        }
    }
    let mut c = env.cmd();
    c.arg("once")
        .env("PAYRECON_SIM_KEY", "sk_wrong_000000000000")
        .env("RUST_LOG", "trace");
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for kind in KINDS {
        assert!(
            err.contains(&format!("provider={kind}")) && err.contains("credentials refused"),
            "{kind}"
        );
    }
    assert!(!err.contains("sk_wrong_000000000000") && !out.contains("sk_wrong_000000000000"));
    assert!(
        !err.contains("pk_sim_public"),
        "the public key is a credential too"
    );
    assert_eq!(count(&l, "SELECT sum(checks) FROM sessions"), 0);
    let mut c = env.cmd();
    c.arg("stats");
    let (out, _) = text(&output(c).await);
    assert_eq!(
        out.matches("CREDENTIALS REFUSED").count(),
        KINDS.len(),
        "{out}"
    );
    // The right credentials: everything completes, and nothing secret is printed at trace.
    let mut c = env.cmd();
    c.arg("once").env("RUST_LOG", "trace");
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE status = 'COMPLETED'"
        ),
        15
    );
    for secret in [crate::support::SIM_KEY, "pk_sim_public"] {
        assert!(
            !err.contains(secret) && !out.contains(secret),
            "a credential leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_adapter_survives_a_hostile_server() {
    for mode in [Mode::Reset, Mode::HalfHeaders, Mode::Endless] {
        let hostile = Hostile::start(mode).await;
        let env = Env::start_all_providers().await;
        let providers = payrecon::simulator::providers_toml(
            &hostile.url,
            "PAYRECON_SIM_KEY",
            "PAYRECON_SIM_PUB",
            "off",
        );
        std::fs::write(
            &env.config_path,
            crate::support::config_with(&env.location, &providers),
        )
        .unwrap();
        env.set("retries", "1");
        env.set("timeout", "\"1s\"");
        let l = env.ledger();
        for kind in KINDS {
            env.session_at(&l, kind, &format!("{kind}:h"), "complete");
        }
        let report = env.pass(&l, "p").await;
        assert_eq!(report.still_pending, KINDS.len() as u64, "{mode:?}");
        for kind in KINDS {
            let e = one(
                &l,
                &format!("SELECT last_error FROM sessions WHERE session_id = '{kind}:h'"),
            );
            assert!(
                e.contains("connection failed") || e.contains("larger than http.max_body"),
                "{mode:?} {kind}: {e}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn little_long_polls_cost_one_held_call() {
    let env = Env::start_all_providers().await;
    let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
    let text_cfg = text_cfg.replacen(
        "[providers.little]\nkind = \"little\"",
        "[providers.little]\nkind = \"little\"\nlong_poll = true\nlong_poll_timeout = \"5s\"",
        1,
    );
    std::fs::write(&env.config_path, text_cfg).unwrap();
    env.set("lease", "\"60s\"");
    let l = env.ledger();
    env.session_at(&l, "little", "held", "complete-6");
    env.pass(&l, "p").await;
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'held'"),
        "COMPLETED"
    );
    assert_eq!(
        one(&l, "SELECT checks FROM sessions WHERE session_id = 'held'"),
        "1"
    );
    assert_eq!(
        env.sim
            .status_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one held call"
    );
}

/// A long poll our client cuts carries no answer: not charged, not an answer toward expiry,
/// asked once (no retries of a held call), and the session stays PENDING. Past max_age the
/// session is asked with a plain call, whose answer can close it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_we_cut_is_no_answer() {
    let hang = Hostile::start(Mode::Hang).await;
    let env = Env::start_all_providers().await;
    let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
    let at = text_cfg.find("[providers.little]").unwrap();
    let (head, tail) = text_cfg.split_at(at);
    let tail = tail
        .replacen(
            "kind = \"little\"",
            "kind = \"little\"\nlong_poll = true\nlong_poll_timeout = \"300ms\"",
            1,
        )
        .replacen(
            &format!("base_url = \"{}\"", env.base_url),
            &format!("base_url = \"{}\"", hang.url),
            1,
        );
    std::fs::write(&env.config_path, format!("{head}{tail}")).unwrap();
    let l = env.ledger();
    l.enqueue(&payrecon::ledger::NewSession {
        provider: "little".into(),
        session_id: "cut".into(),
        ..Default::default()
    })
    .unwrap();
    env.pass(&l, "p").await;
    let col = |c: &str| {
        one(
            &l,
            &format!("SELECT coalesce({c}, '') FROM sessions WHERE session_id = 'cut'"),
        )
    };
    assert_eq!(col("status"), "PENDING");
    assert_eq!(col("checks"), "0");
    assert_eq!(col("answered_checks"), "0");
    assert!(
        col("last_error").contains("long poll"),
        "{}",
        col("last_error")
    );
    assert_eq!(
        hang.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // Back on the simulator, long-polling still on: a session past max_age that is still
    // pending is asked plainly (the simulator would hold a long poll 2 s) and expires.
    let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(&env.config_path, text_cfg.replace(&hang.url, &env.base_url)).unwrap();
    env.sim
        .insert("old", "100.00", "REF3", "pending".parse().unwrap());
    l.execute_batch(
        "DELETE FROM checks WHERE session IN (SELECT id FROM sessions WHERE session_id = 'cut'); \
         DELETE FROM sessions WHERE session_id = 'cut'",
    )
    .unwrap();
    l.enqueue(&payrecon::ledger::NewSession {
        provider: "little".into(),
        session_id: "old".into(),
        created_at: Some(payrecon::clock::parse("2000-01-01T00:00:00Z").unwrap()),
        ..Default::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    env.pass(&l, "p").await;
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'old'"),
        "EXPIRED"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a plain call, not a held one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfigured_mopay_ng_calls_nothing_and_check_config_says_why() {
    let env = Env::start_all_providers().await;
    let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
    let start = text_cfg.find("status_endpoint").unwrap();
    let end = text_cfg.find("[providers.moflay]").unwrap();
    std::fs::write(
        &env.config_path,
        format!("{}\n{}", &text_cfg[..start], &text_cfg[end..]),
    )
    .unwrap();
    let mut c = env.cmd();
    c.arg("check-config");
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("providers.mopay_ng: status_endpoint is not set")
            && err.contains("status_map is empty"),
        "{err}"
    );
    let l = env.ledger();
    env.session_at(&l, "mopay_ng", "ng1", "complete");
    env.pass(&l, "p").await;
    assert_eq!(env.sim.polls("ng1"), 0);
    assert_eq!(
        one(&l, "SELECT status || ' ' || checks FROM sessions"),
        "PENDING 0"
    );
    assert!(one(&l, "SELECT last_error FROM sessions").contains("status_endpoint"));
    // A missing required key is named.
    std::fs::write(
        &env.config_path,
        crate::support::config_with(&env.location, "[providers.v]\nkind = \"vesicash\"\nbase_url = \"http://127.0.0.1:9\"\npublic_key_env = \"P\"\n"),
    )
    .unwrap();
    let mut c = env.cmd();
    c.arg("stats");
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("providers.v.secret_key_env: required for kind \"vesicash\""),
        "{}",
        text(&o).1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payrecon_simulate_and_its_config_reconcile_a_mixed_import() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("sim.toml");
    let mut c = crate::support::bin();
    c.args([
        "simulate",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--write-config",
    ])
    .arg(&config)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let _sim = crate::support::Guard(c.spawn().unwrap());
    let up = crate::support::wait_for(Duration::from_secs(10), || {
        config.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(up, "payrecon simulate did not come up");
    let csv = "provider,session_id,reference,amount,currency\n\
               mopay,MOP_sim-complete_A1,A1,100.00,LSL\n\
               little,LP_sim-complete_A2,A2,100.00,\n\
               mopay_ng,NG_sim-fail_A3,A3,100.00,LSL\n\
               moflay,pay_sim-complete_A4,A4,100.00,LSL\n\
               vesicash,VS_sim-cancel_A5,A5,100.00,LSL\n\
               vesicash,VS_sim-complete_A6,A6,100.00,LSL\n\
               moflay,pay_sim-amount_A7,A7,100.00,LSL\n";
    std::fs::write(dir.path().join("mixed.csv"), csv).unwrap();
    let cmd = |args: &[&str]| {
        let mut c = crate::support::bin();
        c.arg("--config")
            .arg(&config)
            .args(args)
            .current_dir(dir.path());
        c.env("PAYRECON_SIM_KEY", "anything")
            .env("PAYRECON_SIM_PUBLIC_KEY", "anything");
        c
    };
    let o = output(cmd(&["check-config"])).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = output(cmd(&["import", "mixed.csv"])).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = output(cmd(&["once"])).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = output(cmd(&["list"])).await;
    let (out, _) = text(&o);
    let status_of = |id: &str| {
        out.lines()
            .find(|l| l.contains(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(status_of("MOP_sim-complete_A1"), "COMPLETED", "{out}");
    assert_eq!(status_of("LP_sim-complete_A2"), "COMPLETED", "{out}");
    assert_eq!(status_of("NG_sim-fail_A3"), "FAILED", "{out}");
    assert_eq!(status_of("pay_sim-complete_A4"), "COMPLETED", "{out}");
    assert_eq!(
        status_of("VS_sim-cancel_A5"),
        "PENDING",
        "Vesicash has no cancelled state: {out}"
    );
    assert_eq!(status_of("VS_sim-complete_A6"), "COMPLETED", "{out}");
    assert_eq!(status_of("pay_sim-amount_A7"), "REVIEW", "{out}");
}
