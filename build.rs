//! Links the `mailtoken` binary as a position-dependent executable on Linux with glibc.
//!
//! `mailtoken token` runs on every connection a mail program makes; through the daemon
//! its work is one socket round trip, so the dynamic loader is most of its cost. In a
//! PIE the loader applies some ten thousand relative relocations to this 7 MB binary
//! and dirties its read-only-after-relocation pages before `main`; a non-PIE binary has
//! them resolved at link time. That is the difference between 1.7x and 1.3x a minimal C
//! client (docs/benchmarks.md). What is given up is the randomised load address of the
//! executable itself (shared libraries, stack, heap and mmap stay randomised), as Go
//! does by default on Linux. Set `MAILTOKEN_PIE=1` when building to keep a PIE.

fn main() {
    println!("cargo:rerun-if-env-changed=MAILTOKEN_PIE");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let pie = !matches!(var("MAILTOKEN_PIE").as_str(), "" | "0");
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" && !pie {
        println!("cargo:rustc-link-arg-bin=mailtoken=-no-pie");
    }
}
