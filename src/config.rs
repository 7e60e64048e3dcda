//! The user's config file (TOML), turned into resolved [`Account`]s: provider presets
//! filled in, URLs checked, and every mistake reported with file, line, column and the
//! fix, because a password command that fails silently is the worst kind of bug.

use crate::error::{Error, Result};
use crate::paths::expand_home;
use crate::providers::{self, AuthKind, Provider};
use crate::secret::Secret;
use crate::server::{Proto, Server, Tls, default_port};
use crate::store::StoreConfig;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use url::Url;

/// Network timeout for token requests unless the config says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub accounts: BTreeMap<String, Account>,
    pub store: StoreConfig,
    pub timeout: Duration,
    /// Run (by the daemon) once when an account needs a new login.
    pub notify_cmd: Option<String>,
}

/// The account's way of signing in, with what it needs.
#[derive(Debug, Clone)]
pub enum Auth {
    OAuth(Box<OAuth>),
    /// The password itself lives in the OS keyring, never in the config.
    Password,
}

/// One account, with the provider preset already applied.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub user: String,
    pub provider: Option<&'static Provider>,
    pub auth: Auth,
    pub imap: Option<Server>,
    pub pop: Option<Server>,
    pub smtp: Option<Server>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct OAuth {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_cmd: Option<String>,
    pub auth_url: Url,
    pub token_url: Url,
    pub device_url: Option<Url>,
    pub revoke_url: Option<Url>,
    pub scopes: Vec<String>,
    pub auth_params: Vec<(String, String)>,
    /// Host of the loopback redirect URI: `127.0.0.1`, `localhost` or `[::1]`.
    pub redirect_host: String,
    /// Path of the loopback redirect URI; must match what the client registered.
    pub redirect_path: String,
}

impl Account {
    /// The OAuth settings; for an app-password account, a usage error that says what
    /// to run instead (`login` and `verify --mechanism xoauth2` end up here).
    pub fn oauth(&self) -> Result<&OAuth> {
        match &self.auth {
            Auth::OAuth(o) => Ok(o.as_ref()),
            Auth::Password => Err(Error::usage(format!(
                "account {} signs in with an app password (auth = \"password\"), not OAuth",
                self.name
            ))
            .with_remedy(format!(
                "Store the app password with `mailtoken set-password {}`; `mailtoken password {}` prints it.",
                self.name, self.name
            ))),
        }
    }

    pub fn uses_app_password(&self) -> bool {
        matches!(self.auth, Auth::Password)
    }

    pub fn server(&self, proto: Proto) -> Option<&Server> {
        match proto {
            Proto::Imap => self.imap.as_ref(),
            Proto::Pop => self.pop.as_ref(),
            Proto::Smtp => self.smtp.as_ref(),
        }
    }
}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    accounts: BTreeMap<Spanned<String>, Spanned<RawAccount>>,
    #[serde(default)]
    store: StoreConfig,
    timeout: Option<Spanned<String>>,
    notify_cmd: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    provider: Option<Spanned<String>>,
    auth: Option<Spanned<AuthKind>>,
    tenant: Option<String>,
    user: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_cmd: Option<String>,
    auth_url: Option<Spanned<String>>,
    token_url: Option<Spanned<String>>,
    device_url: Option<Spanned<String>>,
    revoke_url: Option<Spanned<String>>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    auth_params: BTreeMap<String, String>,
    redirect_host: Option<Spanned<String>>,
    redirect_path: Option<Spanned<String>>,
    imap: Option<RawServer>,
    pop: Option<RawServer>,
    smtp: Option<RawServer>,
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    host: String,
    port: Option<u16>,
    tls: Option<Tls>,
}

/// Where in the file a problem is, for messages of the form `FILE:LINE:COL: ...`.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    fn error(&self, span: Option<Range<usize>>, message: &str, remedy: Option<String>) -> Error {
        let at = match span {
            Some(s) => {
                let (l, c) = self.line_col(s.start);
                format!("{}:{l}:{c}", self.path.display())
            }
            None => self.path.display().to_string(),
        };
        let e = Error::config(format!("{at}: {message}"));
        match remedy {
            Some(r) => e.with_remedy(r),
            None => e,
        }
    }
}

