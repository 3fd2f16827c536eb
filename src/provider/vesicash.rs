//! Vesicash, non-checkout mobile money (seed 004, docs/providers.md "vesicash").
//!
//! Status: `GET {base_url}/v1/payment/{payment_reference}` ("get payment details") with the
//! headers `public-key` and `secret-key` `[docs]`; the reference is what `POST /v1/payment/init`
//! returned `[seed 004]`. The base URL of this API is unpublished: `base_url` is required
//! `[assumed]`. Inbound webhooks (`mor-signature`) are only ever a hint to check now `[docs]`.

use serde::Deserialize;
use serde_json::Value;

use super::kinds::{CallbackSignature, CallbackSpec, KindSpec, ListSpec, ListUse, SecretNeeds};
use super::{
    Adapter, Error, ListAsk, ListPage, Listed, Mapped, ProviderConfig, ProviderFacts, StatusUrl, clip,
};
use crate::secret::Secret;

/// What the configuration needs to know of this kind (docs/providers.md).
pub const SPEC: KindSpec = KindSpec {
    kind: "vesicash",
    default_base_url: None,         // [assumed]: unpublished for this API
    default_rate_limits: &["10/s"], // [assumed]: none published
    sandbox_rate_limits: None,
    // A mobile-money push prompt [seed 004]: dense for the first two minutes, then sparse;
    // Vesicash sends a webhook on every status change [seed 004], which as a hint makes most
    // of these checks unneeded.
    default_schedule: &[
        "10s", "10s", "10s", "10s", "10s", "10s", "15s", "15s", "30s", "1m", "2m", "5m", "15m",
        "1h",
    ],
    // `mor-signature`: HMAC-SHA256 of the raw body with the webhook secret
    // (docs.vesicash.com/generate-webhook-secret) [docs]; an older page signs another string
    // [docs, two versions disagree]. The event body is not published: the reference is looked
    // for where the payment answer keeps it [assumed].
    callback: CallbackSpec {
        answer_pointer: None,
        signature: Some(CallbackSignature::HmacHex("mor-signature")),
        id_pointers: &[
            "/data/payment_reference",
            "/data/reference",
            "/payment_reference",
            "/reference",
        ],
    },
    // "Get payments for business": `GET /v1/payment/?page&limit&reference&from&to`, items with
    // the status answer's fields and the `reference` init returned
    // (docs.vesicash.com/api-documentation/payment/get-payments-for-business) [docs]. Decided
    // from the list by default: it carries what the status answer carries (status, amount,
    // currency; neither has a merchant reference). Its order and the most a page holds are not
    // stated: asked `from` the sweep's horizon [docs: "the timestamp of the starting date",
    // seconds assumed], page after page until a short one; 100 a page, 10 once refused
    // [assumed].
    list: Some(ListSpec {
        default_use: ListUse::Decide,
        id_prefix: "",
        page_limits: (100, 10),
        filters_by_time: true,
    }),
    secrets: SecretNeeds::KeyPair,
    keys: &[
        "public_key_env",
        "secret_key_env",
        "webhook_secret_env",
        "list",
        "list_window",
        "unmatched_after",
    ],
};


const STATUS_PATH: &[&str] = &["v1", "payment"]; // [docs]

pub struct Vesicash {
    status: StatusUrl,
    public_key: Option<Secret>,
    secret_key: Option<Secret>,
}

impl Vesicash {
    pub fn new(cfg: &ProviderConfig) -> Self {
        Self {
            status: StatusUrl::new(&cfg.base_url, STATUS_PATH),
            public_key: cfg.public_key.clone(),
            secret_key: cfg.secret_key.clone(),
        }
    }
}

/// `{"status", "code", "message", "data": {…}}` `[docs]`: top-level `status` says whether the
/// request could be processed (`"success"` in the get-payment-details example).
#[derive(Debug, Deserialize)]
struct VesicashEnvelope {
    status: Option<Value>,
    data: Option<VesicashPayment>,
}

#[derive(Debug, Deserialize)]
struct VesicashPayment {
    /// `""` (a string) in the documented example `[docs]`.
    id: Option<Value>,
    /// A JSON number with no unit stated (`143` in the example): major units `[assumed]`, read
    /// as a decimal from its text.
    amount: Option<Value>,
    status: Option<Value>,
    currency: Option<String>,
    /// `method`: `"mobilemoney"` in the example `[docs]`.
    method: Option<String>,
    /// The payment reference init returned: in a list item, what names the session (`""` in
    /// the get-payment example, so never relied on there) `[docs]`.
    reference: Option<String>,
    created_at: Option<String>,
}

