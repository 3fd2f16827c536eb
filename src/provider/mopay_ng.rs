//! Mopay Nigeria (seed 002, docs/providers.md "mopay_ng").
//!
//! Requests go to `{base_url}/?req=ENDPOINT` `[seed 002]` with `MPY-SECUREKEY` (public key),
//! `MPY-TIMESTAMP` (unix seconds) and `MPY-REQSIGNAL` `[seed 002]`: lowercase hex
//! HMAC-SHA512, keyed with the secret, over the compact JSON `{"timestamp":"<same string>"}`
//! `[docs]`. Answers come in the `REQUEST`/`DATA`/`ERRORS` envelope `[seed 002]`.
//!
//! **No merchant payment-status endpoint is published** `[docs]`: the endpoint name, the query
//! parameter carrying the id, the JSON pointers of status/amount/reference/currency and the status
//! table all come from the config `[assumed]`. Without `status_endpoint` no call is made; without
//! a status table every answer stays PENDING; `check-config` says which.

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use sha2::Sha512;

use super::kinds::{CallbackSpec, KindSpec, SecretNeeds};
use super::{Adapter, Answer, Error, Mapped, ProviderFacts, clip, secret_header, ProviderConfig};
use super::MopayNgConfig;
use crate::secret::Secret;

/// What the configuration needs to know of this kind (docs/providers.md).
pub const SPEC: KindSpec = KindSpec {
    kind: "mopay_ng",
    default_base_url: Some("https://service.mopay-ng.com"), // [seed 002]
    default_rate_limits: &["100/min"], // 100 requests per minute per key [docs]
    sandbox_rate_limits: None,
    // [assumed]: no status endpoint or lifetime is published; 100/min [docs] allows a
    // moderately dense start.
    default_schedule: &["15s", "15s", "30s", "1m", "2m", "5m", "15m", "1h"],
    // No callback is published [docs].
    callback: CallbackSpec {
        answer_pointer: None,
        signature: None,
        id_pointers: &[],
    },
    list: None,
    secrets: SecretNeeds::KeyPair,
    keys: &[
        "public_key_env",
        "secret_key_env",
        "status_endpoint",
        "id_param",
        "status_pointer",
        "amount_pointer",
        "reference_pointer",
        "currency_pointer",
        "status_map",
    ],
};


pub struct MopayNg {
    base_url: reqwest::Url,
    public_key: Option<Secret>,
    secret_key: Option<Secret>,
    ng: MopayNgConfig,
}

impl MopayNg {
    pub fn new(cfg: &ProviderConfig) -> Self {
        Self {
            base_url: cfg.base_url.clone(),
            public_key: cfg.public_key.clone(),
            secret_key: cfg.secret_key.clone(),
            ng: cfg.mopay_ng.clone(),
        }
    }
}

/// `MPY-REQSIGNAL` for a timestamp string: lowercase hex HMAC-SHA512 over
/// `{"timestamp":"<timestamp>"}` keyed with the secret `[docs]`.
pub fn signature(secret: &[u8], timestamp: &str) -> String {
    // Invariant: HMAC takes keys of any length.
    let mut mac = Hmac::<Sha512>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(
        serde_json::json!({ "timestamp": timestamp })
            .to_string()
            .as_bytes(),
    );
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One page of a list answer: `DATA` is an array, or `{"result": [...], "pagination": "…"}`
/// whose `pagination` is the unix timestamp of the last item, passed back to get the next page
/// `[seed 002]`. The status lookup reads pointers over the whole envelope instead; this is for
/// list endpoints (a bulk reconciliation later).
#[derive(Debug, PartialEq)]
pub struct Page<'a> {
    pub items: Vec<&'a Value>,
    pub next: Option<String>,
}

