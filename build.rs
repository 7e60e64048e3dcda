//! Start-up cost of the `mailtoken` binary on Linux with glibc.
//!
//! `mailtoken token` runs on every connection a mail program makes; through the daemon
//! its work is one socket round trip, so the dynamic loader is most of its cost
//! (docs/benchmarks.md). Two link choices cut it:
//!
//! - The binary is position-dependent (`-no-pie`). In a PIE the loader applies some ten
//!   thousand relative relocations to this 7 MB binary and dirties its
//!   read-only-after-relocation pages before `main`; a non-PIE binary has them resolved
//!   at link time. What is given up is the randomised load address of the executable
//!   itself (shared libraries, stack, heap and mmap stay randomised), as Go does by
//!   default on Linux. Set `MAILTOKEN_PIE=1` when building to keep a PIE.
//! - The unwinder comes from GCC's static `libgcc_eh.a` instead of `libgcc_s.so.1`, so
//!   the loader maps and relocates one shared library fewer (libc and ld.so remain).
//!   This is the unwinder Rust itself links for `+crt-static` builds. It is skipped
//!   when the C compiler does not know the archive.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MAILTOKEN_PIE");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    if matches!(var("MAILTOKEN_PIE").as_str(), "" | "0") {
        println!("cargo:rustc-link-arg-bin=mailtoken=-no-pie");
    }
    if let Some(dir) = libgcc_eh_dir() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        // Whole archive: the references to `_Unwind_*` come from std, which is linked
        // after this crate; without it the archive's objects would not be pulled in.
        println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=gcc_eh");
    }
}

/// The directory of the C compiler's `libgcc_eh.a`, if it has one.
fn libgcc_eh_dir() -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let out = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // An unknown file is echoed back without a directory.
    if !out.status.success() || !path.is_absolute() || !path.is_file() {
        return None;
    }
    path.parent().map(PathBuf::from)
}
