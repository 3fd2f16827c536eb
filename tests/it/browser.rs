//! The console in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver`'s WebDriver protocol (plain HTTP, no client library) against a daemon and the
//! simulator. A finance person's path — log in, open the REVIEW queue, read a session's story,
//! resolve it through the confirmation, see it leave the queue and the audit entry appear — and
//! an attacker's: a viewer who cannot resolve, a forged cross-site form (the SameSite=Strict
//! cookie is not sent with it: nothing happens), a reference with `<script>` that never runs.
//!
//! `.ci/run` installs `chromium` and `chromium-driver` when missing. With
//! `PAYRECON_SCREENSHOTS=DIR` the pages are saved there as PNG (docs/console.md shows them:
//! `PAYRECON_SCREENSHOTS=docs/console cargo test --test it browser`).

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::console::{ALICE, VICTOR, console_env};
use crate::ops::daemon;
use crate::support::{Guard, one, wait_for};

/// A headless Chromium session through a chromedriver of its own, in a process group of its
/// own: dropped (the test passed or failed), the browser session is ended and the whole group
/// — chromedriver and every Chromium process it started — is killed.
struct Browser {
    driver: Guard,
    base: String,
    session: String,
    http: reqwest::Client,
    shots: Option<std::path::PathBuf>,
}

