//! Waiting for a condition that has no readiness signal of its own (a monitoring counter, a
//! file, a state reached in the background). Where a signal exists (a log line, a reply, a
//! PONG) wait on it instead.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Pause between two checks: short against the timeouts used, long enough not to spin.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The result of one check: `true`/`Some(value)` means done.
pub trait Check {
    /// What a successful check yields.
    type Output;
    /// `Some` when the condition holds.
    fn check(self) -> Option<Self::Output>;
}

impl Check for bool {
    type Output = ();
    fn check(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Check for Option<T> {
    type Output = T;
    fn check(self) -> Option<T> {
        self
    }
}

/// Checks `condition` until it holds or `timeout` passes (at least one check either way);
/// `None` on timeout, for tests that assert with their own message.
pub fn try_eventually<C: Check>(
    timeout: Duration,
    mut condition: impl FnMut() -> C,
) -> Option<C::Output> {
    fetch_until(timeout, || condition().check(), Option::is_some)
        .ok()
        .flatten()
}

/// Checks `condition` until it holds; panics naming `what` after `timeout`.
pub fn eventually<C: Check>(
    timeout: Duration,
    what: impl Display,
    condition: impl FnMut() -> C,
) -> C::Output {
    try_eventually(timeout, condition)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// [`try_eventually`] for conditions that must await (a request, an HTTP GET); sleeps on the
/// tokio clock, so the runtime keeps serving other tasks meanwhile.
pub async fn try_eventually_async<C: Check>(
    timeout: Duration,
    mut condition: impl AsyncFnMut() -> C,
) -> Option<C::Output> {
    fetch_until_async(timeout, async || condition().await.check(), Option::is_some)
        .await
        .ok()
        .flatten()
}

/// [`eventually`] for conditions that must await.
pub async fn eventually_async<C: Check>(
    timeout: Duration,
    what: impl Display,
    condition: impl AsyncFnMut() -> C,
) -> C::Output {
    try_eventually_async(timeout, condition)
        .await
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Fetches a value until `done` holds for it: `Ok(value)`, or `Err(last value)` after
/// `timeout`, for a failure message that shows what was seen last.
pub fn fetch_until<T>(
    timeout: Duration,
    mut fetch: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> Result<T, T> {
    let deadline = Instant::now() + timeout;
    loop {
        let value = fetch();
        if done(&value) {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(value);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// [`fetch_until`] for values that must be awaited (an API request, an HTTP GET).
pub async fn fetch_until_async<T>(
    timeout: Duration,
    mut fetch: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> Result<T, T> {
    let deadline = Instant::now() + timeout;
    loop {
        let value = fetch().await;
        if done(&value) {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(value);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let got = eventually(Duration::from_secs(5), "three calls", || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(got, 3);
    }

    #[test]
    fn gives_up_after_the_timeout_with_one_check_at_least() {
        let mut calls = 0;
        let got = try_eventually(Duration::ZERO, || {
            calls += 1;
            false
        });
        assert_eq!((got, calls), (None, 1));
    }

    #[test]
    #[should_panic(expected = "timed out after 0ns waiting for the impossible")]
    fn eventually_panics_with_what_it_waited_for() {
        eventually(Duration::ZERO, "the impossible", || false);
    }

    #[test]
    fn fetch_until_returns_the_last_value_on_timeout() {
        let mut n = 0;
        assert_eq!(
            fetch_until(
                Duration::ZERO,
                || {
                    n += 1;
                    n
                },
                |v| *v > 5
            ),
            Err(1)
        );
        assert_eq!(
            fetch_until(
                Duration::from_secs(5),
                || {
                    n += 1;
                    n
                },
                |v| *v > 5
            ),
            Ok(6)
        );
    }

    #[tokio::test]
    async fn async_condition_may_borrow_mutably() {
        let mut seen = Vec::new();
        eventually_async(Duration::from_secs(5), "two values", async || {
            seen.push(1);
            seen.len() == 2
        })
        .await;
        assert_eq!(seen, [1, 1]);
    }
}
