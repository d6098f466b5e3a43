// The C ABI driven by a sequence of calls decoded from the input: topologies and engines created,
// configured, used and freed in any order, with any arguments, handles reused after they were
// freed or passed as the wrong type (the library promises `METAFED_E_HANDLE`, never a touch of
// freed memory). Every call must return a status, never crash, hang or leak past the end.
// Shared by the cargo-fuzz target `c_abi` and by the C library crate's tests (`bindings/c/tests/fuzz_corpus.rs`), which replay the corpus.

use metafed_c::*;
use std::ffi::CString;
use std::ptr;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
    /// A float that is often ordinary and sometimes not (negative, NaN, infinite, huge).
    fn f64(&mut self) -> f64 {
        match self.byte() % 8 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -1.0,
            3 => f64::from(self.u32()),
            _ => f64::from(self.byte()) / 255.0,
        }
    }
    /// A short name: often a valid one, sometimes empty, blank, long, or not UTF-8.
    fn name(&mut self) -> CString {
        let len = match self.byte() % 8 {
            0 => 0,
            1 => 70,
            _ => 1 + usize::from(self.byte() % 6),
        };
        let bytes: Vec<u8> = (0..len).map(|_| self.byte().max(1)).collect();
        CString::new(bytes).unwrap()
    }
    /// A struct size: usually right, sometimes too small or larger than this build knows.
    fn size(&mut self, right: usize) -> u32 {
        match self.byte() % 16 {
            0 => 0,
            1 => (right / 2) as u32,
            2 => (right + 8) as u32,
            _ => right as u32,
        }
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// Handles ever created (freed ones stay, to be reused as stale handles).
#[derive(Default)]
struct Handles {
    topologies: Vec<*mut metafed_topology>,
    engines: Vec<*mut metafed_engine>,
    live_engines: usize,
    tickets: Vec<u64>,
}

impl Handles {
    fn topology(&self, inp: &mut Input) -> *mut metafed_topology {
        let k = usize::from(inp.byte());
        match k % 8 {
            0 => ptr::null_mut(),
            1 if !self.engines.is_empty() => self.engines[k % self.engines.len()].cast(), // wrong type
            _ if !self.topologies.is_empty() => self.topologies[k % self.topologies.len()],
            _ => ptr::null_mut(),
        }
    }
    fn engine(&self, inp: &mut Input) -> *mut metafed_engine {
        let k = usize::from(inp.byte());
        match k % 8 {
            0 => ptr::null_mut(),
            1 if !self.topologies.is_empty() => self.topologies[k % self.topologies.len()].cast(),
            _ if !self.engines.is_empty() => self.engines[k % self.engines.len()],
            _ => ptr::null_mut(),
        }
    }
    fn ticket(&self, inp: &mut Input) -> u64 {
        let k = usize::from(inp.byte());
        if k % 4 == 0 || self.tickets.is_empty() { inp.u64() } else { self.tickets[k % self.tickets.len()] }
    }
}

const MAX_ENGINES: usize = 2;
/// A millisecond in the nanoseconds of the ABI.
const MS: u64 = 1_000_000;

/// Nanoseconds from a float, as a careless caller would convert one: saturating (NaN and
/// negatives to 0, infinities and huge values to `u64::MAX`, which the library refuses).
fn ns(x: f64) -> u64 {
    x as u64
}
const MAX_CALLS: usize = 256;

/// What a sequence did: calls made, calls that returned `METAFED_OK`, engines started, tasks
/// submitted (for tests of the corpus; the fuzzer ignores it).
#[derive(Debug, Default)]
pub struct Summary {
    pub calls: usize,
    pub ok: usize,
    pub engines: usize,
    pub submitted: usize,
}

pub fn fuzz_c_abi(data: &[u8]) -> Summary {
    let mut inp = Input(data);
    let mut sum = Summary::default();
    let mut h = Handles::default();
    let mut buf = vec![0 as std::ffi::c_char; 512];
    for _ in 0..MAX_CALLS {
        if inp.done() {
            break;
        }
        sum.calls += 1;
        let status = match inp.byte() % 24 {
            0 => {
                let mut t = ptr::null_mut();
                let s = metafed_topology_new(&mut t);
                if s == METAFED_OK {
                    h.topologies.push(t);
                }
                s
            }
            1 => {
                let mut t = ptr::null_mut();
                let s = metafed_topology_new_seed(inp.f64(), &mut t);
                if s == METAFED_OK {
                    h.topologies.push(t);
                }
                s
            }
            2 => {
                let (t, name) = (h.topology(&mut inp), inp.name());
                let mut d = 0u16;
                metafed_topology_add_domain(t, name.as_ptr(), &mut d)
            }
            3 => {
                let (t, domain, name) = (h.topology(&mut inp), u16::from(inp.byte() % 4), inp.name());
                // SAFETY: a plain C struct of numbers; all zeroes is a valid value.
                let mut spec: metafed_sim_agent = unsafe { std::mem::zeroed() };
                spec.struct_size = std::mem::size_of::<metafed_sim_agent>() as u32;
                metafed_sim_agent_init(&mut spec);
                spec.struct_size = inp.size(std::mem::size_of::<metafed_sim_agent>());
                spec.error_rate = inp.f64();
                let (form, latency) = (inp.byte() % 5, ns(inp.f64() * 1e3));
                match form {
                    0 => {}
                    1 => spec.latency_ns = latency,
                    2 => spec.exponential_mean_ns = latency,
                    3 => (spec.latency_ns, spec.slow_latency_ns, spec.slow_rate) = (latency, latency.wrapping_mul(10), 0.1),
                    _ => (spec.latency_ns, spec.exponential_mean_ns) = (latency, latency), // two forms: refused
                }
                spec.seed = inp.u64();
                let mut a = 0u16;
                metafed_topology_add_sim_agent(t, domain, name.as_ptr(), &spec, &mut a)
            }
            4 => {
                metafed_topology_free(h.topology(&mut inp));
                METAFED_OK
            }
            5 => {
                let t = h.topology(&mut inp);
                match inp.byte() % 4 {
                    0 => metafed_topology_set_timeouts(t, ns(inp.f64() * 100e6), ns(inp.f64() * 400e6), ns(inp.f64() * 900e6)),
                    1 => metafed_topology_disable_breakers(t),
                    2 => metafed_topology_set_max_attempts(t, u16::from(inp.byte() % 4), u32::from(inp.byte())),
                    _ => {
                        // SAFETY: as above.
                        let mut cfg: metafed_breaker_config = unsafe { std::mem::zeroed() };
                        let level = i32::from(inp.byte() % 4);
                        cfg.struct_size = std::mem::size_of::<metafed_breaker_config>() as u32;
                        metafed_breaker_config_init(level, &mut cfg);
                        cfg.consecutive_failures = u32::from(inp.byte());
                        cfg.timeout_ns = ns(inp.f64() * 100e6);
                        metafed_topology_set_breaker_config(t, level, &cfg)
                    }
                }
            }
            6 if h.live_engines < MAX_ENGINES => {
                let t = h.topology(&mut inp);
                // SAFETY: as above (the callback is NULL: none).
                let mut cfg: metafed_engine_config = unsafe { std::mem::zeroed() };
                cfg.struct_size = std::mem::size_of::<metafed_engine_config>() as u32;
                metafed_engine_config_init(&mut cfg);
                cfg.struct_size = inp.size(std::mem::size_of::<metafed_engine_config>());
                cfg.workers = u32::from(inp.byte() % 3);
                cfg.pin = 0;
                cfg.max_in_flight = u32::from(inp.byte() % 64);
                cfg.drain_timeout_ns = u64::from(inp.byte() % 20) * MS;
                cfg.rate_limit_per_s = if inp.byte() % 4 == 0 { inp.f64() * 1e4 } else { 0.0 };
                let mut e = ptr::null_mut();
                let s = metafed_engine_new(t, &cfg, &mut e);
                if s == METAFED_OK {
                    h.engines.push(e);
                    h.live_engines += 1;
                    sum.engines += 1;
                }
                s
            }
            7..=9 => {
                let e = h.engine(&mut inp);
                // SAFETY: as above (`data` NULL with length 0).
                let mut task: metafed_task = unsafe { std::mem::zeroed() };
                task.struct_size = std::mem::size_of::<metafed_task>() as u32;
                metafed_task_init(&mut task);
                task.struct_size = inp.size(std::mem::size_of::<metafed_task>());
                task.flags = u32::from(inp.byte() % 4);
                task.id = inp.u64();
                task.domains = if inp.byte() % 8 == 0 { inp.u64() } else { u64::from(inp.byte() % 8) };
                task.priority = u32::from(inp.byte() % 6);
                task.deadline_ns = if inp.byte() % 4 == 0 { inp.u64() % 2_000_000 * 1_000 } else { 0 };
                let payload = [inp.byte(); 3];
                if inp.byte() % 2 == 0 {
                    task.data = payload.as_ptr();
                    task.data_len = payload.len();
                }
                let mut ticket = 0;
                let s = metafed_engine_submit(e, &task, &mut ticket);
                if s == METAFED_OK {
                    h.tickets.push(ticket);
                    sum.submitted += 1;
                }
                s
            }
            10 => {
                let e = h.engine(&mut inp);
                // SAFETY: as above (NULL pointers, zero lengths).
                let mut out: [metafed_completion; 4] = unsafe { std::mem::zeroed() };
                out[0].struct_size = inp.size(std::mem::size_of::<metafed_completion>());
                let cap = usize::from(inp.byte() % 5);
                let mut n = 0;
                let s = metafed_engine_poll(e, out.as_mut_ptr(), cap, u64::from(inp.byte() % 3) * MS, &mut n);
                if s == METAFED_OK {
                    for c in out.iter_mut().take(n) {
                        metafed_completion_release(c);
                    }
                }
                s
            }
            11 => {
                let (e, ticket) = (h.engine(&mut inp), h.ticket(&mut inp));
                // SAFETY: as above.
                let mut c: metafed_completion = unsafe { std::mem::zeroed() };
                c.struct_size = inp.size(std::mem::size_of::<metafed_completion>());
                let s = metafed_engine_wait(e, ticket, u64::from(inp.byte() % 3) * MS, &mut c);
                if s == METAFED_OK {
                    metafed_completion_release(&mut c);
                }
                s
            }
            12 => {
                let e = h.engine(&mut inp);
                // SAFETY: as above.
                let mut st: metafed_stats = unsafe { std::mem::zeroed() };
                st.struct_size = inp.size(std::mem::size_of::<metafed_stats>());
                metafed_engine_get_stats(e, &mut st)
            }
            13 => {
                let e = h.engine(&mut inp);
                let (level, index, mode) = (i32::from(inp.byte() % 5) - 1, u32::from(inp.byte() % 12), i32::from(inp.byte() % 5) - 1);
                metafed_engine_set_breaker_mode(e, level, index, mode)
            }
            14 => {
                let e = h.engine(&mut inp);
                let (d, down, a, rot) = (u16::from(inp.byte() % 5), u32::from(inp.byte() % 3), u16::from(inp.byte() % 12), u32::from(inp.byte() % 3));
                metafed_engine_set_domain_down(e, d, down);
                metafed_engine_set_agent_in_rotation(e, a, rot)
            }
            15 => {
                let e = h.engine(&mut inp);
                let (per_s, burst) = (inp.f64() * 1e5, inp.f64() * 100.0);
                metafed_engine_set_rate_limit(e, per_s, burst);
                let (a, limit) = (u16::from(inp.byte() % 12), u32::from(inp.byte() % 4));
                metafed_engine_set_agent_max_concurrency(e, a, limit)
            }
            16 => {
                let e = h.engine(&mut inp);
                let cap = (usize::from(inp.byte()) * 2).min(buf.len());
                let mut len = 0;
                match inp.byte() % 4 {
                    0 => metafed_engine_get_metrics_text(e, u32::from(inp.byte() % 3), buf.as_mut_ptr(), cap, &mut len),
                    1 => {
                        let mut health = 0;
                        metafed_engine_get_health_json(e, buf.as_mut_ptr(), cap, &mut len, &mut health)
                    }
                    2 => metafed_engine_get_audit_json(e, u64::from(inp.byte() % 3), buf.as_mut_ptr(), cap, &mut len),
                    _ => {
                        let (level, index) = (i32::from(inp.byte() % 4), u32::from(inp.byte() % 12));
                        metafed_engine_get_breaker_name(e, level, index, buf.as_mut_ptr(), cap, &mut len)
                    }
                }
            }
            17 => {
                let e = h.engine(&mut inp);
                let mut events = [metafed_breaker_event::default(); 4];
                events[0].struct_size = inp.size(std::mem::size_of::<metafed_breaker_event>());
                let mut n = 0;
                metafed_engine_drain_events(e, events.as_mut_ptr(), usize::from(inp.byte() % 5), &mut n)
            }
            18 => {
                let e = h.engine(&mut inp);
                // SAFETY: as above.
                let mut r: metafed_shutdown_report = unsafe { std::mem::zeroed() };
                r.struct_size = inp.size(std::mem::size_of::<metafed_shutdown_report>());
                metafed_engine_shutdown(e, u64::from(inp.byte() % 10) * MS, &mut r)
            }
            19 => {
                let e = h.engine(&mut inp);
                if h.engines.contains(&e) {
                    h.live_engines = h.live_engines.saturating_sub(1);
                }
                metafed_engine_free(e);
                METAFED_OK
            }
            20 => {
                let text: Vec<u8> = (0..usize::from(inp.byte() % 64)).map(|_| inp.byte().max(1)).collect();
                let text = CString::new(text).unwrap();
                let mut t = ptr::null_mut();
                let s = metafed_topology_new_from_toml(text.as_ptr(), &mut t);
                if s == METAFED_OK {
                    h.topologies.push(t);
                }
                s
            }
            21 => {
                let (t, name) = (h.topology(&mut inp), inp.name());
                let mut d = 0u16;
                metafed_topology_get_domain_id(t, name.as_ptr(), &mut d);
                let (domain, rate) = (u16::from(inp.byte() % 4), inp.f64());
                metafed_topology_set_domain_fault_rate(t, domain, rate)
            }
            22 => {
                let (actor, reason, clear) = (inp.name(), inp.name(), inp.byte() % 4 == 0);
                metafed_audit_set_actor(if clear { ptr::null() } else { actor.as_ptr() }, reason.as_ptr())
            }
            _ => {
                let e = h.engine(&mut inp);
                let (d, a) = (inp.u16() % 6, inp.u16() % 13);
                let mut len = 0;
                metafed_engine_get_domain_name(e, d, buf.as_mut_ptr(), buf.len(), &mut len);
                metafed_engine_get_agent_name(e, a, buf.as_mut_ptr(), buf.len(), &mut len)
            }
        };
        sum.ok += usize::from(status == METAFED_OK);
    }
    // Free everything; freeing twice is part of the contract (detected and ignored).
    for e in h.engines {
        metafed_engine_free(e);
    }
    for t in h.topologies {
        metafed_topology_free(t);
    }
    metafed_audit_set_actor(ptr::null(), ptr::null());
    sum
}
