//! `metafed`: run the seed's federation on simulated agents (`simulate`) and benchmark the
//! engine against its peers (`bench`).

// The binary's allocator (never the library's: a library must not choose its users' allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("metafed: {message}");
            ExitCode::FAILURE
        }
    }
}
