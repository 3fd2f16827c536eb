//! A simulated session's behaviour, written `[FAULT-K.]FINAL[-N][.slow-MS][.after-MS]`.

use std::fmt;
use std::str::FromStr;

/// What a simulated session does when polled. Text form (see README "Simulator behaviours"):
/// `[FAULT-K.]FINAL[-N][.slow-MS][.after-MS]`, for example `complete-2`, `5xx-2.complete`,
/// `fail`, `pending`, `429-1.complete`, `complete.slow-300`, `complete.after-45000` (pending
/// until 45 s after the session was registered: a customer who acts then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// A fault answered for the first `k` polls.
    pub fault: Option<(Fault, u32)>,
    /// PENDING answers after the faults and before the final answer.
    pub pending_polls: u32,
    pub last: Final,
    /// Delay before every answer.
    pub slow_ms: u64,
    /// The answer stays pending until this long after the session was registered (the moment
    /// the customer acts); 0: no such moment.
    pub after_ms: u64,
}

/// A transient fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 503.
    Status5xx,
    /// HTTP 429 with `Retry-After: 1`.
    RateLimit,
    /// 200 with an HTML page.
    Html,
    /// 200 with JSON cut in half.
    Truncated,
    /// 200 with a 2 MiB body.
    Oversized,
    /// 200 with `{"success": false}`.
    FalseSuccess,
    /// HTTP 429 with `Retry-After: 120`.
    RateLimitLong,
    /// HTTP 429 with `Retry-After` as an HTTP date two seconds ahead.
    RateLimitDate,
    /// HTTP 404, then the rest of the behaviour (an answer resets the count).
    NotFound,
    /// Refused credentials: Moflay's 422 `invalid_access` (the key lacks a permission), a 403
    /// in every other provider's shape.
    NoPermission,
    /// HTTP 429 without `Retry-After`: Moflay's `X-RateLimit-Reset` epoch two seconds ahead
    /// (`Retry-After: 2` for the others, who document no such header).
    RateLimitReset,
}

/// The answer once faults and pending polls are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    Complete,
    Fail,
    Cancel,
    Expire,
    /// Never resolves.
    Pending,
    /// 404 for every poll.
    NotFound,
    /// COMPLETED for another amount.
    AmountMismatch,
    /// COMPLETED for another reference.
    ReferenceMismatch,
    /// A status word outside the mapping table.
    Unknown,
    /// COMPLETED with `transactionStatus: failed`.
    Unpaid,
    /// EXPIRED once, COMPLETED on every later poll: a payment after expiry.
    LatePayment,
    /// Paid, for the ledger's amount in whole units (floored), or one unit less when it is
    /// whole already: an underpayment.
    Underpaid,
    /// Paid, in another currency (only providers that return a currency can tell).
    CurrencyMismatch,
}

const FAULTS: &[(&str, Fault)] = &[
    ("5xx", Fault::Status5xx),
    ("429", Fault::RateLimit),
    ("html", Fault::Html),
    ("truncated", Fault::Truncated),
    ("oversized", Fault::Oversized),
    ("falsesuccess", Fault::FalseSuccess),
    ("429long", Fault::RateLimitLong),
    ("429date", Fault::RateLimitDate),
    ("404", Fault::NotFound),
    ("422", Fault::NoPermission),
    ("429reset", Fault::RateLimitReset),
];

const FINALS: &[(&str, Final)] = &[
    ("complete", Final::Complete),
    ("fail", Final::Fail),
    ("cancel", Final::Cancel),
    ("expire", Final::Expire),
    ("pending", Final::Pending),
    ("notfound", Final::NotFound),
    ("amount", Final::AmountMismatch),
    ("reference", Final::ReferenceMismatch),
    ("unknown", Final::Unknown),
    ("unpaid", Final::Unpaid),
    ("latepay", Final::LatePayment),
    ("underpaid", Final::Underpaid),
    ("currency", Final::CurrencyMismatch),
];

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            fault: None,
            pending_polls: 0,
            last: Final::Complete,
            slow_ms: 0,
            after_ms: 0,
        }
    }
}

impl FromStr for Behaviour {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("{text:?} is not a simulator behaviour (see README \"Simulator behaviours\")")
        };
        let mut b = Behaviour::default();
        let mut seen_final = false;
        for part in text.split('.') {
            let (word, n) = match part.rsplit_once('-') {
                Some((w, n)) if n.bytes().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
                    (w, Some(n.parse::<u64>().map_err(|_| bad())?))
                }
                _ => (part, None),
            };
            if word == "slow" {
                b.slow_ms = n.ok_or_else(bad)?;
            } else if word == "after" {
                b.after_ms = n.ok_or_else(bad)?;
            } else if let Some((_, f)) = FAULTS.iter().find(|(w, _)| *w == word) {
                b.fault = Some((*f, n.unwrap_or(1).min(1000) as u32));
            } else if let Some((_, f)) = FINALS.iter().find(|(w, _)| *w == word) {
                b.last = *f;
                b.pending_polls = n.unwrap_or(0).min(1000) as u32;
                seen_final = true;
            } else {
                return Err(bad());
            }
        }
        let _ = seen_final;
        Ok(b)
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((fault, k)) = self.fault {
            let w = FAULTS
                .iter()
                .find(|(_, x)| *x == fault)
                .map_or("?", |(w, _)| w);
            write!(f, "{w}-{k}.")?;
        }
        let w = FINALS
            .iter()
            .find(|(_, x)| *x == self.last)
            .map_or("?", |(w, _)| w);
        f.write_str(w)?;
        if self.pending_polls > 0 {
            write!(f, "-{}", self.pending_polls)?;
        }
        if self.slow_ms > 0 {
            write!(f, ".slow-{}", self.slow_ms)?;
        }
        if self.after_ms > 0 {
            write!(f, ".after-{}", self.after_ms)?;
        }
        Ok(())
    }
}
