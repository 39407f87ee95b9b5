//! The smallest end-to-end use: quantize a float layer, run it beside the float layer, and
//! compare. `cargo run --release --example quantize_linear`

use hybridq::bound::error_bounds;
use hybridq::stats::ErrorStats;
use hybridq::{FloatLinear, Granularity, HybridConfig, HybridLinear, Linear};
use ndarray::{Array1, Array2};

fn main() -> hybridq::Result<()> {
    let (k, n, b) = (256, 64, 4);
    // Deterministic, roughly Gaussian-looking weights and inputs without extra dependencies.
    let w = Array2::from_shape_fn((n, k), |(i, j)| {
        (((i * 131 + j * 71) % 97) as f32 / 48.5 - 1.0) * 0.2
    });
    let bias = Array1::from_shape_fn(n, |i| (i % 5) as f32 * 0.01);
    let x = Array2::from_shape_fn((b, k), |(i, j)| {
        ((i * 17 + j * 29) % 61) as f32 / 10.0 - 3.0
    });

    let float = FloatLinear::new(w.view(), Some(bias.view()), Default::default())?;
    let hybrid = HybridLinear::from_f32(
        w.view(),
        Some(bias.view()),
        Granularity::PerChannel,
        HybridConfig::default(),
    )?;

    let yf = float.forward(x.view())?;
    let yh = hybrid.forward(x.view())?;
    let stats = ErrorStats::compare(yf.as_slice().unwrap(), yh.as_slice().unwrap());
    let bounds = error_bounds(&hybrid, w.view(), x.as_slice().unwrap())?;
    let worst = yh
        .iter()
        .zip(yf.iter())
        .zip(&bounds)
        .map(|((a, f), bnd)| (*a as f64 - *f as f64).abs() / bnd)
        .fold(0.0, f64::max);
    println!("{k} -> {n} layer, batch {b}: hybrid vs float {stats}");
    println!("worst error as a fraction of the analytic bound: {worst:.3}");
    println!(
        "weights: {} bytes as f32, {} bytes as int8 + scales",
        4 * n * k,
        hybrid.weights().storage_bytes()
    );
    Ok(())
}
