//! One account table resolved into an [`Account`]: the name, the provider preset, the
//! user and the servers, which every account has; then the part that depends on how it
//! signs in, in `oauth.rs` or `password.rs`.

use super::account::{Account, Grant};
use super::raw::{RawAccount, RawServer};
use super::source::{Source, Table};
use super::{oauth, password};
use crate::error::Result;
use crate::paths::expand_home;
use crate::providers::{self, AuthKind};
use crate::server::{Proto, Server, Tls, default_port};
use std::borrow::Cow;
use toml::Spanned;

pub(super) fn resolve(
    src: &Source,
    name: &Spanned<String>,
    acct: Spanned<RawAccount>,
    top_proxy: Option<&crate::proxy::Setting>,
) -> Result<Account> {
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
    let table = Table {
        src,
        span,
        name: &name,
        provider,
        raw: &a,
    };
    let user = a.user.clone().ok_or_else(|| {
        table.missing(
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
    let kind = match &a.auth {
        Some(k) => *k.get_ref(),
        None => provider.map_or(AuthKind::Oauth, |p| p.default_auth),
    };
    let auth = match kind {
        AuthKind::Password => password::resolve(&table, &imap, &pop, &smtp)?,
        AuthKind::Oauth => oauth::resolve(&table, Grant::Login)?,
        AuthKind::ClientCredentials => oauth::resolve(
            &table,
            Grant::ClientCredentials(oauth::client_auth(&table)?),
        )?,
        AuthKind::ServiceAccount => oauth::resolve(&table, oauth::service_account(&table)?)?,
    };
    let proxy = match &a.proxy {
        Some(p) => Some(super::source::proxy_setting(src, p)?),
        None => top_proxy.cloned(),
    };
    let relay = a.relay.as_ref().map(|r| relay(src, r)).transpose()?;
    Ok(Account {
        relay,
        proxy,
        imap,
        pop,
        smtp,
        ca_file: a.ca_file.clone().map(|p| expand_home(&p)),
        name,
        user,
        provider,
        auth,
    })
}

pub fn valid_account_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c))
}

/// `[accounts.NAME.relay]`: the listening addresses (loopback or unix sockets only) and
/// who may log in.
fn relay(src: &Source, r: &super::raw::RawRelay) -> Result<crate::relay::Relay> {
    use crate::relay::{Access, Listen, Relay};
    let listen = |key: &str, s: &Option<Spanned<String>>, example: &str| {
        s.as_ref()
            .map(|s| {
                Listen::parse(s.get_ref()).map_err(|why| {
                    src.error(
                        Some(s.span()),
                        &format!("relay {key}: {why}"),
                        Some(format!(
                            "Use {key} = \"127.0.0.1:{example}\" or a socket path such as \"/run/mailtoken/{key}\"."
                        )),
                    )
                })
            })
            .transpose()
    };
    let smtp = listen("smtp", &r.smtp, "2587")?;
    let imap = listen("imap", &r.imap, "2143")?;
    let pop = listen("pop", &r.pop, "2110")?;
    let auth_span = r.auth.as_ref().map(|a| a.span());
    let access = match r.auth.as_ref().map(|a| a.get_ref().as_str()) {
        None | Some("password") => Access::Password,
        Some("none") => Access::Anyone,
        Some("users") => {
            let users = r.users.clone().unwrap_or_default();
            if users.is_empty() {
                return Err(src.error(
                    auth_span,
                    "relay auth = \"users\" needs users = [UID, ...]: the local users let in without a login",
                    Some("Add users = [1000] (the uids of the programs' users, `id -u NAME`).".into()),
                ));
            }
            let tcp = [&smtp, &imap, &pop]
                .into_iter()
                .flatten()
                .any(|l| matches!(l, Listen::Tcp(_)));
            if tcp {
                return Err(src.error(
                    auth_span,
                    "relay auth = \"users\" works on unix sockets only: on TCP the relay cannot tell who connects",
                    Some("Listen on socket paths (smtp = \"/run/mailtoken/smtp\"), or use auth = \"password\".".into()),
                ));
            }
            Access::Users(users)
        }
        Some(other) => {
            return Err(src.error(
                auth_span,
                &format!("relay auth `{other}` is not one of password, users, none"),
                Some("auth = \"password\" (the relay password, `mailtoken relay-password ACCOUNT`), \"users\" with users = [UID, ...] (unix sockets), or \"none\" (anyone on this machine).".into()),
            ));
        }
    };
    Ok(Relay {
        smtp,
        imap,
        pop,
        access,
        max_connections: r
            .max_connections
            .unwrap_or(crate::relay::config::MAX_CONNECTIONS)
            .max(1),
    })
}