/// A page of the list: the envelope with `data` an array `[docs]`.
#[derive(Debug, Deserialize)]
struct VesicashList {
    status: Option<Value>,
    data: Option<Vec<VesicashPayment>>,
}

/// A payment's status, amount, currency, id and method, from a status answer or a list item
/// alike. `reference` is not read here: in the status answer it is `""` in the documented
/// example, and it is never the merchant's order reference.
fn facts_of(d: VesicashPayment) -> Result<ProviderFacts, Error> {
    let (raw, word) = super::json_word(d.status.as_ref());
    let mut f = ProviderFacts::new(raw, word.map_or(Mapped::Unrecognised, map_status));
    f.amount = super::json_decimal(d.amount.as_ref(), "data.amount")?;
    f.currency = d.currency;
    // No merchant reference is returned [docs]: only amount and currency are compared.
    f.reference = None;
    f.transaction_id = d
        .id
        .and_then(|id| match id {
            Value::String(s) => Some(s),
            Value::Null => None,
            other => Some(other.to_string()),
        })
        .filter(|id| !id.is_empty());
    f.payment_method = d.method.filter(|m| !m.is_empty());
    Ok(f)
}

/// The envelope's own `status`: a request Vesicash says it could not process is no answer.
fn envelope_ok(status: Option<&Value>) -> Result<(), Error> {
    match status {
        None => Ok(()),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("success") || s.eq_ignore_ascii_case("ok") => {
            Ok(())
        }
        Some(other) => {
            let (raw, _) = super::json_word(Some(other));
            Err(Error::Rejected(format!("status {:?}", clip(&raw))))
        }
    }
}

fn map_status(word: &str) -> Mapped {
    match word.to_ascii_lowercase().as_str() {
        "pending" => Mapped::Pending, // [docs]; [seed 004] names success, failed, pending
        "success" => Mapped::Paid,    // [seed 004]
        "failed" => Mapped::Failed,   // [seed 004]
        _ => Mapped::Unrecognised,
    }
}

impl Adapter for Vesicash {
    fn status_request(
        &self,
        client: &reqwest::Client,
        session_id: &str,
    ) -> reqwest::RequestBuilder {
        let url = self.status.with(session_id);
        let keys = [
            ("public-key", "", self.public_key.as_ref()),
            ("secret-key", "", self.secret_key.as_ref()),
        ]; // [docs]
        super::json_get(client, url, &keys)
    }

    fn endpoint(&self) -> String {
        self.status.endpoint()
    }

    fn parse(&self, _session_id: &str, body: &[u8]) -> Result<ProviderFacts, Error> {
        let env: VesicashEnvelope = super::json_body(body)?;
        envelope_ok(env.status.as_ref())?;
        let d = env
            .data
            .ok_or_else(|| Error::Malformed("no \"data\" object".into()))?;
        facts_of(d)
    }

    /// `GET {base_url}/v1/payment/?page=N&limit=L&from=SECONDS` with both keys [docs].
    fn list_request(
        &self,
        client: &reqwest::Client,
        ask: ListAsk<'_>,
    ) -> Option<reqwest::RequestBuilder> {
        let mut url = self.status.with("");
        url.query_pairs_mut()
            .append_pair("page", ask.cursor.unwrap_or("1"))
            .append_pair("limit", &ask.limit.max(1).to_string())
            .append_pair("from", &ask.since.timestamp().max(0).to_string());
        let keys = [
            ("public-key", "", self.public_key.as_ref()),
            ("secret-key", "", self.secret_key.as_ref()),
        ];
        Some(super::json_get(client, url, &keys))
    }

