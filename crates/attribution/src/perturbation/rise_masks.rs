//! RISE's random masks: low-resolution 0/1 grids, upsampled with reflection
//! padding to the input plus one cell, then cropped at a random shift
//! (TorchRay's `rise` and `_upsample_reflect`).

use crate::error::{AttributionError, Result};
use rand::distributions::{Distribution, Standard};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::{Dtype, SafeTensors};
use sightline_tensor::resize::resize2d;
use sightline_tensor::{Element, ResizeMode, Tensor};
use std::ops::Range;

/// The random draws that make RISE's masks: `grid` (M x 1 x c x c, each
/// cell 0 or 1) and one (row, column) shift per mask, each below the cell
/// size `ceil(H / c)`, `ceil(W / c)` of the input it is used on.
#[derive(Clone, Debug, PartialEq)]
pub struct RiseDraws<T: Element> {
    grid: Tensor<T>,
    shifts: Vec<(usize, usize)>,
}

fn invalid(message: String) -> AttributionError {
    AttributionError::InvalidOption(message)
}

/// The cell size of a `num_cells` grid over `size` pixels, `ceil(size / num_cells)`.
fn cell(size: usize, num_cells: usize) -> usize {
    size.div_ceil(num_cells)
}

impl<T: Element> RiseDraws<T> {
    /// Draws `num_masks` grids of `num_cells` x `num_cells` (a cell is 1
    /// where a uniform draw in [0, 1) is below `p`, as TorchRay's code does)
    /// and their shifts for an input of `hw`, from a ChaCha8 generator
    /// seeded with `seed`: mask by mask, its cells row by row, then its row
    /// and column shift. The same arguments give the same draws on every
    /// machine, whatever the batch size of the run that uses them.
    pub fn seeded(
        num_masks: usize,
        num_cells: usize,
        p: f64,
        hw: (usize, usize),
        seed: u64,
    ) -> Result<Self> {
        check_grid(num_masks, num_cells, hw)?;
        if !(0.0..=1.0).contains(&p) {
            return Err(invalid(format!("RISE: p must lie in [0, 1], got {p}")));
        }
        let cells = num_cells * num_cells;
        let len = num_masks.checked_mul(cells).ok_or_else(|| {
            invalid(format!(
                "RISE: {num_masks} grids of {num_cells}^2 cells are too many"
            ))
        })?;
        let (ch, cw) = (cell(hw.0, num_cells), cell(hw.1, num_cells));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut grid = Vec::with_capacity(len);
        let mut shifts = Vec::with_capacity(num_masks);
        for _ in 0..num_masks {
            grid.extend((0..cells).map(|_| {
                if Distribution::<f64>::sample(&Standard, &mut rng) < p {
                    T::one()
                } else {
                    T::zero()
                }
            }));
            shifts.push((rng.gen_range(0..ch), rng.gen_range(0..cw)));
        }
        let grid = Tensor::from_vec([num_masks, 1, num_cells, num_cells], grid)?;
        Ok(Self { grid, shifts })
    }

    /// Given draws: `grid` M x 1 x c x c of 0s and 1s (c at least 2) and
    /// one (row, column) shift per mask.
    pub fn new(grid: Tensor<T>, shifts: Vec<(usize, usize)>) -> Result<Self> {
        let [m, one, c, c2] = grid.dims4("RISE grid")?;
        if one != 1 || c != c2 {
            return Err(invalid(format!(
                "RISE: the grid must be M x 1 x c x c, got {:?}",
                grid.shape()
            )));
        }
        if shifts.len() != m {
            return Err(invalid(format!(
                "RISE: {} shifts given for {m} grids",
                shifts.len()
            )));
        }
        if let Some(v) = grid
            .data()
            .iter()
            .find(|&&v| v != T::zero() && v != T::one())
        {
            return Err(invalid(format!(
                "RISE: grid cells must be 0 or 1, found {}",
                v.to_f64_lossless()
            )));
        }
        check_grid(m, c, (c, c))?;
        Ok(Self { grid, shifts })
    }

    /// Number of masks.
    pub fn len(&self) -> usize {
        self.shifts.len()
    }

    /// Whether there are no masks.
    pub fn is_empty(&self) -> bool {
        self.shifts.is_empty()
    }

    /// Cells per side of the grids.
    pub fn num_cells(&self) -> usize {
        self.grid.shape()[2]
    }

    /// The grids, M x 1 x c x c.
    pub fn grid(&self) -> &Tensor<T> {
        &self.grid
    }

