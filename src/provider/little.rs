//! Little Pay (Little Africa), mobile-money intents (seed 001, docs/providers.md "little").
//!
//! Status: `GET {base_url}/api/payments-v2/{key}` with `X-API-KEY` `[seed 001]`; `{key}` is the
//! intent reference or the merchant `key` `[seed 001]`. `?longPoll=true` holds the call until the
//! status changes `[seed 001]`: with `long_poll = true` one held call replaces many short ones,
//! and a held call that ends on our side (`long_poll_timeout`) is a pending answer.

use serde::Deserialize;
use serde_json::Value;

use super::kinds::{CallbackSignature, CallbackSpec, KindSpec, SecretNeeds};
use super::{Adapter, Error, Mapped, ProviderFacts, StatusUrl, ProviderConfig};
use crate::secret::Secret;

/// What the configuration needs to know of this kind (docs/providers.md).
pub const SPEC: KindSpec = KindSpec {
    kind: "little",
    default_base_url: Some("https://pay.little.africa"), // [seed 001]
    default_rate_limits: &["10/s"],                      // [assumed]: none published
    sandbox_rate_limits: None,
    // Mobile money (M-Pesa STK) is decided in the first two minutes: vendors poll every 8 s
    // for up to 96 s [3rd-party]; then sparser until the intent expires (30 min by default
    // [docs]), then hourly.
    default_schedule: &[
        "10s", "10s", "10s", "10s", "10s", "10s", "10s", "10s", "10s", "10s", "10s", "10s", "30s",
        "1m", "2m", "5m", "10m", "15m", "1h",
    ],
    // Callbacks are `{reference, status (COMPLETED|FAILED), payload, amount, key, currency,
    // provider, date}`, RSA-SHA256 signed: `X-LittlePay-Signature` (base64) over
    // `X-LittlePay-Timestamp + "." + JSON.stringify(payload)`, with the key Little publishes
    // (pay.little.africa/documentation/docs/rest-api/payment-callback) [docs]. With
    // `webhook_public_key` set, a callback that verifies is decided as a status answer (its
    // amount and currency compared); unset, callbacks are hints.
    callback: CallbackSpec {
        answer_pointer: Some(""),
        signature: Some(CallbackSignature::RsaSha256 {
            signature: "x-littlepay-signature",
            timestamp: "x-littlepay-timestamp",
            published: PUBLISHED_KEY,
        }),
        id_pointers: &["/reference", "/key", "/data/reference", "/data/key"],
    },
    list: None, // none documented [docs]
    secrets: SecretNeeds::ApiKey,
    keys: &[
        "api_key_env",
        "long_poll",
        "long_poll_timeout",
        "webhook_public_key",
    ],
};

/// The public key Little publishes for its callbacks' signatures
/// (pay.little.africa/documentation/docs/rest-api/payment-callback) [docs].
pub const PUBLISHED_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAlU1L1fPzOO9Y3qFsP9K+
0iqCrN9xpDf/SG7a9O2Ma8mJSpvxpBq2lyjP0ncJiBCqgjMEIQIqWr4fbG7gErJp
MuKobiuGo9zS+CpjCY9tJxQgfx7fAGkL1sKN0E1UR9NqQmIAOEfPLCEbIRDC6n0F
1wpTEPiixmdAsJKm1aWlftubOBQjMlJucnksoXK7LHd5Tc6Pne6UhFNgt24Nt2Tu
zYKeWVtqnlP3cw66FVytrPsynQuVN4s7iQai0HxD4loEuX19hrT2AAFZT5P6xRac
wzb/eBPp3yAa/96JFkG3AcUVrjtHlltNWQ9aWvbA9Qx2BNEEmhkzdWfN/ARwv4Wh
NQIDAQAB
-----END PUBLIC KEY-----
";


const STATUS_PATH: &[&str] = &["api", "payments-v2"]; // [seed 001]

pub struct Little {
    status: StatusUrl,
    api_key: Option<Secret>,
    long_poll: bool,
}

impl Little {
    pub fn new(cfg: &ProviderConfig) -> Self {
        Self {
            status: StatusUrl::new(&cfg.base_url, STATUS_PATH),
            api_key: cfg.api_key.clone(),
            long_poll: cfg.long_poll,
        }
    }
}

/// `{"date", "data": {…}}` `[seed 001]`; only whitelisted fields are read.
#[derive(Debug, Deserialize)]
struct LittleEnvelope {
    data: Option<LittleIntent>,
}

#[derive(Debug, Deserialize)]
struct LittleIntent {
    reference: Option<String>,
    status: Option<Value>,
    /// Major units `[seed 001]` (the seed shows `1` for KES 1).
    amount: Option<Value>,
    payment: Option<LittlePayment>,
    /// The merchant's key, echoing the ledger's reference `[seed 001]`; `""` when unset.
    key: Option<String>,
    /// The long-poll answer carries amount and currency here instead `[seed 001]`.
    meta: Option<LittleMeta>,
}

#[derive(Debug, Deserialize)]
struct LittleMeta {
    amount: Option<Value>,
    currency: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LittlePayment {
    provider: Option<String>,
}

fn map_status(word: &str) -> Mapped {
    match word.to_ascii_uppercase().as_str() {
        "PENDING" => Mapped::Pending, // [seed 001]
        "COMPLETED" => Mapped::Paid,  // [seed 001]
        "FAILED" => Mapped::Failed,   // [seed 001]
        _ => Mapped::Unrecognised,
    }
}

impl Adapter for Little {
    fn status_request(
        &self,
        client: &reqwest::Client,
        session_id: &str,
    ) -> reqwest::RequestBuilder {
        let mut url = self.status.with(session_id);
        if self.long_poll {
            url.query_pairs_mut().append_pair("longPoll", "true"); // [seed 001]
        }
        super::json_get(client, url, &[("X-API-KEY", "", self.api_key.as_ref())]) // [seed 001]
    }

