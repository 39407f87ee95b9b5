//! Loops over f32 slices that run on every call outside the products: the layers' finite check
//! of their inputs and the GELU after a layer, compiled once more for the widest vector
//! instructions this CPU runs and chosen once per process.
//!
//! The library is built for baseline x86-64, so these loops otherwise run on 4-lane SSE2.
//! Compiling the same Rust loop with AVX2 or AVX-512 enabled changes how many lanes an
//! instruction takes, never a value: every operation in them is an IEEE operation on one lane
//! (Rust never contracts a multiply and an add into an FMA), so each lane gets the bits of the
//! scalar code (NaN payloads aside: the tests compare every NaN as one). The tests below run
//! every width this CPU has against the plain loop.

/// Proof of a vector width these loops are compiled for that this CPU runs: only
/// [`Lanes::detect`] and [`Lanes::available`] make one (the field is private), after checking
/// the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lanes(Width);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Width {
    /// The build's own target (SSE2 on x86-64; whatever the target has elsewhere).
    Baseline,
    /// AVX2 (8 f32 lanes).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 F (16 f32 lanes).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Lanes {
    /// The widest this CPU runs (detected once).
    pub(crate) fn detect() -> Self {
        static LANES: std::sync::OnceLock<Lanes> = std::sync::OnceLock::new();
        *LANES.get_or_init(|| *Self::available().last().expect("the baseline"))
    }

    /// Every width this CPU runs, narrowest first.
    pub(crate) fn available() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut all = vec![Lanes(Width::Baseline)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Lanes(Width::Avx2));
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Lanes(Width::Avx512));
            }
        }
        all
    }

    /// `v[i] = f(v[i])` for every element. `f` must be made of per-lane IEEE operations for
    /// every width to give the same bits (`mul_add` would too, but is a software call in the
    /// baseline build); a call to a function that is not inlined stays a scalar call per
    /// element.
    #[inline]
    pub(crate) fn map(self, v: &mut [f32], f: impl Fn(f32) -> f32) {
        match self.0 {
            Width::Baseline => map_body(v, f),
            // SAFETY: a `Lanes` of this width exists only where `available` saw the CPU run
            // AVX2 (the field is private to this module).
            #[cfg(target_arch = "x86_64")]
            Width::Avx2 => unsafe { x86::map_avx2(v, f) },
            // SAFETY: as above, AVX-512 F.
            #[cfg(target_arch = "x86_64")]
            Width::Avx512 => unsafe { x86::map_avx512(v, f) },
        }
    }

    /// The index of the first NaN or infinity of `values`, if any.
    pub(crate) fn first_non_finite(self, values: &[f32]) -> Option<usize> {
        match self.0 {
            Width::Baseline => first_non_finite_body(values),
            // SAFETY: as in `map`, AVX2.
            #[cfg(target_arch = "x86_64")]
            Width::Avx2 => unsafe { x86::first_non_finite_avx2(values) },
            // SAFETY: as in `map`, AVX-512 F.
            #[cfg(target_arch = "x86_64")]
            Width::Avx512 => unsafe { x86::first_non_finite_avx512(values) },
        }
    }
}

#[inline(always)]
fn map_body(v: &mut [f32], f: impl Fn(f32) -> f32) {
    v.iter_mut().for_each(|x| *x = f(*x));
}

