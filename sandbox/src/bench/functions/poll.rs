//! The adaptive poll's schedule, modelled: how many polls and how much
//! delay it takes to see a job end, at production's base interval.

use autosky_core::steps::Poll;

/// Production's base poll interval (`StepInput::base_poll_seconds` default).
pub const PRODUCTION_POLL_SECONDS: u64 = 15;

/// Poll schedule of the adaptive wait (`Poll::again`) with base `base`: for
/// a job that ends at a uniformly random moment within `horizon` seconds,
/// the mean and worst delay until the next poll sees it, and the polls it
/// takes to see a job of `horizon` seconds.
pub fn poll_schedule(base: u64, horizon: u64) -> (f64, u64, usize) {
    let mut checks = vec![];
    let mut t = 0;
    let mut p = Poll::again(None, base);
    while t < horizon {
        t += p.wait_seconds;
        checks.push(t);
        p = Poll::again(Some(&p), base);
    }
    let (mut sum, mut worst) = (0u64, 0u64);
    for end in 1..=horizon {
        let seen = checks.iter().copied().find(|c| *c >= end).unwrap_or(end);
        sum += seen - end;
        worst = worst.max(seen - end);
    }
    (sum as f64 / horizon as f64, worst, checks.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_schedule_follows_poll_again() {
        // Base 15: checks at 15, 30, 45, 75, 105, 135, 195 …
        let (_, worst, n) = poll_schedule(15, 45);
        assert_eq!((worst, n), (14, 3));
        let (_, worst, _) = poll_schedule(15, 135);
        assert_eq!(worst, 29);
    }
}
