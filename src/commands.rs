//! What each subcommand does, given parsed arguments. Output for programs goes to
//! stdout (the credential, `status --json`); everything for people goes to stderr,
//! except the listings (`status`, `providers`) that are the command's whole point.

use crate::broker::Broker;
use crate::cli::{Cli, Command, ForProto, Format, TokenArgs};
use crate::config::{Account, Config};
use crate::daemon::client;
use crate::daemon::protocol::{self, Op, Request};
use crate::error::{Error, Result};
use crate::login::{LoginOptions, login};
use crate::providers;
use crate::providers::AuthKind;
use crate::record::{self, TokenRecord};
use crate::sasl;
use crate::server::{Proto, Server, Tls};
use crate::verify;
use clap::CommandFactory;
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};
use zeroize::Zeroizing;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Token {
            account,
            format,
            min_valid,
            for_proto,
            wait,
        } => token(TokenArgs {
            account,
            format,
            min_valid,
            for_proto,
            wait,
        }),
        Command::Login {
            account,
            no_browser,
            port,
            paste,
            timeout,
        } => {
            let broker = open_broker(true)?;
            let acct = broker.account(&account)?;
            // An app-password account has nothing to log in to: say so before anything.
            acct.oauth()?;
            tell_daemon(Op::LoginStarted {
                account: account.clone(),
            });
            let opts = LoginOptions {
                open_browser: !no_browser,
                port,
                paste,
                timeout,
            };
            let result = login(&broker, acct, &opts);
            // Even a failed login may have been racing a refresh; a reload is harmless.
            tell_daemon(Op::Reload { account });
            result
        }
        Command::Verify {
            account,
            imap,
            pop,
            smtp,
            host,
            port,
            tls,
            mechanism,
            timeout,
            json,
        } => {
            let broker = open_broker(!json)?;
            let acct = broker.account(&account)?;
            let protos = [(imap, Proto::Imap), (pop, Proto::Pop), (smtp, Proto::Smtp)]
                .into_iter()
                .filter_map(|(on, p)| on.then_some(p))
                .collect();
            let opts = verify::Options {
                protos,
                host,
                port,
                tls,
                mechanism,
                timeout,
            };
            let report = verify::run(&broker, acct, &opts)?;
            if json {
                let text = serde_json::to_string_pretty(&report)
                    .map_err(|e| Error::software(e.to_string()))?;
                print_stdout(&(text + "\n"))?;
            } else {
                print_stdout(&verify::render(&report))?;
            }
            if report.exit_code != 0 {
                std::process::exit(report.exit_code);
            }
            Ok(())
        }
        Command::Setup {
            client,
            account,
            mechanism,
        } => {
            // Only the account's settings: no store, no keyring.
            let config = Config::load_default()?;
            let acct = config.account(&account)?;
            // The absolute path: mail programs started by cron or systemd may not have
            // this binary's directory in PATH.
            let exe = std::env::current_exe()
                .and_then(std::fs::canonicalize)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "mailtoken".to_owned());
            print_stdout(&crate::setup::snippet(client, acct, &exe, mechanism)?)
        }
        Command::Logout { account } => {
            let broker = open_broker(true)?;
            let acct = broker.account(&account)?;
            if acct.uses_app_password() {
                let (existed, store) = crate::password::forget(acct)?;
                if existed {
                    eprintln!("Forgot the app password of {account} (from the {store}).");
                } else {
                    eprintln!("No app password was stored for {account}.");
                }
                return Ok(());
            }
            let (existed, warning) = broker.logout(acct)?;
            tell_daemon(Op::Reload {
                account: account.clone(),
            });
            if let Some(w) = warning {
                eprintln!("Warning: could not revoke the token at the provider: {w}");
            }
            if existed {
                eprintln!(
                    "Forgot the tokens of {account} (from the {}).",
                    broker.store().describe()
                );
            } else {
                eprintln!("Nothing was stored for {account}.");
            }
            Ok(())
        }
        Command::Status { account, json } => {
            let req = Request {
                v: protocol::VERSION,
                op: Op::Status {
                    account: account.clone(),
                },
            };
            if let Some(mut reply) = client::ask(&req, Duration::ZERO)? {
                let rows: Vec<StatusRow> = match (reply.ok, reply.data.take()) {
                    (true, Some(d)) => serde_json::from_value(d)
                        .map_err(|e| Error::software(format!("daemon status: {e}")))?,
                    _ => return Err(reply.into_error()),
                };
                return print_stdout(&status_text(&rows, json, None)?);
            }
            let broker = open_broker(!json)?;
            let names: Vec<&Account> = match &account {
                Some(a) => vec![broker.account(a)?],
                None => broker.config.accounts.values().collect(),
            };
            let now = record::now();
            let mut rows = Vec::new();
            for a in names {
                if a.uses_app_password() {
                    rows.push(app_password_row(a));
                    continue;
                }
                let rec = broker.load(a);
                rows.push(status_row(a, rec, now, &broker.store().describe()));
            }
            print_stdout(&status_text(&rows, json, Some(&broker.config.path))?)
        }
        Command::Providers { name } => print_stdout(&match name {
            None => list_providers(),
            Some(n) => {
                let p = providers::find(&n).ok_or_else(|| {
                    Error::usage(format!(
                        "no provider preset `{n}`; known: {}",
                        providers::names()
                    ))
                })?;
                describe_provider(p)
            }
        }),
        Command::SetPassword { account } => {
            let config = Config::load_default()?;
            let note = crate::password::set_password(config.account(&account)?)?;
            eprintln!("{note}");
            Ok(())
        }
        Command::Password { account } => {
            let config = Config::load_default()?;
            print_stdout(&crate::password::credential(
                config.account(&account)?,
                Format::Raw,
            )?)
        }
        Command::Serve => crate::daemon::server::serve(),
        Command::GitCredential { operation } => crate::gitcred::run(&operation),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mailtoken", &mut out);
            print_stdout(&String::from_utf8_lossy(&out))
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(|e| Error::software(e.to_string()))?;
            print_stdout(&String::from_utf8_lossy(&out))
        }
    }
}

