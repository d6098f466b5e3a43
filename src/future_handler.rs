//! Handlers written as futures, run on a tokio runtime the caller gives (cargo feature `tokio`,
//! off by default, so that the core stays free of any runtime).
//!
//! ```ignore
//! let rt = tokio::runtime::Runtime::new()?;
//! let spec = metafed::future_handler(rt.handle().clone(), |req: metafed::OwnedRequest| async move {
//!     let body = reqwest::get(format!("http://api/{}", req.task_id)).await.map_err(|_| 503)?.bytes().await.map_err(|_| 502)?;
//!     Ok::<_, i32>((200, body.to_vec()))
//! });
//! ```
//!
//! Each attempt's future is spawned onto the runtime and its output completes the attempt. The
//! future is dropped (its work cancelled) at the attempt's deadline, when the engine abandons
//! it; the runtime must therefore have its time driver enabled (`enable_time`, `enable_all`).

use crate::attempt::Attempt;
use crate::handler::{DeferredHandler, OwnedRequest, Request};
use crate::topology::AgentSpec;
use std::future::Future;

/// What a handler's future may return: a value, a value and the reply's bytes, or an error
/// code.
pub trait IntoAnswer {
    /// Completes `attempt` with this output.
    fn complete(self, attempt: Attempt);
}

impl IntoAnswer for Result<u64, i32> {
    fn complete(self, attempt: Attempt) {
        let _ = attempt.complete(self);
    }
}

impl IntoAnswer for Result<(u64, Vec<u8>), i32> {
    fn complete(self, attempt: Attempt) {
        let _ = match self {
            Ok((v, body)) => attempt.succeed_with(v, body),
            Err(code) => attempt.fail(code),
        };
    }
}

struct FutureHandler<F> {
    runtime: tokio::runtime::Handle,
    f: F,
}

impl<F, Fut> DeferredHandler for FutureHandler<F>
where
    F: Fn(OwnedRequest) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoAnswer + Send,
{
    fn start(&self, req: &Request<'_>, attempt: Attempt) {
        let future = (self.f)(req.to_owned());
        // A little after the engine's own deadline, so that the engine abandons the attempt
        // first (dropping an abandoned attempt is free, and not a failure of its own).
        let deadline = tokio::time::Instant::from_std(attempt.deadline()) + std::time::Duration::from_millis(5);
        self.runtime.spawn(async move {
            match tokio::time::timeout_at(deadline, future).await {
                Ok(output) => output.complete(attempt),
                // The engine abandons the attempt now: dropping it costs nothing more.
                Err(_) => drop(attempt),
            }
        });
    }
}

/// An agent whose attempts are futures: `f(request)` is spawned onto `runtime` for each
/// attempt, and its output (`Result<u64, i32>` or `Result<(u64, Vec<u8>), i32>`) completes it.
pub fn future_handler<F, Fut>(runtime: tokio::runtime::Handle, f: F) -> AgentSpec
where
    F: Fn(OwnedRequest) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoAnswer + Send,
{
    AgentSpec::deferred(FutureHandler { runtime, f })
}
