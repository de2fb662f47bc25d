//! Where a benchmark ran: CPU, flags that matter for int8 kernels, cores, memory, OS, the date.

use std::process::Command;

use serde::{Deserialize, Serialize};

/// CPU flags that decide which int8 kernels a library can use (x86 and Arm names).
pub const FLAGS_OF_INTEREST: [&str; 15] = [
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
];

/// The machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `/proc/cpuinfo` model name (or the Arm implementer/part when there is none).
    pub cpu_model: String,
    /// `std::env::consts::ARCH`.
    pub arch: String,
    /// Logical CPUs this process may use.
    pub cores: usize,
    /// The [`FLAGS_OF_INTEREST`] the CPU has.
    pub cpu_flags: Vec<String>,
    /// Every flag the CPU reports.
    pub all_cpu_flags: Vec<String>,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// `PRETTY_NAME` of /etc/os-release.
    pub os: String,
    /// Load average (1 min) when the run started: the machine may be shared.
    pub load_average_at_start: Option<f64>,
}

impl Machine {
    /// Reads /proc and /etc (Linux); fields it cannot read say "unknown".
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |key: &str| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        let cpu_model = field("model name")
            .or_else(|| {
                let imp = field("CPU implementer")?;
                Some(format!(
                    "Arm implementer {imp} part {}",
                    field("CPU part").unwrap_or_default()
                ))
            })
            .unwrap_or_else(|| "unknown".into());
        let all: Vec<String> = field("flags")
            .or_else(|| field("Features"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let cpu_flags = FLAGS_OF_INTEREST
            .iter()
            .filter(|f| all.iter().any(|a| a == *f))
            .map(|f| f.to_string())
            .collect();
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let kb: f64 = m
                    .lines()
                    .find(|l| l.starts_with("MemTotal:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                Some((kb / (1024.0 * 1024.0) * 10.0).round() / 10.0)
            })
            .unwrap_or(0.0);
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let load_average_at_start = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        Self {
            cpu_model,
            arch: std::env::consts::ARCH.into(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_flags,
            all_cpu_flags: all,
            memory_gib,
            os,
            load_average_at_start,
        }
    }
}

/// First line of `program args` standard output, if it runs.
pub fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    })
}

/// `git rev-parse --short HEAD`, with `-dirty` when tracked files changed.
pub fn git_commit() -> Option<String> {
    let root = crate::workspace_root();
    let root = root.to_str()?;
    let head = command_line("git", &["-C", root, "rev-parse", "--short", "HEAD"])?;
    let dirty = Command::new("git")
        .args(["-C", root, "diff", "--quiet", "HEAD", "--"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(false);
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    iso8601(secs)
}

/// Seconds since 1970 as an ISO 8601 UTC time (Howard Hinnant's civil-from-days).
pub fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::iso8601;

    #[test]
    fn iso8601_matches_known_dates() {
        // `date -u -d @0`, `date -u -d @951782400` (leap day 2000), `date -u -d @1795000000`.
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
