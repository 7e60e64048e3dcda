//! `mailtoken add ADDRESS [NAME]`: from an address to a working mail program. Finds the
//! provider and servers (`crate::discover`), asks only what is still missing (or takes
//! it from flags; never asks without a terminal), appends the account to the config
//! keeping every byte that is there, logs in, verifies, and prints (or, with
//! `--write`, puts in place) the mail program's settings.

mod ask;
pub mod mailconf;
pub mod write;

use crate::config::Config;
use crate::discover::{self, Discovery, Found};
use crate::error::{Error, Result};
use crate::login::LoginOptions;
use crate::providers::{AuthKind, Provider};
use crate::secret::Secret;
use crate::server::{Proto, Server, Tls};
use crate::setup::{Client, Sasl};
use ask::Asker;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use write::Field;

/// Every answer `add` may ask for, as flags.
pub struct AddOptions {
    pub address: String,
    pub name: Option<String>,
    pub provider: Option<String>,
    /// "oauth" or "password".
    pub auth: Option<String>,
    pub user: Option<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_cmd: Option<String>,
    /// A public client: no secret, and no question about one.
    pub no_client_secret: bool,
    pub scopes: Option<Vec<String>>,
    pub imap: Option<String>,
    pub pop: Option<String>,
    pub smtp: Option<String>,
    /// "keyring" or "file".
    pub store: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub dns: Option<SocketAddr>,
    pub no_ispdb: bool,
    pub password_stdin: bool,
    pub no_login: bool,
    pub no_verify: bool,
    pub login: LoginOptions,
    pub client: Option<Client>,
    pub write: bool,
    pub dry_run: bool,
}

/// The options of a parsed `mailtoken add` command line.
pub fn from_cli(cmd: crate::cli::Command) -> Option<AddOptions> {
    use crate::cli::Command;
    match cmd {
        Command::Add {
            address,
            name,
            provider,
            auth,
            user,
            tenant,
            client_id,
            client_secret_cmd,
            no_client_secret,
            scopes,
            imap,
            pop,
            smtp,
            store,
            password_stdin,
            ca_file,
            dns,
            no_ispdb,
            no_login,
            no_verify,
            device,
            paste,
            no_browser,
            client,
            write,
            dry_run,
        } => Some(AddOptions {
            address,
            name,
            provider,
            auth,
            user,
            tenant,
            client_id,
            client_secret_cmd,
            no_client_secret,
            scopes,
            imap,
            pop,
            smtp,
            store,
            ca_file,
            dns,
            no_ispdb,
            password_stdin,
            no_login,
            no_verify,
            login: LoginOptions {
                open_browser: !no_browser,
                port: None,
                paste,
                device,
                timeout: Duration::from_secs(300),
            },
            client,
            write,
            dry_run,
        }),
        _ => None,
    }
}

/// How the account will sign in, settled.
enum Plan {
    Preset {
        provider: &'static Provider,
        tenant: Option<String>,
        auth: AuthKind,
    },
    OAuth(Box<discover::CustomOAuth>),
    Password,
}