impl Config {
    /// Reads the config at `$MAILTOKEN_CONFIG` or the XDG path.
    pub fn load_default() -> Result<Config> {
        Self::load(&crate::paths::config_file())
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::config(format!("no config file at {}", path.display()))
                    .with_remedy(format!(
                        "Create it with an account, for example:\n\n{EXAMPLE}\n\
                         (`mailtoken providers` lists the presets; MAILTOKEN_CONFIG points elsewhere.)"
                    )));
            }
            Err(e) => {
                return Err(Error::config(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let src = Source { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim_end().replace('\n', " ");
            src.error(e.span(), &msg, remedy_for_toml_error(&msg))
        })?;
        let timeout = match &raw.timeout {
            Some(t) => parse_duration(&src, t)?,
            None => DEFAULT_TIMEOUT,
        };
        let mut accounts = BTreeMap::new();
        for (name, acct) in raw.accounts {
            let account = resolve(&src, &name, acct)?;
            accounts.insert(account.name.clone(), account);
        }
        Ok(Config {
            path: path.to_owned(),
            accounts,
            store: raw.store,
            timeout,
            notify_cmd: raw.notify_cmd,
        })
    }

    /// The named account, or an error that lists the ones there are.
    pub fn account(&self, name: &str) -> Result<&Account> {
        self.accounts.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.accounts.keys().map(String::as_str).collect();
            let list = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            Error::config(format!(
                "no account `{name}` in {} (accounts: {list})",
                self.path.display()
            ))
            .with_remedy(format!(
                "Add an [accounts.{name}] table, or use one of those names."
            ))
        })
    }
}

fn remedy_for_toml_error(msg: &str) -> Option<String> {
    if msg.contains("unknown field") {
        Some(
            "Check the spelling; `mailtoken providers NAME` and the README list the valid keys."
                .into(),
        )
    } else if msg.contains("invalid string") || msg.contains("expected") {
        Some("Strings need double quotes, e.g. user = \"alice@gmail.com\".".into())
    } else {
        None
    }
}

fn parse_duration(src: &Source, s: &Spanned<String>) -> Result<Duration> {
    humantime::parse_duration(s.get_ref()).map_err(|e| {
        src.error(
            Some(s.span()),
            &format!("`{}` is not a duration: {e}", s.get_ref()),
            Some("Write durations like \"30s\", \"5m\" or \"1h\".".into()),
        )
    })
}

fn parse_url(src: &Source, s: &Spanned<String>, key: &str) -> Result<Url> {
    let url = Url::parse(s.get_ref()).map_err(|e| {
        src.error(
            Some(s.span()),
            &format!("{key} `{}` is not a URL: {e}", s.get_ref()),
            None,
        )
    })?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(src.error(
            Some(s.span()),
            &format!("{key} must use https (plain http is allowed only on loopback)"),
            None,
        ));
    }
    Ok(url)
}

fn valid_account_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c))
}

