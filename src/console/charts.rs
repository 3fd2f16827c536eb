//! The overview's two charts, drawn here as SVG (no script, no library): each provider's time
//! to truth over the last day, and resolutions per hour. Colours are presentation attributes
//! (allowed by the console's Content-Security-Policy, unlike inline styles); axes and words
//! take the page's own colour, so both follow light and dark.

use maud::{Markup, html};

use crate::clock::Timestamp;
use crate::ledger::{Activity, Source, Status};

/// Hours the charts cover.
pub const HOURS: usize = 24;
const W: f64 = 720.0;
const H: f64 = 220.0;
/// Room for the axes' words.
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 8.0;
const PALETTE: [&str; 6] = [
    "#2b7bb9", "#d9822b", "#3a9d5d", "#b94a7a", "#7a5cc2", "#8a8a2b",
];

/// The hour bucket (0 = the oldest) of `at` in the day ending at `now`.
fn bucket(at: Timestamp, now: Timestamp) -> Option<usize> {
    let ago = (now - at).num_seconds();
    if !(0..HOURS as i64 * 3600).contains(&ago) {
        return None;
    }
    Some(HOURS - 1 - (ago / 3600) as usize)
}

/// The median of `v` (sorted here).
fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Each provider's median time to truth (creation to the first final answer, in seconds) per
/// hour of the last day: decisions by people are not answers and are left out.
pub fn truth_by_hour(a: &Activity, now: Timestamp) -> Vec<(String, [Option<f64>; HOURS])> {
    let mut per: std::collections::BTreeMap<&str, Vec<Vec<f64>>> = Default::default();
    for m in &a.transitions {
        if m.source == Source::Manual {
            continue;
        }
        let Some(b) = bucket(m.at, now) else { continue };
        let secs = (m.at - m.created_at).num_milliseconds().max(0) as f64 / 1000.0;
        per.entry(&m.provider)
            .or_insert_with(|| vec![Vec::new(); HOURS])[b]
            .push(secs);
    }
    per.into_iter()
        .map(|(p, mut hours)| {
            let mut line = [None; HOURS];
            for (slot, v) in line.iter_mut().zip(hours.iter_mut()) {
                *slot = median(v);
            }
            (p.to_string(), line)
        })
        .collect()
}

/// Resolutions per hour of the last day: `(by payrecon, by people)`; a transition to REVIEW
/// is not a resolution.
pub fn resolutions_by_hour(a: &Activity, now: Timestamp) -> [(u32, u32); HOURS] {
    let mut out = [(0, 0); HOURS];
    for m in &a.transitions {
        if m.to == Status::Review {
            continue;
        }
        if let Some(b) = bucket(m.at, now) {
            match m.source {
                Source::Manual => out[b].1 += 1,
                _ => out[b].0 += 1,
            }
        }
    }
    out
}

fn x_of(hour: usize) -> f64 {
    LEFT + (W - LEFT - 8.0) * (hour as f64 + 0.5) / HOURS as f64
}

/// The hours axis: "−24 h" at the left, "now" at the right.
fn hours_axis() -> Markup {
    html! {
        line x1=(LEFT) y1=(H - BOTTOM) x2=(W - 8.0) y2=(H - BOTTOM) stroke="currentColor" stroke-opacity="0.5" {}
        @for (h, label) in [(0, "−24 h"), (6, "−18 h"), (12, "−12 h"), (18, "−6 h"), (23, "now")] {
            text x=(format!("{:.1}", x_of(h))) y=(H - 6.0) text-anchor="middle" font-size="11" fill="currentColor" { (label) }
        }
    }
}

/// Seconds in words for an axis.
fn secs_label(s: f64) -> String {
    match s {
        s if s < 60.0 => format!("{s:.0} s"),
        s if s < 3600.0 => format!("{:.0} min", s / 60.0),
        s if s < 86_400.0 => format!("{:.0} h", s / 3600.0),
        s => format!("{:.0} d", s / 86_400.0),
    }
}

