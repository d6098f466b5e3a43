//! `metafed`: run the seed's federation on simulated agents (`simulate`), benchmark the engine
//! against its peers (`bench`), and run it as a long-lived service to operate (`serve`).

// The binary's allocator (never the library's: a library must not choose its users' allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_io;
mod overload;
mod parse;
mod progress;
mod serve;
mod signals;
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
    /// Log level on stderr: error, warn, info (every breaker transition, operator actions, the
    /// admin endpoint), debug (every task that did not succeed, with its id), trace. RUST_LOG,
    /// if set, takes precedence (tracing's filter syntax).
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    /// Log format on stderr: text, or json (one object per line, with the event's fields).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the seed's 3 x 3 federation on simulated agents and reproduce the seed report's
    /// tables with the real engine: reliability per level, depth x breadth, the error-rate
    /// sweep, throughput and latency, containment, recovery, a verdict on each claim, and (in
    /// virtual time) breaker settings, hedging, a schedule of faults, rerouting and the decision
    /// engine.
    Simulate(simulate::Args),
    /// Run the workloads of WORKLOADS.md on the engine and its peers (crossbeam thread per
    /// stage, crossbeam pool, tokio actors, the bare SPSC ring, the inline floor), interleaved
    /// in pairs, and report medians, pairwise ratios and the performance targets.
    Bench(bench::Args),
    /// Throughput with several submitting threads on one engine, per worker count (the
    /// multi-core scaling benchmark), beside independent crossbeam pools.
    Scale(bench::ScaleArgs),
    /// Run an engine on simulated agents under a steady offered load, with the admin endpoint
    /// (/metrics, /health, /ready) on, until Ctrl-C: point Prometheus at it and watch breakers
    /// trip and recover.
    Serve(serve::Args),
    /// W4: measure the capacity, then offer 50 times it (--factor) in an open loop, priorities
    /// mixed, with a domain down and callers with tight deadlines on the way; report what the
    /// throttle, shedding and degraded mode turned away, success per priority, memory, and
    /// whether every accepted task completed exactly once (exit status 1 if not).
    Overload(overload::Args),
    /// Run W1 (1024 in flight, breakers off) through the engine's Rust API with a minimal
    /// closed loop and print tasks/s: for instruction counting (scripts/callgrind-w1.sh) and
    /// for the C boundary benchmark (benches/c/run.sh), whose C loop is the same.
    #[command(hide = true)]
    Probe {
        /// Tasks to run.
        #[arg(long, default_value_t = 100_000)]
        tasks: u64,
        /// Worker threads, 0 (one per core) to 1,024.
        #[arg(long, default_value = "1", allow_hyphen_values = true, value_parser = parse::parse_workers)]
        workers: usize,
        /// The features on, as `bench`'s engine-guarded: breakers at three levels, the rate
        /// limiter and per-agent concurrency limits, all set never to trip.
        #[arg(long)]
        guarded: bool,
    },
    /// Print the peak resident memory (KiB) of this process after running the default engine
    /// (used by `bench`).
    #[command(hide = true)]
    BenchRss,
    /// Print the CPU time (percent of one core) this process uses over one second while the
    /// default engine sits idle after a burst of work (used by `bench` and the tests).
    #[command(hide = true)]
    IdleCpu,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => tracing_subscriber::EnvFilter::new(spec),
        _ => match cli.log_level.parse::<tracing::Level>() {
            Ok(level) => tracing_subscriber::EnvFilter::new(level.to_string()),
            Err(_) => {
                eprintln!("metafed: --log-level must be error, warn, info, debug or trace, got {:?}", cli.log_level);
                return ExitCode::from(2);
            }
        },
    };
    // Colours only on a terminal; a closed stderr (`| head`) must not panic an engine thread.
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false);
    match cli.log_format {
        LogFormat::Text => fmt.with_target(false).init(),
        // One JSON object per line: time, level, target, and the event's fields flattened.
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(false).init(),
    }
    signals::on_ctrl_c();
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Scale(args) => bench::scale(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Overload(args) => match overload::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => Err("W4: an accepted task was lost, duplicated or unexpected (see above)".into()),
            Err(e) => Err(e),
        },
        Command::Probe { tasks, workers, guarded } => bench::probe(tasks, workers, guarded),
        Command::BenchRss => {
            bench::rss_probe();
            Ok(())
        }
        Command::IdleCpu => match bench::idle_cpu() {
            Some(percent) => {
                println!("{percent}");
                Ok(())
            }
            None => Err("idle-cpu: /proc/self/stat is not readable here".into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("metafed: {message}");
            ExitCode::FAILURE
        }
    }
}
