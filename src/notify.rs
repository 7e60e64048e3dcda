//! Telling the user what needs them: that an account needs a new login (the daemon,
//! once), or that a device login waits for its code to be entered (`login --device`, on
//! a host where nobody watches the terminal). Through the `notify_cmd` hook of the
//! config, with what it is about in its environment (never a token or a secret), and a
//! desktop notification where a session bus has a notification service.

use crate::config::{Account, Config};

pub fn needs_login(config: &Config, account: &Account, reason: &str) {
    eprintln!("mailtoken: {}: {reason}", account.name);
    hook(config, account, reason, &[]);
    desktop(
        &format!("mailtoken: log in to {} again", account.name),
        &format!("{reason}\nRun: mailtoken login {}", account.name),
    );
}

/// A device login waits for the user to enter `user_code` at `uri`. The code is short
/// and lives minutes; it is no secret from the person it is meant for.
pub fn device_login_waiting(
    config: &Config,
    account: &Account,
    uri: &str,
    user_code: &str,
    complete: Option<&str>,
) {
    let reason = format!("a device login waits: open {uri} and enter the code {user_code}");
    let mut vars = vec![
        ("MAILTOKEN_VERIFICATION_URI", uri),
        ("MAILTOKEN_USER_CODE", user_code),
    ];
    if let Some(c) = complete {
        vars.push(("MAILTOKEN_VERIFICATION_URI_COMPLETE", c));
    }
    hook(config, account, &reason, &vars);
    desktop(&format!("mailtoken: log in to {}", account.name), &reason);
}

/// Runs `notify_cmd`, when the config has one, with the account, the reason and `vars`
/// in its environment.
fn hook(config: &Config, account: &Account, reason: &str, vars: &[(&str, &str)]) {
    let Some(cmd) = &config.notify_cmd else {
        return;
    };
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("MAILTOKEN_ACCOUNT", &account.name)
        .env("MAILTOKEN_USER", &account.user)
        .env("MAILTOKEN_REASON", reason)
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("mailtoken: notify_cmd `{cmd}` failed: {s}"),
        Err(e) => eprintln!("mailtoken: cannot run notify_cmd `{cmd}`: {e}"),
    }
}

/// org.freedesktop.Notifications.Notify through `notify-send` when it is installed:
/// best effort, and silent without a desktop session.
fn desktop(summary: &str, body: &str) {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return;
    }
    let _ = std::process::Command::new("notify-send")
        .args(["--app-name=mailtoken", "--urgency=critical"])
        .arg(summary)
        .arg(body)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
