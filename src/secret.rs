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
