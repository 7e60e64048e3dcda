//! `mailtoken setup CLIENT ACCOUNT`: a complete config block for a mail program, made
//! from the account's servers, with `mailtoken token` as its password command.
//!
//! Every snippet names the binary by its absolute path: mail programs are often started
//! by cron, systemd or a desktop session whose PATH lacks ~/.cargo/bin. Each client's
//! traps are written next to the lines they concern; the long form is in
//! integrations/<client>/README.md.

use crate::config::Account;
use crate::error::{Error, Result};
use crate::server::{Proto, Server, Tls};
use std::fmt::Write as _;

/// The mail programs `setup` knows (named on the command line as shown by clap:
/// `msmtp`, ..., `git-send-email`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    Msmtp,
    Neomutt,
    Mutt,
    Mbsync,
    Aerc,
    GitSendEmail,
    Himalaya,
    /// Postfix relaying through the account's SMTP relay (main.cf and sasl_passwd).
    Postfix,
    /// Any SMTP program without OAuth, through the account's SMTP relay.
    Relay,
}

/// The SASL mechanism the mail program should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sasl {
    Xoauth2,
    Oauthbearer,
}

impl Sasl {
    fn lower(self) -> &'static str {
        match self {
            Sasl::Xoauth2 => "xoauth2",
            Sasl::Oauthbearer => "oauthbearer",
        }
    }
}

/// The snippet for `client`. `exe` is the mailtoken binary to run.
pub fn snippet(client: Client, account: &Account, exe: &str, sasl: Sasl) -> Result<String> {
    let s = Setup {
        account,
        exe: shell_quote(exe),
        sasl,
    };
    match client {
        Client::Msmtp => s.msmtp(),
        Client::Neomutt => s.mutt(true),
        Client::Mutt => s.mutt(false),
        Client::Mbsync => s.mbsync(),
        Client::Aerc => s.aerc(),
        Client::GitSendEmail => s.git_send_email(),
        Client::Himalaya => s.himalaya(),
        Client::Postfix => s.postfix(),
        Client::Relay => s.relay(),
    }
}

struct Setup<'a> {
    account: &'a Account,
    /// The binary, quoted for a shell.
    exe: String,
    sasl: Sasl,
}

