//! Exit statuses and how errors reach the user.
//!
//! - 0: success.
//! - 1: the command ran and its answer is "no" (a lint at or above `--fail-on`, a denied
//!   flow when asked to fail on it), or a runtime failure.
//! - 2: the input is invalid (bad manifests or configuration, bad arguments).

use std::io::Write;
use std::process::ExitCode;

use rampart_resources::Diagnostics;

/// Exit status for invalid input.
pub(crate) const INVALID_INPUT: u8 = 2;

/// What a command ends with.
pub(crate) type Outcome = anyhow::Result<ExitCode>;

/// Prints the error, if any, and turns the outcome into an exit status. Invalid input
/// (a [`Diagnostics`] anywhere in the chain) exits with 2, other failures with 1.
pub(crate) fn report(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            if let Some(diags) = err.downcast_ref::<Diagnostics>() {
                let n = diags.len();
                let _ = writeln!(stderr, "{diags}");
                let _ = writeln!(
                    stderr,
                    "error: invalid input: {n} error{}",
                    if n == 1 { "" } else { "s" }
                );
                return ExitCode::from(INVALID_INPUT);
            }
            let _ = writeln!(stderr, "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
