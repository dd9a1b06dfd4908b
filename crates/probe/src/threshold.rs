//! The kubelet's readiness threshold logic as a pure state machine: counts of
//! consecutive results across periods decide when a target changes state.
//!
//! It is pure (no clock, no I/O, no tokio) so that every rule can be tested
//! directly; the scheduler feeds it one [`Outcome`] per period.
//!
//! Rules:
//! - A new target is [`HealthState::Pending`]. Its first failure makes it
//!   NotReady at once (we now know why it is not ready, so an unreachable
//!   host is reported within one period plus the timeout); `success`
//!   consecutive successes make it Ready.
//! - Ready becomes NotReady after `failure` consecutive failures; NotReady
//!   becomes Ready after `success` consecutive successes. A result of the
//!   other kind resets the count.
//! - A configuration error or a local error (no file descriptors, ...)
//!   says nothing about the host: it is ignored, neither counting nor
//!   resetting anything, so the target keeps its state. (The kubelet
//!   likewise throws away results its prober could not produce.) The
//!   scheduler's observer still sees it, for metrics and logs.

use std::time::SystemTime;

use crate::probe::{Outcome, Verdict};

/// Message of a target whose state was restored rather than probed.
pub const SEEDED_MESSAGE: &str = "restored from existing EndpointSlice";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// New target, no verdict yet. Not in rotation.
    Pending,
    Ready,
    NotReady,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub state: HealthState,
    /// When the target entered `state`.
    pub since: SystemTime,
    /// Why it is not ready (the failing probe's message); empty once a
    /// probe made it ready; [`SEEDED_MESSAGE`] while the state is the one
    /// restored at start. Never contains timings or bodies, so it is stable
    /// across repeated failures and does not churn `status`.
    pub message: String,
}

/// Consecutive results needed to change state. Zero is read as 1 (a
/// threshold of zero results has no meaning and must not wedge a target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
}

#[derive(Clone, Debug)]
pub struct ThresholdTracker {
    thresholds: Thresholds,
    health: Health,
    successes: u32,
    failures: u32,
}

impl ThresholdTracker {
    /// A new target: not ready until `success` consecutive successes; its
    /// first failure already makes it NotReady (with the reason).
    pub fn new_pending(thresholds: Thresholds, now: SystemTime) -> Self {
        Self::with_health(
            thresholds,
            Health {
                state: HealthState::Pending,
                since: now,
                message: String::new(),
            },
        )
    }

    /// A target whose state was restored (from existing EndpointSlices), so
    /// that a restart or a leader change moves no endpoint. Counters start
    /// at zero: the thresholds apply from here on.
    pub fn new_seeded(thresholds: Thresholds, ready: bool, now: SystemTime) -> Self {
        let state = if ready {
            HealthState::Ready
        } else {
            HealthState::NotReady
        };
        Self::with_health(
            thresholds,
            Health {
                state,
                since: now,
                message: SEEDED_MESSAGE.to_string(),
            },
        )
    }

    /// Continue from a known health (a target whose probe settings changed):
    /// the state is kept, the counters start over.
    pub fn with_health(thresholds: Thresholds, health: Health) -> Self {
        ThresholdTracker {
            thresholds: Thresholds {
                failure: thresholds.failure.max(1),
                success: thresholds.success.max(1),
            },
            health,
            successes: 0,
            failures: 0,
        }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Feed one probe result; returns the new health only when the state
    /// changed (Pending to anything, Ready to NotReady or back). Staying in
    /// a state returns `None` and keeps the first message, so a host failing
    /// for a new reason does not rewrite status every period.
    pub fn observe(&mut self, outcome: &Outcome, now: SystemTime) -> Option<Health> {
        if !outcome.verdict.is_about_the_host() {
            return None;
        }
        let next = if outcome.verdict == Verdict::Success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            let enough = self.successes >= self.thresholds.success;
            (self.health.state != HealthState::Ready && enough).then(|| Health {
                state: HealthState::Ready,
                since: now,
                message: String::new(),
            })
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            let flip = match self.health.state {
                HealthState::Pending => true,
                HealthState::Ready => self.failures >= self.thresholds.failure,
                HealthState::NotReady => false,
            };
            flip.then(|| Health {
                state: HealthState::NotReady,
                since: now,
                message: outcome.message.clone(),
            })
        };
        if let Some(h) = &next {
            self.health = h.clone();
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn outcome(verdict: Verdict, message: &str) -> Outcome {
        Outcome {
            verdict,
            message: message.into(),
            reason: "test",
            latency: Duration::from_millis(1),
            cert_not_after: None,
        }
    }

    fn ok() -> Outcome {
        outcome(Verdict::Success, "")
    }

    fn fail(msg: &str) -> Outcome {
        outcome(Verdict::Failure, msg)
    }

    fn states(tracker: &mut ThresholdTracker, results: &[bool]) -> Vec<Option<HealthState>> {
        results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let o = if *r { ok() } else { fail("refused") };
                tracker.observe(&o, t(i as u64)).map(|h| h.state)
            })
            .collect()
    }

