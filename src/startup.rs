//! Process start-up for the two executables, which are `no_main` (see src/main.rs):
//! the two jobs of std's own start-up they still need, the arguments from the
//! `argc`/`argv` the C runtime passes, and the exit with a message and a sysexits code.

use crate::error::Error;
use std::ffi::{CStr, OsString, c_char, c_int};
use std::os::unix::ffi::OsStringExt;

/// What std's start-up does that the executables need: standard file descriptors that
/// are closed get `/dev/null` (otherwise the next file or socket opened takes their
/// number, and a credential printed on "stdout" could go into the daemon's socket), and
/// SIGPIPE is ignored (so that a closed pipe is an error we report, not a death).
pub fn prepare() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: polling three valid pollfd structs without waiting; opening a C string;
    // setting a signal's disposition before any thread exists.
    unsafe {
        if libc::poll(fds.as_mut_ptr(), 3, 0) >= 0 {
            for p in fds {
                if p.revents & libc::POLLNVAL != 0
                    && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != p.fd
                {
                    libc::abort();
                }
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The arguments, from what the C runtime passed to `main`. `std::env::args` cannot be
/// used by a `no_main` program: std fills it before `main` only on glibc and macOS
/// (from `.init_array`), so on musl or the BSDs it would be empty.
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings, as `main` receives them.
pub unsafe fn args(argc: c_int, argv: *const *const c_char) -> Vec<OsString> {
    (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: the caller's promise: argv[0..argc] are valid C strings.
            let s = unsafe { CStr::from_ptr(*argv.add(i)) };
            OsString::from_vec(s.to_bytes().to_vec())
        })
        .collect()
}

/// Ends the process: 0, or the error's message and remedy on stderr and its code.
/// Through `std::process::exit`, which flushes stdout.
pub fn exit(result: Result<(), Error>) -> ! {
    std::process::exit(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mailtoken: {}", e.message);
            if let Some(r) = &e.remedy {
                eprintln!("{r}");
            }
            e.code as i32
        }
    })
}
