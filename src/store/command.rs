//! The command store: the user's own commands keep the records (e.g. `pass insert -m` /
//! `pass show`), run through `sh -c` with `{account}` replaced by the quoted account name.
//!
//! The record travels on the write command's stdin and the read command's stdout, never
//! in argv or the environment, where other users' `ps` could see it.

use super::{TokenStore, json_error};
use crate::error::{Error, Result};
use crate::record::TokenRecord;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use zeroize::Zeroizing;

pub struct CommandStore {
    read: String,
    write: String,
    delete: Option<String>,
}

/// How many lines of a failed command's stderr go into the error message.
const STDERR_LINES: usize = 3;

impl CommandStore {
    pub fn new(read: String, write: String, delete: Option<String>) -> Self {
        CommandStore {
            read,
            write,
            delete,
        }
    }

    /// Runs `template` for `account`, feeding `input` on stdin. Stdout is captured: the
    /// caller's stdout may be a pipe to a mail program that expects only a token.
    fn run(&self, template: &str, account: &str, input: Option<&[u8]>) -> Result<Output> {
        let script = template.replace("{account}", &shell_quote(account));
        let failed = |e: std::io::Error| {
            Error::io(format!("cannot run the store command `{template}`: {e}"))
        };
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
        // Feed stdin from a thread: a command that prints a lot before reading would
        // otherwise block on a full stdout pipe while we block on its full stdin pipe.
        let stdin = child.stdin.take();
        let (written, output) = std::thread::scope(|s| {
            let writer = s.spawn(move || match (stdin, input) {
                // Dropping stdin at the end closes it: the command sees EOF.
                (Some(mut stdin), Some(bytes)) => stdin.write_all(bytes),
                _ => Ok(()),
            });
            let output = child.wait_with_output();
            (writer.join(), output)
        });
        let output = output.map_err(failed)?;
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
        match written {
            Ok(Ok(())) => Ok(output),
            // It exited 0 without reading the whole record: nothing trustworthy was stored.
            Ok(Err(e)) => Err(Error::io(format!(
                "the store command `{template}` did not read the record from its standard input: {e}"
            ))),
            Err(_) => Err(Error::software(
                "the thread feeding a store command panicked",
            )),
        }
    }
}

/// `'it'\''s'`: safe in any position of a `sh` command line.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl TokenStore for CommandStore {
    fn load(&self, account: &str) -> Result<Option<TokenRecord>> {
        let output = self.run(&self.read, account, None).map_err(|e| {
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
    use crate::error::ExitCode;
    use crate::store::tests::record;

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
}
