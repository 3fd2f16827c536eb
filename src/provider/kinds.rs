//! The registry of provider kinds, and what the configuration needs to know of each — its name,
//! default base URL and rate limits, the secrets and settings it takes — as data ([`KindSpec`]),
//! with the source of each fact (the tags of docs/providers.md). Each kind's spec lives in its
//! adapter's file beside the parsing, as `SPEC`; the one list of kinds is the `registry!` call
//! in `provider/mod.rs`.

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
    /// How the provider signs its callbacks with the secret in `webhook_secret_env`; `None`
    /// when no signature payrecon can check is documented.
    pub signature: Option<CallbackSignature>,
    /// Where a verified callback's body holds the provider's payment object, in the shape of its
    /// status answer: such a callback is the provider's own word, decided as a status answer is
    /// (`None`: callbacks are hints only).
    pub answer_pointer: Option<&'static str>,
    /// JSON pointers where the session id may be, tried in order; the first that names a
    /// session of the provider is hinted. Where the provider does not publish its callback
    /// body these are `[assumed]`: a wrong guess costs nothing (an unknown id is no call).
    pub id_pointers: &'static [&'static str],
}

/// A documented callback signature payrecon checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackSignature {
    /// This header carries the hex HMAC-SHA256 of the raw body (Vesicash's `mor-signature`).
    HmacHex(&'static str),
    /// Standard Webhooks (`svix-id`, `svix-timestamp`, `svix-signature`: HMAC-SHA256 of
    /// `id.timestamp.body` with the `whsec_…` secret, base64), within five minutes of the
    /// signed timestamp, each message id taken once.
    StandardWebhooks,
    /// An RSA-SHA256 signature (base64, in `signature`) of `timestamp + "." + JSON` (the
    /// timestamp from `timestamp`), under the provider's public key — the one it publishes
    /// (`published`, PEM), or one the table names (`webhook_public_key`).
    RsaSha256 {
        signature: &'static str,
        timestamp: &'static str,
        published: &'static str,
    },
}

/// How a sweep takes a listed payment tied to a PENDING session (a provider table's `list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListUse {
    /// No sweeps: every session is checked one status call at a time.
    Off,
    /// A tied listed payment is an answer, decided as a status answer is with what the list
    /// carries (the event's `compared` names what was compared).
    Decide,
    /// A tied listed payment in a final state makes its session due now, for a status call to
    /// confirm with everything the status answer carries.
    Confirm,
}

impl ListUse {
    pub fn name(self) -> &'static str {
        match self {
            ListUse::Off => "off",
            ListUse::Decide => "decide",
            ListUse::Confirm => "confirm",
        }
    }
}

impl std::str::FromStr for ListUse {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(ListUse::Off),
            "decide" => Ok(ListUse::Decide),
            "confirm" => Ok(ListUse::Confirm),
            _ => Err(format!(
                "{s:?} is not one of \"decide\", \"confirm\", \"off\""
            )),
        }
    }
}

/// A provider's documented list of payments, which sweeps read (docs/providers.md "Lists").
pub struct ListSpec {
    /// How a tied listed payment is taken unless the table says (`list = …`).
    pub default_use: ListUse,
    /// The form of the ids the list names payments by: a session is within a sweep's reach
    /// when its `session_id` or `provider_ref` starts with it.
    pub id_prefix: &'static str,
    /// The items one page asks for, and the smaller count asked instead once the provider
    /// refuses that (where its pages disagree on the most a page may hold).
    pub page_limits: (u32, u32),
    /// Whether the list is asked for payments since a time (so a sweep reads every page it
    /// gives), rather than read newest first until it passes one.
    pub filters_by_time: bool,
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
    /// Its list of payments, when it documents one this build reads.
    pub list: Option<ListSpec>,
    pub secrets: SecretNeeds,
    /// The settings a table of this kind may set beyond `kind`, `base_url` and `rate_limit`.
    pub keys: &'static [&'static str],
}

use super::Kind;

/// Declares the provider kinds this build supports, each once: `Variant => module::Adapter`,
/// where `module` (a file in `src/provider/`) holds the kind's `SPEC` and its adapter, built by
/// `Adapter::new(&ProviderConfig)`. It writes the `Kind` enum and the matches that lead from a
/// kind to its spec and its adapter.
macro_rules! registry {
    ($($variant:ident => $module:ident :: $adapter:ident,)+) => {
        $(pub mod $module;)+

        /// A provider kind this build supports: a config table's `kind`, the adapter that
        /// speaks it, and the simulator's shape of it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($variant,)+
        }

        impl Kind {
            /// Every kind, in the registry's order.
            pub const ALL: [Kind; [$(stringify!($variant)),+].len()] = [$(Kind::$variant),+];
            /// How many kinds there are.
            pub const COUNT: usize = Kind::ALL.len();

            /// What the rest of the program knows of it.
            pub fn spec(self) -> &'static kinds::KindSpec {
                match self {
                    $(Kind::$variant => &$module::SPEC,)+
                }
            }

            /// The adapter that speaks it, for one configured provider.
            pub fn adapter(self, cfg: &ProviderConfig) -> Box<dyn Adapter> {
                match self {
                    $(Kind::$variant => Box::new($module::$adapter::new(cfg)),)+
                }
            }
        }
    };
}
pub(crate) use registry;

impl Kind {
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
