//! Progress on stderr: a spinner per stage, a line when it ends, a bar for model calls.

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;
use std::time::Duration;

/// The terminal's view of a run.
#[derive(Default)]
pub struct Terminal {
    spinner: Mutex<Option<ProgressBar>>,
    bar: Mutex<Option<ProgressBar>>,
}

impl rgd_experiment::Progress for Terminal {
    fn start(&self, stage: &str) {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("static template"),
        );
        b.set_message(stage.to_string());
        b.enable_steady_tick(Duration::from_millis(120));
        if let Some(old) = self
            .spinner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(b)
        {
            old.finish_and_clear();
        }
    }

    fn done(&self, stage: &str, seconds: f64, note: &str) {
        if let Some(b) = self
            .spinner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            b.finish_and_clear();
        }
        let sep = if note.is_empty() { "" } else { ": " };
        eprintln!("  {stage} ({seconds:.2}s){sep}{note}");
    }

    fn items(&self, label: &str, done: usize, total: usize) {
        let mut bar = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        let b = bar.get_or_insert_with(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("  {msg:<34} [{bar:30}] {pos}/{len} ({elapsed})")
                    .expect("static template"),
            );
            b
        });
        b.set_length(total as u64);
        b.set_position(done as u64);
        b.set_message(label.to_string());
    }

    fn items_done(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish_and_clear();
        }
    }

    fn info(&self, line: &str) {
        eprintln!("{line}");
    }

    fn warn(&self, line: &str) {
        eprintln!("warning: {line}");
    }
}
