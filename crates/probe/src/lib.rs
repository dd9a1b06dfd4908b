//! Kubelet-style health probes for hosts outside Kubernetes, and the
//! scheduler that runs one long-lived worker per target.
//!
//! This crate knows nothing about Kubernetes: the controller hands it targets
//! (an owner key, a port name and a host) and hears back only transitions.
//!
//! - [`probe`]: one probe of one address (TCP, HTTP(S), UDP, gRPC), always
//!   finished by its timeout, never panicking on bad input.
//! - [`threshold`]: the pure consecutive-results state machine.
//! - [`scheduler`]: per-target workers on a fixed period, publishing changes.

#![forbid(unsafe_code)]

pub mod probe;
pub mod scheduler;
pub mod threshold;

pub use probe::{HttpGet, Outcome, Probe, ProbeError, ProbeKind, Prober, Scheme, Verdict};
pub use scheduler::{Observer, Scheduler, StateCounts, TargetId, TargetSpec, Transition};
pub use threshold::{Health, HealthState, SEEDED_MESSAGE, ThresholdTracker, Thresholds};
