//! `schedule = "learned"`: a provider's checks timed by answer times learned from the ledger
//! (reconcile::timing). Only when to ask changes; every answer is still decided by `decide`.

use std::time::Duration;

use crate::support::{DirectSql, Engine, Env, col, config_with, one};
use payrecon::clock;
use payrecon::ledger::Ledger;
use payrecon::provider::Kind;

/// A MoPay provider with `schedule = "learned"` over fixed delays of 1 s, 40 s, then 10 min
/// (their check times, 1 s, 41 s and 641 s, are the prior), at `rate_limit`, and 100 answers
/// in the ledger that came 20, 21, … 119 s after their sessions were created.
fn learned_env(env: &Env, rate_limit: &str) {
    let took: Vec<u64> = (20..120).collect();
    learned_env_with(env, rate_limit, "[\"1s\", \"40s\", \"10m\"]", &took);
}

/// A MoPay provider with `schedule = "learned"` over the fixed `delays`, at `rate_limit`, and
/// answers that came `took` seconds after their sessions' creation.
fn learned_env_with(env: &Env, rate_limit: &str, delays: &str, took: &[u64]) {
    let providers = format!(
        "[providers.mopay]\nkind = \"mopay\"\nbase_url = \"{}\"\nrate_limit = \"{rate_limit}\"\nschedule = \"learned\"\n",
        env.base_url
    );
    let form = "initial = \"100ms\"\nmultiplier = 1.5\nmax = \"300ms\"\n";
    let text = config_with(&env.location, &providers);
    assert!(text.contains(form));
    let text = text.replace(form, &format!("schedule = {delays}\n"));
    std::fs::write(&env.config_path, text).unwrap();
    let rows: Vec<(u64, &str)> = took.iter().map(|t| (*t, "COMPLETED")).collect();
    crate::support::closed_sessions(&env.ledger(), "mopay", "old", &rows);
}

/// Seconds from session `id`'s `from` (a ledger time) to its next check.
fn until_next_check(l: &Ledger, id: &str, from: &str) -> f64 {
    secs_between(&col(l, id, from), &col(l, id, "next_check_at"))
}

/// Seconds from `from` to `to`, both ledger times.
fn secs_between(from: &str, to: &str) -> f64 {
    let (a, b) = (clock::parse(from).unwrap(), clock::parse(to).unwrap());
    (b - a).num_milliseconds() as f64 / 1000.0
}

/// The first check waits until one answer in ten has come: the prior speaks up to the oldest
/// session seen (119 s), so it is 6.7 at 1 s and 6.7 at 41 s (its 641 s left out), and a
/// tenth of the 113.3 answers and pseudo-answers is 11.3: the prior's 6.7 at 1 s and the
/// answers of 20–24 s, so about 25 s, with no call before. After a pending answer at 30 s
/// (17.7 have come; the two sessions, never checked before, say nothing yet), while the budget
/// binds (one call a second, two sessions due), the next check is when the chance of an answer
/// since reaches one in ten (9.6 of the 95.7 left: the answers to 39 s): about 10 s later, where
/// the fixed schedule, counting checks, would ask again after 1 s.
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
    let first = until_next_check(&l, "lrn_new", "created_at");
    assert!(
        (22.0..=28.0).contains(&first),
        "first check {first} s after creation"
    );
    assert_eq!(col(&l, "lrn_new", "checks"), "0");

    // 30 s later (moved back in the ledger), it and another are checked: still pending.
    env.session(&l, "lrn_two", "pending");
    let back = clock::format(clock::sub(clock::now(), Duration::from_secs(30)));
    l.execute_batch(&format!(
        "UPDATE sessions SET created_at = '{back}', next_check_at = '{back}' WHERE session_id LIKE 'lrn_%'"
    ))
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(env.sim.requests_for(Kind::Mopay), 2);
    for id in ["lrn_new", "lrn_two"] {
        assert_eq!(col(&l, id, "status"), "PENDING");
        let gap = until_next_check(&l, id, "last_checked_at");
        assert!(
            (8.0..=15.0).contains(&gap),
            "{id}: next check {gap} s after the last"
        );
    }
}

