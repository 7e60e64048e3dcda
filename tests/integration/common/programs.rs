//! Mail programs configured by what `mailtoken setup` prints: the block written where the
//! program reads it, a test message, and a message sent with msmtp and looked for at the
//! test Dovecot's sink. Shared by mail_programs.rs, clients.rs and add.rs.

use super::mailserver::mailserver;
use super::mailtoken::{Env, assert_exit, run_with_stdin, stderr, stdout};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// Writes `text` to `file` (its directory made if needed), mode 0600 as mail programs
/// want their files with credentials commands in them.
pub fn write_private(file: &Path, text: &str) {
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, text).unwrap();
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// What `mailtoken setup ARGS...` prints, written where the client will read it.
pub fn setup(env: &Env, args: &[&str], file: &Path) -> String {
    let o = env.run(&[&["setup"], args].concat());
    assert_exit(&o, 0);
    let text = stdout(&o);
    write_private(file, &text);
    text
}

pub fn message(from: &str, subject: &str) -> String {
    format!(
        "From: {from}\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\r\nSent by the mailtoken test suite.\r\n"
    )
}

/// msmtp with the config `rc`, as `account`, sends `subject`; it must reach the sink.
pub fn msmtp_send(env: &Env, rc: &Path, account: &str, from: &str, subject: &str) {
    let mut c = env.program("msmtp");
    c.arg(format!("--file={}", rc.display()))
        .args(["-a", account, "rcpt@example.test"]);
    let o = run_with_stdin(&mut c, &message(from, subject));
    assert!(
        o.status.success(),
        "msmtp failed ({:?}): {}{}\nrc:\n{}",
        o.status,
        stdout(&o),
        stderr(&o),
        std::fs::read_to_string(rc).unwrap_or_default()
    );
    assert!(
        mailserver()
            .wait_for_message(subject, Duration::from_secs(10))
            .is_some(),
        "{subject} did not arrive"
    );
}
