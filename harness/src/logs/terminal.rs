//! The harness's own log lines on stderr, printed around the progress bar (indicatif's
//! `suspend`) so that they never break it.

use indicatif::ProgressBar;
use std::io::Write;
use std::sync::Mutex;

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Routes log lines around `bar` until [`clear_progress_bar`].
pub fn set_progress_bar(bar: &ProgressBar) {
    if let Ok(mut b) = BAR.lock() {
        *b = Some(bar.clone());
    }
}

/// Log lines go straight to stderr again.
pub fn clear_progress_bar() {
    if let Ok(mut b) = BAR.lock() {
        *b = None;
    }
}

/// A `MakeWriter` for stderr that suspends the progress bar, if one is shown, for each write
/// (the fmt layer writes one whole formatted line at a time).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(b) if !b.is_hidden() => b.suspend(|| std::io::stderr().write_all(buf))?,
            _ => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}
