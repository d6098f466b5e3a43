//! `metafed`: run the seed's federation on simulated agents (`simulate`) and benchmark the
//! engine against its peers (`bench`).

// The binary's allocator (never the library's: a library must not choose its users' allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_io;
mod progress;
mod simulate;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "metafed",
    version,
    about = "A three-level meta-federation task engine with circuit breakers at every level"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the seed's 3 x 3 federation on simulated agents and reproduce the seed report's
    /// tables with the real engine: reliability per level, depth x breadth, the error-rate
    /// sweep, throughput and latency, containment, and a verdict on each claim.
    Simulate(simulate::Args),
    /// Run the workloads of WORKLOADS.md on the engine and its peers (crossbeam thread per
    /// stage, crossbeam pool, tokio actors, the bare SPSC ring, the inline floor), interleaved
    /// in pairs, and report medians, pairwise ratios and the performance targets.
    Bench(bench::Args),
    /// Throughput with several submitting threads on one engine, per worker count (the
    /// multi-core scaling benchmark), beside independent crossbeam pools.
    Scale(bench::ScaleArgs),
    /// Run W1 (1024 in flight, breakers off) through the engine's Rust API with a minimal
    /// closed loop and print tasks/s: for instruction counting (scripts/callgrind-w1.sh) and
    /// for the C boundary benchmark (benches/c/run.sh), whose C loop is the same.
    #[command(hide = true)]
    Probe {
        /// Tasks to run.
        #[arg(long, default_value_t = 100_000)]
        tasks: u64,
        /// Worker threads (0: one per core).
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// Print the peak resident memory (KiB) of this process after running the default engine
    /// (used by `bench`).
    #[command(hide = true)]
    BenchRss,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Scale(args) => bench::scale(&args),
        Command::Probe { tasks, workers } => bench::probe(tasks, workers),
        Command::BenchRss => {
            bench::rss_probe();
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("metafed: {message}");
            ExitCode::FAILURE
        }
    }
}
