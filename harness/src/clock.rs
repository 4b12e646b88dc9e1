//! Time: the harness clock, and how a browser's clock is mapped onto it.
//!
//! The harness keeps one monotonic clock ([`Clock`]): a `std::time::Instant` taken at start-up,
//! paired with the Unix time read once at that moment. Bot events are stamped with it directly.
//!
//! A browser stamps its events with `performance.timeOrigin + performance.now()`, Unix-epoch
//! milliseconds on the page's own monotonic clock. Before a scenario uses a browser peer, the
//! harness exchanges a few pings with the page over the control WebSocket: it notes its send
//! time `t0`, the page answers with its time `tb`, the harness notes the receive time `t1`. For
//! the sample with the smallest round trip, the offset is `tb - (t0 + t1) / 2` and the error is
//! at most half that round trip (the Cristian/NTP bound, assuming nothing about which leg was
//! slower). Browser times are mapped as `t - offset`; the bound goes into the results as
//! `clock_error_ms`. On this kind of machine it is typically well under 1 ms.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The harness's clock: monotonic, expressed as Unix-epoch milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_unix_ms: f64,
}

impl Clock {
    /// Starts the clock now.
    pub fn start() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        Self {
            origin: Instant::now(),
            origin_unix_ms: unix,
        }
    }

    /// Now, in Unix-epoch ms.
    pub fn now_unix_ms(&self) -> f64 {
        self.origin_unix_ms + self.origin.elapsed().as_secs_f64() * 1000.0
    }
}

/// One ping exchange, all in Unix-epoch ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncSample {
    /// Harness time when the ping left.
    pub sent_ms: f64,
    /// The remote clock's time when it answered.
    pub remote_ms: f64,
    /// Harness time when the answer arrived.
    pub received_ms: f64,
}

/// A remote clock's offset from the harness clock.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClockOffset {
    /// `remote - harness`, ms.
    pub offset_ms: f64,
    /// Upper bound of the error of `offset_ms`, ms (half the best round trip).
    pub error_ms: f64,
}

impl ClockOffset {
    /// Maps a remote timestamp onto the harness clock.
    pub fn to_harness(&self, remote_ms: f64) -> f64 {
        remote_ms - self.offset_ms
    }
}

/// Estimates the offset from ping samples; `None` if there is no usable sample.
pub fn estimate_offset(samples: &[SyncSample]) -> Option<ClockOffset> {
    samples
        .iter()
        .filter(|s| s.received_ms >= s.sent_ms && s.remote_ms.is_finite())
        .min_by(|a, b| (a.received_ms - a.sent_ms).total_cmp(&(b.received_ms - b.sent_ms)))
        .map(|s| ClockOffset {
            offset_ms: s.remote_ms - (s.sent_ms + s.received_ms) / 2.0,
            error_ms: (s.received_ms - s.sent_ms) / 2.0,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_tightest_round_trip() {
        let s = [
            SyncSample {
                sent_ms: 0.0,
                remote_ms: 1005.0,
                received_ms: 10.0,
            },
            SyncSample {
                sent_ms: 20.0,
                remote_ms: 1021.0,
                received_ms: 22.0,
            },
            SyncSample {
                sent_ms: 30.0,
                remote_ms: 1040.0,
                received_ms: 36.0,
            },
        ];
        let o = estimate_offset(&s).unwrap();
        assert_eq!(
            o,
            ClockOffset {
                offset_ms: 1000.0,
                error_ms: 1.0
            }
        );
        assert_eq!(o.to_harness(1050.0), 50.0);
    }

    #[test]
    fn rejects_impossible_samples() {
        let s = [SyncSample {
            sent_ms: 10.0,
            remote_ms: 5.0,
            received_ms: 9.0,
        }];
        assert_eq!(estimate_offset(&s), None);
        assert_eq!(estimate_offset(&[]), None);
    }

    #[test]
    fn the_true_offset_lies_within_the_bound() {
        // Asymmetric legs: 1 ms out, 7 ms back; true offset 250 ms.
        let s = SyncSample {
            sent_ms: 100.0,
            remote_ms: 100.0 + 1.0 + 250.0,
            received_ms: 108.0,
        };
        let o = estimate_offset(&[s]).unwrap();
        assert!((o.offset_ms - 250.0).abs() <= o.error_ms);
    }
}
