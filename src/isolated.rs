//! An isolated agent's thread: it takes attempts from one SPSC ring per worker, runs the
//! handler, and answers on the matching ring back. A handler that hangs stalls only this thread;
//! the workers time its attempts out and fail over (see the agent stage).

use crate::park::Idle;
use crate::ring::{Consumer, Producer};
use crate::shared::{STOPPING, Shared};
use crate::stages::run_attempt;
use crate::sync::Ordering;
use crate::worker::Msg;
use std::sync::Arc;

pub(crate) fn run(sh: Arc<Shared>, iso: usize, mut rx: Vec<Consumer<Msg>>, mut tx: Vec<Producer<Msg>>) {
    let me = &sh.isolated[iso];
    me.parker.register();
    let agent = usize::from(me.agent.0);
    let handler = sh.handlers[agent].clone();
    let mut idle = Idle::new(sh.cfg.idle_spins, u64::from(sh.cfg.idle_yield_us) * 1_000);
    'outer: while sh.lifecycle() < STOPPING {
        let mut did = 0;
        for w in 0..rx.len() {
            let mut answered = false;
            while let Some(mut m) = rx[w].pop() {
                did += 1;
                if sh.lifecycle() >= STOPPING {
                    break 'outer; // no handler is called once the engine is stopping
                }
                if !sh.slab.try_pin(m.ticket) {
                    continue; // its task finished while the attempt waited here: nothing to do
                }
                let start = sh.clock.now();
                let down = sh.domain_down[usize::from(m.domain)].load(Ordering::Relaxed);
                {
                    // SAFETY: we pinned the slot of a running task, so its request is not
                    // reused until we unpin it, below, after the call.
                    let req = unsafe { sh.slab.req(m.ticket.slot()) };
                    let (failure, code, value) = run_attempt(&*handler, req, &m, down);
                    m.failure = failure;
                    m.code = code;
                    m.value = value;
                }
                sh.slab.unpin(m.ticket.slot());
                m.latency_ns = sh.clock.now().saturating_sub(start);
                if m.failure.is_none() && m.latency_ns > sh.agent_timeout_ns {
                    m.failure = Some(crate::task::FailureKind::Slow);
                    m.value = 0;
                }
                m.returned = true;
                // The way back holds as many answers as the way in holds attempts; if the
                // worker is slow to collect, wait for it (this thread has nothing else to do).
                while let Err(back) = tx[w].push(m) {
                    m = back;
                    tx[w].publish();
                    sh.workers[w].parker.wake();
                    if sh.lifecycle() >= STOPPING {
                        break 'outer;
                    }
                    std::thread::yield_now();
                }
                answered = true;
                if sh.lifecycle() >= STOPPING {
                    tx[w].publish();
                    break 'outer;
                }
            }
            rx[w].release();
            if answered {
                tx[w].publish();
                sh.workers[w].parker.wake();
            }
        }
        if did > 0 {
            idle.reset();
        } else if idle.wait() {
            me.parker.sleep(|| rx.iter().any(|r| r.has_pending()) || sh.lifecycle() >= STOPPING, None);
        }
    }
    me.exited.store(true, Ordering::Release);
}
