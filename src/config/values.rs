//! Values read out of the file: URLs, durations, delays, rate limits, sizes and bounded
//! numbers, each error naming the key and the value; and the provider and webhook tables.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use super::*;
use crate::provider::{Kind, KindSpec, SecretNeeds};

/// Query parameters whose names say they carry a credential.
pub(super) const CREDENTIAL_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "auth",
    "key",
    "apikey",
    "api_key",
    "secret",
    "password",
    "pass",
    "pwd",
    "sig",
    "signature",
    "client_secret",
];

/// An http(s) URL with a host and no credentials in it: a user or password, or a query
/// parameter named like one (`?token=…`) would be printed by `check-config` into the journal
/// and sent in every request's logs. The error never repeats the URL, which may hold a secret.
pub(super) fn http_url(key: &str, text: &str) -> Result<reqwest::Url, UsageError> {
    let url = reqwest::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| UsageError::new(format!("{key}: not an http(s) URL with a host")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UsageError::new(format!(
            "{key}: holds a user name or password; give credentials through the provider's \
             *_env keys (api_key_env, public_key_env, secret_key_env), never inside the URL"
        )));
    }
    if let Some((name, _)) = url.query_pairs().find(|(k, _)| {
        CREDENTIAL_PARAMS.iter().any(|c| {
            k.eq_ignore_ascii_case(c) || k.to_ascii_lowercase().ends_with(&format!("_{c}"))
        })
    }) {
        return Err(UsageError::new(format!(
            "{key}: its query parameter {:?} looks like a credential; give credentials through \
             the *_env keys, never inside the URL",
            crate::escape::shown(&name)
        )));
    }
    Ok(url)
}

/// Validates `[events.webhook]`; a missing or bad secret goes to `problems` (see
/// [`Config::require_secrets`]), not into the error, so commands that never sign can still run.
pub(super) fn webhook(
    w: &RawWebhook,
    env: EnvLookup<'_>,
    problems: &mut Vec<String>,
) -> Result<WebhookConfig, UsageError> {
    let url = http_url("events.webhook.url", &w.url)?;
    let var = &w.secret_env;
    let mut secrets = Vec::new();
    match env(var).filter(|v| !v.trim().is_empty()) {
        None => problems.push(format!(
            "events.webhook.secret_env: environment variable {var} is not set (it holds one or more whsec_… secrets)"
        )),
        Some(value) => {
            for (i, part) in value.split_whitespace().enumerate() {
                match SigningKey::from_whsec(part) {
                    Some(k) => secrets.push(k),
                    // The value is never quoted back: only its position in the list.
                    None => problems.push(format!(
                        "events.webhook.secret_env: secret number {} in {var} is not whsec_ followed by base64",
                        i + 1
                    )),
                }
            }
        }
    }
    let mut schedule = Vec::new();
    for (i, d) in w.schedule.iter().enumerate() {
        schedule.push(duration(&format!("events.webhook.schedule[{i}]"), d)?);
    }
    Ok(WebhookConfig {
        url,
        secret_env: var.clone(),
        secrets,
        timeout: duration_within("events.webhook.timeout", &w.timeout, SHORT)?,
        schedule,
        concurrency: positive("events.webhook.concurrency", w.concurrency, 1_000)? as usize,
    })
}

/// How far back a sweep reads a provider's list unless its table says (`list_window`): 15
/// minutes, beyond the 30–90 s an M-Pesa payment takes [3rd-party] and the minutes a customer may
/// take to enter the PIN. Older open sessions are checked one status call at a time.
const DEFAULT_LIST_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest `list_window` and `unmatched_after` accepted: a day.
const LIST_WINDOW: Duration = Duration::from_secs(86_400);
/// How long a listed paid payment no session holds waits for the application's INSERT before
/// its lookup and report (`unmatched_after`).
const DEFAULT_UNMATCHED_AFTER: Duration = Duration::from_secs(5 * 60);

