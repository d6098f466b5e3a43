//! `--serve`: the services and their fault proxies for clients in other processes (the Python
//! twin in `examples/python/real_agents/`). One JSON object on standard output says where
//! everything is; the faults of the schedule then come and go, each edge a JSON line; the
//! services stop when standard input closes.

use crate::auth::{Auth, permissions};
use crate::data::{ORDERS, USERS, order};
use crate::faults::{Fault, World};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Where a client finds the services and what it needs to call them.
pub struct Where<'a> {
    /// The HTTP service itself (no proxy).
    pub http: SocketAddr,
    /// The proxies in front of REST, GraphQL, WebSocket and introspection.
    pub ends: &'a crate::agents::Endpoints,
    /// The SQLite file.
    pub sqlite: &'a Path,
    /// The tokens, policy and keys.
    pub auth: &'a Auth,
}

/// Refuses a fault that a client in another process would not see (before anything starts).
pub fn check(f: Fault) -> Result<(), String> {
    if f.shared() {
        return Ok(());
    }
    let shared: Vec<_> = Fault::ALL.iter().filter(|(_, f)| f.shared()).map(|(n, _)| *n).collect();
    Err(format!(
        "--serve cannot inject {}: it acts on the Rust agents' own state ({}), which a client of the services does not share; the faults of the shared services are {}",
        f.name(),
        f.what(),
        shared.join(", ")
    ))
}

fn line(v: &Value) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}").and_then(|()| out.flush()).map_err(|e| format!("standard output: {e}"))
}

/// Writes the data set as JSON lines beside the SQLite file (a dump a client loads into its
/// own document store and cache, whatever faults are on): its path.
fn export(w: &Where) -> Result<std::path::PathBuf, String> {
    let path = w.sqlite.with_file_name("orders.jsonl");
    let mut text = String::new();
    for id in 1..=ORDERS {
        text += &serde_json::to_string(&order(id)).map_err(|e| e.to_string())?;
        text.push('\n');
    }
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The services' description: the first line `--serve` prints.
fn describe(w: &Where, schedule: &[(Fault, Duration, Duration)], held: &[Fault]) -> Result<Value, String> {
    // The seed's rules as the engine's TOML: the twin classifies with the same ones.
    #[derive(serde::Serialize)]
    struct Rules {
        classify: metafed::classify::ClassifyConfig,
    }
    let classify = toml::to_string(&Rules { classify: metafed::classify::ClassifyConfig::seed() })
        .map_err(|e| format!("the seed's rules as TOML: {e}"))?;
    let roles: serde_json::Map<String, Value> =
        w.auth.policy().iter().map(|(u, r)| (u.clone(), Value::from(r.as_str()))).collect();
    let perms: serde_json::Map<String, Value> =
        ["admin", "reader", "guest"].iter().map(|r| ((*r).to_owned(), json!(permissions(r)))).collect();
    let fault = |f: Fault| {
        let (domain, agents) = f.target();
        json!({ "fault": f.name(), "what": f.what(), "domain": domain, "agents": agents })
    };
    let sched: Vec<Value> = schedule
        .iter()
        .map(|&(f, a, b)| {
            let mut v = fault(f);
            v["start_s"] = json!(a.as_secs_f64());
            v["end_s"] = json!(b.as_secs_f64());
            v
        })
        .collect();
    Ok(json!({
        "http": w.http.to_string(),
        "rest": format!("http://{}/orders", w.ends.rest),
        "graphql": format!("http://{}/graphql", w.ends.graphql),
        "websocket": format!("ws://{}/ws", w.ends.websocket),
        "introspect": format!("http://{}/introspect", w.ends.introspect),
        "jwks": format!("http://{}/.well-known/jwks.json", w.http),
        "tokens_url": format!("http://{}/tokens", w.http),
        "sqlite": w.sqlite.display().to_string(),
        "orders_jsonl": export(w)?.display().to_string(),
        "orders": ORDERS,
        "users": USERS,
        "tokens": w.auth.tokens()?,
        "classify_toml": classify,
        "roles": roles,
        "permissions": perms,
        "schedule": sched,
        "held": held.iter().map(|&f| fault(f)).collect::<Vec<_>>(),
    }))
}

/// Serves until standard input closes: the held faults on from the start, the scheduled ones
/// at their times (from when the description is printed), each edge printed as
/// `{"t": seconds, "fault": name, "on": bool}`, then `{"t": seconds, "schedule": "done"}`.
pub fn serve(world: &World, w: &Where, schedule: &[(Fault, Duration, Duration)], held: &[Fault]) -> Result<(), String> {
    for &f in held {
        world.start(f)?;
    }
    let (closed, stdin_closed) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = String::new();
            while matches!(stdin.read_line(&mut buf), Ok(n) if n > 0) {
                buf.clear();
            }
            let _ = closed.send(());
        })
        .map_err(|e| e.to_string())?;
    line(&describe(w, schedule, held)?)?;
    let t0 = Instant::now();
    let mut edges: Vec<(Duration, Fault, bool)> =
        schedule.iter().flat_map(|&(f, a, b)| [(a, f, true), (b, f, false)]).collect();
    edges.sort_by_key(|e| e.0);
    for (at, f, on) in edges {
        match stdin_closed.recv_timeout(at.saturating_sub(t0.elapsed())) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return Ok(()),
        }
        if on { world.start(f) } else { world.end(f) }?;
        line(&json!({ "t": t0.elapsed().as_secs_f64(), "fault": f.name(), "on": on }))?;
    }
    line(&json!({ "t": t0.elapsed().as_secs_f64(), "schedule": "done" }))?;
    let _ = stdin_closed.recv();
    Ok(())
}
