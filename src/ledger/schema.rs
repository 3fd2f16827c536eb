//! Versioned migrations, one list per engine with the same numbering, applied in order inside
//! one transaction each. SQLite keeps the version reached in `PRAGMA user_version`, PostgreSQL
//! in the one-row table `payrecon_schema`. A ledger newer than this build is refused without
//! being touched. Both lists give the same tables, columns and indexes (an integration test
//! compares them on a real PostgreSQL).

use super::Error;
use super::db::{DbError, Engine, Mode};

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the three tables: sessions, transitions, events (README "The ledger contract").
    r#"
CREATE TABLE sessions (
    id                    INTEGER PRIMARY KEY,
    provider              TEXT NOT NULL,
    session_id            TEXT NOT NULL,
    reference             TEXT,
    -- Decimal text in major units ("100.00"), never a float.
    amount                TEXT CONSTRAINT amount_is_decimal_text CHECK (
                              amount IS NULL OR (typeof(amount) = 'text'
                              AND amount GLOB '[0-9]*' AND NOT amount GLOB '*[^0-9.]*'
                              AND NOT amount GLOB '*.*.*' AND NOT amount GLOB '*.'
                              AND length(amount) <= 40)),
    currency              TEXT,
    status                TEXT NOT NULL DEFAULT 'PENDING' CONSTRAINT status_is_known CHECK (
                              status IN ('PENDING','COMPLETED','FAILED','CANCELLED','EXPIRED','REVIEW')),
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- Due at once for a plain INSERT. While a session is leased this is the lease's end, so the
    -- due query needs no lease condition and an abandoned lease simply becomes due again.
    next_check_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    checks                INTEGER NOT NULL DEFAULT 0,
    answered_checks       INTEGER NOT NULL DEFAULT 0,
    not_found_count       INTEGER NOT NULL DEFAULT 0,
    last_checked_at       TEXT,
    last_error            TEXT,
    lease_owner           TEXT,
    lease_until           TEXT,
    provider_status       TEXT,
    transaction_id        TEXT,
    payment_method        TEXT,
    provider_completed_at TEXT,
    resolved_at           TEXT,
    CONSTRAINT session_id_is_valid CHECK (
        length(CAST(session_id AS BLOB)) BETWEEN 1 AND 256 AND session_id NOT IN ('.', '..')
        AND NOT session_id GLOB ('*[' || char(1) || '-' || char(31) || char(127) || ']*')),
    UNIQUE (provider, session_id)
);
-- The due query: cost grows with the sessions due, not with the ledger.
CREATE INDEX sessions_due ON sessions (next_check_at) WHERE status = 'PENDING';
-- `once --all` walks every PENDING session by id.
CREATE INDEX sessions_pending_by_id ON sessions (id) WHERE status = 'PENDING';
CREATE INDEX sessions_by_session_id ON sessions (session_id);

CREATE TABLE transitions (
    id                    INTEGER PRIMARY KEY,
    session               INTEGER NOT NULL REFERENCES sessions (id),
    from_status           TEXT NOT NULL,
    to_status             TEXT NOT NULL,
    at                    TEXT NOT NULL,
    source                TEXT NOT NULL CHECK (source IN ('poll','backfill','manual','api')),
    reason                TEXT,
    provider_status       TEXT,
    transaction_id        TEXT,
    payment_method        TEXT,
    provider_amount       TEXT,
    provider_reference    TEXT,
    provider_currency     TEXT,
    provider_completed_at TEXT
);
-- Belt and braces for the compare-and-set: a session leaves PENDING once.
CREATE UNIQUE INDEX transitions_one_from_pending ON transitions (session) WHERE from_status = 'PENDING';
CREATE INDEX transitions_by_session ON transitions (session);

CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    session         INTEGER NOT NULL REFERENCES sessions (id),
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    delivered_at    TEXT,
    dead_at         TEXT,
    last_error      TEXT,
    lease_owner     TEXT,
    lease_until     TEXT
);
CREATE INDEX events_due ON events (next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX events_by_session ON events (session);
"#,
    // 2: the late check of EXPIRED sessions, and what the daemon knows about each provider.
    r#"
ALTER TABLE sessions ADD COLUMN late_check_at TEXT;
-- Late checks due: only EXPIRED sessions not yet asked again carry a time here.
CREATE INDEX sessions_late_check ON sessions (late_check_at) WHERE late_check_at IS NOT NULL;

CREATE TABLE provider_state (
    provider        TEXT PRIMARY KEY,
    -- Set when the provider refused the credentials (401/403); cleared by its next answer.
    auth_refused_at TEXT,
    auth_error      TEXT,
    -- Set by a 429: no calls before this time.
    paused_until    TEXT,
    last_answer_at  TEXT
);
"#,
    // 3: the same tables with their CHECK lists spelled as comparisons, one index fewer. SQLite builds a temporary
    // table for an `IN (…)` list of more than two values each time a statement checks it; that
    // was the largest single cost of recording a transition. Rebuilt the way SQLite documents
    // (create, copy, drop, rename); `migrate` runs it with foreign keys off and checks them after.
    r#"
CREATE TABLE sessions_v3 (
    id                    INTEGER PRIMARY KEY,
    provider              TEXT NOT NULL,
    session_id            TEXT NOT NULL,
    reference             TEXT,
    -- Decimal text in major units ("100.00"), never a float.
    amount                TEXT CONSTRAINT amount_is_decimal_text CHECK (
                              amount IS NULL OR (typeof(amount) = 'text'
                              AND amount GLOB '[0-9]*' AND NOT amount GLOB '*[^0-9.]*'
                              AND NOT amount GLOB '*.*.*' AND NOT amount GLOB '*.'
                              AND length(amount) <= 40)),
    currency              TEXT,
    status                TEXT NOT NULL DEFAULT 'PENDING' CONSTRAINT status_is_known CHECK (
                              status = 'PENDING' OR status = 'COMPLETED' OR status = 'FAILED'
                              OR status = 'CANCELLED' OR status = 'EXPIRED' OR status = 'REVIEW'),
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- Due at once for a plain INSERT. While a session is leased this is the lease's end, so the
    -- due query needs no lease condition and an abandoned lease simply becomes due again.
    next_check_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    checks                INTEGER NOT NULL DEFAULT 0,
    answered_checks       INTEGER NOT NULL DEFAULT 0,
    not_found_count       INTEGER NOT NULL DEFAULT 0,
    last_checked_at       TEXT,
    last_error            TEXT,
    lease_owner           TEXT,
    lease_until           TEXT,
    provider_status       TEXT,
    transaction_id        TEXT,
    payment_method        TEXT,
    provider_completed_at TEXT,
    resolved_at           TEXT,
    late_check_at         TEXT,
    CONSTRAINT session_id_is_valid CHECK (
        length(CAST(session_id AS BLOB)) BETWEEN 1 AND 256 AND session_id <> '.' AND session_id <> '..'
        AND NOT session_id GLOB ('*[' || char(1) || '-' || char(31) || char(127) || ']*')),
    UNIQUE (provider, session_id)
);
INSERT INTO sessions_v3 SELECT id, provider, session_id, reference, amount, currency, status,
    created_at, next_check_at, checks, answered_checks, not_found_count, last_checked_at,
    last_error, lease_owner, lease_until, provider_status, transaction_id, payment_method,
    provider_completed_at, resolved_at, late_check_at FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v3 RENAME TO sessions;
CREATE INDEX sessions_due ON sessions (next_check_at) WHERE status = 'PENDING';
-- (v1's sessions_pending_by_id is gone: `once --all` walks the rowid instead, one scan per
-- pass, and every transition paid to keep that index.)
CREATE INDEX sessions_by_session_id ON sessions (session_id);
CREATE INDEX sessions_late_check ON sessions (late_check_at) WHERE late_check_at IS NOT NULL;

CREATE TABLE transitions_v3 (
    id                    INTEGER PRIMARY KEY,
    session               INTEGER NOT NULL REFERENCES sessions (id),
    from_status           TEXT NOT NULL,
    to_status             TEXT NOT NULL,
    at                    TEXT NOT NULL,
    source                TEXT NOT NULL CHECK (
                              source = 'poll' OR source = 'backfill' OR source = 'manual' OR source = 'api'),
    reason                TEXT,
    provider_status       TEXT,
    transaction_id        TEXT,
    payment_method        TEXT,
    provider_amount       TEXT,
    provider_reference    TEXT,
    provider_currency     TEXT,
    provider_completed_at TEXT
);
INSERT INTO transitions_v3 SELECT * FROM transitions;
DROP TABLE transitions;
ALTER TABLE transitions_v3 RENAME TO transitions;
CREATE UNIQUE INDEX transitions_one_from_pending ON transitions (session) WHERE from_status = 'PENDING';
CREATE INDEX transitions_by_session ON transitions (session);
"#,
    // 4: a provider that answers "not found" to every session is flagged (a wrong base_url),
    // and `last_answer_at` now means the last normal answer about a session.
    r#"
ALTER TABLE provider_state ADD COLUMN misdirected_at TEXT;
ALTER TABLE provider_state ADD COLUMN misdirected_error TEXT;
-- The endpoint (base URL without credentials) that last answered normally.
ALTER TABLE provider_state ADD COLUMN answered_endpoint TEXT;
"#,
    // 5: sessions refuse, with named errors, what payrecon could not use: an amount that is not
    // text (the column loses its affinity, which turned REAL into text before the check looked),
    // a value of the wrong type, control characters, surrounding spaces or over 256 bytes in a
    // reference, a currency that is not 1 to 8 letters, C1 or NUL characters or surrounding
    // spaces in a session id, a created_at or next_check_at not in the ledger's time format
    // (the due index compares them as text), a new row in any state but PENDING (a COMPLETED
    // with no transition and no event). Triggers, not table checks, for all but the amount: rows that got
    // in before stay readable (payrecon sets them aside), the migration cannot fail on them, and
    // an update is refused only for a bad value it writes (so payrecon can still mark them).
    r#"
CREATE TABLE sessions_v5 (
    id                    INTEGER PRIMARY KEY,
    provider              TEXT NOT NULL,
    session_id            TEXT NOT NULL,
    reference             TEXT,
    -- Decimal text in major units ("100.00"), never a float.
    -- No declared type, so no affinity: a REAL or INTEGER amount stays what it is and the
    -- check refuses it, instead of TEXT affinity turning 100.5 into '100.5' first.
    amount                CONSTRAINT amount_is_decimal_text CHECK (
                              amount IS NULL OR (typeof(amount) = 'text'
                              AND amount GLOB '[0-9]*' AND NOT amount GLOB '*[^0-9.]*'
                              AND NOT amount GLOB '*.*.*' AND NOT amount GLOB '*.'
                              AND length(amount) <= 40)),
    currency              TEXT,
    status                TEXT NOT NULL DEFAULT 'PENDING' CONSTRAINT status_is_known CHECK (
                              status = 'PENDING' OR status = 'COMPLETED' OR status = 'FAILED'
                              OR status = 'CANCELLED' OR status = 'EXPIRED' OR status = 'REVIEW'),
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- Due at once for a plain INSERT. While a session is leased this is the lease's end, so the
    -- due query needs no lease condition and an abandoned lease simply becomes due again.
    next_check_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    checks                INTEGER NOT NULL DEFAULT 0,
    answered_checks       INTEGER NOT NULL DEFAULT 0,
    not_found_count       INTEGER NOT NULL DEFAULT 0,
    last_checked_at       TEXT,
    last_error            TEXT,
    lease_owner           TEXT,
    lease_until           TEXT,
    provider_status       TEXT,
    transaction_id        TEXT,
    payment_method        TEXT,
    provider_completed_at TEXT,
    resolved_at           TEXT,
    late_check_at         TEXT,
    CONSTRAINT session_id_is_valid CHECK (
        length(CAST(session_id AS BLOB)) BETWEEN 1 AND 256 AND session_id <> '.' AND session_id <> '..'
        AND NOT session_id GLOB ('*[' || char(1) || '-' || char(31) || char(127) || ']*')),
    UNIQUE (provider, session_id)
);
INSERT INTO sessions_v5 SELECT id, provider, session_id, reference, amount, currency, status,
    created_at, next_check_at, checks, answered_checks, not_found_count, last_checked_at,
    last_error, lease_owner, lease_until, provider_status, transaction_id, payment_method,
    provider_completed_at, resolved_at, late_check_at FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v5 RENAME TO sessions;
CREATE INDEX sessions_due ON sessions (next_check_at) WHERE status = 'PENDING';
-- (v1's sessions_pending_by_id is gone: `once --all` walks the rowid instead, one scan per
-- pass, and every transition paid to keep that index.)
CREATE INDEX sessions_by_session_id ON sessions (session_id);
CREATE INDEX sessions_late_check ON sessions (late_check_at) WHERE late_check_at IS NOT NULL;

CREATE TRIGGER sessions_rules_insert BEFORE INSERT ON sessions BEGIN
    SELECT RAISE(ABORT, 'new_session_is_pending: a new session starts PENDING; payrecon records every later state with its transition and event')
    WHERE NEW.status <> 'PENDING';
    SELECT RAISE(ABORT, 'session_values_have_their_types: provider, session_id, status and times are text, counts integers, reference and currency text or NULL')
    WHERE (typeof(NEW.provider) <> 'text')
       OR (typeof(NEW.session_id) <> 'text')
       OR (typeof(NEW.status) <> 'text')
       OR (typeof(NEW.created_at) <> 'text')
       OR (typeof(NEW.next_check_at) <> 'text')
       OR (typeof(NEW.checks) <> 'integer')
       OR (typeof(NEW.answered_checks) <> 'integer')
       OR (typeof(NEW.not_found_count) <> 'integer')
       OR (NEW.reference IS NOT NULL AND typeof(NEW.reference) <> 'text')
       OR (NEW.currency IS NOT NULL AND typeof(NEW.currency) <> 'text')
       OR (NEW.last_error IS NOT NULL AND typeof(NEW.last_error) <> 'text');
    SELECT RAISE(ABORT, 'reference_is_plain_text: at most 256 bytes, no control character, no surrounding spaces')
    WHERE NEW.reference IS NOT NULL AND (length(CAST(NEW.reference AS BLOB)) > 256
       OR instr(NEW.reference, char(0)) > 0 OR NEW.reference <> trim(NEW.reference)
       OR NEW.reference GLOB ('*[' || char(1) || '-' || char(31) || char(127) || '-' || char(159) || ']*'));
    SELECT RAISE(ABORT, 'currency_is_a_code: 1 to 8 letters such as LSL')
    WHERE NEW.currency IS NOT NULL AND (length(NEW.currency) NOT BETWEEN 1 AND 8
       OR NEW.currency GLOB '*[^A-Za-z]*');
    SELECT RAISE(ABORT, 'session_id_is_valid: no control character (C0, DEL, C1, NUL), no surrounding spaces')
    WHERE (instr(NEW.session_id, char(0)) > 0 OR NEW.session_id <> trim(NEW.session_id)
       OR NEW.session_id GLOB ('*[' || char(127) || '-' || char(159) || ']*'));
    SELECT RAISE(ABORT, 'times_are_ledger_times: created_at and next_check_at are UTC like 2026-11-25T10:05:03.120Z')
    WHERE NOT NEW.created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z' OR NOT NEW.next_check_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z';
END;
CREATE TRIGGER sessions_rules_update BEFORE UPDATE ON sessions BEGIN
    SELECT RAISE(ABORT, 'session_values_have_their_types: provider, session_id, status and times are text, counts integers, reference and currency text or NULL')
    WHERE (NEW.provider IS NOT OLD.provider AND typeof(NEW.provider) <> 'text')
       OR (NEW.session_id IS NOT OLD.session_id AND typeof(NEW.session_id) <> 'text')
       OR (NEW.status IS NOT OLD.status AND typeof(NEW.status) <> 'text')
       OR (NEW.created_at IS NOT OLD.created_at AND typeof(NEW.created_at) <> 'text')
       OR (NEW.next_check_at IS NOT OLD.next_check_at AND typeof(NEW.next_check_at) <> 'text')
       OR (NEW.checks IS NOT OLD.checks AND typeof(NEW.checks) <> 'integer')
       OR (NEW.answered_checks IS NOT OLD.answered_checks AND typeof(NEW.answered_checks) <> 'integer')
       OR (NEW.not_found_count IS NOT OLD.not_found_count AND typeof(NEW.not_found_count) <> 'integer')
       OR (NEW.reference IS NOT OLD.reference AND NEW.reference IS NOT NULL AND typeof(NEW.reference) <> 'text')
       OR (NEW.currency IS NOT OLD.currency AND NEW.currency IS NOT NULL AND typeof(NEW.currency) <> 'text')
       OR (NEW.last_error IS NOT OLD.last_error AND NEW.last_error IS NOT NULL AND typeof(NEW.last_error) <> 'text');
    SELECT RAISE(ABORT, 'reference_is_plain_text: at most 256 bytes, no control character, no surrounding spaces')
    WHERE NEW.reference IS NOT OLD.reference AND NEW.reference IS NOT NULL AND (length(CAST(NEW.reference AS BLOB)) > 256
       OR instr(NEW.reference, char(0)) > 0 OR NEW.reference <> trim(NEW.reference)
       OR NEW.reference GLOB ('*[' || char(1) || '-' || char(31) || char(127) || '-' || char(159) || ']*'));
    SELECT RAISE(ABORT, 'currency_is_a_code: 1 to 8 letters such as LSL')
    WHERE NEW.currency IS NOT OLD.currency AND NEW.currency IS NOT NULL AND (length(NEW.currency) NOT BETWEEN 1 AND 8
       OR NEW.currency GLOB '*[^A-Za-z]*');
    SELECT RAISE(ABORT, 'session_id_is_valid: no control character (C0, DEL, C1, NUL), no surrounding spaces')
    WHERE NEW.session_id IS NOT OLD.session_id AND (instr(NEW.session_id, char(0)) > 0 OR NEW.session_id <> trim(NEW.session_id)
       OR NEW.session_id GLOB ('*[' || char(127) || '-' || char(159) || ']*'));
    SELECT RAISE(ABORT, 'times_are_ledger_times: created_at and next_check_at are UTC like 2026-11-25T10:05:03.120Z')
    WHERE (NEW.created_at IS NOT OLD.created_at AND NOT NEW.created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z')
       OR (NEW.next_check_at IS NOT OLD.next_check_at AND NOT NEW.next_check_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z');
END;
"#, // 6: a PENDING row whose next_check_at is not a time (from before 5) sorts after every
    // time, so it was never due and never seen: it is made due now, to be checked, or set aside
    // if it cannot be read. (SQLite's triggers already check only the values an UPDATE changes;
    // PostgreSQL's rules change here to do the same.)
    r#"
UPDATE sessions SET next_check_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE status = 'PENDING'
  AND NOT coalesce(next_check_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z', 0);
"#,
    // 7: one call budget per provider credential, shared by every process on the ledger: the
    // earliest time (microseconds since the Unix epoch) the next call may start. `credential`
    // is a SHA-256 fingerprint, never the credential.
    r#"
CREATE TABLE IF NOT EXISTS call_budget (
    credential TEXT PRIMARY KEY,
    next_at    INTEGER NOT NULL
);
"#,
    // 8: the provider's second id for a session (`provider_ref`: Moflay's `trxn_…` transaction
    // id beside the `pay_…` payment id applications keep), with the rules of `reference`, and an
    // index to find a session by it (a provider's list names payments by it).
    r#"
ALTER TABLE sessions ADD COLUMN provider_ref TEXT;
CREATE INDEX sessions_by_provider_ref ON sessions (provider, provider_ref) WHERE provider_ref IS NOT NULL;
CREATE TRIGGER sessions_provider_ref_insert BEFORE INSERT ON sessions
WHEN NEW.provider_ref IS NOT NULL BEGIN
    SELECT RAISE(ABORT, 'provider_ref_is_plain_text: text of at most 256 bytes, no control character, no surrounding spaces')
    WHERE typeof(NEW.provider_ref) <> 'text' OR length(CAST(NEW.provider_ref AS BLOB)) > 256
       OR instr(NEW.provider_ref, char(0)) > 0 OR NEW.provider_ref <> trim(NEW.provider_ref)
       OR NEW.provider_ref GLOB ('*[' || char(1) || '-' || char(31) || char(127) || '-' || char(159) || ']*');
END;
CREATE TRIGGER sessions_provider_ref_update BEFORE UPDATE OF provider_ref ON sessions
WHEN NEW.provider_ref IS NOT NULL AND NEW.provider_ref IS NOT OLD.provider_ref BEGIN
    SELECT RAISE(ABORT, 'provider_ref_is_plain_text: text of at most 256 bytes, no control character, no surrounding spaces')
    WHERE typeof(NEW.provider_ref) <> 'text' OR length(CAST(NEW.provider_ref AS BLOB)) > 256
       OR instr(NEW.provider_ref, char(0)) > 0 OR NEW.provider_ref <> trim(NEW.provider_ref)
       OR NEW.provider_ref GLOB ('*[' || char(1) || '-' || char(31) || char(127) || '-' || char(159) || ']*');
END;
"#,
    // 9: payments a provider's list shows that no session holds (`unmatched_payments`), events
    // about them (an event names a session or such a payment), and each provider's sweep of its
    // list, shared by every process on the ledger (`provider_state.sweep_*`).
    r#"
CREATE TABLE unmatched_payments (
    id                  INTEGER PRIMARY KEY,
    provider            TEXT NOT NULL,
    -- The id the provider's list names it by (Moflay: `trxn_…`), and its other id when one
    -- status lookup gave it (Moflay: `pay_…`).
    payment_id          TEXT NOT NULL,
    other_id            TEXT,
    amount              TEXT,
    currency            TEXT,
    provider_status     TEXT NOT NULL,
    receipt             TEXT,
    provider_created_at TEXT,
    first_seen_at       TEXT NOT NULL,
    last_seen_at        TEXT NOT NULL,
    -- Set when `payment.unmatched` was written (after the grace window and the lookup).
    reported_at         TEXT,
    matched_session     INTEGER REFERENCES sessions (id),
    matched_at          TEXT,
    dismissed_at        TEXT,
    dismissed_by        TEXT,
    dismiss_reason      TEXT,
    UNIQUE (provider, payment_id)
);
CREATE INDEX unmatched_open ON unmatched_payments (provider, first_seen_at)
    WHERE matched_at IS NULL AND dismissed_at IS NULL;
CREATE TABLE events_v9 (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    session         INTEGER REFERENCES sessions (id),
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    delivered_at    TEXT,
    dead_at         TEXT,
    last_error      TEXT,
    lease_owner     TEXT,
    lease_until     TEXT,
    payment         INTEGER REFERENCES unmatched_payments (id),
    CHECK (session IS NOT NULL OR payment IS NOT NULL)
);
INSERT INTO events_v9 (seq, id, type, session, payload, created_at, attempts, next_attempt_at,
                       delivered_at, dead_at, last_error, lease_owner, lease_until)
    SELECT seq, id, type, session, payload, created_at, attempts, next_attempt_at,
           delivered_at, dead_at, last_error, lease_owner, lease_until FROM events;
DROP TABLE events;
ALTER TABLE events_v9 RENAME TO events;
CREATE INDEX events_due ON events (next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX events_by_session ON events (session);
CREATE INDEX events_by_payment ON events (payment) WHERE payment IS NOT NULL;
ALTER TABLE sessions ADD COLUMN listed_at TEXT;
ALTER TABLE provider_state ADD COLUMN sweep_due_at TEXT;
ALTER TABLE provider_state ADD COLUMN swept_at TEXT;
ALTER TABLE provider_state ADD COLUMN sweep_started_at TEXT;
ALTER TABLE provider_state ADD COLUMN sweep_error TEXT;
"#,
    // 10: who decided (`transitions.actor`: the person behind a manual transition), the
    // append-only audit log of people's actions, and what the console searches by (a
    // session's reference and its provider's transaction id).
    r#"
ALTER TABLE transitions ADD COLUMN actor TEXT;
CREATE INDEX sessions_by_reference ON sessions (reference) WHERE reference IS NOT NULL;
CREATE INDEX sessions_by_transaction_id ON sessions (transaction_id) WHERE transaction_id IS NOT NULL;
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
CREATE TRIGGER audit_log_is_append_only_update BEFORE UPDATE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'audit_log_is_append_only: an audit entry is never changed or removed');
END;
CREATE TRIGGER audit_log_is_append_only_delete BEFORE DELETE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'audit_log_is_append_only: an audit entry is never changed or removed');
END;
"#,
    // 11: the bounded history of checks and delivery attempts (`[ledger] history`), read by
    // the console's stories: whitelisted facts only, never a body. No foreign keys: the history
    // is no record of truth, and a check of every session is written on the hot path (a key
    // check per row cost a lookup each).
    r#"
CREATE TABLE checks (
    id              INTEGER PRIMARY KEY,
    session         INTEGER NOT NULL,
    at              TEXT NOT NULL,
    via             TEXT NOT NULL CHECK (via IN ('call', 'callback', 'list')),
    source          TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    http_status     INTEGER,
    provider_status TEXT,
    error           TEXT,
    took_ms         INTEGER
);
CREATE INDEX checks_by_session ON checks (session, id);
CREATE TABLE delivery_attempts (
    id      INTEGER PRIMARY KEY,
    event   INTEGER NOT NULL,
    at      TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error   TEXT,
    took_ms INTEGER
);
CREATE INDEX delivery_attempts_by_event ON delivery_attempts (event, id);
"#,
    // 12: when a scheduled check found the answer, the last moment before it that the session
    // was known PENDING (its previous check, or its creation): the customer acted in between,
    // which is what learned check times estimate (reconcile::timing).
    r#"
ALTER TABLE transitions ADD COLUMN pending_since TEXT;
"#,
];

/// The PostgreSQL migrations, numbered as [`MIGRATIONS`]. Integers are `BIGINT`; times are
/// the same RFC 3339 text as in SQLite, compared byte-wise (`COLLATE "C"`); amounts are decimal
/// text (an application may insert a `numeric`: it is stored as its text).
pub const PG_MIGRATIONS: &[&str] = &[
    // 1: the three tables: sessions, transitions, events (README "The ledger contract").
    r#"
CREATE TABLE sessions (
    id                    BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    provider              TEXT NOT NULL,
    session_id            TEXT NOT NULL,
    reference             TEXT,
    amount                TEXT CONSTRAINT amount_is_decimal_text CHECK (
                              amount IS NULL OR (amount ~ '^[0-9]+(\.[0-9]+)?$' AND length(amount) <= 40)),
    currency              TEXT,
    status                TEXT NOT NULL DEFAULT 'PENDING' CONSTRAINT status_is_known CHECK (
                              status IN ('PENDING','COMPLETED','FAILED','CANCELLED','EXPIRED','REVIEW')),
    created_at            TEXT COLLATE "C" NOT NULL
                              DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    next_check_at         TEXT COLLATE "C" NOT NULL
                              DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    checks                BIGINT NOT NULL DEFAULT 0,
    answered_checks       BIGINT NOT NULL DEFAULT 0,
    not_found_count       BIGINT NOT NULL DEFAULT 0,
    last_checked_at       TEXT COLLATE "C",
    last_error            TEXT,
    lease_owner           TEXT,
    lease_until           TEXT COLLATE "C",
    provider_status       TEXT,
    transaction_id        TEXT,
    payment_method        TEXT,
    provider_completed_at TEXT,
    resolved_at           TEXT COLLATE "C",
    CONSTRAINT session_id_is_valid CHECK (
        octet_length(session_id) BETWEEN 1 AND 256 AND session_id NOT IN ('.', '..')
        AND session_id !~ '[-]'),
    UNIQUE (provider, session_id)
);
CREATE INDEX sessions_due ON sessions (next_check_at) WHERE status = 'PENDING';
CREATE INDEX sessions_pending_by_id ON sessions (id) WHERE status = 'PENDING';
CREATE INDEX sessions_by_session_id ON sessions (session_id);

CREATE TABLE transitions (
    id                    BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    session               BIGINT NOT NULL REFERENCES sessions (id),
    from_status           TEXT NOT NULL,
    to_status             TEXT NOT NULL,
    at                    TEXT COLLATE "C" NOT NULL,
    source                TEXT NOT NULL CHECK (source IN ('poll','backfill','manual','api')),
    reason                TEXT,
    provider_status       TEXT,
    transaction_id        TEXT,
    payment_method        TEXT,
    provider_amount       TEXT,
    provider_reference    TEXT,
    provider_currency     TEXT,
    provider_completed_at TEXT
);
CREATE UNIQUE INDEX transitions_one_from_pending ON transitions (session) WHERE from_status = 'PENDING';
CREATE INDEX transitions_by_session ON transitions (session);

CREATE TABLE events (
    seq             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    session         BIGINT NOT NULL REFERENCES sessions (id),
    payload         TEXT NOT NULL,
    created_at      TEXT COLLATE "C" NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT COLLATE "C",
    delivered_at    TEXT COLLATE "C",
    dead_at         TEXT COLLATE "C",
    last_error      TEXT,
    lease_owner     TEXT,
    lease_until     TEXT COLLATE "C"
);
CREATE INDEX events_due ON events (next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX events_by_session ON events (session);
"#,
    // 2: the late check of EXPIRED sessions, and what the daemon knows about each provider.
    r#"
ALTER TABLE sessions ADD COLUMN late_check_at TEXT COLLATE "C";
CREATE INDEX sessions_late_check ON sessions (late_check_at) WHERE late_check_at IS NOT NULL;

CREATE TABLE provider_state (
    provider        TEXT PRIMARY KEY,
    auth_refused_at TEXT COLLATE "C",
    auth_error      TEXT,
    paused_until    TEXT COLLATE "C",
    last_answer_at  TEXT COLLATE "C"
);
"#,
    // 3: one index fewer, as in SQLite (PostgreSQL's CHECK lists cost nothing to keep).
    r#"
DROP INDEX sessions_pending_by_id;
"#,
    // 4: as in SQLite.
    r#"
ALTER TABLE provider_state ADD COLUMN misdirected_at TEXT COLLATE "C";
ALTER TABLE provider_state ADD COLUMN misdirected_error TEXT;
ALTER TABLE provider_state ADD COLUMN answered_endpoint TEXT;
"#,
    // 5: as in SQLite, as constraints NOT VALID (new and changed rows are checked, rows already
    // there are left for payrecon to set aside). Types are PostgreSQL's own; an amount written
    // as a numeric is cast to its exact text, never through a float.
    r#"
ALTER TABLE sessions ADD CONSTRAINT reference_is_plain_text CHECK (reference IS NULL OR (
    octet_length(reference) <= 256 AND reference !~ '[\x01-\x1f\x7f-\x9f]'
    AND reference = btrim(reference, ' '))) NOT VALID;
ALTER TABLE sessions ADD CONSTRAINT currency_is_a_code CHECK (
    currency IS NULL OR currency ~ '^[A-Za-z]{1,8}$') NOT VALID;
ALTER TABLE sessions ADD CONSTRAINT session_id_is_plain CHECK (
    session_id !~ '[\x7f-\x9f]' AND session_id = btrim(session_id, ' ')) NOT VALID;
CREATE FUNCTION payrecon_new_session_is_pending() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.status <> 'PENDING' THEN
        RAISE EXCEPTION 'new_session_is_pending: a new session starts PENDING; payrecon records every later state with its transition and event'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER new_session_is_pending BEFORE INSERT ON sessions
    FOR EACH ROW EXECUTE FUNCTION payrecon_new_session_is_pending();
ALTER TABLE sessions ADD CONSTRAINT times_are_ledger_times CHECK (
    created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$'
    AND next_check_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$') NOT VALID;
"#,
    // 6: the rules of 5 as a trigger that checks, on UPDATE, only the values it changes, as
    // SQLite's do. A CHECK constraint re-checks the whole row on every UPDATE: one row with a bad
    // created_at from before 5 made every claim fail, and so every pass, instead of being set
    // aside.
    r#"
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS reference_is_plain_text;
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS currency_is_a_code;
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS session_id_is_plain;
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS times_are_ledger_times;
CREATE OR REPLACE FUNCTION payrecon_session_rules() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    fresh boolean := TG_OP = 'INSERT';
    ledger_time constant text := '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$';
    changed_reference boolean := true;
    changed_currency boolean := true;
    changed_id boolean := true;
    changed_created boolean := true;
    changed_next boolean := true;
BEGIN
    IF NOT fresh THEN
        changed_reference := NEW.reference IS DISTINCT FROM OLD.reference;
        changed_currency := NEW.currency IS DISTINCT FROM OLD.currency;
        changed_id := NEW.session_id IS DISTINCT FROM OLD.session_id;
        changed_created := NEW.created_at IS DISTINCT FROM OLD.created_at;
        changed_next := NEW.next_check_at IS DISTINCT FROM OLD.next_check_at;
    END IF;
    IF changed_reference AND NEW.reference IS NOT NULL AND (octet_length(NEW.reference) > 256
        OR NEW.reference ~ '[\x01-\x1f\x7f-\x9f]' OR NEW.reference <> btrim(NEW.reference, ' ')) THEN
        RAISE EXCEPTION 'reference_is_plain_text: at most 256 bytes, no control character, no surrounding spaces'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'reference_is_plain_text';
    END IF;
    IF changed_currency AND NEW.currency IS NOT NULL AND NEW.currency !~ '^[A-Za-z]{1,8}$' THEN
        RAISE EXCEPTION 'currency_is_a_code: 1 to 8 letters such as LSL'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'currency_is_a_code';
    END IF;
    IF changed_id AND (NEW.session_id ~ '[\x7f-\x9f]' OR NEW.session_id <> btrim(NEW.session_id, ' ')) THEN
        RAISE EXCEPTION 'session_id_is_plain: no control character (C0, DEL, C1), no surrounding spaces'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'session_id_is_plain';
    END IF;
    IF (changed_created AND NEW.created_at !~ ledger_time) OR (changed_next AND NEW.next_check_at !~ ledger_time) THEN
        RAISE EXCEPTION 'times_are_ledger_times: created_at and next_check_at are UTC like 2026-11-25T10:05:03.120Z'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'times_are_ledger_times';
    END IF;
    RETURN NEW;
END
$fn$;
DROP TRIGGER IF EXISTS sessions_rules ON sessions;
CREATE TRIGGER sessions_rules BEFORE INSERT OR UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION payrecon_session_rules();
-- As in SQLite: a PENDING row never due because its next_check_at is not a time is due now.
UPDATE sessions SET next_check_at = to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
WHERE status = 'PENDING' AND next_check_at !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$';
"#,
    // 7: as in SQLite.
    r#"
CREATE TABLE IF NOT EXISTS call_budget (
    credential TEXT COLLATE "C" PRIMARY KEY,
    next_at    BIGINT NOT NULL
);
"#,
    // 8: as in SQLite; the rules' function checks `provider_ref` as it checks `reference`.
    r#"
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS provider_ref TEXT;
CREATE INDEX IF NOT EXISTS sessions_by_provider_ref ON sessions (provider, provider_ref)
    WHERE provider_ref IS NOT NULL;
CREATE OR REPLACE FUNCTION payrecon_session_rules() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    fresh boolean := TG_OP = 'INSERT';
    ledger_time constant text := '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$';
    changed_reference boolean := true;
    changed_provider_ref boolean := true;
    changed_currency boolean := true;
    changed_id boolean := true;
    changed_created boolean := true;
    changed_next boolean := true;
BEGIN
    IF NOT fresh THEN
        changed_reference := NEW.reference IS DISTINCT FROM OLD.reference;
        changed_provider_ref := NEW.provider_ref IS DISTINCT FROM OLD.provider_ref;
        changed_currency := NEW.currency IS DISTINCT FROM OLD.currency;
        changed_id := NEW.session_id IS DISTINCT FROM OLD.session_id;
        changed_created := NEW.created_at IS DISTINCT FROM OLD.created_at;
        changed_next := NEW.next_check_at IS DISTINCT FROM OLD.next_check_at;
    END IF;
    IF changed_reference AND NEW.reference IS NOT NULL AND (octet_length(NEW.reference) > 256
        OR NEW.reference ~ '[\x01-\x1f\x7f-\x9f]' OR NEW.reference <> btrim(NEW.reference, ' ')) THEN
        RAISE EXCEPTION 'reference_is_plain_text: at most 256 bytes, no control character, no surrounding spaces'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'reference_is_plain_text';
    END IF;
    IF changed_provider_ref AND NEW.provider_ref IS NOT NULL AND (octet_length(NEW.provider_ref) > 256
        OR NEW.provider_ref ~ '[\x01-\x1f\x7f-\x9f]' OR NEW.provider_ref <> btrim(NEW.provider_ref, ' ')) THEN
        RAISE EXCEPTION 'provider_ref_is_plain_text: at most 256 bytes, no control character, no surrounding spaces'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'provider_ref_is_plain_text';
    END IF;
    IF changed_currency AND NEW.currency IS NOT NULL AND NEW.currency !~ '^[A-Za-z]{1,8}$' THEN
        RAISE EXCEPTION 'currency_is_a_code: 1 to 8 letters such as LSL'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'currency_is_a_code';
    END IF;
    IF changed_id AND (NEW.session_id ~ '[\x7f-\x9f]' OR NEW.session_id <> btrim(NEW.session_id, ' ')) THEN
        RAISE EXCEPTION 'session_id_is_plain: no control character (C0, DEL, C1), no surrounding spaces'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'session_id_is_plain';
    END IF;
    IF (changed_created AND NEW.created_at !~ ledger_time) OR (changed_next AND NEW.next_check_at !~ ledger_time) THEN
        RAISE EXCEPTION 'times_are_ledger_times: created_at and next_check_at are UTC like 2026-11-25T10:05:03.120Z'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'times_are_ledger_times';
    END IF;
    RETURN NEW;
END
$fn$;
"#,
    // 9: as in SQLite.
    r#"
CREATE TABLE IF NOT EXISTS unmatched_payments (
    id                  BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    provider            TEXT NOT NULL,
    payment_id          TEXT NOT NULL,
    other_id            TEXT,
    amount              TEXT,
    currency            TEXT,
    provider_status     TEXT NOT NULL,
    receipt             TEXT,
    provider_created_at TEXT COLLATE "C",
    first_seen_at       TEXT COLLATE "C" NOT NULL,
    last_seen_at        TEXT COLLATE "C" NOT NULL,
    reported_at         TEXT COLLATE "C",
    matched_session     BIGINT REFERENCES sessions (id),
    matched_at          TEXT COLLATE "C",
    dismissed_at        TEXT COLLATE "C",
    dismissed_by        TEXT,
    dismiss_reason      TEXT,
    UNIQUE (provider, payment_id)
);
CREATE INDEX IF NOT EXISTS unmatched_open ON unmatched_payments (provider, first_seen_at)
    WHERE matched_at IS NULL AND dismissed_at IS NULL;
ALTER TABLE events ALTER COLUMN session DROP NOT NULL;
ALTER TABLE events ADD COLUMN IF NOT EXISTS payment BIGINT REFERENCES unmatched_payments (id);
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_name_a_subject;
ALTER TABLE events ADD CONSTRAINT events_name_a_subject CHECK (session IS NOT NULL OR payment IS NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_payment ON events (payment) WHERE payment IS NOT NULL;
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS listed_at TEXT COLLATE "C";
ALTER TABLE provider_state ADD COLUMN IF NOT EXISTS sweep_due_at TEXT COLLATE "C";
ALTER TABLE provider_state ADD COLUMN IF NOT EXISTS swept_at TEXT COLLATE "C";
ALTER TABLE provider_state ADD COLUMN IF NOT EXISTS sweep_started_at TEXT COLLATE "C";
ALTER TABLE provider_state ADD COLUMN IF NOT EXISTS sweep_error TEXT;
"#,
    // 10: as in SQLite; TRUNCATE is refused too.
    r#"
ALTER TABLE transitions ADD COLUMN IF NOT EXISTS actor TEXT;
CREATE INDEX IF NOT EXISTS sessions_by_reference ON sessions (reference) WHERE reference IS NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_by_transaction_id ON sessions (transaction_id)
    WHERE transaction_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_log (
    id     BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at     TEXT COLLATE "C" NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
CREATE OR REPLACE FUNCTION payrecon_audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'audit_log_is_append_only: an audit entry is never changed or removed'
        USING ERRCODE = 'check_violation', CONSTRAINT = 'audit_log_is_append_only';
END
$fn$;
DROP TRIGGER IF EXISTS audit_log_is_append_only ON audit_log;
CREATE TRIGGER audit_log_is_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION payrecon_audit_log_is_append_only();
DROP TRIGGER IF EXISTS audit_log_is_not_truncated ON audit_log;
CREATE TRIGGER audit_log_is_not_truncated BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION payrecon_audit_log_is_append_only();
"#,
    // 11: as in SQLite.
    r#"
CREATE TABLE IF NOT EXISTS checks (
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    session         BIGINT NOT NULL,
    at              TEXT COLLATE "C" NOT NULL,
    via             TEXT NOT NULL CHECK (via IN ('call', 'callback', 'list')),
    source          TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    http_status     INTEGER,
    provider_status TEXT,
    error           TEXT,
    took_ms         BIGINT
);
CREATE INDEX IF NOT EXISTS checks_by_session ON checks (session, id);
CREATE TABLE IF NOT EXISTS delivery_attempts (
    id      BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    event   BIGINT NOT NULL,
    at      TEXT COLLATE "C" NOT NULL,
    outcome TEXT NOT NULL,
    error   TEXT,
    took_ms BIGINT
);
CREATE INDEX IF NOT EXISTS delivery_attempts_by_event ON delivery_attempts (event, id);
"#,
    // 12: as in SQLite.
    r#"
ALTER TABLE transitions ADD COLUMN IF NOT EXISTS pending_since TEXT COLLATE "C";
"#,
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

const _: () = assert!(MIGRATIONS.len() == PG_MIGRATIONS.len());

/// Why a migration stopped.
enum Stop {
    Db(&'static str, DbError),
    TooNew(i64),
    Dangling(String),
}

impl From<DbError> for Stop {
    fn from(e: DbError) -> Self {
        Stop::Db("migrating the schema", e)
    }
}

/// Brings the ledger's schema to [`VERSION`], or refuses a newer one untouched.
pub fn migrate(engine: &Engine, ledger: &str) -> Result<(), Error> {
    let result = match engine {
        Engine::Lite(m) => {
            migrate_lite(&mut super::db::lite_lock(m))
        }
        Engine::Pg(_) => engine.tx(Mode::Write, |tx| {
            // Daemons starting together migrate one after the other.
            tx.batch(
                "SET LOCAL client_min_messages = warning; \
                 SELECT pg_advisory_xact_lock(7305960357385347153); \
                 CREATE TABLE IF NOT EXISTS payrecon_schema (version BIGINT NOT NULL); \
                 INSERT INTO payrecon_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM payrecon_schema);",
            )?;
            let version: i64 =
                tx.query_one("SELECT max(version) FROM payrecon_schema", &[], |r| r.get(0))?;
            if version > VERSION {
                return Err(Stop::TooNew(version));
            }
            if version < VERSION {
                for sql in PG_MIGRATIONS.iter().skip(version as usize) {
                    tx.batch(sql)?;
                }
                tx.exec(
                    "UPDATE payrecon_schema SET version = ?1",
                    super::db::vals![VERSION],
                )?;
            }
            Ok(())
        }),
    };
    result.map_err(|stop| match stop {
        Stop::Db(what, cause) => Error::Db {
            ledger: ledger.to_string(),
            what,
            cause,
        },
        Stop::TooNew(found) => Error::TooNew {
            ledger: ledger.to_string(),
            found,
            supported: VERSION,
        },
        Stop::Dangling(table) => Error::Corrupt {
            ledger: ledger.to_string(),
            message: format!(
                "a row of {table} refers to a session that does not exist; the migration was not applied"
            ),
        },
    })
}

fn migrate_lite(conn: &mut rusqlite::Connection) -> Result<(), Stop> {
    use rusqlite::OptionalExtension;
    let lite = |what| move |e: rusqlite::Error| Stop::Db(what, DbError::from(e));
    // Foreign keys off while tables are rebuilt, as SQLite documents (this build's SQLite has
    // them on by default: migration 3's DROP of `sessions` failed on any ledger with a
    // transition); each migration checks them before it commits, and `after_migrations` turns
    // them on. The pragma is a no-op inside a transaction, so it comes first.
    conn.execute_batch("PRAGMA foreign_keys = OFF;")
        .map_err(lite("turning foreign keys off for the migration"))?;
    loop {
        // The version is read inside the write transaction: processes started together on a
        // new ledger take turns, and each applies only what the others have not.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(lite("starting a migration"))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(lite("reading the schema version"))?;
        if version > VERSION {
            return Err(Stop::TooNew(version));
        }
        let Some(sql) = MIGRATIONS.get(version as usize) else {
            return Ok(());
        };
        let i = version as usize;
        tx.execute_batch(sql)
            .map_err(lite("migrating the schema"))?;
        let dangling: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()
            .map_err(lite("checking foreign keys after a migration"))?;
        if let Some(table) = dangling {
            return Err(Stop::Dangling(table));
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(lite("recording the schema version"))?;
        tx.commit().map_err(lite("committing a migration"))?;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::Connection;

    use crate::ledger::testing::*;
    use crate::ledger::{Ledger, schema};

    #[test]
    fn constraints_refuse_bad_direct_inserts_by_name() {
        let (_d, l) = temp();
        let bad = [
            (
                "INSERT INTO sessions (provider, session_id, amount) VALUES ('m', 'x', '-1')",
                "amount_is_decimal_text",
            ),
            (
                "INSERT INTO sessions (provider, session_id, amount) VALUES ('m', 'x', 'ten')",
                "amount_is_decimal_text",
            ),
            (
                "INSERT INTO sessions (provider, session_id) VALUES ('m', 'a' || char(10) || 'b')",
                "session_id_is_valid",
            ),
            (
                "INSERT INTO sessions (provider, session_id) VALUES ('m', '')",
                "session_id_is_valid",
            ),
            (
                "INSERT INTO sessions (provider, session_id, status) VALUES ('m', 'y', 'COMPLETED')",
                "new_session_is_pending",
            ),
        ];
        for (sql, name) in bad {
            let e = l.execute_batch(sql).unwrap_err().to_string();
            assert!(e.contains(name), "{sql}: {e}");
        }
        l.execute_batch(
            "INSERT INTO sessions (provider, session_id, amount) VALUES ('m', 'a/b %?#', '0.5')",
        )
        .unwrap();
        let e = l
            .execute_batch("UPDATE sessions SET status = 'PAID'")
            .unwrap_err()
            .to_string();
        assert!(e.contains("status_is_known"), "{e}");
    }

    /// A ledger at schema version `v`, made by applying the first `v` migrations by hand.
    fn ledger_at_version(path: &Path, v: usize) -> Connection {
        let c = Connection::open(path).unwrap();
        for sql in &schema::MIGRATIONS[..v] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", v as i64).unwrap();
        c
    }

    fn schema_of(c: &Connection) -> Vec<String> {
        let mut stmt = c
            .prepare("SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn version_1_upgrades_keeping_its_rows_to_the_fresh_schema() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        let c = ledger_at_version(&old, 1);
        c.execute_batch(
            "INSERT INTO sessions (provider, session_id, amount) VALUES ('mopay', 'kept', '5.00')",
        )
        .unwrap();
        drop(c);
        let l = Ledger::open(&old).unwrap();
        assert_eq!(
            l.find("kept").unwrap()[0]
                .amount
                .map(|a| a.to_string())
                .as_deref(),
            Some("5.00")
        );
        drop(l);
        let fresh = dir.path().join("fresh.db");
        drop(Ledger::open(&fresh).unwrap());
        let (a, b) = (
            Connection::open(&old).unwrap(),
            Connection::open(&fresh).unwrap(),
        );
        assert_eq!(schema_of(&a), schema_of(&b));
        let v: i64 = a
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema::VERSION);
    }

    #[test]
    fn a_failed_upgrade_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let c = ledger_at_version(&path, 1);
        // Something in the way of migration 2.
        c.execute_batch("CREATE TABLE provider_state (x INTEGER)")
            .unwrap();
        let before = schema_of(&c);
        drop(c);
        let e = Ledger::open(&path).err().unwrap().to_string();
        assert!(e.contains("migrating"), "{e}");
        let c = Connection::open(&path).unwrap();
        assert_eq!(schema_of(&c), before, "half a migration was left behind");
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
    }

    #[test]
    fn a_newer_ledger_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        drop(Ledger::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = Ledger::open(&path).err().unwrap().to_string();
        assert!(e.contains("newer"), "{e}");
        let c = Connection::open(&path).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 99);
    }
}
