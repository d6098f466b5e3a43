//! crossbeam-channel, one thread per stage: a meta thread (decompose, join), three domain threads
//! (choose an agent, fail over), nine agent threads (run the attempt). Every hop is a channel
//! send and a receive on another thread: the design the engine's workers exist to avoid.

use super::federation::{AGENTS, DOMAINS, Federation, Router};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use metafed::sim::oracle_key;
use std::collections::HashMap;
use std::thread::JoinHandle;

enum Meta {
    Task(u64, u64),
    SubDone(u64, bool),
    Stop,
}

enum Domain {
    Sub { id: u64, fanout: u32 },
    Result { id: u64, fanout: u32, attempt: u64, agent: usize, ok: bool },
    Stop,
}

enum Agent {
    Attempt { id: u64, domain: usize, fanout: u32, attempt: u64, agent: usize },
    Stop,
}

/// Thread-per-stage on crossbeam channels.
pub struct StagesPeer {
    meta: Sender<Meta>,
    done: Receiver<(u64, bool)>,
    in_flight: usize,
    threads: Vec<JoinHandle<()>>,
}

const CAP: usize = 4096;

impl StagesPeer {
    /// Starts the 13 stage threads.
    pub fn new() -> Self {
        let (meta_tx, meta_rx) = unbounded::<Meta>();
        let (done_tx, done) = bounded::<(u64, bool)>(CAP);
        let domains: Vec<(Sender<Domain>, Receiver<Domain>)> = (0..DOMAINS).map(|_| unbounded()).collect();
        let agents: Vec<(Sender<Agent>, Receiver<Agent>)> = (0..DOMAINS * AGENTS).map(|_| unbounded()).collect();
        let mut threads = Vec::new();
        // Agents: run an attempt, answer the domain.
        for (a, (_, rx)) in agents.iter().enumerate() {
            let (rx, to_domain) = (rx.clone(), domains[a / AGENTS].0.clone());
            threads.push(std::thread::spawn(move || {
                let router = Router::default();
                while let Ok(Agent::Attempt { id, domain, fanout, attempt, agent }) = rx.recv() {
                    let ok = router.attempt(oracle_key(id, domain as u16, fanout), attempt, agent);
                    let _ = to_domain.send(Domain::Result { id, fanout, attempt, agent, ok });
                }
            }));
        }
        // Domains: choose an agent round-robin, fail over on failure.
        for (d, (_, rx)) in domains.iter().enumerate() {
            let rx = rx.clone();
            let to_agents: Vec<Sender<Agent>> =
                agents[d * AGENTS..(d + 1) * AGENTS].iter().map(|(tx, _)| tx.clone()).collect();
            let to_meta = meta_tx.clone();
            threads.push(std::thread::spawn(move || {
                let mut cursor = 0usize;
                loop {
                    match rx.recv() {
                        Ok(Domain::Sub { id, fanout }) => {
                            let agent = cursor % AGENTS;
                            cursor += 1;
                            let _ = to_agents[agent].send(Agent::Attempt { id, domain: d, fanout, attempt: 0, agent });
                        }
                        Ok(Domain::Result { id, fanout, attempt, agent, ok }) => {
                            if ok || attempt + 1 == AGENTS as u64 {
                                let _ = to_meta.send(Meta::SubDone(id, ok));
                            } else {
                                let next = (agent + 1) % AGENTS;
                                let _ = to_agents[next].send(Agent::Attempt {
                                    id,
                                    domain: d,
                                    fanout,
                                    attempt: attempt + 1,
                                    agent: next,
                                });
                            }
                        }
                        Ok(Domain::Stop) | Err(_) => {
                            for a in &to_agents {
                                let _ = a.send(Agent::Stop);
                            }
                            return;
                        }
                    }
                }
            }));
        }
        // Meta: decompose, join, complete.
        let to_domains: Vec<Sender<Domain>> = domains.iter().map(|(tx, _)| tx.clone()).collect();
        threads.push(std::thread::spawn(move || {
            let mut joins: HashMap<u64, (u32, bool)> = HashMap::with_capacity(CAP);
            while let Ok(msg) = meta_rx.recv() {
                match msg {
                    Meta::Task(id, mask) => {
                        let fanout = mask.count_ones();
                        joins.insert(id, (fanout, true));
                        let mut m = mask;
                        while m != 0 {
                            let d = m.trailing_zeros() as usize;
                            m &= m - 1;
                            let _ = to_domains[d].send(Domain::Sub { id, fanout });
                        }
                    }
                    Meta::SubDone(id, ok) => {
                        let e = joins.get_mut(&id).expect("a task in flight");
                        e.0 -= 1;
                        e.1 &= ok;
                        if e.0 == 0 {
                            let (_, ok) = joins.remove(&id).expect("present");
                            let _ = done_tx.send((id, ok));
                        }
                    }
                    Meta::Stop => {
                        for d in &to_domains {
                            let _ = d.send(Domain::Stop);
                        }
                        return;
                    }
                }
            }
        }));
        Self { meta: meta_tx, done, in_flight: 0, threads }
    }
}

impl Default for StagesPeer {
    fn default() -> Self {
        Self::new()
    }
}

impl Federation for StagesPeer {
    fn submit(&mut self, tasks: &[(u64, u64)]) -> usize {
        // The completion channel is bounded: never have more in flight than it holds.
        let n = tasks.len().min(CAP - self.in_flight);
        for &(id, d) in &tasks[..n] {
            let _ = self.meta.send(Meta::Task(id, d));
        }
        self.in_flight += n;
        n
    }

    fn poll(&mut self, wait: bool, out: &mut Vec<(u64, bool)>) {
        let before = out.len();
        if wait && let Ok(c) = self.done.recv() {
            out.push(c);
        }
        out.extend(self.done.try_iter());
        self.in_flight -= out.len() - before;
    }
}

impl Drop for StagesPeer {
    fn drop(&mut self) {
        let _ = self.meta.send(Meta::Stop);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