/// Validates one provider table; a missing secret goes to `problems`. Returns it, and its own
/// backoff when its table (or its kind's default) sets a schedule.
pub(super) fn provider(
    name: &str,
    p: &RawProvider,
    http_timeout: Duration,
    backoff: &BackoffConfig,
    kind_schedules: bool,
    env: EnvLookup<'_>,
    problems: &mut Vec<String>,
) -> Result<(ProviderConfig, Option<BackoffConfig>), UsageError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let kind = provider_kind(name, p)?;
    let spec = kind.spec();
    let url_text = p
        .base_url
        .as_deref()
        .or(spec.default_base_url)
        .ok_or_else(|| {
            UsageError::new(format!(
                "{}: required for kind {:?} (no public default)",
                key("base_url"),
                p.kind
            ))
        })?;
    let base_url = http_url(&key("base_url"), url_text)?;
    let [api_key, public_key, secret_key, webhook_secret] =
        provider_secrets(name, p, spec, env, problems)?;
    let rate_limits = provider_rate_limits(name, p, spec, api_key.as_ref())?;
    let long_poll = p.long_poll.unwrap_or(false);
    let long_poll_timeout = p
        .long_poll_timeout
        .as_ref()
        .map(|t| duration_within(&key("long_poll_timeout"), t, SHORT))
        .transpose()?
        .unwrap_or(Duration::from_secs(30));
    let timeout = if long_poll {
        long_poll_timeout
    } else {
        http_timeout
    };
    let default_delays = || -> Vec<String> {
        spec.default_schedule
            .iter()
            .map(|d| d.to_string())
            .collect()
    };
    // The delays, and whether they are the checks' times or the bounds of learned ones.
    let (schedule, pace) = match &p.schedule {
        Some(RawPace::Delays(list)) => (Some(list.clone()), Pace::Fixed),
        Some(RawPace::Word(w)) if w == "learned" => {
            (kind_schedules.then(default_delays), Pace::Learned)
        }
        Some(RawPace::Word(w)) => {
            return Err(UsageError::new(format!(
                "{}: give a list of delays such as [\"10s\", \"30s\"] or \"learned\", got {w:?}",
                key("schedule")
            )));
        }
        None if kind_schedules => (Some(default_delays()), Pace::Fixed),
        None => (None, Pace::Fixed),
    };
    let first_check = match p.first_check.as_deref() {
        None if pace == Pace::Learned => FirstCheck::Plausible,
        None => FirstCheck::After(Duration::ZERO),
        Some("plausible") => FirstCheck::Plausible,
        Some("0s" | "0") => FirstCheck::After(Duration::ZERO),
        Some(text) => FirstCheck::After(duration_within(
            &key("first_check"),
            text,
            Duration::from_secs(86_400),
        )?),
    };
    let own_backoff = (schedule.is_some()
        || pace != Pace::Fixed
        || first_check != FirstCheck::After(Duration::ZERO))
    .then(|| -> Result<_, UsageError> {
        Ok(BackoffConfig {
            schedule: match &schedule {
                Some(list) => delays(&key("schedule"), Some(list))?,
                None => backoff.schedule.clone(),
            },
            pace,
            first_check,
            ..backoff.clone()
        })
    })
    .transpose()?;
    let config = ProviderConfig {
        name: name.to_string(),
        kind,
        base_url,
        api_key_env: p.api_key_env.clone(),
        api_key,
        public_key_env: p.public_key_env.clone(),
        public_key,
        secret_key_env: p.secret_key_env.clone(),
        secret_key,
        webhook_secret_env: p.webhook_secret_env.clone(),
        webhook_secret,
        webhook_public_key: webhook_public_key(name, p, spec)?,
        rate_limits,
        long_poll,
        timeout,
        mopay_ng: mopay_ng_settings(name, p)?,
        list: match (&p.list, &spec.list) {
            (Some(word), Some(_)) => word
                .parse()
                .map_err(|e| UsageError::new(format!("{}: {e}", key("list"))))?,
            (None, Some(l)) => l.default_use,
            (_, None) => crate::provider::ListUse::Off,
        },
        list_window: p
            .list_window
            .as_ref()
            .map(|t| duration_within(&key("list_window"), t, LIST_WINDOW))
            .transpose()?
            .unwrap_or(DEFAULT_LIST_WINDOW),
        unmatched_after: p
            .unmatched_after
            .as_ref()
            .map(|t| duration_within(&key("unmatched_after"), t, LIST_WINDOW))
            .transpose()?
            .unwrap_or(DEFAULT_UNMATCHED_AFTER),
    };
    Ok((config, own_backoff))
}