/// A value is non-finite exactly when its bits without the sign, as an i32, exceed those of
/// `f32::MAX`. Chunks of 64 values are tested with that compare on 16 lanes, OR-ed, in a loop
/// the compiler turns into vector compares and ORs: about 5x the speed of a `position` search
/// on SSE2, which stops at every value and cost more than the row quantization itself. Only a
/// chunk that holds one is searched.
#[inline(always)]
fn first_non_finite_body(values: &[f32]) -> Option<usize> {
    const CHUNK: usize = 64;
    const LANES: usize = 16;
    const FINITE_MAX: i32 = 0x7f7f_ffff;
    let search =
        |chunk: &[f32], start: usize| chunk.iter().position(|v| !v.is_finite()).map(|i| start + i);
    let mut chunks = values.chunks_exact(CHUNK);
    for (c, chunk) in (&mut chunks).enumerate() {
        let mut any = [0i32; LANES];
        for group in chunk.chunks_exact(LANES) {
            for (a, v) in any.iter_mut().zip(group) {
                *a |= -(((v.to_bits() & 0x7fff_ffff) as i32 > FINITE_MAX) as i32);
            }
        }
        if any.iter().fold(0, |a, &t| a | t) != 0 {
            return search(chunk, c * CHUNK);
        }
    }
    let tail = values.len() - chunks.remainder().len();
    search(chunks.remainder(), tail)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// [`super::map_body`] with AVX2 enabled.
    ///
    /// # Safety
    /// The CPU runs AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn map_avx2(v: &mut [f32], f: impl Fn(f32) -> f32) {
        super::map_body(v, f)
    }

    /// [`super::map_body`] with AVX-512 F enabled.
    ///
    /// # Safety
    /// The CPU runs AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn map_avx512(v: &mut [f32], f: impl Fn(f32) -> f32) {
        super::map_body(v, f)
    }

    /// [`super::first_non_finite_body`] with AVX2 enabled.
    ///
    /// # Safety
    /// The CPU runs AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn first_non_finite_avx2(values: &[f32]) -> Option<usize> {
        super::first_non_finite_body(values)
    }

    /// [`super::first_non_finite_body`] with AVX-512 F enabled.
    ///
    /// # Safety
    /// The CPU runs AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn first_non_finite_avx512(values: &[f32]) -> Option<usize> {
        super::first_non_finite_body(values)
    }
}

#[cfg(test)]
mod tests {
    use super::Lanes;
    use crate::layer::Gelu;
    use proptest::prelude::*;

    /// Every width finds what a plain search finds: every special value, at every position
    /// around the chunk boundaries, with others after it.
    #[test]
    fn first_non_finite_equals_a_plain_search() {
        let specials = [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffc0_1234),
        ];
        let finite = [0.0f32, -0.0, f32::MAX, f32::MIN, 1e-45, -3.5];
        for lanes in Lanes::available() {
            for len in [0usize, 1, 15, 63, 64, 65, 130, 200] {
                let base: Vec<f32> = (0..len).map(|i| finite[i % finite.len()]).collect();
                assert_eq!(lanes.first_non_finite(&base), None);
                for at in 0..len {
                    for &s in &specials {
                        let mut v = base.clone();
                        v[at] = s;
                        if at + 70 < len {
                            v[at + 70] = f32::NAN;
                        }
                        let want = v.iter().position(|x| !x.is_finite());
                        assert_eq!(lanes.first_non_finite(&v), want, "{lanes:?} {len} {at} {s}");
                    }
                }
            }
        }
    }

    /// The bits of `v`, with every NaN as one (a NaN's payload is not part of the contract).
    fn canonical(v: f32) -> u32 {
        if v.is_nan() {
            f32::NAN.to_bits()
        } else {
            v.to_bits()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// GELU (both forms) through every width gives the scalar function's bits on any f32
        /// bit patterns (subnormals, infinities and NaN included) and any length (every
        /// vector remainder).
        #[test]
        fn gelu_map_equals_the_scalar_function(
            bits in proptest::collection::vec(any::<u32>(), 0..300),
            near in proptest::collection::vec(-8.0f32..8.0, 0..300),
        ) {
            // Any bit pattern, then the range where GELU bends (and erf's clamp at 4).
            let x: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).chain(near).collect();
            for gelu in [Gelu::Erf, Gelu::Tanh] {
                let want: Vec<u32> = x.iter().map(|&v| canonical(gelu.apply(v))).collect();
                for lanes in Lanes::available() {
                    let mut got = x.clone();
                    lanes.map(&mut got, |v| gelu.apply(v));
                    let got: Vec<u32> = got.iter().map(|&v| canonical(v)).collect();
                    prop_assert_eq!(&got, &want, "{:?} {:?}", gelu, lanes);
                }
            }
        }
    }
}
