//! Runs the application for a few seconds each way, with its embedded defaults, and reads its
//! JSON report: every task completes exactly once; one broken agent per domain leaves success
//! where the model puts it for the agents left; a whole domain broken fails the tasks that
//! need it, for the right reason, and no others; each scheduled fault is contained at its level.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn run(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_metafed-federation"))
        .args(["--json", "--quiet", "--admin", "off"])
        .args(args)
        .output()
        .expect("the application runs");
    assert!(out.status.success(), "metafed-federation {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the report is JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

/// Every accepted task completed once.
fn exactly_once(r: &Value) {
    let run = &r["run"];
    assert!(u(&run["tasks"]) > 500, "too few tasks to judge: {run}");
    assert_eq!(run["tasks"], run["completions"], "{run}");
    assert_eq!(u(&run["duplicates"]), 0, "{run}");
    assert_eq!(u(&run["missing"]), 0, "{run}");
}

#[test]
fn one_broken_agent_per_domain_leaves_the_success_the_model_predicts() {
    let r = run(&["--seconds", "4", "--rate", "800", "--break", "REST,SQL,JWT"]);
    exactly_once(&r);
    for k in r["kinds"].as_array().unwrap() {
        let (lo, hi, p) = (f(&k["interval"][0]), f(&k["interval"][1]), f(&k["predicted"]));
        assert!(u(&k["tasks"]) > 0, "{k}");
        assert!(p >= lo - 0.01 && p <= hi + 0.01, "the model's {p} is outside the measured interval: {k}");
        assert!(f(&k["success"]) > 0.95, "two healthy agents per domain should keep tasks succeeding: {k}");
    }
    // The broken agents were really broken: tried, and failing.
    for a in r["agents"].as_array().unwrap() {
        let (calls, failures) = (u(&a["calls"]), u(&a["failures"]));
        match a["name"].as_str().unwrap() {
            "REST" | "SQL" | "JWT" => assert!(calls > 0 && failures * 10 >= calls * 9, "{a}"),
            _ => assert!(calls > 0 && failures * 50 <= calls, "a healthy agent failed often: {a}"),
        }
    }
}

#[test]
fn a_whole_domain_broken_fails_only_the_tasks_that_need_it() {
    let r = run(&["--seconds", "3", "--rate", "800", "--break", "REST,GraphQL,WebSocket"]);
    exactly_once(&r);
    let mut needing = 0;
    for k in r["kinds"].as_array().unwrap() {
        if k["domains"].as_str().unwrap().contains("API") {
            needing += u(&k["tasks"]);
            assert_eq!(u(&k["ok"]), 0, "a task that needs the API succeeded without it: {k}");
        } else {
            assert_eq!(k["ok"], k["tasks"], "a task that does not need the API failed: {k}");
        }
    }
    let run = &r["run"];
    assert_eq!(u(&run["tasks"]) - u(&run["ok"]), needing, "{run}");
    for (reason, _) in run["reasons"].as_array().unwrap().iter().map(|x| (x[0].as_str().unwrap(), &x[1])) {
        assert!(
            ["every attempt failed", "shed by an open domain breaker", "domain timeout"].contains(&reason),
            "failed for a reason that is not the API domain's: {reason}"
        );
    }
}

#[test]
fn scheduled_faults_are_contained_at_their_level() {
    let r =
        run(&["--seconds", "10", "--on", "0.4", "--rate", "800", "--faults", "rest-reset,sql-lock,jwt-keys,http-down"]);
    exactly_once(&r);
    let faults = r["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 4);
    for fr in faults {
        let needing = f(&fr["needing"][1]);
        let others = &fr["others"];
        match fr["fault"].as_str().unwrap() {
            "http-down" => {
                assert_eq!(fr["contained_at"], "domain", "{fr}");
                assert!(needing < 0.5, "tasks needing a stopped service succeeded: {fr}");
                assert!(u(&others[0]) > 0 && f(&others[1]) > 0.95, "the other tasks suffered: {fr}");
                assert!(fr["recovery_s"].is_number(), "the API did not come back after the restart: {fr}");
            }
            _ => {
                assert_eq!(fr["contained_at"], "agent", "{fr}");
                assert!(needing > 0.9, "{fr}");
                let broken = &fr["broken"][0];
                assert!(u(&broken[1]) > 0 && u(&broken[2]) > 0, "the fault broke nothing: {fr}");
            }
        }
    }
}

#[test]
fn bad_arguments_are_refused_by_name() {
    for (args, says) in [
        (&["--faults", "rest-rest"][..], "unknown fault \"rest-rest\""),
        (&["--break", "SOAP"][..], "unknown agent \"SOAP\""),
        (&["--seconds=-1"][..], "--seconds"),
        (&["--rate", "-5"][..], "invalid value '-5' for '--rate"),
        (&["--break", "REST", "--faults", "rest-reset"][..], "--break holds it"),
        (&["--serve", "--break", "Cache"][..], "--serve cannot inject cache-stale"),
        (&["--serve", "--json"][..], "cannot be used with"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_metafed-federation")).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `--serve`: the description names every service, the REST endpoint answers through its proxy,
/// each fault's edges come as JSON lines, and closing standard input stops it.
#[test]
fn serve_describes_the_services_runs_the_faults_and_stops_when_its_input_closes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metafed-federation"))
        // The fault comes 2 s in (a tenth of the run), time enough for the GET before it.
        .args(["--serve", "--seconds", "20", "--on", "0.05", "--faults", "rest-reset"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the application runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let info: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).expect("a JSON description");
    for key in
        ["rest", "graphql", "websocket", "introspect", "jwks", "tokens_url", "sqlite", "orders_jsonl", "classify_toml"]
    {
        assert!(info[key].as_str().is_some_and(|v| !v.is_empty()), "no {key} in {info}");
    }
    assert_eq!(info["tokens"].as_object().unwrap().len(), 50);
    assert_eq!(info["schedule"][0]["fault"], "rest-reset");
    assert_eq!(std::fs::read_to_string(info["orders_jsonl"].as_str().unwrap()).unwrap().lines().count(), 1000);
    // One GET through the REST proxy, before the fault.
    let rest = info["rest"].as_str().unwrap().trim_start_matches("http://").trim_end_matches("/orders").to_owned();
    let mut conn = std::net::TcpStream::connect(&rest).unwrap();
    conn.write_all(b"GET /orders/7 HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.0 200") && reply.contains("\"id\":7"), "{reply}");
    let edges: Vec<Value> = (0..3).map(|_| serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap()).collect();
    assert_eq!((edges[0]["fault"].as_str(), edges[0]["on"].as_bool()), (Some("rest-reset"), Some(true)), "{edges:?}");
    assert_eq!((edges[1]["fault"].as_str(), edges[1]["on"].as_bool()), (Some("rest-reset"), Some(false)), "{edges:?}");
    assert_eq!(edges[2]["schedule"], "done", "{edges:?}");
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The same federation with PostgreSQL and Redis in place of SQLite and redb, when Debian's
/// packages are installed: the test starts both servers on the loopback interface (a fresh
/// PostgreSQL cluster in a temporary directory, a Redis without persistence) and stops them.
/// Without them it says so and passes, unless `METAFED_REQUIRE_TOOLS` is set.
#[cfg(all(feature = "postgres", feature = "redis"))]
mod on_servers {
    use super::{exactly_once, run};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    fn find(tool: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        // Debian keeps PostgreSQL's programs out of PATH.
        if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
            let mut v: Vec<PathBuf> = versions.flatten().map(|e| e.path().join("bin")).collect();
            v.sort();
            dirs.extend(v.into_iter().rev());
        }
        dirs.into_iter().map(|d| d.join(tool)).find(|p| p.is_file())
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// A server process, stopped when dropped: by `stop` if given (PostgreSQL's `pg_ctl stop -m
    /// fast`: as root the child is `runuser`, which would turn a signal into a slow shutdown),
    /// else by SIGINT.
    struct Server(Child, &'static str, Option<Command>);

    impl Drop for Server {
        fn drop(&mut self) {
            match self.2.as_mut() {
                Some(stop) => drop(stop.stdout(Stdio::null()).status()),
                None => drop(Command::new("kill").args(["-INT", &self.0.id().to_string()]).status()),
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("{} did not stop within 10 s: killed", self.1);
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Runs `cmd` as the `postgres` user when this is root (PostgreSQL refuses to run as root).
    fn as_postgres(tool: &Path, root: bool) -> Command {
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(tool);
            c
        } else {
            Command::new(tool)
        }
    }

    fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            assert!(Instant::now() < deadline, "{what} did not start within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn scheduled_faults_on_postgres_and_redis_are_contained_at_the_agent_level() {
        let tools = ["initdb", "postgres", "pg_isready", "redis-server"].map(|t| (t, find(t)));
        let missing: Vec<&str> = tools.iter().filter(|(_, p)| p.is_none()).map(|(t, _)| *t).collect();
        if !missing.is_empty() {
            assert!(
                std::env::var_os("METAFED_REQUIRE_TOOLS").is_none(),
                "METAFED_REQUIRE_TOOLS is set but {missing:?} are missing (apt-get install postgresql redis-server)"
            );
            eprintln!("skipped: {missing:?} missing (Debian: apt-get install postgresql redis-server)");
            return;
        }
        let [initdb, postgres, pg_isready, redis] = tools.map(|(_, p)| p.unwrap());
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        // Under /tmp, not $TMPDIR: the postgres user must be able to enter it.
        let dir = PathBuf::from(format!("/tmp/metafed-federation-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if root {
            assert!(Command::new("chown").args(["postgres:"]).arg(&dir).status().unwrap().success());
        }
        let data = dir.join("data");
        let init = as_postgres(&initdb, root)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--no-locale", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let (pg_port, redis_port) = (free_port(), free_port());
        let _pg = Server(
            as_postgres(&postgres, root)
                .arg("-D")
                .arg(&data)
                .args(["-p", &pg_port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-k"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            "postgres",
            Some({
                let mut stop = as_postgres(&initdb.with_file_name("pg_ctl"), root);
                stop.args(["stop", "-m", "fast", "-D"]).arg(&data);
                stop
            }),
        );
        let _redis = Server(
            Command::new(&redis)
                .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
            "redis-server",
            None,
        );
        wait_until("PostgreSQL", || {
            Command::new(&pg_isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &pg_port.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        });
        wait_until("Redis", || std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_ok());

        let pg_url = format!("postgresql://postgres@127.0.0.1:{pg_port}/postgres");
        let redis_url = format!("redis://127.0.0.1:{redis_port}");
        let r = run(&[
            "--postgres",
            &pg_url,
            "--redis",
            &redis_url,
            "--seconds",
            "8",
            "--on",
            "0.4",
            "--rate",
            "800",
            "--faults",
            "sql-lock,docs-down",
        ]);
        exactly_once(&r);
        let stores = r["run"]["stores"].as_str().unwrap();
        assert!(stores.contains("PostgreSQL") && stores.contains("Redis"), "{stores}");
        for f in r["faults"].as_array().unwrap() {
            assert_eq!(f["contained_at"], "agent", "{f}");
            let broken = &f["broken"][0];
            assert!(super::u(&broken[1]) > 0 && super::u(&broken[2]) > 0, "the fault broke nothing: {f}");
        }
        // The SQL and NoSQL agents answered from the servers outside the faults.
        let agents = r["agents"].as_array().unwrap();
        for name in ["SQL", "NoSQL"] {
            let a = agents.iter().find(|a| a["name"] == name).unwrap_or_else(|| panic!("no {name} in {agents:?}"));
            assert!(super::u(&a["calls"]) > super::u(&a["failures"]) + 100, "{a}");
        }
        drop((_pg, _redis));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