/// `mailtoken token`: from the daemon when one answers (no config, keyring or TLS on
/// that path), else in this process through the same Broker.
pub fn token(args: TokenArgs) -> Result<()> {
    let req = Request {
        v: protocol::VERSION,
        op: Op::Token {
            account: args.account.clone(),
            format: args.format.as_str().to_owned(),
            min_valid: args.min_valid.as_secs(),
            for_proto: Some(args.for_proto.as_str().to_owned()),
            wait_ms: u64::try_from(args.wait.as_millis()).unwrap_or(u64::MAX),
        },
    };
    if let Some(reply) = client::ask(&req, args.wait)? {
        return match reply.credential {
            Some(c) if reply.ok => print_stdout(&Zeroizing::new(c + "\n")),
            _ => Err(reply.into_error()),
        };
    }
    let config = Config::load_default()?;
    if let Some(acct) = config.accounts.get(&args.account)
        && acct.uses_app_password()
    {
        return print_stdout(&crate::password::credential(acct, args.format)?);
    }
    let broker = Broker::open(config)?;
    let acct = broker.account(&args.account)?;
    let rec = broker.access_token(acct, args.min_valid)?;
    let out = render(args.format, acct, &rec, args.for_proto)?;
    print_stdout(&out)
}

fn open_broker(show_notice: bool) -> Result<Broker> {
    let broker = Broker::open(Config::load_default()?)?;
    // Not for `token`: a password command's stderr lands in the mail program's screen
    // on every connection. `status` shows the store in use instead.
    if show_notice && let Some(n) = &broker.store_notice {
        eprintln!("mailtoken: {n}");
    }
    Ok(broker)
}

fn print_stdout(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io(format!("writing to stdout: {e}")))
}

