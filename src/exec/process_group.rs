//! Signalling a script's whole process group.
//!
//! A script runs in its own process group (its pid is the group id), so a
//! timeout or cancel can kill the shell together with everything it started.
//! This is the only `unsafe` call in `exec`: a thin wrapper over `kill(2)`
//! that refuses the group ids with a special meaning.

use std::io;

/// Sends `SIGKILL` to every process in group `pgid`.
///
/// Group ids 0 and 1 are refused: `killpg(0, …)` would kill wfe's own group,
/// and group 1 is never a script's (its leader would be init).
#[allow(unsafe_code)]
pub(crate) fn kill_group(pgid: u32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to signal process group {pgid}"),
            )
        })?;
    // SAFETY: `killpg` takes two integers and touches no memory of ours.
    // `pgid > 1`, so it names one process group, never wfe's own.
    let rc = unsafe { libc::killpg(pgid, libc::SIGKILL) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_special_group_ids() {
        for pgid in [0, 1, u32::MAX] {
            let err = kill_group(pgid).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{pgid}");
        }
    }
}
