//! The user's config file (TOML), turned into resolved [`Account`]s: provider presets
//! filled in, URLs checked, and every mistake reported with file, line, column and the
//! fix, because a password command that fails silently is the worst kind of bug.
//!
//! - `raw.rs`: the file as written; `source.rs`: where in it a problem is;
//! - `resolve.rs`: what every account has (name, provider, user, servers), then
//!   `oauth.rs` or `password.rs` for how it signs in;
//! - `account.rs`: the resolved account the rest of mailtoken uses.

mod account;
mod oauth;
mod password;
mod raw;
mod resolve;
mod source;

pub use account::{Account, Auth, ClientAuth, Grant, KeyMaterial, KeySource, OAuth, Redirect};
pub use resolve::valid_account_name;
pub use source::endpoint_url;

use crate::error::{Error, Result};
use crate::store::StoreConfig;
use raw::RawConfig;
use source::Source;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

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
        let proxy = raw
            .proxy
            .as_ref()
            .map(|p| source::proxy_setting(&src, p))
            .transpose()?;
        let mut store = raw.store;
        store.command_timeout = match &store.timeout {
            Some(t) => match parse_duration(&src, t)? {
                d if d.is_zero() => {
                    return Err(src.error(
                        Some(t.span()),
                        "a store command timeout of zero would stop every command at once",
                        Some("Write how long `read` and `write` may take, like \"60s\".".into()),
                    ));
                }
                d => Some(d),
            },
            None => None,
        };
        let mut accounts = BTreeMap::new();
        for (name, acct) in raw.accounts {
            let account = resolve::resolve(&src, &name, acct, proxy.as_ref())?;
            accounts.insert(account.name.clone(), account);
        }
        Ok(Config {
            path: path.to_owned(),
            accounts,
            store,
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
    use super::account::{ClientAuth, Grant, KeyMaterial, KeySource};
    use super::*;
    use crate::server::{Server, Tls};

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
        assert_eq!(a.oauth().unwrap().redirect.host, "127.0.0.1");
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
            a.oauth().unwrap().auth_url.as_ref().unwrap().as_str(),
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
        assert_eq!(a.oauth().unwrap().redirect.host, "localhost");
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

    const MS: &str =
        "[accounts.w]\nprovider = \"microsoft\"\nuser = \"b@c.com\"\nclient_id = \"x\"\n";

    #[test]
    fn microsoft_tenants_go_into_every_endpoint() {
        for (tenant, expect) in [
            ("organizations", "organizations"),
            ("consumers", "consumers"),
            (
                "72f988bf-86f1-41af-91ab-2d7cd011db47",
                "72f988bf-86f1-41af-91ab-2d7cd011db47",
            ),
            ("Contoso.onmicrosoft.com", "contoso.onmicrosoft.com"),
        ] {
            let c = parse(&format!("{MS}tenant = \"{tenant}\"\n")).unwrap();
            let o = c.account("w").unwrap().oauth().unwrap().clone();
            assert_eq!(o.tenant.as_deref(), Some(expect));
            for url in [
                o.auth_url.as_ref().unwrap(),
                &o.token_url,
                o.device_url.as_ref().unwrap(),
            ] {
                assert!(
                    url.path().starts_with(&format!("/{expect}/oauth2/v2.0/")),
                    "{url}"
                );
            }
        }
    }

    #[test]
    fn a_tenant_that_cannot_be_one_points_at_itself() {
        for bad in ["", "contoso/evil", "a b", "x..y", "-x.com"] {
            let e = err(&format!("{MS}tenant = \"{bad}\"\n"));
            assert!(e.contains("config.toml:5:10: tenant"), "{bad}: {e}");
            assert!(e.contains("is not a tenant name, ID or domain"), "{e}");
            assert!(e.contains("organizations (work or school only)"), "{e}");
        }
        let e = err(&format!("{GOOGLE}tenant = \"organizations\"\n"));
        assert!(
            e.contains("applies only to provider = \"microsoft\""),
            "{e}"
        );
    }

    #[test]
    fn redirect_uri_as_registered_sets_scheme_host_port_and_path() {
        for (text, https, host, port, path) in [
            ("https://localhost", true, "localhost", None, ""),
            (
                "https://localhost/mail/cb",
                true,
                "localhost",
                None,
                "/mail/cb",
            ),
            (
                "http://127.0.0.1:8765/",
                false,
                "127.0.0.1",
                Some(8765),
                "/",
            ),
            ("http://[::1]/x", false, "[::1]", None, "/x"),
        ] {
            let c = parse(&format!("{MS}redirect_uri = \"{text}\"\n")).unwrap();
            let r = c.account("w").unwrap().oauth().unwrap().redirect.clone();
            assert_eq!(
                r,
                Redirect {
                    https,
                    host: host.into(),
                    port,
                    path: path.into()
                },
                "{text}"
            );
        }
        let c = parse(MS).unwrap();
        let r = &c.account("w").unwrap().oauth().unwrap().redirect;
        assert_eq!(r.uri(Some(4242)).unwrap(), "http://localhost:4242/");
        let https = Redirect {
            https: true,
            path: String::new(),
            ..r.clone()
        };
        assert_eq!(https.uri(None).unwrap(), "https://localhost");
        assert_eq!(https.uri(Some(4242)).unwrap(), "https://localhost:4242");
        assert_eq!(https.route(), "/");
    }

    #[test]
    fn a_redirect_uri_that_cannot_reach_us_is_refused_where_it_is_written() {
        for (text, needle) in [
            ("https://example.com/", "is not a loopback address"),
            ("ms-appx-web://x/", "has the scheme `ms-appx-web`"),
            ("https://localhost/?a=b", "has a query"),
            ("localhost", "is not a URL"),
        ] {
            let e = err(&format!("{MS}redirect_uri = \"{text}\"\n"));
            assert!(e.contains("config.toml:5:16: redirect_uri"), "{text}: {e}");
            assert!(e.contains(needle), "{text}: {e}");
        }
        let e = err(&format!(
            "{MS}redirect_uri = \"https://localhost\"\nredirect_path = \"/x\"\n"
        ));
        assert!(
            e.contains("config.toml:6:17: redirect_uri already says"),
            "{e}"
        );
    }

    const MS_APP: &str = "[accounts.m]\nprovider = \"microsoft\"\nauth = \"client_credentials\"\ntenant = \"contoso.onmicrosoft.com\"\nuser = \"alerts@contoso.com\"\nclient_id = \"x\"\n";

    #[test]
    fn a_microsoft_app_only_account_gets_the_tenants_token_endpoint_and_the_default_scope() {
        let c = parse(&format!("{MS_APP}client_secret_cmd = \"cat /etc/s\"\n")).unwrap();
        let a = c.account("m").unwrap();
        assert!(a.app_only());
        let o = a.oauth().unwrap();
        assert_eq!(
            o.grant,
            Grant::ClientCredentials(super::account::ClientAuth::Secret)
        );
        assert_eq!(
            o.token_url.as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(o.scopes, ["https://outlook.office365.com/.default"]);
        assert!(o.auth_url.is_none() && o.device_url.is_none() && o.auth_params.is_empty());
        let e = a.login_oauth().unwrap_err();
        assert!(e.message.contains("nobody logs in"), "{e}");
    }

    #[test]
    fn an_app_only_account_needs_a_secret_and_no_login_settings() {
        let e = err(MS_APP);
        assert!(
            e.contains("config.toml:1:1: account `m` has no `client_secret`"),
            "{e}"
        );
        assert!(e.contains("Certificates & secrets"), "{e}");
        let e = err(&format!(
            "{MS_APP}client_secret = \"s\"\nredirect_uri = \"http://localhost\"\n"
        ));
        assert!(
            e.contains("config.toml:8:16: account `m`: redirect_uri is for a person's login"),
            "{e}"
        );
        let e = err(
            "[accounts.g]\nprovider = \"google\"\nauth = \"client_credentials\"\nuser = \"g@example.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n",
        );
        assert!(e.contains("config.toml:3:8: provider `google`"), "{e}");
        assert!(
            e.contains("has no client credentials grant for mail"),
            "{e}"
        );
    }

    #[test]
    fn an_app_certificate_needs_its_key_and_no_secret_beside_it() {
        let c = parse(&format!(
            "{MS_APP}certificate = \"~/app.pem\"\nprivate_key = \"/etc/k.pem\"\n"
        ))
        .unwrap();
        let o = c.account("m").unwrap().oauth().unwrap().clone();
        let Grant::ClientCredentials(ClientAuth::Certificate(KeyMaterial::Files {
            certificate,
            private_key,
        })) = o.grant
        else {
            panic!("{:?}", o.grant)
        };
        assert!(certificate.ends_with("app.pem") && !certificate.starts_with("~"));
        assert_eq!(private_key, std::path::Path::new("/etc/k.pem"));
        let e = err(&format!("{MS_APP}certificate = \"/c.pem\"\n"));
        assert!(
            e.contains("config.toml:7:15: certificate needs private_key"),
            "{e}"
        );
        let e = err(&format!(
            "{MS_APP}certificate_cmd = \"x\"\nclient_secret = \"s\"\n"
        ));
        assert!(
            e.contains("has both a client secret and a certificate"),
            "{e}"
        );
        let e = err(&format!("{GOOGLE}certificate = \"/c.pem\"\n"));
        assert!(
            e.contains("certificates and keys are for app-only accounts"),
            "{e}"
        );
    }

    #[test]
    fn a_service_account_needs_its_key_and_only_google_has_them() {
        let g = "[accounts.s]\nprovider = \"google\"\nauth = \"service_account\"\nuser = \"a@example.com\"\n";
        let c = parse(&format!("{g}key_file = \"/etc/sa.json\"\n")).unwrap();
        let o = c.account("s").unwrap().oauth().unwrap().clone();
        assert_eq!(
            o.grant,
            Grant::ServiceAccount {
                key: KeySource::File("/etc/sa.json".into()),
                own_token_url: false
            }
        );
        assert_eq!(o.scopes, ["https://mail.google.com/"]);
        let e = err(g);
        assert!(
            e.contains("account `s` has no `key_file`") && e.contains("Keys > Add key"),
            "{e}"
        );
        let e = err(&format!(
            "{}key_file = \"/k\"\n",
            MS_APP.replace("client_credentials", "service_account")
        ));
        assert!(e.contains("provider `microsoft` (Outlook.com / Microsoft 365) has no service accounts for mail"), "{e}");
        assert!(e.contains("auth = \"client_credentials\""), "{e}");
        let e = err(&format!(
            "{}client_secret = \"s\"\n",
            g.replace("service_account", "client_credentials")
        ));
        assert!(e.contains("auth = \"service_account\""), "{e}");
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
    fn the_store_command_timeout_is_a_duration_and_not_zero() {
        let store =
            "[store]\nkind = \"command\"\nread = \"pass show x\"\nwrite = \"pass insert -m x\"\n";
        let c = parse(&format!("{store}timeout = \"2m\"\n")).unwrap();
        assert_eq!(c.store.command_timeout, Some(Duration::from_secs(120)));
        assert_eq!(parse(store).unwrap().store.command_timeout, None);
        let e = err(&format!("{store}timeout = \"0s\"\n"));
        assert!(
            e.contains("config.toml:5:11: a store command timeout of zero"),
            "{e}"
        );
        let e = err(&format!("{store}timeout = \"forever\"\n"));
        assert!(
            e.contains("config.toml:5:11: `forever` is not a duration"),
            "{e}"
        );
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
