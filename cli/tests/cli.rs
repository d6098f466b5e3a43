//! The `metafed` command line: `simulate --json` parses, and its figures hold together; `serve`
//! serves its admin endpoint and stops when asked; logs come as text or JSON lines.

use crate::common::{Lines, catches, wait_for};
use std::process::Command;

fn metafed(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_metafed")).args(args).output().expect("metafed runs")
}

#[test]
fn simulate_json_parses_and_its_fields_hold() {
    let out = metafed(&["simulate", "--tasks", "100000", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["tasks"], 100_000);
    assert_eq!(v["lost"], 0);
    assert_eq!(v["duplicated"], 0);
    let levels = v["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 3);
    for l in levels {
        let (p, m) = (l["predicted"].as_f64().unwrap(), l["measured"].as_f64().unwrap());
        let ci = l["ci95"].as_array().unwrap();
        let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
        assert!(lo <= m && m <= hi && (0.0..=1.0).contains(&p), "{l}");
        // Breakers off, the engine follows the model: within a 99.9% interval (wider than 95%).
        assert!((m - p).abs() < 4.0 * (hi - lo), "{l}");
    }
    assert_eq!(v["configs"].as_array().unwrap().len(), 3);
    assert_eq!(v["sweep"].as_array().unwrap().len(), 5);
    assert!(v["throughput_tasks_per_s"].as_f64().unwrap() > 0.0);
    let lat = &v["latency_ns"];
    assert!(lat["p50"].as_u64().unwrap() <= lat["p99"].as_u64().unwrap());
    assert!(lat["p99"].as_u64().unwrap() <= lat["p999"].as_u64().unwrap());
    let claims = v["claims"].as_array().unwrap();
    assert!(claims.len() >= 6);
    for c in claims {
        assert!(c["claim"].is_string() && !c["evidence"].as_str().unwrap().is_empty());
        assert!(c["holds"].is_boolean() || c["holds"].is_null());
    }
    // The seed's "100% reliability" for the 3x3 cannot hold with 8% domain and 5% meta faults.
    assert_eq!(claims[0]["holds"], false);
}

#[test]
fn simulate_refuses_bad_options_with_a_message() {
    let out = metafed(&["simulate", "--agent-error", "1.5"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--agent-error must be in [0, 1], got 1.5"));
    let out = metafed(&["simulate", "--config", "/nonexistent.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent.toml"));
}

#[test]
fn simulate_runs_a_toml_topology() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/topology.toml");
    let out = metafed(&["simulate", "--tasks", "20000", "--config", path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the configured topology") && text.contains("7. The seed's claims"), "{text}");
}

#[test]
fn simulate_names_bad_counts_and_says_n_a_without_samples() {
    let out = metafed(&["simulate", "--tasks", "-5"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be at least 1000, got -5"));
    let out = metafed(&["simulate", "--workers", "5000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("5000 is not in 0..=1024"), "{out:?}");
    // Every task fails at the meta level: the agents get no sample, and the verdict says so.
    let out = metafed(&["simulate", "--tasks", "2000", "--meta-error", "1", "--repeats", "1", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let agent_claim =
        v["claims"].as_array().unwrap().iter().find(|c| c["claim"].as_str().unwrap().starts_with("Agent level"));
    assert_eq!(agent_claim.unwrap()["holds"], serde_json::Value::Null);
}

#[test]
fn simulate_with_a_file_reports_its_rates_and_applies_overrides() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/topology.toml");
    let out = metafed(&["simulate", "--tasks", "5000", "--repeats", "1", "--config", path, "--agent-error", "0.3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("error rates: agents 30.00%"), "{text}");
    assert!(text.contains("with the file's breakers"), "{text}");
    assert!(!text.contains("the seed's breakers"), "{text}");
}

#[test]
fn info_logging_shows_breaker_transitions() {
    let out = metafed(&["--log-level", "info", "simulate", "--tasks", "20000", "--repeats", "1"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("breaker opened") && err.contains("breaker=agent "), "{err}");
}

#[cfg(target_os = "linux")]
#[test]
fn ctrl_c_prints_what_completed() {
    let child = Command::new(env!("CARGO_BIN_EXE_metafed"))
        .args(["simulate", "--tasks", "50000000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the process catches SIGINT (its handler is installed), Ctrl-C means "stop and report".
    wait_for("metafed to catch SIGINT", || catches(child.id(), 2));
    // SIGINT, as Ctrl-C sends it.
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("interrupted;") && text.contains("W1, breakers off"), "{text}");
    assert!(!out.status.success());
}

/// Starts `metafed serve` with `args`; returns the child and the admin address it printed.
fn serve(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_metafed"))
        .arg("serve")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    (child, addr)
}

#[cfg(target_os = "linux")]
#[test]
fn serve_runs_until_sigterm_with_its_admin_endpoint_on() {
    let (mut child, addr) =
        serve(&["--listen", "127.0.0.1:0", "--offered-rps", "3000", "--progress-every", "1", "--outage-every", "2"]);
    let stderr = Lines::of(child.stderr.take().unwrap());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(20)))
        .build()
        .into();
    // Tasks flow: the admitted count grows between two scrapes.
    let admitted = || -> f64 {
        let text = agent.get(&format!("http://{addr}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
        text.lines().find_map(|l| l.strip_prefix("metafed_tasks_admitted_total ")).unwrap().parse().unwrap()
    };
    let first = admitted();
    wait_for("more tasks admitted", || admitted() > first);
    let health = agent.get(&format!("http://{addr}/health")).call().unwrap().body_mut().read_to_string().unwrap();
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["lifecycle"], "running");
    // A progress line a second.
    wait_for("a progress line", || stderr.text().contains("offered"));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stderr = stderr.text();
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("metafed serve: ran") && stdout.contains("drained true"), "{stdout}");
    assert!(stderr.contains("offered") && stderr.contains("health"), "progress lines: {stderr}");
}

#[cfg(target_os = "linux")]
#[test]
fn serve_reloads_its_config_file_on_sighup() {
    let dir = std::env::temp_dir().join(format!("metafed-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("topology.toml");
    let original = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/topology.toml")).unwrap();
    std::fs::write(&file, &original).unwrap();
    let (mut child, _addr) =
        serve(&["--config", file.to_str().unwrap(), "--listen", "127.0.0.1:0", "--progress-every", "0"]);
    let stderr = Lines::of(child.stderr.take().unwrap());
    let hup = || assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    // A tighter agent breaker and another worker count: the first applies, the second waits.
    let changed = original
        .replace("consecutive_failures = 3", "consecutive_failures = 7")
        .replace("max_in_flight = 8192", "max_in_flight = 4096");
    assert_ne!(changed, original);
    std::fs::write(&file, changed).unwrap();
    wait_for("serve to catch SIGHUP", || catches(child.id(), 1));
    hup();
    wait_for("the first reload", || stderr.text().contains("SIGHUP: reloaded"));
    // A file whose new domain has an isolated agent (threads of its own: a restart) changes
    // nothing.
    std::fs::write(&file, original.replace("name = \"Auth\"", "name = \"Other\"")).unwrap();
    hup();
    wait_for("the second reload", || stderr.text().contains("nothing changed"));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stderr = stderr.text();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("SIGHUP: reloaded") && stderr.contains("breakers.agent"), "{stderr}");
    assert!(stderr.contains("need a restart: engine.workers / max_in_flight"), "{stderr}");
    assert!(stderr.contains("agent Other/RBAC") && stderr.contains("nothing changed"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_logs_json_lines_with_the_audit_trail() {
    let out = metafed(&[
        "--log-format",
        "json",
        "--log-level",
        "info",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--duration",
        "3",
        "--outage-every",
        "2",
        "--progress-every",
        "0",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let audit: Vec<_> = events.iter().filter(|e| e["target"] == "metafed::audit").collect();
    assert!(
        audit.iter().any(|e| e["action"] == "domain_down" && e["to"] == "true" && e["actor"] == "metafed serve"),
        "{audit:?}"
    );
    assert!(audit.iter().any(|e| e["action"] == "admin_endpoint"), "{audit:?}");
    let breaker = events.iter().find(|e| e["target"] == "metafed::breaker").expect("breaker transitions at info");
    assert!(breaker["breaker"].is_string() && breaker["from"].is_string() && breaker["cause"].is_string(), "{breaker}");
    assert_eq!(breaker["level"], "INFO");
}

#[test]
fn serve_refuses_bad_options_with_the_option_named() {
    let out = metafed(&["serve", "--offered-rps", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--offered-rps"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = metafed(&["serve", "--listen", "nowhere", "--duration", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--listen") && err.contains("nowhere"), "{err}");
    let out = metafed(&["--log-format", "xml", "serve"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-format"));
}

#[test]
fn overload_reports_exactly_once_in_json() {
    let out = metafed(&["overload", "--duration", "1", "--factor", "5", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["exactly_once"], true, "{doc}");
    assert!(doc["capacity_per_s"].as_f64().unwrap() > 0.0);
    let r = &doc["report"];
    assert_eq!(r["lost"], 0);
    assert_eq!(r["completed"], r["accepted"]);
    let bad = metafed(&["overload", "--factor", "0"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--factor"));
}

#[test]
fn simulate_reproducible_gives_the_same_json_under_load() {
    let args = [
        "simulate",
        "--tasks",
        "2000",
        "--repeats",
        "2",
        "--offered-rps",
        "5000",
        "--reproducible",
        "--json",
        "--workers",
        "2",
    ];
    let first = metafed(&args);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    // Again while other threads keep every core busy: time in the simulation is virtual.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let second = metafed(&args);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hogs.into_iter().for_each(|h| h.join().unwrap());
    assert!(second.status.success());
    assert!(first.stdout == second.stdout, "the reproducible JSON differed between runs");
    let doc: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert!(doc.get("throughput_tasks_per_s").is_none(), "wall-clock figures are left out");
    let recovery = doc["recovery"].as_array().unwrap();
    assert_eq!(recovery.len(), 3);
    // The agent's and the domain's breakers open when their fault begins.
    assert!(recovery[..2].iter().all(|r| r["breaker_opened_ms"].is_number()), "{recovery:?}");
    // The what-if grid: every setting ran the agent outage, and failover kept the domain
    // serving through it.
    let what_if = doc["what_if"].as_array().unwrap();
    assert_eq!(what_if.len(), 16);
    assert!(what_if.iter().all(|w| w["during_fault"].as_f64().unwrap() > 0.5), "{what_if:?}");
    // Hedging cuts W3's tail in virtual time, for about 1% more calls.
    let hedging = doc["hedging"].as_array().unwrap();
    assert!(hedging[0]["p999_us"].as_f64().unwrap() >= 900.0 && hedging[1]["p999_us"].as_f64().unwrap() < 100.0);
    assert!(hedging[1]["extra_share"].as_f64().unwrap() < 0.05, "{hedging:?}");
    // The schedule: seven phases; each fault is contained in its agent (its domain keeps most of
    // its success) and trips that agent's breaker.
    let phases = doc["schedule"].as_array().unwrap();
    assert_eq!(phases.len(), 7);
    for p in phases.iter().filter(|p| {
        p["what"].as_str().unwrap().contains("Database/SQL") || p["what"].as_str().unwrap().contains("API/REST")
    }) {
        assert!(p["domain_success"].as_f64().unwrap() > 0.8 && p["breaker_opened_ms"].is_number(), "{p:?}");
    }
}

/// `--reproducible` leaves out what the wall clock measures and nothing else: every figure of
/// the reproducible report is the plain run's too (same runs, same task ids), and the plain
/// report adds only wall-clock figures.
#[test]
fn simulate_reproducible_leaves_out_only_the_wall_clock() {
    let args = ["simulate", "--tasks", "2000", "--repeats", "2", "--offered-rps", "5000", "--json", "--workers", "2"];
    let plain = metafed(&args);
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
    let reproducible = metafed(&[&args[..], &["--reproducible"]].concat());
    assert!(reproducible.status.success(), "{}", String::from_utf8_lossy(&reproducible.stderr));
    let plain: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    let reproducible: serde_json::Value = serde_json::from_slice(&reproducible.stdout).unwrap();
    // What only the plain report has: throughput and latency, and the unloaded run.
    const WALL: [&str; 6] = [
        "tasks_per_s",
        "latency_ns",
        "throughput_tasks_per_s",
        "unloaded_latency_ns",
        "unloaded_without_breakers",
        "cost",
    ];
    fn same(plain: &serde_json::Value, repro: &serde_json::Value, path: &str, wall: &[&str], diffs: &mut Vec<String>) {
        use serde_json::Value::{Array, Object};
        match (plain, repro) {
            (Object(p), Object(r)) => {
                // A claim judged on the wall clock: the reproducible report says it left it out.
                if r.get("holds").is_some_and(|h| h.is_null())
                    && r["evidence"].as_str().is_some_and(|e| e.contains("--reproducible"))
                {
                    return;
                }
                for (k, v) in p {
                    match r.get(k) {
                        Some(rv) => same(v, rv, &format!("{path}/{k}"), wall, diffs),
                        None if wall.contains(&k.as_str()) => {}
                        None => diffs.push(format!("{path}/{k}: only in the plain report")),
                    }
                }
                diffs.extend(
                    r.keys()
                        .filter(|k| !p.contains_key(*k))
                        .map(|k| format!("{path}/{k}: only in the reproducible report")),
                );
            }
            (Array(p), Array(r)) if p.len() == r.len() => {
                for (i, (a, b)) in p.iter().zip(r).enumerate() {
                    same(a, b, &format!("{path}[{i}]"), wall, diffs);
                }
            }
            (p, r) if p == r => {}
            (p, r) => diffs.push(format!("{path}: plain {p}, reproducible {r}")),
        }
    }
    let mut diffs = Vec::new();
    same(&plain, &reproducible, "", &WALL, &mut diffs);
    assert!(diffs.is_empty(), "the modes differ beyond the wall clock:\n{}", diffs.join("\n"));
    assert!(plain["runs"]["unloaded_without_breakers"]["tasks"].as_u64().unwrap() > 0);
    assert_eq!(plain["tasks_total"], reproducible["tasks_total"]);
}

#[cfg(feature = "plot")]
#[test]
fn simulate_plot_writes_the_figures() {
    let dir = std::env::temp_dir().join(format!("metafed-plot-{}", std::process::id()));
    let out = metafed(&[
        "simulate",
        "--tasks",
        "1000",
        "--repeats",
        "1",
        "--offered-rps",
        "2000",
        "--reproducible",
        "--plot",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in
        ["reliability-vs-error-rate", "recovery-agent", "recovery-domain", "recovery-meta", "latency-cdf-hedging"]
    {
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>") && svg.contains("<polyline"), "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(target_os = "linux")]
#[test]
fn an_idle_engine_uses_no_cpu() {
    // In a process of its own (the test binary runs other engines meanwhile): the default
    // engine after 200,000 tasks, then one second of nothing. Its workers park: CPU time over
    // that second is 0 clock ticks when idle; 5 ticks (5% of a core) leaves room for a noisy host.
    let out = metafed(&["idle-cpu"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let percent: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(percent <= 5.0, "an idle engine used {percent}% of a core");
}

/// The peers with the features on run against the engine with the same on, each run exact
/// against the oracle, with their targets reported; an unknown peer is refused by name.
#[test]
fn bench_runs_the_guarded_peers_against_the_guarded_engine() {
    let out = metafed(&[
        "bench",
        "--workloads",
        "w1",
        "--pairs",
        "1",
        "--tasks",
        "20000",
        "--peers",
        "pool,pool-failsafe,tokio-tower",
        "--workers",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let imps = &v["workloads"][0]["implementations"];
    for name in ["engine", "engine-guarded", "pool", "pool-failsafe", "tokio-tower"] {
        assert_eq!(imps[name]["exact"], true, "{name}: {imps}");
    }
    for peer in ["pool", "pool-failsafe", "tokio-tower"] {
        assert!(imps[peer]["ratio"].as_f64().unwrap() > 0.0, "{peer}: {imps}");
    }
    let targets: Vec<&str> = v["targets"].as_array().unwrap().iter().map(|t| t["target"].as_str().unwrap()).collect();
    assert!(targets.iter().any(|t| t.contains("features on") && t.contains("failsafe")), "{targets:?}");
    let out = metafed(&["bench", "--peers", "engine-guarded"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown peer \"engine-guarded\" in --peers"));
}
