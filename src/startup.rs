//! Process start-up for the two executables, which are `no_main` (see src/main.rs):
//! the two jobs of std's own start-up they still need, the arguments from the
//! `argc`/`argv` the C runtime passes, and the exit with a message and a sysexits code.

use crate::error::Error;
use std::ffi::{CStr, OsString, c_char, c_int};
use std::os::unix::ffi::OsStringExt;

/// What std's start-up does that the executables need: standard file descriptors that
/// are closed get `/dev/null` (otherwise the next file or socket opened takes their
/// number, and a credential printed on "stdout" could go into the daemon's socket), and
/// SIGPIPE is ignored (so that a closed pipe is an error we report, not a death). And
/// what it does not: the process is made non-dumpable ([`no_core_dumps`]).
pub fn prepare() {
    no_core_dumps();
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

/// Every mailtoken process holds a secret at some point: the daemon and mailtoken-core
/// refresh tokens, the front an access token on its way to stdout, mailtoken-add a
/// login's. None may end up in a core file (a crash under `ulimit -c unlimited` writes
/// the whole memory wherever `core_pattern` says), nor be read by a debugger attached
/// by another process of the same user. On Linux the process is made non-dumpable
/// (prctl(2) PR_SET_DUMPABLE 0; proc(5)): no core dump (unless the administrator set
/// `fs.suid_dumpable = 2`, which then dumps it readable by root only), no ptrace attach
/// and no `/proc/PID/{environ,mem,maps}` for anyone but root, as for a setuid program.
/// `execve` makes a process dumpable again, so the programs mailtoken runs (store
/// commands, the browser) are unaffected. Elsewhere the core size limit goes to 0.
fn no_core_dumps() {
    // SAFETY: plain system calls with constant arguments; they touch no memory of ours.
    // Neither can fail with these arguments, and nothing could be done if one did.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_CORE, &mut limit) == 0 {
            limit.rlim_cur = 0;
            libc::setrlimit(libc::RLIMIT_CORE, &limit);
        }
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

/// Runs mailtoken's executable `name` (beside this one) in this process with the same
/// arguments and argv\[0\], as git runs its `git-*` programs; returns only to exit with
/// the reason it could not.
pub fn exec_beside(name: &str, args: &[OsString]) -> ! {
    use std::os::unix::process::CommandExt;
    let exe = match crate::paths::beside(name) {
        Ok(p) => p,
        Err(e) => exit(Err(e)),
    };
    let mut cmd = std::process::Command::new(&exe);
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    let e = cmd.args(args.iter().skip(1)).exec();
    exit(Err(Error::software(format!("cannot run {}: {e}", exe.display())).with_remedy(
        format!("{name} is installed beside mailtoken (cargo install puts them in the same directory); reinstall mailtoken."),
    )))
}

/// The command line parsed by clap, or its message and exit: `--help` and `--version`
/// are not errors; anything else is a usage error (64), not clap's default 2, which mail
/// programs would not recognise.
pub fn parse(args: Vec<OsString>) -> crate::cli::Cli {
    use clap::Parser;
    match crate::cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                crate::error::ExitCode::Usage as i32
            } else {
                0
            });
        }
    }
}
