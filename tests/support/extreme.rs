//! Proptest strategies for f32 values across the whole finite range: subnormal, tiny, huge
//! and ordinary magnitudes, rows that stay in one magnitude band (so that a row of tiny values
//! is drawn as often as an ordinary one) and rows that mix bands. Shared by the in-crate kernel
//! tests and the integration tests (`#[path]`-included; `tests/support/` holds no test target).

#![allow(dead_code)]

use proptest::prelude::*;

/// `sign * 2^e` for a real exponent `e` in [-149, 128), rounded to f32 (subnormal below
/// 2^-126, `f32::MAX` where it would overflow).
pub fn pow2_value(negative: bool, e: f64) -> f32 {
    let v = e.exp2() as f32;
    let v = if v.is_finite() { v } else { f32::MAX };
    if negative {
        -v
    } else {
        v
    }
}

/// Any finite f32, uniform over bit patterns (so about half the exponents are extreme).
pub fn any_finite() -> impl Strategy<Value = f32> {
    any::<u32>()
        .prop_map(f32::from_bits)
        .prop_filter("finite", |v| v.is_finite())
}

/// A row of `len` values whose magnitudes share one band `[2^lo, 2^(lo + width))`, with the
/// band's start anywhere from the smallest subnormal to the largest finite exponent, and a
/// share of exact zeros (none, some or most) and of one sign.
pub fn banded_row(len: usize) -> impl Strategy<Value = Vec<f32>> {
    (
        -149i32..128,
        0u32..10,
        prop::sample::select(vec![0u32, 3, 8]),
        prop::sample::select(vec![0u8, 1, 2]),
        prop::collection::vec((any::<bool>(), 0.0f64..1.0, 0u32..10), len),
    )
        .prop_map(|(lo, width, zeros, signs, parts)| {
            parts
                .into_iter()
                .map(|(neg, frac, z)| {
                    if z < zeros {
                        return 0.0;
                    }
                    let neg = match signs {
                        0 => neg,
                        1 => false,
                        _ => true,
                    };
                    pow2_value(neg, lo as f64 + frac * width as f64)
                })
                .collect()
        })
}

/// A row mixing every band: each value independently ordinary, subnormal, tiny, huge or an
/// arbitrary finite bit pattern.
pub fn mixed_row(len: usize) -> impl Strategy<Value = Vec<f32>> {
    let value = prop_oneof![
        2 => -8.0f32..8.0,
        1 => (any::<bool>(), -149.0f64..-126.0).prop_map(|(n, e)| pow2_value(n, e)),
        1 => (any::<bool>(), -126.0f64..-118.0).prop_map(|(n, e)| pow2_value(n, e)),
        1 => (any::<bool>(), 120.0f64..128.0).prop_map(|(n, e)| pow2_value(n, e)),
        1 => any_finite(),
        1 => Just(0.0f32),
    ];
    prop::collection::vec(value, len)
}

/// A row across the whole range: one band, mixed bands, or arbitrary bit patterns.
pub fn extreme_row(len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![
        3 => banded_row(len),
        1 => mixed_row(len),
        1 => prop::collection::vec(any_finite(), len),
    ]
}

/// Positive finite scales across the whole range (subnormal to huge), for weight scales that
/// `QuantizedWeights::from_parts` accepts.
pub fn any_positive_scale() -> impl Strategy<Value = f32> {
    (-149.0f64..127.0).prop_map(|e| pow2_value(false, e))
}