    /// The (row, column) shift of each mask.
    pub fn shifts(&self) -> &[(usize, usize)] {
        &self.shifts
    }

    /// The masks `range` for an input of `hw`, `len` x 1 x H x W: each grid
    /// upsampled by [`upsample_reflect`] to `(H + ch, W + cw)` (the cell
    /// size `ch = ceil(H / c)`) and cropped at its shift. A shift beyond
    /// the cell size of `hw` is an error.
    pub fn masks(&self, range: Range<usize>, hw: (usize, usize)) -> Result<Tensor<T>> {
        let c = self.num_cells();
        check_grid(self.len(), c, hw)?;
        if range.start > range.end || range.end > self.len() {
            return Err(invalid(format!(
                "RISE: masks {range:?} asked of {}",
                self.len()
            )));
        }
        let (h, w) = hw;
        let (ch, cw) = (cell(h, c), cell(w, c));
        if let Some((i, s)) = self.shifts[range.clone()]
            .iter()
            .enumerate()
            .find(|(_, &(sy, sx))| sy >= ch || sx >= cw)
        {
            return Err(invalid(format!(
                "RISE: mask {} has shift {s:?}, beyond the cell size ({ch}, {cw}) of a {h} x {w} input",
                range.start + i
            )));
        }
        let n = range.len();
        let item = c * c;
        let grids = Tensor::from_vec(
            [n, 1, c, c],
            self.grid.data()[range.start * item..range.end * item].to_vec(),
        )?;
        let up = upsample_reflect(&grids, (h + ch, w + cw))?;
        let (uh, uw) = (h + ch, w + cw);
        let mut out = Vec::with_capacity(n * h * w);
        for (k, &(sy, sx)) in self.shifts[range].iter().enumerate() {
            let plane = &up.data()[k * uh * uw..(k + 1) * uh * uw];
            for y in sy..sy + h {
                out.extend_from_slice(&plane[y * uw + sx..y * uw + sx + w]);
            }
        }
        Ok(Tensor::from_vec([n, 1, h, w], out)?)
    }

    /// The draws as safetensors bytes: `grid` (float32, M x 1 x c x c) and
    /// `shift` (int64, M x 2, row then column), the layout of TorchRay's
    /// fixtures.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        let grid: Vec<u8> = self
            .grid
            .data()
            .iter()
            .flat_map(|v| (v.to_f64_lossless() as f32).to_le_bytes())
            .collect();
        let shift: Vec<u8> = self
            .shifts
            .iter()
            .flat_map(|&(a, b)| [a as i64, b as i64])
            .flat_map(i64::to_le_bytes)
            .collect();
        let views = [
            (
                "grid",
                safetensors::tensor::TensorView::new(Dtype::F32, self.grid.shape().to_vec(), &grid),
            ),
            (
                "shift",
                safetensors::tensor::TensorView::new(Dtype::I64, vec![self.len(), 2], &shift),
            ),
        ];
        let views: Vec<_> = views
            .into_iter()
            .map(|(k, v)| v.map(|v| (k, v)))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| invalid(format!("RISE draws: {e}")))?;
        safetensors::serialize(views, &None).map_err(|e| invalid(format!("RISE draws: {e}")))
    }

    /// Draws from safetensors bytes with a float32 `grid` and an int64
    /// `shift` tensor (as [`RiseDraws::to_safetensors_bytes`] writes, and
    /// TorchRay's fixtures store).
    pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |m: String| invalid(format!("RISE draws file: {m}"));
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let grid = st
            .tensor("grid")
            .map_err(|_| bad("no `grid` tensor".into()))?;
        let shift = st
            .tensor("shift")
            .map_err(|_| bad("no `shift` tensor".into()))?;
        if grid.dtype() != Dtype::F32 || shift.dtype() != Dtype::I64 {
            return Err(bad(format!(
                "`grid` must be F32 and `shift` I64, got {:?} and {:?}",
                grid.dtype(),
                shift.dtype()
            )));
        }
        let values: Vec<T> = grid
            .data()
            .chunks_exact(4)
            .map(|b| T::from_f64_lossy(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))))
            .collect();
        let grid = Tensor::from_vec(grid.shape().to_vec(), values)?;
        Self::new(grid, shifts_from_i64(shift.shape(), shift.data())?)
    }
}