impl Setup<'_> {
    fn name(&self) -> &str {
        &self.account.name
    }

    /// The shell command that prints the credential for `proto`'s server: the token,
    /// or the app password of a password account.
    fn token_cmd(&self, proto: &str) -> String {
        if self.password() {
            format!("{} password {}", self.exe, shell_quote(self.name()))
        } else {
            format!(
                "{} token {} --for {proto}",
                self.exe,
                shell_quote(self.name())
            )
        }
    }

    /// An app-password account: PLAIN/LOGIN with `mailtoken password`, no OAuth.
    fn password(&self) -> bool {
        self.account.uses_app_password()
    }

    fn server(&self, proto: Proto, what: &str) -> Result<&Server> {
        self.account.server(proto).ok_or_else(|| {
            Error::config(format!(
                "account {} has no {what} server",
                self.account.name
            ))
            .with_remedy(format!(
                "Add one to [accounts.{}], e.g. {} = {{ host = \"mail.example.org\" }}, or use a provider preset.",
                self.account.name,
                match proto {
                    Proto::Imap => "imap",
                    Proto::Pop => "pop",
                    Proto::Smtp => "smtp",
                }
            ))
        })
    }

    fn gmail(&self) -> bool {
        self.account.provider.is_some_and(|p| p.name == "google")
    }

    /// The CA bundle line's file: the account's `ca_file`, else the system bundle.
    fn trust_file(&self) -> Option<String> {
        self.account
            .ca_file
            .as_ref()
            .map(|p| p.display().to_string())
    }

    fn header(&self, out: &mut String, comment: &str, client: &str, file: &str) {
        let _ = writeln!(
            out,
            "{comment} {client} for {} ({}), made by `mailtoken setup`.",
            self.name(),
            self.account.user
        );
        let _ = writeln!(out, "{comment} Put it in {file}.");
    }

    fn msmtp(&self) -> Result<String> {
        let smtp = self.server(Proto::Smtp, "SMTP")?;
        let mut o = String::new();
        self.header(
            &mut o,
            "#",
            "msmtp",
            "~/.msmtprc or ~/.config/msmtp/config (mode 0600)",
        );
        let _ = writeln!(o, "account {}", self.name());
        let _ = writeln!(o, "host {}", smtp.host);
        let _ = writeln!(o, "port {}", smtp.port);
        let _ = writeln!(o, "tls on");
        let _ = writeln!(
            o,
            "tls_starttls {}",
            if smtp.tls == Tls::Starttls {
                "on"
            } else {
                "off"
            }
        );
        match self.trust_file() {
            Some(f) => {
                let _ = writeln!(o, "tls_trust_file {}", msmtp_quote(&f));
            }
            None => {
                let _ = writeln!(o, "tls_trust_file system");
            }
        }
        let auth = if self.password() {
            "on"
        } else {
            self.sasl.lower()
        };
        let _ = writeln!(o, "auth {auth}");
        let _ = writeln!(o, "user {}", self.account.user);
        let _ = writeln!(o, "from {}", self.account.user);
        let _ = writeln!(
            o,
            "{}",
            if self.password() {
                "# On Linux msmtp finds the password that `mailtoken set-password` stored in the keyring\n# by itself (host, service=smtp, user), so this line may go; elsewhere it is needed."
            } else {
                "# msmtp builds the SASL string itself from the bare token; the command must not read stdin."
            }
        );
        let _ = writeln!(o, "passwordeval {}", msmtp_quote(&self.token_cmd("smtp")));
        if self.gmail() {
            let _ = writeln!(
                o,
                "# Gmail accepts about 500 messages a day from one account through SMTP."
            );
        }
        Ok(o)
    }

    /// The account's SMTP relay on TCP, which Postfix and plain SMTP programs reach.
    fn smtp_relay(&self) -> Result<(std::net::SocketAddr, bool)> {
        let name = self.name();
        let r = self
            .account
            .relay
            .as_ref()
            .and_then(|r| r.smtp.as_ref().map(|l| (l, r.access.clone())));
        match r {
            Some((crate::relay::Listen::Tcp(addr), access)) => {
                Ok((*addr, access == crate::relay::Access::Password))
            }
            Some((crate::relay::Listen::Unix(p), _)) => Err(Error::config(format!(
                "the SMTP relay of {name} listens on the unix socket {}, which Postfix's SMTP client cannot reach",
                p.display()
            ))
            .with_remedy(format!("Give [accounts.{name}.relay] smtp = \"127.0.0.1:2587\"."))),
            None => Err(Error::config(format!("account {name} has no SMTP relay")).with_remedy(format!(
                "Add [accounts.{name}.relay] with smtp = \"127.0.0.1:2587\" to the config, and run `mailtoken serve` (the daemon runs the relay)."
            ))),
        }
    }

    fn postfix(&self) -> Result<String> {
        let (addr, login) = self.smtp_relay()?;
        let name = self.name();
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# Postfix relaying all mail through mailtoken's SMTP relay of {name} ({}), made by `mailtoken setup`.",
            self.account.user
        );
        let _ = writeln!(
            o,
            "# The relay signs in to the real server with the account's token; `mailtoken serve` must run."
        );
        let _ = writeln!(
            o,
            "# Apply the main.cf settings with postconf, then reload Postfix:"
        );
        let _ = writeln!(
            o,
            "postconf -e 'relayhost = [{}]:{}'",
            addr.ip(),
            addr.port()
        );
        // The relay is on loopback; it speaks TLS to the real server itself.
        let _ = writeln!(o, "postconf -e 'smtp_tls_security_level = none'");
        if login {
            let _ = writeln!(o, "postconf -e 'smtp_sasl_auth_enable = yes'");
            let _ = writeln!(
                o,
                "postconf -e 'smtp_sasl_password_maps = hash:/etc/postfix/sasl_passwd'"
            );
            let _ = writeln!(o, "postconf -e 'smtp_sasl_security_options = noanonymous'");
            let _ = writeln!(o, "postconf -e 'smtp_sasl_mechanism_filter = plain'");
            let _ = writeln!(
                o,
                "# The local login: the account's user and the relay password (Cyrus SASL's PLAIN,"
            );
            let _ = writeln!(
                o,
                "# Debian package libsasl2-modules). The password is written straight to the map:"
            );
            let _ = writeln!(
                o,
                "(umask 077; printf '[{}]:{} %s:%s\\n' {} \"$({} relay-password {})\" > /etc/postfix/sasl_passwd)",
                addr.ip(),
                addr.port(),
                shell_quote(&self.account.user),
                self.exe,
                shell_quote(name)
            );
            let _ = writeln!(o, "postmap /etc/postfix/sasl_passwd");
        } else {
            let _ = writeln!(
                o,
                "# The relay takes mail without a login (auth = \"none\"): no SASL settings."
            );
        }
        let _ = writeln!(o, "postfix reload");
        Ok(o)
    }

    fn relay(&self) -> Result<String> {
        let (addr, login) = self.smtp_relay()?;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# Any SMTP program without OAuth, through mailtoken's SMTP relay of {} ({}), made by `mailtoken setup`.",
            self.name(),
            self.account.user
        );
        let _ = writeln!(o, "host:     {}", addr.ip());
        let _ = writeln!(o, "port:     {}", addr.port());
        let _ = writeln!(
            o,
            "security: none (loopback; the relay speaks TLS to the real server)"
        );
        if login {
            let _ = writeln!(o, "login:    PLAIN or LOGIN");
            let _ = writeln!(o, "user:     {}", self.account.user);
            let _ = writeln!(
                o,
                "password: the output of `{} relay-password {}`",
                self.exe,
                shell_quote(self.name())
            );
        } else {
            let _ = writeln!(o, "login:    none");
        }
        let _ = writeln!(o, "from:     {}", self.account.user);
        Ok(o)
    }

    /// neomutt and mutt (2.0 or later) take the same settings.
    fn mutt(&self, neo: bool) -> Result<String> {
        let imap = self.server(Proto::Imap, "IMAP")?;
        let smtp = self.server(Proto::Smtp, "SMTP")?;
        let user = url_user(&self.account.user);
        let mut o = String::new();
        let (client, file) = if neo {
            ("neomutt", "~/.config/neomutt/neomuttrc")
        } else {
            ("mutt", "~/.muttrc (mutt 2.0 or later)")
        };
        self.header(&mut o, "#", client, file);
        let set = |o: &mut String, k: &str, v: &str| {
            let _ = writeln!(o, "set {k} = {}", mutt_quote(v));
        };
        set(&mut o, "from", &self.account.user);
        set(&mut o, "imap_user", &self.account.user);
        let imap_scheme = if imap.tls == Tls::Implicit {
            "imaps"
        } else {
            "imap"
        };
        set(
            &mut o,
            "folder",
            &format!("{imap_scheme}://{user}@{}:{}/", imap.host, imap.port),
        );
        set(&mut o, "spoolfile", "+INBOX");
        if self.password() {
            // Backquotes run the command when the file is read.
            let _ = writeln!(o, "set imap_pass = \"`{}`\"", self.token_cmd("imap"));
        } else {
            set(&mut o, "imap_authenticators", self.sasl.lower());
            set(
                &mut o,
                "imap_oauth_refresh_command",
                &self.token_cmd("imap"),
            );
        }
        let smtp_scheme = if smtp.tls == Tls::Implicit {
            "smtps"
        } else {
            "smtp"
        };
        set(
            &mut o,
            "smtp_url",
            &format!("{smtp_scheme}://{user}@{}:{}/", smtp.host, smtp.port),
        );
        if self.password() {
            let _ = writeln!(o, "set smtp_pass = \"`{}`\"", self.token_cmd("smtp"));
        } else {
            set(&mut o, "smtp_authenticators", self.sasl.lower());
            set(
                &mut o,
                "smtp_oauth_refresh_command",
                &self.token_cmd("smtp"),
            );
        }
        let _ = writeln!(o, "# Never fall back to an unencrypted connection.");
        let _ = writeln!(o, "set ssl_force_tls = yes");
        if imap.tls == Tls::Starttls || smtp.tls == Tls::Starttls {
            let _ = writeln!(o, "set ssl_starttls = yes");
        }
        if let Some(f) = self.trust_file() {
            set(&mut o, "ssl_ca_certificates_file", &f);
        }
        if self.gmail() {
            let _ = writeln!(
                o,
                "# Gmail may block a mail program that checks for new mail more often than every 10 minutes."
            );
            let _ = writeln!(o, "set mail_check = 600");
        }
        Ok(o)
    }

    fn mbsync(&self) -> Result<String> {
        if self.sasl == Sasl::Oauthbearer && !self.password() {
            return Err(Error::usage(
                "mbsync authenticates through Cyrus SASL, whose Debian plugin (libsasl2-modules-kdexoauth2) offers XOAUTH2 only: use --mechanism xoauth2",
            ));
        }
        let imap = self.server(Proto::Imap, "IMAP")?;
        let n = self.name();
        let mut o = String::new();
        self.header(&mut o, "#", "mbsync (isync 1.4)", "~/.mbsyncrc");
        let _ = writeln!(
            o,
            "{}",
            if self.password() {
                "# PLAIN and LOGIN over TLS with the app password."
            } else {
                "# XOAUTH2 comes from a Cyrus SASL plugin: install libsasl2-modules-kdexoauth2 (Debian, Ubuntu)\n# or cyrus-sasl-xoauth2 (Arch, Fedora); without it mbsync says \"no supported mechanisms\"."
            }
        );
        let _ = writeln!(o, "IMAPAccount {n}");
        let _ = writeln!(o, "Host {}", imap.host);
        let _ = writeln!(o, "Port {}", imap.port);
        let _ = writeln!(o, "User {}", self.account.user);
        let _ = writeln!(o, "PassCmd {}", msmtp_quote(&self.token_cmd("imap")));
        let mechs = if self.password() {
            "PLAIN LOGIN"
        } else {
            "XOAUTH2"
        };
        let _ = writeln!(o, "AuthMechs {mechs}");
        let _ = writeln!(
            o,
            "SSLType {}",
            if imap.tls == Tls::Implicit {
                "IMAPS"
            } else {
                "STARTTLS"
            }
        );
        if let Some(f) = self.trust_file() {
            let _ = writeln!(o, "CertificateFile {}", msmtp_quote(&f));
        } else {
            let _ = writeln!(o, "CertificateFile /etc/ssl/certs/ca-certificates.crt");
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "IMAPStore {n}-remote\nAccount {n}\n");
        let _ = writeln!(
            o,
            "MaildirStore {n}-local\nPath ~/Mail/{n}/\nInbox ~/Mail/{n}/INBOX\nSubFolders Verbatim\n"
        );
        let _ = writeln!(
            o,
            "Channel {n}\nFar :{n}-remote:\nNear :{n}-local:\nPatterns *\nCreate Near\nSyncState *"
        );
        if self.gmail() {
            let _ = writeln!(
                o,
                "# Run it no more often than every 10 minutes (a systemd timer or cron); Gmail may block\n# a mail program that checks more often. Gmail's labels appear as folders under [Gmail]/."
            );
        }
        Ok(o)
    }

    fn aerc(&self) -> Result<String> {
        let imap = self.server(Proto::Imap, "IMAP")?;
        let smtp = self.server(Proto::Smtp, "SMTP")?;
        let user = url_user(&self.account.user);
        // `+xoauth2` in the scheme; nothing for a password (aerc then uses PLAIN).
        let mech = if self.password() {
            String::new()
        } else {
            format!("+{}", self.sasl.lower())
        };
        let mut o = String::new();
        self.header(
            &mut o,
            "#",
            "aerc",
            "~/.config/aerc/accounts.conf (mode 0600)",
        );
        let _ = writeln!(o, "[{}]", self.name());
        let imap_scheme = if imap.tls == Tls::Implicit {
            "imaps"
        } else {
            "imap"
        };
        let _ = writeln!(
            o,
            "source = {imap_scheme}{mech}://{user}@{}:{}",
            imap.host, imap.port
        );
        let _ = writeln!(o, "source-cred-cmd = {}", self.token_cmd("imap"));
        let smtp_scheme = if smtp.tls == Tls::Implicit {
            "smtps"
        } else {
            "smtp"
        };
        let _ = writeln!(
            o,
            "outgoing = {smtp_scheme}{mech}://{user}@{}:{}",
            smtp.host, smtp.port
        );
        let _ = writeln!(o, "outgoing-cred-cmd = {}", self.token_cmd("smtp"));
        if smtp.tls == Tls::Starttls {
            // aerc 0.14 (Debian 12) refuses to send otherwise ("STARTTLS is supported
            // by this server, but not set in accounts.conf"); later versions always
            // use STARTTLS on smtp:// and drop the option.
            let _ = writeln!(o, "smtp-starttls = yes");
        }
        let _ = writeln!(o, "from = <{}>", self.account.user);
        if self.gmail() {
            let _ = writeln!(o, "check-mail = 10m");
        }
        if self.trust_file().is_some() {
            let _ = writeln!(
                o,
                "# aerc trusts the system's CA store only: add the account's ca_file to it\n# (Debian: copy it to /usr/local/share/ca-certificates/ and run update-ca-certificates)."
            );
        }
        Ok(o)
    }

    fn git_send_email(&self) -> Result<String> {
        let smtp = self.server(Proto::Smtp, "SMTP")?;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# git send-email for {} ({}), made by `mailtoken setup`.",
            self.name(),
            self.account.user
        );
        let _ = writeln!(
            o,
            "# Put it in ~/.gitconfig. Native XOAUTH2 needs Perl's Authen::SASL 2.1800 or later\n# (check: perl -MAuthen::SASL -e 'print $Authen::SASL::VERSION'); with an older one\n# (Debian 12) send through msmtp instead: see integrations/git-send-email/README.md."
        );
        let _ = writeln!(o, "[sendemail]");
        let _ = writeln!(o, "\tsmtpServer = {}", smtp.host);
        let _ = writeln!(o, "\tsmtpServerPort = {}", smtp.port);
        let _ = writeln!(
            o,
            "\tsmtpEncryption = {}",
            if smtp.tls == Tls::Implicit {
                "ssl"
            } else {
                "tls"
            }
        );
        let _ = writeln!(o, "\tsmtpUser = {}", self.account.user);
        let auth = if self.password() {
            "PLAIN LOGIN".to_owned()
        } else {
            self.sasl.lower().to_uppercase()
        };
        let _ = writeln!(o, "\tsmtpAuth = {auth}");
        if let Some(f) = self.trust_file() {
            let _ = writeln!(o, "\tsmtpSSLCertPath = {}", git_quote(&f));
        }
        let _ = writeln!(o, "[credential \"smtp://{}:{}\"]", smtp.host, smtp.port);
        let _ = writeln!(o, "\thelper =");
        let _ = writeln!(
            o,
            "\thelper = {}",
            git_quote(&format!("!{} git-credential", self.exe))
        );
        Ok(o)
    }

    /// himalaya 2 (the v2 config: `imap.server`, `imap.sasl.*`; see its MIGRATION.md).
    fn himalaya(&self) -> Result<String> {
        let imap = self.server(Proto::Imap, "IMAP")?;
        let smtp = self.server(Proto::Smtp, "SMTP")?;
        let q = |s: &str| toml_quote(s);
        let mut o = String::new();
        self.header(&mut o, "#", "himalaya 2", "~/.config/himalaya/config.toml");
        let a = format!("accounts.{}", toml_key(self.name()));
        let _ = writeln!(o, "[{a}]");
        let _ = writeln!(o, "email = {}", q(&self.account.user));
        for (proto, s, name) in [("imap", imap, "imap"), ("smtp", smtp, "smtp")] {
            // imaps:// and smtps:// are implicit TLS; imap:// and smtp:// with
            // starttls = true upgrade the plain connection (never left plain).
            let scheme = match s.tls {
                Tls::Implicit => format!("{name}s"),
                Tls::Starttls => name.to_owned(),
            };
            let _ = writeln!(
                o,
                "{proto}.server = {}",
                q(&format!("{scheme}://{}:{}", s.host, s.port))
            );
            if s.tls == Tls::Starttls {
                let _ = writeln!(o, "{proto}.starttls = true");
            }
            if let Some(f) = &self.account.ca_file {
                let _ = writeln!(o, "{proto}.tls.cert = {}", q(&f.display().to_string()));
            }
            let cmd = q(&self.token_cmd(proto));
            let user = q(&self.account.user);
            if self.password() {
                let _ = writeln!(o, "{proto}.sasl.plain.username = {user}");
                let _ = writeln!(o, "{proto}.sasl.plain.password.command = {cmd}");
            } else {
                let m = self.sasl.lower();
                let _ = writeln!(o, "{proto}.sasl.{m}.username = {user}");
                let _ = writeln!(o, "{proto}.sasl.{m}.token.command = {cmd}");
            }
        }
        Ok(o)
    }
}

