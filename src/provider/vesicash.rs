//! Vesicash, non-checkout mobile money (seed 004, docs/providers.md "vesicash").
//!
//! Status: `GET {base_url}/v1/payment/{payment_reference}` ("get payment details") with the
//! headers `public-key` and `secret-key` `[docs]`; the reference is what `POST /v1/payment/init`
//! returned `[seed 004]`. The base URL of this API is unpublished: `base_url` is required
//! `[assumed]`. Inbound webhooks (`mor-signature`) are only ever a hint to check now `[docs]`.

use serde::Deserialize;
use serde_json::Value;

use super::kinds::{CallbackSignature, CallbackSpec, KindSpec, SecretNeeds};
use super::{Adapter, Error, Mapped, ProviderFacts, StatusUrl, clip, ProviderConfig};
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
    list: None,
    secrets: SecretNeeds::KeyPair,
    keys: &["public_key_env", "secret_key_env", "webhook_secret_env"],
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
    // `data.reference` is not read: it is `""` in the documented example and cannot be relied on
    // to echo the payment reference asked about, and it is never the merchant's order reference.
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
        // A request Vesicash says it could not process is no answer about the payment.
        match env.status.as_ref() {
            None => {}
            Some(Value::String(s))
                if s.eq_ignore_ascii_case("success") || s.eq_ignore_ascii_case("ok") => {}
            Some(other) => {
                let (raw, _) = super::json_word(Some(other));
                return Err(Error::Rejected(format!("status {:?}", clip(&raw))));
            }
        }
        let d = env
            .data
            .ok_or_else(|| Error::Malformed("no \"data\" object".into()))?;
        let (raw, word) = super::json_word(d.status.as_ref());
        let mut f = ProviderFacts::new(raw, word.map_or(Mapped::Unrecognised, map_status));
        f.amount = super::json_decimal(d.amount.as_ref(), "data.amount")?;
        f.currency = d.currency;
        // No merchant reference is returned [docs]: only amount and currency are compared.
        f.reference = None;
        f.transaction_id = d.id.and_then(|id| match id {
            Value::String(s) => Some(s),
            Value::Null => None,
            other => Some(other.to_string()),
        });
        f.transaction_id = f.transaction_id.filter(|id| !id.is_empty());
        f.payment_method = d.method.filter(|m| !m.is_empty());
        Ok(f)
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
