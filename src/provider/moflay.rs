//! Moflay, M-Pesa Express in Kenya (seed 003, docs/providers.md "moflay").
//!
//! Status: `GET {base_url}/v1/payments/{id}`, `Authorization: Bearer KEY` `[docs]`; `{id}` is the
//! `pay_…` payment id (or its `trxn_…` transaction id) that `POST /v1/express` returns
//! `[seed 003]`. Amounts are in the currency's smallest unit `[docs]`: converted with the
//! currency's minor digits before comparing. Errors come as `{"error": {"status", "code",
//! "message"}}` `[docs]`.

use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

use super::kinds::{CallbackSignature, CallbackSpec, KindSpec, ListSpec, ListUse, SecretNeeds};
use super::{
    Adapter, Answer, Error, ListAsk, ListPage, Listed, Mapped, ProviderConfig, ProviderFacts, StatusUrl, clip,
};
use crate::secret::Secret;

/// What the configuration needs to know of this kind (docs/providers.md).
pub const SPEC: KindSpec = KindSpec {
    kind: "moflay",
    default_base_url: Some("https://api.moflay.com"), // [seed 003]
    // Production: 100/min and 200/h; sandbox: 20/min with a burst of 5 per 10 s
    // (docs.moflay.com/api-reference/rate-limit). Sandbox keys start `mof_test_` [docs].
    default_rate_limits: &["100/min", "200/h"],
    sandbox_rate_limits: Some(("mof_test_", &["20/min", "5/10s"])),
    // 200/h [docs] is about three calls a minute for every session together: four checks in
    // the first 90 s, where M-Pesa completes 30–90 s after the PIN [3rd-party], then sparse.
    default_schedule: &["20s", "20s", "20s", "30s", "1m", "5m", "30m", "2h"],
    // Payment webhooks (`payment.completed`, `payment.failed`) are signed in the Standard
    // Webhooks scheme, `svix-id`/`svix-timestamp`/`svix-signature` (docs.moflay.com/webhooks/
    // signature-verification) [docs]; their body is assumed to carry the payment's `id` or
    // `transactionId` as the status answer does [assumed: the payment event's body is not shown].
    // A verified one whose `data` parses as a payment (the get-payment shape, naming the
    // session) is decided as a status answer [assumed: "payment event payloads contain the
    // Moflay payment or transaction data" (docs.moflay.com/webhooks/events)]; any other body is
    // a hint.
    callback: CallbackSpec {
        answer_pointer: Some("/data"),
        signature: Some(CallbackSignature::StandardWebhooks),
        id_pointers: &["/data/id", "/id", "/data/transactionId", "/transactionId"],
    },
    // `GET /v1/transactions` [docs]: ids `trxn_…` [docs]. Decided from the list by default: the
    // list carries status, amount and currency, compared exactly as a status answer's, and ties
    // by the transaction id the ledger holds; it lacks `accountReference` [docs], which the
    // event's `compared` then leaves out. Confirming each with a status call would cap a shop
    // at Moflay's 200 calls an hour again (docs/providers.md "Lists").
    list: Some(ListSpec {
        default_use: ListUse::Decide,
        id_prefix: "trxn_",
        // `limit` 1–100 on the list-transactions page, 1–10 on another [docs, they disagree]:
        // 100, and 10 once a page of 100 is refused.
        page_limits: (LIST_LIMIT, 10),
        // No date filter on the stored page [unverified elsewhere]: read newest first [docs].
        filters_by_time: false,
    }),
    secrets: SecretNeeds::ApiKey,
    keys: &[
        "api_key_env",
        "webhook_secret_env",
        "list",
        "list_window",
        "unmatched_after",
    ],
};


const STATUS_PATH: &[&str] = &["v1", "payments"]; // [docs]
const LIST_PATH: &[&str] = &["v1", "transactions"]; // [docs]

