//! Prometheus text exposition: parsing samples, `apiserver_request_total`
//! by resource and verb, and quantiles from histogram buckets (as
//! Prometheus' `histogram_quantile` computes them). Pure.

use std::collections::BTreeMap;

/// One sample line: metric name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Parse every sample of a Prometheus / OpenMetrics text page. Comments,
/// blank lines and lines that do not parse are skipped (a scrape never
/// fails because of one odd line).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            if close < open {
                return None;
            }
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    // The value, optionally followed by a timestamp (or an exemplar).
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.trim().to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"` → map. Handles escaped quotes, backslashes and newlines.
fn parse_labels(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim().to_string(), value);
    }
}

/// (resource, subresource, verb) of `apiserver_request_total`.
pub type RequestKey = (String, String, String);

/// Verbs of `apiserver_request_total` that write.
pub use kube_endpoints_testkit::controlplane::WRITE_VERBS;

/// `apiserver_request_total` summed over codes etc., by (resource,
/// subresource, verb).
pub fn request_counts(samples: &[Sample]) -> BTreeMap<RequestKey, f64> {
    let mut out = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.name == "apiserver_request_total")
    {
        let key = (
            s.label("resource").to_string(),
            s.label("subresource").to_string(),
            s.label("verb").to_string(),
        );
        *out.entry(key).or_insert(0.0) += s.value;
    }
    out
}

/// Per-key `after - before` (keys only in `after` count from zero); zero
/// differences are left out.
pub fn diff_counts<K: Ord + Clone>(
    before: &BTreeMap<K, f64>,
    after: &BTreeMap<K, f64>,
) -> BTreeMap<K, f64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d != 0.0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Counter samples of `name` (also matching `name_total`, as OpenMetrics
/// exposes counters), keyed by the values of `by`.
pub fn counter_by(samples: &[Sample], name: &str, by: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let total = format!("{name}_total");
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name || s.name == total) {
        let key = by.iter().map(|l| s.label(l).to_string()).collect();
        *out.entry(key).or_insert(0.0) += s.value;
    }
    out
}

/// Cumulative buckets `(le, count)` of histogram `name` (summed over all
/// label sets other than `le`), sorted by `le`.
pub fn histogram_buckets(samples: &[Sample], name: &str) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == bucket) {
        let le = match s.label("le") {
            "+Inf" | "Inf" => f64::INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        // Order by the float's bits: all `le` here are >= 0, where that
        // order is the numeric one.
        let entry = by_le.entry(le.to_bits()).or_insert((le, 0.0));
        entry.1 += s.value;
    }
    by_le.into_values().collect()
}

/// Per-bucket `after - before` of two cumulative bucket lists (matched by
/// `le`).
pub fn diff_buckets(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l.to_bits() == le.to_bits())
                .map_or(0.0, |(_, c)| *c);
            (*le, c - b)
        })
        .collect()
}

