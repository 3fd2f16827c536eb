//! Mopay Nigeria: the envelope of seed 002, with a status lookup of the simulator's own choice
//! (none is published): `GET /?req=payment_status&reference=ID`.

use super::*;

pub(crate) struct MopayNg;

/// The `req=` name the simulator answers Mopay Nigeria status lookups on.
pub const NG_STATUS_ENDPOINT: &str = "payment_status";

/// The status words of the simulator's Mopay Nigeria, for a config's `status_map`.
pub const NG_STATUS_MAP: &[(&str, &str)] = &[
    ("SUCCESSFUL", "COMPLETED"),
    ("FAILED", "FAILED"),
    ("CANCELLED", "CANCELLED"),
    ("EXPIRED", "EXPIRED"),
    ("PENDING", "PENDING"),
    ("PROCESSING", "PENDING"),
];

impl MopayNg {
    fn error(http: StatusCode, code: u16, details: &str) -> Response {
        json_response(
            http,
            json!({"REQUEST": {"VERSION": "1.0", "ACTION": NG_STATUS_ENDPOINT, "STATUS": "FAILED"},
                   "ERRORS": {"CODE": code, "DETAILS": details}}),
        )
    }
}

impl Shape for MopayNg {
    fn path(&self) -> &'static str {
        "/"
    }

    fn id(
        &self,
        _path: Option<String>,
        query: &HashMap<String, String>,
    ) -> Result<String, Box<Response>> {
        match (query.get("req").map(String::as_str), query.get("reference")) {
            (Some(NG_STATUS_ENDPOINT), Some(id)) => Ok(id.clone()),
            _ => Err(Box::new(Self::error(
                StatusCode::NOT_FOUND,
                404,
                "Unknown endpoint",
            ))),
        }
    }

    fn authorised(&self, key: &str, h: &dyn Fn(&str) -> String) -> bool {
        !h("mpy-securekey").is_empty()
            && mopay_ng_signal(key.as_bytes(), &h("mpy-timestamp")) == h("mpy-reqsignal")
    }

    fn unauthorised(&self) -> Response {
        Self::error(StatusCode::UNAUTHORIZED, 401, "Invalid signature (E401)")
    }

    fn not_found(&self) -> Response {
        Self::error(StatusCode::NOT_FOUND, 404, "Transaction not found")
    }

    fn false_success(&self) -> Response {
        Self::error(StatusCode::OK, 503, "Temporarily unavailable")
    }

    fn no_permission(&self) -> Response {
        Self::error(StatusCode::FORBIDDEN, 403, "Forbidden")
    }

    fn body(&self, v: &View) -> Response {
        let status = match v.state {
            SimState::Created => "PENDING",
            SimState::Processing | SimState::Unpaid => "PROCESSING",
            SimState::Failed => "FAILED",
            SimState::Cancelled => "CANCELLED",
            SimState::Expired => "EXPIRED",
            SimState::Unknown => "ON_HOLD",
            _ => "SUCCESSFUL",
        };
        json_response(
            StatusCode::OK,
            json!({"REQUEST": {"VERSION": "1.0", "ACTION": NG_STATUS_ENDPOINT, "STATUS": "OK"}, "DATA": {
                "reference": v.id, "status": status, "amount": v.amount, "currency": v.currency,
                "merchant_reference": v.reference, "transaction_id": v.paid.then_some(&v.txn),
            }}),
        )
    }

    fn table(&self) -> &'static str {
        // `{status_map}` is filled from NG_STATUS_MAP.
        "public_key_env = \"{public_env}\"\nsecret_key_env = \"{key_env}\"\n\
         status_endpoint = \"payment_status\"\nid_param = \"reference\"\n\
         status_pointer = \"/DATA/status\"\namount_pointer = \"/DATA/amount\"\n\
         reference_pointer = \"/DATA/merchant_reference\"\ncurrency_pointer = \"/DATA/currency\"\n\
         status_map = {status_map}"
    }

    fn demo(&self) -> Demo {
        Demo {
            currency: "NGN",
            id: Some(|n| format!("NG{n:06}")),
            extra: &[],
        }
    }
}

/// Mopay Nigeria's `MPY-REQSIGNAL` as its documentation describes it: lowercase hex
/// HMAC-SHA512, keyed with the secret, over the compact JSON `{"timestamp":"<MPY-TIMESTAMP>"}`.
/// Written here from the documentation, not with the adapter's signer, so the simulator checks
/// the adapter against the provider's rule rather than against itself.
pub(crate) fn mopay_ng_signal(secret: &[u8], timestamp: &str) -> String {
    use hmac::Mac as _;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha512>::new_from_slice(secret) else {
        return String::new();
    };
    // A JSON string: quotes, backslashes and control characters escaped.
    let mut quoted = String::with_capacity(timestamp.len() + 2);
    for c in timestamp.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if (c as u32) < 0x20 => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    mac.update(format!("{{\"timestamp\":\"{quoted}\"}}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
