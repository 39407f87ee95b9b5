//! Output bits never depend on the thread count or on the batch a row is computed in.

use hybridq::{Flavour, HybridConfig, HybridLinear, Kernel, Linear, QuantizedWeights};
use ndarray::{s, Array2};

fn lcg(state: &mut u64) -> u32 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*state >> 33) as u32
}

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn thread_counts_and_batch_composition_give_identical_bits() {
    let mut seed = 7u64;
    // (B, K, N), each above 2^23 multiply-adds so that 8 tasks really run: channel panels
    // split over threads (small and larger batches, odd N), and a single panel so that rows are
    // split.
    for (b, k, n) in [(1, 4099, 2100), (13, 1031, 650), (420, 1300, 16)] {
        let q = Array2::from_shape_fn((n, k), |_| (lcg(&mut seed) % 256) as u8 as i8);
        let w = QuantizedWeights::from_parts(q.view(), &[0.003]).unwrap();
        let x = Array2::from_shape_fn((b, k), |_| (lcg(&mut seed) % 4001) as f32 / 500.0 - 4.0);
        for flavour in Flavour::ALL {
            let reference = HybridLinear::new(
                w.clone(),
                None,
                HybridConfig {
                    flavour,
                    kernel: Some(Kernel::Scalar),
                    threads: 1,
                    ..HybridConfig::default()
                },
            )
            .unwrap()
            .forward(x.view())
            .unwrap();
            for kernel in Kernel::available() {
                for threads in [1, 2, 3, 8] {
                    let layer = HybridLinear::new(
                        w.clone(),
                        None,
                        HybridConfig {
                            flavour,
                            kernel: Some(kernel),
                            threads,
                            ..HybridConfig::default()
                        },
                    )
                    .unwrap();
                    let y = layer.forward(x.view()).unwrap();
                    assert_eq!(
                        bits(&y),
                        bits(&reference),
                        "{kernel} t{threads} {b}x{k}x{n}"
                    );
                    // A row alone, and a sub-batch starting at an odd row, give the same bits.
                    for r in [0, b / 2, b - 1] {
                        let alone = layer.forward(x.slice(s![r..r + 1, ..])).unwrap();
                        assert_eq!(
                            bits(&alone),
                            bits(&reference.slice(s![r..r + 1, ..]).to_owned())
                        );
                    }
                    if b > 3 {
                        let sub = layer.forward(x.slice(s![1..b - 1, ..])).unwrap();
                        assert_eq!(
                            bits(&sub),
                            bits(&reference.slice(s![1..b - 1, ..]).to_owned())
                        );
                    }
                }
            }
        }
    }
}

/// The full-integer layer's float API (inputs quantized, the integer product, outputs
/// dequantized): on batches large enough that the quantizing and dequantizing passes are split
/// over threads as well as the product (odd row counts, so the pieces are uneven), every
/// kernel and thread count gives the scalar reference's bits, a sub-batch gives the same rows,
/// and a NaN in the batch's last piece is still an error naming its position.
#[test]
fn full_integer_float_api_is_thread_and_batch_invariant() {
    use hybridq::integer::{IntegerLinear, TensorQuant};
    use hybridq::{Activation, Error};
    let mut seed = 11u64;
    for (b, k, n) in [(37, 1031, 300), (129, 300, 257)] {
        let w = Array2::from_shape_fn((n, k), |_| (lcg(&mut seed) % 256) as u8 as i8);
        let scales: Vec<f32> = (0..n)
            .map(|_| 0.001 + (lcg(&mut seed) % 1000) as f32 * 1e-5)
            .collect();
        let x = Array2::from_shape_fn((b, k), |_| (lcg(&mut seed) % 4001) as f32 / 500.0 - 4.0);
        let layer = IntegerLinear::new(
            w.view(),
            &scales,
            None,
            TensorQuant::new(0.03, -3).unwrap(),
            TensorQuant::new(0.7, 5).unwrap(),
            Activation::None,
        )
        .unwrap();
        let reference = layer
            .clone()
            .with_kernel(Kernel::Scalar)
            .unwrap()
            .with_threads(1)
            .forward(x.view())
            .unwrap();
        for kernel in Kernel::available() {
            for threads in [1, 2, 3, 8] {
                let l = layer
                    .clone()
                    .with_kernel(kernel)
                    .unwrap()
                    .with_threads(threads);
                let y = l.forward(x.view()).unwrap();
                assert_eq!(
                    bits(&y),
                    bits(&reference),
                    "{kernel} t{threads} {b}x{k}x{n}"
                );
                let sub = l.forward(x.slice(s![1..b - 1, ..])).unwrap();
                assert_eq!(
                    bits(&sub),
                    bits(&reference.slice(s![1..b - 1, ..]).to_owned()),
                    "{kernel} t{threads} sub-batch"
                );
                let mut bad = x.clone();
                bad[[b - 1, k / 2]] = f32::NAN;
                match l.forward(bad.view()) {
                    Err(Error::NonFinite { index, .. }) => {
                        assert_eq!(index, (b - 1) * k + k / 2, "{kernel} t{threads}")
                    }
                    other => panic!("{kernel} t{threads}: {other:?}"),
                }
            }
        }
    }
}
