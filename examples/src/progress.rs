//! Progress drawn with indicatif on a terminal.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use backup_core::engine::{Progress, ProgressEvent};
use backup_core::service::{OperationEvent, OperationProgress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A spinner showing bytes, throughput, files and the current item; hidden when stderr is
/// not a terminal or when disabled (for example with `--json`).
#[derive(Debug)]
pub struct BarProgress {
    bar: ProgressBar,
    files: AtomicU64,
    item: Mutex<String>,
}

impl BarProgress {
    /// A bar titled `verb` ("backup", "restore"); `enabled` false hides it.
    pub fn new(verb: &str, enabled: bool) -> Self {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        let template =
            format!("{{spinner}} {verb} {{msg}} {{bytes}} ({{binary_bytes_per_sec}}) {{elapsed}}");
        bar.set_style(
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        if !bar.is_hidden() {
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
        Self {
            bar,
            files: AtomicU64::new(0),
            item: Mutex::new(String::new()),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn refresh(&self) {
        if self.bar.is_hidden() {
            return;
        }
        let item = self.item.lock().map(|s| s.clone()).unwrap_or_default();
        let files = self.files.load(Ordering::Relaxed);
        self.bar.set_message(format!("{item}: {files} files,"));
    }
}

impl Progress for BarProgress {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::ItemStarted { kind } => {
                if let Ok(mut item) = self.item.lock() {
                    *item = kind.to_string();
                }
                self.refresh();
            }
            ProgressEvent::Bytes { bytes } => self.bar.inc(bytes),
            // The message is redrawn at most every 64 files (the bar ticks on its own).
            ProgressEvent::FileDone if self.files.fetch_add(1, Ordering::Relaxed) % 64 == 63 => {
                self.refresh();
            }
            _ => {}
        }
    }
}

impl OperationProgress for BarProgress {
    fn event(&self, event: &OperationEvent) {
        if let Some(step) = event.step {
            Progress::event(self, step);
        }
    }
}
