//! Hybrid vs float vs full integer on the shapes of the speed issue, at 1 and 2 threads, for
//! every int8 kernel and every f32 kernel this CPU runs, and the row quantization alone per
//! int8 kernel (both registries are iterated, so a new kernel is benchmarked without touching
//! this file).
//!
//! `cargo bench --bench hybrid_vs_float` (filter with a shape or a kernel, e.g.
//! `-- 8x4096x4096/hybrid-avx512vnni`, `-- integer-`, `-- quantize-rows`). Throughput is
//! reported as elements = B*K*N multiply-adds for the layers, B*K values for the rows.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hybridq::integer::{IntegerLinear, TensorQuant};
use hybridq::{
    Activation, Flavour, FloatKernel, FloatLinear, Granularity, HybridConfig, HybridLinear, Kernel,
    Linear, RowQuantizer, Scratch,
};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SHAPES: [(usize, usize, usize); 7] = [
    (1, 1024, 1024),
    (1, 4096, 4096),
    (1, 4096, 14336),
    (8, 4096, 4096),
    (32, 1024, 4096),
    (128, 4096, 4096),
    (512, 768, 3072),
];

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    for (b, k, n) in SHAPES {
        let w = Array2::from_shape_fn((n, k), |_| rng.random_range(-1.0f32..1.0));
        let x = Array2::from_shape_fn((b, k), |_| rng.random_range(-4.0f32..4.0));
        let mut group = c.benchmark_group(format!("{b}x{k}x{n}"));
        group.throughput(Throughput::Elements((b * k * n) as u64));
        group.sample_size(10);
        let mut out = Array2::<f32>::zeros((b, n));
        let mut scratch = Scratch::new();
        for threads in [1usize, 2] {
            for kernel in Kernel::available() {
                if kernel == Kernel::Scalar && b * k * n > 1 << 24 {
                    continue; // the reference: minutes per sample on the large shapes
                }
                let config = HybridConfig {
                    kernel: Some(kernel),
                    threads,
                    ..HybridConfig::default()
                };
                let layer = HybridLinear::from_f32(w.view(), None, Granularity::PerChannel, config)
                    .unwrap();
                let id = BenchmarkId::new(format!("hybrid-{kernel}"), threads);
                group.bench_function(id, |bch| {
                    bch.iter(|| {
                        layer
                            .forward_into(x.view(), out.view_mut(), &mut scratch)
                            .unwrap()
                    })
                });
            }
            for kernel in FloatKernel::available() {
                if kernel == FloatKernel::Scalar && b * k * n > 1 << 24 {
                    continue;
                }
                let layer = FloatLinear::new(w.view(), None, Default::default())
                    .unwrap()
                    .with_kernel(kernel)
                    .unwrap()
                    .with_threads(threads);
                let id = BenchmarkId::new(format!("float-{kernel}"), threads);
                group.bench_function(id, |bch| {
                    bch.iter(|| {
                        layer
                            .forward_into(x.view(), out.view_mut(), &mut scratch)
                            .unwrap()
                    })
                });
            }
            integer(&mut group, &w, &x, threads);
        }
        group.finish();
    }
}

/// The full-integer layer's own call (`forward_q_rows_with`: int8 in, int8 out, no float
/// conversion) per int8 kernel, calibrated as `hybridq compare` does: the input and output
/// ranges of this data.
fn integer(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    w: &Array2<f32>,
    x: &Array2<f32>,
    threads: usize,
) {
    let (b, k) = x.dim();
    let n = w.nrows();
    let input = TensorQuant::new(4.0 / 127.0, 0).unwrap();
    let output = TensorQuant::new((k as f32).sqrt() * 2.0 / 127.0, 0).unwrap();
    let base = IntegerLinear::from_f32(
        w.view(),
        None,
        Granularity::PerChannel,
        input,
        output,
        Activation::None,
    )
    .unwrap()
    .with_threads(threads);
    let xq: Vec<i8> = x.iter().map(|&v| input.quantize(v)).collect();
    let mut out = vec![0i8; b * n];
    let mut scratch = Scratch::new();
    for kernel in Kernel::available() {
        if kernel == Kernel::Scalar && b * k * n > 1 << 24 {
            continue;
        }
        let layer = base.clone().with_kernel(kernel).unwrap();
        let id = BenchmarkId::new(format!("integer-{kernel}"), threads);
        group.bench_function(id, |bch| {
            bch.iter(|| {
                layer
                    .forward_q_rows_with(&xq, b, &mut out, &mut scratch)
                    .unwrap()
            })
        });
    }
}

/// Row quantization alone (the first step of a hybrid call), per int8 kernel, on 512 rows of
/// 768 and 32 rows of 4096, asymmetric (the XNNPACK-like common case) and symmetric.
fn quantize_rows(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(5);
    for (b, k) in [(512usize, 768usize), (32, 4096)] {
        let x = Array2::from_shape_fn((b, k), |_| rng.random_range(-4.0f32..4.0));
        let mut group = c.benchmark_group(format!("quantize-rows-{b}x{k}"));
        group.throughput(Throughput::Elements((b * k) as u64));
        group.sample_size(20);
        for asymmetric in [true, false] {
            for kernel in Kernel::available() {
                let mut q = RowQuantizer::new(kernel, Flavour::default(), asymmetric).unwrap();
                let mode = if asymmetric { "asym" } else { "sym" };
                group.bench_function(BenchmarkId::new(kernel.name(), mode), |bch| {
                    bch.iter(|| {
                        for row in x.rows() {
                            q.quantize(row.as_slice().unwrap()).unwrap();
                        }
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench, quantize_rows);
criterion_main!(benches);
