//! Wall-clock timing shared by the commands that measure speed.

use std::time::Instant;

/// Median wall time of `f` in microseconds: two warm-up calls, then enough calls to fill about
/// `budget_s` seconds (at least 5, at most 2000).
pub fn median_us(budget_s: f64, mut f: impl FnMut()) -> f64 {
    f();
    let mut times = samples_us(budget_s, 5, f);
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Wall times of `f` in microseconds, in call order: one first call, whose time only sizes the
/// run, then enough calls to fill about `budget_s` seconds (at least `min_runs` and 1, at most
/// 2000).
pub fn samples_us(budget_s: f64, min_runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    let start = Instant::now();
    f();
    let once = start.elapsed().as_secs_f64().max(1e-7);
    let runs = ((budget_s / once) as usize).clamp(min_runs.max(1), 2000);
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}
