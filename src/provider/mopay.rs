//! MoPay Lesotho, the primary provider (seed 000, docs/providers.md "mopay").
//!
//! Status: `GET {base_url}/api/external/session/v1/{sessionId}`, `Accept: application/json`
//! `[seed 000]`; `Authorization: Bearer KEY` when a key is configured `[assumed]` (the seed's
//! status example sends none; creation uses Bearer). Only whitelisted fields are parsed: a
//! third-party client reports that the real answer echoes the project's API key `[3rd-party]`.

use serde::Deserialize;
use serde_json::Value;

use super::kinds::{CallbackSpec, KindSpec, SecretNeeds};
use super::{Adapter, Error, Mapped, ProviderFacts, StatusUrl, clip, ProviderConfig};
use crate::secret::Secret;

/// What the configuration needs to know of this kind (docs/providers.md).
pub const SPEC: KindSpec = KindSpec {
    kind: "mopay",
    default_base_url: Some("https://pay.mopay.co.ls"), // [seed 000]
    default_rate_limits: &["10/s"],                    // [assumed]: none published
    sandbox_rate_limits: None,
    // [assumed]: a hosted checkout is decided while the customer is on the page, and MoPay
    // publishes no session lifetime: dense for five minutes, then sparse until max_age.
    default_schedule: &[
        "10s", "20s", "30s", "45s", "1m", "90s", "2m", "5m", "15m", "1h",
    ],
    // [assumed]: MoPay mentions callbacks [seed 000] but publishes neither body nor signature.
    callback: CallbackSpec {
        answer_pointer: None,
        signature: None,
        id_pointers: &["/sessionId", "/session/sessionId", "/data/sessionId"],
    },
    list: None,
    secrets: SecretNeeds::OptionalApiKey,
    keys: &["api_key_env"],
};


/// The path before the session id `[seed 000]`.
const STATUS_PATH: &[&str] = &["api", "external", "session", "v1"];

pub struct Mopay {
    status: StatusUrl,
    api_key: Option<Secret>,
}

impl Mopay {
    pub fn new(cfg: &ProviderConfig) -> Self {
        Self {
            status: StatusUrl::new(&cfg.base_url, STATUS_PATH),
            api_key: cfg.api_key.clone(),
        }
    }
}

/// The status envelope `[seed 000]`. Unknown fields are ignored on purpose.
#[derive(Debug, Deserialize)]
struct MopayEnvelope {
    success: Option<bool>,
    session: Option<MopaySession>,
}

/// The whitelisted fields of `session` `[seed 000]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MopaySession {
    session_id: Option<String>,
    amount: Option<Value>,
    reference: Option<String>,
    transaction_status: Option<String>,
    status: Option<Value>,
    selected_payment_method: Option<String>,
    transaction_id: Option<String>,
    completed_at: Option<String>,
}

/// Maps `session.status` (ASCII case ignored) per docs/providers.md's table.
fn map_status(status: &str) -> Mapped {
    match status.to_ascii_uppercase().as_str() {
        "COMPLETED" => Mapped::Paid,                             // [seed 000]
        "CREATED" | "PROCESSING" | "PENDING" => Mapped::Pending, // [3rd-party]
        "FAILED" => Mapped::Failed, // [3rd-party]; redirect status=failed [seed 000]
        "CANCELLED" => Mapped::Cancelled, // [3rd-party]; redirect status=cancelled [seed 000]
        "EXPIRED" => Mapped::Expired, // [3rd-party]
        _ => Mapped::Unrecognised,
    }
}

