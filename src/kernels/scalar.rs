//! The portable scalar kernel: the executable specification, on the same packed layout as the
//! SIMD kernels (K in steps of one: channel c of a panel at byte `k * 16 + c % 16`). No
//! `unsafe`. [`Portable`] is the portable epilogue width, the definition every vector epilogue
//! reproduces.

use super::contract::{Int8Kernel, Width};
use crate::engine::hybrid::HybridTile;
use crate::engine::integer::IntegerTile;
use crate::flavour::Flavour;
use crate::gemm::pack::PANEL;
use crate::integer::TensorQuant;
use crate::quantize::inputs::RowParams;
use crate::quantize::plan::{plan_row, RowPlan};

/// Longest run of i8 x i8 products that an i32 accumulator holds exactly: with both factors
/// in [-128, 127], `131_071 * 128 * 128 < 2^31`.
pub(crate) const EXACT_I32_RUN: usize = 131_071;

/// The scalar reference kernel (`scalar`): one row, one panel of 16 channels at a time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scalar;

/// The portable epilogue width (every CPU).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

// SAFETY: portable code only.
unsafe impl Width for Portable {
    const CHANNEL_MULTIPLE: usize = 1;

    fn hybrid(self, t: &mut HybridTile<'_, '_>) {
        t.portable();
    }
    fn integer(self, t: &mut IntegerTile<'_, '_>) {
        t.portable();
    }
    fn quantize_int8(self, q: TensorQuant, x: &[f32], out: &mut [i8]) -> bool {
        let mut finite = true;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = q.quantize(v);
            finite &= v.is_finite();
        }
        finite
    }
}

// SAFETY: `new` always succeeds because the kernel is portable code; `dots` indexes its slices
// with bounds checks.
unsafe impl Int8Kernel for Scalar {
    const NAME: &'static str = "scalar";
    const ROWS: usize = 1;
    const CHANNELS: usize = PANEL;
    const K_STEP: usize = 1;
    const K_ALIGN: usize = 1;
    const INPUT_OFFSET: i32 = 0;
    const EXACT_RUN: usize = EXACT_I32_RUN;
    type Input = i8;
    type Width = Portable;
    type Small = Scalar;

    fn new() -> Option<Self> {
        Some(Scalar)
    }

    fn small(self) -> Self {
        self
    }

    fn width(self) -> Portable {
        Portable
    }

    fn quantize(
        self,
        flavour: Flavour,
        asymmetric: bool,
        row: &[f32],
        out: &mut [i8],
    ) -> Option<RowParams> {
        if !row.iter().all(|v| v.is_finite()) {
            return None;
        }
        let plan = plan_row(flavour, asymmetric, row);
        quantize_portable(&plan, row, out);
        Some(plan.params)
    }

    fn dots(
        self,
        x: &[i8],
        _x_stride: usize,
        rows: usize,
        w: &[i8],
        _panel_stride: usize,
        steps: usize,
        acc: &mut [i32],
    ) {
        assert!(rows == 1 && x.len() >= steps && w.len() >= steps * PANEL && acc.len() >= PANEL);
        let mut sums = [0i32; PANEL];
        for (s, &xv) in x[..steps].iter().enumerate() {
            let ws = &w[s * PANEL..(s + 1) * PANEL];
            for (a, &wv) in sums.iter_mut().zip(ws) {
                *a = a.wrapping_add(xv as i32 * wv as i32);
            }
        }
        acc[..PANEL].copy_from_slice(&sums);
    }

    fn peak_gops(self) -> Option<f64> {
        None
    }
}

/// Quantizes a row element by element with the plan (the definition), padding the rest.
pub(crate) fn quantize_portable<T: super::contract::InputElement>(
    plan: &RowPlan,
    row: &[f32],
    out: &mut [T],
) {
    assert!(out.len() >= row.len());
    for (i, (o, &x)) in out.iter_mut().zip(row).enumerate() {
        *o = T::from_q(plan.one(i, x));
    }
    out[row.len()..].fill(T::PAD);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_panel_of_extreme_values_is_exact() {
        // 16 channels of -128 against -128 over EXACT_I32_RUN steps: the i32 sums stay exact.
        let steps = EXACT_I32_RUN;
        let x = vec![-128i8; steps];
        let w = vec![-128i8; steps * PANEL];
        let mut acc = [0i32; PANEL];
        Scalar.dots(&x, steps, 1, &w, steps * PANEL, steps, &mut acc);
        assert!(acc.iter().all(|&a| a as i64 == steps as i64 * 16384));
    }
}

/// The scalar f32 kernel (`f32-scalar`): the float layer's reference on the packed,
/// interleaved layout, one output at a time with `f32::mul_add`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScalarF32;

// SAFETY: portable code; `tile` touches only what its `F32Tile` describes (its contract).
unsafe impl super::contract::F32Kernel for ScalarF32 {
    const NAME: &'static str = "f32-scalar";
    const ROWS: usize = 4;
    const PANELS: usize = 1;
    const ROW_PANELS: usize = 1;

    fn new() -> Option<Self> {
        Some(ScalarF32)
    }

    unsafe fn tile(self, t: &super::contract::F32Tile) {
        // SAFETY: the caller guarantees that `x` holds `k * m` values and `panels` `np * k * 16`.
        let (x, panels) = unsafe {
            (
                std::slice::from_raw_parts(t.x, t.k * t.m),
                std::slice::from_raw_parts(t.panels, t.np * t.k * PANEL),
            )
        };
        for r in 0..t.m {
            for c in 0..t.cols {
                let panel = &panels[(c / PANEL) * t.k * PANEL..];
                let mut acc = 0.0f32;
                for p in 0..t.k {
                    acc = x[p * t.m + r].mul_add(panel[p * PANEL + c % PANEL], acc);
                }
                // SAFETY: row r < m, column c < cols of the tile's output (the caller's bound).
                unsafe { *t.out.add(r * t.ldo + c) = acc };
            }
        }
    }
}
