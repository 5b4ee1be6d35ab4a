//! `rampart check`: loads documents and reports every error in them.

use std::io::Write;
use std::process::ExitCode;

use rampart_resources::{Diagnostics, parse_sources, read_sources};

use crate::exit::Outcome;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files, directories (read recursively) or `-` for standard input. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
}

pub(crate) fn run(args: Args) -> Outcome {
    let sources = read_sources(&args.files)?;
    let (docs, errors) = parse_sources(&sources);
    if !errors.is_empty() {
        return Err(anyhow::Error::new::<Diagnostics>(errors));
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} documents in {} sources: ok",
        docs.len(),
        sources.len()
    )?;
    Ok(ExitCode::SUCCESS)
}