impl Adapter for Mopay {
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
        )
    }

    fn endpoint(&self) -> String {
        self.status.endpoint()
    }

    fn parse(&self, session_id: &str, body: &[u8]) -> Result<ProviderFacts, Error> {
        let env: MopayEnvelope = super::json_body(body)?;
        // `success: false` (with `error`) is a transient failure [seed 000]. The error text is not
        // kept: it is provider prose that could echo anything.
        if env.success != Some(true) {
            return Err(Error::Rejected(format!(
                "success: {}",
                env.success.map_or("missing".into(), |b| b.to_string())
            )));
        }
        let s = env
            .session
            .ok_or_else(|| Error::Malformed("no \"session\" object".into()))?;
        if let Some(id) = &s.session_id
            && id != session_id
        {
            return Err(Error::Malformed(format!(
                "answer is for another session ({})",
                clip(id)
            )));
        }
        let (raw_status, word) = super::json_word(s.status.as_ref());
        let mut mapped = word.map_or(Mapped::Unrecognised, map_status);
        let mut facts = ProviderFacts::new(raw_status, mapped);
        // COMPLETED whose transactionStatus is not `success` is an answer we cannot act on
        // [assumed]: the seed only shows the pair COMPLETED + success, so anything else is not a
        // confirmed payment. It stays PENDING and, past max_age, goes to REVIEW.
        if mapped == Mapped::Paid {
            let ts = s.transaction_status.as_deref();
            if !ts.is_some_and(|t| t.eq_ignore_ascii_case("success")) {
                mapped = Mapped::Unsure;
                facts.warning = Some(format!(
                    "status COMPLETED but transactionStatus is {}",
                    ts.map_or("missing".to_string(), |t| format!("{:?}", clip(t)))
                ));
            }
        }
        facts.mapped = mapped;
        // The seed sends a decimal string; a JSON number is read from its text, not a float.
        facts.amount = super::json_decimal(s.amount.as_ref(), "session.amount")?;
        facts.reference = s.reference;
        // MoPay returns no currency [seed 000]: it is never compared.
        facts.currency = None;
        facts.transaction_id = s.transaction_id;
        facts.payment_method = s.selected_payment_method;
        facts.completed_at = s.completed_at;
        Ok(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn adapter() -> Mopay {
        Mopay {
            status: StatusUrl::new(
                &reqwest::Url::parse("http://127.0.0.1:1").unwrap(),
                STATUS_PATH,
            ),
            api_key: None,
        }
    }

    fn body(status: &str, tx_status: &str) -> String {
        format!(
            r#"{{"success":true,"session":{{"id":"x","sessionId":"MOP_1","amount":"100.00","reference":"ORDER1",
            "transactionStatus":{tx_status},"redirectUrl":"https://a","status":{status},"selectedPaymentMethod":"mpesa",
            "transactionId":"TXN1","createdAt":"2025-12-04T14:00:00Z","completedAt":"2025-12-04T14:05:00Z",
            "project":{{"apiKey":"sk_echoed","ownerEmail":"o@example.com"}}}}}}"#
        )
    }

    /// Every row of docs/providers.md's MoPay table, and what is not in it.
    #[test]
    fn every_status_maps_as_documented() {
        let cases = [
            ("\"COMPLETED\"", "\"success\"", Mapped::Paid),
            ("\"completed\"", "\"SUCCESS\"", Mapped::Paid),
            ("\"CREATED\"", "null", Mapped::Pending),
            ("\"PROCESSING\"", "null", Mapped::Pending),
            ("\"PENDING\"", "null", Mapped::Pending),
            ("\"FAILED\"", "\"failed\"", Mapped::Failed),
            ("\"CANCELLED\"", "null", Mapped::Cancelled),
            ("\"EXPIRED\"", "null", Mapped::Expired),
            ("\"COMPLETED\"", "\"failed\"", Mapped::Unsure),
            ("\"COMPLETED\"", "null", Mapped::Unsure),
            ("\"PAID\"", "\"success\"", Mapped::Unrecognised),
            ("\"CANCELED\"", "null", Mapped::Unrecognised),
            ("null", "null", Mapped::Unrecognised),
            ("3", "null", Mapped::Unrecognised),
        ];
        for (status, tx, want) in cases {
            let f = adapter()
                .parse("MOP_1", body(status, tx).as_bytes())
                .unwrap();
            assert_eq!(f.mapped, want, "status {status} transactionStatus {tx}");
        }
        let f = adapter()
            .parse("MOP_1", body("\"COMPLETED\"", "\"success\"").as_bytes())
            .unwrap();
        assert_eq!(f.amount, Some(Decimal::from_str("100.00").unwrap()));
        assert_eq!(f.reference.as_deref(), Some("ORDER1"));
        assert_eq!(f.transaction_id.as_deref(), Some("TXN1"));
        assert_eq!(f.payment_method.as_deref(), Some("mpesa"));
        assert_eq!(f.currency, None);
        assert!(
            !format!("{f:?}").contains("sk_echoed"),
            "only whitelisted fields are kept"
        );
        let f = adapter()
            .parse("MOP_1", body("\"COMPLETED\"", "\"failed\"").as_bytes())
            .unwrap();
        assert!(f.warning.unwrap().contains("transactionStatus"));
    }

    /// A Latin-1 byte in a field payrecon does not read leaves the answer readable; in a field
    /// it keeps, the answer is malformed (never a guessed status).
    #[test]
    fn a_stray_byte_matters_only_where_it_is_read() {
        let a = adapter();
        let good = body("\"COMPLETED\"", "\"success\"");
        // `\u{1}` marks where the Latin-1 é (one byte, 0xE9: not UTF-8) goes.
        let latin1 = |text: String| -> Vec<u8> {
            text.bytes()
                .map(|b| if b == 1 { 0xE9 } else { b })
                .collect()
        };
        let stray = latin1(good.replace("o@example.com", "caf\u{1}"));
        assert!(std::str::from_utf8(&stray).is_err());
        let f = a.parse("MOP_1", &stray).unwrap();
        assert_eq!(f.mapped, Mapped::Paid);
        assert_eq!(f, a.parse("MOP_1", good.as_bytes()).unwrap());

        let kept = latin1(good.replace("TXN1", "TXN\u{1}"));
        assert!(matches!(a.parse("MOP_1", &kept), Err(Error::Malformed(_))));
    }

    #[test]
    fn transient_and_malformed_answers_are_errors() {
        let a = adapter();
        assert!(matches!(
            a.parse("MOP_1", br#"{"success":false,"error":"busy"}"#),
            Err(Error::Rejected(_))
        ));
        assert!(matches!(
            a.parse("MOP_1", b"<html>502</html>"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            a.parse("MOP_1", br#"{"success":true,"session":{"sessi"#),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            a.parse("MOP_1", br#"{"success":true}"#),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            a.parse("MOP_2", body("\"COMPLETED\"", "\"success\"").as_bytes()),
            Err(Error::Malformed(m)) if m.contains("another session")
        ));
        let bad_amount = br#"{"success":true,"session":{"status":"COMPLETED","amount":"12,50"}}"#;
        assert!(matches!(
            a.parse("MOP_1", bad_amount),
            Err(Error::Malformed(_))
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// The table of docs/providers.md, written again here from the document, independently of
        /// `map_status`: what a body with this status and transactionStatus must map to.
        fn documented(status: &str, tx: Option<&str>) -> Mapped {
            match status.to_ascii_uppercase().as_str() {
                "COMPLETED" if tx.is_some_and(|t| t.eq_ignore_ascii_case("success")) => {
                    Mapped::Paid
                }
                "COMPLETED" => Mapped::Unsure,
                "CREATED" | "PROCESSING" | "PENDING" => Mapped::Pending,
                "FAILED" => Mapped::Failed,
                "CANCELLED" => Mapped::Cancelled,
                "EXPIRED" => Mapped::Expired,
                _ => Mapped::Unrecognised,
            }
        }

        fn word() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "COMPLETED",
                    "completed",
                    "Completed",
                    "CREATED",
                    "PROCESSING",
                    "PENDING",
                    "FAILED",
                    "CANCELLED",
                    "CANCELED",
                    "EXPIRED",
                    "success",
                    "SUCCESS",
                    "failed",
                    "PAID",
                    "",
                    " COMPLETED",
                    "COMPLETED ",
                    "COMPLETED\u{0}",
                    "ＣＯＭＰＬＥＴＥＤ",
                ])
                .prop_map(String::from),
                "\\PC{0,12}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes_never_panic_and_never_say_paid(body in prop::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(f) = adapter().parse("MOP_1", &body) {
                    // Only a JSON body saying success and a status can parse at all.
                    prop_assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
                    prop_assert!(f.mapped != Mapped::Paid || f.raw_status.eq_ignore_ascii_case("COMPLETED"));
                }
            }

            #[test]
            fn a_terminal_state_only_from_a_body_that_says_one(
                status in word(),
                tx in prop::option::of(word()),
                amount in prop::option::of("[0-9]{1,6}(\\.[0-9]{1,2})?"),
                junk in "\\PC{0,20}",
            ) {
                let body = serde_json::json!({
                    "success": true,
                    "session": {
                        "sessionId": "MOP_1",
                        "status": status,
                        "transactionStatus": tx,
                        "amount": amount,
                        "extra": junk,
                    }
                });
                let f = adapter().parse("MOP_1", body.to_string().as_bytes()).unwrap();
                prop_assert_eq!(f.mapped, documented(&status, tx.as_deref()));
            }
        }
    }
}
