//! The waits before they were event-driven, modelled: the adaptive poll
//! loop (a Wait state, then the step again) and how many polls and how much
//! delay it took to see a job end, at production's base interval — the
//! "before" of the event-driven waits' table.

/// Production's base poll interval of the poll loop.
pub const PRODUCTION_POLL_SECONDS: u64 = 15;
/// The waiting states' TimeoutSeconds in infra/statemachine/deployment.asl.json.
pub const PRODUCTION_FALLBACK_SECONDS: u64 = 300;

/// The poll loop's n-th wait (from 0): the base interval for the first
/// three polls, then twice, then four times the base.
fn poll_wait(base: u64, n: usize) -> u64 {
    base * match n {
        0..=2 => 1,
        3..=5 => 2,
        _ => 4,
    }
}

/// Poll schedule of the poll loop with base `base`: for a job that ends at
/// a uniformly random moment within `horizon` seconds, the mean and worst
/// delay until the next poll sees it, and the polls it takes to see a job
/// of `horizon` seconds.
pub fn poll_schedule(base: u64, horizon: u64) -> (f64, u64, usize) {
    schedule(|n| poll_wait(base, n), horizon)
}

/// The same for the event-driven waits when the event is lost: the waiting
/// state checks again every `timeout` seconds (its TimeoutSeconds).
pub fn fallback_schedule(timeout: u64, horizon: u64) -> (f64, u64, usize) {
    schedule(|_| timeout, horizon)
}

fn schedule(wait: impl Fn(usize) -> u64, horizon: u64) -> (f64, u64, usize) {
    let mut checks = vec![];
    let mut t = 0;
    while t < horizon {
        t += wait(checks.len());
        checks.push(t);
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
    fn poll_schedule_grows_and_caps() {
        // Base 15: checks at 15, 30, 45, 75, 105, 135, 195 …
        let (_, worst, n) = poll_schedule(15, 45);
        assert_eq!((worst, n), (14, 3));
        let (_, worst, _) = poll_schedule(15, 135);
        assert_eq!(worst, 29);
        let (mean, worst, n) = fallback_schedule(300, 600);
        assert_eq!((worst, n), (299, 2));
        assert!((mean - 149.5).abs() < 0.01, "{mean}");
    }
}