/// Reads a page out of an `OK` envelope's `DATA`.
pub fn page(envelope: &Value) -> Page<'_> {
    match envelope.get("DATA") {
        Some(Value::Array(items)) => Page {
            items: items.iter().collect(),
            next: None,
        },
        Some(Value::Object(o)) if o.contains_key("result") => Page {
            items: o
                .get("result")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            next: o.get("pagination").map(|p| match p {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        },
        Some(other @ Value::Object(_)) => Page {
            items: vec![other],
            next: None,
        },
        _ => Page {
            items: vec![],
            next: None,
        },
    }
}

/// An envelope's `ERRORS.CODE` (a number, or a string holding one) mapped onto the shared
/// rules, since the code is an HTTP status `[seed 002]`.
fn error_from_code(code: Option<u16>) -> Result<Answer, Error> {
    match code {
        Some(404) => Ok(Answer::NotFound),
        Some(c @ (401 | 403)) => Err(Error::Unauthorized(c)),
        Some(429) => Err(Error::RateLimited { retry_after: None }),
        Some(c @ 400..=599) => Err(Error::Status(c)),
        _ => Err(Error::Rejected("REQUEST.STATUS FAILED".into())),
    }
}

fn errors_code(envelope: &Value) -> Option<u16> {
    match envelope.pointer("/ERRORS/CODE")? {
        Value::Number(n) => n.as_u64().and_then(|c| u16::try_from(c).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Adapter for MopayNg {
    fn status_request(
        &self,
        client: &reqwest::Client,
        session_id: &str,
    ) -> reqwest::RequestBuilder {
        let mut url = self.base_url.clone();
        url.set_query(None);
        url.query_pairs_mut()
            .append_pair(
                "req",
                self.ng.status_endpoint.as_deref().unwrap_or_default(),
            )
            .append_pair(&self.ng.id_param, session_id);
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut req = client
            .get(url)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json") // [seed 002]
            .header("MPY-TIMESTAMP", timestamp.as_str());
        if let Some(k) = &self.public_key {
            req = req.header("MPY-SECUREKEY", secret_header("", k));
        }
        if let Some(k) = &self.secret_key {
            let mut sig = HeaderValue::from_str(&signature(k.expose().as_bytes(), &timestamp))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            sig.set_sensitive(true);
            req = req.header("MPY-REQSIGNAL", sig);
        }
        req
    }

    fn parse(&self, session_id: &str, body: &[u8]) -> Result<ProviderFacts, Error> {
        match self.parse_answer(session_id, body)? {
            Answer::Found(f) => Ok(f),
            Answer::NotFound => Err(Error::Status(404)),
        }
    }

    fn endpoint(&self) -> String {
        super::endpoint_of(&self.base_url)
    }

    fn parse_answer(&self, _session_id: &str, body: &[u8]) -> Result<Answer, Error> {
        let env: Value = super::json_body(body)?;
        let status = env.pointer("/REQUEST/STATUS").and_then(Value::as_str);
        match status {
            Some(s) if s.eq_ignore_ascii_case("OK") => {}
            Some(s) if s.eq_ignore_ascii_case("FAILED") => {
                return error_from_code(errors_code(&env));
            }
            _ => return Err(Error::Malformed("no REQUEST.STATUS in the envelope".into())),
        }
        let ng = &self.ng;
        let at = |p: &Option<String>| p.as_deref().and_then(|p| env.pointer(p));
        let (raw, word) = match at(&ng.status_pointer) {
            None => ("unconfigured (no status_pointer)".to_string(), None),
            Some(v) => super::json_word(Some(v)),
        };
        let mapped = word
            .and_then(|w| {
                ng.status_map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(w))
            })
            .map_or(Mapped::Unrecognised, |(_, ours)| *ours);
        let mut f = ProviderFacts::new(raw, mapped);
        // Major units [assumed]: the envelope example's `amount: 5000` gives no unit.
        f.amount = super::json_decimal(at(&ng.amount_pointer), "the amount at amount_pointer")?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(clip);
        f.reference = text(at(&ng.reference_pointer));
        f.currency = text(at(&ng.currency_pointer));
        Ok(Answer::Found(f))
    }

    fn classify_error(&self, status: StatusCode, body: &[u8]) -> Option<Result<Answer, Error>> {
        // The envelope's own code, where there is one, agrees with or refines the HTTP status.
        let env: Value = serde_json::from_slice(body).ok()?;
        errors_code(&env)
            .map(|c| error_from_code(Some(c)))
            .or_else(|| (status == StatusCode::NOT_FOUND).then_some(Ok(Answer::NotFound)))
    }

    fn not_ready(&self) -> Option<String> {
        self.ng
            .status_endpoint
            .is_none()
            .then(|| "mopay_ng has no status_endpoint configured (see check-config)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn adapter(map: &[(&str, &str)]) -> MopayNg {
        MopayNg {
            base_url: reqwest::Url::parse("http://127.0.0.1:1").unwrap(),
            public_key: Some(Secret::new("pk_test".into())),
            secret_key: Some(Secret::new("test_secret_key".into())),
            ng: MopayNgConfig {
                status_endpoint: Some("payment_status".into()),
                id_param: "reference".into(),
                status_pointer: Some("/DATA/status".into()),
                amount_pointer: Some("/DATA/amount".into()),
                reference_pointer: Some("/DATA/merchant_reference".into()),
                currency_pointer: Some("/DATA/currency".into()),
                status_map: map
                    .iter()
                    .map(|(k, v)| (k.to_string(), Mapped::from_state_word(v).unwrap()))
                    .collect::<BTreeMap<_, _>>(),
            },
        }
    }

    /// Pinned with a fixed timestamp and secret; the expected value was computed outside this
    /// code (Python's hmac module).
    #[test]
    fn the_signing_recipe_is_pinned() {
        assert_eq!(
            signature(b"test_secret_key", "1700000000"),
            "86d69130a09aeeb83e914c12aff51cf699aad1fb9df2b12588c4b7194366fe815677c2939000c4aeced4309702b4fb3016424339700fada3cda47453f6471552"
        );
    }

    #[test]
    fn requests_carry_the_headers_and_the_id_as_one_value() {
        let req = adapter(&[])
            .status_request(&reqwest::Client::new(), "a&b=c")
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:1/?req=payment_status&reference=a%26b%3Dc"
        );
        let ts = req.headers()["MPY-TIMESTAMP"].to_str().unwrap().to_string();
        assert_eq!(req.headers()["MPY-SECUREKEY"], "pk_test");
        assert_eq!(
            req.headers()["MPY-REQSIGNAL"].to_str().unwrap(),
            signature(b"test_secret_key", &ts)
        );
        assert!(req.headers()["MPY-REQSIGNAL"].is_sensitive());
    }

    #[test]
    fn the_envelope_and_the_configured_table() {
        let a = adapter(&[
            ("SUCCESSFUL", "COMPLETED"),
            ("DECLINED", "FAILED"),
            ("WAITING", "PENDING"),
        ]);
        let ok = |status: &str| {
            format!(
                r#"{{"REQUEST":{{"VERSION":"1.0","ACTION":"payment_status","STATUS":"OK"}},
                "DATA":{{"status":"{status}","amount":"5000.00","merchant_reference":"ORDER1","currency":"NGN"}}}}"#
            )
        };
        let found = |body: String| match a.parse_answer("x", body.as_bytes()).unwrap() {
            Answer::Found(f) => f,
            other => panic!("{other:?}"),
        };
        assert_eq!(found(ok("successful")).mapped, Mapped::Paid);
        assert_eq!(found(ok("DECLINED")).mapped, Mapped::Failed);
        assert_eq!(found(ok("WAITING")).mapped, Mapped::Pending);
        assert_eq!(found(ok("REVERSED")).mapped, Mapped::Unrecognised);
        let f = found(ok("SUCCESSFUL"));
        assert_eq!(f.amount.unwrap().to_string(), "5000.00");
        assert_eq!(f.reference.as_deref(), Some("ORDER1"));
        assert_eq!(f.currency.as_deref(), Some("NGN"));
        // Without a table every answer stays PENDING.
        let bare = adapter(&[]);
        match bare.parse_answer("x", ok("SUCCESSFUL").as_bytes()).unwrap() {
            Answer::Found(f) => assert_eq!(f.mapped, Mapped::Unrecognised),
            other => panic!("{other:?}"),
        }
        let failed = |code: &str| {
            format!(
                r#"{{"REQUEST":{{"VERSION":"1.0","ACTION":"x","STATUS":"FAILED"}},"ERRORS":{{"CODE":{code},"DETAILS":"d"}}}}"#
            )
        };
        assert_eq!(
            a.parse_answer("x", failed("404").as_bytes()),
            Ok(Answer::NotFound)
        );
        assert_eq!(
            a.parse_answer("x", failed("\"401\"").as_bytes()),
            Err(Error::Unauthorized(401))
        );
        assert_eq!(
            a.parse_answer("x", failed("429").as_bytes()),
            Err(Error::RateLimited { retry_after: None })
        );
        assert_eq!(
            a.parse_answer("x", failed("503").as_bytes()),
            Err(Error::Status(503))
        );
        assert!(matches!(
            a.parse_answer("x", b"{}"),
            Err(Error::Malformed(_))
        ));
        assert_eq!(
            a.classify_error(StatusCode::FORBIDDEN, failed("403").as_bytes()),
            Some(Err(Error::Unauthorized(403)))
        );
    }

    #[test]
    fn pages_of_list_answers() {
        let v: Value = serde_json::from_str(
            r#"{"REQUEST":{"STATUS":"OK"},"DATA":{"result":[{"a":1},{"a":2}],"pagination":"123456789001"}}"#,
        )
        .unwrap();
        let p = page(&v);
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.next.as_deref(), Some("123456789001"));
        let v: Value = serde_json::from_str(r#"{"DATA":[{"a":1}]}"#).unwrap();
        assert_eq!(
            page(&v),
            Page {
                items: vec![&v["DATA"][0]],
                next: None
            }
        );
    }

    #[test]
    fn without_an_endpoint_no_call_is_made() {
        let mut a = adapter(&[]);
        a.ng.status_endpoint = None;
        assert!(a.not_ready().unwrap().contains("status_endpoint"));
    }
}
