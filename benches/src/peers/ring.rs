//! The limit: a bare SPSC ring out to one thread that routes inline, and a ring back. No slots,
//! no stages, no breakers: the cost of crossing to another core and back, plus the routing. The
//! rings are rtrb's (the wait-free SPSC ring a Rust user would pick).

use super::federation::{Federation, Router};
use rtrb::{Consumer, Producer, RingBuffer};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A bare ring round trip.
pub struct RingPeer {
    tx: Producer<(u64, u64)>,
    rx: Consumer<(u64, bool)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RingPeer {
    /// Starts the routing thread.
    pub fn new() -> Self {
        let (tx, mut work) = RingBuffer::<(u64, u64)>::new(4096);
        let (mut back, rx) = RingBuffer::<(u64, bool)>::new(4096);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut router = Router::default();
            let mut idle = 0u32;
            while !s.load(Ordering::Relaxed) {
                let mut any = false;
                while let Ok((id, d)) = work.pop() {
                    let ok = router.task(id, d);
                    let mut item = (id, ok);
                    while let Err(rtrb::PushError::Full(back_item)) = back.push(item) {
                        item = back_item;
                        std::hint::spin_loop();
                    }
                    any = true;
                }
                // Spin while busy, yield when idle: the limit waits as cheaply as it can.
                if any {
                    idle = 0;
                } else {
                    idle += 1;
                    if idle > 128 { std::thread::yield_now() } else { std::hint::spin_loop() }
                }
            }
        });
        Self { tx, rx, stop, thread: Some(thread) }
    }
}

impl Default for RingPeer {
    fn default() -> Self {
        Self::new()
    }
}

impl Federation for RingPeer {
    fn submit(&mut self, tasks: &[(u64, u64)]) -> usize {
        let mut n = 0;
        for &t in tasks {
            if self.tx.push(t).is_err() {
                break;
            }
            n += 1;
        }
        n
    }

    fn poll(&mut self, wait: bool, out: &mut Vec<(u64, bool)>) {
        let mut idle = 0u32;
        loop {
            while let Ok(c) = self.rx.pop() {
                out.push(c);
            }
            if !out.is_empty() || !wait {
                return;
            }
            idle += 1;
            if idle > 128 { std::thread::yield_now() } else { std::hint::spin_loop() }
        }
    }
}

impl Drop for RingPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
