//! Little as seed 001 shows it.

use super::*;

pub(crate) struct Little;

/// The simulator's own RSA key pair for Little's callbacks: a test key made for it, not
/// Little's (whose private half only Little holds). `simulate --callbacks-to` writes the public
/// half beside the config for `webhook_public_key`. Not a secret.
pub const SIM_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCW7mOUBhFOV612
QB7rx+qOCGfL2KJObGQoiTNLnQeu5gxAm8qv8q5qQPxjp/NJvvUgboOvqUC5iKyl
oBRNmA6rGPOhl85zi3AS5M1YVejjS9E//P0hUtm2Mv0qs8YnnRL62nBXAVXDEQee
a3VmYwySkXFADTBxE7I9YzRO1guCsQEwwMoOitR8GpN7f700pCMv0E8Emnv+s1Im
CyiAZ1VP5rI9Ymcm7qACjF9Gjhq0+JM2KGIvv4OMtMGULOvTPnsYzQXo1AaPNeyY
XsHPKMzApWErQgzzkOK2w2wxoPCOXUl22yLHNT/0n+DZ6SOOF+UN37yMNu9VvyhI
+kO/rg+DAgMBAAECggEAK7ckdG1FefF/Nm7gBd7DmxvoJGy8pgZTBEKo7s+uuAO9
rMDy9f9OcUwdTigJGWULzrbzwV8+df6WMuqotsjCBuCVQEqd622Jqo9Gwr0vVRZS
pzv5fTtn/5PJLCMh07t1Ed9PBoRGeNdn44SwXlV2AMXLjYfEbhwMVidzsRnh/5of
GdkbekmY+p61ZsP/ZEZl9Vn/QSQyxp7I8ewyEW2ACUwNzcAZyFxAIUn+d1h9pCJW
foA6B8CZjIywdN0KpC+ELAOr8Z9svTVXVtHF6lEANm3om03lgApzgcOz86ZPHyNr
NVwez9xZxOlI9axBwhqOrNDHG08wo+G//kXhP6F8YQKBgQDKUBaQxvfrI65u7Z79
n533//TvG5TZZLYPJh02zhb4XFeG57nZWK8rraMNL8QnMt8pihcWO6ZFec8f7Et5
qAwivlsfqxenQ6x522W70MJxO7SXoWxLHrBS43G5ekEwrlg6lrMeoQG6EZkSxcli
QF0LTbhVFVpz6KFEdaoo3djl6QKBgQC++74xW5LCcpA7dhiNn+Wi3oHX5b0bKNEc
54fTJCwlS6bPR1ZK9eXKMVUble0jNwHGqdiXqrJgjoK8NAMByHJY2FtL8EcybjkW
poQqs+Nlln+RZDNzQqFzhyiDqEQCzWayBjlia3qg7HPwbd+fBCS8W8uJEkZ1nNOb
sxT8oAkqiwKBgQCGrTfIWttw6YjWCVLcjSQQkpAPmDHHYfacMQgjkp/R507Q3HNo
j1PU5Lr1LUYLvh62vVlPEJhICaVrH9bCfq7NdiCc/T06uJ8ZY4bet0KpNFCs2+WG
QECqfQQYr5yz9mt/XRCSJCZNIiffSlEcGbKWsr8xzIwxOrwYIagLmlsn+QKBgQCG
cwFVDAuIWlCRm7TzVwK5ov0zuWdkzFpSh+iFyuxNITIAsE7enLe1nP82WVjFNr9I
VV/GfgPvl8QPrGoFglCFnWLAVho5NYF5IabfzR4j8UxDVZAm71xr0VXDQd0HQASx
BVK2p8V/rpZ8R01rS+Z0uAbUq4nw2IPcE7mNkziAuwKBgBJ6XJ8jz2Sv+ncr6jyT
Ib7SG1OAE3UrIOuhEKGmUU6xa6VxoR44GrgmGxCez32u++AVZoPpwQXsk7W5dgqZ
llSBLZ5xpo/vm8ZuYzSRbg9uTjdN8SUmr7/j0lp96DfHhcErcahpF6DdXLiJBWQR
Lp+pwURVP2TA3ZyjHR3e5pNZ
-----END PRIVATE KEY-----
";

