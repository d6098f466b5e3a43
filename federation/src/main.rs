//! `metafed-federation`: the seed's federation with real agents. It starts the services on the
//! loopback interface (an HTTP service with REST, GraphQL and WebSocket endpoints and RFC 7662
//! introspection; SQLite, redb and a moka cache; an Ed25519 JWT key pair and an RBAC policy),
//! puts a fault proxy in front of each HTTP endpoint, runs the seed's 3 x 3 over them with a
//! mixed workload while faults come and go on a schedule, and reports how the federation
//! absorbed each one. `--serve` starts the services alone, for agents in other languages.

mod agents;
mod auth;
mod data;
mod faults;
mod http;
mod proxy;
mod report;
mod run;
mod serve;
mod servers;

use clap::Parser;
use faults::{Fault, World};
use metafed::{Engine, EngineConfig, Levels, Topology};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The seed's federation (API, Database, Auth; three real agents each) under scheduled faults.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// How long the workload runs, in seconds.
    #[arg(long, allow_negative_numbers = true, default_value_t = 30.0, value_parser = positive)]
    seconds: f64,
    /// Tasks submitted a second (an open loop: failing tasks do not speed it up).
    #[arg(long, allow_negative_numbers = true, default_value_t = 2000.0, value_parser = positive)]
    rate: f64,
    /// Keep this many tasks in flight instead (a closed loop: each completion submits the next).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536), conflicts_with = "rate")]
    in_flight: Option<u32>,
    /// The faults to schedule, in order, comma-separated (`none` for none): rest-reset,
    /// graphql-reset, ws-slow, http-down, sql-lock, docs-down, cache-stale, jwt-keys,
    /// introspect-blackhole, policy-offline. Default: rest-reset, ws-slow, sql-lock,
    /// cache-stale, jwt-keys, http-down (none with --break).
    #[arg(long)]
    faults: Option<String>,
    /// Agents to break for the whole run, comma-separated (REST, GraphQL, WebSocket, SQL, NoSQL,
    /// Cache, JWT, OAuth, RBAC): each through the fault that breaks its path. With it, no fault
    /// is scheduled unless --faults is given too.
    #[arg(long = "break", value_name = "AGENTS")]
    broken: Option<String>,
    /// The share of each fault's slot that the fault is on (the rest shows the recovery).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.5, value_parser = share)]
    on: f64,
    /// The admin endpoint's address (GET /metrics, /health, /ready) while it runs; `off` for none.
    #[arg(long, default_value = "127.0.0.1:0")]
    admin: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write the figure (success and p99 latency over time, faults shaded) to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No progress lines on standard error.
    #[arg(long, short)]
    quiet: bool,
    /// Start only the services and their fault proxies, for clients in other processes (the
    /// Python twin): print where they are as one JSON line, run --faults and --break over
    /// --seconds (no faults by default), print each fault's start and end as a JSON line, and
    /// stop when standard input closes.
    #[arg(long, conflicts_with_all = ["rate", "in_flight", "admin", "json", "plot", "postgres", "redis"])]
    serve: bool,
    /// Read the SQL agent's orders from this PostgreSQL database (a table of the run's own,
    /// dropped at exit) instead of the SQLite file, e.g. `postgresql://user@127.0.0.1:5432/db`.
    /// Needs a build with the `postgres` feature.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Read the NoSQL agent's documents from this Redis server (keys of the run's own, deleted
    /// at exit), through a fault proxy, instead of redb, e.g. `redis://127.0.0.1:6379`. Needs a
    /// build with the `redis` feature.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x < 1.0 => Ok(x),
        _ => Err(format!("{s:?} is not a share between 0 and 1 (exclusive)")),
    }
}

fn list<T>(s: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty() && *x != "none").map(parse).collect()
}

/// A directory of its own for the run's files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        let p = std::env::temp_dir().join(format!("metafed-federation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = real_main(&args) {
        eprintln!("metafed-federation: {e}");
        std::process::exit(1);
    }
}

