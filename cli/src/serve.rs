//! `metafed serve`: a long-running engine on simulated agents under a steady offered load, with
//! the admin endpoint on, so that Prometheus can scrape it and an operator can watch breakers
//! trip and recover. Optionally takes a domain down now and then (`--outage-every`), as an
//! operator would, recorded in the audit trail.

use metafed::admin::AdminOptions;
use metafed::{Completion, DomainId, DomainSet, Engine, EngineConfig, Status, Task, Topology, TopologyBuilder};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// A TOML file (topology, breakers, `[engine]`) instead of the seed's 3 x 3 federation. On
    /// SIGHUP it is read again and what can change while tasks run is applied (breakers and
    /// time budgets, agents' concurrency limits, the rate limit); see `Engine::reload_toml`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The seed agents' error rate, without --config (0 to 1).
    #[arg(long, default_value_t = 0.12)]
    agent_error: f64,
    /// Tasks offered per second, at a steady pace (1 to 10,000,000). Task i needs domain i mod D;
    /// every tenth needs them all.
    #[arg(long, default_value = "2000", allow_hyphen_values = true, value_parser = crate::parse::parse_count::<1>)]
    offered_rps: u64,
    /// Where the admin endpoint listens (GET /metrics, /health, /ready); port 0 picks a free
    /// port. The address it got is printed on stdout.
    #[arg(long, default_value = metafed::admin::DEFAULT_ADDR)]
    listen: String,
    /// A bearer token the admin endpoint requires (default: none). Prefer the environment
    /// variable METAFED_ADMIN_TOKEN, which other users of the machine cannot read from `ps`.
    #[arg(long, env = "METAFED_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Seconds to run, then drain and exit (0: until Ctrl-C or SIGTERM).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Every this many seconds, take one domain down (in turn) for a quarter of the period, as
    /// an operator's drill: its breakers open, health turns, the audit trail records it
    /// (0: never).
    #[arg(long, default_value_t = 0)]
    outage_every: u64,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 10)]
    progress_every: u64,
    /// Worker threads, 0 to 1,024 (0: one per core in the affinity mask; default 1, leaving
    /// the machine to the load and the scraper).
    #[arg(long, default_value = "1", allow_hyphen_values = true, value_parser = crate::parse::parse_workers)]
    workers: usize,
}

