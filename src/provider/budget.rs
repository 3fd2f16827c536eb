//! One call budget per provider credential, shared by every process on the ledger.
//!
//! A provider's `rate_limit` windows (`100/min`, `200/h`, …) become one spacing: the longest of
//! `(per + guard) / count` over the windows, where the guard is 2% of the window or 50 ms,
//! whichever is longer. Calls start at least that far apart, so no window
//! of any of the limits ever holds more than its count, wherever the calls come from: the
//! spacing is kept in a book every process shares (the ledger's `call_budget` table; a book
//! of its own when no ledger is attached). A process takes a few consecutive slots at a time
//! (at most 100 ms of them, at most as many as it has calls waiting) and starts each call at
//! its slot. A slot it cannot use within half the guard is thrown away, never used late: a
//! late call next to an on-time one would be two calls closer than the spacing. Thrown away
//! and unused slots are budget lost, never budget exceeded; a process killed while holding
//! slots loses at most those.
//!
//! The guard keeps the limit a ceiling at the provider too: calls may reach it up to a guard
//! later than their slot (half of it lateness here, half jitter on the way: threads that
//! wait for a core, a network) before two of them can fall into one window. On a per-second
//! limit that costs 5% of the budget; the 2% floor was not enough on a loaded machine (the
//! benchmark's row 8 saw 429s with it). Processes on several hosts share slots by their
//! clocks: keep them in sync (NTP does it to a few milliseconds).
//!
//! The book can never stall calls: a row further ahead than the budget can need (its longest
//! window, at least [`MIN_AHEAD`]) — a hand edit, a `rate_limit` typo since fixed, a clock that
//! ran ahead — is clamped to now when slots are taken, and said once. Hints (callbacks) take at
//! most one slot in [`HINT_SHARE`] while regular checks wait for slots.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

/// Where slots come from: the ledger's `call_budget` table, or [`LocalBook`].
pub trait CallBook: Send + Sync {
    /// Takes `n` consecutive slots `interval_us` apart on `credential`'s budget, none before
    /// `now_us` (microseconds since the Unix epoch); a book further ahead than `ceiling_us` is
    /// first set back to `now_us`. The first slot's time, and whether the book was set back.
    fn take(
        &self,
        credential: &str,
        n: u32,
        interval_us: i64,
        now_us: i64,
        ceiling_us: i64,
    ) -> BoxFuture<'_, Result<(i64, bool), String>>;
    /// No slot on `credential`'s budget before `until_us` (a 429's pause).
    fn hold(&self, credential: &str, until_us: i64) -> BoxFuture<'_, Result<(), String>>;
}

/// The book of one process, for a provider used without a ledger.
#[derive(Default)]
pub struct LocalBook(Mutex<HashMap<String, i64>>);

impl CallBook for LocalBook {
    fn take(
        &self,
        credential: &str,
        n: u32,
        interval_us: i64,
        now_us: i64,
        ceiling_us: i64,
    ) -> BoxFuture<'_, Result<(i64, bool), String>> {
        let mut book = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let next = book.entry(credential.to_string()).or_insert(now_us);
        let clamped = *next > ceiling_us;
        let first = if clamped { now_us } else { (*next).max(now_us) };
        *next = first + i64::from(n) * interval_us;
        Box::pin(std::future::ready(Ok((first, clamped))))
    }

    fn hold(&self, credential: &str, until_us: i64) -> BoxFuture<'_, Result<(), String>> {
        let mut book = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let next = book.entry(credential.to_string()).or_insert(until_us);
        *next = (*next).max(until_us);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The most slots one process takes at once: 100 ms of them.
const TAKE_SPAN_US: i64 = 100_000;
const MOST_AT_ONCE: i64 = 256;

/// The book may hold slots (or a 429's pause) at most this far ahead, or the budget's longest
/// window when that is longer: further is a book someone pushed by mistake.
pub const MIN_AHEAD: Duration = Duration::from_secs(60);

/// While regular checks wait for slots, hints take at most one slot in this many.
pub const HINT_SHARE: i64 = 4;

/// Who asks for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A pass's check, or `verify`.
    Regular,
    /// A hint's check (the API's `…/hint`, a provider's callback).
    Hint,
}

