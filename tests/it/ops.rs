//! Operating it: `/healthz` and `/metrics`, the HTTP API, `verify`, systemd notify, and the
//! generated completions and man page — through the real binary.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{Engine, Env, Guard, bin, count, one, output, text, wait_for};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Adds `[admin]` and `[api]` on free loopback ports to the config; returns their base URLs.
pub(crate) fn listeners(env: &Env, token: bool) -> (String, String) {
    let (admin, api) = (free_port(), free_port());
    let mut extra =
        format!("[admin]\nlisten = \"127.0.0.1:{admin}\"\n[api]\nlisten = \"127.0.0.1:{api}\"\n");
    if token {
        extra.push_str("token_env = \"PAYRECON_TEST_API_TOKEN\"\n");
    }
    let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
    // The tables go before the provider tables, which end the file.
    let at = text_cfg.find("[providers.").unwrap();
    std::fs::write(
        &env.config_path,
        format!("{}{extra}{}", &text_cfg[..at], &text_cfg[at..]),
    )
    .unwrap();
    (
        format!("http://127.0.0.1:{admin}"),
        format!("http://127.0.0.1:{api}"),
    )
}

/// Starts `payrecon run` and waits for its listeners.
pub(crate) async fn daemon(env: &Env, urls: &[&str]) -> Guard {
    daemon_with(env, urls, Stdio::null()).await
}

