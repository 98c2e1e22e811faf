//! Log lines a client can cause are rate-limited: a flood of bad
//! requests or connections must not fill the disk or drown the lines
//! that matter. Dropshot logs each request and each connection at info;
//! [`logger`] passes at most [`LINES_PER_SEC`] of those a second and says
//! how many it dropped. Warnings and errors always pass.

use slog::{Drain, Level, OwnedKVList, Record};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Enough to follow a busy operator's session line by line; a flood is
/// cut to this.
pub const LINES_PER_SEC: u32 = 50;

/// A logger for the API server: `inner`, with info and below limited.
pub fn logger(inner: slog::Logger) -> slog::Logger {
    let drain = Limited {
        inner,
        window: Mutex::new((Instant::now(), 0, 0)),
    };
    slog::Logger::root(drain.fuse(), slog::o!())
}

struct Limited {
    inner: slog::Logger,
    /// (window start, lines passed in it, lines dropped since the last report)
    window: Mutex<(Instant, u32, u64)>,
}

impl Drain for Limited {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        if !record.level().is_at_least(Level::Warning) {
            let dropped = {
                let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                if now.duration_since(w.0) >= Duration::from_secs(1) {
                    w.0 = now;
                    w.1 = 0;
                }
                if w.1 >= LINES_PER_SEC {
                    w.2 += 1;
                    return Ok(());
                }
                w.1 += 1;
                std::mem::take(&mut w.2)
            };
            if dropped > 0 {
                slog::warn!(self.inner, "log lines dropped (more than {LINES_PER_SEC} a second)"; "dropped" => dropped);
            }
        }
        Drain::log(&self.inner, record, values)
    }
}

/// At most one event in `every`: [`Every::tick`] says how many happened
/// since the last one it let through.
pub struct Every {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Every {
    pub fn new(every: Duration) -> Every {
        Every {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(events since the last report, this one included)` if this
    /// one may be reported.
    pub fn tick(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 += 1;
        let now = Instant::now();
        if s.0.is_some_and(|t| now.duration_since(t) < self.every) {
            return None;
        }
        s.0 = Some(now);
        Some(std::mem::take(&mut s.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Collect(Arc<Mutex<Vec<String>>>);
    impl Drain for Collect {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, r: &Record<'_>, _: &OwnedKVList) -> Result<(), slog::Never> {
            self.0.lock().unwrap().push(format!("{}", r.msg()));
            Ok(())
        }
    }

    #[test]
    fn a_flood_of_info_lines_is_cut_and_counted_but_warnings_pass() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = logger(slog::Logger::root(
            Collect(Arc::clone(&lines)).fuse(),
            slog::o!(),
        ));
        for _ in 0..1000 {
            slog::info!(log, "request completed");
        }
        assert_eq!(lines.lock().unwrap().len(), LINES_PER_SEC as usize);
        for _ in 0..10 {
            slog::warn!(log, "a warning");
        }
        assert_eq!(lines.lock().unwrap().len(), LINES_PER_SEC as usize + 10);
        // The next window says how many were dropped before its first line.
        std::thread::sleep(Duration::from_millis(1100));
        slog::info!(log, "request completed");
        let l = lines.lock().unwrap();
        assert!(l[l.len() - 2].starts_with("log lines dropped"), "{l:?}");
        assert_eq!(l[l.len() - 1], "request completed");
    }

    #[test]
    fn every_reports_once_per_interval_with_the_count() {
        let e = Every::new(Duration::from_secs(3600));
        assert_eq!(e.tick(), Some(1));
        assert_eq!(e.tick(), None);
        assert_eq!(e.tick(), None);
        let e = Every::new(Duration::ZERO);
        assert_eq!(e.tick(), Some(1));
        assert_eq!(e.tick(), Some(1));
    }
}
