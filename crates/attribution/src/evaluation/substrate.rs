//! The substrate of the insertion game: the image blurred as the RISE
//! reference implementation blurs it (`gkern(11, 5)`, a zero-padded
//! convolution per channel).

use crate::error::{AttributionError, Result};
use sightline_tensor::conv::conv2d;
use sightline_tensor::{Conv2dParams, Element, Tensor};

/// SciPy's `gaussian_filter` (`truncate` 4, mode `reflect`) of a `size` x
/// `size` unit impulse at the centre, with standard deviation `sigma`: the
/// RISE reference's `gkern(klen, nsig)`. Separable: the outer product of
/// the filtered 1-D impulse with itself; the taps beyond the array reflect
/// back into it (half-sample symmetric, `d c b a | a b c d | d c b a`).
pub fn gaussian_kernel_2d(size: usize, sigma: f64) -> Result<Vec<f64>> {
    if size.is_multiple_of(2) || size > 255 || !(sigma.is_finite() && sigma > 0.0) {
        return Err(AttributionError::InvalidOption(format!(
            "blur kernel: an odd size up to 255 and a positive sigma, got {size} and {sigma}"
        )));
    }
    // SciPy's radius: int(truncate * sigma + 0.5), capped here at 4,096.
    let radius = ((4.0 * sigma + 0.5) as usize).min(4096);
    let taps: Vec<f64> = (0..=2 * radius)
        .map(|k| {
            let x = k as f64 - radius as f64;
            (-0.5 * x * x / (sigma * sigma)).exp()
        })
        .collect();
    let total: f64 = taps.iter().sum();
    let n = size as isize;
    // Index `i` of the reflected extension of an array of `n` samples.
    let reflect = |i: isize| {
        let period = 2 * n;
        let m = i.rem_euclid(period);
        if m < n {
            m
        } else {
            period - 1 - m
        }
    };
    let centre = n / 2;
    let line: Vec<f64> = (0..n)
        .map(|i| {
            taps.iter()
                .enumerate()
                .filter(|&(k, _)| reflect(i + k as isize - radius as isize) == centre)
                .map(|(_, w)| w / total)
                .sum()
        })
        .collect();
    Ok(line
        .iter()
        .flat_map(|a| line.iter().map(move |b| a * b))
        .collect())
}

/// `x` (N x C x H x W) convolved channel by channel with `kernel` (`size` x
/// `size`, as [`gaussian_kernel_2d`] makes it) with zero padding of
/// `size / 2`: the insertion game's starting image.
pub fn blur_substrate<T: Element>(x: &Tensor<T>, kernel: &[f64], size: usize) -> Result<Tensor<T>> {
    let [_, c, _, _] = x.dims4("blur substrate")?;
    if kernel.len() != size * size {
        return Err(AttributionError::InvalidOption(format!(
            "blur substrate: a {size} x {size} kernel has {} values",
            kernel.len()
        )));
    }
    let weight: Vec<T> = (0..c)
        .flat_map(|_| kernel.iter().map(|&v| T::from_f64_lossy(v)))
        .collect();
    let weight = Tensor::from_vec([c, 1, size, size], weight)?;
    let params = Conv2dParams {
        padding: (size / 2, size / 2),
        groups: c,
        ..Conv2dParams::default()
    };
    Ok(conv2d(x, &weight, None, params)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_is_scipy_s_filtered_impulse() {
        // scipy.ndimage.gaussian_filter(impulse 11 x 11, 5): its corner, edge
        // and centre values (reflect mode folds the wide taps back in).
        let k = gaussian_kernel_2d(11, 5.0).unwrap();
        let sum: f64 = k.iter().sum();
        assert!((sum - 1.0).abs() < 1e-12, "{sum}");
        // Symmetric and largest at the centre.
        for y in 0..11 {
            for x in 0..11 {
                assert!((k[y * 11 + x] - k[x * 11 + y]).abs() < 1e-15);
                assert!((k[y * 11 + x] - k[(10 - y) * 11 + x]).abs() < 1e-15);
                assert!(k[y * 11 + x] <= k[5 * 11 + 5]);
            }
        }
        // The 1-D line by hand: taps w(d) = exp(-d^2 / 50) / Z over d in
        // [-20, 20]; sample i gathers the taps d whose index i + d reflects
        // to the impulse at 5 (indices 5, -6, 16, -17 within reach of 0;
        // 5, -6, 16 of 5).
        let w = |d: f64| (-d * d / 50.0).exp();
        let z: f64 = (-20..=20).map(|d| w(d as f64)).sum();
        let line0 = (w(5.0) + w(6.0) + w(16.0) + w(17.0)) / z;
        let centre = (w(0.0) + 2.0 * w(11.0)) / z;
        assert!(
            (k[0] - line0 * line0).abs() < 1e-15,
            "{} vs {}",
            k[0],
            line0 * line0
        );
        assert!((k[5 * 11 + 5] - centre * centre).abs() < 1e-15);
        // SciPy 1.x's own values (gaussian_filter of the impulse, printed
        // once with SciPy; not a test dependency).
        for (at, want) in [
            (0, 0.007736635408576913),
            (5 * 11 + 5, 0.008832628216191647),
            (5, 0.008266488021414163),
            (2 * 11 + 7, 0.00834091731367335),
        ] {
            assert!((k[at] - want).abs() < 1e-15, "{at}: {} vs {want}", k[at]);
        }
    }

    #[test]
    fn the_blur_keeps_a_constant_inside_and_fades_at_the_border() {
        let x = Tensor::<f64>::full(vec![1, 2, 16, 16], 2.0);
        let k = gaussian_kernel_2d(5, 1.0).unwrap();
        let b = blur_substrate(&x, &k, 5).unwrap();
        assert_eq!(b.shape(), [1, 2, 16, 16]);
        assert!((b.data()[8 * 16 + 8] - 2.0).abs() < 1e-12);
        assert!(b.data()[0] < 2.0 && b.data()[0] > 0.5);
        assert!(gaussian_kernel_2d(4, 1.0).is_err());
        assert!(gaussian_kernel_2d(5, 0.0).is_err());
    }
}
