//! Poll intervals that grow while there is nothing to do, so idle daemons
//! cost the bucket little, and snap back as soon as work appears.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// Call after a poll that found work.
    pub fn reset(&mut self) {
        self.current = self.min;
    }

    /// Holds the current delay at or below `limit` (while work is due soon).
    pub fn cap(&mut self, limit: Duration) {
        self.current = self.current.min(limit.max(self.min));
    }

    /// The delay before the next poll; doubles up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let d: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, vec![100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }
}
