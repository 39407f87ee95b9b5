//! `hybridq check`: one line per case, then `N passed, M failed`.

use std::path::PathBuf;
use std::process::ExitCode;

use hybridq::check::{check_case_with, CaseReport, CheckOptions, HybridReport};
use hybridq::fixture::{case_name, find_cases, load_with};
use hybridq::npz::ReadLimits;
use hybridq::Result;

/// Outcome of checking a set of files.
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    /// The reports of the hybrid cases that could be run.
    pub reports: Vec<HybridReport>,
    /// Full-integer cases that passed.
    pub integer_passed: usize,
}

/// Checks every case under `paths`, printing one line per case when `print` is set.
pub fn check_all(
    paths: &[PathBuf],
    limits: ReadLimits,
    options: CheckOptions,
    print: bool,
) -> Result<Summary> {
    let mut summary = Summary {
        passed: 0,
        failed: 0,
        reports: Vec::new(),
        integer_passed: 0,
    };
    for found in find_cases(paths) {
        let file = &found.path;
        let name = case_name(file);
        let checked = match found.problem {
            Some(e) => Err(e),
            None => load_with(file, limits).and_then(|case| check_case_with(&case, options)),
        };
        let line = match checked {
            Ok(report) => {
                let ok = report.passed();
                if ok {
                    summary.passed += 1;
                } else {
                    summary.failed += 1;
                }
                let line = format!("{} {name}: {report}", if ok { "PASS" } else { "FAIL" });
                match report {
                    CaseReport::Hybrid(r) => summary.reports.push(r),
                    _ => summary.integer_passed += ok as usize,
                }
                line
            }
            Err(e) => {
                summary.failed += 1;
                format!("FAIL {name}: {e}")
            }
        };
        if print {
            say!("{line}");
        }
    }
    Ok(summary)
}

pub fn run(paths: &[PathBuf], limits: ReadLimits, options: CheckOptions) -> Result<ExitCode> {
    let summary = check_all(paths, limits, options, true)?;
    say!("{} passed, {} failed", summary.passed, summary.failed);
    Ok(if summary.failed == 0 && summary.passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