/// The `q`-quantile (0..=1) of cumulative buckets, interpolated linearly
/// within the bucket as Prometheus' `histogram_quantile` does: the lowest
/// bucket starts at 0, a quantile in the `+Inf` bucket is the highest finite
/// bound. `None` without observations or without a `+Inf` bucket.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let (last_le, total) = *buckets.last()?;
    if !last_le.is_infinite() || total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let n = buckets.len();
    // The first bucket whose cumulative count reaches the rank; the +Inf
    // bucket only when no finite one does.
    let b = buckets[..n - 1]
        .iter()
        .position(|(_, c)| *c >= rank)
        .unwrap_or(n - 1);
    if b == n - 1 {
        return Some(if n >= 2 { buckets[n - 2].0 } else { 0.0 });
    }
    let (end, count) = buckets[b];
    if b == 0 && end <= 0.0 {
        return Some(end);
    }
    let (start, before) = if b == 0 { (0.0, 0.0) } else { buckets[b - 1] };
    let in_bucket = count - before;
    if in_bucket <= 0.0 {
        return Some(start);
    }
    Some(start + (end - start) * ((rank - before) / in_bucket))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APISERVER: &str = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="services",scope="resource",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="services",scope="resource",subresource="",verb="POST",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="discovery.k8s.io",resource="endpointslices",scope="resource",subresource="",verb="APPLY",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="khulnasoft-lab.github.io",resource="clusterendpoints",scope="resource",subresource="status",verb="APPLY",version="v1beta1"} 5
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"} 7
apiserver_request_total_other{verb="POST",resource="configmaps"} 100
"#;

    #[test]
    fn parses_samples_with_labels_timestamps_and_escapes() {
        let s = parse(
            "a 1\nb{x=\"1\",y=\"q\\\"uo,te\"} 2.5 1700000000\n# c 3\nd{le=\"+Inf\"} +Inf\nbroken{x=\"1\" 4\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "a");
        assert_eq!(s[0].value, 1.0);
        assert_eq!(s[1].label("y"), "q\"uo,te");
        assert_eq!(s[1].value, 2.5);
        assert_eq!(s[2].label("le"), "+Inf");
        assert!(s[2].value.is_infinite());
    }

    #[test]
    fn request_counts_by_resource_subresource_and_verb() {
        let counts = request_counts(&parse(APISERVER));
        let key = |r: &str, sr: &str, v: &str| (r.to_string(), sr.to_string(), v.to_string());
        assert_eq!(counts[&key("services", "", "POST")], 4.0);
        assert_eq!(counts[&key("endpointslices", "", "APPLY")], 2.0);
        assert_eq!(counts[&key("clusterendpoints", "status", "APPLY")], 5.0);
        assert_eq!(counts[&key("configmaps", "", "GET")], 7.0);
        assert_eq!(counts.len(), 4);
        let mut later = counts.clone();
        *later.entry(key("services", "", "POST")).or_default() += 2.0;
        later.insert(key("endpoints", "", "APPLY"), 1.0);
        let d = diff_counts(&counts, &later);
        assert_eq!(d.len(), 2);
        assert_eq!(d[&key("services", "", "POST")], 2.0);
        assert_eq!(d[&key("endpoints", "", "APPLY")], 1.0);
    }

    #[test]
    fn counters_by_label_accept_the_total_suffix() {
        let s = parse(
            "kube_endpoints_probes_total{probe=\"tcp\",result=\"success\"} 10\n\
             kube_endpoints_probes_total{probe=\"tcp\",result=\"failure\"} 2\n\
             kube_endpoints_probes_total{probe=\"http\",result=\"success\"} 5\n\
             kube_endpoints_probes_created 123\n",
        );
        let by = counter_by(&s, "kube_endpoints_probes", &["probe"]);
        assert_eq!(by[&vec!["tcp".to_string()]], 12.0);
        assert_eq!(by[&vec!["http".to_string()]], 5.0);
        let by_result = counter_by(&s, "kube_endpoints_probes", &["result"]);
        assert_eq!(by_result[&vec!["success".to_string()]], 15.0);
    }

    fn buckets() -> Vec<(f64, f64)> {
        // 10 observations <= 0.1, 10 more <= 0.2, 80 more <= 0.4, none above.
        vec![
            (0.1, 10.0),
            (0.2, 20.0),
            (0.4, 100.0),
            (f64::INFINITY, 100.0),
        ]
    }

    #[test]
    fn quantiles_interpolate_within_buckets_like_prometheus() {
        let b = buckets();
        let close = |a: Option<f64>, e: f64| {
            let a = a.unwrap_or(f64::NAN);
            assert!((a - e).abs() < 1e-9, "{a} != {e}");
        };
        // rank 5 of 10 in the first bucket [0, 0.1].
        close(histogram_quantile(0.05, &b), 0.05);
        // rank 50: 30 of 80 into (0.2, 0.4].
        close(histogram_quantile(0.5, &b), 0.2 + 0.2 * 30.0 / 80.0);
        close(histogram_quantile(0.99, &b), 0.2 + 0.2 * 79.0 / 80.0);
        close(histogram_quantile(1.0, &b), 0.4);
    }

    #[test]
    fn quantile_in_the_inf_bucket_is_the_highest_finite_bound() {
        let b = vec![(0.5, 1.0), (1.0, 2.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.99, &b), Some(1.0));
    }

    #[test]
    fn quantile_needs_observations_and_an_inf_bucket() {
        assert_eq!(histogram_quantile(0.5, &[]), None);
        assert_eq!(
            histogram_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        assert_eq!(histogram_quantile(0.5, &[(1.0, 3.0)]), None);
        assert_eq!(histogram_quantile(1.5, &buckets()), None);
    }

    #[test]
    fn buckets_sum_label_sets_and_diff_by_le() {
        let text = "h_bucket{k=\"a\",le=\"0.1\"} 1\nh_bucket{k=\"b\",le=\"0.1\"} 2\n\
                    h_bucket{k=\"a\",le=\"+Inf\"} 4\nh_bucket{k=\"b\",le=\"+Inf\"} 4\nh_count 8\n";
        let after = histogram_buckets(&parse(text), "h");
        assert_eq!(after, vec![(0.1, 3.0), (f64::INFINITY, 8.0)]);
        let before = vec![(0.1, 1.0), (f64::INFINITY, 2.0)];
        assert_eq!(
            diff_buckets(&before, &after),
            vec![(0.1, 2.0), (f64::INFINITY, 6.0)]
        );
    }
}
