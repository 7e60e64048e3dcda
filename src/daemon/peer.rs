//! Who may ask: the daemon's own user, and with `serve --allow-group GROUP` the members
//! of that group (a system service's clients). The peer's identity comes from the
//! kernel (SO_PEERCRED, and SO_PEERGROUPS for its supplementary groups, Linux 4.13+),
//! not from anything it says.

use crate::error::{Error, Result};
use tokio::net::UnixStream;

/// The gid of group `name` (or a number).
pub fn group_id(name: &str) -> Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(name)
        .map_err(|_| Error::usage(format!("--allow-group `{name}` is not a group name")))?;
    // SAFETY: getgrnam takes a NUL-terminated name; the result is read at once, before
    // any other call could reuse its static buffer (the daemon is single-threaded here).
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        return Err(
            Error::usage(format!("--allow-group: there is no group `{name}`")).with_remedy(
                format!("Create it (groupadd --system {name}) and add the services' users to it."),
            ),
        );
    }
    Ok(unsafe { (*g).gr_gid })
}

/// Whether the peer of `stream` may be served.
pub fn allowed(stream: &UnixStream, own_uid: u32, group: Option<u32>) -> bool {
    let Ok(cred) = stream.peer_cred() else {
        return false;
    };
    if cred.uid() == own_uid {
        return true;
    }
    let Some(g) = group else { return false };
    cred.gid() == g || supplementary_groups(stream).is_some_and(|gs| gs.contains(&g))
}

#[cfg(target_os = "linux")]
fn supplementary_groups(stream: &UnixStream) -> Option<Vec<u32>> {
    use std::os::fd::AsRawFd;
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
    // SAFETY: the buffer and its length in bytes are passed together; the kernel writes
    // at most `len` bytes and sets `len` to what it wrote.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return None;
    }
    groups.truncate(len as usize / std::mem::size_of::<libc::gid_t>());
    Some(groups)
}

#[cfg(not(target_os = "linux"))]
fn supplementary_groups(_: &UnixStream) -> Option<Vec<u32>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_found_by_name_or_number() {
        assert_eq!(group_id("root").unwrap(), 0);
        assert_eq!(group_id("1234").unwrap(), 1234);
        let e = group_id("no-such-group-here").unwrap_err();
        assert!(e.message.contains("there is no group"), "{e}");
    }
}
