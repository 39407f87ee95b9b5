//! A quick timing harness for kernel work (ignored by default; no timed assertions):
//! `cargo test --release --test kernels_timing -- --ignored --nocapture`.
//! Environment: `SHAPES=1x1024x1024,...`, `THREADS=1,2`, `KERNELS=scalar,avx2`, `REPS=n`.

use std::time::Instant;

use hybridq::{HybridConfig, HybridLinear, Kernel, Linear, QuantizedWeights, Scratch};
use ndarray::Array2;

fn lcg(state: &mut u64) -> u32 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*state >> 33) as u32
}

#[test]
#[ignore]
fn timing() {
    let shapes = std::env::var("SHAPES").unwrap_or_else(|_| {
        "1x1024x1024,1x4096x4096,1x4096x14336,8x4096x4096,32x1024x4096,128x4096x4096,512x768x3072"
            .into()
    });
    let threads: Vec<usize> = std::env::var("THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .map(|t| t.parse().unwrap())
        .collect();
    let kernels: Vec<Kernel> = match std::env::var("KERNELS") {
        Ok(s) => s.split(',').map(|k| k.parse().unwrap()).collect(),
        Err(_) => Kernel::available(),
    };
    let reps: usize = std::env::var("REPS").map_or(7, |r| r.parse().unwrap());
    let mut seed = 42u64;
    for shape in shapes.split(',') {
        let d: Vec<usize> = shape.split('x').map(|v| v.parse().unwrap()).collect();
        let (b, k, n) = (d[0], d[1], d[2]);
        let q = Array2::from_shape_fn((n, k), |_| ((lcg(&mut seed) % 255) as i32 - 127) as i8);
        let w = QuantizedWeights::from_parts(q.view(), &[0.01]).unwrap();
        let x = Array2::from_shape_fn((b, k), |_| (lcg(&mut seed) % 2000) as f32 / 250.0 - 4.0);
        let mut out = Array2::<f32>::zeros((b, n));
        for &kernel in &kernels {
            for &t in &threads {
                let layer = HybridLinear::new(
                    w.clone(),
                    None,
                    HybridConfig {
                        kernel: Some(kernel),
                        threads: t,
                        ..HybridConfig::default()
                    },
                )
                .unwrap();
                let mut scratch = Scratch::new();
                layer
                    .forward_into(x.view(), out.view_mut(), &mut scratch)
                    .unwrap();
                let macs = (b * k * n) as f64;
                let iters = ((2e8 / macs).ceil() as usize).clamp(1, 200);
                let mut times = Vec::new();
                for _ in 0..reps {
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        layer
                            .forward_into(x.view(), out.view_mut(), &mut scratch)
                            .unwrap();
                    }
                    times.push(t0.elapsed().as_secs_f64() * 1e6 / iters as f64);
                }
                times.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let med = times[times.len() / 2];
                println!(
                    "{shape:>14} {kernel:>7} t{t}  median {med:>10.1} us  {:>7.1} GOP/s  (min {:>10.1} us {:>7.1} GOP/s)",
                    2.0 * macs / med / 1e3,
                    times[0],
                    2.0 * macs / times[0] / 1e3
                );
            }
        }
    }
}