    const ONE: Thresholds = Thresholds {
        failure: 1,
        success: 1,
    };

    #[test]
    fn pending_becomes_ready_after_success_threshold() {
        let mut tr = ThresholdTracker::new_pending(
            Thresholds {
                failure: 3,
                success: 2,
            },
            t(0),
        );
        assert_eq!(
            states(&mut tr, &[true, true, true]),
            [None, Some(HealthState::Ready), None]
        );
    }

    #[test]
    fn pending_reports_the_first_failure_with_its_reason() {
        let mut tr = ThresholdTracker::new_pending(
            Thresholds {
                failure: 3,
                success: 1,
            },
            t(0),
        );
        let h = tr
            .observe(&fail("tcp connect: connection refused"), t(5))
            .expect("change");
        assert_eq!(h.state, HealthState::NotReady);
        assert_eq!(h.message, "tcp connect: connection refused");
        assert_eq!(h.since, t(5));
        assert_eq!(tr.observe(&fail("again"), t(6)), None, "no change, no news");
        assert_eq!(tr.health().message, "tcp connect: connection refused");
    }

    /// A tracker seeded ready (or not) at `t(0)`, with these thresholds.
    fn seeded_at_0(failure: u32, success: u32, ready: bool) -> ThresholdTracker {
        ThresholdTracker::new_seeded(Thresholds { failure, success }, ready, t(0))
    }

    #[test]
    fn thresholds_count_consecutive_results() {
        // (tracker, results, the state the last result reports; none before).
        // Two failures keep a ready target ready and a success resets the
        // count; and the other way round.
        let cases = [
            (
                seeded_at_0(3, 1, true),
                [false, false, true, false, false, false],
                HealthState::NotReady,
            ),
            (
                seeded_at_0(1, 3, false),
                [true, true, false, true, true, true],
                HealthState::Ready,
            ),
        ];
        for (mut tr, results, last) in cases {
            assert_eq!(
                states(&mut tr, &results),
                [None, None, None, None, None, Some(last)],
                "{results:?}"
            );
        }
    }

    #[test]
    fn flapping_with_thresholds_of_one_follows_every_result() {
        let mut tr = ThresholdTracker::new_pending(ONE, t(0));
        assert_eq!(
            states(&mut tr, &[true, false, true, false]),
            [
                Some(HealthState::Ready),
                Some(HealthState::NotReady),
                Some(HealthState::Ready),
                Some(HealthState::NotReady)
            ]
        );
    }

    #[test]
    fn flapping_below_the_threshold_changes_nothing() {
        let mut tr = seeded_at_0(2, 2, true);
        assert_eq!(
            states(&mut tr, &[false, true, false, true, false, true]),
            [None; 6]
        );
        assert_eq!(tr.health().state, HealthState::Ready);
    }

    #[test]
    fn seeded_targets_start_in_their_restored_state() {
        let tr = ThresholdTracker::new_seeded(ONE, false, t(9));
        assert_eq!(tr.health().state, HealthState::NotReady);
        assert_eq!(tr.health().message, SEEDED_MESSAGE);
        assert_eq!(tr.health().since, t(9));
        let mut tr = ThresholdTracker::new_seeded(ONE, true, t(9));
        assert_eq!(tr.health().state, HealthState::Ready);
        assert_eq!(tr.health().message, SEEDED_MESSAGE);
        assert_eq!(
            tr.observe(&ok(), t(10)),
            None,
            "a probe that agrees is not a transition"
        );
        assert_eq!(tr.health().since, t(9));
    }

