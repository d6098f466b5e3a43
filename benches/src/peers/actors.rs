//! tokio mpsc, one actor (task) per stage on a multi-thread runtime: a meta actor, three domain
//! actors, nine agent actors, the same messages as the thread-per-stage peer, scheduled by tokio's
//! work-stealing runtime instead of the OS.

use super::federation::{AGENTS, DOMAINS, Federation, Router};
use metafed::sim::oracle_key;
use std::collections::HashMap;
use tokio::sync::mpsc::{self, Receiver, UnboundedSender};

enum Meta {
    Task(u64, u64),
    SubDone(u64, bool),
}

enum Domain {
    Sub { id: u64, fanout: u32 },
    Result { id: u64, fanout: u32, attempt: u64, agent: usize, ok: bool },
}

struct Attempt {
    id: u64,
    fanout: u32,
    attempt: u64,
    agent: usize,
}

const CAP: usize = 4096;

/// Actors on tokio.
pub struct ActorsPeer {
    meta: Option<UnboundedSender<Meta>>,
    done: Receiver<(u64, bool)>,
    in_flight: usize,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ActorsPeer {
    /// Starts a runtime of `workers` threads and the 13 actors.
    pub fn new(workers: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .build()
            .expect("a tokio runtime");
        let (meta_tx, mut meta_rx) = mpsc::unbounded_channel::<Meta>();
        let (done_tx, done) = mpsc::channel::<(u64, bool)>(CAP);
        let mut domain_txs = Vec::new();
        for d in 0..DOMAINS {
            let (dtx, mut drx) = mpsc::unbounded_channel::<Domain>();
            let mut agent_txs = Vec::new();
            for agent in 0..AGENTS {
                let (atx, mut arx) = mpsc::unbounded_channel::<Attempt>();
                let to_domain = dtx.clone();
                runtime.spawn(async move {
                    let router = Router::default();
                    while let Some(a) = arx.recv().await {
                        let ok = router.attempt(oracle_key(a.id, d as u16, a.fanout), a.attempt, agent);
                        let _ = to_domain.send(Domain::Result {
                            id: a.id,
                            fanout: a.fanout,
                            attempt: a.attempt,
                            agent: a.agent,
                            ok,
                        });
                    }
                });
                agent_txs.push(atx);
            }
            let to_meta = meta_tx.clone();
            runtime.spawn(async move {
                let mut cursor = 0usize;
                while let Some(msg) = drx.recv().await {
                    match msg {
                        Domain::Sub { id, fanout } => {
                            let agent = cursor % AGENTS;
                            cursor += 1;
                            let _ = agent_txs[agent].send(Attempt { id, fanout, attempt: 0, agent });
                        }
                        Domain::Result { id, fanout, attempt, agent, ok } => {
                            if ok || attempt + 1 == AGENTS as u64 {
                                let _ = to_meta.send(Meta::SubDone(id, ok));
                            } else {
                                let next = (agent + 1) % AGENTS;
                                let _ = agent_txs[next].send(Attempt { id, fanout, attempt: attempt + 1, agent: next });
                            }
                        }
                    }
                }
            });
            domain_txs.push(dtx);
        }
        runtime.spawn(async move {
            let mut joins: HashMap<u64, (u32, bool)> = HashMap::with_capacity(CAP);
            while let Some(msg) = meta_rx.recv().await {
                match msg {
                    Meta::Task(id, mask) => {
                        let fanout = mask.count_ones();
                        joins.insert(id, (fanout, true));
                        let mut m = mask;
                        while m != 0 {
                            let d = m.trailing_zeros() as usize;
                            m &= m - 1;
                            let _ = domain_txs[d].send(Domain::Sub { id, fanout });
                        }
                    }
                    Meta::SubDone(id, ok) => {
                        let e = joins.get_mut(&id).expect("a task in flight");
                        e.0 -= 1;
                        e.1 &= ok;
                        if e.0 == 0 {
                            let (_, ok) = joins.remove(&id).expect("present");
                            if done_tx.send((id, ok)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Self { meta: Some(meta_tx), done, in_flight: 0, runtime: Some(runtime) }
    }
}

impl Federation for ActorsPeer {
    fn submit(&mut self, tasks: &[(u64, u64)]) -> usize {
        let n = tasks.len().min(CAP - self.in_flight);
        let meta = self.meta.as_ref().expect("open");
        for &(id, d) in &tasks[..n] {
            let _ = meta.send(Meta::Task(id, d));
        }
        self.in_flight += n;
        n
    }

    fn poll(&mut self, wait: bool, out: &mut Vec<(u64, bool)>) {
        let before = out.len();
        if wait && let Some(c) = self.done.blocking_recv() {
            out.push(c);
        }
        while let Ok(c) = self.done.try_recv() {
            out.push(c);
        }
        self.in_flight -= out.len() - before;
    }
}

impl Drop for ActorsPeer {
    fn drop(&mut self) {
        self.meta.take();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}
