//! A private Postfix (Debian's), started for one test: its own config directory, queue
//! and log, listening on a loopback port of its own, relaying everything it takes to
//! `relayhost` (the mailtoken relay under test), with or without a SASL login there.
//! Stopped when dropped.

use super::mailtoken::{free_port, set_mode};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Postfix {
    dir: tempfile::TempDir,
    /// Where it takes mail (SMTP).
    pub port: u16,
}

impl Postfix {
    /// Starts it with `relayhost = [127.0.0.1]:relay_port`; `login` is the relay's
    /// user and password for SASL PLAIN, or `None` for no login.
    pub fn start(relay_port: u16, login: Option<(&str, &str)>) -> Postfix {
        Postfix::start_with(Some((relay_port, login)))
    }

    /// Starts it with no relayhost: mail waits in the queue until a configuration
    /// (`apply`) says where it goes.
    pub fn start_unconfigured() -> Postfix {
        Postfix::start_with(None)
    }

    /// Runs `script` (what `mailtoken setup postfix` prints) against this instance:
    /// `postconf` and `postfix` find it through MAIL_CONFIG, and `/etc/postfix/` in the
    /// script is its config directory. `cmd` carries the environment the script's
    /// `mailtoken` needs.
    pub fn apply(&self, mut cmd: Command, script: &str) -> std::process::Output {
        let conf = self.dir.path().join("conf");
        let script = script.replace("/etc/postfix/", &format!("{}/", conf.display()));
        cmd.arg("-c")
            .arg(script)
            .env("MAIL_CONFIG", &conf)
            .output()
            .unwrap()
    }

    fn start_with(relay: Option<(u16, Option<(&str, &str)>)>) -> Postfix {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let conf = d.join("conf");
        for sub in ["conf", "queue", "data"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // Postfix's programs must reach the queue: the test's temp dir is 0700.
        set_mode(d, 0o755);
        let chown = Command::new("chown")
            .arg("postfix")
            .arg(d.join("data"))
            .status()
            .unwrap();
        assert!(chown.success(), "chown postfix (is Postfix installed?)");
        let port = free_port();
        let master = std::fs::read_to_string("/etc/postfix/master.cf").expect("Debian's postfix");
        let master = master.replace(
            "smtp      inet  n       -       y       -       -       smtpd",
            &format!("127.0.0.1:{port} inet n - n - - smtpd"),
        );
        std::fs::write(conf.join("master.cf"), master).unwrap();
        // The map types Debian's Postfix loads at run time.
        let _ = std::fs::copy("/etc/postfix/dynamicmaps.cf", conf.join("dynamicmaps.cf"));
        let mut main = format!(
            "compatibility_level = 3.6\nqueue_directory = {q}\ndata_directory = {data}\n\
             mail_owner = postfix\nsetgid_group = postdrop\nmyhostname = postfix.mailtoken-test\n\
             mydomain = mailtoken-test\nmyorigin = $myhostname\ninet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\nmydestination =\nlocal_transport = error:no local delivery\n\
             mynetworks = 127.0.0.0/8\n\
             maillog_file = {log}\nmaillog_file_prefixes = {root}\n\
             message_size_limit = 52428800\nsmtp_tls_security_level = none\n",
            q = d.join("queue").display(),
            data = d.join("data").display(),
            log = d.join("maillog").display(),
            root = d.display(),
        );
        if let Some((relay_port, _)) = relay {
            main += &format!("relayhost = [127.0.0.1]:{relay_port}\n");
        }
        if let Some((relay_port, Some((user, password)))) = relay {
            let map = conf.join("sasl_passwd");
            std::fs::write(
                &map,
                format!("[127.0.0.1]:{relay_port} {user}:{password}\n"),
            )
            .unwrap();
            set_mode(&map, 0o600);
            main += &format!(
                "smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = texthash:{}\n\
                 smtp_sasl_security_options = noanonymous\nsmtp_sasl_mechanism_filter = plain\n",
                map.display()
            );
        }
        std::fs::write(conf.join("main.cf"), main).unwrap();
        let p = Postfix { dir, port };
        let o = p.postfix("start");
        assert!(
            o.status.success(),
            "postfix start: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Postfix did not listen:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    fn postfix(&self, what: &str) -> std::process::Output {
        Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path().join("conf"))
            .arg(what)
            .output()
            .unwrap()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.postfix("stop");
    }
}
