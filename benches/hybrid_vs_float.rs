//! Hybrid vs float on the shapes of the speed issue, at 1 and 2 threads, for every int8 kernel
//! and every f32 kernel this CPU runs (both registries are iterated, so a new kernel is
//! benchmarked without touching this file).
//!
//! `cargo bench --bench hybrid_vs_float` (filter with a shape or a kernel, e.g.
//! `-- 8x4096x4096/hybrid-avx512vnni`). Throughput is reported as elements = B*K*N
//! multiply-adds.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hybridq::{
    FloatKernel, FloatLinear, Granularity, HybridConfig, HybridLinear, Kernel, Linear, Scratch,
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
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