/// As [`daemon`], its log going to `stderr`.
pub(crate) async fn daemon_with(env: &Env, urls: &[&str], stderr: Stdio) -> Guard {
    let mut c = env.cmd();
    c.arg("run").stdout(Stdio::null()).stderr(stderr);
    let child = Guard(c.spawn().unwrap());
    let ports: Vec<u16> = urls
        .iter()
        .map(|u| u.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    let up = wait_for(Duration::from_secs(30), || {
        ports
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
    })
    .await;
    assert!(up, "the daemon's listeners did not come up");
    child
}

pub(crate) async fn healthz(client: &reqwest::Client, admin: &str) -> (u16, serde_json::Value) {
    let r = client.get(format!("{admin}/healthz")).send().await.unwrap();
    let code = r.status().as_u16();
    (
        code,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap(),
    )
}

/// `/healthz` polled until it answers 503 or 30 s pass; the last answer.
async fn healthz_until_503(admin: &str) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let mut last = (0, serde_json::Value::Null);
    for _ in 0..300 {
        last = healthz(&client, admin).await;
        if last.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Env with a simulator demanding `sk_right`, the config naming PAYRECON_TEST_KEY.
async fn keyed_env(key: &str) -> Env {
    let mut env = Env::start_with_key(Some("sk_right")).await;
    let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text_cfg + "api_key_env = \"PAYRECON_TEST_KEY\"\n",
    )
    .unwrap();
    env.vars.push(("PAYRECON_TEST_KEY".into(), key.into()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_report_what_happened() {
    let env = keyed_env("sk_right").await;
    let l = env.ledger();
    env.session(&l, "h1", "complete");
    env.session(&l, "h2", "fail");
    let (admin, api) = listeners(&env, false);
    let _d = daemon(&env, &[&admin, &api]).await;
    let client = reqwest::Client::new();
    let mut last = (0, serde_json::Value::Null);
    for _ in 0..300 {
        last = healthz(&client, &admin).await;
        let done = count(
            &l,
            "SELECT count(*) FROM sessions WHERE status <> 'PENDING'",
        ) == 2;
        // The admin endpoint's stats reading is up to 2 s old: polled until it shows both.
        if last.0 == 200
            && !last.1["last_pass"].is_null()
            && done
            && last.1["events"]["waiting"] == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 200, "{}", last.1);
    assert_eq!(last.1["status"], "ok");
    assert_eq!(last.1["ledger"]["ok"], true);
    assert_eq!(
        last.1["events"]["waiting"], 2,
        "no webhook: the two events wait"
    );
    let metrics = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str, labels: &[&str]| -> f64 {
        metrics
            .lines()
            .filter(|l| !l.starts_with('#') && l.split(['{', ' ']).next() == Some(name))
            .filter(|l| labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    };
    // Every sample line parses as `name{labels} value`.
    for line in metrics
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        assert!(
            line.rsplit(' ').next().unwrap().parse::<f64>().is_ok(),
            "not Prometheus text: {line}"
        );
        assert!(line.starts_with("payrecon_"), "{line}");
    }
    assert_eq!(
        value(
            "payrecon_checks_total",
            &["provider=\"mopay\"", "outcome=\"paid\""]
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        value("payrecon_checks_total", &["outcome=\"failed\""]),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        value("payrecon_sessions", &["status=\"COMPLETED\""]),
        1.0,
        "{metrics}"
    );
    assert_eq!(value("payrecon_events_waiting", &[]), 2.0, "{metrics}");
    assert!(
        value("payrecon_pass_duration_seconds_count", &[]) >= 1.0,
        "{metrics}"
    );
    assert!(
        value("payrecon_check_duration_seconds_count", &[]) >= 2.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_turns_503_when_credentials_are_refused() {
    let env = keyed_env("sk_wrong").await;
    let l = env.ledger();
    env.session(&l, "r1", "complete");
    let (admin, api) = listeners(&env, false);
    let _d = daemon(&env, &[&admin, &api]).await;
    let last = healthz_until_503(&admin).await;
    assert_eq!(last.0, 503, "{}", last.1);
    assert_eq!(
        last.1["refused_credentials"][0]["provider"], "mopay",
        "{}",
        last.1
    );
    assert!(last.1["problems"][0].as_str().unwrap().contains("refused"));
}

async fn the_api_enqueues_reads_and_verifies_behind_its_token(engine: Engine) {
    const TOKEN: &str = "tok_0123456789abcdef";
    let mut env = Env::start_on(engine).await;
    env.set("cron", "\"0 0 0 1 1 *\""); // no scheduled pass: only the API acts
    env.vars
        .push(("PAYRECON_TEST_API_TOKEN".into(), TOKEN.into()));
    let (admin, api) = listeners(&env, true);
    let _d = daemon(&env, &[&admin, &api]).await;
    env.sim
        .insert("api1", "100.00", "ORDER9", "complete".parse().unwrap());
    let client = reqwest::Client::new();
    let post = |path: &str, body: String, token: Option<&str>| {
        let mut r = client
            .post(format!("{api}{path}"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let good = r#"{"provider":"mopay","session_id":"api1","reference":"ORDER9","amount":"100.00","currency":"LSL","provider_ref":"MOPTX1"}"#;
    assert_eq!(
        post("/v1/sessions", good.into(), None)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post("/v1/sessions", good.into(), Some("tok_wrong"))
            .await
            .unwrap()
            .status(),
        401
    );
    let r = client
        .get(format!("{api}/v1/sessions/mopay/api1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "reads need the token too");
    let r = post("/v1/sessions/mopay/api1/verify", String::new(), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "so does verify");
    let doc = |token: Option<&'static str>| {
        let mut r = client.get(format!("{api}/v1/openapi.json"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(doc(None).await.unwrap().status(), 401, "and the document");
    let d: serde_json::Value =
        serde_json::from_slice(&doc(Some(TOKEN)).await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(d["security"], serde_json::json!([{"bearer": []}]), "{d}");
    assert_eq!(
        d["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let r = post("/v1/sessions", good.into(), Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = post("/v1/sessions", good.into(), Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "idempotent");
    // Bad input: a 4xx naming the field, nothing written.
    for (body, code, field) in [
        ("{not json".to_string(), 400, None),
        (
            r#"{"provider":"mopay","session_id":"x","amout":"1.00"}"#.to_string(),
            422,
            Some("amout"),
        ),
        (
            r#"{"provider":"mopay","session_id":"x","amount":100.5}"#.to_string(),
            422,
            Some("amount"),
        ),
        (
            r#"{"provider":"mopay","session_id":"x","amount":"1,00"}"#.to_string(),
            422,
            Some("amount"),
        ),
        (
            r#"{"provider":"paypal","session_id":"x"}"#.to_string(),
            422,
            Some("provider"),
        ),
        (
            r#"{"provider":"mopay","session_id":"x","provider_ref":"trxn_1\n"}"#.to_string(),
            422,
            Some("provider_ref"),
        ),
        (
            r#"{"provider":"mopay"}"#.to_string(),
            422,
            Some("session_id"),
        ),
        (
            format!(
                r#"{{"provider":"mopay","session_id":"{}"}}"#,
                "y".repeat(20_000)
            ),
            413,
            None,
        ),
    ] {
        let r = post("/v1/sessions", body.clone(), Some(TOKEN))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "{}", &body[..body.len().min(80)]);
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert!(v["error"].is_string());
        if let Some(f) = field {
            assert_eq!(v["field"], f, "{v}");
        }
    }
    let l = env.ledger();
    assert_eq!(count(&l, "SELECT count(*) FROM sessions"), 1);
    let r = client
        .get(format!("{api}/v1/sessions/mopay/api1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["status"], "PENDING");
    assert_eq!(v["provider_ref"], "MOPTX1", "{v}");
    // Verify: checked with the provider now, recorded with source `api`.
    let r = post("/v1/sessions/mopay/api1/verify", String::new(), Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["amount"], "100.00");
    assert_eq!(one(&l, "SELECT source FROM transitions"), "api");
    let r = post("/v1/sessions/mopay/nope/verify", String::new(), Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

async fn verify_from_the_shell(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    env.session(&l, "shell1", "fail");
    let mut c = env.cmd();
    c.args(["verify", "shell1"]);
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("status                 FAILED"), "{out}");
    assert_eq!(one(&l, "SELECT source FROM transitions"), "api");
    let mut c = env.cmd();
    c.args(["verify", "missing"]);
    assert_eq!(output(c).await.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_ready_watchdog_and_stopping() {
    let env = Env::start().await;
    let sock_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // `exec` keeps the shell's pid, which is what WATCHDOG_PID must name.
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "WATCHDOG_PID=$$ exec {} --config {} run",
            env!("CARGO_BIN_EXE_payrecon"),
            env.config_path.display()
        ))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut d = Guard(c.spawn().unwrap());
    let mut seen = String::new();
    let mut buf = [0u8; 512];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1"))
        && std::time::Instant::now() < deadline
    {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    assert!(
        seen.contains("READY=1") && seen.contains("WATCHDOG=1"),
        "{seen}"
    );
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &d.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("STOPPING=1") && std::time::Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(seen.contains("STOPPING=1"), "{seen}");
    assert!(
        wait_for(Duration::from_secs(10), || d
            .0
            .try_wait()
            .unwrap()
            .is_some())
        .await
    );
    assert_eq!(d.0.wait().unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_page_come_from_the_cli_definition() {
    let mut c = bin();
    c.args(["completions", "bash"]);
    let (out, _) = text(&output(c).await);
    assert!(out.contains("payrecon") && out.contains("verify") && out.contains("--log-format"));
    let mut c = bin();
    c.arg("man");
    let (out, _) = text(&output(c).await);
    assert!(
        out.contains(".TH payrecon") && out.contains("check\\-config"),
        "{}",
        &out[..out.len().min(300)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unit_file_verifies_and_stays_hardened() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/payrecon.service"
    ))
    .unwrap();
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "User=payrecon",
        "EnvironmentFile=",
        "StateDirectory=payrecon",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.contains(needed), "the unit lost {needed}");
    }
    // systemd-analyze checks that the binary exists: point the copy at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("payrecon.service");
    std::fs::write(
        &copy,
        // …and leave out the man page, which only the package installs (the package test
        // verifies the installed units, man page and all).
        unit.replace("/usr/bin/payrecon", env!("CARGO_BIN_EXE_payrecon"))
            .replace("man:payrecon(1) ", ""),
    )
    .unwrap();
    let mut c = std::process::Command::new("systemd-analyze");
    c.arg("verify").arg(&copy);
    let o = output(c).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "systemd-analyze verify: {out}{err}");
    let mut c = std::process::Command::new("systemd-analyze");
    c.args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy);
    let (out, _) = text(&output(c).await);
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("exposure level for payrecon.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {out}"));
    assert!(score <= 2.0, "exposure {score} is worse than OK");
}

crate::on_both_engines!(
    the_api_enqueues_reads_and_verifies_behind_its_token,
    verify_from_the_shell,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_turns_503_when_every_session_is_not_found() {
    let wrong = crate::support::canned::Canned::start(404, vec![], b"{}".to_vec()).await;
    let env = Env::start().await;
    env.set("base_url", &format!("\"{}\"", wrong.url));
    let l = env.ledger();
    for i in 0..3 {
        env.session(&l, &format!("nf{i}"), "complete");
    }
    let (admin, api) = listeners(&env, false);
    let _d = daemon(&env, &[&admin, &api]).await;
    let last = healthz_until_503(&admin).await;
    assert_eq!(last.0, 503, "{}", last.1);
    assert_eq!(last.1["misdirected"][0]["provider"], "mopay", "{}", last.1);
    assert!(
        last.1["problems"][0]
            .as_str()
            .unwrap()
            .contains("providers.mopay.base_url"),
        "{}",
        last.1
    );
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE status = 'PENDING' AND not_found_count = 0"
        ),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_demands_its_token_when_it_has_one() {
    let mut env = Env::start().await;
    let admin = free_port();
    let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
    let at = text_cfg.find("[providers.").unwrap();
    std::fs::write(
        &env.config_path,
        format!(
            "{}[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_env = \"PAYRECON_TEST_ADMIN_TOKEN\"\n{}",
            &text_cfg[..at],
            &text_cfg[at..]
        ),
    )
    .unwrap();
    env.vars
        .push(("PAYRECON_TEST_ADMIN_TOKEN".into(), "adm_0123456789".into()));
    let admin = format!("http://127.0.0.1:{admin}");
    let _d = daemon(&env, &[&admin]).await;
    let client = reqwest::Client::new();
    for path in ["/healthz", "/metrics"] {
        let r = client.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} without a token");
        let r = client
            .get(format!("{admin}{path}"))
            .bearer_auth("adm_wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with a wrong token");
        let r = client
            .get(format!("{admin}{path}"))
            .bearer_auth("adm_0123456789")
            .send()
            .await
            .unwrap();
        assert_ne!(r.status().as_u16(), 401, "{path} with the token");
    }
}

/// The API applies `add`'s rules: the same session again is 200, the same id with another
/// amount is 409 naming the field and both values, a key given twice is 400, an id with
/// surrounding whitespace or a reference with a control character is 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_conflicts_duplicate_keys_and_untrusted_text() {
    let env = Env::start().await;
    env.set("cron", "\"0 0 0 1 1 *\"");
    let (admin, api) = listeners(&env, false);
    let _d = daemon(&env, &[&admin, &api]).await;
    let client = reqwest::Client::new();
    let post = |body: &str| {
        client
            .post(format!("{api}/v1/sessions"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let answer = |r: reqwest::Response| async move {
        let code = r.status().as_u16();
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        (code, body)
    };
    let good = r#"{"provider":"mopay","session_id":"c1","reference":"R1","amount":"100.00","currency":"LSL"}"#;
    assert_eq!(answer(post(good).await.unwrap()).await.0, 201);
    assert_eq!(answer(post(good).await.unwrap()).await.0, 200);
    // 100.0 is 100.00: the same session.
    let same = good.replace("100.00", "100.0");
    assert_eq!(answer(post(&same).await.unwrap()).await.0, 200);
    let (code, body) = answer(post(&good.replace("100.00", "90.00")).await.unwrap()).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["field"], "amount");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("\"100.00\", not \"90.00\""), "{msg}");
    let (code, body) = answer(
        post(r#"{"provider":"mopay","session_id":"c2","amount":"1.00","amount":"999.00"}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("appears twice"),
        "{body}"
    );
    for (bad, field) in [
        (r#"{"provider":"mopay","session_id":" c3"}"#, "session_id"),
        (
            r#"{"provider":"mopay","session_id":"c4","reference":"R\nINFO forged"}"#,
            "reference",
        ),
        (
            r#"{"provider":"mopay","session_id":"c5","reference":"R\u0085"}"#,
            "reference",
        ),
    ] {
        let (code, body) = answer(post(bad).await.unwrap()).await;
        assert_eq!(code, 422, "{bad}: {body}");
        assert_eq!(body["field"], field, "{bad}: {body}");
    }
    // A path segment that is not UTF-8 gets the API's JSON error too.
    let r = client
        .get(format!("{api}/v1/sessions/mopay/%FF%FE"))
        .send()
        .await
        .unwrap();
    let (code, body) = answer(r).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("UTF-8"), "{body}");
    let l = env.ledger();
    assert_eq!(
        one(&l, "SELECT amount FROM sessions WHERE session_id = 'c1'"),
        "100.00"
    );
    assert_eq!(count(&l, "SELECT count(*) FROM sessions"), 1);
}

/// `GET /v1/openapi.json` describes the API as it answers: the request's fields are exactly the
/// ones the parser takes and `provider` lists the configured tables; a session's JSON has the
/// schema's properties and never `lease_owner`; what the API answered below is documented; and
/// a wrong path or method gets the API's JSON error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_publishes_the_document_it_answers_by() {
    let env = Env::start().await;
    env.set("cron", "\"0 0 0 1 1 *\"");
    let (admin, api) = listeners(&env, false);
    let _d = daemon(&env, &[&admin, &api]).await;
    let client = reqwest::Client::new();
    let json = |r: reqwest::Response| async move {
        let code = r.status().as_u16();
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        (code, kind, body)
    };
    let (code, kind, doc) = json(
        client
            .get(format!("{api}/v1/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, kind.as_str()), (200, "application/json"));
    assert_eq!(doc["openapi"], "3.1.0");
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/v1/callbacks/{provider}",
            "/v1/openapi.json",
            "/v1/sessions",
            "/v1/sessions/{provider}/{session_id}",
            "/v1/sessions/{provider}/{session_id}/hint",
            "/v1/sessions/{provider}/{session_id}/verify",
            "/v1/unmatched"
        ]
    );
    let request = &doc["components"]["schemas"]["SessionRequest"];
    let mut fields: Vec<&str> = request["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "amount",
            "created_at",
            "currency",
            "provider",
            "provider_ref",
            "reference",
            "session_id"
        ]
    );
    assert_eq!(request["additionalProperties"], false);
    assert_eq!(
        request["required"],
        serde_json::json!(["provider", "session_id"])
    );
    assert_eq!(
        request["properties"]["provider"]["enum"],
        serde_json::json!(["mopay"])
    );
    assert!(doc.get("security").is_none(), "no token configured");
    let session = &doc["components"]["schemas"]["Session"];
    assert_eq!(
        session["properties"]["status"]["$ref"],
        "#/components/schemas/Status"
    );
    assert_eq!(
        doc["components"]["schemas"]["Status"]["enum"],
        serde_json::json!([
            "PENDING",
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "EXPIRED",
            "REVIEW"
        ])
    );
    let documented = |path: &str, method: &str, code: u16| {
        doc["paths"][path][method]["responses"]
            .get(code.to_string())
            .is_some()
    };

    // A session id holding a percent sign is sent with it escaped, and found.
    let r = client
        .post(format!("{api}/v1/sessions"))
        .body(r#"{"provider":"mopay","session_id":"a%41 b","amount":"5.00"}"#)
        .send()
        .await
        .unwrap();
    let (code, _, created) = json(r).await;
    assert_eq!(code, 201, "{created}");
    assert!(documented("/v1/sessions", "post", code));
    let mut keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want: Vec<&str> = session["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    want.sort();
    assert_eq!(keys, want, "a session's JSON has the schema's properties");
    assert!(!keys.contains(&"lease_owner") && !keys.contains(&"rowid"));
    let read = "/v1/sessions/{provider}/{session_id}";
    let r = client
        .get(format!("{api}/v1/sessions/mopay/a%2541%20b"))
        .send()
        .await
        .unwrap();
    let (code, _, found) = json(r).await;
    assert_eq!((code, found["session_id"].as_str()), (200, Some("a%41 b")));
    let r = client
        .get(format!("{api}/v1/sessions/mopay/a%41%20b"))
        .send()
        .await
        .unwrap();
    let (code, _, body) = json(r).await;
    assert_eq!(code, 404, "aA b is another id: {body}");
    assert!(documented(read, "get", code));
    let (code, _, body) = json(
        client
            .post(format!("{api}/v1/sessions"))
            .body(r#"{"provider":"mopay","session_id":"z","amount":"1e3"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, body["field"].as_str()), (422, Some("amount")));
    assert!(documented("/v1/sessions", "post", code));

    // Off the map: JSON errors, not axum's empty bodies.
    for (method, path, want) in [
        (reqwest::Method::GET, "/v2/nothing", 404),
        (reqwest::Method::GET, "/v1/sessions/mopay", 404),
        (reqwest::Method::DELETE, "/v1/sessions", 405),
        (reqwest::Method::PUT, "/v1/sessions/mopay/z", 405),
    ] {
        let (code, kind, body) = json(
            client
                .request(method, format!("{api}{path}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(code, want, "{path}: {body}");
        assert_eq!(kind, "application/json");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

/// A hint (`POST …/hint`) has the session checked with its provider now, in the background —
/// with no scheduled pass at all here — and never sets a state itself; hints close together
/// count once; a final session needs no check; an unknown one answers 404 and costs no call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_checks_now_and_never_sets_a_state() {
    let env = Env::start().await;
    env.set("cron", "\"0 0 0 1 1 *\""); // no scheduled pass: only hints act
    env.set("poll", "\"off\"");
    let (admin, api) = listeners(&env, false);
    let _d = daemon(&env, &[&admin, &api]).await;
    let l = env.ledger();
    env.session(&l, "h1", "complete");
    env.session(&l, "h2", "pending");
    let client = reqwest::Client::new();
    let hint = |id: &str| {
        client
            .post(format!("{api}/v1/sessions/mopay/{id}/hint"))
            .send()
    };
    let calls = || {
        env.sim
            .status_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let r = hint("h1").await.unwrap();
    assert_eq!(r.status(), 202);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["status"], "PENDING", "the hint itself sets nothing: {v}");
    assert!(
        wait_for(Duration::from_secs(15), || {
            one(&l, "SELECT status FROM sessions WHERE session_id = 'h1'") == "COMPLETED"
        })
        .await,
        "h1 checked after its hint"
    );
    assert_eq!(one(&l, "SELECT source FROM transitions"), "api");
    assert_eq!(hint("h1").await.unwrap().status(), 200, "final: no check");
    // Two hints close together: one check.
    assert_eq!(hint("h2").await.unwrap().status(), 202);
    assert_eq!(hint("h2").await.unwrap().status(), 200, "counted once");
    assert!(
        wait_for(Duration::from_secs(15), || {
            one(&l, "SELECT checks FROM sessions WHERE session_id = 'h2'") == "1"
        })
        .await,
        "h2 checked once"
    );
    let before = calls();
    let r = hint("nobody").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(calls(), before, "an unknown session costs no call");
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'h2'"),
        "PENDING"
    );
}

/// The hex HMAC-SHA256 of `body` keyed with `secret`, computed by `openssl` (not by payrecon).
fn openssl_hmac(secret: &str, body: &str) -> String {
    let out = crate::support::openssl(&["dgst", "-sha256", "-hmac", secret], body.as_bytes());
    String::from_utf8(out)
        .unwrap()
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string()
}

/// Every provider kind with no scheduled pass: only hints and callbacks act.
pub(crate) async fn hints_only_env() -> Env {
    let env = Env::start_all_providers().await;
    env.set("cron", "\"0 0 0 1 1 *\"");
    env.set("poll", "\"off\"");
    env
}

/// [`hints_only_env`], with `kind`'s callbacks signed with `secret`, held in the variable
/// `var` its `webhook_secret_env` names.
pub(crate) async fn signing_env(kind: &str, var: &str, secret: &str) -> Env {
    let mut env = hints_only_env().await;
    let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
        &format!("kind = \"{kind}\"\n"),
        &format!("kind = \"{kind}\"\nwebhook_secret_env = \"{var}\"\n"),
    );
    std::fs::write(&env.config_path, text).unwrap();
    env.vars.push((var.into(), secret.into()));
    env
}

/// Vesicash's callbacks signed with `wh_secret_123` (its `webhook_secret_env`).
pub(crate) async fn signing_vesicash_env() -> Env {
    signing_env("vesicash", "PAYRECON_TEST_VESICASH_WH", "wh_secret_123").await
}

/// A callback naming a payment by the provider's second id (Moflay's `trxn_…`, the session kept
/// by its `pay_…` id with `provider_ref`) reaches the session: it is checked, and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_naming_the_second_id_reaches_the_session() {
    let mut env = hints_only_env().await;
    let (admin, api) = listeners(&env, true);
    env.vars
        .push(("PAYRECON_TEST_API_TOKEN".into(), "api-token".into()));
    let _d = daemon(&env, &[&admin, &api]).await;
    let l = env.ledger();
    // The simulator's Moflay answers `transactionId` "trxn_<length of the id>": trxn_7.
    crate::support::DirectSql::execute_batch(
        &l,
        "INSERT INTO sessions (provider, session_id, provider_ref) VALUES ('moflay', 'pay_cb1', 'trxn_7')",
    )
    .unwrap();
    let post = |body: &'static str| {
        let url = format!("{api}/v1/callbacks/moflay");
        async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        post(r#"{"type":"payment.completed","data":{"transactionId":"trxn_unknown"}}"#).await,
        202
    );
    assert_eq!(
        post(r#"{"type":"payment.completed","data":{"transactionId":"trxn_7"}}"#).await,
        202
    );
    assert!(
        wait_for(Duration::from_secs(15), || {
            one(
                &l,
                "SELECT status FROM sessions WHERE session_id = 'pay_cb1'",
            ) == "COMPLETED"
        })
        .await,
        "checked after a callback naming its trxn_ id"
    );
}

/// A Vesicash callback is a hint: its `mor-signature` (HMAC-SHA256 of the raw body with the
/// webhook secret, as Vesicash documents it) must verify when the secret is configured; a
/// verified one has the session checked, never set. The answer reveals nothing: the same 202
/// and body for a known, unknown or final session and for an unconfigured provider name; the
/// session comes only from the signed body (a `?session_id=` beside a captured signature names
/// nothing); a replayed body counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_provider_callback_is_a_hint() {
    let mut env = signing_vesicash_env().await;
    let (admin, api) = listeners(&env, true);
    env.vars
        .push(("PAYRECON_TEST_API_TOKEN".into(), "api-token".into()));
    let _d = daemon(&env, &[&admin, &api]).await;
    let l = env.ledger();
    env.session_at(&l, "vesicash", "VSC_cb1", "complete");
    env.session_at(&l, "vesicash", "VSC_other", "complete");
    let calls = || {
        env.sim
            .status_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let client = reqwest::Client::new();
    let post =
        |provider: &'static str, body: &'static str, sig: Option<String>, query: &'static str| {
            let mut r = client
                .post(format!("{api}/v1/callbacks/{provider}{query}"))
                .header("content-type", "application/json")
                .body(body);
            if let Some(s) = sig {
                r = r.header("mor-signature", s);
            }
            async move {
                let r = r.send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
    let sign = |body: &str| Some(openssl_hmac("wh_secret_123", body));
    let body =
        r#"{"event":"payment.success","data":{"payment_reference":"VSC_cb1","status":"success"}}"#;
    let before = calls();
    // No token is asked of a provider, but the signature is.
    assert_eq!(post("vesicash", body, None, "").await.0, 401);
    let wrong = openssl_hmac("not_the_secret", body);
    assert_eq!(post("vesicash", body, Some(wrong), "").await.0, 401);
    let accepted = (202, r#"{"accepted":true}"#.to_string());
    let unknown = r#"{"data":{"payment_reference":"VSC_nobody"}}"#;
    assert_eq!(post("vesicash", unknown, sign(unknown), "").await, accepted);
    // A provider name that is not configured answers the same.
    assert_eq!(
        post("nosuch", unknown, None, "?session_id=VSC_cb1").await,
        accepted
    );
    assert_eq!(
        calls(),
        before,
        "refused and unknown callbacks cost no call"
    );
    // A captured signed body with another session in the query: the query names nothing.
    let other = r#"{"data":{"payment_reference":"VSC_nobody2"}}"#;
    assert_eq!(
        post("vesicash", other, sign(other), "?session_id=VSC_other").await,
        accepted
    );
    assert_eq!(post("vesicash", body, sign(body), "").await, accepted);
    assert!(
        wait_for(Duration::from_secs(15), || {
            one(
                &l,
                "SELECT status FROM sessions WHERE session_id = 'VSC_cb1'",
            ) == "COMPLETED"
        })
        .await,
        "checked after its callback"
    );
    assert_eq!(
        one(
            &l,
            "SELECT status FROM sessions WHERE session_id = 'VSC_other'"
        ),
        "PENDING",
        "a ?session_id= beside a signature binds nothing"
    );
    assert_eq!(
        one(
            &l,
            "SELECT checks FROM sessions WHERE session_id = 'VSC_other'"
        ),
        "0"
    );
    // Final now: the same answer again, and a replay of the signed body counts once.
    let calls_then = calls();
    assert_eq!(post("vesicash", body, sign(body), "").await, accepted);
    assert_eq!(post("vesicash", other, sign(other), "").await, accepted);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        calls(),
        calls_then,
        "a final session and a replay cost no call"
    );
}

/// The simulator sends each provider's signed callback in its documented scheme when a
/// payment's answer changes (`simulate --callbacks-to`): Moflay's Standard Webhooks and Little's
/// RSA-SHA256 (under the simulator's own key, named by `webhook_public_key`) verify and are
/// decided with no status call; Vesicash's `mor-signature` verifies and has its session
/// checked (its event body is not published, so it is a hint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_sends_signed_callbacks_that_verify() {
    let mut env = hints_only_env().await;
    let pem = env.dir.path().join("sim-little.pem");
    std::fs::write(&pem, payrecon::simulator::SIM_LITTLE_PUBLIC_KEY).unwrap();
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let text = text
        .replace(
            "kind = \"moflay\"\n",
            "kind = \"moflay\"\nwebhook_secret_env = \"PAYRECON_TEST_SIM_WH\"\n",
        )
        .replace(
            "kind = \"vesicash\"\n",
            "kind = \"vesicash\"\nwebhook_secret_env = \"PAYRECON_TEST_SIM_WH\"\n",
        )
        .replace(
            "kind = \"little\"\n",
            &format!(
                "kind = \"little\"\nwebhook_public_key = {:?}\n",
                pem.display().to_string()
            ),
        );
    std::fs::write(&env.config_path, text).unwrap();
    env.vars.push((
        "PAYRECON_TEST_SIM_WH".into(),
        payrecon::simulator::SIM_WEBHOOK_SECRET.into(),
    ));
    env.vars
        .push(("PAYRECON_TEST_API_TOKEN".into(), "api-token".into()));
    let (admin, api) = listeners(&env, true);
    let _d = daemon(&env, &[&admin, &api]).await;
    env.sim
        .send_callbacks_to(payrecon::simulator::CallbackTarget {
            api: api.clone(),
            secret: payrecon::simulator::SIM_WEBHOOK_SECRET.into(),
        });
    let l = env.ledger();
    crate::support::DirectSql::execute_batch(
        &l,
        "INSERT INTO sessions (provider, session_id, amount, currency) VALUES \
           ('moflay', 'pay_cbsim', '100.00', 'KES'), ('little', 'lit_cbsim', '100.00', 'KES'), \
           ('vesicash', 'VS_cbsim', '100.00', 'KES');",
    )
    .unwrap();
    use payrecon::provider::Kind;
    let before = [Kind::Moflay, Kind::Little].map(|k| env.sim.requests_for(k));
    for (kind, id) in [
        (Kind::Moflay, "pay_cbsim"),
        (Kind::Little, "lit_cbsim"),
        (Kind::Vesicash, "VS_cbsim"),
    ] {
        env.sim.insert_in(
            id,
            "100.00",
            "R",
            "KES",
            "complete.after-300".parse().unwrap(),
        );
        env.sim.callback_when_it_changes(kind, id);
    }
    let status = |id: &str| {
        one(
            &l,
            &format!("SELECT status FROM sessions WHERE session_id = '{id}'"),
        )
    };
    let done = wait_for(Duration::from_secs(20), || {
        ["pay_cbsim", "lit_cbsim", "VS_cbsim"]
            .iter()
            .all(|id| status(id) == "COMPLETED")
    })
    .await;
    assert!(
        done,
        "{} {} {}",
        status("pay_cbsim"),
        status("lit_cbsim"),
        status("VS_cbsim")
    );
    assert_eq!(
        [Kind::Moflay, Kind::Little].map(|k| env.sim.requests_for(k)),
        before,
        "Moflay's and Little's callbacks were their answers: no status call"
    );
    assert!(
        env.sim.requests_for(Kind::Vesicash) >= 1,
        "Vesicash's is a hint: checked"
    );
}
