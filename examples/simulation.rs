//! The engine in virtual time: the seed's federation at the seed's load, a domain down for
//! 100 ms, and the same answer on any machine. Run with
//! `cargo run --release --example simulation`.

use metafed::sim::Load;
use metafed::{DomainId, Engine, Task, Topology};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sim = Engine::builder(Topology::seed(0.12)?).simulate()?;
    sim.run_until(1_000_000); // 1 ms of virtual time
    sim.engine().try_submit(&Task::new(u64::MAX, DomainId(0)))?; // the usual API, between turns
    // 100,000 tasks at 47,207 per second of virtual time; domain 1 down from 0.5 s to 0.6 s.
    let mut down = false;
    let run = sim.open_loop(&Load::w1(100_000), 47_207.0, 10_000_000, |engine, t_ns| {
        if (500_000_000..600_000_000).contains(&t_ns) != down {
            down = !down;
            engine.set_domain_down(DomainId(1), down); // an operator action, audited
        }
    });
    let report = sim.finish();
    println!(
        "{} of {} tasks ok in {:.3} s of virtual time (drained {})",
        run.report.ok, run.report.submitted, run.report.elapsed_s, report.drained
    );
    Ok(())
}