pub fn run(args: &Args) -> Result<(), String> {
    if !(0.0..=1.0).contains(&args.agent_error) {
        return Err(format!("--agent-error must be 0 to 1, got {}", args.agent_error));
    }
    if args.offered_rps > 10_000_000 {
        return Err(format!("--offered-rps must be 1 to 10000000, got {}", args.offered_rps));
    }
    let (topology, mut config) = match &args.config {
        Some(path) => {
            let at = |e: metafed::Error| format!("{}: {e}", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let t = TopologyBuilder::from_toml(&text).map_err(at)?.build().map_err(at)?;
            (t, EngineConfig::from_toml(&text).map_err(at)?)
        }
        None => (Topology::seed(args.agent_error).map_err(|e| e.to_string())?, EngineConfig::default()),
    };
    config.workers = args.workers;
    let domains = topology.domain_count();
    let done = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]); // completed, ok
    let counts = done.clone();
    let engine = Engine::builder(topology)
        .config(config)
        .on_complete(move |c: &Completion| {
            counts[0].fetch_add(1, Ordering::Relaxed);
            if c.status == Status::Ok {
                counts[1].fetch_add(1, Ordering::Relaxed);
            }
        })
        .start()
        .map_err(|e| e.to_string())?;
    let _actor = metafed::audit::act_as("metafed serve", "started from the command line");
    let addr = engine
        .serve_admin(&AdminOptions { addr: args.listen.clone(), token: args.token.clone() })
        .map_err(|e| format!("--listen: {e}"))?;
    println!(
        "metafed serve: admin endpoint on http://{addr} (/metrics, /health, /ready); {} tasks/s offered",
        args.offered_rps
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();

    if args.config.is_some() {
        crate::signals::on_sighup();
    }
    let started = Instant::now();
    let end = (args.duration > 0).then(|| started + Duration::from_secs(args.duration));
    let period = Duration::from_secs(args.outage_every);
    let mut down: Option<usize> = None;
    let (mut offered, mut refused) = (0u64, 0u64);
    let mut next_progress = started + Duration::from_secs(args.progress_every.max(1));
    let all = DomainSet::first(domains);
    while !crate::signals::interrupted() && end.is_none_or(|e| Instant::now() < e) {
        // Submit what the pace owes by now, then sleep a millisecond.
        let owed = (started.elapsed().as_secs_f64() * args.offered_rps as f64) as u64;
        while offered < owed {
            let i = offered;
            let task =
                if i % 10 == 9 { Task::fan_out(i, all) } else { Task::new(i, DomainId((i % domains as u64) as u16)) };
            if engine.try_submit(&task).is_err() {
                refused += 1;
            }
            offered += 1;
        }
        if let Some(cycle) = started.elapsed().as_secs().checked_div(args.outage_every) {
            let within = started.elapsed().saturating_sub(period * cycle as u32);
            let want = (cycle > 0 && within < period / 4).then(|| (cycle as usize - 1) % domains);
            if want != down {
                let _g = metafed::audit::act_as("metafed serve", "--outage-every drill");
                if let Some(d) = down {
                    engine.set_domain_down(DomainId(d as u16), false);
                }
                if let Some(d) = want {
                    engine.set_domain_down(DomainId(d as u16), true);
                }
                down = want;
            }
        }
        if let Some(path) = args.config.as_ref().filter(|_| crate::signals::take_reload()) {
            reload(&engine, path);
        }
        if args.progress_every > 0 && Instant::now() >= next_progress {
            next_progress += Duration::from_secs(args.progress_every);
            let h = engine.health();
            let (c, ok) = (done[0].load(Ordering::Relaxed), done[1].load(Ordering::Relaxed));
            let stats = engine.stats();
            eprintln!(
                "[{:>6.0} s] offered {offered}, refused {refused}, completed {c}, ok {:.2}%, latency since start p50 {:.0} us p99 {:.0} us, rss {} KiB, health {:?}{}",
                started.elapsed().as_secs_f64(),
                if c == 0 { 0.0 } else { 100.0 * ok as f64 / c as f64 },
                stats.latency_ns.p50 as f64 / 1e3,
                stats.latency_ns.p99 as f64 / 1e3,
                metafed_bench::overload::rss_kib(),
                h.status,
                h.reasons.first().map(|r| format!(": {r}")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let report = engine.shutdown(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let (c, ok) = (done[0].load(Ordering::Relaxed), done[1].load(Ordering::Relaxed));
    println!(
        "metafed serve: ran {:.1} s; offered {offered}, refused {refused}, completed {c}, ok {ok}; drained {}",
        started.elapsed().as_secs_f64(),
        report.drained
    );
    Ok(())
}

/// SIGHUP: reads the file again and applies what can change while tasks run. A file that does
/// not parse, or describes other domains or agents, changes nothing; the engine runs on.
fn reload(engine: &Engine, path: &std::path::Path) {
    let _g = metafed::audit::act_as("metafed serve", "SIGHUP reload");
    let result = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|text| engine.reload_toml(&text).map_err(|e| format!("{}: {e}", path.display())));
    match result {
        Ok(r) => {
            let applied = if r.applied.is_empty() { "nothing changed".to_owned() } else { r.applied.join(", ") };
            tracing::info!(file = %path.display(), applied = %applied, "reloaded on SIGHUP");
            eprintln!("metafed serve: SIGHUP: reloaded {}: {applied}", path.display());
            if !r.needs_restart.is_empty() {
                tracing::warn!(file = %path.display(), settings = %r.needs_restart.join(", "), "changed settings need a restart");
                eprintln!("metafed serve: SIGHUP: these changes need a restart: {}", r.needs_restart.join(", "));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "reload on SIGHUP failed; nothing changed");
            eprintln!("metafed serve: SIGHUP: {e}; nothing changed");
        }
    }
}
