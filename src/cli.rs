//! The command line, as clap definitions. Kept in the library so that `completions`
//! and `man` (and tests) see exactly what the binary parses.

use crate::credential::Request;
use crate::format::Format;
use crate::server::{Proto, Tls};
use crate::setup::{Client, Sasl};
use crate::verify::Mechanism;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::str::FromStr;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "mailtoken",
    version = crate::VERSION,
    about = "OAuth 2.0 credential helper and token broker for mail programs",
    long_about = "OAuth 2.0 credential helper and token broker for mail programs.\n\n\
        Log in once in the browser with `mailtoken login ACCOUNT`; then use \
        `mailtoken token ACCOUNT` as the password command of msmtp, neomutt, mbsync or aerc. \
        It prints a valid access token every time, refreshing it when needed. For an \
        app password (iCloud, Fastmail, Yahoo; auth = \"password\"), `mailtoken set-password \
        ACCOUNT` stores it in the OS keyring and `mailtoken password ACCOUNT` prints it.\n\n\
        Accounts live in $MAILTOKEN_CONFIG, else $XDG_CONFIG_HOME/mailtoken/config.toml.\n\n\
        Exit status: 0 ok, 64 usage, 65 bad input, 69 unavailable, 75 temporary failure \
        (retry later), 77 you need to act (log in, approve), 78 configuration error.",
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once per run and matched at once: the size of `Add` costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Set up a new account from its address: find the provider and servers, ask only
    /// what is missing, add the account to the config, log in, verify, and print the
    /// mail program's settings.
    ///
    /// Without a terminal it asks nothing: every answer is a flag, and a missing one is
    /// an error naming it (exit 64). The config file keeps every byte it had.
    Add {
        /// The mail address, as in alice@example.com.
        address: String,
        /// The account's name in mailtoken's config (default: from the address).
        name: Option<String>,
        /// A provider preset instead of looking the address up (`mailtoken providers`).
        #[arg(long, value_name = "NAME", help_heading = "Answers")]
        provider: Option<String>,
        /// oauth (tokens, the default where the provider has OAuth) or password (an app
        /// password, kept in the OS keyring).
        #[arg(long, value_name = "KIND", value_parser = ["oauth", "password"], help_heading = "Answers")]
        auth: Option<String>,
        /// The login name, when it is not the address.
        #[arg(long, help_heading = "Answers")]
        user: Option<String>,
        /// Microsoft: common, organizations, consumers, a tenant ID or a domain.
        #[arg(long, help_heading = "Answers")]
        tenant: Option<String>,
        /// The OAuth client ID of your registration.
        #[arg(long, value_name = "ID", help_heading = "Answers")]
        client_id: Option<String>,
        /// A command printing the OAuth client secret (`pass show mail/client-secret`).
        #[arg(long, value_name = "CMD", help_heading = "Answers")]
        client_secret_cmd: Option<String>,
        /// The OAuth client has no secret (a public client); do not ask for one.
        #[arg(long, conflicts_with = "client_secret_cmd", help_heading = "Answers")]
        no_client_secret: bool,
        /// The OAuth scopes to ask for, space-separated (default: what discovery found).
        #[arg(long, value_name = "LIST", value_delimiter = ' ', num_args = 1.., help_heading = "Answers")]
        scopes: Option<Vec<String>>,
        /// The IMAP server, HOST[:PORT] (instead of or beside what was found).
        #[arg(long, value_name = "HOST[:PORT]", help_heading = "Answers")]
        imap: Option<String>,
        /// The POP3 server, HOST[:PORT].
        #[arg(long, value_name = "HOST[:PORT]", help_heading = "Answers")]
        pop: Option<String>,
        /// The SMTP submission server, HOST[:PORT].
        #[arg(long, value_name = "HOST[:PORT]", help_heading = "Answers")]
        smtp: Option<String>,
        /// Where the tokens go when the config has no [store]: keyring or file.
        #[arg(long, value_name = "KIND", help_heading = "Answers")]
        store: Option<String>,
        /// Read the app password from the first line of stdin instead of asking.
        #[arg(long, help_heading = "Answers")]
        password_stdin: bool,
        /// A CA certificate (PEM) to trust beside the system's, for the servers and
        /// the autoconfig fetch (a private CA); written into the account as ca_file.
        #[arg(long, value_name = "FILE", help_heading = "Discovery")]
        ca_file: Option<std::path::PathBuf>,
        /// Ask this DNS server instead of the system's (split-horizon networks).
        #[arg(long, value_name = "HOST:PORT", help_heading = "Discovery")]
        dns: Option<std::net::SocketAddr>,
        /// Do not ask Thunderbird's ISPDB (autoconfig.thunderbird.net).
        #[arg(long, help_heading = "Discovery")]
        no_ispdb: bool,
        /// Write the account, and stop: no login, no verify.
        #[arg(long, help_heading = "Afterwards")]
        no_login: bool,
        /// Log in, but do not verify the servers.
        #[arg(long, help_heading = "Afterwards")]
        no_verify: bool,
        /// Log in with a code entered on another device (as `login --device`).
        #[arg(long, conflicts_with_all = ["paste", "no_browser"], help_heading = "Afterwards")]
        device: bool,
        /// Log in by pasting the address the browser lands on (as `login --paste`).
        #[arg(long, help_heading = "Afterwards")]
        paste: bool,
        /// Print the login URL instead of opening a browser.
        #[arg(long, help_heading = "Afterwards")]
        no_browser: bool,
        /// The mail program to print the settings for (asked on a terminal).
        #[arg(long, value_enum, help_heading = "Afterwards")]
        client: Option<Client>,
        /// Also put the settings into the mail program's own config file (a backup of
        /// the old file is kept; a second run replaces its own block).
        #[arg(long, requires = "client", help_heading = "Afterwards")]
        write: bool,
        /// Show what would be written and done, and change nothing.
        #[arg(long, help_heading = "Afterwards")]
        dry_run: bool,
    },
    /// Log in through the browser and store the tokens.
    Login {
        account: String,
        /// Do not open a browser; print the URL to open instead.
        #[arg(long)]
        no_browser: bool,
        /// Listen on this port for the redirect (for `ssh -L PORT:127.0.0.1:PORT`).
        #[arg(long, value_name = "N")]
        port: Option<u16>,
        /// Paste the URL the browser was sent to, for machines without a browser.
        #[arg(long, conflicts_with = "no_browser")]
        paste: bool,
        /// Log in with a code entered on any other device (RFC 8628 device flow): for
        /// machines without a browser. Needs a provider with a device endpoint
        /// (Microsoft; `device_url` for others); Google does not allow it for mail.
        #[arg(long, conflicts_with_all = ["no_browser", "paste", "port"])]
        device: bool,
        /// Give up waiting for the browser after this long (the device flow waits as
        /// long as its code is valid).
        #[arg(long, value_name = "DUR", default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Print a valid credential on stdout, refreshing first if needed.
    Token {
        account: String,
        /// raw (the access token), xoauth2 or oauthbearer (base64 SASL strings), json.
        #[arg(long, short, value_parser = names::<Format>(), default_value = "raw")]
        format: Format,
        /// The token must stay valid at least this long (half its lifetime if shorter).
        #[arg(long, value_name = "DUR", default_value = "5m", value_parser = parse_duration)]
        min_valid: Duration,
        /// Which server's host and port go into an OAUTHBEARER string.
        #[arg(long = "for", value_parser = names::<Proto>(), default_value = "imap")]
        for_proto: Proto,
        /// With the daemon: wait up to this long for a refresh in flight or a login in
        /// progress instead of failing at once.
        #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
        wait: Duration,
    },
    /// Store an app password in the OS keyring, where msmtp finds it too.
    ///
    /// For an account with auth = "password" (iCloud, Fastmail, Yahoo, or Gmail with an
    /// app password). Typed at a prompt that does not echo, or the first line of stdin
    /// when it is not a terminal.
    SetPassword { account: String },
    /// Print the stored app password of an account on stdout.
    Password { account: String },
    /// Print the password of the account's local relay (made on first use), for the
    /// programs that log in to the relay; --rotate makes a new one.
    RelayPassword {
        account: String,
        #[arg(long)]
        rotate: bool,
    },
    /// Log in to the account's IMAP, POP3 and SMTP servers for real, and explain what
    /// is wrong when a server refuses.
    Verify {
        account: String,
        /// Check IMAP (with none of --imap, --pop, --smtp: every server the account has).
        #[arg(long)]
        imap: bool,
        /// Check POP3.
        #[arg(long)]
        pop: bool,
        /// Check SMTP submission.
        #[arg(long)]
        smtp: bool,
        /// Check this server instead of the account's (with one of --imap, --pop, --smtp).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// The port (with --host: default from the protocol and --tls).
        #[arg(long, value_name = "N")]
        port: Option<u16>,
        /// implicit (TLS from the start: 465, 993, 995) or starttls (587, 143, 110).
        #[arg(long, value_enum)]
        tls: Option<Tls>,
        /// Use this SASL mechanism instead of the best one the server offers.
        #[arg(long, value_enum)]
        mechanism: Option<Mechanism>,
        /// Give up on a server that stays silent this long (connect, handshake, each read).
        #[arg(long, value_name = "DUR", default_value = "15s", value_parser = parse_duration)]
        timeout: Duration,
        /// SMTP: after signing in, send a short test message to this address (instead
        /// of the NOOP), which shows the server takes mail from the account.
        #[arg(long, value_name = "ADDRESS")]
        send_to: Option<String>,
        /// The test message's sender (default: the account's user); shows whether the
        /// mailbox may send as this address (Exchange: Send As).
        #[arg(long, value_name = "ADDRESS", requires = "send_to")]
        from: Option<String>,
        /// The report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a working config block for a mail program (msmtp, neomutt, mutt, mbsync,
    /// aerc, git-send-email, himalaya), with mailtoken as its password command.
    Setup {
        #[arg(value_enum)]
        client: Client,
        account: String,
        /// The SASL mechanism the mail program should use.
        #[arg(long, value_enum, default_value_t = Sasl::Xoauth2)]
        mechanism: Sasl,
    },
    /// Forget an account's tokens, revoking them at the provider when it can.
    Logout { account: String },
    /// Show each account's token state, expiry, last refresh and last error.
    Status {
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run the broker daemon on the unix socket ($MAILTOKEN_SOCKET, else
    /// $XDG_RUNTIME_DIR/mailtoken/socket), in the foreground; SIGHUP reloads the config.
    Serve {
        /// Also serve the users in this group (a system service's clients, who reach
        /// its socket through the group: see integrations/systemd/system/).
        #[arg(long, value_name = "GROUP")]
        allow_group: Option<String>,
    },
    /// List the provider presets, or show one in full.
    Providers { name: Option<String> },
    /// Git credential helper for git send-email: `get` answers with the user and a valid
    /// access token of the account whose SMTP server git names; `store` and `erase` do
    /// nothing (git config: credential."smtp://HOST:PORT".helper = "!mailtoken git-credential").
    GitCredential {
        /// get, store or erase (given by git; any other operation is ignored).
        operation: String,
    },
    /// Print shell completions: bash, zsh, fish, elvish or powershell (see the README
    /// for where each goes).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff): `mailtoken man | man -l -`.
    Man,
}

/// A value of one of the library's named enums (`--format`, `--for`): clap lists the
/// names in help and completions, and the type's own `FromStr` does the parsing, the
/// one the daemon protocol uses too.
fn names<T>() -> impl TypedValueParser<Value = T>
where
    T: ValueEnum + FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(T::value_variants().iter().filter_map(T::to_possible_value))
        .try_map(|s| <T as FromStr>::from_str(&s))
}

/// `token ACCOUNT [OPTIONS]` parsed without clap, for the hot path: a mail program runs
/// this on every connection, and building clap's parser costs more than the rest of the
/// call through the daemon. `args` excludes the program name. `None` means "not the
/// plain form": anything unusual (help, a repeated or unknown option, a bad value, a
/// value starting with `-`, `--`) is left to clap, which parses it or explains the
/// mistake. So this never accepts what clap would refuse, nor reads anything differently.
pub fn quick_token(args: &[OsString]) -> Option<Request> {
    let mut args = args.iter().map(|a| a.to_str());
    if args.next()?? != "token" {
        return None;
    }
    let mut t = Request::new("");
    let (mut account, mut seen) = (None, [false; 4]);
    while let Some(arg) = args.next() {
        let arg = arg?;
        if !arg.starts_with('-') {
            if account.replace(arg).is_some() {
                return None;
            }
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (arg, None),
        };
        let slot = match name {
            "--format" | "-f" => 0,
            "--min-valid" => 1,
            "--for" => 2,
            "--wait" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        let value = match inline {
            Some(v) => v,
            None => args.next()??,
        };
        if value.is_empty() || value.starts_with('-') {
            return None;
        }
        match slot {
            0 => t.format = value.parse().ok()?,
            1 => t.min_valid = parse_duration(value).ok()?,
            2 => t.for_proto = value.parse().ok()?,
            _ => t.wait = parse_duration(value).ok()?,
        }
    }
    t.account = account?.to_owned();
    Some(t)
}

/// "5m", "90s", "1h 30m", or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(n) = s.trim().parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (write it like 30s, 5m or 1h)"))
}

/// `serve [--allow-group GROUP]` parsed without clap, for the daemon: building clap's
/// parser for every subcommand touches code all over the executable, and the pages it
/// faults in stay in the daemon's resident memory for as long as it runs
/// (docs/benchmarks.md, section 3). `None` for anything else, which clap parses or
/// refuses; like [`quick_token`], it never accepts what clap would refuse.
pub fn quick_serve(args: &[OsString]) -> Option<Option<String>> {
    let args: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
    match args.as_slice() {
        ["serve"] => Some(None),
        ["serve", "--allow-group", g] if !g.is_empty() && !g.starts_with('-') => {
            Some(Some((*g).to_owned()))
        }
        ["serve", a] => a
            .strip_prefix("--allow-group=")
            .filter(|g| !g.is_empty())
            .map(|g| Some(g.to_owned())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn quick_serve_agrees_with_clap() {
        let clap_serve = |args: &[&str]| -> Option<Option<String>> {
            let argv = std::iter::once("mailtoken").chain(args.iter().copied());
            match Cli::try_parse_from(argv).ok()?.command {
                Command::Serve { allow_group } => Some(allow_group),
                _ => None,
            }
        };
        for args in [
            &["serve"][..],
            &["serve", "--allow-group", "mail"],
            &["serve", "--allow-group=mail"],
        ] {
            let quick = quick_serve(&os(args));
            assert!(quick.is_some(), "{args:?}");
            assert_eq!(quick, clap_serve(args), "{args:?}");
        }
        for args in [
            &["serve", "--help"][..],
            &["serve", "--allow-group"],
            &["serve", "--allow-group="],
            &["serve", "--allow-group", "-x"],
            &["serve", "x"],
            &["serve", "--allow-group", "a", "--allow-group", "b"],
            &["status"],
        ] {
            assert_eq!(quick_serve(&os(args)), None, "{args:?}");
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// What clap makes of `mailtoken ARGS`, when it is a `token` command.
    fn clap_token(args: &[&str]) -> Option<Request> {
        let argv = std::iter::once("mailtoken").chain(args.iter().copied());
        match Cli::try_parse_from(argv).ok()?.command {
            Command::Token {
                account,
                format,
                min_valid,
                for_proto,
                wait,
            } => Some(Request {
                account,
                format,
                min_valid,
                for_proto,
                wait,
            }),
            _ => None,
        }
    }

    #[test]
    fn quick_token_agrees_with_clap() {
        let accepted: &[&[&str]] = &[
            &["token", "work"],
            &["token", "work", "--format", "xoauth2"],
            &["token", "--format=oauthbearer", "work", "--for", "smtp"],
            &["token", "-f", "json", "work"],
            &["token", "work", "--min-valid", "10m", "--wait=5s"],
            &[
                "token",
                "work",
                "--min-valid=90",
                "--for=pop",
                "--wait",
                "1h 30m",
            ],
            &["token", "gmail.personal"],
        ];
        for args in accepted {
            let quick = quick_token(&os(args));
            assert!(quick.is_some(), "{args:?} should take the quick path");
            assert_eq!(quick, clap_token(args), "{args:?}");
        }
        assert_eq!(quick_token(&os(&["token", "w"])), Some(Request::new("w")));
        // Left to clap: it either parses them (the same way) or refuses them.
        let declined: &[&[&str]] = &[
            &["token"],
            &["token", "a", "b"],
            &["token", "--help"],
            &["token", "-h"],
            &["token", "work", "--format", "XOAUTH2"],
            &["token", "work", "--format", "plain"],
            &["token", "work", "--format"],
            &["token", "work", "--format", "raw", "--format", "json"],
            &["token", "work", "--min-valid", "soon"],
            &["token", "work", "--wait", "-1"],
            &["token", "work", "--wait="],
            &["token", "work", "--", "x"],
            &["token", "--", "-work"],
            &["token", "work", "-fjson"],
            &["token", "work", "--verbose"],
            &["status", "work"],
            &["--version"],
            &[],
        ];
        for args in declined {
            assert_eq!(quick_token(&os(args)), None, "{args:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
    }
}
