//! `kubectl-vpsnap`: the kubectl plugin (`kubectl vpsnap ...` once on PATH). Thin: parse, run;
//! everything lives in `vpsnap::plugin`.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    vpsnap::plugin::main(vpsnap::plugin::Cli::parse())
}