fn resolve(src: &Source, name: &Spanned<String>, acct: Spanned<RawAccount>) -> Result<Account> {
    let span = acct.span();
    let here = || Some(name.span());
    let name = name.get_ref().clone();
    let a = acct.into_inner();
    if !valid_account_name(&name) {
        return Err(src.error(
            here(),
            &format!("account name `{name}` may use only letters, digits and . _ @ + -"),
            None,
        ));
    }
    let provider = match &a.provider {
        Some(p) => Some(providers::find(p.get_ref()).ok_or_else(|| {
            src.error(
                Some(p.span()),
                &format!("unknown provider `{}`", p.get_ref()),
                Some(format!(
                    "Known providers: {}. For any other, leave `provider` out and set auth_url, token_url and scopes.",
                    providers::names()
                )),
            )
        })?),
        None => None,
    };
    let missing = |key: &str, hint: &str| {
        src.error(
            Some(span.clone()),
            &format!("account `{name}` has no `{key}`"),
            Some(hint.to_owned()),
        )
    };
    let user = a.user.clone().ok_or_else(|| {
        missing(
            "user",
            "Add user = \"you@example.com\": the mail address the servers know you by.",
        )
    })?;
    let server =
        |own: &Option<RawServer>, preset: Option<&Server>, proto: Proto| -> Option<Server> {
            let Some(s) = own else {
                return preset.cloned();
            };
            let tls = s
                .tls
                .unwrap_or_else(|| s.port.map_or(Tls::Implicit, Tls::for_port));
            let port = s.port.unwrap_or_else(|| default_port(proto, tls));
            Some(Server {
                host: Cow::Owned(s.host.clone()),
                port,
                tls,
            })
        };
    let imap = server(&a.imap, provider.and_then(|p| p.imap.as_ref()), Proto::Imap);
    let pop = server(&a.pop, provider.and_then(|p| p.pop.as_ref()), Proto::Pop);
    let smtp = server(&a.smtp, provider.and_then(|p| p.smtp.as_ref()), Proto::Smtp);
    let auth = match &a.auth {
        Some(k) => *k.get_ref(),
        None => provider.map_or(AuthKind::Oauth, |p| p.default_auth),
    };
    let auth_span = || a.auth.as_ref().map_or(span.clone(), |k| k.span());
    if auth == AuthKind::Password {
        if let Some(p) = provider.filter(|p| p.app_passwords.is_none()) {
            return Err(src.error(
                Some(auth_span()),
                &format!(
                    "provider `{}` ({}) does not accept app passwords for mail programs",
                    p.name, p.title
                ),
                Some(format!(
                    "Remove auth = \"password\" to use OAuth. If your server still takes a password, leave `provider` out and set imap, pop and smtp in [accounts.{name}]."
                )),
            ));
        }
        // Keys that only OAuth uses are mistakes here, not harmless leftovers: the
        // account would silently not do what they say.
        let stray: Vec<&str> = [
            ("tenant", a.tenant.is_some()),
            ("client_id", a.client_id.is_some()),
            ("client_secret", a.client_secret.is_some()),
            ("client_secret_cmd", a.client_secret_cmd.is_some()),
            ("auth_url", a.auth_url.is_some()),
            ("token_url", a.token_url.is_some()),
            ("device_url", a.device_url.is_some()),
            ("revoke_url", a.revoke_url.is_some()),
            ("scopes", a.scopes.is_some()),
            ("auth_params", !a.auth_params.is_empty()),
            ("redirect_host", a.redirect_host.is_some()),
            ("redirect_path", a.redirect_path.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if !stray.is_empty() {
            return Err(src.error(
                Some(span.clone()),
                &format!(
                    "account `{name}` signs in with an app password (auth = \"password\"), so {} {} not apply",
                    stray.join(", "),
                    if stray.len() == 1 { "does" } else { "do" }
                ),
                Some("Remove them, or set auth = \"oauth\" to use OAuth.".into()),
            ));
        }
        if imap.is_none() && pop.is_none() && smtp.is_none() {
            return Err(missing(
                "smtp",
                "An app-password account needs its servers: add smtp = { host = \"...\" } (the keyring entry is found by the SMTP host, as msmtp finds it) and imap or pop, or use a provider preset such as provider = \"icloud\".",
            ));
        }
        return Ok(Account {
            imap,
            pop,
            smtp,
            ca_file: a.ca_file.clone().map(|p| expand_home(&p)),
            name,
            user,
            provider,
            auth: Auth::Password,
        });
    }
    if let Some(p) = provider.filter(|p| p.auth_url.is_none())
        && a.auth_url.is_none()
    {
        return Err(src.error(
            Some(auth_span()),
            &format!(
                "provider `{}` ({}) offers no OAuth to mail programs like this one",
                p.name, p.title
            ),
            Some(format!(
                "Remove auth = \"oauth\": {} accounts use an app password (`mailtoken set-password {name}`).",
                p.title
            )),
        ));
    }
    let client_id = a.client_id.clone().ok_or_else(|| {
        missing(
            "client_id",
            "Add client_id = \"...\" from the OAuth client you registered with the provider (see `mailtoken providers`).",
        )
    })?;
    if a.client_secret.is_some() && a.client_secret_cmd.is_some() {
        return Err(src.error(
            Some(span),
            &format!("account `{name}` has both client_secret and client_secret_cmd"),
            Some("Keep one of them.".into()),
        ));
    }
    let tenant = a
        .tenant
        .clone()
        .or_else(|| provider.and_then(|p| p.default_tenant.map(str::to_owned)));
    if a.tenant.is_some() && provider.is_none_or(|p| p.default_tenant.is_none()) {
        return Err(src.error(
            Some(span),
            &format!("account `{name}`: `tenant` applies only to provider = \"microsoft\""),
            None,
        ));
    }
    let from_preset =
        |key: &str, own: &Option<Spanned<String>>, preset: Option<&str>| -> Result<Option<Url>> {
            if let Some(s) = own {
                return parse_url(src, s, key).map(Some);
            }
            Ok(preset.map(|u| {
                let u = u.replace("{tenant}", tenant.as_deref().unwrap_or("common"));
                Url::parse(&u).expect("preset URLs are valid")
            }))
        };
    let auth_url = from_preset("auth_url", &a.auth_url, provider.and_then(|p| p.auth_url))?
        .ok_or_else(|| {
            missing(
                "auth_url",
                "Set auth_url and token_url, or a provider preset such as provider = \"google\".",
            )
        })?;
    let token_url = from_preset(
        "token_url",
        &a.token_url,
        provider.and_then(|p| p.token_url),
    )?
    .ok_or_else(|| {
        missing(
            "token_url",
            "Set token_url: the provider's OAuth 2.0 token endpoint.",
        )
    })?;
    let device_url = from_preset(
        "device_url",
        &a.device_url,
        provider.and_then(|p| p.device_url),
    )?;
    let revoke_url = from_preset(
        "revoke_url",
        &a.revoke_url,
        provider.and_then(|p| p.revoke_url),
    )?;
    let scopes = match (&a.scopes, provider) {
        (Some(s), _) => s.clone(),
        (None, Some(p)) if p.auth_url.is_some() => {
            p.scopes.iter().map(|s| (*s).to_owned()).collect()
        }
        (None, _) => {
            return Err(missing(
                "scopes",
                "Set scopes = [...]: the scopes that give IMAP/SMTP access, plus offline_access where the provider wants it for a refresh token.",
            ));
        }
    };
    let mut auth_params: Vec<(String, String)> = provider
        .map(|p| {
            p.auth_params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in &a.auth_params {
        auth_params.retain(|(pk, _)| pk != k);
        auth_params.push((k.clone(), v.clone()));
    }
    let client_secret = a.client_secret.clone().map(Secret::new);
    if provider.is_some_and(|p| p.needs_client_secret)
        && client_secret.is_none()
        && a.client_secret_cmd.is_none()
    {
        return Err(missing(
            "client_secret",
            "Google's token endpoint wants the secret of your \"Desktop app\" OAuth client (it is not really secret, RFC 8252 §8.5): add client_secret = \"...\" or client_secret_cmd = \"pass show ...\".",
        ));
    }
    let redirect_host = match &a.redirect_host {
        Some(h) if ["127.0.0.1", "localhost", "[::1]"].contains(&h.get_ref().as_str()) => {
            h.get_ref().clone()
        }
        Some(h) => {
            return Err(src.error(
                Some(h.span()),
                &format!("redirect_host `{}` is not a loopback name", h.get_ref()),
                Some("Use \"127.0.0.1\", \"localhost\" or \"[::1]\" (RFC 8252 §7.3).".into()),
            ));
        }
        None => provider.map_or("127.0.0.1", |p| p.redirect_host).to_owned(),
    };
    let redirect_path = match &a.redirect_path {
        Some(p) if p.get_ref().starts_with('/') => p.get_ref().clone(),
        Some(p) => {
            return Err(src.error(Some(p.span()), "redirect_path must start with `/`", None));
        }
        None => "/".to_owned(),
    };
    Ok(Account {
        imap,
        pop,
        smtp,
        ca_file: a.ca_file.clone().map(|p| expand_home(&p)),
        name,
        user,
        provider,
        auth: Auth::OAuth(Box::new(OAuth {
            client_id,
            client_secret,
            client_secret_cmd: a.client_secret_cmd.clone(),
            auth_url,
            token_url,
            device_url,
            revoke_url,
            scopes,
            auth_params,
            redirect_host,
            redirect_path,
        })),
    })
}

const EXAMPLE: &str = r#"    [accounts.alice]
    provider = "google"
    user = "alice@gmail.com"
    client_id = "1234.apps.googleusercontent.com"
    client_secret = "GOCSPX-..."
"#;

/// For unit tests elsewhere: the one account of a config text.
#[cfg(test)]
pub(crate) fn test_account(toml: &str) -> Account {
    let c = Config::parse(Path::new("c.toml"), toml).unwrap();
    c.accounts.into_values().next().unwrap()
}

/// For unit tests elsewhere: a Google account `a` (user a@gmail.com).
#[cfg(test)]
pub(crate) const TEST_GOOGLE: &str = "[accounts.a]\nprovider = \"google\"\nuser = \"a@gmail.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("/home/a/.config/mailtoken/config.toml"), text)
    }

    fn err(text: &str) -> String {
        let e = parse(text).unwrap_err();
        assert_eq!(e.code, crate::error::ExitCode::Config);
        e.to_string()
    }

    const GOOGLE: &str = r#"
[accounts.alice]
provider = "google"
user = "alice@gmail.com"
client_id = "1234.apps.googleusercontent.com"
client_secret = "GOCSPX-abc"
"#;

    #[test]
    fn google_preset_fills_endpoints_scopes_and_servers() {
        let c = parse(GOOGLE).unwrap();
        let a = c.account("alice").unwrap();
        assert_eq!(
            a.oauth().unwrap().token_url.as_str(),
            "https://oauth2.googleapis.com/token"
        );
        assert_eq!(a.oauth().unwrap().scopes, vec!["https://mail.google.com/"]);
        assert!(
            a.oauth()
                .unwrap()
                .auth_params
                .contains(&("access_type".into(), "offline".into()))
        );
        assert!(
            a.oauth()
                .unwrap()
                .auth_params
                .contains(&("prompt".into(), "consent".into()))
        );
        assert_eq!(a.imap.as_ref().unwrap().host, "imap.gmail.com");
        assert_eq!(a.smtp.as_ref().unwrap().port, 465);
        assert_eq!(a.oauth().unwrap().redirect_host, "127.0.0.1");
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn microsoft_preset_puts_the_tenant_in_the_urls() {
        let c = parse(
            "[accounts.work]\nprovider = \"microsoft\"\ntenant = \"organizations\"\nuser = \"b@c.com\"\nclient_id = \"x\"\n",
        )
        .unwrap();
        let a = c.account("work").unwrap();
        assert_eq!(
            a.oauth().unwrap().auth_url.as_str(),
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize"
        );
        assert!(
            a.oauth()
                .unwrap()
                .scopes
                .iter()
                .any(|s| s == "offline_access")
        );
        assert_eq!(a.smtp.as_ref().unwrap().tls, Tls::Starttls);
        assert_eq!(a.oauth().unwrap().redirect_host, "localhost");
    }

    #[test]
    fn microsoft_tenant_defaults_to_common() {
        let c = parse(
            "[accounts.w]\nprovider = \"microsoft\"\nuser = \"b@c.com\"\nclient_id = \"x\"\n",
        )
        .unwrap();
        assert!(
            c.account("w")
                .unwrap()
                .oauth()
                .unwrap()
                .token_url
                .as_str()
                .contains("/common/")
        );
    }

    #[test]
    fn spelled_out_account_with_servers() {
        let c = parse(
            r#"timeout = "5s"
[accounts.lab]
user = "dev@example.org"
auth_url = "https://id.example.org/authorize"
token_url = "http://127.0.0.1:8080/token"
scopes = ["openid", "mail"]
client_id = "cli"
auth_params = { prompt = "consent" }
imap = { host = "mail.example.org" }
smtp = { host = "mail.example.org", port = 587 }
pop = { host = "mail.example.org", port = 1995, tls = "starttls" }
"#,
        )
        .unwrap();
        let a = c.account("lab").unwrap();
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(
            a.imap,
            Some(Server {
                host: "mail.example.org".into(),
                port: 993,
                tls: Tls::Implicit
            })
        );
        assert_eq!(a.smtp.as_ref().unwrap().tls, Tls::Starttls);
        assert_eq!(a.pop.as_ref().unwrap().port, 1995);
        assert_eq!(
            a.oauth().unwrap().auth_params,
            vec![("prompt".to_owned(), "consent".to_owned())]
        );
        assert!(a.provider.is_none());
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let e = err("[accounts.alice]\nuser = alice@gmail.com\n");
        assert!(
            e.starts_with("/home/a/.config/mailtoken/config.toml:2:8: "),
            "{e}"
        );
        assert!(e.contains("double quotes"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_its_position() {
        let e = err(&GOOGLE.replace("client_id", "clientid"));
        assert!(e.contains("config.toml:5:1: "), "{e}");
        assert!(e.contains("unknown field `clientid`"), "{e}");
    }

    #[test]
    fn unknown_provider_lists_the_known_ones() {
        let e = err(&GOOGLE.replace("\"google\"", "\"gmial\""));
        assert!(
            e.contains("config.toml:3:12: unknown provider `gmial`"),
            "{e}"
        );
        assert!(e.contains("google, microsoft"), "{e}");
    }

    #[test]
    fn missing_user_points_at_the_account() {
        let e = err("[accounts.x]\nprovider = \"microsoft\"\nclient_id = \"c\"\n");
        assert!(
            e.contains("config.toml:1:1: account `x` has no `user`"),
            "{e}"
        );
    }

    #[test]
    fn google_without_secret_says_where_to_find_it() {
        let e = err(&GOOGLE.replace("client_secret = \"GOCSPX-abc\"\n", ""));
        assert!(e.contains("has no `client_secret`"), "{e}");
        assert!(e.contains("Desktop app"), "{e}");
    }

    #[test]
    fn custom_account_needs_endpoints_and_scopes() {
        let e = err("[accounts.x]\nuser = \"u\"\nclient_id = \"c\"\n");
        assert!(e.contains("has no `auth_url`"), "{e}");
        let e = err(
            "[accounts.x]\nuser = \"u\"\nclient_id = \"c\"\nauth_url = \"https://a/\"\ntoken_url = \"https://a/t\"\n",
        );
        assert!(e.contains("has no `scopes`"), "{e}");
    }

    #[test]
    fn plain_http_endpoint_off_loopback_is_refused() {
        let e = err(
            "[accounts.x]\nuser = \"u\"\nclient_id = \"c\"\nauth_url = \"http://id.example/a\"\n",
        );
        assert!(
            e.contains("config.toml:4:12: auth_url must use https"),
            "{e}"
        );
    }

    #[test]
    fn bad_duration_and_bad_redirect_host() {
        let e = err("timeout = \"soon\"\n");
        assert!(
            e.contains("config.toml:1:11: `soon` is not a duration"),
            "{e}"
        );
        let e = err(&format!("{GOOGLE}redirect_host = \"example.com\"\n"));
        assert!(e.contains("not a loopback name"), "{e}");
    }

    #[test]
    fn account_names_are_restricted() {
        let e = err(&GOOGLE.replace("accounts.alice", "accounts.\"a b\""));
        assert!(e.contains("may use only"), "{e}");
    }

    #[test]
    fn unknown_account_lists_known_ones() {
        let c = parse(GOOGLE).unwrap();
        let e = c.account("bob").unwrap_err().to_string();
        assert!(
            e.contains("no account `bob`") && e.contains("accounts: alice"),
            "{e}"
        );
    }

    #[test]
    fn app_password_presets_need_only_a_user() {
        let c = parse("[accounts.carol]\nprovider = \"icloud\"\nuser = \"carol@icloud.com\"\n")
            .unwrap();
        let a = c.account("carol").unwrap();
        assert!(a.uses_app_password());
        assert_eq!(a.oauth().unwrap_err().code, crate::error::ExitCode::Usage);
        assert_eq!(
            a.imap,
            Some(Server {
                host: "imap.mail.me.com".into(),
                port: 993,
                tls: Tls::Implicit
            })
        );
        let smtp = a.smtp.as_ref().unwrap();
        assert_eq!(
            (&*smtp.host, smtp.port, smtp.tls),
            ("smtp.mail.me.com", 587, Tls::Starttls)
        );
        assert!(a.pop.is_none());
        for (p, smtp) in [
            ("fastmail", "smtp.fastmail.com"),
            ("yahoo", "smtp.mail.yahoo.com"),
        ] {
            let c = parse(&format!(
                "[accounts.x]\nprovider = \"{p}\"\nuser = \"x@y.z\"\n"
            ))
            .unwrap();
            let a = c.account("x").unwrap();
            assert!(a.uses_app_password(), "{p}");
            assert_eq!(a.smtp.as_ref().unwrap().host, smtp);
            assert_eq!(a.smtp.as_ref().unwrap().port, 465);
            assert_eq!(a.pop.as_ref().unwrap().port, 995);
        }
    }

    #[test]
    fn google_takes_an_app_password_when_asked() {
        let c = parse(
            "[accounts.g]\nprovider = \"google\"\nauth = \"password\"\nuser = \"g@gmail.com\"\n",
        )
        .unwrap();
        let a = c.account("g").unwrap();
        assert!(a.uses_app_password());
        assert_eq!(a.smtp.as_ref().unwrap().host, "smtp.gmail.com");
        assert!(
            !parse(GOOGLE)
                .unwrap()
                .account("alice")
                .unwrap()
                .uses_app_password()
        );
        // A spelled-out account with its own servers.
        let c = parse(
            "[accounts.h]\nauth = \"password\"\nuser = \"h@x.org\"\nsmtp = { host = \"mail.x.org\", port = 587 }\n",
        )
        .unwrap();
        assert!(c.account("h").unwrap().uses_app_password());
    }

    #[test]
    fn app_password_mistakes_point_at_the_spot() {
        let e = err(
            "[accounts.w]\nprovider = \"microsoft\"\nauth = \"password\"\nuser = \"b@c.com\"\n",
        );
        assert!(
            e.contains("config.toml:3:8: provider `microsoft`")
                && e.contains("does not accept app passwords"),
            "{e}"
        );
        let e = err(&GOOGLE.replace(
            "provider = \"google\"",
            "provider = \"google\"\nauth = \"password\"",
        ));
        assert!(
            e.contains("config.toml:2:1: account `alice` signs in with an app password"),
            "{e}"
        );
        assert!(e.contains("client_id, client_secret do not apply"), "{e}");
        let e =
            err("[accounts.c]\nprovider = \"icloud\"\nauth = \"oauth\"\nuser = \"c@icloud.com\"\n");
        assert!(
            e.contains("config.toml:3:8: provider `icloud` (iCloud Mail) offers no OAuth"),
            "{e}"
        );
        let e = err("[accounts.c]\nauth = \"token\"\nuser = \"c@x.org\"\n");
        assert!(
            e.contains("config.toml:2:8: unknown variant `token`"),
            "{e}"
        );
        let e = err("[accounts.c]\nauth = \"password\"\nuser = \"c@x.org\"\n");
        assert!(
            e.contains("config.toml:1:1: account `c` has no `smtp`"),
            "{e}"
        );
    }

    #[test]
    fn store_table_is_checked_too() {
        let e = err("[store]\nkind = \"vault\"\n");
        assert!(e.contains("config.toml:2:8"), "{e}");
        let c = parse("[store]\nkind = \"file\"\npath = \"/tmp/t.json\"\n").unwrap();
        assert_eq!(c.store.kind, crate::store::StoreKind::File);
    }
}
