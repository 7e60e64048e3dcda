//! Telling the user, once, that an account needs a new login: the `notify_cmd` hook of
//! the config (with the account and the reason in its environment, never a secret) and
//! a desktop notification where a session bus has a notification service.

use crate::config::{Account, Config};

pub fn needs_login(config: &Config, account: &Account, reason: &str) {
    eprintln!("mailtoken: {}: {reason}", account.name);
    if let Some(cmd) = &config.notify_cmd {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("MAILTOKEN_ACCOUNT", &account.name)
            .env("MAILTOKEN_USER", &account.user)
            .env("MAILTOKEN_REASON", reason)
            .stdin(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!("mailtoken: notify_cmd `{cmd}` failed: {s}"),
            Err(e) => eprintln!("mailtoken: cannot run notify_cmd `{cmd}`: {e}"),
        }
    }
    desktop(account, reason);
}

/// org.freedesktop.Notifications.Notify through `notify-send` when it is installed:
/// best effort, and silent without a desktop session.
fn desktop(account: &Account, reason: &str) {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return;
    }
    let _ = std::process::Command::new("notify-send")
        .args(["--app-name=mailtoken", "--urgency=critical"])
        .arg(format!("mailtoken: log in to {} again", account.name))
        .arg(format!("{reason}\nRun: mailtoken login {}", account.name))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