pub fn run(mut o: AddOptions) -> Result<()> {
    let asker = Asker::new();
    let (local, domain) = discover::split_address(&o.address)?;
    let path = crate::paths::config_file();
    let old = write::read_existing(&path)?;
    // A config that does not load is the first thing to fix (its error names the line).
    let existing = match &old {
        Some(t) => Some(Config::parse(&path, t)?),
        None => None,
    };
    if let (Some(n), Some(t)) = (&o.name, &old) {
        write::check_existing(&path, t, n)?;
    }
    // 1. Discover, unless the flags say it all.
    let spelled = [&o.imap, &o.pop, &o.smtp].iter().any(|s| s.is_some());
    let mut d = if let Some(p) = &o.provider {
        let provider = crate::providers::find(p).ok_or_else(|| {
            Error::usage(format!(
                "no provider preset `{p}`; known: {}",
                crate::providers::names()
            ))
        })?;
        eprintln!("Provider: {} (--provider)", provider.title);
        Discovery {
            address: o.address.clone(),
            domain: domain.clone(),
            preset: Some(Found {
                value: discover::domains::Hit {
                    provider,
                    tenant: None,
                },
                source: "--provider".into(),
            }),
            ..Default::default()
        }
    } else if spelled && o.auth.is_some() {
        Discovery {
            address: o.address.clone(),
            domain: domain.clone(),
            ..Default::default()
        }
    } else {
        eprintln!("Looking up {domain} ...");
        let opts = discover::Options {
            dns: o.dns,
            ca_file: o.ca_file.clone(),
            timeout: Duration::from_secs(10),
            ispdb: !o.no_ispdb,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::software(format!("runtime: {e}")))?;
        rt.block_on(discover::discover(&o.address, &opts, &mut |l| {
            eprintln!("  {l}")
        }))?
    };
    for (p, flag) in [
        (Proto::Imap, &o.imap),
        (Proto::Pop, &o.pop),
        (Proto::Smtp, &o.smtp),
    ] {
        if let Some(spec) = flag {
            let s = parse_server(p, spec)?;
            let found = Found {
                value: s,
                source: format!("--{}", p.name()),
            };
            match p {
                Proto::Imap => d.imap = Some(found),
                Proto::Pop => d.pop = Some(found),
                Proto::Smtp => d.smtp = Some(found),
            }
        }
    }
    if !d.found_anything() {
        return Err(nothing_found(&d));
    }
    for p in Proto::ALL {
        if let Some(s) = d.server(p) {
            eprintln!(
                "  {} {}:{} ({}), from {}",
                p.title(),
                s.value.host,
                s.value.port,
                s.value.tls.title(),
                s.source
            );
        }
    }

    let taken = |n: &str| {
        existing
            .as_ref()
            .is_some_and(|c| c.accounts.contains_key(n))
    };
    let name = match o.name.take() {
        Some(n) => n,
        None => {
            let suggested = default_name(&local, &domain, &taken);
            asker.text(
                "Account name (for mailtoken and the mail program)",
                Some(&suggested),
                "NAME (after the address)",
                &|n| {
                    if !crate::config::valid_account_name(n) {
                        Err("letters, digits and . _ @ + - only".into())
                    } else if taken(n) {
                        Err(format!("the config already has an account {n}"))
                    } else {
                        Ok(())
                    }
                },
            )?
        }
    };
    if let Some(t) = &old {
        write::check_existing(&path, t, &name)?;
    }
    if !crate::config::valid_account_name(&name) {
        return Err(Error::usage(format!(
            "account name `{name}` may use only letters, digits and . _ @ + -"
        )));
    }

    // 2. Settle the login, asking what is missing.
    let auth_flag = o.auth.as_deref();
    let plan = match (&d.preset, auth_flag) {
        (Some(f), a) => {
            let p = f.value.provider;
            let auth = match a {
                Some("password") => AuthKind::Password,
                Some("oauth") => AuthKind::Oauth,
                Some(other) => {
                    return Err(Error::usage(format!("--auth {other}: oauth or password")));
                }
                None if p.default_auth == AuthKind::Oauth
                    && p.app_passwords.is_some()
                    && p.auth_url.is_some() =>
                {
                    // Both work: OAuth is the default, an app password the simpler setup.
                    AuthKind::Oauth
                }
                None => p.default_auth,
            };
            if auth == AuthKind::Password && p.app_passwords.is_none() {
                return Err(Error::usage(format!(
                    "{} takes no app passwords from mail programs",
                    p.title
                ))
                .with_remedy("Leave --auth out: mailtoken logs in with OAuth."));
            }
            Plan::Preset {
                provider: p,
                tenant: o.tenant.clone().or_else(|| f.value.tenant.clone()),
                auth,
            }
        }
        (None, Some("password")) => Plan::Password,
        (None, Some("oauth")) => match d.oauth.take() {
            Some(c) => Plan::OAuth(Box::new(c.value)),
            None => {
                return Err(Error::usage(format!(
                    "nothing found says where {domain}'s OAuth endpoints are"
                ))
                .with_remedy(format!(
                    "Add the account without OAuth (--auth password), or write auth_url, token_url and scopes into [accounts.{name}] by hand."
                )));
            }
        },
        (None, Some(other)) => {
            return Err(Error::usage(format!("--auth {other}: oauth or password")));
        }
        (None, None) => match d.oauth.take() {
            Some(c) => Plan::OAuth(Box::new(c.value)),
            None => Plan::Password,
        },
    };
    let mut fields: Vec<Field> = Vec::new();
    let user = match &o.user {
        Some(u) => u.clone(),
        None => d
            .user
            .as_ref()
            .map(|u| u.value.clone())
            .unwrap_or_else(|| o.address.clone()),
    };
    let mut client_secret: Option<Secret> = None;
    let mut app_password: Option<Secret> = None;
    // --dry-run: a secret the provider requires was not asked for; the check of the
    // block stands one in.
    let mut secret_pending = false;
    let oauth = !matches!(
        plan,
        Plan::Password
            | Plan::Preset {
                auth: AuthKind::Password,
                ..
            }
    );
    match &plan {
        Plan::Preset {
            provider,
            tenant,
            auth,
        } => {
            fields.push(Field::Str("provider", provider.name.into()));
            if *auth != provider.default_auth {
                fields.push(Field::Str("auth", auth_name(*auth).into()));
            }
            if provider.default_tenant.is_some() && *auth == AuthKind::Oauth {
                let t = asker.text(
                    "Tenant (common, organizations, consumers, a tenant ID or a domain)",
                    Some(
                        tenant
                            .as_deref()
                            .or(provider.default_tenant)
                            .unwrap_or("common"),
                    ),
                    "--tenant",
                    &|_| Ok(()),
                )?;
                if Some(t.as_str()) != provider.default_tenant {
                    fields.push(Field::Str("tenant", t));
                }
            }
        }
        Plan::OAuth(c) => {
            let e = &c.endpoints;
            fields.push(Field::Str("auth_url", e.auth_url.to_string()));
            fields.push(Field::Str("token_url", e.token_url.to_string()));
            if let Some(u) = &e.device_url {
                fields.push(Field::Str("device_url", u.to_string()));
            }
            if let Some(u) = &e.revoke_url {
                fields.push(Field::Str("revoke_url", u.to_string()));
            }
        }
        Plan::Password => fields.push(Field::Str("auth", "password".into())),
    }
    fields.insert(
        fields
            .iter()
            .position(|f| matches!(f, Field::Str("auth_url", _)))
            .unwrap_or(fields.len()),
        Field::Str("user", user.clone()),
    );
    if oauth {
        let provider = match &plan {
            Plan::Preset { provider, .. } => Some(*provider),
            _ => None,
        };
        let id = match &o.client_id {
            Some(id) => id.clone(),
            None => {
                if asker.interactive() {
                    eprintln!("\n{}", registration_steps(provider, &d));
                }
                asker.text("OAuth client ID", None, "--client-id", &|s| {
                    if s.chars().any(char::is_whitespace) {
                        Err("a client ID has no spaces".into())
                    } else {
                        Ok(())
                    }
                })?
            }
        };
        fields.push(Field::Str("client_id", id));
        if let Some(cmd) = &o.client_secret_cmd {
            fields.push(Field::Str("client_secret_cmd", cmd.clone()));
        } else if !o.no_client_secret {
            let needed = provider.is_some_and(|p| p.needs_client_secret);
            let public = provider.is_some_and(|p| !p.needs_client_secret);
            if !public && o.dry_run {
                eprintln!("(--dry-run: the client secret would be asked for here.)");
                secret_pending = needed;
            } else if !public {
                client_secret = asker.secret(
                    "OAuth client secret",
                    "--client-secret-cmd (or --no-client-secret for a public client)",
                    !needed,
                )?;
            }
        }
        if let Plan::OAuth(c) = &plan {
            let scopes = match &o.scopes {
                Some(s) => s.clone(),
                None if !c.scopes.is_empty() => c.scopes.clone(),
                None => asker
                    .text(
                        "Scopes to ask for (space-separated)",
                        None,
                        "--scopes",
                        &|_| Ok(()),
                    )?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            };
            // OpenID Connect Core §11: offline_access is honoured only with
            // prompt=consent, and without it there is no refresh token.
            let offline = scopes.iter().any(|s| s == "offline_access");
            fields.push(Field::List("scopes", scopes));
            if offline {
                fields.push(Field::Map(
                    "auth_params",
                    vec![("prompt".into(), "consent".into())],
                ));
            }
        }
    } else {
        // Before the password is typed: there must be somewhere to keep it.
        if let Some(why) = crate::store::keyring_unreachable() {
            let e = Error::unavailable(format!(
                "app passwords are kept in the OS keyring, and none answers: {why}"
            ))
            .with_remedy(
                "Start a Secret Service (gnome-keyring, KeePassXC) and run mailtoken add again.",
            );
            if !o.dry_run {
                return Err(e);
            }
            eprintln!("(--dry-run: the real run would stop here: {e})");
        }
        let at = match &plan {
            Plan::Preset { provider, .. } => provider.app_passwords,
            _ => None,
        };
        if o.dry_run {
            eprintln!("(--dry-run: the app password would be asked for here.)");
        } else if o.password_stdin {
            app_password = Some(crate::password::input::read_password("")?);
        } else {
            if asker.interactive() {
                match at {
                    Some(at) => eprintln!("\nCreate an app password at {at}, then paste it here."),
                    None => eprintln!(
                        "\nThe password for {user}: where the provider offers app passwords, make one for mailtoken."
                    ),
                }
            }
            app_password = asker.secret("App password", "--password-stdin", false)?;
        }
    }
    // A preset knows its servers; servers given as flags override them.
    let preset = matches!(plan, Plan::Preset { .. });
    for p in Proto::ALL {
        if let Some(s) = d
            .server(p)
            .filter(|s| !preset || s.source.starts_with("--"))
        {
            fields.push(Field::Server(
                p.name(),
                s.value.host.to_string(),
                s.value.port,
                s.value.tls.name(),
            ));
        }
    }
    if !preset && d.imap.is_none() && d.pop.is_none() && d.smtp.is_none() {
        return Err(nothing_found(&d));
    }
    if let Some(ca) = &o.ca_file {
        let ca = std::path::absolute(ca).unwrap_or_else(|_| ca.clone());
        fields.push(Field::Str("ca_file", ca.display().to_string()));
    }
    if let Some(s) = &client_secret {
        fields.push(Field::Str("client_secret", s.expose().to_owned()));
    }

    // The store: only when OAuth tokens need one and the config has not chosen.
    let has_store_table = old.as_deref().is_some_and(|t| {
        t.parse::<toml_edit::DocumentMut>()
            .is_ok_and(|doc| doc.contains_key("store"))
    });
    let store = match (&o.store, oauth, has_store_table) {
        (Some(_), _, true) => {
            return Err(Error::usage(format!(
                "{} already has a [store] table; --store would contradict it",
                path.display()
            ))
            .with_remedy("Leave --store out, or change [store] in the config."));
        }
        (Some(s), _, false) if s == "keyring" || s == "file" => {
            if s == "keyring"
                && let Some(why) = crate::store::keyring_unreachable()
            {
                return Err(
                    Error::unavailable(format!("no keyring answers: {why}")).with_remedy(
                        "Start a Secret Service (gnome-keyring, KeePassXC), or use --store file.",
                    ),
                );
            }
            Some(s.clone())
        }
        (Some(s), _, false) => return Err(Error::usage(format!("--store {s}: keyring or file"))),
        (None, true, false) => match crate::store::keyring_unreachable() {
            Some(why) => {
                let file = crate::store::file::FileStore::default_path();
                eprintln!("\nNo keyring answers ({why}).");
                let ok = asker.yes(
                    &format!("Keep the tokens in {} (mode 0600) instead", file.display()),
                    true,
                    "--store file",
                )?;
                if !ok {
                    return Err(Error::usage("no store for the tokens").with_remedy(
                        "Start a Secret Service (gnome-keyring, KeePassXC) and run mailtoken add again, or use --store file.",
                    ));
                }
                Some("file".to_owned())
            }
            None => None,
        },
        (None, _, _) => None,
    };

    // 3. Write the account.
    let block = write::block(&name, &fields, store.as_deref());
    let new_text = write::appended(old.as_deref(), &block);
    let config = if secret_pending {
        fields.push(Field::Str("client_secret", "(asked)".into()));
        let checked = write::appended(
            old.as_deref(),
            &write::block(&name, &fields, store.as_deref()),
        );
        Config::parse(&path, &checked)?
    } else {
        Config::parse(&path, &new_text)?
    };
    // The block as shown: the typed secret stays off the screen.
    let shown = if client_secret.is_some() {
        let masked: Vec<Field> = fields
            .iter()
            .map(|f| match f {
                Field::Str("client_secret", _) => {
                    Field::Str("client_secret", "(as typed; not shown)".into())
                }
                Field::Str(k, v) => Field::Str(k, v.clone()),
                Field::List(k, v) => Field::List(k, v.clone()),
                Field::Map(k, v) => Field::Map(k, v.clone()),
                Field::Server(k, h, p, t) => Field::Server(k, h.clone(), *p, t),
            })
            .collect();
        write::block(&name, &masked, store.as_deref())
    } else {
        block.clone()
    };
    if o.dry_run {
        eprintln!(
            "\nWould add to {}{}:\n\n{shown}",
            path.display(),
            if old.is_none() {
                " (a new file, mode 0600)"
            } else {
                ""
            }
        );
        let mut then = Vec::new();
        if !oauth {
            then.push("store the app password in the keyring".to_owned());
        }
        if oauth && !o.no_login {
            then.push(format!("log in ({})", login_kind(&o.login)));
        }
        if !o.no_login && !o.no_verify {
            then.push("verify the servers".into());
        }
        if let Some(c) = o.client {
            then.push(format!(
                "print the {} settings{}",
                client_name(c),
                if o.write {
                    " and write them into its config"
                } else {
                    ""
                }
            ));
        }
        if !then.is_empty() {
            eprintln!("and then {}.", then.join(", "));
        }
        eprintln!("(--dry-run: nothing was changed.)");
        return Ok(());
    }
    write::replace(&path, &new_text)?;
    eprintln!(
        "\n{} {}:\n\n{shown}",
        if old.is_none() { "Created" } else { "Added to" },
        path.display()
    );
    let account = config.account(&name)?;

    // 4. Credentials, a check, and the mail program's settings.
    if let Some(pw) = &app_password {
        eprintln!("{}", crate::password::store_password(account, pw)?);
    }
    if oauth
        && !o.no_login
        && let Err(e) = crate::commands::login(&name, &o.login)
    {
        eprintln!(
            "\nThe account is in the config; `mailtoken login {name}` tries the login again."
        );
        return Err(e);
    }
    if !o.no_login && !o.no_verify {
        let opts = crate::verify::Options {
            protos: Vec::new(),
            host: None,
            port: None,
            tls: None,
            mechanism: None,
            timeout: Duration::from_secs(30),
            send_to: None,
            from: None,
        };
        eprintln!("\nChecking the servers (as `mailtoken verify {name}`) ...");
        let report = crate::verify::run(&config, account, &opts)?;
        if report.exit_code == 0 {
            // All is well: a line each; the dialogues are for when something is not.
            for c in &report.checks {
                eprintln!(
                    "  {} {}:{}: logged in{}",
                    c.protocol,
                    c.host,
                    c.port,
                    c.mechanism
                        .map(|m| format!(" with {}", m.name()))
                        .unwrap_or_default()
                );
            }
        } else {
            eprint!("\n{}", crate::verify::render(&report));
            eprintln!(
                "\nThe account is in the config; fix what verify says, then run `mailtoken verify {name}` again."
            );
            std::process::exit(report.exit_code);
        }
    } else if oauth && o.no_login {
        eprintln!("\nNext: `mailtoken login {name}`, then `mailtoken verify {name}`.");
    }
    let client = match o.client {
        Some(c) => Some(c),
        None if asker.interactive() => {
            let names: Vec<&str> = CLIENTS.iter().map(|(n, _)| *n).collect();
            let c = asker.choose(
                "Which mail program shall I print the settings for",
                &names,
                "--client",
            )?;
            CLIENTS.iter().find(|(n, _)| *n == c).map(|(_, c)| *c)
        }
        None => None,
    };
    let Some(client) = client else {
        eprintln!(
            "\nFor a mail program's settings: mailtoken setup msmtp {name} (or neomutt, mutt, mbsync, aerc, git-send-email, himalaya)."
        );
        return Ok(());
    };
    let exe = crate::paths::installed_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mailtoken".to_owned());
    let snippet = crate::setup::snippet(client, account, &exe, Sasl::Xoauth2)?;
    if o.write {
        let file = mailconf::config_file(client)?;
        let (outcome, backup) = mailconf::write(&file, &name, &snippet)?;
        let what = match outcome {
            mailconf::Outcome::Created => format!("Created {}", file.display()),
            mailconf::Outcome::Appended => format!("Added the settings to {}", file.display()),
            mailconf::Outcome::Replaced => format!(
                "Replaced this account's earlier settings in {}",
                file.display()
            ),
            mailconf::Outcome::Unchanged => format!(
                "{} already has these settings; left unchanged",
                file.display()
            ),
        };
        let backup = backup
            .map(|b| format!(" (the old file is in {})", b.display()))
            .unwrap_or_default();
        eprintln!("\n{what}{backup}.");
        print!("{snippet}");
    } else {
        eprintln!(
            "\nSettings for {} (`mailtoken setup {} {name}` prints them again):\n",
            client_name(client),
            client_name(client)
        );
        print!("{snippet}");
    }
    Ok(())
}