/// Time to truth, one line per provider, on a logarithmic scale (answers come in seconds for a
/// card and in hours for a slow mobile wallet).
pub fn truth_chart(lines: &[(String, [Option<f64>; HOURS])]) -> Markup {
    let ticks = [1.0, 10.0, 60.0, 600.0, 3600.0, 6.0 * 3600.0, 86_400.0];
    let top = lines
        .iter()
        .flat_map(|(_, l)| l.iter().flatten())
        .fold(10.0f64, |m, v| m.max(*v));
    let top_tick = ticks.iter().copied().find(|t| *t >= top).unwrap_or(top);
    let y = |s: f64| {
        let f = s.max(1.0).log10() / top_tick.log10();
        H - BOTTOM - (H - BOTTOM - TOP) * f
    };
    html! {
        svg.chart viewBox=(format!("0 0 {W} {H}")) role="img" aria-labelledby="truth-title" {
            title id="truth-title" { "Median time to truth per provider, by hour, over the last day" }
            (hours_axis())
            @for t in ticks.iter().filter(|t| **t <= top_tick) {
                line x1=(LEFT) y1=(y(*t)) x2=(W - 8.0) y2=(y(*t)) stroke="currentColor" stroke-opacity="0.15" {}
                text x=(LEFT - 6.0) y=(y(*t) + 4.0) text-anchor="end" font-size="11" fill="currentColor" { (secs_label(*t)) }
            }
            @for (i, (_, line)) in lines.iter().enumerate() {
                @let colour = PALETTE[i % PALETTE.len()];
                @let points: Vec<String> = line.iter().enumerate()
                    .filter_map(|(h, v)| v.map(|v| format!("{:.1},{:.1}", x_of(h), y(v))))
                    .collect();
                @if points.len() > 1 {
                    polyline points=(points.join(" ")) fill="none" stroke=(colour) stroke-width="2" {}
                }
                @for (h, v) in line.iter().enumerate() {
                    @if let Some(v) = v {
                        circle cx=(format!("{:.1}", x_of(h))) cy=(format!("{:.1}", y(*v))) r="3" fill=(colour) {
                            title { (secs_label(*v)) }
                        }
                    }
                }
            }
        }
        ul.legend {
            @for (i, (p, _)) in lines.iter().enumerate() {
                li { svg.swatch viewBox="0 0 10 10" { rect width="10" height="10" fill=(PALETTE[i % PALETTE.len()]) {} } " " (p) }
            }
        }
    }
}

/// Resolutions per hour, stacked: payrecon's own below, people's above.
pub fn resolutions_chart(bars: &[(u32, u32); HOURS]) -> Markup {
    let top = bars.iter().map(|(a, m)| a + m).max().unwrap_or(0).max(1);
    // A round top: 1, 2 or 5 times a power of ten.
    let mut scale = 1u32;
    while scale < top {
        scale = match scale.to_string().as_bytes()[0] {
            b'1' => scale * 2,
            b'2' => scale / 2 * 5,
            _ => scale * 2,
        };
    }
    let plot = H - BOTTOM - TOP;
    let hgt = |n: u32| plot * f64::from(n) / f64::from(scale);
    let bar_w = (W - LEFT - 8.0) / HOURS as f64 * 0.7;
    html! {
        svg.chart viewBox=(format!("0 0 {W} {H}")) role="img" aria-labelledby="res-title" {
            title id="res-title" { "Resolutions per hour over the last day: by payrecon, and by people" }
            (hours_axis())
            @for t in [0, scale / 2, scale].into_iter().filter(|t| *t == 0 || *t * 2 >= scale).collect::<std::collections::BTreeSet<_>>() {
                line x1=(LEFT) y1=(H - BOTTOM - hgt(t)) x2=(W - 8.0) y2=(H - BOTTOM - hgt(t)) stroke="currentColor" stroke-opacity="0.15" {}
                text x=(LEFT - 6.0) y=(H - BOTTOM - hgt(t) + 4.0) text-anchor="end" font-size="11" fill="currentColor" { (t) }
            }
            @for (h, (auto, manual)) in bars.iter().enumerate() {
                @let x = x_of(h) - bar_w / 2.0;
                @if *auto > 0 {
                    rect x=(format!("{x:.1}")) y=(format!("{:.1}", H - BOTTOM - hgt(*auto))) width=(format!("{bar_w:.1}")) height=(format!("{:.1}", hgt(*auto))) fill=(PALETTE[0]) {
                        title { (auto) " by payrecon" }
                    }
                }
                @if *manual > 0 {
                    rect x=(format!("{x:.1}")) y=(format!("{:.1}", H - BOTTOM - hgt(auto + manual))) width=(format!("{bar_w:.1}")) height=(format!("{:.1}", hgt(*manual))) fill=(PALETTE[1]) {
                        title { (manual) " by people" }
                    }
                }
            }
        }
        ul.legend {
            li { svg.swatch viewBox="0 0 10 10" { rect width="10" height="10" fill=(PALETTE[0]) {} } " by payrecon" }
            li { svg.swatch viewBox="0 0 10 10" { rect width="10" height="10" fill=(PALETTE[1]) {} } " by people" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_middle_pair_s_mean() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn an_hour_ago_is_the_second_newest_bucket_and_a_day_ago_is_none() {
        let now = crate::clock::now();
        let ago = |s: u64| crate::clock::sub(now, std::time::Duration::from_secs(s));
        assert_eq!(bucket(now, now), Some(23));
        assert_eq!(bucket(ago(3600), now), Some(22));
        assert_eq!(bucket(ago(24 * 3600 - 1), now), Some(0));
        assert_eq!(bucket(ago(24 * 3600), now), None);
    }
}
