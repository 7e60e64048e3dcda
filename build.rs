//! Records the commit the binary is built from, for `mailtoken --version`: git's
//! description of HEAD (with `-dirty` for uncommitted changes), else $MAILTOKEN_COMMIT
//! (a packager's), else "commit unknown" (a crate built from crates.io has no .git).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MAILTOKEN_COMMIT");
    let git = Command::new("git")
        .args([
            "describe",
            "--always",
            "--dirty",
            "--abbrev=12",
            "--exclude=*",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if git.is_some() {
        // A new commit or a change in the work tree changes the description.
        for p in [".git/HEAD", ".git/index"] {
            if std::path::Path::new(p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        if let Ok(head) = std::fs::read_to_string(".git/HEAD")
            && let Some(r) = head.strip_prefix("ref: ")
        {
            let r = format!(".git/{}", r.trim());
            if std::path::Path::new(&r).exists() {
                println!("cargo:rerun-if-changed={r}");
            }
        }
    }
    let commit = git
        .map(|c| format!("commit {c}"))
        .or_else(|| {
            std::env::var("MAILTOKEN_COMMIT")
                .ok()
                .map(|c| format!("commit {c}"))
        })
        .unwrap_or_else(|| "commit unknown".to_owned());
    println!("cargo:rustc-env=MAILTOKEN_COMMIT={commit}");
}
