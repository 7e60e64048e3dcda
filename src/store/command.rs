//! The command store: the user's own commands keep the records (e.g. `pass insert -m` /
//! `pass show`), run through `sh -c` with `{account}` replaced by the quoted account name.
//!
//! The record travels on the write command's stdin and the read command's stdout, never
//! in argv or the environment, where other users' `ps` could see it.

use super::{TokenStore, json_error};
use crate::error::{Error, ExitCode, Result};
use crate::record::TokenRecord;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub struct CommandStore {
    read: String,
    write: String,
    delete: Option<String>,
    timeout: Duration,
}

/// How long one store command may run unless `[store] timeout` says otherwise. Long
/// enough to type a GPG passphrase into pinentry (`pass show` asks when gpg-agent has
/// forgotten it), short enough that a command stuck for good (a pinentry on a terminal
/// nobody looks at, a network mount that hangs) ends in an error a person reads instead
/// of a mail program waiting forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many lines of a failed command's stderr go into the error message.
const STDERR_LINES: usize = 3;

impl CommandStore {
    pub fn new(read: String, write: String, delete: Option<String>) -> Self {
        CommandStore {
            read,
            write,
            delete,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs `template` for `account`, feeding `input` on stdin. Stdout is captured: the
    /// caller's stdout may be a pipe to a mail program that expects only a token. A
    /// command still running after the timeout is stopped, with everything it started.
    fn run(&self, template: &str, account: &str, input: Option<&[u8]>) -> Result<Output> {
        let script = template.replace("{account}", &shell_quote(account));
        let failed = |e: std::io::Error| {
            Error::io(format!("cannot run the store command `{template}`: {e}"))
        };
        // Not a process group of its own: `pass` may need the terminal for pinentry,
        // and a command outside the foreground group would be stopped by SIGTTIN.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(failed)?;
        // Each pipe on a thread of its own: a command that prints a lot before reading
        // would otherwise block on a full stdout pipe while we block on its full stdin.
        let writer = match (child.stdin.take(), input) {
            // Dropping stdin at the end closes it: the command sees EOF.
            (Some(mut stdin), Some(bytes)) => {
                let bytes = Zeroizing::new(bytes.to_vec());
                Some(std::thread::spawn(move || stdin.write_all(&bytes)))
            }
            _ => None,
        };
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = match wait_bounded(&mut child, self.timeout).map_err(failed)? {
            Some(status) => status,
            None => {
                kill_tree(child.id());
                let _ = child.wait();
                return Err(Error::temp(format!(
                    "the store command `{template}` did not finish within {} and was stopped",
                    humantime::format_duration(self.timeout)
                ))
                .with_remedy(
                    "If it waits for something (a GPG passphrase in pinentry, a network \
                     mount), make that answer, or raise `timeout` in [store].",
                ));
            }
        };
        // The command has exited; what it left in the pipes is all there is. A process
        // it left behind holding a pipe open is not waited for beyond a moment.
        let Some(stdout) = stdout.finish() else {
            // What it printed may be cut short: a record read as "nothing stored" would
            // send its user to log in again for nothing.
            return Err(Error::temp(format!(
                "the store command `{template}` exited but left a process holding its output"
            ))
            .with_remedy("Let the command end everything it starts (for example, run a background agent with its output redirected)."));
        };
        let stderr = stderr.finish().unwrap_or_default();
        let output = Output {
            status,
            stdout,
            stderr,
        };
        if !output.status.success() {
            let mut message = format!("the store command `{template}` failed ({})", output.status);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let lines: Vec<&str> = stderr
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take(STDERR_LINES)
                .collect();
            if !lines.is_empty() {
                message.push_str(": ");
                message.push_str(&lines.join(" / "));
            }
            return Err(Error::io(message));
        }
        match writer.map(|w| w.join()) {
            None | Some(Ok(Ok(()))) => Ok(output),
            // It exited 0 without reading the whole record: nothing trustworthy was stored.
            Some(Ok(Err(e))) => Err(Error::io(format!(
                "the store command `{template}` did not read the record from its standard input: {e}"
            ))),
            Some(Err(_)) => Err(Error::software(
                "the thread feeding a store command panicked",
            )),
        }
    }
}

/// A pipe read to its end on a thread of its own.
struct Drain(Option<std::sync::mpsc::Receiver<Vec<u8>>>);

fn drain(pipe: Option<impl Read + Send + 'static>) -> Drain {
    Drain(pipe.map(|mut pipe| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
        rx
    }))
}

impl Drain {
    /// What was read; `None` when a leftover process still holds the pipe a second
    /// after the command exited (its reader thread ends with that process).
    fn finish(self) -> Option<Vec<u8>> {
        match self.0 {
            None => Some(Vec::new()),
            Some(rx) => rx.recv_timeout(Duration::from_secs(1)).ok(),
        }
    }
}

/// The child's exit status, or `None` when it is still running after `timeout`.
/// Polled: the std API has no wait with a timeout, and a store command runs for
/// milliseconds (the first polls come after 1, 2, 4 and 8 ms, then every 10 ms).
fn wait_bounded(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// SIGKILL to `pid` and every process below it, found through
/// `/proc/PID/task/TID/children` (proc(5)). Each is stopped (SIGSTOP) before its
/// children are read, so none can start another one after that, nor reap one (whose
/// pid then stays its own), and all are found before any is killed, so a child
/// orphaned by its parent's death is not missed. Elsewhere only `pid` itself.
fn kill_tree(pid: u32) {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        stop(p);
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                let children = std::fs::read_to_string(task.path().join("children"));
                all.extend(
                    children
                        .iter()
                        .flat_map(|c| c.split_whitespace())
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    for p in all {
        if let Ok(p) = libc::pid_t::try_from(p) {
            // SAFETY: kill(2) has no memory effects; `p` is our child or its
            // descendant, not yet reaped (we reap our child only after this, and the
            // others' parents are stopped).
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

/// SIGSTOP to `pid`, and a wait (50 ms at most: a process in an uninterruptible sleep
/// stops only when it wakes) until it is stopped or gone.
fn stop(pid: u32) {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: as in `kill_tree`.
    unsafe { libc::kill(p, libc::SIGSTOP) };
    let deadline = std::time::Instant::now() + Duration::from_millis(50);
    while std::time::Instant::now() < deadline {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()));
        if !matches!(state, Some('R' | 'S' | 'D')) {
            return;
        }
        std::thread::yield_now();
    }
}

/// `'it'\''s'`: safe in any position of a `sh` command line.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl TokenStore for CommandStore {
    fn load(&self, account: &str) -> Result<Option<TokenRecord>> {
        let output = self.run(&self.read, account, None).map_err(|e| {
            if e.code == ExitCode::TempFail {
                return e;
            }
            e.with_remedy(format!(
                "If nothing was stored for {account} yet (`pass show` fails for a missing entry), \
                 run `mailtoken login {account}`; otherwise check the `read` command in [store]."
            ))
        })?;
        let stdout = Zeroizing::new(output.stdout);
        if stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let record: TokenRecord = serde_json::from_slice(&stdout).map_err(|e| {
            Error::data(format!(
                "the store command `{}` did not print a mailtoken record for {account}: {}",
                self.read,
                json_error(&e)
            ))
            .with_remedy(format!(
                "Check the command, or run `mailtoken login {account}` to replace the record."
            ))
        })?;
        // `{}` is what `delete` writes when there is no delete command: nothing stored.
        if record.refresh_token.is_none() && record.access_token.is_none() {
            return Ok(None);
        }
        Ok(Some(record))
    }

    fn save(&self, account: &str, record: &TokenRecord) -> Result<()> {
        let json = Zeroizing::new(
            serde_json::to_vec_pretty(record)
                .map_err(|e| Error::software(format!("serializing a record: {e}")))?,
        );
        self.run(&self.write, account, Some(&json))?;
        Ok(())
    }

    fn delete(&self, account: &str) -> Result<bool> {
        // A read failure counts as "something there", so that the delete is still tried.
        let existed = !matches!(self.load(account), Ok(None));
        if existed {
            match &self.delete {
                Some(cmd) => self.run(cmd, account, None)?,
                None => self.run(&self.write, account, Some(b"{}\n"))?,
            };
        }
        Ok(existed)
    }

    fn describe(&self) -> String {
        format!("command (read: `{}`)", self.read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::record;
    use std::os::unix::process::CommandExt;

    /// Keeps records in `DIR/ACCOUNT.json`; a missing file reads as empty output.
    fn store(dir: &std::path::Path, delete: bool) -> CommandStore {
        let d = dir.display();
        CommandStore::new(
            format!("cat {d}/{{account}}.json 2>/dev/null || true"),
            format!("cat > {d}/{{account}}.json"),
            delete.then(|| format!("rm {d}/{{account}}.json")),
        )
    }

    #[test]
    fn round_trip_through_stdin_and_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), true);
        assert_eq!(s.load("alice").unwrap(), None);
        s.save("alice", &record("rt1")).unwrap();
        s.save("bob@example.com", &record("rt2")).unwrap();
        assert_eq!(s.load("alice").unwrap(), Some(record("rt1")));
        assert_eq!(s.load("bob@example.com").unwrap(), Some(record("rt2")));
        assert!(dir.path().join("bob@example.com.json").exists());
    }

    #[test]
    fn delete_runs_the_delete_command() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), true);
        s.save("alice", &record("rt")).unwrap();
        assert!(s.delete("alice").unwrap());
        assert!(!dir.path().join("alice.json").exists());
        assert!(!s.delete("alice").unwrap());
    }

    #[test]
    fn without_a_delete_command_delete_writes_an_empty_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), false);
        s.save("alice", &record("rt")).unwrap();
        assert!(s.delete("alice").unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("alice.json"))
                .unwrap()
                .trim(),
            "{}"
        );
        assert_eq!(s.load("alice").unwrap(), None);
        assert!(!s.delete("alice").unwrap());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_account_is_quoted_and_the_record_is_in_neither_argv_nor_environment() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // The write command keeps a copy of its own command line and environment.
        let s = CommandStore::new(
            format!("cat {d}/{{account}}.json"),
            format!("cat /proc/$$/cmdline > {d}/argv; env > {d}/env; cat > {d}/{{account}}.json"),
            None,
        );
        s.save("it's", &record("secret-rt")).unwrap();
        assert_eq!(s.load("it's").unwrap(), Some(record("secret-rt")));
        assert!(dir.path().join("it's.json").exists());
        for file in ["argv", "env"] {
            let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
            assert!(!text.contains("secret-rt"), "{file}: {text}");
        }
    }

    #[test]
    fn a_failing_read_quotes_the_command_and_its_stderr() {
        let s = CommandStore::new(
            "echo 'Error: mail/{account} is not in the password store.' >&2; exit 1".into(),
            "cat >/dev/null".into(),
            None,
        );
        let err = s.load("alice").unwrap_err();
        assert_eq!(err.code, ExitCode::IoErr);
        assert!(
            err.message.contains("`echo 'Error: mail/{account}"),
            "{}",
            err.message
        );
        assert!(
            err.message
                .contains("mail/alice is not in the password store"),
            "{}",
            err.message
        );
        assert!(err.message.contains("exit status: 1"), "{}", err.message);
        assert!(err.remedy.unwrap().contains("mailtoken login alice"));
    }

    #[test]
    fn a_failing_write_is_an_error() {
        let s = CommandStore::new(
            "true".into(),
            "cat >/dev/null; echo disk full >&2; exit 3".into(),
            None,
        );
        let err = s.save("alice", &record("secret-rt")).unwrap_err();
        assert_eq!(err.code, ExitCode::IoErr);
        assert!(err.message.contains("disk full"), "{}", err.message);
        assert!(!err.to_string().contains("secret-rt"));
    }

    #[test]
    fn output_that_is_not_a_record_is_a_data_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("record");
        std::fs::write(&file, r#"{"obtained_at": "ya29.x"}"#).unwrap();
        let s = CommandStore::new(format!("cat {}", file.display()), "cat".into(), None);
        let err = s.load("alice").unwrap_err();
        assert_eq!(err.code, ExitCode::DataErr);
        assert!(err.message.contains("line 1 column"), "{err}");
        assert!(!err.to_string().contains("ya29"), "{err}");
    }

    #[test]
    fn a_large_record_does_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), false);
        let big = "r".repeat(256 * 1024);
        s.save("alice", &record(&big)).unwrap();
        assert_eq!(s.load("alice").unwrap(), Some(record(&big)));
    }

    #[test]
    fn a_hanging_read_is_stopped_at_the_timeout_with_everything_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // A shell that starts a grandchild holding stdout open, as `pass` starting
        // gpg that waits on pinentry would.
        let s = CommandStore::new(
            format!("sleep 600 & echo $! > {}; wait", pidfile.display()),
            "cat >/dev/null".into(),
            None,
        )
        .with_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let err = s.load("alice").unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.code, ExitCode::TempFail, "{err}");
        assert!(
            err.message
                .contains("did not finish within 300ms and was stopped"),
            "{}",
            err.message
        );
        let remedy = err.remedy.unwrap();
        assert!(remedy.contains("raise `timeout` in [store]"), "{remedy}");
        assert!(!remedy.contains("mailtoken login"), "{remedy}");
        // Stopped at the timeout, not when the grandchild would have ended.
        assert!(took < Duration::from_secs(30), "{took:?}");
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = || unsafe { libc::kill(grandchild, 0) } == 0 && !is_zombie(grandchild);
        let gone = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !alive()
        });
        assert!(gone, "the grandchild {grandchild} outlived the timeout");
    }

    /// A killed process that its parent (init, here) has not reaped yet.
    fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    }

    #[test]
    fn a_command_that_keeps_starting_processes_leaves_none_behind_when_stopped() {
        // A loop that starts a new sleeper every few milliseconds: one found while the
        // tree is walked must not have started another one by the time it is killed.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do sleep 60 & sleep 0.002; done"])
            .process_group(0)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let group = child.id();
        kill_tree(group);
        child.wait().unwrap();
        // Every process of the group: the loop's sleepers, reparented or not.
        let left = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&p| {
                    std::fs::read_to_string(format!("/proc/{p}/stat"))
                        .ok()
                        .and_then(|s| {
                            let rest = s.rsplit_once(") ")?.1.to_owned();
                            let f: Vec<&str> = rest.split_whitespace().collect();
                            // state, ppid, pgrp
                            Some(f.first()? != &"Z" && f.get(2)?.parse::<u32>().ok()? == group)
                        })
                        .unwrap_or(false)
                })
                .count()
        };
        let t = Instant::now();
        while left() > 0 {
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{} processes of the loop left",
                left()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_hanging_write_is_a_temporary_failure_and_shows_no_secret() {
        let s = CommandStore::new("true".into(), "cat >/dev/null; sleep 600".into(), None)
            .with_timeout(Duration::from_millis(200));
        let err = s.save("alice", &record("secret-rt")).unwrap_err();
        assert_eq!(err.code, ExitCode::TempFail);
        assert!(!err.to_string().contains("secret-rt"));
    }

    #[test]
    fn with_a_timeout_set_a_quick_command_still_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), false).with_timeout(Duration::from_secs(5));
        s.save("alice", &record("rt")).unwrap();
        assert_eq!(s.load("alice").unwrap(), Some(record("rt")));
    }

    #[test]
    fn a_read_that_leaves_a_process_holding_its_output_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // It prints a record's beginning, then leaves a child behind with stdout open.
        let s = CommandStore::new(
            format!(
                "printf '{{\"refresh'; (sleep 30 & echo $! > {}) ; true",
                pidfile.display()
            ),
            "cat >/dev/null".into(),
            None,
        );
        let err = s.load("alice").unwrap_err();
        assert_eq!(err.code, ExitCode::TempFail, "{err}");
        assert!(
            err.message.contains("left a process holding its output"),
            "{err}"
        );
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            // SAFETY: ending the test's own leftover `sleep`.
            unsafe { libc::kill(pid.trim().parse().unwrap(), libc::SIGKILL) };
        }
    }
}
