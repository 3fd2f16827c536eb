//! Standard Webhooks signing (pure): `webhook-signature` is `v1,` + base64 HMAC-SHA256 over
//! `"{id}.{timestamp}.{body}"`, one signature per configured key, space-separated, so a receiver
//! that knows either the old or the new key during a rotation accepts the message.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::SigningKey;

/// The `webhook-signature` header value for one message.
pub fn signature(keys: &[SigningKey], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| {
            // Invariant: HMAC takes keys of any length, so `new_from_slice` cannot fail.
            let mut mac =
                Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC accepts any key length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published Standard Webhooks test vector.
    #[test]
    fn standard_webhooks_test_vector() {
        let key = SigningKey::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_key_signs() {
        let a = SigningKey::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = SigningKey::from_whsec("whsec_c2Vjb25k").unwrap();
        let sig = signature(
            &[a.clone(), b.clone()],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(
            parts[1],
            signature(
                &[b],
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            )
        );
    }
}
