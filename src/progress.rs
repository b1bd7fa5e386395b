//! Progress output on stderr: a spinner per long step, a line when it ends; silent with --quiet.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// A running step.
pub struct Stage {
    bar: Option<ProgressBar>,
    name: String,
    start: Instant,
    quiet: bool,
}

impl Stage {
    /// Start a step named `name`.
    pub fn start(name: impl Into<String>, quiet: bool) -> Stage {
        let name = name.into();
        let bar = (!quiet).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("static template"),
            );
            b.set_message(name.clone());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Stage {
            bar,
            name,
            start: Instant::now(),
            quiet,
        }
    }

    /// End the step, printing its duration and a note; returns the seconds it took.
    pub fn done(self, note: &str) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if !self.quiet {
            let sep = if note.is_empty() { "" } else { ": " };
            eprintln!("  {} ({secs:.2}s){sep}{note}", self.name);
        }
        secs
    }
}
