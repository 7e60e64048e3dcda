//! A terminal a person types into: a private tmux server (its own socket, so tests never
//! share one) running one command in a wide window; keys go in with send-keys, the
//! screen comes out with capture-pane. The pane stays after the command exits, with its
//! exit status on the last line.

use super::mailtoken::Env;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Runs `shell_cmd` (sh syntax) in `env`'s world, `PATH` with `bin_first` in front.
    pub fn start(env: &Env, shell_cmd: &str, bin_first: Option<&std::path::Path>) -> Tmux {
        let socket = env.dir.path().join("tmux.sock");
        let mut c = env.program("tmux");
        c.env_remove("TMUX").env("TERM", "xterm-256color");
        if let Some(dir) = bin_first {
            let path = std::env::var("PATH").unwrap_or_default();
            c.env("PATH", format!("{}:{path}", dir.display()));
        }
        let wrapped = format!("{shell_cmd}; echo \"[exit $?]\"; sleep 3600");
        let o = c
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "400",
                "-y",
                "80",
                "sh",
                "-c",
            ])
            .arg(&wrapped)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Tmux { socket }
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.env_remove("TMUX").arg("-S").arg(&self.socket);
        c
    }

    /// Types `text` literally, then Enter.
    pub fn type_line(&self, text: &str) {
        if !text.is_empty() {
            let o = self
                .tmux()
                .args(["send-keys", "-l", text])
                .output()
                .unwrap();
            assert!(o.status.success());
        }
        let o = self.tmux().args(["send-keys", "Enter"]).output().unwrap();
        assert!(o.status.success());
    }

    /// The whole screen and its scrollback, lines joined where the terminal wrapped them.
    pub fn screen(&self) -> String {
        let o = self
            .tmux()
            .args(["capture-pane", "-p", "-J", "-S", "-", "-E", "-"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        let end = lines
            .iter()
            .rposition(|l| !l.is_empty())
            .map_or(0, |i| i + 1);
        lines[..end].join("\n")
    }

    /// Waits until the screen shows `needle` (in text printed after `after` bytes of
    /// screen, so an earlier question does not count), and returns the screen.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(needle) {
                return s;
            }
            if s.contains("[exit ") || start.elapsed() > timeout {
                panic!("the terminal never showed {needle:?}; it shows:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the command to end; its exit status.
    pub fn wait_exit(&self, timeout: Duration) -> (i32, String) {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if let Some(i) = s.rfind("[exit ") {
                let code = s[i + 6..].split(']').next().unwrap().parse().unwrap();
                return (code, s);
            }
            if start.elapsed() > timeout {
                panic!("the command did not end; the terminal shows:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}
