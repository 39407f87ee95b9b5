//! The ndarray boundary: ranks, layouts, caller-owned outputs, sharing across threads, and a
//! hot path that does not allocate.

use std::sync::atomic::Ordering;

use hybridq::{FloatLinear, Granularity, HybridConfig, HybridLinear, Linear, Scratch};
use ndarray::{s, Array, Array2, Array3, Array4, ArrayD, Axis, IxDyn, ShapeBuilder};

#[path = "support/counting_alloc.rs"]
#[allow(dead_code)] // `allocations` is for other test files
mod counting_alloc;
use counting_alloc::{ALLOCATIONS, COUNTING};

fn weights(n: usize, k: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, k), |(i, j)| {
        (((i * 31 + j * 17) % 23) as f32 - 11.0) / 7.0
    })
}

fn input(shape: &[usize]) -> ArrayD<f32> {
    let len: usize = shape.iter().product();
    let values = (0..len)
        .map(|i| ((i * 13 + i / 7) % 29) as f32 / 5.0 - 2.5)
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), values).unwrap()
}

fn hybrid(n: usize, k: usize) -> HybridLinear {
    HybridLinear::from_f32(
        weights(n, k).view(),
        None,
        Granularity::PerChannel,
        HybridConfig::default(),
    )
    .unwrap()
}

fn bits(a: impl IntoIterator<Item = f32>) -> Vec<u32> {
    a.into_iter().map(f32::to_bits).collect()
}

#[test]
fn layers_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HybridLinear>();
    assert_send_sync::<FloatLinear>();
    assert_send_sync::<Scratch>();
}

#[test]
fn any_rank_keeps_leading_dimensions() {
    let l = hybrid(5, 12);
    let flat = input(&[24, 12]);
    let expect = l.forward(flat.view()).unwrap();
    for shape in [vec![24, 12], vec![2, 12, 12], vec![2, 3, 4, 12]] {
        let x = flat.clone().into_shape_with_order(IxDyn(&shape)).unwrap();
        let y = l.forward(x.view()).unwrap();
        let mut out_shape = shape.clone();
        *out_shape.last_mut().unwrap() = 5;
        assert_eq!(y.shape(), out_shape.as_slice());
        assert_eq!(bits(y.iter().copied()), bits(expect.iter().copied()));
    }
    let one = flat.index_axis(Axis(0), 3).to_owned();
    let y = l.forward(one.view()).unwrap();
    assert_eq!(y.shape(), &[5]);
    assert_eq!(
        bits(y.iter().copied()),
        bits(expect.index_axis(Axis(0), 3).iter().copied())
    );
}

#[test]
fn non_contiguous_views_give_the_same_bits() {
    let l = hybrid(7, 9);
    let x = input(&[6, 9])
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let expect = l.forward(x.view()).unwrap();
    // Column-major copy.
    let mut f = Array2::<f32>::zeros((6, 9).f());
    f.assign(&x);
    assert_eq!(
        bits(l.forward(f.view()).unwrap()),
        bits(expect.iter().copied())
    );
    // Every other row of a taller array, and reversed rows.
    let mut tall = Array2::<f32>::zeros((12, 9));
    tall.slice_mut(s![..;2, ..]).assign(&x);
    assert_eq!(
        bits(l.forward(tall.slice(s![..;2, ..])).unwrap()),
        bits(expect.iter().copied())
    );
    let rev = l.forward(x.slice(s![..;-1, ..])).unwrap();
    assert_eq!(
        bits(rev.slice(s![..;-1, ..]).iter().copied()),
        bits(expect.iter().copied())
    );
    // Strided caller-owned output.
    let mut out = Array2::<f32>::zeros((6, 14));
    l.forward_into(x.view(), out.slice_mut(s![.., ..;2]), &mut Scratch::new())
        .unwrap();
    assert_eq!(
        bits(out.slice(s![.., ..;2]).iter().copied()),
        bits(expect.iter().copied())
    );
}

#[test]
fn forward_into_does_not_allocate_once_scratch_is_sized() {
    let (n, k, b) = (33, 70, 5);
    let l = hybrid(n, k);
    let x = input(&[b, 2, k])
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap();
    let mut out = Array3::<f32>::zeros((b, 2, n));
    let mut scratch = Scratch::new();
    scratch.reserve(b * 2, k, n);
    // (FloatLinear's matrixmultiply path allocates its packing buffers inside sgemm.)
    {
        let layer = &l;
        let flat_x = x.as_slice().unwrap();
        let flat_out = out.as_slice_mut().unwrap();
        ALLOCATIONS.store(0, Ordering::Relaxed);
        COUNTING.with(|c| c.set(true));
        let r = layer.forward_rows(flat_x, b * 2, flat_out, &mut scratch);
        COUNTING.with(|c| c.set(false));
        r.unwrap();
        assert_eq!(
            ALLOCATIONS.load(Ordering::Relaxed),
            0,
            "forward_rows allocated"
        );
    }
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let r = l.forward_into(x.view(), out.view_mut(), &mut scratch);
    COUNTING.with(|c| c.set(false));
    r.unwrap();
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "forward_into allocated"
    );
}

#[test]
fn one_layer_shared_by_threads_gives_the_same_bits() {
    let l = hybrid(17, 40);
    let x = input(&[8, 40]);
    let expect = bits(l.forward(x.view()).unwrap());
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..4)
            .map(|_| sc.spawn(|| bits(l.forward(x.view()).unwrap())))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), expect);
        }
    });
}

#[test]
fn hybrid_and_float_swap_in_a_pipeline() {
    // Two stacked layers, run as `dyn Linear`, hybrid or float in either slot.
    let (k, h, n) = (24, 16, 6);
    let w1 = weights(h, k);
    let w2 = weights(n, h);
    let make = |w: &Array2<f32>, quantized: bool| -> Box<dyn Linear> {
        if quantized {
            Box::new(
                HybridLinear::from_f32(
                    w.view(),
                    None,
                    Granularity::PerChannel,
                    HybridConfig::default(),
                )
                .unwrap(),
            )
        } else {
            Box::new(FloatLinear::new(w.view(), None, Default::default()).unwrap())
        }
    };
    let x = input(&[3, k]);
    let run = |a: &dyn Linear, b: &dyn Linear| {
        b.forward_dyn(a.forward_dyn(x.view()).unwrap().view())
            .unwrap()
    };
    let float = run(&*make(&w1, false), &*make(&w2, false));
    let hybrid = run(&*make(&w1, true), &*make(&w2, true));
    assert_eq!(hybrid.shape(), &[3, n]);
    let scale = float.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (a, b) in hybrid.iter().zip(float.iter()) {
        assert!((a - b).abs() <= 0.05 * scale, "{a} vs {b}");
    }
}

#[test]
fn four_dimensional_forward_into() {
    let l = hybrid(3, 5);
    let x = Array4::from_shape_fn((2, 2, 2, 5), |(a, b, c, d)| {
        (a + 2 * b + 3 * c) as f32 - d as f32
    });
    let mut out = Array::zeros((2, 2, 2, 3));
    l.forward_into(x.view(), out.view_mut(), &mut Scratch::new())
        .unwrap();
    assert_eq!(
        bits(out.iter().copied()),
        bits(l.forward(x.view()).unwrap())
    );
}