/// `webhook_public_key`: `"published"` (the key the provider publishes, built in) or a PEM file
/// with an RSA public key, read and checked now.
fn webhook_public_key(
    name: &str,
    p: &RawProvider,
    spec: &crate::provider::KindSpec,
) -> Result<Option<Vec<u8>>, UsageError> {
    let key = format!("providers.{name}.webhook_public_key");
    let Some(value) = &p.webhook_public_key else {
        return Ok(None);
    };
    let Some(crate::provider::CallbackSignature::RsaSha256 { published, .. }) =
        spec.callback.signature
    else {
        return Err(UsageError::new(format!(
            "{key}: kind {:?} signs its callbacks with no public key",
            p.kind
        )));
    };
    let pem = if value == "published" {
        published.to_string()
    } else {
        std::fs::read_to_string(value)
            .map_err(|e| UsageError::new(format!("{key}: reading {value:?}: {e}")))?
    };
    crate::secret::rsa_public_key_from_pem(&pem)
        .map(Some)
        .map_err(|e| UsageError::new(format!("{key}: {e}")))
}

/// A provider table's name and `kind`, and that it sets only the settings of its kind.
fn provider_kind(name: &str, p: &RawProvider) -> Result<Kind, UsageError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(UsageError::new(format!(
            "providers.{name:?}: a provider name must be 1 to 64 letters, digits, '_' or '-'"
        )));
    }
    let kind: Kind = p
        .kind
        .parse()
        .map_err(|e| UsageError::new(format!("{}: {e}", key("kind"))))?;
    let spec = kind.spec();
    if let Some(k) = p.extra_keys().into_iter().find(|k| !spec.keys.contains(k)) {
        return Err(UsageError::new(format!(
            "{}: not a setting of kind {:?} (its settings: {})",
            key(k),
            p.kind,
            spec.keys.join(", ")
        )));
    }
    Ok(kind)
}

/// A provider table's secrets, `[api key, public key, secret key, webhook secret]`: the
/// variable names are required where the kind needs them; their values only by the commands
/// that call providers (see `Config::require_secrets`), so a missing value goes to `problems`.
fn provider_secrets(
    name: &str,
    p: &RawProvider,
    spec: &KindSpec,
    env: EnvLookup<'_>,
    problems: &mut Vec<String>,
) -> Result<[Option<Secret>; 4], UsageError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let mut secret = |field: &str,
                      var: &Option<String>,
                      required: bool|
     -> Result<Option<Secret>, UsageError> {
        let Some(var) = var else {
            if required {
                return Err(UsageError::new(format!(
                    "{}: required for kind {:?} (the name of the environment variable that holds it)",
                    key(field),
                    p.kind
                )));
            }
            return Ok(None);
        };
        match env(var).filter(|v| !v.trim().is_empty()) {
            Some(value) => Ok(Some(Secret::new(value.trim().to_string()))),
            None => {
                problems.push(format!(
                    "{}: environment variable {var} is not set",
                    key(field)
                ));
                Ok(None)
            }
        }
    };
    let (api_key, public_key, secret_key) = match spec.secrets {
        SecretNeeds::OptionalApiKey => (secret("api_key_env", &p.api_key_env, false)?, None, None),
        SecretNeeds::ApiKey => (secret("api_key_env", &p.api_key_env, true)?, None, None),
        SecretNeeds::KeyPair => (
            None,
            secret("public_key_env", &p.public_key_env, true)?,
            secret("secret_key_env", &p.secret_key_env, true)?,
        ),
    };
    let webhook_secret = secret("webhook_secret_env", &p.webhook_secret_env, false)?;
    if spec.callback.signature == Some(crate::provider::CallbackSignature::StandardWebhooks)
        && let Some(s) = &webhook_secret
        && crate::secret::SigningKey::from_whsec(s.expose()).is_none()
    {
        // The value is never quoted back.
        problems.push(format!(
            "{}: the value of {} is not whsec_ followed by base64 (a Standard Webhooks signing secret)",
            key("webhook_secret_env"),
            p.webhook_secret_env.as_deref().unwrap_or_default()
        ));
    }
    Ok([api_key, public_key, secret_key, webhook_secret])
}