/// The credential in the form the caller asked for, with a trailing newline.
pub fn render(
    format: Format,
    account: &Account,
    rec: &TokenRecord,
    for_proto: ForProto,
) -> Result<Zeroizing<String>> {
    let token = rec
        .access_token
        .as_ref()
        .ok_or_else(|| Error::software("no access token to print"))?;
    let t = token.expose();
    let s = match format {
        Format::Raw => Zeroizing::new(t.to_owned()),
        Format::Xoauth2 => sasl::xoauth2(&account.user, t),
        Format::Oauthbearer => {
            let proto = match for_proto {
                ForProto::Imap => Proto::Imap,
                ForProto::Pop => Proto::Pop,
                ForProto::Smtp => Proto::Smtp,
            };
            let server = account.server(proto);
            sasl::oauthbearer(
                &account.user,
                server.map(|s| &*s.host),
                server.map(|s| s.port),
                t,
            )
        }
        Format::Json => Zeroizing::new(
            serde_json::json!({
                "access_token": t,
                "token_type": "Bearer",
                "expires_at": rec.expires_at,
                "account": account.name,
                "user": account.user,
            })
            .to_string(),
        ),
    };
    let mut s = s;
    s.push('\n');
    Ok(s)
}

/// Tells a running daemon about a change made in this process; without one, nothing to do.
pub(crate) fn tell_daemon(op: Op) {
    let _ = client::ask(
        &Request {
            v: protocol::VERSION,
            op,
        },
        Duration::ZERO,
    );
}