fn real_main(args: &Args) -> Result<(), String> {
    let held = list(args.broken.as_deref().unwrap_or(""), Fault::breaking)?;
    let scheduled = match (&args.faults, &args.broken) {
        (Some(f), _) => list(f, Fault::parse)?,
        (None, Some(_)) => Vec::new(),
        (None, None) if args.serve => Vec::new(),
        (None, None) => Fault::DEFAULT.to_vec(),
    };
    if let Some(f) = scheduled.iter().find(|f| held.contains(f)) {
        return Err(format!(
            "--faults schedules {} and --break holds it for the whole run: give it to one of them",
            f.name()
        ));
    }
    if args.serve {
        scheduled.iter().chain(&held).try_for_each(|&f| serve::check(f))?;
    }
    let dir = TempDir::new()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agents")
        .enable_all()
        .build()
        .map_err(|e| format!("the agents' runtime: {e}"))?;
    let stores = Arc::new(data::Stores::create(&dir.0)?);
    rt.block_on(stores.warm_cache());
    let servers = servers::Servers::open(&rt, args.postgres.as_deref(), args.redis.as_deref())?;
    let removal = Removal(&servers, &rt);
    let auth = Arc::new(auth::Auth::new()?);
    let http = http::HttpService::new(auth.clone());
    let upstream = http.start()?;
    let proxies = rt.block_on(async {
        let mut ps = Vec::new();
        for _ in 0..4 {
            ps.push(proxy::Proxy::start(upstream).await.map_err(|e| format!("a fault proxy: {e}"))?);
        }
        Ok::<_, String>(ps)
    })?;
    let ends = agents::Endpoints {
        rest: proxies[0].addr(),
        graphql: proxies[1].addr(),
        websocket: proxies[2].addr(),
        introspect: proxies[3].addr(),
    };
    let proxies: [proxy::Proxy; 4] = proxies.try_into().map_err(|_| "four proxies")?;
    let world = Arc::new(World::new(http, proxies, stores.clone(), auth.clone(), servers.clone(), rt.handle().clone()));
    let duration = Duration::from_secs_f64(args.seconds);
    let schedule = run::Plan::spread(duration, &scheduled, args.on);
    if args.serve {
        let at = serve::Where { http: upstream, ends: &ends, sqlite: &stores.sqlite, auth: &auth };
        let served = serve::serve(&world, &at, &schedule, &held);
        drop(world);
        drop(removal);
        rt.shutdown_timeout(Duration::from_secs(1));
        return served;
    }

    let mut b = Topology::builder();
    for (domain, agents) in agents::agents(rt.handle(), &ends, &stores, &servers, &auth) {
        let d = b.domain(domain).map_err(|e| e.to_string())?;
        for (name, spec) in agents {
            let a = b.agent(d, name, spec).map_err(|e| e.to_string())?;
            b.agent_limits(a, 0, 64).map_err(|e| e.to_string())?;
        }
    }
    // The seed's breakers, with timeouts for loopback services: an attempt 200 ms, a sub-task
    // 600 ms, a task 1.5 s.
    b.breakers(Levels::default());
    b.timeouts(Some(Duration::from_millis(200)), Some(Duration::from_millis(600)), Some(Duration::from_millis(1500)))
        .map_err(|e| e.to_string())?;
    b.classify(metafed::classify::ClassifyConfig::seed());
    let topo = b.build().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let engine = Engine::start(topo.clone(), EngineConfig::default()).map_err(|e| e.to_string())?;
    let admin = if args.admin == "off" {
        None
    } else {
        let opts = metafed::admin::AdminOptions { addr: args.admin.clone(), token: None };
        let a = engine.serve_admin(&opts).map_err(|e| format!("--admin {}: {e}", args.admin))?;
        if !args.quiet {
            eprintln!("metrics: http://{a}/metrics  health: http://{a}/health");
        }
        Some(a.to_string())
    };
    let plan = run::Plan {
        duration,
        in_flight: args.in_flight.unwrap_or(0) as usize,
        rate: if args.in_flight.is_some() { None } else { Some(args.rate) },
        schedule,
        held: held.clone(),
    };
    if !args.quiet {
        let when: Vec<String> = plan
            .schedule
            .iter()
            .map(|(f, a, b)| format!("{} {:.1}-{:.1} s", f.name(), a.as_secs_f64(), b.as_secs_f64()))
            .collect();
        eprintln!(
            "services up on 127.0.0.1 (HTTP {upstream}); running {:.0} s; faults: {}",
            args.seconds,
            if when.is_empty() { "none".into() } else { when.join(", ") }
        );
    }
    let quiet = args.quiet;
    let out = run::run(&engine, started, &world, &plan, |t, n| {
        if !quiet {
            eprintln!("  {t:.0} s: {n} tasks completed");
        }
    })?;
    let report = report::build(&topo, &out, &held, admin, servers.describe());
    engine.shutdown(Duration::from_secs(2)).map_err(|e| e.to_string())?;
    if let Some(p) = &args.plot {
        report::svg(&report, p)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        print!("{}", report::text(&report));
        if let Some(p) = &args.plot {
            println!("figure: {}", p.display());
        }
    }
    drop(world);
    drop(removal);
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Removes the run's table and documents from the servers however the run ends (an error on
/// the way, a panic); an interrupted process leaves them (Redis's expire in a day).
struct Removal<'a>(&'a servers::Servers, &'a tokio::runtime::Runtime);

impl Drop for Removal<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove(self.1) {
            eprintln!("metafed-federation: could not remove the run's data from a server: {e}");
        }
    }
}