/// A word for a POSIX shell: as is when it is plain, else in single quotes.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,=".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A double-quoted string for msmtp and mbsync, whose parsers take `\"` and `\\`.
fn msmtp_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', r"\\").replace('"', "\\\""))
}

/// A double-quoted muttrc string: `\`, `"`, `$` and backquotes are special in it.
fn mutt_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A git config value in double quotes.
fn git_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', r"\\").replace('"', "\\\""))
}

fn toml_quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        s.to_owned()
    } else {
        toml_quote(s)
    }
}

/// The user part of a URL (`alice%40gmail.com`): RFC 3986 unreserved characters as
/// they are, everything else percent-encoded.
fn url_user(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn account(extra: &str) -> Config {
        Config::parse(
            Path::new("test.toml"),
            &format!("[accounts.work]\nprovider = \"google\"\nuser = \"alice@gmail.com\"\nclient_id = \"id\"\nclient_secret = \"s\"\n{extra}"),
        )
        .unwrap()
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/usr/bin/mailtoken"), "/usr/bin/mailtoken");
        assert_eq!(shell_quote("/home/a b/mailtoken"), "'/home/a b/mailtoken'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(msmtp_quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(mutt_quote("$x `y`"), r#""\$x \`y\`""#);
        assert_eq!(url_user("alice@gmail.com"), "alice%40gmail.com");
        assert_eq!(url_user("a+b@x.y"), "a%2Bb%40x.y");
        assert_eq!(toml_key("work"), "work");
        assert_eq!(toml_key("my work"), "\"my work\"");
    }

    #[test]
    fn msmtp_for_gmail() {
        let c = account("");
        let s = snippet(
            Client::Msmtp,
            &c.accounts["work"],
            "/usr/bin/mailtoken",
            Sasl::Xoauth2,
        )
        .unwrap();
        assert!(s.contains("account work\nhost smtp.gmail.com\n"), "{s}");
        assert!(s.contains("auth xoauth2\nuser alice@gmail.com\n"), "{s}");
        assert!(
            s.contains("passwordeval \"/usr/bin/mailtoken token work --for smtp\"\n"),
            "{s}"
        );
        assert!(s.contains("500 messages a day"), "{s}");
        assert!(s.contains("tls_trust_file system"), "{s}");
    }

    #[test]
    fn neomutt_for_a_starttls_server_with_a_private_ca() {
        let c = account(
            "ca_file = \"/etc/lab-ca.pem\"\nimap = { host = \"mail.lab\", port = 143 }\nsmtp = { host = \"mail.lab\", port = 587 }\n",
        );
        let s = snippet(
            Client::Neomutt,
            &c.accounts["work"],
            "/opt/my tools/mailtoken",
            Sasl::Oauthbearer,
        )
        .unwrap();
        assert!(
            s.contains("set folder = \"imap://alice%40gmail.com@mail.lab:143/\""),
            "{s}"
        );
        assert!(s.contains("set ssl_starttls = yes"), "{s}");
        assert!(
            s.contains("set imap_authenticators = \"oauthbearer\""),
            "{s}"
        );
        assert!(
            s.contains("set smtp_oauth_refresh_command = \"'/opt/my tools/mailtoken' token work --for smtp\""),
            "{s}"
        );
        assert!(
            s.contains("set ssl_ca_certificates_file = \"/etc/lab-ca.pem\""),
            "{s}"
        );
    }

    #[test]
    fn app_password_accounts_get_password_commands() {
        let c = Config::parse(
            Path::new("t.toml"),
            "[accounts.fm]\nprovider = \"fastmail\"\nuser = \"me@fastmail.com\"\n",
        )
        .unwrap();
        let a = &c.accounts["fm"];
        let m = snippet(Client::Msmtp, a, "/bin/mailtoken", Sasl::Xoauth2).unwrap();
        assert!(m.contains("auth on\n"), "{m}");
        assert!(
            m.contains("passwordeval \"/bin/mailtoken password fm\""),
            "{m}"
        );
        assert!(!m.contains("xoauth2"), "{m}");
        let n = snippet(Client::Neomutt, a, "/bin/mailtoken", Sasl::Xoauth2).unwrap();
        assert!(
            n.contains("set imap_pass = \"`/bin/mailtoken password fm`\""),
            "{n}"
        );
        assert!(!n.contains("oauth"), "{n}");
        let b = snippet(Client::Mbsync, a, "/bin/mailtoken", Sasl::Oauthbearer).unwrap();
        assert!(b.contains("AuthMechs PLAIN LOGIN"), "{b}");
        let r = snippet(Client::Aerc, a, "/bin/mailtoken", Sasl::Xoauth2).unwrap();
        assert!(
            r.contains("source = imaps://me%40fastmail.com@imap.fastmail.com:993"),
            "{r}"
        );
        let h = snippet(Client::Himalaya, a, "/bin/mailtoken", Sasl::Xoauth2).unwrap();
        assert!(
            h.contains("imap.sasl.plain.password.command = \"/bin/mailtoken password fm\""),
            "{h}"
        );
        assert!(!h.contains("backend."), "no himalaya 1 keys: {h}");
    }

    #[test]
    fn mbsync_refuses_oauthbearer_and_missing_servers_are_named() {
        let c = account("");
        let e = snippet(Client::Mbsync, &c.accounts["work"], "m", Sasl::Oauthbearer).unwrap_err();
        assert!(e.message.contains("XOAUTH2 only"), "{}", e.message);
        let c = Config::parse(
            Path::new("t.toml"),
            "[accounts.x]\nuser = \"u@example.org\"\nclient_id = \"c\"\nauth_url = \"https://e.org/a\"\ntoken_url = \"https://e.org/t\"\nscopes = [\"s\"]\n",
        )
        .unwrap();
        let e = snippet(Client::Msmtp, &c.accounts["x"], "m", Sasl::Xoauth2).unwrap_err();
        assert!(e.message.contains("no SMTP server"), "{}", e.message);
    }
}
