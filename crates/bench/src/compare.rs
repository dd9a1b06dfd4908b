//! The side-by-side comparison with the predecessor (endpoints-operator):
//! every profile run for each controller in one invocation, on one machine,
//! then one table per profile with the ratio of each other controller to
//! the first (kube-endpoints). Pure: results in, Markdown out.

use std::fmt::Write as _;

use crate::report::ProfileResult;
use crate::section::Section;
use crate::sys::Machine;

/// Where the comparison goes in BENCHMARKS.md.
pub const SECTION: Section = Section {
    begin: "<!-- compare:begin -->",
    end: "<!-- compare:end -->",
};

/// Reads one figure from a result (`None`: the run did not produce it).
type Figure = Box<dyn Fn(&ProfileResult) -> Option<f64>>;

/// One row of a profile's table: a name and how to read the figure from a
/// result (`None`: the run did not produce it).
struct Row {
    name: String,
    figure: Figure,
    /// Digits after the point.
    digits: usize,
}

fn row(
    name: impl Into<String>,
    digits: usize,
    figure: impl Fn(&ProfileResult) -> Option<f64> + 'static,
) -> Row {
    Row {
        name: name.into(),
        figure: Box::new(figure),
        digits,
    }
}

/// The rows every profile gets (those a profile does not measure stay
/// empty and are left out).
fn rows(results: &[&ProfileResult]) -> Vec<Row> {
    let mut out = vec![
        row("converged, s after the last create", 1, |r| {
            r.convergence.as_ref().map(|c| c.seconds_after_created)
        }),
        row("objects that reported their state", 0, |r| {
            r.unreachable.as_ref().map(|u| u.reported as f64)
        }),
        row("every object reported, s after the last create", 1, |r| {
            r.unreachable
                .as_ref()
                .and_then(|u| u.all_reported_seconds_after_created)
        }),
        row("API writes per object (controller)", 2, |r| {
            r.convergence
                .as_ref()
                .map(|c| c.controller_writes_per_object)
        }),
        row("steady writes per minute", 1, |r| {
            r.steady.as_ref().map(|s| s.writes_per_minute)
        }),
    ];
    let mut modes: Vec<_> = results
        .iter()
        .flat_map(|r| r.detection.iter().map(|d| d.mode))
        .collect();
    modes.sort_by_key(|m| m.as_str());
    modes.dedup();
    for mode in modes {
        let detection =
            move |r: &ProfileResult| r.detection.iter().find(|d| d.mode == mode).cloned();
        out.push(row(
            format!("detection p99 over the floor, s ({})", mode.as_str()),
            2,
            move |r| detection(r)?.detect.map(|s| s.p99),
        ));
        out.push(row(
            format!("recovery p99 over the floor, s ({})", mode.as_str()),
            2,
            move |r| detection(r)?.recover.map(|s| s.p99),
        ));
    }
    out.extend([
        row("CPU, % of one core (steady)", 1, |r| {
            r.steady.as_ref().and_then(|s| s.cpu_percent_of_one_core)
        }),
        row("CPU seconds, whole run", 1, |r| r.cpu_seconds_total),
        row("RSS, MiB (steady)", 0, |r| {
            r.steady.as_ref().and_then(|s| s.rss_mib)
        }),
        row("RSS, MiB (peak)", 0, |r| r.peak_rss_mib),
        row("open sockets (steady, mean)", 0, |r| {
            r.steady.as_ref().and_then(|s| s.sockets_mean)
        }),
        row("conntrack entries (steady, mean)", 0, |r| {
            r.steady.as_ref().and_then(|s| s.conntrack_mean)
        }),
    ]);
    out
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

/// `other / base` as `×N`: `=` when both are 0, `base 0` when only the
/// base is, nothing when either is missing or negative (a detection time
/// below its floor is no quantity to divide).
fn ratio(base: Option<f64>, other: Option<f64>) -> String {
    const ZERO: f64 = 1e-9;
    match (base, other) {
        (Some(b), Some(o)) if b < 0.0 || o < 0.0 => String::new(),
        (Some(b), Some(o)) if b > ZERO => format!("×{:.2}", o / b),
        (Some(_), Some(o)) if o > ZERO => "base 0".into(),
        (Some(_), Some(_)) => "=".into(),
        _ => String::new(),
    }
}

/// The comparison section: one table per profile, in the order run, the
/// first controller of each profile as the base of the ratios.
pub fn markdown(results: &[ProfileResult], machine: &Machine, generated_at: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{}", SECTION.begin);
    let _ = writeln!(md, "## Side by side with endpoints-operator\n");
    let _ = writeln!(
        md,
        "One run of `make bench-peer` ({generated_at}, {} cores, {:.1} GiB, {}): every profile \
         ran for each controller in turn on the same machine, each against a fresh control \
         plane. endpoints-operator writes Endpoints only, so kube-controller-manager's \
         `endpointslicemirroring` controller runs beside it (its EndpointSlice writes count as \
         the operator's). CPU and RSS are the controller process's own. Ratios are the other \
         controller's figure over kube-endpoints' (×2.00: twice as much). A dash: the run did \
         not produce the figure (see its error below the table).\n",
        machine.cores, machine.memory_gib, machine.cpu_model
    );
    let mut profiles: Vec<&str> = Vec::new();
    for r in results {
        if !profiles.contains(&r.profile.name) {
            profiles.push(r.profile.name);
        }
    }
    for name in profiles {
        let runs: Vec<&ProfileResult> = results.iter().filter(|r| r.profile.name == name).collect();
        let Some(base) = runs.first() else { continue };
        let _ = writeln!(md, "### {name}: {}\n", base.profile.description);
        let mut header = "| |".to_string();
        let mut rule = "|---|".to_string();
        for (i, r) in runs.iter().enumerate() {
            let _ = write!(header, " {} |", r.controller);
            rule.push_str("---:|");
            if i > 0 {
                header.push_str(" ratio |");
                rule.push_str("---:|");
            }
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for row in rows(&runs) {
            let figures: Vec<Option<f64>> = runs.iter().map(|r| (row.figure)(r)).collect();
            if figures.iter().all(Option::is_none) {
                continue;
            }
            let mut line = format!("| {} |", row.name);
            for (i, f) in figures.iter().enumerate() {
                let _ = write!(line, " {} |", cell(*f, row.digits));
                if i > 0 {
                    let _ = write!(line, " {} |", ratio(figures[0], *f));
                }
            }
            let _ = writeln!(md, "{line}");
        }
        let _ = writeln!(md);
        for r in &runs {
            if let Some(e) = &r.error {
                let _ = writeln!(md, "- {} did not finish: {e}", r.controller);
            }
        }
        if runs.iter().any(|r| r.error.is_some()) {
            let _ = writeln!(md);
        }
    }
    let _ = writeln!(md, "{}", SECTION.end);
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;
    use crate::report::{Convergence, Steady, Unreachable};
    use crate::workload;

    fn result(controller: &str, converged: f64, writes: f64, error: Option<&str>) -> ProfileResult {
        let profile = workload::profile("smoke").expect("smoke");
        let opts = Options {
            label: controller.into(),
            controller_cmd: vec!["x".into()],
            controller_env: Vec::new(),
            group: "sealos.io".into(),
            crd_manifest: None,
            fixed_metrics_port: None,
            kcm_controllers: Vec::new(),
            shardable: true,
            udp_data_as_bytes: false,
            check_endpoints: true,
            concurrency: 1,
            work_dir: std::env::temp_dir(),
            timeout: None,
        };
        let mut r = ProfileResult::new(&profile, &opts);
        r.convergence = Some(Convergence {
            seconds_after_created: converged,
            seconds_from_first_create: converged,
            objects_per_minute: 1.0,
            controller_writes_per_object: writes,
            api_writes_per_object: writes,
            writes_per_object_by: Default::default(),
            series: Vec::new(),
        });
        r.steady = Some(Steady {
            window_seconds: 60.0,
            writes_per_minute: 0.0,
            writes_per_minute_by: Default::default(),
            reads_per_minute: 0.0,
            cpu_seconds_per_minute: None,
            cpu_percent_of_one_core: Some(2.0),
            rss_mib: Some(20.0),
            peak_rss_mib: None,
            probes_per_second: None,
            probes_per_second_by: Default::default(),
            lateness_p50_seconds: None,
            lateness_p99_seconds: None,
            sockets_mean: None,
            sockets_max: None,
            conntrack_mean: None,
            conntrack_max: None,
        });
        r.error = error.map(String::from);
        r
    }

    fn machine() -> Machine {
        Machine {
            cores: 2,
            memory_gib: 8.0,
            cpu_model: "test".into(),
            kernel: "test".into(),
        }
    }

    #[test]
    fn one_table_per_profile_with_the_ratio_to_the_first_controller() {
        let results = vec![
            result("kube-endpoints", 2.0, 4.0, None),
            result("endpoints-operator --maxconcurrent 1", 8.0, 10.0, None),
        ];
        let md = markdown(&results, &machine(), "2026-11-26T00:00:00Z");
        assert!(md.starts_with(SECTION.begin) && md.trim_end().ends_with(SECTION.end));
        assert_eq!(md.matches("### smoke").count(), 1);
        assert!(md.contains("| | kube-endpoints | endpoints-operator --maxconcurrent 1 | ratio |"));
        assert!(
            md.contains("| converged, s after the last create | 2.0 | 8.0 | ×4.00 |"),
            "{md}"
        );
        assert!(md.contains("| API writes per object (controller) | 4.00 | 10.00 | ×2.50 |"));
        // Both wrote nothing in the quiet window: equal, not a division by 0.
        assert!(md.contains("| steady writes per minute | 0.0 | 0.0 | = |"));
        assert_eq!(ratio(Some(0.0), Some(3.0)), "base 0");
        assert_eq!(ratio(Some(-0.4), Some(0.3)), "");
        assert_eq!(ratio(None, Some(0.3)), "");
        // Rows no run measured are left out.
        assert!(!md.contains("every object reported"));
        assert!(!md.contains("objects that reported their state"));
    }

    #[test]
    fn the_unreachable_table_counts_the_objects_each_controller_reported() {
        let reported = |label: &str, reported: usize, all: Option<f64>| {
            let mut r = result(label, 1.0, 4.0, None);
            r.unreachable = Some(Unreachable {
                objects: 500,
                reported,
                goal_seconds: 11.0,
                within_goal_after_created: reported,
                all_reported_seconds_after_created: all,
                all_reported_seconds_from_first_create: all,
                per_object_seconds: None,
            });
            r
        };
        let results = vec![
            reported("kube-endpoints", 500, Some(4.6)),
            reported("endpoints-operator --maxconcurrent 1", 23, None),
        ];
        let md = markdown(&results, &machine(), "t");
        assert!(
            md.contains("| objects that reported their state | 500 | 23 | ×0.05 |"),
            "{md}"
        );
        assert!(md.contains("| every object reported, s after the last create | 4.6 | – |  |"));
    }

    #[test]
    fn a_failed_run_shows_dashes_and_its_error() {
        let mut failed = result(
            "endpoints-operator --maxconcurrent 1",
            0.0,
            0.0,
            Some("timed out"),
        );
        failed.convergence = None;
        let results = vec![result("kube-endpoints", 2.0, 4.0, None), failed];
        let md = markdown(&results, &machine(), "t");
        assert!(
            md.contains("| converged, s after the last create | 2.0 | – |  |"),
            "{md}"
        );
        assert!(md.contains("- endpoints-operator --maxconcurrent 1 did not finish: timed out"));
    }
}
