//! What each subcommand does, given parsed arguments: one function per subcommand.
//! Output for programs goes to stdout (the credential, `status --json`); everything for
//! people goes to stderr, except the listings (`status`, `providers`) that are the
//! command's whole point.

use crate::broker::Broker;
use crate::cli::{Cli, Command};
use crate::config::{Account, Config};
use crate::credential::{self, Request};
use crate::error::{Error, Result};
use crate::ipc::client;
use crate::ipc::protocol::{self, Op};
use crate::login::LoginOptions;
use crate::server::Proto;
use crate::setup::{Client, Sasl};
use crate::state::AccountState;
use crate::status::{self, Row};
use crate::verify;
use crate::{providers, record};
use clap::CommandFactory;
use std::io::Write;
use std::time::Duration;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        // Run by its own executable, mailtoken-add (src/add_main.rs; mailtoken-core
        // hands `add` to it before it gets here).
        Command::Add { .. } => Err(Error::software(
            "`add` is run by mailtoken-add, beside mailtoken-core",
        )),
        Command::Token {
            account,
            format,
            min_valid,
            for_proto,
            wait,
        } => token(Request {
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
            device,
            timeout,
        } => login(
            &account,
            &LoginOptions {
                open_browser: !no_browser,
                port,
                paste,
                device,
                timeout,
            },
        ),
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
            send_to,
            from,
            json,
        } => {
            let protos = [(imap, Proto::Imap), (pop, Proto::Pop), (smtp, Proto::Smtp)]
                .into_iter()
                .filter_map(|(on, p)| on.then_some(p))
                .collect();
            verify_cmd(
                &account,
                verify::Options {
                    protos,
                    host,
                    port,
                    tls,
                    mechanism,
                    timeout,
                    send_to,
                    from,
                },
                json,
            )
        }
        Command::Setup {
            client,
            account,
            mechanism,
        } => setup(client, &account, mechanism),
        Command::Logout { account } => logout(&account),
        Command::Status { account, json } => status_cmd(account.as_deref(), json),
        Command::Providers { name } => providers_cmd(name.as_deref()),
        Command::SetPassword { account } => set_password(&account),
        Command::Password { account } => password(&account),
        Command::RelayPassword { account, rotate } => relay_password(&account, rotate),
        Command::Serve { allow_group } => crate::daemon::serve(allow_group.as_deref()),
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

/// `mailtoken token`: the credential on stdout with a newline, nothing else; a note
/// about the store (it refused the new tokens, which are kept elsewhere) on stderr.
pub fn token(req: Request) -> Result<()> {
    let c = credential::get(&req)?;
    if let Some(w) = &c.warning {
        eprintln!("mailtoken: warning: {w}");
    }
    let mut out = zeroize::Zeroizing::new(String::with_capacity(c.secret.len() + 1));
    out.push_str(&c.secret);
    out.push('\n');
    print_stdout(&out)
}

/// `mailtoken login`: obtains tokens in the browser (or from a pasted URL) and stores
/// them; a running daemon waits for it (`token --wait`) and reads the store after.
pub(crate) fn login(account: &str, opts: &LoginOptions) -> Result<()> {
    let broker = open_broker(true)?;
    let acct = broker.account(account)?;
    // An app-password or app-only account has nothing to log in to: say so first.
    acct.login_oauth()?;
    client::tell(Op::LoginStarted {
        account: account.to_owned(),
    });
    let result = crate::login::login(&broker, acct, opts);
    // Even a failed login may have been racing a refresh; a reload is harmless.
    client::tell(Op::Reload {
        account: account.to_owned(),
    });
    result
}

