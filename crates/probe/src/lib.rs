//! Kubelet-style health probes for hosts outside Kubernetes, and the
//! scheduler that runs one long-lived worker per target.
//!
//! This crate knows nothing about Kubernetes: the controller hands it targets
//! (an owner key, a port name and a host) and hears back only transitions.
//!
//! - [`probe`]: one probe of one address (TCP with optional send/expect and
//!   TLS, HTTP(S) with methods, expected statuses and body matching, UDP
//!   with an optional expected reply, gRPC plaintext or over TLS), always
//!   finished by its timeout, never panicking on bad input, never
//!   connecting anywhere but the address given.
//! - [`threshold`]: the pure consecutive-results state machine.
//! - [`scheduler`]: per-target workers on a (possibly adaptive, jittered)
//!   period, under a global cap on probes in flight, publishing changes.

#![forbid(unsafe_code)]

pub mod probe;
pub mod scheduler;
pub mod threshold;

pub use probe::{
    BoundedRegex, Expect, GrpcProbe, HttpGet, HttpMethod, MAX_READ, MAX_REQUESTS, OWNED_HEADERS,
    Outcome, Probe, ProbeError, ProbeKind, Prober, REASONS, Scheme, StatusRange, TcpProbe,
    TlsConfig, TlsVersion, UdpProbe, Verdict, certificate_not_after, validate_host_header,
    validate_virtual_host,
};
pub use scheduler::{
    CertificateChange, DEFAULT_MAX_IN_FLIGHT, Intervals, Observer, Scheduler, StateCounts,
    TargetId, TargetSpec, Transition,
};
pub use threshold::{Health, HealthState, SEEDED_MESSAGE, ThresholdTracker, Thresholds};