const CLIENTS: &[(&str, Client)] = &[
    ("msmtp", Client::Msmtp),
    ("neomutt", Client::Neomutt),
    ("mutt", Client::Mutt),
    ("mbsync", Client::Mbsync),
    ("aerc", Client::Aerc),
    ("git-send-email", Client::GitSendEmail),
    ("himalaya", Client::Himalaya),
];

fn client_name(c: Client) -> &'static str {
    CLIENTS
        .iter()
        .find(|(_, x)| *x == c)
        .map(|(n, _)| *n)
        .unwrap_or("relay")
}

fn auth_name(a: AuthKind) -> &'static str {
    match a {
        AuthKind::Oauth => "oauth",
        AuthKind::Password => "password",
        AuthKind::ClientCredentials => "client_credentials",
        AuthKind::ServiceAccount => "service_account",
    }
}

fn login_kind(l: &LoginOptions) -> &'static str {
    if l.device {
        "with a device code"
    } else if l.paste {
        "pasting the browser's address"
    } else {
        "in the browser"
    }
}

/// The local part, made a valid name; the domain's first label when the local part is
/// taken or unusable.
fn default_name(local: &str, domain: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let clean = |s: &str| -> String {
        s.to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let first = clean(local);
    let label = clean(domain.split('.').next().unwrap_or("mail"));
    for cand in [first.clone(), format!("{first}-{label}"), label.clone()] {
        if !cand.is_empty() && !taken(&cand) {
            return cand;
        }
    }
    (2..)
        .map(|n| format!("{first}{n}"))
        .find(|c| !taken(c))
        .unwrap_or(first)
}

/// `HOST[:PORT]`; the port defaults to the protocol's implicit-TLS one, and the port
/// says how TLS starts.
fn parse_server(p: Proto, spec: &str) -> Result<Server> {
    let bad = |why: &str| {
        Error::usage(format!("--{} {spec:?}: {why}", p.name())).with_remedy(format!(
            "Spell it HOST or HOST:PORT, as in --{} mail.example.com:{}",
            p.name(),
            crate::server::default_port(p, Tls::Implicit)
        ))
    };
    let (host, port) = match spec.rsplit_once(':') {
        Some((h, port)) => (
            h,
            port.parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?,
        ),
        None => (spec, crate::server::default_port(p, Tls::Implicit)),
    };
    if !discover::autoconfig::valid_host(host) {
        return Err(bad("not a host name"));
    }
    Ok(Server {
        host: host.to_ascii_lowercase().into(),
        port,
        tls: Tls::for_port(port),
    })
}

fn nothing_found(d: &Discovery) -> Error {
    // Each lookup was printed as it was made.
    let tried = if d.tried.is_empty() {
        String::new()
    } else {
        format!(" ({} lookups, listed above, found nothing)", d.tried.len())
    };
    Error::unavailable(format!("found no mail servers for {}{tried}", d.domain))
    .with_remedy(format!(
        "Spell the servers out: mailtoken add {} --imap HOST[:PORT] --smtp HOST[:PORT] --auth password \
         (or --auth oauth with the provider's endpoints in the config: see `mailtoken providers`). \
         If a DNS server of your network knows {} and the system's does not, name it with --dns HOST:PORT.",
        d.address, d.domain
    ))
}

/// Where to get an OAuth client, step by step, for the provider found.
fn registration_steps(p: Option<&Provider>, d: &Discovery) -> String {
    match p.map(|p| p.name) {
        Some("google") => "mailtoken needs an OAuth client of your own from Google (free):\n\
             1. Open https://console.cloud.google.com/ and create a project (any name).\n\
             2. Google Auth Platform (https://console.cloud.google.com/auth/overview) > Get started:\n\
             \x20  an app name, your address, audience External (Internal for Workspace), Create.\n\
             3. Audience > Test users > Add users: your own address.\n\
             4. Clients > Create client > Desktop app > Create; copy the client ID and secret.\n\
             5. Audience > Publish app (else the login expires every 7 days).\n\
             (The README's \"Gmail walk-through\" has every step in detail.)"
            .to_owned(),
        Some("microsoft") => "mailtoken needs an app registration of your own in Microsoft Entra:\n\
             1. Open https://entra.microsoft.com > Identity > Applications > App registrations > New registration.\n\
             2. Pick the account types (work/school, personal, or both).\n\
             3. Authentication > Add a platform > Mobile and desktop applications: redirect URI http://localhost;\n\
             \x20  for `--device`, set Allow public client flows: Yes.\n\
             4. API permissions > Add > Microsoft Graph > Delegated: IMAP.AccessAsUser.All,\n\
             \x20  POP.AccessAsUser.All, SMTP.Send, offline_access (an administrator may have to consent).\n\
             5. Copy the Application (client) ID. It is a public client: there is no secret.\n\
             (The README's \"Microsoft 365 / Outlook.com\" section has the details.)"
            .to_owned(),
        _ => {
            let issuer = d
                .oauth
                .as_ref()
                .map(|o| o.value.endpoints.issuer.clone())
                .unwrap_or_default();
            format!(
                "mailtoken needs an OAuth client registered with {} for a desktop (native) app:\n\
                 1. Ask the provider's or your organization's administrator where clients are registered.\n\
                 2. Register a public (native) client with the redirect URI http://127.0.0.1 (any port, RFC 8252 §7.3).\n\
                 3. Allow it the mail scopes the provider names.\n\
                 4. Copy its client ID (and its secret, if it has one).",
                if issuer.is_empty() { "the provider".to_owned() } else { issuer }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_servers() {
        let none = |_: &str| false;
        assert_eq!(
            default_name("Alice.Smith", "example.com", &none),
            "alice.smith"
        );
        assert_eq!(default_name("a+b", "x.org", &|n| n == "a-b"), "a-b-x");
        let s = parse_server(Proto::Smtp, "Mail.Example.com:587").unwrap();
        assert_eq!(
            (s.host.as_ref(), s.port, s.tls),
            ("mail.example.com", 587, Tls::Starttls)
        );
        assert_eq!(parse_server(Proto::Imap, "imap.example").unwrap().port, 993);
        assert!(parse_server(Proto::Imap, "imap.example:x").is_err());
        assert!(parse_server(Proto::Imap, "bad host").is_err());
    }
}
