//! The machine and the controller process, from /proc.

use serde::Serialize;

/// CPU time and memory of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ProcSample {
    /// user + system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// Resident set size now (MiB).
    pub rss_mib: f64,
    /// Peak resident set size (VmHWM, MiB).
    pub peak_rss_mib: f64,
}

/// Parse `/proc/<pid>/stat` (utime, stime in clock ticks) and
/// `/proc/<pid>/status` (VmRSS, VmHWM in kB). Pure.
pub fn parse_proc(stat: &str, status: &str, ticks_per_second: f64) -> Option<ProcSample> {
    // The command name may contain spaces and parentheses: fields start
    // after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some(ProcSample {
        cpu_seconds: (utime + stime) / ticks_per_second.max(1.0),
        rss_mib: kb("VmRSS:")? / 1024.0,
        peak_rss_mib: kb("VmHWM:")? / 1024.0,
    })
}

pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    parse_proc(&stat, &status, if ticks > 0 { ticks as f64 } else { 100.0 })
}

/// Open sockets of process `pid` (its descriptors that are sockets).
pub fn sockets(pid: u32) -> Option<usize> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count(),
    )
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu_model: String,
    pub kernel: String,
}

pub fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    Machine {
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        memory_gib,
        cpu_model,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_memory_of_a_process() {
        let stat = "1234 (kube endpoints) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 1000 200 18446744073709551615";
        let status = "Name:\tkube-endpoints\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\n";
        let s = parse_proc(stat, status, 100.0).unwrap_or_default();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.rss_mib, 10.0);
        assert_eq!(s.peak_rss_mib, 20.0);
        assert!(parse_proc("garbage", status, 100.0).is_none());
    }
}