/// The public half of [`SIM_PRIVATE_KEY`].
pub const SIM_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAlu5jlAYRTletdkAe68fq
jghny9iiTmxkKIkzS50HruYMQJvKr/KuakD8Y6fzSb71IG6Dr6lAuYispaAUTZgO
qxjzoZfOc4twEuTNWFXo40vRP/z9IVLZtjL9KrPGJ50S+tpwVwFVwxEHnmt1ZmMM
kpFxQA0wcROyPWM0TtYLgrEBMMDKDorUfBqTe3+9NKQjL9BPBJp7/rNSJgsogGdV
T+ayPWJnJu6gAoxfRo4atPiTNihiL7+DjLTBlCzr0z57GM0F6NQGjzXsmF7BzyjM
wKVhK0IM85DitsNsMaDwjl1JdtsixzU/9J/g2ekjjhflDd+8jDbvVb8oSPpDv64P
gwIDAQAB
-----END PUBLIC KEY-----
";

/// Signs `message` RSA-SHA256 (PKCS#1 v1.5) with [`SIM_PRIVATE_KEY`], base64.
fn sign(message: &[u8]) -> Option<String> {
    use base64::Engine as _;
    let body: String = SIM_PRIVATE_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).ok()?;
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        message,
        &mut sig,
    )
    .ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(sig))
}

fn status_word(v: &View) -> &'static str {
    match v.state {
        SimState::Created | SimState::Processing | SimState::Unpaid => "PENDING",
        SimState::Failed => "FAILED",
        SimState::Cancelled => "CANCELLED",
        SimState::Expired => "EXPIRED",
        SimState::Unknown => "ON_HOLD",
        _ => "COMPLETED",
    }
}

impl Shape for Little {
    fn path(&self) -> &'static str {
        "/api/payments-v2/{id}"
    }

    fn long_poll(&self, query: &HashMap<String, String>) -> bool {
        query.get("longPoll").is_some_and(|v| v == "true")
    }

    fn authorised(&self, key: &str, h: &dyn Fn(&str) -> String) -> bool {
        h("x-api-key") == key
    }

    fn unauthorised(&self) -> Response {
        plain_error(StatusCode::UNAUTHORIZED, "Unauthorized")
    }

    fn not_found(&self) -> Response {
        plain_error(StatusCode::NOT_FOUND, "Not found")
    }

    fn body(&self, v: &View) -> Response {
        let status = status_word(v);
        // Seed 001's shape: the amount in major units as a JSON number, exactly the ledger's
        // (nothing is rounded); `key` is "" as in the seed's example, so the merchant
        // reference is absent; no currency in the status body.
        let intent = format!("intent-{}", v.id.len());
        json_response(
            StatusCode::OK,
            json!({"date": "2024-05-13T08:26:18.719Z", "data": {
                "reference": intent, "status": status,
                "payload": {"billingAddress": {"firstName": "", "lastName": "", "address1": "",
                    "locality": "", "administrativeArea": "", "postalCode": "", "country": "",
                    "email": "", "phoneNumber": ""}},
                "amount": number(&v.amount), "payment": {"provider": "MPESA", "details": null},
                "key": "", "attempts": [{"reference": intent, "provider": "MPESA", "status": status}],
            }}),
        )
    }

    /// The payment-callback example's shape (pay.little.africa: payment-callback), `reference`
    /// the session's id, `COMPLETED` or `FAILED` only [docs]; signed RSA-SHA256 over
    /// `timestamp + "." + JSON.stringify(body)` (the body as sent, compact).
    fn callback(&self, v: &View, _secret: &str) -> Option<(Vec<(&'static str, String)>, String)> {
        let status = status_word(v);
        if status != "COMPLETED" && status != "FAILED" {
            return None;
        }
        let body = json!({"reference": v.id, "status": status,
            "payload": {"billingAddress": {"firstName": "", "lastName": "", "address1": "",
                "locality": "", "administrativeArea": "", "postalCode": "", "country": "",
                "email": "", "phoneNumber": ""}},
            "amount": number(&v.amount), "key": "", "currency": v.currency, "provider": "MPESA",
            "date": "2025-02-03T13:49:46.000Z"})
        .to_string();
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = sign(format!("{ts}.{body}").as_bytes())?;
        Some((
            vec![
                ("x-littlepay-signature", sig),
                ("x-littlepay-timestamp", ts),
            ],
            body,
        ))
    }

    fn table(&self) -> &'static str {
        "api_key_env = \"{key_env}\""
    }

    fn demo(&self) -> Demo {
        Demo {
            currency: "KES",
            id: Some(|n| format!("LP-{n:04}")),
            extra: &[],
        }
    }
}