fn status_text(rows: &[StatusRow], json: bool, config: Option<&std::path::Path>) -> Result<String> {
    Ok(if json {
        serde_json::to_string_pretty(rows).map_err(|e| Error::software(e.to_string()))? + "\n"
    } else if rows.is_empty() {
        match config {
            Some(p) => format!("No accounts in {}.\n", p.display()),
            None => "No accounts.\n".to_owned(),
        }
    } else {
        rows.iter()
            .map(render_status)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StatusRow {
    account: String,
    provider: Option<String>,
    user: String,
    kind: String,
    /// none | valid | expired | needs_login | error; app passwords: none | stored | error
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in: Option<i64>,
    expiry_assumed: bool,
    has_refresh_token: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    logged_in_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refreshed_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    store: String,
    /// Answered by the daemon (its memory), not read from the store by this process.
    #[serde(default)]
    pub(crate) daemon: bool,
}

pub(crate) fn status_row(
    a: &Account,
    rec: Result<Option<TokenRecord>>,
    now: u64,
    store: &str,
) -> StatusRow {
    let mut row = StatusRow {
        account: a.name.clone(),
        provider: a.provider.map(|p| p.name.to_owned()),
        user: a.user.clone(),
        kind: "oauth".into(),
        state: "none".into(),
        expires_at: None,
        expires_in: None,
        expiry_assumed: false,
        has_refresh_token: false,
        logged_in_at: None,
        refreshed_at: None,
        last_error: None,
        store: store.to_owned(),
        daemon: false,
    };
    match rec {
        Err(e) => {
            row.state = "error".into();
            row.last_error = Some(e.to_string());
        }
        Ok(None) => {}
        Ok(Some(r)) => {
            row.state = if r.needs_login() {
                "needs_login"
            } else if r.access_token.is_some() && r.remaining(now) > 0 {
                "valid"
            } else {
                "expired"
            }
            .into();
            row.expires_at = r.expires_at;
            row.expires_in = r.expires_at.map(|e| e as i64 - now as i64);
            row.expiry_assumed = r.expiry_assumed;
            row.has_refresh_token = r.refresh_token.is_some();
            row.logged_in_at = (r.logged_in_at > 0).then_some(r.logged_in_at);
            row.refreshed_at = r.refreshed_at;
            row.last_error = r
                .last_error
                .map(|e| format!("{} ({})", e.message, time(e.at)));
        }
    }
    row
}

/// The row of an app-password account (kind "password"): whether the keyring holds
/// its password, and under which attributes.
pub(crate) fn app_password_row(a: &Account) -> StatusRow {
    let found = crate::password::stored(a);
    let mut row = status_row(a, Ok(None), 0, &found.store);
    row.kind = "password".into();
    match found.stored {
        Ok(true) => row.state = "stored".into(),
        Ok(false) => {}
        Err(e) => {
            row.state = "error".into();
            row.last_error = Some(e.to_string());
        }
    }
    row
}

fn time(t: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string()
}

fn render_status(r: &StatusRow) -> String {
    let mut s = format!(
        "{} ({}{})\n",
        r.account,
        r.user,
        r.provider
            .as_deref()
            .map(|p| format!(", {p}"))
            .unwrap_or_default()
    );
    if r.kind == "password" {
        s += &format!(
            "  app password:  {}\n",
            match r.state.as_str() {
                "stored" => "stored".to_owned(),
                "error" => "unknown (the keyring could not be read)".to_owned(),
                _ => format!("none; run `mailtoken set-password {}`", r.account),
            }
        );
        if let Some(e) = &r.last_error {
            s += &format!(
                "  last error:    {}\n",
                e.replace('\n', "\n                 ")
            );
        }
        s += &format!(
            "  store:         {}{}\n",
            r.store,
            if r.daemon {
                " (answered by the daemon)"
            } else {
                ""
            }
        );
        return s;
    }
    let token = match (r.state.as_str(), r.expires_in) {
        ("none", _) => format!("none; run `mailtoken login {}`", r.account),
        ("error", _) => "unknown (the store could not be read)".to_owned(),
        (_, Some(left)) if left > 0 => format!(
            "valid for {} (until {}){}",
            humantime::format_duration(Duration::from_secs(left as u64)),
            time(r.expires_at.unwrap_or(0)),
            if r.expiry_assumed {
                ", expiry assumed: the provider sent no expires_in"
            } else {
                ""
            }
        ),
        _ => format!(
            "expired{}",
            if r.has_refresh_token {
                "; the next `token` call refreshes it"
            } else {
                ""
            }
        ),
    };
    s += &format!("  access token:  {token}\n");
    if r.state != "none" && r.state != "error" {
        s += &format!(
            "  refresh token: {}\n",
            if r.has_refresh_token {
                "stored"
            } else {
                "none (the provider issued none; log in again when the access token expires)"
            }
        );
    }
    if let Some(t) = r.logged_in_at {
        s += &format!("  logged in:     {}\n", time(t));
    }
    if let Some(t) = r.refreshed_at {
        s += &format!("  last refresh:  {}\n", time(t));
    }
    if let Some(e) = &r.last_error {
        s += &format!(
            "  last error:    {}\n",
            e.replace('\n', "\n                 ")
        );
    }
    if r.state == "needs_login" {
        s += &format!("  action:        run `mailtoken login {}`\n", r.account);
    }
    s += &format!(
        "  store:         {}{}\n",
        r.store,
        if r.daemon {
            " (answered by the daemon)"
        } else {
            ""
        }
    );
    s
}

fn list_providers() -> String {
    let mut s = String::from("Provider presets (use `mailtoken providers NAME` for details):\n");
    for p in providers::ALL {
        let how = match p.default_auth {
            AuthKind::Oauth => "",
            AuthKind::Password => " (app password)",
        };
        s += &format!("  {:<10} {}{how}\n", p.name, p.title);
    }
    s += "Any other OAuth 2.0 provider: leave `provider` out and set auth_url, token_url and scopes.\n";
    s += "Any other server with a password: leave `provider` out, set auth = \"password\" and its servers.\n";
    s
}

fn server_line(label: &str, s: &Server) -> String {
    let tls = match s.tls {
        Tls::Implicit => "implicit TLS",
        Tls::Starttls => "STARTTLS",
    };
    format!("  {label:<14} {}:{} ({tls})\n", s.host, s.port)
}

fn describe_provider(p: &providers::Provider) -> String {
    let mut s = format!("{} ({})\n", p.name, p.title);
    s += &match (p.default_auth, p.app_passwords) {
        (AuthKind::Password, Some(at)) => format!(
            "  sign-in        app password (`mailtoken set-password ACCOUNT`); create one at {at}\n"
        ),
        (AuthKind::Oauth, Some(at)) => format!(
            "  sign-in        OAuth; or an app password with auth = \"password\": create one at {at}\n"
        ),
        _ => "  sign-in        OAuth\n".to_owned(),
    };
    if let (Some(auth), Some(token)) = (p.auth_url, p.token_url) {
        s += &format!("  authorization  {auth}\n  token          {token}\n");
    }
    if let Some(u) = p.device_url {
        s += &format!("  device         {u}\n");
    }
    if let Some(u) = p.revoke_url {
        s += &format!("  revocation     {u}\n");
    }
    if !p.scopes.is_empty() {
        s += &format!("  scopes         {}\n", p.scopes.join(" "));
    }
    if !p.auth_params.is_empty() {
        let params: Vec<String> = p
            .auth_params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s += &format!("  auth params    {}\n", params.join(" "));
    }
    if p.auth_url.is_some() {
        s += &format!("  redirect       http://{}:PORT/\n", p.redirect_host);
    }
    if let Some(t) = p.default_tenant {
        s += &format!("  tenant         {t} (default; set `tenant` in the account)\n");
    }
    for (label, srv) in [("IMAP", &p.imap), ("POP3", &p.pop), ("SMTP", &p.smtp)] {
        if let Some(srv) = srv {
            s += &server_line(label, srv);
        }
    }
    for srv in p.smtp_alternatives {
        s += &server_line("SMTP (also)", srv);
    }
    for n in p.notes {
        s += &format!("  - {n}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use base64::Engine;

    fn account() -> Account {
        let c = Config::parse(
            std::path::Path::new("c.toml"),
            "[accounts.a]\nprovider = \"google\"\nuser = \"a@gmail.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n",
        )
        .unwrap();
        c.accounts["a"].clone()
    }

    fn rec() -> TokenRecord {
        TokenRecord {
            access_token: Some(Secret::new("TOK")),
            expires_at: Some(2000),
            obtained_at: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn render_formats() {
        let a = account();
        let r = rec();
        assert_eq!(
            render(Format::Raw, &a, &r, ForProto::Imap)
                .unwrap()
                .as_str(),
            "TOK\n"
        );
        let x = render(Format::Xoauth2, &a, &r, ForProto::Imap).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(x.trim())
            .unwrap();
        assert_eq!(raw, b"user=a@gmail.com\x01auth=Bearer TOK\x01\x01");
        let o = render(Format::Oauthbearer, &a, &r, ForProto::Smtp).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(o.trim())
            .unwrap();
        assert_eq!(
            raw,
            b"n,a=a@gmail.com,\x01host=smtp.gmail.com\x01port=465\x01auth=Bearer TOK\x01\x01"
        );
        let j: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &a, &r, ForProto::Imap).unwrap()).unwrap();
        assert_eq!(j["access_token"], "TOK");
        assert_eq!(j["expires_at"], 2000);
        assert_eq!(j["user"], "a@gmail.com");
    }

    #[test]
    fn status_shows_assumed_expiry_and_needs_login() {
        let a = account();
        let mut r = rec();
        r.expiry_assumed = true;
        let row = status_row(&a, Ok(Some(r.clone())), 1500, "file x");
        assert_eq!(row.state, "valid");
        assert!(
            render_status(&row).contains("expiry assumed"),
            "{}",
            render_status(&row)
        );
        r.last_error = Some(record::LastError {
            at: 1600,
            kind: "invalid_grant".into(),
            message: "rejected".into(),
        });
        let row = status_row(&a, Ok(Some(r)), 1700, "file x");
        assert_eq!(row.state, "needs_login");
        assert!(render_status(&row).contains("run `mailtoken login a`"));
        let row = status_row(&a, Ok(None), 1700, "file x");
        assert_eq!(row.state, "none");
    }

    #[test]
    fn app_password_presets_are_listed_and_described() {
        let l = list_providers();
        for p in ["icloud", "fastmail", "yahoo"] {
            assert!(l.contains(p), "{l}");
        }
        assert!(l.contains("iCloud Mail (app password)"), "{l}");
        let d = describe_provider(&providers::ICLOUD);
        assert!(d.contains("sign-in        app password"), "{d}");
        assert!(d.contains("smtp.mail.me.com:587 (STARTTLS)"), "{d}");
        assert!(
            !d.contains("authorization") && !d.contains("redirect"),
            "{d}"
        );
        let g = describe_provider(&providers::GOOGLE);
        assert!(
            g.contains("or an app password with auth = \"password\""),
            "{g}"
        );
    }

    #[test]
    fn providers_listing_names_every_preset() {
        let l = list_providers();
        assert!(l.contains("google") && l.contains("microsoft"));
        let g = describe_provider(&providers::GOOGLE);
        assert!(
            g.contains("imap.gmail.com:993 (implicit TLS)")
                && g.contains("smtp.gmail.com:587 (STARTTLS)"),
            "{g}"
        );
    }
}