/// The most items a page of `GET /v1/transactions` asks for (see `SPEC.list`).
pub const LIST_LIMIT: u32 = 100;

pub struct Moflay {
    status: StatusUrl,
    list: reqwest::Url,
    api_key: Option<Secret>,
}

impl Moflay {
    pub fn new(cfg: &ProviderConfig) -> Self {
        let list = StatusUrl::new(&cfg.base_url, &LIST_PATH[..1]).with(LIST_PATH[1]);
        Self {
            status: StatusUrl::new(&cfg.base_url, STATUS_PATH),
            list,
            api_key: cfg.api_key.clone(),
        }
    }
}

/// The whitelisted fields of a payment `[docs]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MoflayPayment {
    id: Option<String>,
    transaction_id: Option<String>,
    status: Option<Value>,
    /// Smallest currency unit `[docs]`.
    amount: Option<Value>,
    currency: Option<String>,
    account_reference: Option<String>,
    receipt_number: Option<String>,
    completed_at: Option<String>,
}

/// `{"error": {"status", "code", "message"}}` `[docs]`.
#[derive(Debug, Deserialize)]
struct MoflayErrorEnvelope {
    error: MoflayError,
}

#[derive(Debug, Deserialize)]
struct MoflayError {
    code: Option<String>,
}

fn map_status(word: &str) -> Mapped {
    match word.to_ascii_lowercase().as_str() {
        "initiating" | "pending" => Mapped::Pending, // [docs]
        "completed" => Mapped::Paid,                 // [docs]
        "failed" => Mapped::Failed,                  // [docs]
        "canceled" => Mapped::Cancelled,             // [docs] (missing from one SDK's enum)
        _ => Mapped::Unrecognised,
    }
}

/// A payment's status word and amount as payrecon reads them, from a status answer or a list
/// item alike: the status table, Moflay's own "cannot tell", and the amount from minor units
/// with the currency's digits (or why it cannot be).
fn facts_of(
    status: Option<&Value>,
    amount: Option<&Value>,
    currency: Option<&str>,
) -> Result<ProviderFacts, Error> {
    let (raw, word) = super::json_word(status);
    let mut f = ProviderFacts::new(raw, word.map_or(Mapped::Unrecognised, map_status));
    // `unknown`: Moflay itself could not determine the outcome, "manual review" [docs]. An
    // answer we cannot act on: PENDING, never counted toward expiry, REVIEW after max_age.
    if word.is_some_and(|w| w.eq_ignore_ascii_case("unknown")) {
        f.mapped = Mapped::Unsure;
        f.warning =
            Some("Moflay reports status \"unknown\": it could not tell; a person must look".into());
    }
    let minor = super::json_decimal(amount, "amount")?;
    match (minor, currency) {
        (None, _) => {}
        (Some(m), Some(c)) if super::minor_digits(c).is_some() => {
            let digits = super::minor_digits(c).unwrap_or(0);
            let mut major = m / Decimal::from(10u64.pow(digits));
            major.rescale(digits.max(major.scale()));
            f.amount = Some(major);
        }
        (Some(m), c) => {
            f.amount_problem = Some(format!(
                "amount {m} in minor units of {}, whose digits are unknown",
                c.map_or("an unnamed currency".to_string(), clip)
            ));
        }
    }
    Ok(f)
}

#[derive(Debug, Deserialize)]
struct MoflayListPage {
    data: Option<Vec<MoflayTransaction>>,
    meta: Option<MoflayListMeta>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MoflayListMeta {
    cursor: Option<String>,
    has_next_page: Option<bool>,
}

/// The whitelisted fields of a listed transaction [docs].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MoflayTransaction {
    id: Option<String>,
    status: Option<Value>,
    amount: Option<Value>,
    currency: Option<String>,
    receipt_number: Option<String>,
    created_at: Option<String>,
    paid_at: Option<String>,
}

