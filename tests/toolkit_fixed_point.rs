//! Fixed-point requantization against exact i128 references: random inputs (two million per
//! rounding by default; `HYBRIDQ_EXHAUSTIVE=1` runs 64 times more) and every boundary input.

use hybridq::toolkit::fixed_point::{
    multiply_by_quantized_multiplier as mbqm, rounding_divide_by_pot, ruy_rounding_right_shift,
    saturating_rounding_doubling_high_mul as srdhm, QuantizedMultiplier, Rounding, MAX_SHIFT,
    MIN_SHIFT,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// floor(a / 2^s) for s in 0..=126.
fn floor_div_pot(a: i128, s: u32) -> i128 {
    a >> s
}

/// a / 2^s rounded half toward +infinity.
fn round_half_up(a: i128, s: u32) -> i128 {
    if s == 0 {
        a
    } else {
        floor_div_pot(a + (1i128 << (s - 1)), s)
    }
}

/// a / 2^s rounded half away from zero.
fn round_half_away(a: i128, s: u32) -> i128 {
    if a < 0 {
        -round_half_up(-a, s) // -a >= 0: half up == half away
    } else {
        round_half_up(a, s)
    }
}

/// Exact reference of `MultiplyByQuantizedMultiplier` in each rounding, from the definitions:
/// the left shift wraps in i32 (two's complement, as the C++ compiles), every rounding is
/// computed exactly on the i128 product.
fn reference(x: i32, m0: i32, shift: i32, rounding: Rounding) -> i32 {
    match rounding {
        Rounding::Single => {
            let total = (31 - shift) as u32;
            round_half_up(x as i128 * m0 as i128, total) as i64 as i32 // truncate like (int32)
        }
        Rounding::Gemmlowp | Rounding::Ruy => {
            let left = shift.max(0) as u32;
            let right = (-shift).max(0) as u32;
            let a = ((x as i64) << left) as i32; // wraps
            let h = if a == i32::MIN && m0 == i32::MIN {
                i32::MAX as i128
            } else {
                round_half_up(a as i128 * m0 as i128, 31)
            };
            assert!(h >= i32::MIN as i128 && h <= i32::MAX as i128);
            if rounding == Rounding::Gemmlowp {
                round_half_away(h, right) as i32
            } else {
                round_half_up(h, right) as i32
            }
        }
    }
}

fn check(x: i32, m0: i32, shift: i32) {
    for r in Rounding::ALL {
        let got = mbqm(x, m0, shift, r);
        let want = reference(x, m0, shift, r);
        assert_eq!(got, want, "x={x} m0={m0} shift={shift} {r:?}");
    }
    // Against the real product x * M0 * 2^(shift - 31): within one code (two roundings) or half
    // a code (one rounding), whenever nothing overflows.
    let left = shift.max(0) as u32;
    if (x as i64).unsigned_abs() << left < 1 << 31 {
        let exact = x as i128 * m0 as i128; // in units of 2^(31 - shift)
        let unit = 1i128 << (31 - shift) as u32;
        for r in Rounding::ALL {
            let got = mbqm(x, m0, shift, r) as i128;
            let err2 = (2 * (got * unit - exact)).abs();
            let bound = if r == Rounding::Single {
                unit
            } else {
                2 * unit
            };
            if got.abs() < (1 << 30) {
                assert!(err2 <= bound, "x={x} m0={m0} shift={shift} {r:?}: {got}");
            }
        }
    }
}

fn random_i32(rng: &mut StdRng) -> i32 {
    let bits = rng.random_range(0..=32u32);
    let v: i64 = rng.random_range(-(1i64 << bits)..=(1i64 << bits));
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

fn iterations() -> usize {
    if std::env::var_os("HYBRIDQ_EXHAUSTIVE").is_some_and(|v| v == "1") {
        1 << 27
    } else {
        1 << 21
    }
}

#[test]
fn random_inputs_match_the_exact_reference() {
    let mut rng = StdRng::seed_from_u64(0x5eed_f1ed);
    for _ in 0..iterations() {
        let x = random_i32(&mut rng);
        let m0 = if rng.random_range(0..16) == 0 {
            rng.random_range(0..=i32::MAX)
        } else {
            rng.random_range(1 << 30..=i32::MAX)
        };
        let shift = rng.random_range(MIN_SHIFT..=MAX_SHIFT);
        check(x, m0, shift);
    }
}

#[test]
fn boundary_inputs_match_the_exact_reference() {
    let mut xs = vec![i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX];
    for k in 0..31 {
        for d in [-1, 0, 1] {
            xs.push((1i32 << k).wrapping_add(d));
            xs.push((-(1i64 << k) + d as i64) as i32);
            xs.push(((3i64 << k).clamp(0, i32::MAX as i64) as i32).wrapping_add(d));
        }
    }
    let m0s = [
        0,
        1,
        1 << 30,
        (1 << 30) + 1,
        3 << 29,
        i32::MAX - 1,
        i32::MAX,
    ];
    for &x in &xs {
        for &m0 in &m0s {
            for shift in MIN_SHIFT..=MAX_SHIFT {
                check(x, m0, shift);
            }
        }
    }
}

#[test]
fn exact_ties_separate_the_roundings() {
    // M0 = 2^30 (one half): SRDHM(x, M0) = x / 2 rounded half up, then the right shift by r.
    for r in 1..=30u32 {
        for j in 0..4i64 {
            // x * 2^30 / 2^(31 + r) = -(2j + 1) / 2: an exact negative tie
            let x = -(2 * j + 1) << r;
            if x < i32::MIN as i64 {
                continue;
            }
            let x = x as i32;
            let shift = -(r as i32);
            check(x, 1 << 30, shift);
            let g = mbqm(x, 1 << 30, shift, Rounding::Gemmlowp);
            let y = mbqm(x, 1 << 30, shift, Rounding::Ruy);
            let s = mbqm(x, 1 << 30, shift, Rounding::Single);
            assert_eq!(y, s, "r={r} j={j}");
            assert_eq!(g, y - 1, "gemmlowp rounds the negative tie away from zero");
            // positive ties agree
            assert_eq!(
                mbqm(-x, 1 << 30, shift, Rounding::Gemmlowp),
                mbqm(-x, 1 << 30, shift, Rounding::Ruy)
            );
        }
    }
    // SRDHM's own tie: -0.5 goes to 0, -1.5 to -1 (half up), +1.5 to 2.
    for (a, want) in [(-1, 0), (-3, -1), (3, 2), (1, 1)] {
        assert_eq!(
            srdhm(a, 1 << 30) as i128,
            round_half_up(a as i128 * (1 << 30), 31)
        );
        assert_eq!(srdhm(a, 1 << 30), want);
    }
}

#[test]
fn helper_functions_match_their_definitions() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200_000 {
        let (a, b) = (random_i32(&mut rng), random_i32(&mut rng));
        let want = if a == i32::MIN && b == i32::MIN {
            i32::MAX as i128
        } else {
            round_half_up(a as i128 * b as i128, 31)
        };
        assert_eq!(srdhm(a, b) as i128, want, "{a} {b}");
        check_rounding_shifts(a, rng.random_range(0..=31));
    }
    for e in 0..=31 {
        for a in [i32::MIN, i32::MAX, i32::MAX - 1, -1, 0, 1] {
            check_rounding_shifts(a, e);
        }
    }
}

/// Both rounding right shifts of `a` by `e` against their exact definitions.
fn check_rounding_shifts(a: i32, e: i32) {
    assert_eq!(
        rounding_divide_by_pot(a, e) as i128,
        round_half_away(a as i128, e as u32),
        "{a} >> {e}"
    );
    assert_eq!(
        ruy_rounding_right_shift(a, e) as i128,
        round_half_up(a as i128, e as u32),
        "{a} >> {e}"
    );
}

#[test]
fn quantize_multiplier_is_within_half_a_q31_step() {
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..200_000 {
        let real = 2f64.powf(rng.random_range(-40.0..29.9));
        let m = QuantizedMultiplier::from_real(real).unwrap();
        if m.m0() == 0 {
            assert!(real < 2f64.powi(-32), "{real} flushed");
            continue;
        }
        assert!((1 << 30..=i32::MAX).contains(&m.m0()), "{real}: {m:?}");
        assert!((MIN_SHIFT..=MAX_SHIFT).contains(&m.shift()));
        // |M0 2^(s-31) - real| <= 2^(s-32): half a step of the Q0.31 mantissa
        let err = (m.to_f64() - real).abs();
        assert!(
            err <= 2f64.powi(m.shift() - 32) * (1.0 + 1e-9),
            "{real}: {m:?}"
        );
    }
}

#[test]
fn quantize_multiplier_special_cases() {
    // powers of two: M0 = 2^30, shift = k + 1
    for k in -32..30 {
        let m = QuantizedMultiplier::from_real(2f64.powi(k)).unwrap();
        assert_eq!((m.m0(), m.shift()), (1 << 30, k + 1), "2^{k}");
    }
    // 2^-33 has e = -32 < -31: flushed; 2^-32 is the smallest kept
    let m = QuantizedMultiplier::from_real(2f64.powi(-33)).unwrap();
    assert_eq!((m.m0(), m.shift()), (0, 0));
    // q * 2^31 rounding to 2^31 renormalises
    let just_below = 1.0 - 2f64.powi(-33);
    let m = QuantizedMultiplier::from_real(just_below).unwrap();
    assert_eq!((m.m0(), m.shift()), (1 << 30, 1));
    let m = QuantizedMultiplier::from_real(1.0 - 2f64.powi(-31)).unwrap();
    assert_eq!((m.m0(), m.shift()), (i32::MAX, 0));
    assert_eq!(QuantizedMultiplier::from_real(0.0).unwrap().m0(), 0);
    for bad in [-1.0, -0.0 - 1e-300, f64::NAN, f64::INFINITY, 2f64.powi(30)] {
        assert!(QuantizedMultiplier::from_real(bad).is_err(), "{bad}");
    }
    assert!(QuantizedMultiplier::from_real(2f64.powi(30) * 0.99).is_ok());
}
