//! Wall-clock timing shared by the commands that measure speed.

use std::time::Instant;

/// Median wall time of `f` in microseconds: two warm-up calls, then enough calls to fill about
/// `budget_s` seconds (at least 5, at most 2000).
pub fn median_us(budget_s: f64, mut f: impl FnMut()) -> f64 {
    f();
    median(samples_us(budget_s, 5, f))
}

/// The median of `times` (the upper one of an even count), which are not empty.
fn median(mut times: Vec<f64>) -> f64 {
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

/// Median wall time in microseconds of each of `fs`, timed in turns: `turns` rounds, in which
/// every function runs [`samples_us`] for `budget_s / turns` seconds, in an order that rotates
/// from round to round. A shared host runs slow for stretches of a second or more; taking turns
/// gives every function the same stretches, so their ratio does not measure the host.
pub fn medians_in_turns(budget_s: f64, turns: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let turns = turns.max(1);
    let mut times = vec![Vec::new(); fs.len()];
    for round in 0..turns {
        for i in 0..fs.len() {
            let j = (i + round) % fs.len();
            times[j].extend(samples_us(budget_s / turns as f64, 1, &mut *fs[j]));
        }
    }
    times.into_iter().map(median).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_rotate_and_give_every_function_its_calls() {
        let order = std::cell::RefCell::new(Vec::new());
        let (mut a, mut b) = (
            || order.borrow_mut().push('a'),
            || order.borrow_mut().push('b'),
        );
        let medians = medians_in_turns(0.0, 3, &mut [&mut a, &mut b]);
        assert_eq!(medians.len(), 2);
        assert!(medians.iter().all(|m| m.is_finite() && *m >= 0.0));
        // Each turn: one sizing call and one timed call (the budget is 0).
        let order: String = order.into_inner().into_iter().collect();
        assert_eq!(order, "aabb".to_string() + "bbaa" + "aabb");
    }
}
