//! Element-wise kernels over f32 slices for the training model's CPU ops, vectorized: the
//! softmax exponentials of the attention and the vocabulary, and SwiGLU forward and backward.
//! The C library's `expf` is a scalar call per element (6% of a 1,024-token LoRA step's CPU
//! samples); here `exp(x) = 2ⁿ · e^r` with `n = round(x log₂e)`, `r = x − n ln 2` reduced in
//! two steps (Cody and Waite) and `e^r` a degree-7 polynomial (relative error within a few
//! 10⁻⁷ over the whole range), written so the compiler vectorizes it. Each kernel is compiled
//! for AVX-512, AVX2 and the baseline, picked at run time (`with_simd!`).

use std::mem::MaybeUninit;

/// Below this `exp` is 0 in f32 (and above 88.7 it overflows); inputs are clamped to
/// `[LOWEST, HIGHEST]` so that `2ⁿ` stays a normal float.
const LOWEST: f32 = -87.3;
const HIGHEST: f32 = 88.3;
/// `1.5 · 2²³`: adding it rounds an f32 of magnitude below 2²² to an integer (ties to even),
/// which then sits in the low bits of the sum's mantissa.
const ROUNDER: f32 = 12_582_912.0;
/// ln 2 split so that `n · LN2_HIGH` is exact for the `n` that occur.
const LN2_HIGH: f32 = 355.0 / 512.0;
const LN2_LOW: f32 = -2.121_944_4e-4;

/// Runs the body compiled for AVX-512 or AVX2 + FMA when this CPU has them, else for the
/// baseline: `with_simd!(|a: &[f32], b: f32| -> f32 { … }, args…)`.
macro_rules! with_simd {
    (|$($arg:ident: $ty:ty),*| -> $ret:ty $body:block, $($value:expr),*) => {{
        #[inline(always)]
        fn portable($($arg: $ty),*) -> $ret $body
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512($($arg: $ty),*) -> $ret { portable($($arg),*) }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2($($arg: $ty),*) -> $ret { portable($($arg),*) }
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F.
                unsafe { avx512($($value),*) }
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA.
                unsafe { avx2($($value),*) }
            } else {
                portable($($value),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            portable($($value),*)
        }
    }};
}

/// The largest of `values[i] · scale` (−∞ for none).
pub fn max_scaled(values: &[f32], scale: f32) -> f32 {
    with_simd!(
        |values: &[f32], scale: f32| -> f32 {
            let mut lanes = [f32::NEG_INFINITY; 16];
            let mut chunks = values.chunks_exact(16);
            for chunk in &mut chunks {
                for (lane, &v) in lanes.iter_mut().zip(chunk) {
                    let v = v * scale;
                    *lane = if v > *lane { v } else { *lane };
                }
            }
            let tail = chunks.remainder().iter().map(|&v| v * scale);
            lanes
                .into_iter()
                .chain(tail)
                .fold(f32::NEG_INFINITY, f32::max)
        },
        values,
        scale
    )
}

/// Writes `out[i] = exp(values[i] · scale − shift)` (every element of `out`, which may start
/// uninitialised and is as long as `values`) and returns their sum.
pub fn exp_scaled_shifted(
    values: &[f32],
    scale: f32,
    shift: f32,
    out: &mut [MaybeUninit<f32>],
) -> f32 {
    assert_eq!(
        values.len(),
        out.len(),
        "exp_scaled_shifted: lengths differ"
    );
    with_simd!(
        |values: &[f32], scale: f32, shift: f32, out: &mut [MaybeUninit<f32>]| -> f32 {
            let mut lanes = [0f32; 16];
            let mut chunks = values.chunks_exact(16);
            let mut outs = out.chunks_exact_mut(16);
            for (chunk, outs) in (&mut chunks).zip(&mut outs) {
                for ((lane, o), &v) in lanes.iter_mut().zip(outs).zip(chunk) {
                    let e = exp(v * scale - shift);
                    o.write(e);
                    *lane += e;
                }
            }
            let mut total: f32 = lanes.iter().sum();
            for (o, &v) in outs.into_remainder().iter_mut().zip(chunks.remainder()) {
                let e = exp(v * scale - shift);
                o.write(e);
                total += e;
            }
            total
        },
        values,
        scale,
        shift,
        out
    )
}

/// SwiGLU: `out[i] = silu(gate[i]) · up[i]`, `silu(g) = g / (1 + e⁻ᵍ)`.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    assert!(
        gate.len() == up.len() && up.len() == out.len(),
        "swiglu: lengths differ"
    );
    with_simd!(
        |gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]| -> () {
            for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                o.write(g / (1.0 + exp(-g)) * u);
            }
        },
        gate,
        up,
        out
    )
}

