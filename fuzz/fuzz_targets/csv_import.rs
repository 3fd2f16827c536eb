//! `import` on an arbitrary file into a real SQLite ledger: all or nothing, never a panic, and a
//! failure is a usage error (naming the line) that changed nothing.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use payrecon::config::{Config, UsageError};
use payrecon::ledger::{Ledger, Location};

struct Fixture {
    dir: tempfile::TempDir,
    cfg: Config,
    ledger: Ledger,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = common::config();
        cfg.ledger = Location::Path(dir.path().join("ledger.db"));
        let ledger = Ledger::connect(&cfg.ledger).unwrap();
        Fixture { dir, cfg, ledger }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let file = f.dir.path().join("in.csv");
    std::fs::write(&file, data).unwrap();
    let before = f.ledger.count_pending().unwrap();
    match payrecon::import::run(&f.cfg, &f.ledger, &file) {
        Ok(out) => assert_eq!(f.ledger.count_pending().unwrap(), before + out.added),
        Err(e) => {
            assert!(e.chain().any(|c| c.is::<UsageError>()), "{e:#}");
            assert_eq!(f.ledger.count_pending().unwrap(), before, "a failed import changed the ledger");
        }
    }
});
