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

/// The RSA public key (PKCS#1 `RSAPublicKey`, DER) inside a PEM `PUBLIC KEY` (an X.509
/// SubjectPublicKeyInfo, as providers publish theirs), or why it is not one.
pub fn rsa_public_key_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PUBLIC KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PUBLIC KEY-----")
        .collect();
    if body.is_empty() {
        return Err("no -----BEGIN PUBLIC KEY----- block".into());
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("the PUBLIC KEY block is not base64: {e}"))?;
    // SEQUENCE { SEQUENCE { OID rsaEncryption, NULL }, BIT STRING { 0, RSAPublicKey } }
    const RSA_ENCRYPTION: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    let not_rsa = || "not an RSA public key (SubjectPublicKeyInfo with rsaEncryption)".to_string();
    let (spki, _) = der_element(&der, 0x30).ok_or_else(not_rsa)?;
    let (algorithm, rest) = der_element(spki, 0x30).ok_or_else(not_rsa)?;
    if !algorithm.starts_with(RSA_ENCRYPTION) {
        return Err(not_rsa());
    }
    let (bits, _) = der_element(rest, 0x03).ok_or_else(not_rsa)?;
    match bits.split_first() {
        Some((0, key)) if !key.is_empty() => Ok(key.to_vec()),
        _ => Err(not_rsa()),
    }
}

/// One DER element of `tag` at the start of `input`: its contents and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        n if n < 0x80 => (usize::from(n), rest),
        0x81 => (usize::from(*rest.first()?), &rest[1..]),
        0x82 => (
            usize::from(*rest.first()?) << 8 | usize::from(*rest.get(1)?),
            rest.get(2..)?,
        ),
        _ => return None,
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Whether `signature_b64` (base64) is an RSA PKCS#1 v1.5 SHA-256 signature of `message` under
/// `public_key` (as [`rsa_public_key_from_pem`] gives it; 2048 to 8192 bits).
pub fn rsa_sha256_matches(public_key: &[u8], message: &[u8], signature_b64: &str) -> bool {
    use base64::Engine as _;
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim())
    else {
        return false;
    };
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(message, &signature)
    .is_ok()
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

#[cfg(test)]
mod rsa_tests {
    /// Little's published key reads as a 2048-bit RSA key (a DER `RSAPublicKey` of 270 bytes:
    /// a SEQUENCE of a 257-byte modulus and the exponent 65537).
    #[test]
    fn the_published_little_key_is_an_rsa_key() {
        let key = super::rsa_public_key_from_pem(crate::provider::little::PUBLISHED_KEY).unwrap();
        assert_eq!(key.len(), 270);
        assert_eq!(&key[..4], &[0x30, 0x82, 0x01, 0x0a]);
        assert_eq!(&key[key.len() - 5..], &[0x02, 0x03, 0x01, 0x00, 0x01]);
        // Not a signature of anything.
        assert!(!super::rsa_sha256_matches(&key, b"1700000000.{}", "AAAA"));
        assert!(
            super::rsa_public_key_from_pem(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
            )
            .is_err()
        );
        assert!(super::rsa_public_key_from_pem("no key here").is_err());
    }
}