impl Browser {
    async fn start(width: u32, height: u32) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        use std::os::unix::process::CommandExt as _;
        let driver = Guard(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (Debian's chromium-driver) on PATH"),
        );
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let up = wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        assert!(up, "chromedriver did not come up");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")]
            }
        }}});
        let r = http
            .post(format!("{base}/session"))
            .header("content-type", "application/json")
            .body(caps.to_string())
            .send()
            .await
            .unwrap();
        let r: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
            shots: std::env::var_os("PAYRECON_SCREENSHOTS").map(Into::into),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let r = self
            .http
            .request(method, url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or_default();
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    async fn type_in(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Clicks, then waits until the page shows `then`.
    async fn click(&self, css: &str, then: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            json!({}),
        )
        .await;
        self.wait_for(then, &format!("after clicking {css}")).await;
    }

    /// The page's source once it holds `text` (within 10 s; `when` names the moment if not).
    async fn wait_for(&self, text: &str, when: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let source = self.source().await;
            if source.contains(text) {
                return source;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{when}, no {text:?} in: {source}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn shot(&self, name: &str) {
        use base64::Engine as _;
        let Some(dir) = &self.shots else { return };
        let png = self
            .call(reqwest::Method::GET, "/screenshot", json!({}))
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    async fn log_in(&self, console: &str, name: &str, token: &str) {
        self.go(&format!("{console}/login")).await;
        self.type_in("input[name=name]", name).await;
        self.type_in("input[name=token]", token).await;
        self.click("button[type=submit]", "Log out").await;
    }

    async fn quit(&self) {
        self.call(reqwest::Method::DELETE, "", json!({})).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The browser session's end, by hand (Drop cannot wait on async), then the group.
        use std::io::Write as _;
        let port = self.base.rsplit(':').next().unwrap_or_default().to_string();
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port.parse().unwrap_or(0))) {
            let _ = write!(
                c,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = std::io::Read::read(&mut c, &mut [0u8; 256]);
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.0.id())])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finance_person_works_review_in_a_browser_and_an_attacker_gets_nowhere() {
    let (env, console) = console_env().await;
    let l = env.ledger();
    for (id, reference) in [
        ("MOP_rev1", "ORDER1"),
        ("MOP_xss", "<script>document.title='owned'</script>"),
    ] {
        crate::console::enqueue(&env, id, "250.00", reference, "amount");
    }
    env.pass(&l, "p").await;
    // A day of answers for the overview's charts: a session every 40 minutes, answered after
    // a few seconds to half an hour; every fifth decided by a person.
    let now = payrecon::clock::now();
    let ago =
        |secs: u64| payrecon::clock::format(payrecon::clock::sub(now, Duration::from_secs(secs)));
    let mut day = String::new();
    for i in 0..36u64 {
        let answered = i * 2400 + 60;
        let took = [5, 40, 300, 1800][(i % 4) as usize] + i * 7;
        let source = if i % 5 == 0 { "manual" } else { "poll" };
        day.push_str(&format!(
            "INSERT INTO sessions (provider, session_id, reference, amount, currency, created_at) \
             VALUES ('mopay', 'MOP_day{i}', 'DAY{i}', '10.00', 'LSL', '{created}'); \
             INSERT INTO transitions (session, from_status, to_status, at, source) \
             SELECT id, 'PENDING', 'COMPLETED', '{at}', '{source}' FROM sessions WHERE session_id = 'MOP_day{i}'; \
             UPDATE sessions SET status = 'COMPLETED', resolved_at = '{at}' WHERE session_id = 'MOP_day{i}';",
            created = ago(answered + took),
            at = ago(answered),
        ));
    }
    crate::support::DirectSql::execute_batch(&l, &day).unwrap();
    let _d = daemon(&env, &[&console]).await;

    let b = Browser::start(1280, 900).await;
    b.go(&format!("{console}/login")).await;
    b.shot("login").await;
    b.log_in(&console, "alice", ALICE).await;
    b.shot("overview").await;
    b.call(
        reqwest::Method::POST,
        "/execute/sync",
        json!({"script": "document.querySelector('svg.chart').scrollIntoView(); return null;", "args": []}),
    )
    .await;
    b.shot("overview-charts").await;
    b.go(&format!("{console}/review")).await;
    let queue = b.source().await;
    assert!(
        queue.contains("MOP_rev1") && queue.contains("MOP_xss"),
        "{queue}"
    );
    b.shot("review").await;
    // With htmx (embedded, under its integrity hash and the CSP): the filtered queue replaces
    // this one in place — the page is not loaded again — and the address follows.
    let script = |js: &str| json!({"script": js, "args": []});
    b.call(
        reqwest::Method::POST,
        "/execute/sync",
        script("window.kept = 'still here'; return null;"),
    )
    .await;
    b.type_in("input[name=min_amount]", "1000").await;
    b.click("form.filter button", "value=\"1000\"").await;
    let kept = b
        .call(
            reqwest::Method::POST,
            "/execute/sync",
            script("return window.kept || null;"),
        )
        .await;
    assert_eq!(kept, "still here", "htmx swapped the queue in place");
    let url = b.call(reqwest::Method::GET, "/url", json!({})).await;
    assert!(
        url.as_str().unwrap_or_default().contains("min_amount=1000"),
        "{url}"
    );
    assert!(
        !b.source().await.contains("MOP_rev1"),
        "250.00 is under 1000"
    );
    b.go(&format!("{console}/review")).await;
    b.click("a[href='/sessions/mopay/MOP_xss']", "Its story")
        .await;
    let title = b.call(reqwest::Method::GET, "/title", json!({})).await;
    assert_ne!(title, "owned", "the reference's script never ran");
    assert!(b.source().await.contains("&lt;script&gt;"));
    b.type_in(
        "textarea[name=reason]",
        "customer paid the rest in cash, receipt 4471",
    )
    .await;
    b.shot("story").await;
    b.click("form.decide button", "Confirm the decision").await;
    let confirm = b.source().await;
    assert!(
        confirm.contains("250.00") && confirm.contains("1.00"),
        "both amounts: {confirm}"
    );
    b.shot("confirm").await;
    b.click("main form button", "(manual, by").await;
    assert_eq!(
        one(
            &l,
            "SELECT status || ' ' || coalesce((SELECT actor FROM transitions t WHERE t.session = sessions.id AND source = 'manual'), '') FROM sessions WHERE session_id = 'MOP_xss'"
        ),
        "COMPLETED alice"
    );
    b.go(&format!("{console}/review")).await;
    assert!(!b.source().await.contains("MOP_xss"), "it left the queue");
    b.go(&format!("{console}/audit")).await;
    assert!(b.source().await.contains("mopay/MOP_xss"));
    b.shot("audit").await;

    // A forged cross-site form, submitted from another origin while alice is logged in: the
    // SameSite=Strict cookie stays home, so the console sees nobody and does nothing.
    let forged = format!(
        "data:text/html,<form method=post action='{console}/sessions/mopay/MOP_rev1/resolve'>\
         <input name=to value=COMPLETED><input name=reason value=forged>\
         <input name=confirm value=yes><button id=go>go</button></form>"
    );
    b.go(&forged).await;
    b.click("#go", "Log in first").await;
    assert_eq!(
        one(
            &l,
            "SELECT status FROM sessions WHERE session_id = 'MOP_rev1'"
        ),
        "REVIEW"
    );
    // Logout ends the login.
    b.go(&format!("{console}/")).await;
    b.click("form.logout button", "Name").await;
    b.go(&format!("{console}/review")).await;
    assert!(b.source().await.contains("Token"), "back at the login page");
    b.quit().await;

    // A viewer is offered no decision.
    let v = Browser::start(390, 844).await;
    v.log_in(&console, "victor", VICTOR).await;
    v.go(&format!("{console}/sessions/mopay/MOP_rev1")).await;
    let story = v.wait_for("MOP_rev1", "the viewer's story").await;
    assert!(!story.contains("Review the decision"), "{story}");
    v.shot("story-viewer-phone").await;
    v.quit().await;
}
