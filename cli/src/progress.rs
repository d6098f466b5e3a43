//! A progress bar that appears only on a terminal, and only once a run has taken a second.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
    enabled: bool,
}

impl Progress {
    /// A bar over `total` units of work; hidden unless stderr is a terminal and `enabled`.
    pub fn new(total: u64, enabled: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg:<28} [{bar:30}] {percent:>3}% {elapsed_precise} eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        Self { bar, started: Instant::now(), shown: false, enabled: enabled && std::io::stderr().is_terminal() }
    }

    /// Names the step under way.
    pub fn step(&self, message: &str) {
        self.bar.set_message(message.to_string());
    }

    /// Moves the bar to `done` units.
    pub fn set(&mut self, done: u64) {
        if self.enabled && !self.shown && self.started.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        self.bar.set_position(done);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
