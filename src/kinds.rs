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

/// How a provider's own callbacks (webhooks) name the session, for `POST /v1/callbacks/{provider}`,
/// which takes them as hints: a callback never sets a state, it only has the session checked.
pub struct CallbackSpec {
    /// The header carrying the hex HMAC-SHA256 of the raw body, keyed with the secret in
    /// `webhook_secret_env`; `None` when no signature payrecon can check is documented.
    pub hmac_header: Option<&'static str>,
    /// JSON pointers where the session id may be, tried in order; the first that names a
    /// session of the provider is hinted. Where the provider does not publish its callback
    /// body these are `[assumed]`: a wrong guess costs nothing (an unknown id is no call).
    pub id_pointers: &'static [&'static str],
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
    /// The delays between checks a session of this kind follows unless the config chooses
    /// (docs/providers.md "Default schedules", each with its reason).
    pub default_schedule: &'static [&'static str],
    pub callback: CallbackSpec,
    pub secrets: SecretNeeds,
    /// The settings a table of this kind may set beyond `kind`, `base_url` and `rate_limit`.
    pub keys: &'static [&'static str],
}

/// A provider kind this build supports: a config table's `kind`, the adapter that speaks it,
/// and the simulator's shape of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Mopay,
    Little,
    MopayNg,
    Moflay,
    Vesicash,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Mopay,
        Kind::Little,
        Kind::MopayNg,
        Kind::Moflay,
        Kind::Vesicash,
    ];

    /// What the rest of the program knows of it.
    pub fn spec(self) -> &'static KindSpec {
        match self {
            Kind::Mopay => &MOPAY,
            Kind::Little => &LITTLE,
            Kind::MopayNg => &MOPAY_NG,
            Kind::Moflay => &MOFLAY,
            Kind::Vesicash => &VESICASH,
        }
    }

    /// Its name in the config (`kind = "…"`).
    pub fn name(self) -> &'static str {
        self.spec().kind
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown kind {s:?} (this build supports: {})",
                    Kind::ALL.map(Kind::name).join(", ")
                )
            })
    }
}

/// MoPay Lesotho.
pub const MOPAY: KindSpec = KindSpec {
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
        hmac_header: None,
        id_pointers: &["/sessionId", "/session/sessionId", "/data/sessionId"],
    },
    secrets: SecretNeeds::OptionalApiKey,
    keys: &["api_key_env"],
};

pub const LITTLE: KindSpec = KindSpec {
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
    // Callbacks are RSA-SHA256 signed (X-LittlePay-Signature) [docs]: not checked by this build;
    // the body is assumed to be the status answer's (`data.reference`, `data.key`) [assumed].
    callback: CallbackSpec {
        hmac_header: None,
        id_pointers: &["/data/reference", "/data/key", "/reference", "/key"],
    },
    secrets: SecretNeeds::ApiKey,
    keys: &["api_key_env", "long_poll", "long_poll_timeout"],
};

pub const MOPAY_NG: KindSpec = KindSpec {
    kind: "mopay_ng",
    default_base_url: Some("https://service.mopay-ng.com"), // [seed 002]
    default_rate_limits: &["100/min"], // 100 requests per minute per key [docs]
    sandbox_rate_limits: None,
    // [assumed]: no status endpoint or lifetime is published; 100/min [docs] allows a
    // moderately dense start.
    default_schedule: &["15s", "15s", "30s", "1m", "2m", "5m", "15m", "1h"],
    // No callback is published [docs].
    callback: CallbackSpec {
        hmac_header: None,
        id_pointers: &[],
    },
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
    // 200/h [docs] is about three calls a minute for every session together: four checks in
    // the first 90 s, where M-Pesa completes 30–90 s after the PIN [3rd-party], then sparse.
    default_schedule: &["20s", "20s", "20s", "30s", "1m", "5m", "30m", "2h"],
    // Payment webhooks exist [docs]; their body is assumed to carry the payment's `id` as the
    // status answer does [assumed].
    callback: CallbackSpec {
        hmac_header: None,
        id_pointers: &["/data/id", "/id", "/data/transactionId", "/transactionId"],
    },
    secrets: SecretNeeds::ApiKey,
    keys: &["api_key_env"],
};

pub const VESICASH: KindSpec = KindSpec {
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
        hmac_header: Some("mor-signature"),
        id_pointers: &[
            "/data/payment_reference",
            "/data/reference",
            "/payment_reference",
            "/reference",
        ],
    },
    secrets: SecretNeeds::KeyPair,
    keys: &["public_key_env", "secret_key_env", "webhook_secret_env"],
};
