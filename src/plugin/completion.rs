//! `kubectl vpsnap completion SHELL`: completion scripts from the command definitions.
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

pub fn print(args: &CompletionArgs) {
    let mut cmd = super::Cli::command();
    // The executable kubectl finds on PATH; kubectl's own completion delegates to
    // `kubectl_complete-vpsnap`, shells call the binary directly.
    clap_complete::generate(
        args.shell,
        &mut cmd,
        "kubectl-vpsnap",
        &mut std::io::stdout(),
    );
}