/// (row, column) pairs from an M x 2 int64 tensor's bytes.
pub(crate) fn shifts_from_i64(shape: &[usize], bytes: &[u8]) -> Result<Vec<(usize, usize)>> {
    if shape.len() != 2 || shape[1] != 2 || bytes.len() != shape[0] * 16 {
        return Err(invalid(format!(
            "RISE: shifts must be M x 2, got {shape:?}"
        )));
    }
    bytes
        .chunks_exact(16)
        .map(|b| {
            let at = |o: usize| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[o..o + 8]);
                usize::try_from(i64::from_le_bytes(a))
                    .map_err(|_| invalid("RISE: a shift is negative".into()))
            };
            Ok((at(0)?, at(8)?))
        })
        .collect()
}

/// At least one mask, at least 2 cells (the reflection pad needs them), no
/// more cells than pixels plus a cell.
fn check_grid(num_masks: usize, num_cells: usize, hw: (usize, usize)) -> Result<()> {
    if num_masks == 0 {
        return Err(invalid("RISE needs at least one mask".into()));
    }
    if num_cells < 2 {
        return Err(invalid(format!(
            "RISE needs at least 2 cells per side (reflection padding), got {num_cells}"
        )));
    }
    if hw.0 == 0 || hw.1 == 0 || num_cells > hw.0.min(hw.1) {
        return Err(invalid(format!(
            "RISE: {num_cells} cells per side do not fit a {} x {} input",
            hw.0, hw.1
        )));
    }
    Ok(())
}