    fn plain_status_request(
        &self,
        client: &reqwest::Client,
        session_id: &str,
    ) -> reqwest::RequestBuilder {
        let url = self.status.with(session_id);
        super::json_get(client, url, &[("X-API-KEY", "", self.api_key.as_ref())]) // [seed 001]
    }

    fn endpoint(&self) -> String {
        self.status.endpoint()
    }

    fn parse(&self, _session_id: &str, body: &[u8]) -> Result<ProviderFacts, Error> {
        let env: LittleEnvelope = super::json_body(body)?;
        let d = env
            .data
            .ok_or_else(|| Error::Malformed("no \"data\" object".into()))?;
        // The id asked may be the intent reference or the merchant key, so `data.reference` is
        // not required to equal it.
        let (raw, word) = super::json_word(d.status.as_ref());
        let mut f = ProviderFacts::new(raw, word.map_or(Mapped::Unrecognised, map_status));
        let (meta_amount, meta_currency) = d.meta.map_or((None, None), |m| (m.amount, m.currency));
        f.amount = match d.amount.as_ref() {
            Some(a) if !a.is_null() => super::json_decimal(Some(a), "data.amount")?,
            _ => super::json_decimal(meta_amount.as_ref(), "data.meta.amount")?,
        };
        // The status body has no currency; the long-poll answer's `meta.currency` is compared
        // when it is there and not empty [seed 001].
        f.currency = meta_currency.filter(|c| !c.is_empty());
        f.reference = d.key.filter(|k| !k.is_empty());
        f.transaction_id = d.reference;
        // Compared exactly: no document says Little or M-Pesa rounds the amount (an earlier
        // reading said so and was withdrawn), so 100.49 in the ledger against 100 is underpaid.
        f.payment_method = d.payment.and_then(|p| p.provider);
        // No completion time in either body [seed 001].
        Ok(f)
    }

    fn long_polls(&self) -> bool {
        self.long_poll
    }

    /// A callback's body: the intent's fields at the top level, with its `currency` [docs].
    fn parse_callback(&self, session_id: &str, body: &[u8]) -> Result<ProviderFacts, Error> {
        let c: LittleCallback = super::json_body(body)?;
        let intent = serde_json::json!({"data": {
            "reference": c.reference, "status": c.status, "amount": c.amount, "key": c.key,
            "payment": {"provider": c.provider}}});
        let mut f = self.parse(session_id, intent.to_string().as_bytes())?;
        f.currency = c.currency.filter(|c| !c.is_empty());
        f.completed_at = c.date;
        Ok(f)
    }
}

/// The whitelisted fields of a callback [docs].
#[derive(Debug, Deserialize)]
struct LittleCallback {
    reference: Option<String>,
    status: Option<Value>,
    amount: Option<Value>,
    key: Option<String>,
    currency: Option<String>,
    provider: Option<String>,
    date: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn adapter() -> Little {
        Little {
            status: StatusUrl::new(
                &reqwest::Url::parse("http://127.0.0.1:1").unwrap(),
                STATUS_PATH,
            ),
            api_key: None,
            long_poll: false,
        }
    }

    /// The seed's own example answer.
    const SEED: &str = r#"{"date":"2024-05-13T08:26:18.719Z","data":{"reference":"1cbfffbc-b365-45f6-9e5d-13e445c125cd",
        "status":"COMPLETED","payload":{"billingAddress":{"firstName":""}},"amount":1,
        "payment":{"provider":"MPESA","details":null},"key":"","attempts":[{"reference":"1cbfffbc","provider":"MPESA","status":"COMPLETED"}]}}"#;

    #[test]
    fn the_seed_answer_parses() {
        let f = adapter()
            .parse("1cbfffbc-b365-45f6-9e5d-13e445c125cd", SEED.as_bytes())
            .unwrap();
        assert_eq!(f.mapped, Mapped::Paid);
        assert_eq!(f.amount, Some(Decimal::from(1)));
        assert_eq!(f.reference, None, "an empty key is no reference");
        assert_eq!(f.payment_method.as_deref(), Some("MPESA"));
    }

    #[test]
    fn every_status_maps_as_documented() {
        for (word, want) in [
            ("PENDING", Mapped::Pending),
            ("COMPLETED", Mapped::Paid),
            ("completed", Mapped::Paid),
            ("FAILED", Mapped::Failed),
            ("CANCELLED", Mapped::Unrecognised),
            ("SUCCESS", Mapped::Unrecognised),
        ] {
            let body = format!(
                r#"{{"data":{{"status":"{word}","amount":10,"key":"ORDER1","payment":{{"provider":"AIRTEL"}}}}}}"#
            );
            let f = adapter().parse("x", body.as_bytes()).unwrap();
            assert_eq!(f.mapped, want, "{word}");
            assert_eq!(f.reference.as_deref(), Some("ORDER1"));
        }
        assert!(matches!(
            adapter().parse("x", b"{}"),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn long_poll_asks_for_it() {
        let a = Little {
            long_poll: true,
            ..adapter()
        };
        let req = a
            .status_request(&reqwest::Client::new(), "a/b")
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:1/api/payments-v2/a%2Fb?longPoll=true"
        );
    }
}
