//! `sightline compare --manifest PATH`: runs every case of a reference
//! manifest and prints one line per case and a `N passed, M failed` total.

use sightline::manifest::{run_model, Manifest, TOLERANCE};
use sightline::outln;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `compare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The manifest (JSON); weights and cases files are relative to its folder.
    #[arg(long)]
    manifest: PathBuf,
    /// The kernel policy the models compute under (to check the accuracy
    /// of each: `--winograd all`, `--simd generic`, ...).
    #[command(flatten)]
    kernels: super::options::KernelOptions,
}

/// Runs the comparison; exit code 1 when any case fails.
pub fn run(args: Args) -> Result<ExitCode, super::CliError> {
    let manifest = Manifest::load(&args.manifest)?;
    if manifest.models.values().all(|m| m.cases.is_empty()) {
        return Err(format!(
            "manifest {}: no case to compare (its models list no cases)",
            args.manifest.display()
        )
        .into());
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for (name, entry) in &manifest.models {
        match run_model(entry, &manifest.root, args.kernels.policy()) {
            Ok(results) => {
                for r in results {
                    let detail = match &r.outcome {
                        Ok(e) => format!("{e:.3e}"),
                        Err(msg) => msg.clone(),
                    };
                    let status = if r.passed() { "ok" } else { "FAIL" };
                    outln!("{name:<24} {:<36} {status:<4} {detail}", r.name);
                    if r.passed() {
                        passed += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
            Err(e) => {
                // The model itself could not run: every case of it fails.
                for case in &entry.cases {
                    outln!("{name:<24} {:<36} FAIL {e}", case.name);
                    failed += 1;
                }
            }
        }
    }
    outln!("tolerance: max error / max|expected| <= {TOLERANCE:e}");
    outln!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
