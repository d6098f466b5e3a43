//! crossbeam-channel, run to completion: a pool of workers, each taking a task from a shared
//! channel and running its whole route (every sub-task, with failover), then sending the
//! completion back on another channel.

use super::federation::{Federation, Router};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use std::thread::JoinHandle;

/// A worker pool on crossbeam channels.
pub struct PoolPeer {
    tx: Option<Sender<(u64, u64)>>,
    rx: Receiver<(u64, bool)>,
    threads: Vec<JoinHandle<()>>,
}

impl PoolPeer {
    /// Starts `workers` threads.
    pub fn new(workers: usize) -> Self {
        let (tx, work) = bounded::<(u64, u64)>(4096);
        let (done, rx) = bounded::<(u64, bool)>(4096);
        let threads = (0..workers.max(1))
            .map(|_| {
                let (work, done) = (work.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut router = Router::default();
                    while let Ok((id, d)) = work.recv() {
                        if done.send((id, router.task(id, d))).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Self { tx: Some(tx), rx, threads }
    }
}

impl Federation for PoolPeer {
    fn submit(&mut self, tasks: &[(u64, u64)]) -> usize {
        let tx = self.tx.as_ref().expect("open");
        tasks.iter().take_while(|&&t| !matches!(tx.try_send(t), Err(TrySendError::Full(_)))).count()
    }

    fn poll(&mut self, wait: bool, out: &mut Vec<(u64, bool)>) {
        if wait && let Ok(c) = self.rx.recv() {
            out.push(c);
        }
        out.extend(self.rx.try_iter());
    }
}

impl Drop for PoolPeer {
    fn drop(&mut self) {
        self.tx.take(); // closes the channel: the workers return
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
