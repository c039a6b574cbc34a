//! Training progress: indicatif epoch and batch bars (samples/s, ETA) on a terminal, plain log
//! lines on stderr otherwise (CI logs, pipes, `--json` runs), nothing when quiet. Everything goes
//! to stderr so stdout stays one JSON object under `--json`.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Lines,
    Quiet,
}

impl Mode {
    /// Bars when both stdout and stderr are terminals, plain lines otherwise.
    pub fn auto() -> Mode {
        if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// Progress of one model's training.
pub struct Progress {
    mode: Mode,
    label: String,
    multi: Option<MultiProgress>,
    epochs: Option<ProgressBar>,
    batches: Option<ProgressBar>,
    batch_total: u64,
    batch_done: u64,
    samples: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    pub fn new(mode: Mode, label: &str, epochs: usize, first_epoch: usize) -> Progress {
        let mut p = Progress {
            mode,
            label: label.into(),
            multi: None,
            epochs: None,
            batches: None,
            batch_total: 0,
            batch_done: 0,
            samples: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        };
        if mode == Mode::Bars {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let e = multi.add(ProgressBar::new(epochs as u64));
            e.set_style(
                ProgressStyle::with_template("{prefix:>10} epoch {pos}/{len} [{bar:30}] {elapsed_precise} eta {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            e.set_prefix(label.to_string());
            e.set_position(first_epoch as u64);
            p.epochs = Some(e);
            p.multi = Some(multi);
        }
        p
    }

    pub fn start_epoch(&mut self, epoch: usize, batches: usize, lr: f64) {
        self.batch_total = batches as u64;
        self.batch_done = 0;
        self.samples = 0;
        self.started = Instant::now();
        if let Some(m) = &self.multi {
            let b = m.add(ProgressBar::new(batches as u64));
            b.set_style(
                ProgressStyle::with_template("{prefix:>10} batch {pos}/{len} [{bar:30}] {per_sec} eta {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(format!("e{}", epoch + 1));
            b.set_message(format!("lr {lr:.2e}"));
            self.batches = Some(b);
        }
    }

    /// One batch of `samples` windows done with training loss `loss`.
    pub fn batch(&mut self, samples: usize, loss: f32) {
        self.batch_done += 1;
        self.samples += samples as u64;
        let rate = self.samples as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        match self.mode {
            Mode::Bars => {
                if let Some(b) = &self.batches {
                    b.set_position(self.batch_done);
                    b.set_message(format!("loss {loss:.4} {rate:.0} samples/s"));
                }
            }
            Mode::Lines => {
                if self.last_line.elapsed().as_secs() >= 30 && self.batch_done < self.batch_total {
                    self.last_line = Instant::now();
                    let left = (self.batch_total - self.batch_done) as f64 * self.started.elapsed().as_secs_f64() / self.batch_done as f64;
                    eprintln!(
                        "{}: batch {}/{} loss {loss:.4} {rate:.0} samples/s eta {left:.0}s",
                        self.label, self.batch_done, self.batch_total
                    );
                }
            }
            Mode::Quiet => {}
        }
    }

    /// Epoch summary line (also the bar message).
    pub fn end_epoch(&mut self, epoch: usize, line: &str) {
        if let Some(b) = self.batches.take() {
            b.finish_and_clear();
        }
        match self.mode {
            Mode::Bars => {
                if let Some(e) = &self.epochs {
                    e.set_position(epoch as u64 + 1);
                    e.set_message(line.to_string());
                    e.println(format!("{}: epoch {} {line}", self.label, epoch + 1));
                }
            }
            Mode::Lines => eprintln!("{}: epoch {} {line}", self.label, epoch + 1),
            Mode::Quiet => {}
        }
        self.last_line = Instant::now();
    }

    pub fn note(&self, msg: &str) {
        match self.mode {
            Mode::Bars => match &self.epochs {
                Some(e) => e.println(format!("{}: {msg}", self.label)),
                None => eprintln!("{}: {msg}", self.label),
            },
            Mode::Lines => eprintln!("{}: {msg}", self.label),
            Mode::Quiet => {}
        }
    }

    pub fn finish(self) {
        if let Some(e) = self.epochs {
            e.finish_and_clear();
        }
    }
}
