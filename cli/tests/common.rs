//! Helpers the CLI tests share.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Waits until `done()` holds, looking every 10 ms; fails the test, naming `what`, after a
/// minute (a shared machine may be slow). Tests synchronise with this, never with a sleep.
#[track_caller]
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let limit = Duration::from_secs(60);
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` has a handler installed for signal number `signal` (Linux: the
/// `SigCgt` mask of /proc/PID/status).
pub fn catches(pid: u32, signal: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// What a child process writes to a pipe, collected by a thread as it comes.
pub struct Lines(Arc<Mutex<String>>);

impl Lines {
    /// Starts collecting `pipe`.
    pub fn of(pipe: impl Read + Send + 'static) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let t = text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut t = t.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
            }
        });
        Self(text)
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}