/// Reads one page of Moflay's transaction list, `GET /v1/transactions` [docs]: each payment
/// named by its `trxn_…` transaction id, read as a status answer is (the same status table and
/// minor units, by [`facts_of`]), and the cursor of the next page (`meta.cursor` when
/// `meta.hasNextPage`). A list item carries no `accountReference` [docs], so `facts.reference`
/// is `None`. A page with no `data` array is malformed; an item without an id names nothing and
/// is left out.
pub fn parse_list(body: &[u8]) -> Result<ListPage, Error> {
    let page: MoflayListPage = super::json_body(body)?;
    let data = page
        .data
        .ok_or_else(|| Error::Malformed("no \"data\" list".into()))?;
    let mut items = Vec::with_capacity(data.len());
    for t in data {
        let Some(id) = t.id.filter(|id| !id.is_empty()) else {
            continue;
        };
        let mut facts = facts_of(t.status.as_ref(), t.amount.as_ref(), t.currency.as_deref())?;
        facts.currency = t.currency;
        facts.transaction_id = t.receipt_number;
        facts.payment_method = Some("mpesa".into());
        facts.completed_at = t.paid_at;
        items.push(Listed {
            id,
            created_at: t.created_at.as_deref().and_then(crate::clock::parse),
            facts,
        });
    }
    let next_cursor = page
        .meta
        .filter(|m| m.has_next_page == Some(true))
        .and_then(|m| m.cursor);
    Ok(ListPage { items, next_cursor })
}

impl Adapter for Moflay {
    fn status_request(
        &self,
        client: &reqwest::Client,
        session_id: &str,
    ) -> reqwest::RequestBuilder {
        let url = self.status.with(session_id);
        super::json_get(
            client,
            url,
            &[("authorization", "Bearer ", self.api_key.as_ref())],
        ) // [docs]
    }

    fn endpoint(&self) -> String {
        self.status.endpoint()
    }