    /// A page of payments: each named by its `reference`; a page as long as asked means
    /// another may follow (the pagination object's fields are not shown whole [docs]).
    fn parse_list(&self, body: &[u8], ask: ListAsk<'_>) -> Result<ListPage, Error> {
        let page: VesicashList = super::json_body(body)?;
        envelope_ok(page.status.as_ref())?;
        let data = page
            .data
            .ok_or_else(|| Error::Malformed("no \"data\" list".into()))?;
        let full = data.len() >= ask.limit as usize;
        let mut items = Vec::with_capacity(data.len());
        for mut d in data {
            let Some(reference) = d.reference.take().filter(|r| !r.is_empty()) else {
                continue;
            };
            let created_at = d.created_at.take().as_deref().and_then(crate::clock::parse);
            items.push(Listed {
                id: reference,
                created_at,
                facts: facts_of(d)?,
            });
        }
        let page_number: u32 = ask.cursor.and_then(|c| c.parse().ok()).unwrap_or(1);
        Ok(ListPage {
            items,
            next_cursor: full.then(|| (page_number + 1).to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn adapter() -> Vesicash {
        Vesicash {
            status: StatusUrl::new(
                &reqwest::Url::parse("http://127.0.0.1:1/base").unwrap(),
                STATUS_PATH,
            ),
            public_key: None,
            secret_key: None,
        }
    }

    #[test]
    fn every_status_maps_and_amounts_stay_decimal() {
        for (word, want) in [
            ("pending", Mapped::Pending),
            ("success", Mapped::Paid),
            ("SUCCESS", Mapped::Paid),
            ("failed", Mapped::Failed),
            ("successful", Mapped::Unrecognised),
            ("cancelled", Mapped::Unrecognised),
        ] {
            let body = format!(
                r#"{{"status":"ok","code":200,"message":"m","data":{{"id":77,"amount":100.10,"status":"{word}",
                "currency":"GHS","reference":"VS_1","method":"mobile_money","created_at":"2025-01-01"}}}}"#
            );
            let f = adapter().parse("VS_1", body.as_bytes()).unwrap();
            assert_eq!(f.mapped, want, "{word}");
            assert_eq!(f.amount.unwrap().to_string(), "100.10");
            assert_eq!(f.amount, Some(Decimal::from_str("100.1").unwrap()));
            assert_eq!(f.reference, None);
            assert_eq!(f.transaction_id.as_deref(), Some("77"));
        }
        // `data.reference` is not the id asked (or is empty, as documented): still an answer.
        let other = r#"{"data":{"status":"success","reference":"VS_2"}}"#;
        assert_eq!(
            adapter().parse("VS_1", other.as_bytes()).unwrap().mapped,
            Mapped::Paid
        );
        let refused = r#"{"status":"error","data":{"status":"success"}}"#;
        assert!(matches!(
            adapter().parse("VS_1", refused.as_bytes()),
            Err(Error::Rejected(_))
        ));
    }

    /// The first item of the list example of docs.vesicash.com ("get payments for business"),
    /// verbatim; the stored page is cut after it, before the pagination object, whose fields
    /// are not shown whole. Expected values by hand.
    #[test]
    fn the_documented_list_item_reads_as_an_answer() {
        let body =
            include_bytes!("../../tests/fixtures/lists/vesicash/docs-get-payments-for-business.json");
        let ask = ListAsk {
            cursor: None,
            limit: 100,
            since: crate::clock::parse("2024-08-21T00:00:00.000Z").unwrap(),
        };
        let page = adapter().parse_list(body, ask).unwrap();
        assert_eq!(page.items.len(), 1);
        let item = &page.items[0];
        assert_eq!(item.id, "PY_c77f7bff21514bdf9dfe9f1b2");
        assert_eq!(
            item.created_at.map(crate::clock::format).as_deref(),
            Some("2024-08-21T12:38:56.704Z")
        );
        assert_eq!(item.facts.mapped, Mapped::Pending);
        assert_eq!(item.facts.amount, Some(Decimal::from(1)));
        assert_eq!(item.facts.currency.as_deref(), Some("ZMW"));
        assert_eq!(
            item.facts.transaction_id.as_deref(),
            Some("20a72fd0-a3a3-4c5d-9fea-e3a7e02b26a5")
        );
        assert_eq!(page.next_cursor, None, "one item of 100 asked: the last page");
        // A full page asks for the next by number; an item without a reference names nothing.
        let full = r#"{"status":"success","data":[{"reference":"PY_1","status":"success","amount":5},{"reference":"","status":"success"}]}"#;
        let ask = ListAsk {
            cursor: Some("3"),
            limit: 2,
            ..ask
        };
        let page = adapter().parse_list(full.as_bytes(), ask).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.next_cursor.as_deref(), Some("4"));
        let req = adapter()
            .list_request(&reqwest::Client::new(), ask)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:1/base/v1/payment/?page=3&limit=2&from=1724198400"
        );
    }

    #[test]
    fn the_path_keeps_the_base() {
        let req = adapter()
            .status_request(&reqwest::Client::new(), "VS 1")
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:1/base/v1/payment/VS%201"
        );
    }
}
