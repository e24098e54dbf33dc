//! `kubectl vpsnap`: the command line for vpsnap's users. It talks only to the Kubernetes API,
//! with the user's own kubeconfig and RBAC — never to a provider, never reading a Secret — so
//! it works wherever `kubectl` works and can do no more than the user may.
//!
//! One file per command; `connect` (kubeconfig, namespace), `output` (tables, JSON, YAML),
//! `wait` (progress while an object settles), `refs` (naming objects) and `explain` (plain
//! words for conditions and plans) are shared.
mod blockers;
mod completion;
mod connect;
mod create;
mod error;
mod explain;
mod output;
mod refs;
mod restore;
mod retention;
mod run;
mod servers;
mod wait;
mod why;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use error::{CliError, Exit};
pub use output::Format;

/// Shown under `--help`: the exit codes a pipeline can rely on.
const EXIT_CODES: &str = "\
Exit codes:
  0  done (created, Ready, Succeeded, shown)
  1  failed or blocked (e.g. LimitReached, a failed restore, confirmation refused)
  2  usage: bad arguments, or an object that does not exist or does not fit the request
  3  timed out while waiting (--timeout)
  4  the Kubernetes API refused or could not be reached (RBAC, connection)";

const EXAMPLES: &str = "\
Examples:
  # Snapshot server 12345 before an upgrade, wait until it is Ready, keep it from eviction
  kubectl vpsnap snapshot 12345 --provider hetzner --pin --wait

  # What occupies each server, and what garbage collection would evict next
  kubectl vpsnap servers --provider hetzner

  # Why is this snapshot not Ready, and what can I do about it?
  kubectl vpsnap why vpss/pre-upgrade

  # Restore server 12345 from a snapshot (asks you to type the server id)
  kubectl vpsnap restore 12345 --from-snapshot pre-upgrade --safety-snapshot

  # Run a schedule once now, and see what its retention keeps
  kubectl vpsnap run nightly --wait
  kubectl vpsnap retention nightly";

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-vpsnap",
    bin_name = "kubectl vpsnap",
    version,
    about = "Snapshot now, restore safely, see every server, explain any vpsnap object",
    long_about = "kubectl vpsnap: snapshot now, restore safely, see every server, explain any \
                  vpsnap object.\n\nTalks only to the Kubernetes API with your kubeconfig and \
                  RBAC (never to a provider, never reading a Secret).",
    after_help = EXAMPLES,
    after_long_help = format!("{EXAMPLES}\n\n{EXIT_CODES}"),
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, like kubectl's.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Namespace (default: the kubeconfig context's, else "default").
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a VpsSnapshot of SERVER now; with --wait, wait until it is Ready.
    #[command(after_help = "\
Examples:
  kubectl vpsnap snapshot 12345 --provider hetzner --wait
  kubectl vpsnap snapshot 12345 --name pre-upgrade --description 'before v2' --pin --wait
  kubectl vpsnap snapshot 12345 --evictable -o json")]
    Snapshot(create::CreateArgs),
    /// Create a VpsBackup of SERVER now; with --wait, wait until it is Ready.
    #[command(after_help = "\
Examples:
  kubectl vpsnap backup 12345 --provider hetzner --wait --timeout 2h")]
    Backup(create::CreateArgs),
    /// Restore SERVER from a snapshot or backup, after showing what is overwritten and asking
    /// you to type the server id.
    #[command(after_help = "\
Examples:
  kubectl vpsnap restore 12345 --from-snapshot pre-upgrade
  kubectl vpsnap restore 12345 --from-backup weekly-db --safety-snapshot
  echo 12345 | kubectl vpsnap restore 12345 --from-snapshot pre-upgrade   # confirm from a pipe
  kubectl vpsnap restore 12345 --from-snapshot-id 9001 --provider hetzner --yes   # scripts")]
    Restore(restore::RestoreArgs),
    /// Run a VpsSnapshotSchedule once now (annotation vpsnap.dev/run-requested), with the same
    /// limits, retention and one-operation-per-server rule as a cron run.
    #[command(after_help = "\
Examples:
  kubectl vpsnap run nightly
  kubectl vpsnap run nightly --wait
Without the plugin:
  kubectl annotate --overwrite vpsss/nightly vpsnap.dev/run-requested=$(date -u +%Y-%m-%dT%H:%M:%SZ)")]
    Run(run::RunArgs),
    /// Per server: what occupies it against the limit (vpsnap's objects, others' snapshots,
    /// automatic backups, in progress) and what garbage collection would evict next.
    #[command(after_help = "\
Examples:
  kubectl vpsnap servers
  kubectl vpsnap servers --provider hetzner --full
  kubectl vpsnap servers --server 12345      # every item on one server")]
    Servers(servers::ServersArgs),
    /// Explain an object: its conditions, recent Events, the garbage-collection and retention
    /// plan that concerns it, and what you can do next.
    #[command(after_help = "\
Examples:
  kubectl vpsnap why vpss/pre-upgrade
  kubectl vpsnap why backup/weekly-db
  kubectl vpsnap why nightly                 # any vpsnap kind, found by name")]
    Why(why::WhyArgs),
    /// Per server: which children a schedule's retention keeps, by which rule, and what goes
    /// next.
    #[command(after_help = "\
Examples:
  kubectl vpsnap retention nightly
  kubectl vpsnap retention nightly --server 12345 -o yaml")]
    Retention(retention::RetentionArgs),
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  kubectl vpsnap completion bash > /etc/bash_completion.d/kubectl-vpsnap
  kubectl vpsnap completion zsh > \"${fpath[1]}/_kubectl-vpsnap\"
  kubectl vpsnap completion fish > ~/.config/fish/completions/kubectl-vpsnap.fish")]
    Completion(completion::CompletionArgs),
}

/// How long `--wait` waits by default.
pub const DEFAULT_TIMEOUT: &str = "10m";

pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::api::parse_duration(text).map_err(|e| format!("{e} (e.g. --timeout 90s, 10m, 2h)"))
}

/// Runs the parsed command; the exit code follows [`Exit`].
pub fn main(cli: Cli) -> ExitCode {
    if let Command::Completion(args) = &cli.command {
        completion::print(args);
        return ExitCode::SUCCESS;
    }
    crate::provider::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return Exit::Failed.into();
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e}");
            e.exit().into()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<Exit, CliError> {
    let ctx = connect::Ctx::new(&cli.global).await?;
    match cli.command {
        Command::Snapshot(args) => create::snapshot(&ctx, args).await,
        Command::Backup(args) => create::backup(&ctx, args).await,
        Command::Restore(args) => restore::run(&ctx, args).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Servers(args) => servers::run(&ctx, args).await,
        Command::Why(args) => why::run(&ctx, args).await,
        Command::Retention(args) => retention::run(&ctx, args).await,
        Command::Completion(_) => Ok(Exit::Ok),
    }
}