/// TorchRay's `_upsample_reflect`: `x` (N x C x h x w) padded by one cell
/// on each side by reflection, upsampled bilinearly (`align_corners=False`)
/// to `cell * (h + 2)` with `cell = ceil(size / h)` (per axis), and cropped
/// to `size` from `cell`, so that the border cells blend into their
/// mirrors instead of into zeros.
pub fn upsample_reflect<T: Element>(x: &Tensor<T>, size: (usize, usize)) -> Result<Tensor<T>> {
    let [n, c, h, w] = x.dims4("upsample_reflect")?;
    if h < 2 || w < 2 || size.0 < h || size.1 < w {
        return Err(invalid(format!(
            "upsample_reflect: needs at least 2 x 2 cells and a size no smaller, got {h} x {w} to {size:?}"
        )));
    }
    let (ph, pw) = (h + 2, w + 2);
    // Reflection: index -1 is 1, index h is h - 2.
    let src = |i: usize, len: usize| match i {
        0 => 1,
        i if i == len + 1 => len - 2,
        i => i - 1,
    };
    let mut padded = Vec::with_capacity(n * c * ph * pw);
    for plane in x.data().chunks_exact(h * w) {
        for y in 0..ph {
            let row = &plane[src(y, h) * w..(src(y, h) + 1) * w];
            padded.extend((0..pw).map(|xx| row[src(xx, w)]));
        }
    }
    let padded = Tensor::from_vec([n, c, ph, pw], padded)?;
    let (cy, cx) = (size.0.div_ceil(h), size.1.div_ceil(w));
    let up_hw = (
        cy.checked_mul(ph)
            .ok_or_else(|| invalid("upsample_reflect: size overflows".into()))?,
        cx.checked_mul(pw)
            .ok_or_else(|| invalid("upsample_reflect: size overflows".into()))?,
    );
    let up = resize2d(&padded, up_hw, ResizeMode::Bilinear)?;
    let mut out = Vec::with_capacity(n * c * size.0 * size.1);
    for plane in up.data().chunks_exact(up_hw.0 * up_hw.1) {
        for y in cy..cy + size.0 {
            out.extend_from_slice(&plane[y * up_hw.1 + cx..y * up_hw.1 + cx + size.1]);
        }
    }
    Ok(Tensor::from_vec([n, c, size.0, size.1], out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_upsampling_of_a_constant_is_that_constant_and_of_a_step_is_monotone() {
        let ones = Tensor::<f64>::from_vec([1, 1, 3, 3], vec![1.0; 9]).unwrap();
        let up = upsample_reflect(&ones, (10, 10)).unwrap();
        assert_eq!(up.shape(), [1, 1, 10, 10]);
        assert!(up.data().iter().all(|&v| (v - 1.0).abs() < 1e-12));
        // Left column 0, the rest 1: rows are non-decreasing left to right.
        let step = Tensor::<f64>::from_vec([1, 1, 2, 2], vec![0.0, 1.0, 0.0, 1.0]).unwrap();
        let up = upsample_reflect(&step, (4, 4)).unwrap();
        for row in up.data().chunks(4) {
            assert!(row.windows(2).all(|p| p[0] <= p[1]), "{row:?}");
            assert!(row[0] < 0.5 && row[3] > 0.5, "{row:?}");
        }
    }

    #[test]
    fn reflect_upsampling_matches_a_hand_computed_value() {
        // 2 x 2 grid [[0, 1], [1, 1]] to 2 x 2: cell 1, pad 4 x 4, no resize,
        // crop [1..3]: the grid itself.
        let g = Tensor::<f64>::from_vec([1, 1, 2, 2], vec![0.0, 1.0, 1.0, 1.0]).unwrap();
        assert_eq!(upsample_reflect(&g, (2, 2)).unwrap().data(), g.data());
        // To 4 x 4: cell 2, the reflection-padded 4 x 4 grid P (rows and
        // columns of g in the order 1, 0, 1, 0) is upsampled to 8 x 8 and
        // cropped from 2. Output (0, 0) is upsampled (2, 2), whose source
        // is 2.5 / 2 - 0.5 = 0.75 on both axes: between P's rows and
        // columns 0 and 1, with weights 0.25 and 0.75.
        let up = upsample_reflect(&g, (4, 4)).unwrap();
        let p = |y: usize, x: usize| {
            let r = |i: usize| [1usize, 0, 1, 0][i];
            g.data()[r(y) * 2 + r(x)]
        };
        let l = 0.75;
        let v = (1.0 - l) * ((1.0 - l) * p(0, 0) + l * p(0, 1))
            + l * ((1.0 - l) * p(1, 0) + l * p(1, 1));
        assert!((up.data()[0] - v).abs() < 1e-12, "{} vs {v}", up.data()[0]);
    }

    #[test]
    fn seeded_draws_repeat_and_their_masks_lie_in_0_1() {
        let a = RiseDraws::<f32>::seeded(20, 4, 0.5, (16, 16), 3).unwrap();
        let b = RiseDraws::<f32>::seeded(20, 4, 0.5, (16, 16), 3).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, RiseDraws::seeded(20, 4, 0.5, (16, 16), 4).unwrap());
        let ones = a.grid().data().iter().filter(|&&v| v == 1.0).count();
        assert!(
            (100..220).contains(&ones),
            "{ones} of 320 cells set at p = 0.5"
        );
        assert!(a.shifts().iter().all(|&(r, c)| r < 4 && c < 4));
        let m = a.masks(0..20, (16, 16)).unwrap();
        assert_eq!(m.shape(), [20, 1, 16, 16]);
        assert!(m.data().iter().all(|&v| (0.0..=1.0).contains(&v)));
        // Chunks build the same masks as the whole.
        let part = a.masks(5..9, (16, 16)).unwrap();
        assert_eq!(part.data(), &m.data()[5 * 256..9 * 256]);
    }

    #[test]
    fn draws_round_trip_through_safetensors() {
        let a = RiseDraws::<f32>::seeded(7, 3, 0.3, (9, 12), 1).unwrap();
        let bytes = a.to_safetensors_bytes().unwrap();
        assert_eq!(RiseDraws::from_safetensors_bytes(&bytes).unwrap(), a);
        assert!(RiseDraws::<f32>::from_safetensors_bytes(b"junk").is_err());
    }

    #[test]
    fn bad_draws_are_errors() {
        assert!(RiseDraws::<f32>::seeded(0, 4, 0.5, (16, 16), 0).is_err());
        assert!(RiseDraws::<f32>::seeded(4, 1, 0.5, (16, 16), 0).is_err());
        assert!(RiseDraws::<f32>::seeded(4, 4, 1.5, (16, 16), 0).is_err());
        assert!(RiseDraws::<f32>::seeded(4, 40, 0.5, (16, 16), 0).is_err());
        let grid = Tensor::<f32>::from_vec([1, 1, 2, 2], vec![0.0, 1.0, 0.5, 1.0]).unwrap();
        assert!(RiseDraws::new(grid, vec![(0, 0)]).is_err());
        let grid = Tensor::<f32>::from_vec([1, 1, 2, 2], vec![0.0, 1.0, 1.0, 1.0]).unwrap();
        assert!(RiseDraws::new(grid.clone(), vec![]).is_err());
        let d = RiseDraws::new(grid, vec![(5, 0)]).unwrap();
        let e = d.masks(0..1, (8, 8)).unwrap_err().to_string();
        assert!(e.contains("shift"), "{e}");
        assert!(d.masks(0..2, (8, 8)).is_err());
    }
}
