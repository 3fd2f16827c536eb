//! Every provider kind's answer parsers: a 2xx body (`parse_answer`) and an error envelope
//! (`classify_error`), for arbitrary bytes. Never a panic; a paid answer only from a body whose
//! status word is one of that kind's paid words.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use payrecon::provider::{Adapter, Answer, Mapped, adapter_for};

fn adapters() -> &'static Vec<(String, Box<dyn Adapter>)> {
    static A: OnceLock<Vec<(String, Box<dyn Adapter>)>> = OnceLock::new();
    A.get_or_init(|| {
        let cfg = common::config();
        cfg.providers
            .iter()
            .map(|p| (p.kind.name().to_string(), adapter_for(p)))
            .collect()
    })
}

/// The words that may mean paid, per kind (docs/providers.md), case ignored.
fn paid_word(kind: &str, word: &str) -> bool {
    let w = word.to_ascii_lowercase();
    match kind {
        "mopay" | "little" | "moflay" => w == "completed",
        "vesicash" | "mopay_ng" => w == "success",
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let all = adapters();
    let (kind, adapter) = &all[selector as usize % all.len()];
    if let Ok(Answer::Found(f)) = adapter.parse_answer("MOP_abc123_ORDER12345", body) {
        if f.mapped == Mapped::Paid {
            assert!(paid_word(kind, &f.raw_status), "{kind}: paid from {:?}", f.raw_status);
        }
    }
    let status = [400u16, 401, 403, 404, 422, 429, 500, 503][(selector / 8) as usize % 8];
    let _ = adapter.classify_error(reqwest::StatusCode::from_u16(status).unwrap(), body);
});
