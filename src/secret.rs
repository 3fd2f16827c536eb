//! Secrets: values read from the environment that never print (Debug shows `[redacted]`).

use std::fmt;

/// A secret read from the environment. Debug and Display print `[redacted]`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    /// The secret's value, for building a request header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Whether `hex_sig` (case-insensitive hex) is the HMAC-SHA256 of `body` keyed with `secret`,
/// compared in constant time: how a provider's signed callback is checked.
pub fn hmac_sha256_hex_matches(secret: &Secret, body: &[u8], hex_sig: &str) -> bool {
    use hmac::{Hmac, Mac};
    let hex_sig = hex_sig.trim();
    if hex_sig.len() != 64 || !hex_sig.is_ascii() {
        return false;
    }
    let Some(sig) = (0..32)
        .map(|i| u8::from_str_radix(&hex_sig[2 * i..2 * i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A decoded `whsec_` signing key. Debug prints `[redacted]`.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

/// Whether a Standard Webhooks callback verifies under `key`: one of the space-separated `v1,`
/// entries of `signatures` is the base64 HMAC-SHA256 of `id.timestamp.body` (compared in
/// constant time). The timestamp's freshness and the id's novelty are the caller's.
pub fn standard_webhooks_matches(
    key: &SigningKey,
    id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
) -> bool {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let Ok(mac) = Hmac::<sha2::Sha256>::new_from_slice(key.expose()) else {
        return false;
    };
    let mut mac = mac;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .any(|sig| mac.clone().verify_slice(&sig).is_ok())
}

impl SigningKey {
    /// Decodes `whsec_<base64>` (the prefix is optional, as in the Standard Webhooks libraries).
    pub fn from_whsec(text: &str) -> Option<SigningKey> {
        use base64::Engine as _;
        let b64 = text.strip_prefix("whsec_").unwrap_or(text);
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .filter(|k| !k.is_empty())
            .map(SigningKey)
    }

    /// The key bytes, for the HMAC. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's published vector verifies, among other entries;
    /// another body, another id or a malformed entry does not.
    #[test]
    fn the_standard_webhooks_vector_verifies() {
        let key = SigningKey::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, ts) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330");
        let body = br#"{"test": 2432232314}"#;
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert!(standard_webhooks_matches(&key, id, ts, body, sig));
        let among = format!("v1,bm9wZQ== {sig}");
        assert!(standard_webhooks_matches(&key, id, ts, body, &among));
        assert!(!standard_webhooks_matches(
            &key,
            id,
            ts,
            br#"{"test": 1}"#,
            sig
        ));
        assert!(!standard_webhooks_matches(&key, "msg_other", ts, body, sig));
        assert!(!standard_webhooks_matches(
            &key,
            id,
            ts,
            body,
            "v1,not base64"
        ));
        let v2 = sig.replacen("v1,", "v2,", 1);
        assert!(!standard_webhooks_matches(&key, id, ts, body, &v2));
    }
}
