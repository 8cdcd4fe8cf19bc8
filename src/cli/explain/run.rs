//! The run of a plan: the inputs a batch at a time, each batch going load
//! and preprocess, forward and methods, render and write, in that order;
//! then the pictures of a shared colour scale, the grid and the summary.

use super::inputs::{load, ms_since, Loaded};
use super::maps::{explain_batch, ImageResult, Outcome};
use super::outputs::{ensure_out, grid_bars, grid_header, grid_rows, write_pictures, write_raw};
use super::plan::Plan;
use super::summary::{summary_json, RunRecord};
use crate::cli::CliError;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use sightline::budget::product;
use sightline::errln;
use sightline::interrupt::Interrupt;
use sightline::render::{
    labelled_grid, write_atomic, write_png, LabelStyle, LabelledRow, Normalize, ValueRange,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn progress_bar(n: usize) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {pos}/{len} images  {elapsed_precise}  ETA {eta}")
    {
        pb.set_style(style);
    }
    pb
}

/// What the run has produced so far.
struct Progress {
    pb: ProgressBar,
    done: Vec<ImageResult>,
    failed: Vec<(PathBuf, String)>,
    rows: Vec<LabelledRow>,
    /// Per method, the range of all its maps so far (shared scales).
    shared: Vec<Option<ValueRange>>,
}

impl Progress {
    fn fail(&mut self, path: PathBuf, message: String) {
        self.pb.suspend(|| errln!("sightline: {message}"));
        self.failed.push((path, message));
        self.pb.inc(1);
    }

    /// Whether nothing has been written or reported yet.
    fn untouched(&self) -> bool {
        self.done.is_empty() && self.failed.is_empty()
    }
}

/// Groups loaded images by model-input size, in order of first appearance,
/// each group in input order.
fn by_size(loaded: Vec<Loaded>) -> Vec<Vec<Loaded>> {
    let mut groups: Vec<Vec<Loaded>> = Vec::new();
    for l in loaded {
        match groups
            .iter_mut()
            .find(|g| g[0].input_size() == l.input_size())
        {
            Some(g) => g.push(l),
            None => groups.push(vec![l]),
        }
    }
    groups
}

/// The most images of `width x height` one pass may take within the
/// memory budget (at least 1: each image alone was checked when loaded):
/// the pass on the batch, and per image its picture, tensor and its copy
/// in the batch.
fn fitting_batch(plan: &Plan, n: usize, (width, height): (u32, u32)) -> usize {
    let per_image = product(28, &[u64::from(width), u64::from(height)]);
    (1..=n)
        .rev()
        .find(|&b| {
            let needed = plan
                .pass_bytes(b, width, height)
                .saturating_add(per_image.saturating_mul(b as u64));
            plan.budget.check("a batch", needed).is_ok()
        })
        .unwrap_or(1)
}

/// Writes one explained image's files (and, with a per-map scale, its
/// pictures and grid rows), prints its classes, and keeps its record.
fn write_image(plan: &Plan, p: &mut Progress, mut r: ImageResult) {
    let t = Instant::now();
    let per_map = plan.outputs.normalize == Normalize::PerMap;
    let written = write_raw(plan, &mut r).and_then(|()| {
        if per_map {
            let overlays = write_pictures(plan, &mut r, None)?;
            if p.rows.len() < plan.outputs.grid_rows {
                p.rows.extend(grid_rows(plan, &r, &overlays));
            }
            r.image = RgbImage::new(0, 0);
            r.maps.iter_mut().for_each(|m| {
                m.values = Vec::new();
                m.raw = None;
            });
        }
        Ok(())
    });
    if let Err(e) = written {
        let msg = format!("{}: {e}", r.path.display());
        p.fail(r.path, msg);
        return;
    }
    if !per_map {
        for m in &r.maps {
            // Only the displayed map is needed from here on.
            p.shared[m.method] = match (p.shared[m.method], m.range) {
                (Some(a), Some(b)) => Some(a.union(b)),
                (a, b) => a.or(b),
            };
        }
        r.maps.iter_mut().for_each(|m| m.raw = None);
    }
    r.timings.insert("write", ms_since(t));
    let line: Vec<String> = r
        .classes
        .iter()
        .map(|&(k, score)| plan.labels.describe(k, score))
        .collect();
    p.pb.suspend(|| sightline::outln!("{}: {}", r.path.display(), line.join(", ")));
    p.done.push(r);
    p.pb.inc(1);
}