/// `mailtoken relay-password ACCOUNT [--rotate]`.
fn relay_password(account: &str, rotate: bool) -> Result<()> {
    let config = Config::load_default()?;
    let acct = config.account(account)?;
    if acct
        .relay
        .as_ref()
        .is_none_or(|r| r.smtp.is_none() && r.imap.is_none() && r.pop.is_none())
    {
        return Err(Error::usage(format!("account {account} has no relay")).with_remedy(format!(
            "Add one to the config: [accounts.{account}.relay] with smtp = \"127.0.0.1:2587\"; `mailtoken serve` runs it."
        )));
    }
    let p = crate::relay::password::get_or_make(account, rotate)?;
    print_stdout(&format!("{}\n", p.expose()))
}

fn verify_cmd(account: &str, opts: verify::Options, json: bool) -> Result<()> {
    let config = Config::load_default()?;
    let acct = config.account(account)?;
    let report = verify::run(&config, acct, &opts)?;
    if json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Error::software(e.to_string()))?;
        print_stdout(&(text + "\n"))?;
    } else {
        print_stdout(&verify::render(&report))?;
    }
    if report.exit_code != 0 {
        std::process::exit(report.exit_code);
    }
    Ok(())
}

/// `mailtoken setup`: only the account's settings, no store and no keyring.
fn setup(client: Client, account: &str, mechanism: Sasl) -> Result<()> {
    let config = Config::load_default()?;
    let acct = config.account(account)?;
    // The absolute path: mail programs started by cron or systemd may not have this
    // binary's directory in PATH.
    let exe = crate::paths::installed_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mailtoken".to_owned());
    print_stdout(&crate::setup::snippet(client, acct, &exe, mechanism)?)
}

fn logout(account: &str) -> Result<()> {
    let broker = open_broker(true)?;
    let acct = broker.account(account)?;
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
    client::tell(Op::Reload {
        account: account.to_owned(),
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

/// `mailtoken status`: from the daemon's memory when one runs, else from the store.
fn status_cmd(account: Option<&str>, json: bool) -> Result<()> {
    let req = protocol::Request {
        v: protocol::VERSION,
        op: Op::Status {
            account: account.map(str::to_owned),
        },
    };
    if let Some(mut reply) = client::ask(&req, Duration::ZERO)? {
        let rows: Vec<Row> = match (reply.ok, reply.data.take()) {
            (true, Some(d)) => serde_json::from_value(d)
                .map_err(|e| Error::software(format!("daemon status: {e}")))?,
            _ => return Err(reply.into_error()),
        };
        return print_stdout(&status::text(&rows, json, None)?);
    }
    let broker = open_broker(!json)?;
    let accounts: Vec<&Account> = match account {
        Some(a) => vec![broker.account(a)?],
        None => broker.config.accounts.values().collect(),
    };
    let (now, store) = (record::Now::current(), broker.store().describe());
    let rows: Vec<Row> = accounts
        .into_iter()
        .map(|a| {
            if a.uses_app_password() {
                return Row::password(a);
            }
            match broker.load(a) {
                Ok(rec) => Row::oauth(
                    a,
                    &AccountState::from_record(rec),
                    now.clone(),
                    &store,
                    broker.rescued_at(a).as_deref(),
                ),
                Err(e) => Row::unreadable(a, &e, &store),
            }
        })
        .collect();
    print_stdout(&status::text(&rows, json, Some(&broker.config.path))?)
}

fn providers_cmd(name: Option<&str>) -> Result<()> {
    print_stdout(&match name {
        None => providers::listing(),
        Some(n) => {
            let p = providers::find(n).ok_or_else(|| {
                Error::usage(format!(
                    "no provider preset `{n}`; known: {}",
                    providers::names()
                ))
            })?;
            providers::describe(p)
        }
    })
}

fn set_password(account: &str) -> Result<()> {
    let config = Config::load_default()?;
    let note = crate::password::set_password(config.account(account)?)?;
    eprintln!("{note}");
    Ok(())
}

/// `mailtoken password`: the app password, through the same service as `token`.
fn password(account: &str) -> Result<()> {
    let config = Config::load_default()?;
    // For the words: `password` on an OAuth account points at `token`.
    crate::password::require_app_password(config.account(account)?)?;
    token(Request::new(account))
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