/// SwiGLU's backward pass from the gradient `grad` of its output: `gate_grad = grad · u ·
/// σ(g)(1 + g(1 − σ(g)))` and `up_grad = grad · silu(g)`, with `σ` the logistic function.
pub fn swiglu_backward(
    grad: &[f32],
    gate: &[f32],
    up: &[f32],
    gate_grad: &mut [MaybeUninit<f32>],
    up_grad: &mut [MaybeUninit<f32>],
) {
    let n = grad.len();
    assert!(
        [gate.len(), up.len(), gate_grad.len(), up_grad.len()]
            .iter()
            .all(|&l| l == n),
        "swiglu_backward: lengths differ"
    );
    with_simd!(
        |grad: &[f32],
         gate: &[f32],
         up: &[f32],
         gate_grad: &mut [MaybeUninit<f32>],
         up_grad: &mut [MaybeUninit<f32>]|
         -> () {
            let outs = gate_grad.iter_mut().zip(up_grad.iter_mut());
            for ((((gg, ug), &d), &g), &u) in outs.zip(grad).zip(gate).zip(up) {
                let sigmoid = 1.0 / (1.0 + exp(-g));
                let silu = g * sigmoid;
                ug.write(d * silu);
                gg.write(d * u * (sigmoid * (1.0 - silu) + silu));
            }
        },
        grad,
        gate,
        up,
        gate_grad,
        up_grad
    )
}

/// `exp(x)` for one value, in a form the compiler can vectorize.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(LOWEST, HIGHEST);
    let rounded = x * std::f32::consts::LOG2_E + ROUNDER;
    let n = rounded - ROUNDER;
    // r = x − n ln 2 in two steps (Cody and Waite), exact enough that e^r carries no error
    // from the reduction; |r| ≤ ln 2 / 2.
    let r = n.mul_add(-LN2_HIGH, x);
    let r = n.mul_add(-LN2_LOW, r);
    // n in the low bits, as an integer: 2ⁿ's exponent field is n + 127.
    let exponent = rounded
        .to_bits()
        .wrapping_sub(ROUNDER.to_bits())
        .wrapping_add(127);
    // e^r: Taylor coefficients 1 / k!.
    let p = 1.984_127e-4f32;
    let p = p.mul_add(r, 1.388_888_9e-3);
    let p = p.mul_add(r, 8.333_333e-3);
    let p = p.mul_add(r, 4.166_666_8e-2);
    let p = p.mul_add(r, 1.666_666_7e-1);
    let p = p.mul_add(r, 0.5);
    let p = p.mul_add(r, 1.0);
    let p = p.mul_add(r, 1.0);
    p * f32::from_bits(exponent << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_c_librarys_exp_to_its_own_precision() {
        let values: Vec<f32> = (0..20_001)
            .map(|i| (i as f32 - 14_545.0) * 0.0055)
            .collect();
        let mut out = vec![MaybeUninit::uninit(); values.len()];
        let sum = exp_scaled_shifted(&values, 1.0, 0.0, &mut out);
        let out: Vec<f32> = out.iter().map(|o| unsafe { o.assume_init() }).collect();
        for (&x, &got) in values.iter().zip(&out) {
            let expected = (x as f64).exp();
            let error = (got as f64 - expected).abs() / expected;
            assert!(
                error < 3e-7,
                "exp({x}) = {got}, expected {expected} ({error:e})"
            );
        }
        let expected_sum: f64 = out.iter().map(|&v| v as f64).sum();
        assert!((sum as f64 - expected_sum).abs() < 1e-5 * expected_sum);
        // Far below the range: 0 or a denormal, never garbage; scale and shift apply.
        let mut tiny = [MaybeUninit::uninit(); 2];
        exp_scaled_shifted(&[-1000.0, 2.0], 1.0, 0.0, &mut tiny);
        let tiny = tiny.map(|t| unsafe { t.assume_init() });
        assert!(tiny[0] < 1e-37 && (tiny[1] - 2f32.exp()).abs() < 1e-6);
        let mut scaled = [MaybeUninit::uninit()];
        let sum = exp_scaled_shifted(&[4.0], 0.5, 3.0, &mut scaled);
        assert!((sum - (-1f32).exp()).abs() < 1e-7);
    }

    #[test]
    fn swiglu_and_its_gradient_match_the_formulas() {
        let gate: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.7).collect();
        let up: Vec<f32> = (0..37).map(|i| (i as f32 * 0.3).sin()).collect();
        let grad: Vec<f32> = (0..37).map(|i| (i as f32 * 0.2).cos()).collect();
        let mut out = vec![MaybeUninit::uninit(); 37];
        let (mut gate_grad, mut up_grad) = (out.clone(), out.clone());
        swiglu(&gate, &up, &mut out);
        swiglu_backward(&grad, &gate, &up, &mut gate_grad, &mut up_grad);
        for i in 0..37 {
            let (g, u, d) = (gate[i] as f64, up[i] as f64, grad[i] as f64);
            let sigmoid = 1.0 / (1.0 + (-g).exp());
            let close = |got: &MaybeUninit<f32>, expected: f64| {
                let got = unsafe { got.assume_init() } as f64;
                (got - expected).abs() <= 1e-6 * expected.abs().max(1.0)
            };
            assert!(close(&out[i], g * sigmoid * u), "silu·up at {g}");
            assert!(close(&up_grad[i], d * g * sigmoid), "up gradient at {g}");
            let slope = sigmoid * (1.0 + g * (1.0 - sigmoid));
            assert!(close(&gate_grad[i], d * u * slope), "gate gradient at {g}");
        }
    }

    #[test]
    fn the_largest_value_is_found_in_every_lane_and_the_tail() {
        for position in [0, 7, 15, 16, 31, 40] {
            let mut values = vec![-3f32; 41];
            values[position] = 5.0;
            assert_eq!(max_scaled(&values, 0.5), 2.5, "at {position}");
        }
        assert_eq!(max_scaled(&[], 1.0), f32::NEG_INFINITY);
    }
}
