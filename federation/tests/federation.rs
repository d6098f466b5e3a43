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
    let r = run(&[
        "--seconds",
        "10",
        "--on",
        "0.4",
        "--rate",
        "800",
        "--faults",
        "rest-reset,sqlite-lock,jwt-keys,http-down",
    ]);
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
        .args(["--serve", "--seconds", "2", "--on", "0.3", "--faults", "rest-reset"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the application runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let info: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).expect("a JSON description");
    for key in ["rest", "graphql", "websocket", "introspect", "jwks", "sqlite", "orders_jsonl"] {
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
