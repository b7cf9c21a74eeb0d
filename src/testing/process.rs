//! Whether processes still run, read from `/proc`.
//!
//! `kill(pid, 0)` is not the test: SIGKILLed grandchildren are reparented to
//! init as zombies and stay in their group until init reaps them, on init's
//! schedule (over a second on some machines). A zombie has run its last
//! instruction, and so has a process with SIGKILL queued, so neither counts
//! as alive here.

use std::path::Path;

/// The processes of group `pgid` that are still alive, as their `stat` lines.
pub fn live_members(pgid: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut live = Vec::new();
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((state, fields)) = stat_fields(&stat) else {
            continue;
        };
        // After the state: ppid, then pgrp.
        let in_group = fields.get(1).and_then(|g| g.parse::<u32>().ok()) == Some(pgid);
        if in_group && running(state) && !kill_pending(&entry.path()) {
            live.push(stat);
        }
    }
    live
}

/// True while a process of group `pgid` is alive.
pub fn group_alive(pgid: u32) -> bool {
    !live_members(pgid).is_empty()
}

/// True while `pid` runs (zombies and processes about to die do not count).
pub fn pid_alive(pid: u32) -> bool {
    let dir = Path::new("/proc").join(pid.to_string());
    let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
        return false;
    };
    stat_fields(&stat).is_some_and(|(state, _)| running(state)) && !kill_pending(&dir)
}

/// Waits, bounded, until group `pgid` has no live member; the members
/// still alive when the bound passes.
pub async fn group_gone(pgid: u32) -> Vec<String> {
    let gone = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while group_alive(pgid) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    if gone.await.is_ok() {
        Vec::new()
    } else {
        live_members(pgid)
    }
}

/// The state and the fields after it of a `stat` line: `pid (comm) state
/// ppid pgrp …`, where comm may hold spaces or parens.
fn stat_fields(stat: &str) -> Option<(&str, Vec<&str>)> {
    let close = stat.rfind(')')?;
    let mut fields = stat[close + 1..].split_whitespace();
    let state = fields.next()?;
    Some((state, fields.collect()))
}

/// Every state but zombie and dead.
fn running(state: &str) -> bool {
    !matches!(state, "Z" | "X")
}

/// True when SIGKILL is queued for the process: `killpg` returns before the
/// target is scheduled to die, so it may still show state `R` for a moment,
/// but it will never run another instruction of its own.
fn kill_pending(proc_dir: &Path) -> bool {
    // A process that vanished between two reads is gone, not alive.
    let Ok(status) = std::fs::read_to_string(proc_dir.join("status")) else {
        return true;
    };
    status.lines().any(|line| {
        let Some((key, mask)) = line.split_once(':') else {
            return false;
        };
        matches!(key, "ShdPnd" | "SigPnd")
            && u64::from_str_radix(mask.trim(), 16).is_ok_and(|m| m & (1 << 8) != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_in_its_group() {
        let me = std::process::id();
        assert!(pid_alive(me));
        let stat = std::fs::read_to_string("/proc/self/stat").expect("own stat");
        let (_, fields) = stat_fields(&stat).expect("stat fields");
        let pgid: u32 = fields[1].parse().expect("pgrp");
        assert!(group_alive(pgid));
    }

    #[test]
    fn a_reaped_child_is_gone() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!pid_alive(pid));
    }
}
