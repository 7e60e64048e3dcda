//! The command line, as clap definitions. Kept in the library so that `completions`
//! and `man` (and tests) see exactly what the binary parses.

use clap::{Parser, Subcommand, ValueEnum};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "mailtoken",
    version,
    about = "OAuth 2.0 credential helper and token broker for mail programs",
    long_about = "OAuth 2.0 credential helper and token broker for mail programs.\n\n\
        Log in once in the browser with `mailtoken login ACCOUNT`; then use \
        `mailtoken token ACCOUNT` as the password command of msmtp, neomutt, mbsync or aerc. \
        It prints a valid access token every time, refreshing it when needed.\n\n\
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
pub enum Command {
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
        /// Give up waiting for the browser after this long.
        #[arg(long, value_name = "DUR", default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Print a valid credential on stdout, refreshing first if needed.
    Token {
        account: String,
        /// raw (the access token), xoauth2 or oauthbearer (base64 SASL strings), json.
        #[arg(long, short, value_enum, default_value_t = Format::Raw)]
        format: Format,
        /// The token must stay valid at least this long (half its lifetime if shorter).
        #[arg(long, value_name = "DUR", default_value = "5m", value_parser = parse_duration)]
        min_valid: Duration,
        /// Which server's host and port go into an OAUTHBEARER string.
        #[arg(long = "for", value_enum, default_value_t = ForProto::Imap)]
        for_proto: ForProto,
        /// With the daemon: wait up to this long for a refresh in flight or a login in
        /// progress instead of failing at once.
        #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
        wait: Duration,
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
    Serve,
    /// List the provider presets, or show one in full.
    Providers { name: Option<String> },
    /// Print shell completions.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Raw,
    Xoauth2,
    Oauthbearer,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ForProto {
    Imap,
    Pop,
    Smtp,
}

/// "5m", "90s", "1h 30m", or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(n) = s.trim().parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (write it like 30s, 5m or 1h)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
    }
}
