//! A private Secret Service for one test: its own session bus (`dbus-daemon`) and its
//! own gnome-keyring with a `login` collection unlocked by a known password, so a test
//! can lock it, and unlock it again, without touching the keyring other tests share.
//! Both die with the bus when this is dropped (gnome-keyring exits when its bus goes).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "private-keyring-password";

/// A session bus config without service directories: nothing on it is started by D-Bus
/// activation (`dbus-daemon --config-file`).
pub const NO_ACTIVATION_BUS: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#;

pub struct PrivateKeyring {
    /// `DBUS_SESSION_BUS_ADDRESS` of the private bus.
    pub bus: String,
    bus_pid: i32,
    data: PathBuf,
    run: PathBuf,
    _dir: tempfile::TempDir,
}

impl PrivateKeyring {
    pub fn start() -> PrivateKeyring {
        let dir = tempfile::tempdir().unwrap();
        let (data, run) = (dir.path().join("data"), dir.path().join("run"));
        for d in [&data, &run] {
            std::fs::create_dir_all(d).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        // The session bus without its service directories: nothing is started by D-Bus
        // activation, so a killed gnome-keyring stays dead until a test starts one (a
        // desktop's bus would start a new, locked one, whose unlock prompt nobody here
        // could answer).
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, NO_ACTIVATION_BUS).unwrap();
        let out = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--fork", "--print-address=1", "--print-pid=1"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "dbus-daemon: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let bus = lines.next().unwrap().to_owned();
        let bus_pid = lines.next().unwrap().trim().parse().unwrap();
        let k = PrivateKeyring {
            bus,
            bus_pid,
            data,
            run,
            _dir: dir,
        };
        k.unlock_with(&[]);
        k
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("XDG_DATA_HOME", &self.data)
            .env("XDG_RUNTIME_DIR", &self.run);
        c
    }

    /// Unlocks (creating on the first run) the `login` collection; `extra` goes to
    /// gnome-keyring-daemon (`--replace` takes over from a running one).
    fn unlock_with(&self, extra: &[&str]) {
        let mut child = self
            .command("gnome-keyring-daemon")
            .args(extra)
            .args(["--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        // It owns org.freedesktop.secrets some milliseconds after returning.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.bus_has_secrets() {
            assert!(
                Instant::now() < deadline,
                "no Secret Service on the private bus"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The bus's own `METHOD` about the Secret Service's name; its printed reply.
    fn ask_bus_about_secrets(&self, method: &str) -> String {
        let out = self
            .command("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                &format!("org.freedesktop.DBus.{method}"),
                "string:org.freedesktop.secrets",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn bus_has_secrets(&self) -> bool {
        self.ask_bus_about_secrets("NameHasOwner")
            .contains("boolean true")
    }

    /// Locks the `login` collection, as the screen locker or `seahorse` would.
    pub fn lock(&self) {
        let out = self
            .command("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.Lock",
                "array:objpath:/org/freedesktop/secrets/collection/login",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "Lock: {out:?}");
    }

    /// Kills its gnome-keyring with SIGKILL, as a crash or the OOM killer would; what
    /// it had written stays on disk, and [`PrivateKeyring::unlock`] starts a new one.
    pub fn kill(&self) {
        let pid = self.daemon_pid();
        // SAFETY: signalling the gnome-keyring this keyring started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.bus_has_secrets() {
            assert!(Instant::now() < deadline, "gnome-keyring {pid} did not die");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Its gnome-keyring, the owner of org.freedesktop.secrets on the private bus.
    pub fn daemon_pid(&self) -> i32 {
        let text = self.ask_bus_about_secrets("GetConnectionUnixProcessID");
        text.split_whitespace()
            .skip_while(|w| *w != "uint32")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid for org.freedesktop.secrets: {text}"))
    }

    /// Unlocks it again. Without a prompter the only way in is a new daemon given the
    /// password (`--replace`); the Secret Service sessions clients held are then gone.
    pub fn unlock(&self) {
        self.unlock_with(&["--replace"]);
    }
}

impl Drop for PrivateKeyring {
    fn drop(&mut self) {
        // SAFETY: signalling the bus daemon this started.
        unsafe { libc::kill(self.bus_pid, libc::SIGTERM) };
    }
}
