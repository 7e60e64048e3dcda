//! An account that signs in with an app password (`auth = "password"`): no OAuth keys
//! may be set (they would silently do nothing), and it needs a server to file the
//! password under.

use super::account::Auth;
use super::source::Table;
use crate::error::Result;
use crate::server::Server;

pub(super) fn resolve(
    t: &Table,
    imap: &Option<Server>,
    pop: &Option<Server>,
    smtp: &Option<Server>,
) -> Result<Auth> {
    let (a, name, provider) = (t.raw, t.name, t.provider);
    if let Some(p) = provider.filter(|p| p.app_passwords.is_none()) {
        return Err(t.src.error(
            Some(t.auth_span()),
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
        ("redirect_uri", a.redirect_uri.is_some()),
        ("certificate", a.certificate.is_some()),
        ("private_key", a.private_key.is_some()),
        ("certificate_cmd", a.certificate_cmd.is_some()),
        ("key_file", a.key_file.is_some()),
        ("proxy", a.proxy.is_some()),
        ("key_cmd", a.key_cmd.is_some()),
        ("redirect_host", a.redirect_host.is_some()),
        ("redirect_path", a.redirect_path.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if !stray.is_empty() {
        return Err(t.src.error(
            Some(t.span.clone()),
            &format!(
                "account `{name}` signs in with an app password (auth = \"password\"), so {} {} not apply",
                stray.join(", "),
                if stray.len() == 1 { "does" } else { "do" }
            ),
            Some("Remove them, or set auth = \"oauth\" to use OAuth.".into()),
        ));
    }
    if imap.is_none() && pop.is_none() && smtp.is_none() {
        return Err(t.missing(
            "smtp",
            "An app-password account needs its servers: add smtp = { host = \"...\" } (the keyring entry is found by the SMTP host, as msmtp finds it) and imap or pop, or use a provider preset such as provider = \"icloud\".",
        ));
    }
    Ok(Auth::Password)
}
