//! What the configuration needs to know of each provider kind — its name, default base URL and
//! rate limits, the secrets and settings it takes — as data, with the source of each fact
//! (the tags of docs/providers.md). The adapters are in `provider`.

/// Which secrets a kind needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretNeeds {
    /// `api_key_env`, optional (MoPay's status call works without one `[seed 000]`).
    OptionalApiKey,
    /// `api_key_env`, required.
    ApiKey,
    /// `public_key_env` and `secret_key_env`, required.
    KeyPair,
}

/// What the rest of the program needs to know about a provider kind.
pub struct KindSpec {
    /// The `kind` value in the config.
    pub kind: &'static str,
    pub default_base_url: Option<&'static str>,
    /// Used when the table sets no `rate_limit`.
    pub default_rate_limits: &'static [&'static str],
    /// Used instead when the table sets no `rate_limit` and the API key starts with this
    /// prefix (a sandbox key with limits of its own).
    pub sandbox_rate_limits: Option<(&'static str, &'static [&'static str])>,
    pub secrets: SecretNeeds,
    /// The settings a table of this kind may set beyond `kind`, `base_url` and `rate_limit`.
    pub keys: &'static [&'static str],
}

/// Every provider kind this build supports.
pub const KINDS: &[&KindSpec] = &[&MOPAY, &LITTLE, &MOPAY_NG, &MOFLAY, &VESICASH];

/// MoPay Lesotho.
pub const MOPAY: KindSpec = KindSpec {
    kind: "mopay",
    default_base_url: Some("https://pay.mopay.co.ls"), // [seed 000]
    default_rate_limits: &["10/s"],                    // [assumed]: none published
    sandbox_rate_limits: None,
    secrets: SecretNeeds::OptionalApiKey,
    keys: &["api_key_env"],
};

pub const LITTLE: KindSpec = KindSpec {
    kind: "little",
    default_base_url: Some("https://pay.little.africa"), // [seed 001]
    default_rate_limits: &["10/s"],                      // [assumed]: none published
    sandbox_rate_limits: None,
    secrets: SecretNeeds::ApiKey,
    keys: &["api_key_env", "long_poll", "long_poll_timeout"],
};

pub const MOPAY_NG: KindSpec = KindSpec {
    kind: "mopay_ng",
    default_base_url: Some("https://service.mopay-ng.com"), // [seed 002]
    default_rate_limits: &["100/min"], // 100 requests per minute per key [docs]
    sandbox_rate_limits: None,
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

pub const MOFLAY: KindSpec = KindSpec {
    kind: "moflay",
    default_base_url: Some("https://api.moflay.com"), // [seed 003]
    // Production: 100/min and 200/h; sandbox: 20/min with a burst of 5 per 10 s
    // (docs.moflay.com/api-reference/rate-limit). Sandbox keys start `mof_test_` [docs].
    default_rate_limits: &["100/min", "200/h"],
    sandbox_rate_limits: Some(("mof_test_", &["20/min", "5/10s"])),
    secrets: SecretNeeds::ApiKey,
    keys: &["api_key_env"],
};

pub const VESICASH: KindSpec = KindSpec {
    kind: "vesicash",
    default_base_url: None,         // [assumed]: unpublished for this API
    default_rate_limits: &["10/s"], // [assumed]: none published
    sandbox_rate_limits: None,
    secrets: SecretNeeds::KeyPair,
    keys: &["public_key_env", "secret_key_env"],
};