/// A provider table's `rate_limit`: one limit, a list, `"off"`, or (unset) the kind's default
/// — a sandbox key's own where the kind has one.
fn provider_rate_limits(
    name: &str,
    p: &RawProvider,
    spec: &crate::provider::KindSpec,
    api_key: Option<&Secret>,
) -> Result<Vec<(NonZeroU32, Duration)>, UsageError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let specs = match &p.rate_limit {
        None => {
            let sandbox = spec
                .sandbox_rate_limits
                .filter(|(prefix, _)| api_key.is_some_and(|k| k.expose().starts_with(prefix)));
            sandbox
                .map_or(spec.default_rate_limits, |(_, limits)| limits)
                .iter()
                .map(|s| s.to_string())
                .collect()
        }
        Some(RateLimitSpec::One(s)) => vec![s.clone()],
        Some(RateLimitSpec::Many(v)) => v.clone(),
    };
    if specs.is_empty() {
        return Err(UsageError::new(format!(
            "{}: an empty list; give one or more limits like \"10/s\", or \"off\"",
            key("rate_limit")
        )));
    }
    if specs.len() > 1 && specs.iter().any(|s| s == "off") {
        return Err(UsageError::new(format!(
            "{}: \"off\" cannot be combined with limits",
            key("rate_limit")
        )));
    }
    let mut rate_limits = Vec::new();
    for spec in &specs {
        if spec == "off" {
            continue;
        }
        rate_limits.push(rate_limit(&key("rate_limit"), spec)?);
    }
    Ok(rate_limits)
}

/// Mopay Nigeria's settings (`status_endpoint`, `id_param`, the JSON pointers, `status_map`),
/// each checked; other kinds refuse these keys before this is read.
fn mopay_ng_settings(name: &str, p: &RawProvider) -> Result<MopayNgConfig, UsageError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let mut status_map = BTreeMap::new();
    for (word, ours) in p.status_map.iter().flatten() {
        let Some(mapped) = crate::provider::Mapped::from_state_word(ours) else {
            return Err(UsageError::new(format!(
                "{}: {word:?} maps to {:?}, which is not PENDING, COMPLETED, FAILED, CANCELLED or EXPIRED",
                key("status_map"),
                ours.to_ascii_uppercase()
            )));
        };
        status_map.insert(word.clone(), mapped);
    }
    for (k, v) in [
        ("status_pointer", &p.status_pointer),
        ("amount_pointer", &p.amount_pointer),
        ("reference_pointer", &p.reference_pointer),
        ("currency_pointer", &p.currency_pointer),
    ] {
        if let Some(v) = v
            && !v.starts_with('/')
        {
            return Err(UsageError::new(format!(
                "{}: {v:?} is not a JSON pointer (it starts with '/', like \"/DATA/status\")",
                key(k)
            )));
        }
    }
    Ok(MopayNgConfig {
        status_endpoint: p.status_endpoint.clone(),
        id_param: p.id_param.clone().unwrap_or_else(|| "reference".into()),
        status_pointer: p.status_pointer.clone(),
        amount_pointer: p.amount_pointer.clone(),
        reference_pointer: p.reference_pointer.clone(),
        currency_pointer: p.currency_pointer.clone(),
        status_map,
    })
}

/// `line N: table.key: ` for the byte offset of a parse error.
pub(super) fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_no = text[..offset].matches('\n').count() + 1;
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(line_no - 1).copied().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = lines[..line_no.saturating_sub(1).min(lines.len())]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match (table, key) {
        (Some(t), Some(k)) => format!("line {line_no}: {t}.{k}: "),
        (None, Some(k)) => format!("line {line_no}: {k}: "),
        _ => format!("line {line_no}: "),
    }
}

