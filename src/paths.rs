//! Where mailtoken's files live: XDG on Linux and the BSDs, and the same layout on
//! macOS (what command-line users expect there).

use std::path::{Path, PathBuf};

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        // The XDG spec says relative values are invalid and must be ignored.
        Some(v) if PathBuf::from(&v).is_absolute() => PathBuf::from(v),
        _ => home().join(fallback),
    }
}

/// `$MAILTOKEN_CONFIG`, else `$XDG_CONFIG_HOME/mailtoken/config.toml`.
pub fn config_file() -> PathBuf {
    match std::env::var_os("MAILTOKEN_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => xdg("XDG_CONFIG_HOME", ".config")
            .join("mailtoken")
            .join("config.toml"),
    }
}

/// `$XDG_STATE_HOME/mailtoken`: the file store and the per-account lock files.
pub fn state_dir() -> PathBuf {
    xdg("XDG_STATE_HOME", ".local/state").join("mailtoken")
}

/// `$XDG_RUNTIME_DIR/mailtoken` when set, else a private directory in the state dir.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(v) if PathBuf::from(&v).is_absolute() => PathBuf::from(v).join("mailtoken"),
        _ => state_dir().join("run"),
    }
}

/// `~/x` means `$HOME/x`, as in every other mail program's config.
pub fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) if !home.is_empty() => PathBuf::from(home).join(rest),
        _ => p.to_owned(),
    }
}

/// The `mailtoken` a mail program should run: the front executable beside this one
/// (the whole program runs as `mailtoken-core` behind it), resolved to an absolute
/// path, since mail programs started by cron or systemd may not have it in PATH.
pub fn installed_exe() -> Option<PathBuf> {
    let me = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .ok()?;
    let front = me.with_file_name("mailtoken");
    Some(if front.is_file() { front } else { me })
}

/// `mailtoken-core`, the whole program, beside the running front executable.
pub fn core_exe() -> crate::error::Result<PathBuf> {
    beside("mailtoken-core")
}

/// Another of mailtoken's executables (`mailtoken-core`, `mailtoken-add`), in the
/// directory of the running one.
pub fn beside(name: &str) -> crate::error::Result<PathBuf> {
    let me = std::env::current_exe().map_err(|e| {
        crate::error::Error::software(format!("cannot find this program's own path: {e}"))
    })?;
    Ok(me.with_file_name(name))
}