/// The wall clock in microseconds since the Unix epoch: the book's unit.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A fingerprint naming a credential in the shared book: SHA-256 of the kind and every secret
/// (or, for a provider without one, its endpoint). The credential itself is never stored.
pub fn fingerprint(kind: &str, secrets: &[Option<&str>], endpoint: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"payrecon call budget\0");
    h.update(kind.as_bytes());
    let mut any = false;
    for s in secrets.iter().flatten() {
        h.update(b"\0");
        h.update(s.as_bytes());
        any = true;
    }
    if !any {
        h.update(b"\0endpoint\0");
        h.update(endpoint.as_bytes());
    }
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// One provider's budget in this process: its slots taken from the book and not yet used.
pub struct Budget {
    pub credential: String,
    /// Microseconds between calls.
    pub interval_us: i64,
    /// How late a slot may still be used.
    tolerance_us: i64,
    most: u32,
    book: RwLock<Arc<dyn CallBook>>,
    slots: Mutex<VecDeque<i64>>,
    /// One process takes slots from the book one request at a time.
    taking: tokio::sync::Mutex<()>,
    waiting: AtomicU32,
    /// How far ahead of now the book may be (see [`MIN_AHEAD`]).
    max_ahead_us: i64,
    /// Whether a book too far ahead was already said (once per process).
    clamp_said: AtomicBool,
    /// Regular callers waiting for their slot now (hints yield to them).
    regular_waiting: AtomicU32,
    /// While regular callers wait, no hint before this time.
    hint_after: AtomicI64,
}

/// Why a call could not have a slot.
pub enum NoSlot {
    /// The next slot is further away than the caller will wait: it is kept for a later call.
    TooFar(Duration),
    /// The book could not be read or written.
    Book(String),
}

impl Budget {
    /// The budget for `limits` (`(count, per)` windows); `None` when there are none
    /// (`rate_limit = "off"`).
    pub fn new(credential: String, limits: &[(NonZeroU32, Duration)]) -> Option<Self> {
        let guard = |per: &Duration| (per.as_micros() as f64 * 0.02).max(50_000.0);
        let interval_us = limits
            .iter()
            .map(|(n, per)| {
                ((per.as_micros() as f64 + guard(per)) / f64::from(n.get())).ceil() as i64
            })
            .max()?
            .max(1);
        let tolerance_us = limits
            .iter()
            .map(|(_, per)| (guard(per) / 2.0) as i64)
            .min()?;
        let most = (TAKE_SPAN_US / interval_us).clamp(1, MOST_AT_ONCE) as u32;
        let longest = limits.iter().map(|(_, per)| *per).max()?;
        let max_ahead_us = longest.max(MIN_AHEAD).as_micros() as i64;
        Some(Self {
            credential,
            interval_us,
            tolerance_us,
            most,
            book: RwLock::new(Arc::new(LocalBook::default())),
            slots: Mutex::new(VecDeque::new()),
            taking: tokio::sync::Mutex::new(()),
            waiting: AtomicU32::new(0),
            max_ahead_us,
            clamp_said: AtomicBool::new(false),
            regular_waiting: AtomicU32::new(0),
            hint_after: AtomicI64::new(0),
        })
    }