/// Parses `"10/s"`, `"100/min"`, `"200/h"`, or a count per any duration (`"5/10s"`).
pub fn rate_limit(key: &str, spec: &str) -> Result<(NonZeroU32, Duration), UsageError> {
    let bad = || {
        UsageError::new(format!(
            "{key}: {spec:?} is not a rate limit like \"10/s\", \"100/min\", \"200/h\", \"5/10s\" or \"off\""
        ))
    };
    let (n, unit) = spec.split_once('/').ok_or_else(bad)?;
    let n: NonZeroU32 = n.trim().parse().map_err(|_| bad())?;
    // The limiter spaces calls evenly: more than a million a second cannot be represented.
    if n.get() > 1_000_000 {
        return Err(UsageError::new(format!(
            "{key}: {spec:?} is more than the limiter can keep (at most 1000000 calls per period); use \"off\" for no limit"
        )));
    }
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        other => match humantime::parse_duration(other) {
            Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(86_400) => d,
            _ => return Err(bad()),
        },
    };
    Ok((n, per))
}

/// The longest any duration in the config may be: ten years (`backoff.max_age`,
/// `late_check`); keys whose values are multiplied or waited on within a call are bounded
/// tighter ([`SHORT`]).
pub const LONGEST: Duration = Duration::from_secs(10 * 365 * 86_400);
/// The bound of timeouts and delays within one check or delivery: one hour.
pub const SHORT: Duration = Duration::from_secs(3600);

/// Parses a humantime duration (`"30s"`, `"2m"`, `"48h"`, `"7d"`), which must be positive and
/// at most [`LONGEST`].
pub fn duration(key: &str, text: &str) -> Result<Duration, UsageError> {
    duration_within(key, text, LONGEST)
}

/// The most delays a `schedule` may list.
pub(super) const MOST_DELAYS: usize = 100;

/// A `schedule`: 1 to 100 delays, each a duration up to a day (a check further apart than
/// that is what `max` of the exponential form is for). `None`: no list.
pub(super) fn delays(key: &str, list: Option<&[String]>) -> Result<Vec<Duration>, UsageError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    if list.is_empty() || list.len() > MOST_DELAYS {
        return Err(UsageError::new(format!(
            "{key}: give 1 to {MOST_DELAYS} delays such as [\"10s\", \"30s\", \"2m\"], got {}",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, d)| duration_within(&format!("{key}[{i}]"), d, Duration::from_secs(86_400)))
        .collect()
}

/// As [`duration`], at most `max`.
pub fn duration_within(key: &str, text: &str, max: Duration) -> Result<Duration, UsageError> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err(UsageError::new(format!(
            "{key}: must be longer than zero, got {text:?}"
        ))),
        Ok(d) if d > max => Err(UsageError::new(format!(
            "{key}: {text:?} is longer than the longest allowed, {}",
            humantime::format_duration(max)
        ))),
        Ok(d) => Ok(d),
        Err(e) => Err(UsageError::new(format!(
            "{key}: {text:?} is not a duration like \"30s\", \"2m\" or \"48h\" ({e})"
        ))),
    }
}

pub(super) fn positive(key: &str, value: i64, max: i64) -> Result<u32, UsageError> {
    if value < 1 || value > max {
        return Err(UsageError::new(format!(
            "{key}: must be 1 to {max}, got {value}"
        )));
    }
    Ok(value as u32)
}

/// Parses `"1MiB"`, `"512KiB"`, `"65536"`.
pub(super) fn byte_size(key: &str, text: &str) -> Result<usize, UsageError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "k" => 1024,
        "MiB" | "MB" | "M" => 1024 * 1024,
        _ => 0,
    };
    match digits.parse::<usize>() {
        Ok(n) if mult > 0 && n > 0 => Ok(n.saturating_mul(mult)),
        _ => Err(UsageError::new(format!(
            "{key}: {text:?} is not a size like \"1MiB\", \"512KiB\" or \"65536\""
        ))),
    }
}
