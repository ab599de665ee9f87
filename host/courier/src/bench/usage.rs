//! What a benchmark run cost the machine: CPU time of this process (and of one thread, to take
//! the load generator out of the host's figure), its peak resident memory, and the CPU time
//! of a Postgres server Courier started (its postmaster and every child process), read from
//! `getrusage` and `/proc`.

use std::time::Duration;

/// CPU time and peak RSS of this process, from `getrusage(RUSAGE_SELF)` and
/// `/proc/self/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    /// User plus system CPU time.
    pub cpu: Duration,
    /// The largest resident set size since the process started or since
    /// [`reset_peak_rss`], in bytes.
    pub peak_rss_bytes: u64,
}

impl ProcessUsage {
    /// This process now.
    pub fn now() -> ProcessUsage {
        let usage = rusage(libc::RUSAGE_SELF);
        ProcessUsage {
            cpu: cpu_of(&usage),
            // `VmHWM` is the peak that `reset_peak_rss` resets; `ru_maxrss` (the same peak,
            // never reset; Linux reports kibibytes) where `/proc` is not readable.
            peak_rss_bytes: status_kib("VmHWM:")
                .unwrap_or_else(|| u64::try_from(usage.ru_maxrss).unwrap_or(0))
                * 1024,
        }
    }
}

/// Starts the peak RSS over from the current RSS (Linux's `/proc/self/clear_refs`), so that
/// one run of several in a process reports its own peak. False where that is not possible:
/// then the peak is the process's.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `KEY: N kB` line of `/proc/self/status`, in kibibytes.
fn status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// CPU time of the calling thread, from `getrusage(RUSAGE_THREAD)`.
pub fn thread_cpu() -> Duration {
    cpu_of(&rusage(libc::RUSAGE_THREAD))
}

#[expect(
    unsafe_code,
    reason = "getrusage only writes the struct it is given; there is no safe wrapper in std"
)]
fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: an all-zero `rusage` is a valid value (plain integers), and getrusage writes
    // into the pointed-to struct only; `who` is one of the constants it accepts.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return std::mem::zeroed();
        }
        usage
    }
}

fn cpu_of(usage: &libc::rusage) -> Duration {
    let timeval = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// Clock ticks per second, the unit of the CPU times in `/proc/PID/stat`.
#[expect(
    unsafe_code,
    reason = "sysconf reads a constant of the system; there is no safe wrapper in std"
)]
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; _SC_CLK_TCK is a valid name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// The CPU time used by the Postgres server whose postmaster is `postmaster`: the
/// postmaster's own time and that of the children it already reaped (`cutime`, `cstime`),
/// plus every live child's. A child that exits between two readings moves from the second
/// sum into the first, so differences between readings stay right. `None` when the
/// postmaster is gone or `/proc` is unreadable.
pub fn postgres_cpu(postmaster: u32) -> Option<Duration> {
    let own = read_stat(postmaster)?;
    let mut ticks = own.utime + own.stime + own.cutime + own.cstime;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = read_stat(pid)
            && stat.ppid == postmaster
        {
            ticks += stat.utime + stat.stime + stat.cutime + stat.cstime;
        }
    }
    let per_second = clock_ticks_per_second();
    Some(
        Duration::from_secs(ticks / per_second)
            + Duration::from_nanos(ticks % per_second * 1_000_000_000 / per_second),
    )
}

/// The fields of `/proc/PID/stat` used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ppid: u32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses a `/proc/PID/stat` line. The command name (in parentheses) may contain spaces and
/// parentheses, so the fields are counted from the last `)`.
fn parse_stat(line: &str) -> Option<Stat> {
    let after = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is the state; then ppid, pgrp, session, tty_nr, tpgid, flags, minflt,
    // cminflt, majflt, cmajflt, utime, stime, cutime, cstime.
    let number = |index: usize| fields.get(index)?.parse::<i64>().ok();
    let ticks = |index: usize| number(index).map(|value| u64::try_from(value).unwrap_or(0));
    Some(Stat {
        ppid: u32::try_from(number(1)?).ok()?,
        utime: ticks(11)?,
        stime: ticks(12)?,
        cutime: ticks(13)?,
        cstime: ticks(14)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_command_has_spaces_and_parentheses() {
        let line = "4242 (postgres: x (y) ) S 4200 4200 4200 0 -1 4194560 1 2 3 4 150 60 7 8 20 0 1 0 100 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 4200,
                utime: 150,
                stime: 60,
                cutime: 7,
                cstime: 8,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_uses_cpu_and_memory() {
        // Burn a little CPU: more than one clock tick of /proc's accounting.
        let mut spin = 0u64;
        while thread_cpu() < Duration::from_millis(50) {
            for i in 0..100_000u64 {
                spin = std::hint::black_box(spin.wrapping_add(i * i));
            }
        }
        let usage = ProcessUsage::now();
        assert!(usage.cpu > Duration::ZERO);
        assert!(usage.peak_rss_bytes > 1 << 20);
        assert!(thread_cpu() > Duration::ZERO);
        // This process is alive and has no children: its own time.
        let own = postgres_cpu(std::process::id()).expect("our own /proc entry");
        assert!(own > Duration::ZERO);
    }

    #[test]
    fn the_peak_rss_starts_over_when_reset() {
        let touched = std::hint::black_box(vec![1u8; 64 << 20]);
        let peak = ProcessUsage::now().peak_rss_bytes;
        drop(touched);
        assert!(reset_peak_rss(), "/proc/self/clear_refs is not writable");
        let after = ProcessUsage::now().peak_rss_bytes;
        assert!(
            after + (32 << 20) < peak,
            "the peak stayed at {after} bytes after a reset (was {peak})"
        );
    }
}
