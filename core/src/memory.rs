//! How much memory this process may still allocate, and the check a component makes before its
//! largest allocation: an estimate over what is available is an error naming what it is for,
//! instead of an allocation that aborts the process.
//!
//! Available is the least of what each limit leaves: the kernel's `MemAvailable`
//! (`/proc/meminfo`), the cgroup's `memory.max` less its `memory.current` (cgroup v2, as
//! containers set it), and the address-space limit (`ulimit -v`) less this process's size.
//! Written here: no crate reads these three together; each is a line of a text file or one
//! `getrlimit` call (through `rlimit`).

use crate::{Error, Result};

/// The bytes this process may still allocate, or `None` where no limit can be read (not Linux).
pub fn available() -> Option<u64> {
    [
        meminfo_available(),
        cgroup_available(),
        address_space_available(),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// Refuse an allocation of about `bytes` for `what` (the parameters that set its size) when it
/// cannot fit in what is available.
pub fn check(what: &str, bytes: u64) -> Result<()> {
    match available() {
        Some(free) if bytes > free => Err(Error::Data(format!(
            "{what} needs about {} of memory, and only {} is available: lower it",
            human(bytes),
            human(free)
        ))),
        _ => Ok(()),
    }
}

/// `1.5 GB`, `320 MB`.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else {
        format!("{:.0} MB", (b / 1e6).max(1.0))
    }
}

/// A `Key:   123 kB` line of a /proc file, in bytes.
fn kb_line(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kb| kb.saturating_mul(1024))
}

fn meminfo_available() -> Option<u64> {
    kb_line(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable",
    )
}

fn cgroup_available() -> Option<u64> {
    // cgroup v2: `0::/path` in /proc/self/cgroup
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let max = std::fs::read_to_string(dir.join("memory.max")).ok()?;
    let max: u64 = max.trim().parse().ok()?; // `max`: no limit
    let current: u64 = std::fs::read_to_string(dir.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(max.saturating_sub(current))
}

fn address_space_available() -> Option<u64> {
    let (soft, _) = rlimit::Resource::AS.get().ok()?;
    if soft == rlimit::INFINITY {
        return None;
    }
    let size = kb_line(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmSize",
    )?;
    Some(soft.saturating_sub(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines_read_as_bytes() {
        let t = "MemTotal:       24000000 kB\nMemAvailable:    1000 kB\n";
        assert_eq!(kb_line(t, "MemAvailable"), Some(1_024_000));
        assert_eq!(kb_line(t, "MemFree"), None);
    }

    #[test]
    fn an_allocation_beyond_the_machine_is_refused_naming_it() {
        let e = check("`dim` x `questions`", u64::MAX)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`dim` x `questions` needs about") && e.contains("available"),
            "{e}"
        );
        assert!(check("a byte", 1).is_ok());
    }
}