    #[test]
    fn config_and_local_errors_change_nothing() {
        for verdict in [Verdict::ConfigError, Verdict::LocalError] {
            let problem = outcome(verdict, "configuration error: bad header");
            // A ready host stays ready, however many come in a row.
            let mut tr = ThresholdTracker::new_seeded(ONE, true, t(0));
            for i in 1..5 {
                assert_eq!(tr.observe(&problem, t(i)), None, "{verdict:?}");
            }
            assert_eq!(tr.health().state, HealthState::Ready);
            assert_eq!(tr.health().since, t(0));
            // A pending target stays pending (not NotReady).
            let mut tr = ThresholdTracker::new_pending(ONE, t(0));
            assert_eq!(tr.observe(&problem, t(1)), None);
            assert_eq!(tr.health().state, HealthState::Pending);
            // They neither count nor reset: two failures around one of
            // them reach a threshold of two.
            let two = Thresholds {
                failure: 2,
                success: 1,
            };
            let mut tr = ThresholdTracker::new_seeded(two, true, t(0));
            assert_eq!(tr.observe(&fail("down"), t(1)), None);
            assert_eq!(tr.observe(&problem, t(2)), None);
            let h = tr
                .observe(&fail("down"), t(3))
                .expect("second failure flips");
            assert_eq!(h.state, HealthState::NotReady);
        }
    }

    #[test]
    fn transitions_carry_the_reason_and_the_time() {
        let mut tr = seeded_at_0(3, 2, true);
        assert_eq!(tr.observe(&fail("first"), t(1)), None);
        assert_eq!(tr.observe(&fail("second"), t(2)), None);
        let down = tr
            .observe(&fail("third"), t(3))
            .expect("third failure flips");
        assert_eq!(
            down,
            Health {
                state: HealthState::NotReady,
                since: t(3),
                message: "third".into()
            }
        );
        assert_eq!(tr.observe(&ok(), t(4)), None, "one success of two");
        let up = tr.observe(&ok(), t(5)).expect("second success flips");
        assert_eq!(
            up,
            Health {
                state: HealthState::Ready,
                since: t(5),
                message: String::new()
            }
        );
        assert_eq!(tr.health(), &up);
    }

    #[test]
    fn pending_needs_consecutive_successes_and_fails_fast() {
        let mut tr = ThresholdTracker::new_pending(
            Thresholds {
                failure: 3,
                success: 3,
            },
            t(0),
        );
        assert_eq!(tr.health().state, HealthState::Pending);
        // Two successes, then a failure: NotReady at once, counts reset.
        assert_eq!(
            states(&mut tr, &[true, true, false, true, true, true]),
            [
                None,
                None,
                Some(HealthState::NotReady),
                None,
                None,
                Some(HealthState::Ready)
            ]
        );
    }

    #[test]
    fn seeded_not_ready_recovers_after_the_success_threshold() {
        let mut tr = seeded_at_0(1, 2, false);
        assert_eq!(tr.observe(&fail("still down"), t(1)), None);
        assert_eq!(
            tr.health().message,
            SEEDED_MESSAGE,
            "staying down keeps the message"
        );
        assert_eq!(tr.observe(&ok(), t(2)), None);
        let h = tr.observe(&ok(), t(3)).expect("ready");
        assert_eq!((h.state, h.message.as_str()), (HealthState::Ready, ""));
    }

    #[test]
    fn zero_thresholds_behave_as_one() {
        let mut tr = seeded_at_0(0, 0, true);
        assert_eq!(
            states(&mut tr, &[false, true]),
            [Some(HealthState::NotReady), Some(HealthState::Ready)]
        );
    }

    #[test]
    fn with_health_keeps_state_and_resets_counters() {
        let mut tr = seeded_at_0(2, 1, true);
        assert_eq!(tr.observe(&fail("x"), t(1)), None);
        let mut next = ThresholdTracker::with_health(
            Thresholds {
                failure: 2,
                success: 1,
            },
            tr.health().clone(),
        );
        assert_eq!(
            next.observe(&fail("x"), t(2)),
            None,
            "the earlier failure was forgotten"
        );
        assert_eq!(next.health().state, HealthState::Ready);
    }
}