    /// Shares this budget through `book` from now on (the ledger's, for every process on it).
    pub fn attach(&self, book: Arc<dyn CallBook>) {
        *self.book.write().unwrap_or_else(|p| p.into_inner()) = book;
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn book(&self) -> Arc<dyn CallBook> {
        self.book.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The next slot this process holds that is still usable, taken out of its queue; slots
    /// too late to use are thrown away.
    fn pop(&self, now: i64) -> Option<i64> {
        let mut q = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(&at) = q.front() {
            if at + self.tolerance_us >= now {
                return q.pop_front();
            }
            q.pop_front();
        }
        None
    }

    fn put_back(&self, at: i64) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_front(at);
    }

    /// Waits for this call's slot (at most `longest`). Whether it had to wait.
    pub async fn slot(&self, longest: Duration, caller: Caller) -> Result<bool, NoSlot> {
        // Hints learn from this that regular checks are waiting, and yield.
        struct Waiting<'a>(Option<&'a AtomicU32>);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                if let Some(w) = self.0 {
                    w.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        let _regular = Waiting((caller == Caller::Regular).then(|| {
            self.regular_waiting.fetch_add(1, Ordering::Relaxed);
            &self.regular_waiting
        }));
        let mut waited = false;
        loop {
            self.waiting.fetch_add(1, Ordering::Relaxed);
            let got = self.next_slot().await;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            let at = got?;
            let wait = at - now_us();
            if wait <= 0 {
                tracing::trace!(slot = at, late_us = -wait, "slot at once");
                return Ok(waited);
            }
            let wait = Duration::from_micros(wait as u64);
            if wait > longest {
                self.put_back(at);
                return Err(NoSlot::TooFar(wait));
            }
            tokio::time::sleep(wait).await;
            waited = true;
            // A timer that woke late (a busy machine) must not make the call late: its slot
            // is lost, and the call takes the next one.
            let now = now_us();
            if now <= at + self.tolerance_us {
                tracing::trace!(slot = at, late_us = now - at, "slot after a wait");
                return Ok(true);
            }
        }
    }

    async fn next_slot(&self) -> Result<i64, NoSlot> {
        loop {
            if let Some(at) = self.pop(now_us()) {
                return Ok(at);
            }
            let _taking = self.taking.lock().await;
            let now = now_us();
            if let Some(at) = self.pop(now) {
                return Ok(at);
            }
            let n = self.waiting.load(Ordering::Relaxed).clamp(1, self.most);
            let (first, clamped) = self
                .book()
                .take(
                    &self.credential,
                    n,
                    self.interval_us,
                    now,
                    now.saturating_add(self.max_ahead_us),
                )
                .await
                .map_err(NoSlot::Book)?;
            if clamped {
                crate::metrics::budget_clamped();
            }
            if clamped && !self.clamp_said.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    credential = %self.credential,
                    max_ahead = %humantime::format_duration(Duration::from_micros(self.max_ahead_us as u64)),
                    "the call budget in the ledger was further ahead than this rate_limit can need \
                     (a hand edit, an earlier rate_limit, a clock that ran ahead): set back to now"
                );
            }
            let mut q = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            q.extend((0..i64::from(n)).map(|i| first + i * self.interval_us));
        }
    }

    /// Waits until a hint may take a slot: at once while no regular check waits; else one
    /// slot in [`HINT_SHARE`] at this budget's pace. Holds no slot itself.
    pub async fn hint_turn(&self) {
        loop {
            let now = now_us();
            if self.regular_waiting.load(Ordering::Relaxed) == 0 {
                self.hint_after.store(now, Ordering::Relaxed);
                return;
            }
            let after = self.hint_after.load(Ordering::Relaxed);
            if after <= now {
                let next = now + HINT_SHARE * self.interval_us;
                if self
                    .hint_after
                    .compare_exchange(after, next, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            tokio::time::sleep(Duration::from_micros((after - now) as u64)).await;
        }
    }

    /// No call on this budget, from any process sharing the book, before `until_us` (at most
    /// [`Budget::max_ahead_us`] from now: a longer pause lives in the ledger's provider state).
    pub async fn hold(&self, until_us: i64) -> Result<(), String> {
        let until_us = until_us.min(now_us().saturating_add(self.max_ahead_us));
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|at| *at >= until_us);
        self.book().hold(&self.credential, until_us).await
    }

    /// How far away the next slot this process holds is, when it holds one in the future.
    pub fn held_slot_in(&self) -> Option<Duration> {
        let q = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let wait = *q.front()? - now_us();
        (wait > 0).then(|| Duration::from_micros(wait as u64))
    }

    /// Slots in `within` at this budget's pace: how many sessions one claim takes.
    pub fn calls_in(&self, within: Duration) -> u32 {
        let n = within.as_micros() as i64 / self.interval_us;
        n.clamp(1, i64::from(u32::MAX)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(spec: &[(u32, u64)]) -> Vec<(NonZeroU32, Duration)> {
        spec.iter()
            .map(|(n, s)| (NonZeroU32::new(*n).unwrap(), Duration::from_secs(*s)))
            .collect()
    }

    #[test]
    fn the_slowest_window_sets_the_spacing() {
        // Moflay: 100/min and 200/h. 200 an hour is one every 18 s, plus 2%; a slot may be
        // late by half of the minute window's guard (1.2 s).
        let b = Budget::new("x".into(), &limits(&[(100, 60), (200, 3600)])).unwrap();
        assert_eq!(b.interval_us, 18_360_000);
        assert_eq!(b.tolerance_us, 600_000);
        // 20/s: one every (1 s + 50 ms) / 20; 25 ms may be late.
        let b = Budget::new("x".into(), &limits(&[(20, 1)])).unwrap();
        assert_eq!(b.interval_us, 52_500);
        assert_eq!(b.tolerance_us, 25_000);
        assert!(Budget::new("x".into(), &[]).is_none());
    }

    #[tokio::test]
    async fn two_budgets_on_one_book_never_share_a_slot() {
        let book: Arc<dyn CallBook> = Arc::new(LocalBook::default());
        let l = limits(&[(1000, 1)]);
        let a = Budget::new("k".into(), &l).unwrap();
        let b = Budget::new("k".into(), &l).unwrap();
        a.attach(book.clone());
        b.attach(book);
        let mut at = Vec::new();
        for _ in 0..20 {
            for budget in [&a, &b] {
                budget
                    .slot(Duration::from_secs(1), Caller::Regular)
                    .await
                    .ok()
                    .unwrap();
                at.push(now_us());
            }
        }
        at.sort_unstable();
        // 1000/s is 1,050 µs apart; each call starts at or after its slot, so over 40 calls the
        // span is at least 39 spacings.
        assert!(at[39] - at[0] >= 39 * 1050, "{:?}", at[39] - at[0]);
    }

    #[test]
    fn a_fingerprint_never_holds_the_secret() {
        let f = fingerprint("mopay", &[Some("sk_live_abc")], "https://x/");
        assert_eq!(f.len(), 32);
        assert!(!f.contains("sk_live"));
        assert_ne!(
            f,
            fingerprint("mopay", &[Some("sk_live_abd")], "https://x/")
        );
        assert_ne!(
            fingerprint("mopay", &[None], "https://a/"),
            fingerprint("mopay", &[None], "https://b/")
        );
    }
}