    /// `GET /v1/transactions?limit=N[&cursor=C]`, newest first [docs]. No `statuses[]` filter:
    /// it has no `canceled` [docs], and a sweep must see cancellations too.
    fn list_request(
        &self,
        client: &reqwest::Client,
        ask: ListAsk<'_>,
    ) -> Option<reqwest::RequestBuilder> {
        let mut url = self.list.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &ask.limit.clamp(1, LIST_LIMIT).to_string());
            if let Some(c) = ask.cursor {
                q.append_pair("cursor", c);
            }
        }
        Some(super::json_get(
            client,
            url,
            &[("authorization", "Bearer ", self.api_key.as_ref())],
        ))
    }

    fn parse_list(&self, body: &[u8], _ask: ListAsk<'_>) -> Result<ListPage, Error> {
        parse_list(body)
    }

    fn parse(&self, session_id: &str, body: &[u8]) -> Result<ProviderFacts, Error> {
        let p: MoflayPayment = super::json_body(body)?;
        if p.id.is_none() && p.status.is_none() {
            return Err(Error::Malformed("no payment in the answer".into()));
        }
        let ours = [p.id.as_deref(), p.transaction_id.as_deref()];
        if ours.iter().any(Option::is_some) && !ours.contains(&Some(session_id)) {
            return Err(Error::Malformed(format!(
                "answer is for another payment ({})",
                clip(p.id.as_deref().unwrap_or_default())
            )));
        }
        let mut f = facts_of(p.status.as_ref(), p.amount.as_ref(), p.currency.as_deref())?;
        f.currency = p.currency;
        f.reference = p.account_reference;
        // The other of its two ids [seed 003]: the session is named by one, the list by
        // `transactionId` (issue 28), so the ledger keeps the other as `provider_ref`.
        f.provider_ref = if p.transaction_id.as_deref() == Some(session_id) {
            p.id.clone()
        } else {
            p.transaction_id.clone()
        };
        f.transaction_id = p.receipt_number.or(p.transaction_id);
        f.payment_method = Some("mpesa".into()); // M-Pesa Express is Moflay's only method [seed 003]
        f.completed_at = p.completed_at;
        Ok(f)
    }

    fn classify_error(&self, status: StatusCode, body: &[u8]) -> Option<Result<Answer, Error>> {
        let code = serde_json::from_slice::<MoflayErrorEnvelope>(body)
            .ok()
            .and_then(|e| e.error.code);
        match (status.as_u16(), code.as_deref()) {
            (404, Some("not_found")) => Some(Ok(Answer::NotFound)), // [docs]
            // A 404 without Moflay's own `not_found` (a proxy, a wrong base_url) says nothing
            // about the payment: it must not count toward expiry.
            (404, _) => Some(Err(Error::Status(404))),
            // missing_api_key 401, invalid_api_key 403 [docs]; invalid_access 422: the key lacks
            // the transactions.read permission (docs.moflay.com/api-reference/authentication).
            (401 | 403, _) | (422, Some("invalid_access")) => {
                Some(Err(Error::Unauthorized(status.as_u16())))
            }
            (429, _) => Some(Err(Error::RateLimited { retry_after: None })), // rate_limit_exceeded [docs]
            _ => None,
        }
    }

    /// `X-RateLimit-Reset`: when the current window resets, in UTC epoch seconds
    /// (docs.moflay.com/api-reference/rate-limit). Capped at a day like `Retry-After`.
    fn rate_limit_reset(
        &self,
        headers: &reqwest::header::HeaderMap,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<std::time::Duration> {
        let epoch: i64 = headers
            .get("x-ratelimit-reset")?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let at = chrono::DateTime::from_timestamp(epoch, 0)?;
        Some(
            (at - now)
                .to_std()
                .unwrap_or_default()
                .min(std::time::Duration::from_secs(86_400)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list page of docs.moflay.com, verbatim: one completed transaction of 1000 minor
    /// units of KES, its receipt, and the cursor of a next page. Expected values by hand.
    #[test]
    fn the_documented_list_page_reads_as_answers() {
        let body = include_bytes!("../../tests/fixtures/lists/moflay/docs-list-transactions.json");
        let page = parse_list(body).unwrap();
        assert_eq!(page.next_cursor.as_deref(), Some("eyJpZCI6IjEyMyJ9"));
        assert_eq!(page.items.len(), 1);
        let item = &page.items[0];
        assert_eq!(item.id, "trxn_ABC123DEF456GHI");
        assert_eq!(
            item.created_at.map(crate::clock::format).as_deref(),
            Some("2024-12-19T10:25:00.000Z")
        );
        assert_eq!(item.facts.mapped, Mapped::Paid);
        assert_eq!(item.facts.amount.map(|a| a.to_string()).as_deref(), Some("10.00"));
        assert_eq!(item.facts.currency.as_deref(), Some("KES"));
        assert_eq!(item.facts.transaction_id.as_deref(), Some("QMF7MBB5ED"));
        assert_eq!(item.facts.reference, None, "a list item carries no accountReference");
        assert_eq!(item.facts.completed_at.as_deref(), Some("2024-12-19T10:32:00.000Z"));
    }

    #[test]
    fn list_items_map_as_answers_and_pages_end() {
        let page = parse_list(
            br#"{"data":[{"id":"trxn_1","status":"refunded","amount":500,"currency":"KES"},
                        {"id":"trxn_2","status":"unknown"},
                        {"status":"completed","amount":1},
                        {"id":"trxn_3","status":"pending","amount":250,"currency":"XYZ"}],
                "meta":{"cursor":"c2","hasNextPage":false}}"#,
        )
        .unwrap();
        assert_eq!(page.next_cursor, None, "no next page");
        let ids: Vec<&str> = page.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["trxn_1", "trxn_2", "trxn_3"], "an item with no id names nothing");
        assert_eq!(page.items[0].facts.mapped, Mapped::Unrecognised, "refunded is not in the table");
        assert_eq!(page.items[1].facts.mapped, Mapped::Unsure);
        assert!(page.items[2].facts.amount_problem.is_some(), "unknown digits");
        assert!(matches!(parse_list(br#"{"meta":{}}"#), Err(Error::Malformed(_))));
    }
    use std::str::FromStr;

    fn adapter() -> Moflay {
        Moflay {
            status: StatusUrl::new(
                &reqwest::Url::parse("http://127.0.0.1:1").unwrap(),
                STATUS_PATH,
            ),
            list: reqwest::Url::parse("http://127.0.0.1:1/v1/transactions").unwrap(),
            api_key: None,
        }
    }

    fn body(status: &str, amount: &str, currency: &str) -> String {
        format!(
            r#"{{"id":"pay_1","transactionId":"trxn_1","status":"{status}","statusDetail":"x","amount":{amount},
            "currency":"{currency}","accountReference":"ORDER1","receiptNumber":"RCP1","phoneNumber":"254712345678",
            "createdAt":"2024-12-19T10:25:00.000Z","completedAt":"2024-12-19T10:26:00.000Z"}}"#
        )
    }

    #[test]
    fn every_status_maps_as_documented() {
        for (word, want) in [
            ("initiating", Mapped::Pending),
            ("pending", Mapped::Pending),
            ("completed", Mapped::Paid),
            ("failed", Mapped::Failed),
            ("canceled", Mapped::Cancelled),
            ("cancelled", Mapped::Unrecognised),
            ("unknown", Mapped::Unsure),
            ("succeeded", Mapped::Unrecognised),
        ] {
            let f = adapter()
                .parse("pay_1", body(word, "1000", "KES").as_bytes())
                .unwrap();
            assert_eq!(f.mapped, want, "{word}");
        }
        let f = adapter()
            .parse("pay_1", body("unknown", "1000", "KES").as_bytes())
            .unwrap();
        assert!(f.warning.unwrap().contains("a person must look"));
    }

    #[test]
    fn minor_units_become_major_with_the_currency_digits() {
        let f = adapter()
            .parse("trxn_1", body("completed", "1050", "KES").as_bytes())
            .unwrap();
        assert_eq!(f.amount, Some(Decimal::from_str("10.50").unwrap()));
        assert_eq!(f.currency.as_deref(), Some("KES"));
        assert_eq!(f.reference.as_deref(), Some("ORDER1"));
        assert_eq!(f.transaction_id.as_deref(), Some("RCP1"));
        let f = adapter()
            .parse("pay_1", body("completed", "1050", "UGX").as_bytes())
            .unwrap();
        assert_eq!(f.amount, Some(Decimal::from(1050)));
        let f = adapter()
            .parse("pay_1", body("completed", "1050", "XYZ").as_bytes())
            .unwrap();
        assert_eq!(f.amount, None);
        assert!(f.amount_problem.unwrap().contains("XYZ"));
        assert!(matches!(
            adapter().parse("pay_2", body("completed", "1", "KES").as_bytes()),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn the_error_envelope_is_read() {
        let a = adapter();
        let env =
            |code: &str| format!(r#"{{"error":{{"status":404,"code":"{code}","message":"m"}}}}"#);
        assert_eq!(
            a.classify_error(StatusCode::NOT_FOUND, env("not_found").as_bytes()),
            Some(Ok(Answer::NotFound))
        );
        assert_eq!(
            a.classify_error(StatusCode::NOT_FOUND, b"<html>nginx</html>"),
            Some(Err(Error::Status(404)))
        );
        assert_eq!(
            a.classify_error(StatusCode::FORBIDDEN, env("invalid_api_key").as_bytes()),
            Some(Err(Error::Unauthorized(403)))
        );
        assert_eq!(
            a.classify_error(StatusCode::INTERNAL_SERVER_ERROR, b""),
            None
        );
    }
}