/// Runs the plan: exit code 0, or 1 when some image could not be
/// explained, or 128 + the signal when SIGINT or SIGTERM stopped it (the
/// batch under way is finished and `summary.json` written first).
pub(super) fn run(plan: &Plan, start: Instant) -> Result<ExitCode, CliError> {
    // Installed once the plan is known good: a signal before this point
    // ends the process as usual.
    let interrupt = Interrupt::install()
        .map_err(|e| format!("cannot install the SIGINT and SIGTERM handlers: {e}"))?;
    let items = &plan.inputs.items;
    let mut p = Progress {
        pb: progress_bar(items.len()),
        done: Vec::new(),
        failed: Vec::new(),
        rows: Vec::new(),
        shared: vec![None; plan.methods.len()],
    };
    let images_start = Instant::now();
    let mut next = 0;
    while next < items.len() {
        if let Some(signal) = interrupt.signal_name() {
            for item in &items[next..] {
                p.failed.push((
                    item.path.clone(),
                    format!("interrupted ({signal}) before this image"),
                ));
            }
            break;
        }
        let window = next..(next + plan.batch).min(items.len());
        next = window.end;
        // Load and preprocess.
        let mut loaded = Vec::new();
        for index in window {
            match load(plan, index) {
                Ok(l) => loaded.push(l),
                Err(message) => p.fail(items[index].path.clone(), message),
            }
        }
        // Forward and methods, a batch per model-input size (and within
        // the memory budget).
        let mut outcomes = Vec::new();
        for mut group in by_size(loaded) {
            while !group.is_empty() {
                let b = fitting_batch(plan, group.len(), group[0].input_size());
                let rest = group.split_off(b);
                let paths: Vec<PathBuf> = group.iter().map(|l| l.path.clone()).collect();
                match explain_batch(plan, group) {
                    Ok(o) => outcomes.extend(o),
                    // The plan checked the layers and sizes of a crop, so
                    // that such an error is not expected; should one come
                    // on the first batch, it is still an error of the
                    // options: fatal, before any file is written.
                    Err(e) if p.untouched() && plan.inputs.preprocess.crop.is_some() => {
                        return Err(e)
                    }
                    Err(e) => {
                        for path in paths {
                            let msg = format!("{}: {e}", path.display());
                            p.fail(path, msg);
                        }
                    }
                }
                group = rest;
            }
        }
        // Render and write, in input order.
        outcomes.sort_by_key(|o| match o {
            Outcome::Done(r) => r.index,
            Outcome::Failed { index, .. } => *index,
        });
        for o in outcomes {
            match o {
                Outcome::Done(r) => write_image(plan, &mut p, *r),
                Outcome::Failed { path, message, .. } => p.fail(path, message),
            }
        }
    }
    let images_ms = ms_since(images_start);
    p.pb.finish_and_clear();
    finish_pictures(plan, &mut p);
    let mut rows = std::mem::take(&mut p.rows);
    rows.truncate(plan.outputs.grid_rows);
    let grid_file = write_grid(plan, &rows, &p.shared);
    let interrupted = interrupt.signal_name();
    let out = plan.outputs.folder.as_path();
    let summary = summary_json(
        plan,
        &RunRecord {
            done: &p.done,
            failed: &p.failed,
            grid: (grid_file, rows.len()),
            interrupted,
            start,
            images_ms,
        },
    );
    ensure_out(out)?;
    let text = serde_json::to_string_pretty(&summary)?;
    write_atomic(&out.join("summary.json"), text.as_bytes())?;
    if let Some(seed) = plan.model.random_seed {
        errln!(
            "sightline: note: no --weights, so random weights (seed {seed}): the maps explain an untrained network"
        );
    }
    let total = items.len();
    if let Some(signal) = interrupted {
        errln!(
            "sightline: interrupted by {signal}: {} of {total} images explained; summary.json lists the rest",
            p.done.len(),
        );
        return Ok(ExitCode::from(interrupt.exit_status()));
    }
    if p.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    errln!(
        "sightline: {} of {total} images could not be explained:",
        p.failed.len(),
    );
    for (path, _) in &p.failed {
        errln!("  {}", path.display());
    }
    Ok(ExitCode::FAILURE)
}

/// With a shared colour scale, the pictures once every map is known: one
/// range per method (`shared`) or one for all (`shared-all`).
fn finish_pictures(plan: &Plan, p: &mut Progress) {
    let normalize = plan.outputs.normalize;
    if normalize == Normalize::PerMap {
        return;
    }
    if normalize == Normalize::SharedAll {
        let all = p.shared.iter().flatten().copied().reduce(ValueRange::union);
        p.shared.iter_mut().for_each(|r| *r = all);
    }
    let mut kept = Vec::with_capacity(p.done.len());
    for mut r in std::mem::take(&mut p.done) {
        match write_pictures(plan, &mut r, Some(&p.shared)) {
            Ok(overlays) => {
                if p.rows.len() < plan.outputs.grid_rows {
                    p.rows.extend(grid_rows(plan, &r, &overlays));
                }
                kept.push(r);
            }
            Err(e) => {
                let msg = format!("{}: {e}", r.path.display());
                errln!("sightline: {msg}");
                p.failed.push((r.path.clone(), msg));
            }
        }
    }
    p.done = kept;
}

/// Writes `grid.png` of `rows`, with a header naming the methods and a
/// colour bar under each method's column (`shared`: the ranges of the shared
/// scales); its name, or `None` when there are no rows or it could not be
/// written (said on standard error).
fn write_grid(
    plan: &Plan,
    rows: &[LabelledRow],
    shared: &[Option<ValueRange>],
) -> Option<&'static str> {
    if rows.is_empty() {
        return None;
    }
    let out = plan.outputs.folder.as_path();
    let header = grid_header(plan);
    let bars = grid_bars(plan, shared);
    match ensure_out(out).and_then(|()| {
        let picture = labelled_grid(&header, rows, &bars, &LabelStyle::default())?;
        Ok(write_png(&picture, &out.join("grid.png"))?)
    }) {
        Ok(()) => Some("grid.png"),
        Err(e) => {
            errln!("sightline: {e}");
            None
        }
    }
}
