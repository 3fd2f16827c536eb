//! The `POST /v1/sessions` body parser on arbitrary bytes: a session that passes the ledger's
//! rules, or a 4xx — never a panic, never a 5xx.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use payrecon::config::Config;

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(common::config)
}

fuzz_target!(|data: &[u8]| {
    match payrecon::api::session_from_body(config(), data) {
        Ok(s) => assert!(s.validate().is_ok()),
        Err((code, _)) => assert!((400..500).contains(&code), "{code}"),
    }
});
