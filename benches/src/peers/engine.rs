//! The engine itself behind the benchmark trait: the seed's 3 x 3 on simulated agents at
//! p = 0.12, breakers disabled (the exactness configuration), batch submission, blocking poll.

use super::federation::Federation;
use metafed::{Completion, DomainSet, Engine, EngineConfig, Levels, Task, Ticket, Topology};

/// The engine under test.
pub struct EnginePeer {
    engine: Engine,
    tasks: Vec<Task<'static>>,
    tickets: Vec<Ticket>,
    buf: Vec<Completion>,
}

impl EnginePeer {
    /// The seed's 3 x 3 with `workers` workers (0: one per core).
    pub fn new(workers: usize) -> Self {
        let mut b = Topology::seed_builder(super::federation::P);
        b.breakers(Levels::disabled());
        let engine = Engine::start(
            b.build().expect("the seed topology is valid"),
            EngineConfig { workers, ..EngineConfig::default() },
        )
        .expect("the engine starts");
        Self {
            engine,
            tasks: Vec::with_capacity(64),
            tickets: vec![Ticket::default(); 64],
            buf: vec![Completion::default(); 256],
        }
    }

    /// `engine-guarded`: the seed's 3 x 3 with the features on, set never to trip (see
    /// [`super::guarded`]): breakers at all three levels (the seed's settings, opening only on a
    /// 100% failure rate or 2^32 - 1 failures in a row), the GCRA limiter at 2^32 - 1 tasks per
    /// second, a concurrency limit of 1,024 per agent; statistics are always on.
    pub fn guarded(workers: usize) -> Self {
        let (topology, config) = guarded_setup(workers);
        Self::with_config(topology, config)
    }

    /// An engine running `topology` with `workers` workers (0: one per core).
    pub fn with_topology(topology: Topology, workers: usize) -> Self {
        Self::with_config(topology, EngineConfig { workers, ..EngineConfig::default() })
    }

    /// An engine running `topology` with `config`.
    pub fn with_config(topology: Topology, config: EngineConfig) -> Self {
        let engine = Engine::start(topology, config).expect("the engine starts");
        Self {
            engine,
            tasks: Vec::with_capacity(64),
            tickets: vec![Ticket::default(); 64],
            buf: vec![Completion::default(); 256],
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Federation for EnginePeer {
    fn submit(&mut self, tasks: &[(u64, u64)]) -> usize {
        let mut done = 0;
        for chunk in tasks.chunks(64) {
            self.tasks.clear();
            self.tasks.extend(chunk.iter().map(|&(id, d)| Task::fan_out(id, DomainSet(d))));
            let k = self.engine.submit_batch(&self.tasks, &mut self.tickets[..chunk.len()]).unwrap_or(0);
            done += k;
            if k < chunk.len() {
                break;
            }
        }
        done
    }

    fn poll(&mut self, wait: bool, out: &mut Vec<(u64, bool)>) {
        let n = if wait {
            self.engine.poll_wait(&mut self.buf, None).expect("the benchmark runs on its own thread")
        } else {
            self.engine.poll(&mut self.buf)
        };
        out.extend(self.buf[..n].iter().map(|c| (c.id, c.is_ok())));
    }
}

/// One submitting thread's view of an engine shared by several (`metafed scale`): its own
/// buffers, the engine's shared queues.
pub struct SharedEngine<'a> {
    engine: &'a Engine,
    tasks: Vec<Task<'static>>,
    tickets: Vec<Ticket>,
    pending: std::collections::VecDeque<(Ticket, u64)>,
}

impl<'a> SharedEngine<'a> {
    /// A view of `peer`'s engine.
    pub fn new(peer: &'a EnginePeer) -> Self {
        Self {
            engine: &peer.engine,
            tasks: Vec::with_capacity(64),
            tickets: vec![Ticket::default(); 64],
            pending: std::collections::VecDeque::with_capacity(1024),
        }
    }
}

impl Federation for SharedEngine<'_> {
    fn submit(&mut self, tasks: &[(u64, u64)]) -> usize {
        self.tasks.clear();
        self.tasks.extend(tasks.iter().map(|&(id, d)| Task::fan_out(id, DomainSet(d)).waitable()));
        let k = self.engine.submit_batch(&self.tasks, &mut self.tickets[..tasks.len()]).unwrap_or(0);
        // Waitable tasks: each submitter collects its own completions (the shared poll queue
        // would hand them to whichever submitter polls first).
        for (t, &(id, _)) in self.tickets[..k].iter().zip(tasks) {
            self.pending.push_back((*t, id));
        }
        k
    }

    fn poll(&mut self, wait: bool, out: &mut Vec<(u64, bool)>) {
        while let Some(&(t, _)) = self.pending.front() {
            let timeout = if wait && out.is_empty() { None } else { Some(std::time::Duration::ZERO) };
            match self.engine.wait(t, timeout) {
                Ok(c) => {
                    self.pending.pop_front();
                    out.push((c.id, c.is_ok()));
                }
                Err(_) => break,
            }
        }
    }
}

/// The topology and configuration of `engine-guarded` (see [`EnginePeer::guarded`]), for other
/// drivers of the same engine (`metafed probe --guarded`).
pub fn guarded_setup(workers: usize) -> (Topology, EngineConfig) {
    use metafed::breaker::BreakerConfig;
    let never = |c: BreakerConfig| BreakerConfig { consecutive_failures: u32::MAX, failure_rate: 1.0, ..c };
    let mut b = Topology::builder();
    for (domain, agents) in metafed::SEED_DOMAINS {
        let d = b.domain(domain).expect("the seed's domain names are valid");
        for a in agents {
            let spec = metafed::AgentSpec::sim(metafed::sim::SimAgent::with_error_rate(super::federation::P))
                .max_concurrency(super::guarded::AGENT_LIMIT);
            b.agent(d, a, spec).expect("the domain was just added");
        }
    }
    b.breakers(Levels {
        agent: never(BreakerConfig::agent()),
        domain: never(BreakerConfig::domain()),
        meta: never(BreakerConfig::meta()),
    });
    let mut config = EngineConfig { workers, ..EngineConfig::default() };
    config.admission.rate_limit_per_s = f64::from(super::guarded::RATE_PER_S);
    config.admission.rate_limit_burst = f64::from(super::guarded::RATE_PER_S);
    (b.build().expect("the seed topology is valid"), config)
}
