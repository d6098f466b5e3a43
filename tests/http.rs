//! A REST agent doing real I/O with deferred attempts: it hands each attempt to I/O threads that
//! call a loopback HTTP server (started here, on 127.0.0.1) and complete the attempt with the
//! response body. The server is killed mid-run: the domain fails over to a backup agent, and
//! every task gets exactly one completion.

use metafed::{AgentSpec, Attempt, DomainId, Engine, EngineConfig, FailureKind, Levels, Request, Task, Topology};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A minimal HTTP/1.0 server: `GET /users/<id>` answers `user <id>`.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return; // the listener is dropped: connections are refused from here on
                }
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    let n = conn.read(&mut buf).unwrap_or(0);
                    let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string();
                    let id =
                        line.split_whitespace().nth(1).and_then(|p| p.rsplit('/').next()).unwrap_or("?").to_string();
                    let body = format!("user {id}");
                    let _ = write!(conn, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                });
            }
        });
        Self { port, stop, thread: Some(thread) }
    }

    fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// One GET on a fresh connection; the body on a 200.
fn get(port: u16, id: u64) -> Result<Vec<u8>, i32> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|_| 503)?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|_| 500)?;
    write!(s, "GET /users/{id} HTTP/1.0\r\n\r\n").map_err(|_| 502)?;
    let mut response = Vec::new();
    s.read_to_end(&mut response).map_err(|_| 502)?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or(502)?;
    if !response.starts_with(b"HTTP/1.0 200") {
        return Err(502);
    }
    Ok(response[split + 4..].to_vec())
}

#[test]
fn a_rest_agent_fails_over_when_its_server_dies() {
    let mut server = Server::start();
    let port = server.port;
    // I/O threads: the handler hands them attempts and returns at once.
    let (tx, rx) = mpsc::channel::<(Attempt, u64)>();
    let rx = Arc::new(Mutex::new(rx));
    let io: Vec<_> = (0..4)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                loop {
                    let job = rx.lock().unwrap().recv();
                    let Ok((attempt, id)) = job else { return };
                    let _ = match get(port, id) {
                        Ok(body) => attempt.succeed_with(200, body),
                        Err(code) => attempt.fail(code),
                    };
                }
            })
        })
        .collect();
    let tx = Mutex::new(tx);
    let mut b = Topology::builder();
    let d = b.domain("API").unwrap();
    b.agent(
        d,
        "REST",
        AgentSpec::deferred(move |req: &Request<'_>, attempt: Attempt| {
            tx.lock().unwrap().send((attempt, req.task_id)).unwrap();
        })
        .max_concurrency(16),
    )
    .unwrap();
    b.agent(d, "Backup", AgentSpec::handler(|_: &Request<'_>| Ok(203))).unwrap();
    b.breakers(Levels::disabled());
    b.timeouts(Some(Duration::from_secs(2)), Some(Duration::from_secs(5)), Some(Duration::from_secs(10))).unwrap();
    let engine = Engine::start(b.build().unwrap(), EngineConfig { workers: 2, ..EngineConfig::default() }).unwrap();
    let run = |range: std::ops::Range<u64>| {
        let tickets: Vec<_> =
            range.map(|i| engine.submit(&Task::new(i, DomainId(0)).waitable(), None).unwrap()).collect();
        tickets.into_iter().map(|t| engine.wait(t, Some(Duration::from_secs(60))).unwrap()).collect::<Vec<_>>()
    };
    let before = run(0..200);
    server.kill();
    let after = run(200..400);
    let all: Vec<_> = before.iter().chain(&after).collect();
    let tickets: std::collections::HashSet<_> = all.iter().map(|c| c.ticket).collect();
    assert_eq!(tickets.len(), 400, "one completion per task");
    assert!(all.iter().all(|c| c.is_ok()));
    let served: Vec<_> = before.iter().filter(|c| c.value == 200).collect();
    assert!(!served.is_empty());
    for c in served {
        assert_eq!(c.body(), Some(format!("user {}", c.id).as_bytes()));
    }
    for c in &after {
        assert_eq!(c.value, 203, "the backup answers once the server is gone");
    }
    let refused: Vec<_> = after.iter().flat_map(|c| c.failures()).collect();
    assert!(!refused.is_empty() && refused.iter().all(|f| f.kind == FailureKind::Error && f.code == 503));
    drop(engine);
    drop(io);
}