/// With calls to spare (no limit), a learned schedule is never sparser than the fixed one by
/// age. Answers come 100–199 s after creation; the fixed schedule checks at 1 s, then every 2 s
/// (1 s, 3 s, 5 s, …). A pending answer at 30 s, where the learned rule would wait for the
/// answers (about 80 s: a tenth of the sessions still waiting answer by 109.5 s), is followed
/// by the fixed schedule's next check time, 31 s: 1 s later (also its shortest delay). Its
/// longest delay, the bound while the budget binds, would be 2 s.
async fn with_calls_to_spare_a_learned_schedule_is_never_sparser_than_the_fixed(engine: Engine) {
    let env = Env::start_on(engine).await;
    let took: Vec<u64> = (100..200).collect();
    learned_env_with(&env, "off", "[\"1s\", \"2s\"]", &took);
    let l = env.ledger();
    env.session(&l, "lrn_spare", "pending");
    let back = clock::format(clock::sub(clock::now(), Duration::from_secs(30)));
    l.execute_batch(&format!(
        "UPDATE sessions SET created_at = '{back}', next_check_at = '{back}' WHERE session_id = 'lrn_spare'"
    ))
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(env.sim.requests_for(Kind::Mopay), 1);
    let gap = until_next_check(&l, "lrn_spare", "last_checked_at");
    assert!(
        (0.95..=1.05).contains(&gap),
        "next check {gap} s after the last"
    );
}

/// Answer times written by hand ("every payment took a month": 300 sessions created just now
/// whose answers are dated a month from now, so they weigh fully, the check before each dated
/// a year before its creation or not a time at all) cannot put checks off: the
/// first check waits at most the fixed schedule's median check time (1 s here: the prior is
/// 1 s and 10 min), and while the budget binds no check waits longer than the fixed schedule's
/// longest delay (10 min). Without the bounds both would wait about a month.
async fn hostile_answer_times_cannot_put_checks_off(engine: Engine) {
    let env = Env::start_on(engine).await;
    learned_env_with(&env, "1/s", "[\"1s\", \"10m\"]", &[30 * 86_400; 300]);
    let l = env.ledger();
    // Moved a month on: created now, answered a month from now.
    let created = clock::format(clock::now());
    let month_on = clock::format(clock::add(clock::now(), Duration::from_secs(30 * 86_400)));
    let year_before = clock::format(clock::sub(clock::now(), Duration::from_secs(365 * 86_400)));
    l.execute_batch(&format!(
        "UPDATE sessions SET created_at = '{created}', resolved_at = '{month_on}' WHERE session_id LIKE 'old%'; \
         UPDATE transitions SET at = '{month_on}', \
         pending_since = CASE WHEN id % 2 = 0 THEN 'not a time' ELSE '{year_before}' END"
    ))
    .unwrap();
    env.session(&l, "lrn_h1", "pending");
    env.pass(&l, "p").await;
    let first = until_next_check(&l, "lrn_h1", "created_at");
    assert!(first <= 1.5, "first check {first} s after creation");

    env.session(&l, "lrn_h2", "pending");
    let back = clock::format(clock::sub(clock::now(), Duration::from_secs(25)));
    l.execute_batch(&format!(
        "UPDATE sessions SET created_at = '{back}', next_check_at = '{back}' WHERE session_id LIKE 'lrn_h%'"
    ))
    .unwrap();
    env.pass(&l, "p").await;
    for id in ["lrn_h1", "lrn_h2"] {
        assert_eq!(col(&l, id, "status"), "PENDING");
        let gap = until_next_check(&l, id, "last_checked_at");
        assert!(gap <= 601.0, "{id}: next check {gap} s after the last");
    }
}

/// A transition found by a scheduled check keeps the last moment the session was known PENDING
/// — its previous check, or its creation when the first check found the answer — which learned
/// check times read as "the customer acted between".
async fn an_answer_keeps_when_the_session_was_last_seen_pending(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    env.session(&l, "ps_two", "complete-1");
    env.session(&l, "ps_one", "complete");
    env.pass(&l, "p").await;
    let pending_since = |id: &str| {
        one(
            &l,
            &format!(
                "SELECT coalesce(t.pending_since, 'none') FROM transitions t \
                 JOIN sessions s ON s.id = t.session WHERE s.session_id = '{id}'"
            ),
        )
    };
    assert_eq!(col(&l, "ps_two", "status"), "PENDING");
    let first_check = col(&l, "ps_two", "last_checked_at");
    assert_eq!(pending_since("ps_one"), col(&l, "ps_one", "created_at"));
    let past = clock::format(clock::sub(clock::now(), Duration::from_secs(1)));
    l.execute_batch(&format!(
        "UPDATE sessions SET next_check_at = '{past}' WHERE session_id = 'ps_two'"
    ))
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(col(&l, "ps_two", "status"), "COMPLETED");
    assert_eq!(pending_since("ps_two"), first_check);
    assert_ne!(first_check, col(&l, "ps_two", "last_checked_at"));
}

crate::on_both_engines!(
    an_answer_keeps_when_the_session_was_last_seen_pending,
    a_learned_schedule_waits_for_a_plausible_answer_then_asks_where_answers_come,
    with_calls_to_spare_a_learned_schedule_is_never_sparser_than_the_fixed,
    hostile_answer_times_cannot_put_checks_off
);
