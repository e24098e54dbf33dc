//! `vpsnap`: the operator (`controller`), its CRDs (`crd`) and a provider simulator (`sim`).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc: the operator's peak is a relist of every object after a
/// start plus a pass over every server, and glibc kept much of what those freed (measured in
/// `vpsnap-bench`, back to back with 13,000 objects: peak RSS 79.8 → 77.9 MiB, steady
/// 67.8 → 62.1 MiB; README, "Scale and resilience, measured").
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "vpsnap",
    version,
    about = "Declarative VPS snapshots and backups for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Controller(vpsnap::controller::ControllerArgs),
    /// Print every CRD as YAML, or write one file per CRD into a directory.
    Crd {
        /// Write `<plural>.vpsnap.dev.yaml` files here instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the provider simulator (both provider APIs, in memory, on 127.0.0.1).
    Sim(Box<vpsnap::sim::SimArgs>),
    /// GET a URL and succeed only on a 2xx answer (the chart's `helm test` checks `/readyz` so).
    Probe(vpsnap::telemetry::probe::ProbeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { out } => print_crds(out),
        Command::Controller(args) => runtime().block_on(vpsnap::controller::run(args)),
        Command::Sim(args) => runtime().block_on(vpsnap::sim::run(*args)),
        Command::Probe(args) => runtime().block_on(vpsnap::telemetry::probe::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpsnap: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn print_crds(out: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    let crds = vpsnap::api::crds_yaml();
    match out {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for (file, body) in crds {
                std::fs::write(dir.join(file), body)?;
            }
        }
        None => {
            for (_, body) in crds {
                print!("---\n{body}");
            }
        }
    }
    Ok(())
}
