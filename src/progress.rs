//! The one progress bar of long commands (`import`, `export`, `once --all`, `ledger copy`): on
//! stderr, redrawn at most four times a second, and only on a terminal (indicatif hides it in
//! logs and pipes).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps (`None`: not known yet, or never) drawn with `template`.
pub fn bar(len: Option<u64>, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| {
        if len.is_some() {
            ProgressStyle::default_bar()
        } else {
            ProgressStyle::default_spinner()
        }
    }));
    bar
}
