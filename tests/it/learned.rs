//! `schedule = "learned"`: a provider's checks timed by answer times learned from the ledger
//! (reconcile::timing). Only when to ask changes; every answer is still decided by `decide`.

use std::time::Duration;

use crate::support::{DirectSql, Engine, Env, config_with, one};
use payrecon::clock;
use payrecon::provider::Kind;

/// A MoPay provider with `schedule = "learned"` over fixed delays of 1 s then 10 min, at
/// `rate_limit`, and 100 answers in the ledger that came 20, 21, … 119 s after their
/// sessions were created.
fn learned_env(env: &Env, rate_limit: &str) {
    let providers = format!(
        "[providers.mopay]\nkind = \"mopay\"\nbase_url = \"{}\"\nrate_limit = \"{rate_limit}\"\nschedule = \"learned\"\n",
        env.base_url
    );
    let text = config_with(&env.location, &providers).replace(
        "initial = \"100ms\"\nmultiplier = 1.5\nmax = \"300ms\"\n",
        "schedule = [\"1s\", \"10m\"]\n",
    );
    assert!(text.contains("schedule = [\"1s\", \"10m\"]"));
    std::fs::write(&env.config_path, text).unwrap();
    let now = clock::now();
    let ago = |secs: u64| clock::format(clock::sub(now, Duration::from_secs(secs)));
    let mut sql = String::new();
    for took in 20..120 {
        sql.push_str(&format!(
            "INSERT INTO sessions (provider, session_id, created_at) VALUES ('mopay', 'old{took}', '{}'); \
             INSERT INTO transitions (session, from_status, to_status, at, source) \
             SELECT id, 'PENDING', 'COMPLETED', '{now}', 'poll' FROM sessions WHERE session_id = 'old{took}'; \
             UPDATE sessions SET status = 'COMPLETED', resolved_at = '{now}' WHERE session_id = 'old{took}';",
            ago(took),
            now = ago(0)
        ));
    }
    env.ledger().execute_batch(&sql).unwrap();
}

/// Seconds from `from` to `to`, both ledger times.
fn secs_between(from: &str, to: &str) -> f64 {
    let (a, b) = (clock::parse(from).unwrap(), clock::parse(to).unwrap());
    (b - a).num_milliseconds() as f64 / 1000.0
}

/// The first check waits until one answer in ten has come (about 21 s: the prior's 10 at 1 s,
/// then 2 of the answers), with no call before; after a pending answer at 25 s, while the
/// budget binds (one call a second, two sessions due), the next check is when the chance of an
/// answer since reaches one in ten — about 10 s later, not the fixed schedule's 1 s.
async fn a_learned_schedule_waits_for_a_plausible_answer_then_asks_where_answers_come(
    engine: Engine,
) {
    let env = Env::start_on(engine).await;
    learned_env(&env, "1/s");
    let l = env.ledger();
    env.session(&l, "lrn_new", "pending");
    env.pass(&l, "p").await;
    assert_eq!(
        env.sim.requests_for(Kind::Mopay),
        0,
        "no call before an answer is plausible"
    );
    let row = |col: &str| {
        one(
            &l,
            &format!("SELECT {col} FROM sessions WHERE session_id = 'lrn_new'"),
        )
    };
    let first = secs_between(&row("created_at"), &row("next_check_at"));
    assert!(
        (19.0..=23.0).contains(&first),
        "first check {first} s after creation"
    );
    assert_eq!(row("checks"), "0");

    // 25 s later (moved back in the ledger), it and another are checked: still pending.
    env.session(&l, "lrn_two", "pending");
    let back = clock::format(clock::sub(clock::now(), Duration::from_secs(25)));
    l.execute_batch(&format!(
        "UPDATE sessions SET created_at = '{back}', next_check_at = '{back}' WHERE session_id LIKE 'lrn_%'"
    ))
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(env.sim.requests_for(Kind::Mopay), 2);
    for id in ["lrn_new", "lrn_two"] {
        let row = |col: &str| {
            one(
                &l,
                &format!("SELECT {col} FROM sessions WHERE session_id = '{id}'"),
            )
        };
        assert_eq!(row("status"), "PENDING");
        let gap = secs_between(&row("last_checked_at"), &row("next_check_at"));
        assert!(
            (7.0..=14.0).contains(&gap),
            "{id}: next check {gap} s after the last"
        );
    }
}

/// With calls to spare (no limit), a learned schedule is never sparser than the fixed one:
/// the same pending answer at 25 s is followed by the fixed schedule's 1 s.
async fn with_calls_to_spare_a_learned_schedule_is_never_sparser_than_the_fixed(engine: Engine) {
    let env = Env::start_on(engine).await;
    learned_env(&env, "off");
    let l = env.ledger();
    env.session(&l, "lrn_spare", "pending");
    let back = clock::format(clock::sub(clock::now(), Duration::from_secs(25)));
    l.execute_batch(&format!(
        "UPDATE sessions SET created_at = '{back}', next_check_at = '{back}' WHERE session_id = 'lrn_spare'"
    ))
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(env.sim.requests_for(Kind::Mopay), 1);
    let row = |col: &str| {
        one(
            &l,
            &format!("SELECT {col} FROM sessions WHERE session_id = 'lrn_spare'"),
        )
    };
    let gap = secs_between(&row("last_checked_at"), &row("next_check_at"));
    // 1 s ± the jitter (0.1).
    assert!(
        (0.85..=1.2).contains(&gap),
        "next check {gap} s after the last"
    );
}

crate::on_both_engines!(
    a_learned_schedule_waits_for_a_plausible_answer_then_asks_where_answers_come,
    with_calls_to_spare_a_learned_schedule_is_never_sparser_than_the_fixed
);
