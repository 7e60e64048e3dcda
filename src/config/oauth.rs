//! An account that signs in with OAuth 2.0: the client, the provider's endpoints (the
//! preset's, with the tenant put in, or the account's own), scopes, extra parameters
//! of the authorization request, and the loopback redirect.

use super::account::{Auth, ClientAuth, Grant, KeyMaterial, KeySource, OAuth, Redirect};
use super::source::{Table, parse_url};
use crate::error::Result;
use crate::paths::expand_home;
use crate::secret::Secret;
use toml::Spanned;
use url::Url;

pub(super) fn resolve(t: &Table, grant: Grant) -> Result<Auth> {
    let (a, name, provider) = (t.raw, t.name, t.provider);
    let app_only = grant != Grant::Login;
    let service_account = matches!(grant, Grant::ServiceAccount { .. });
    if app_only {
        app_only_checks(t, &grant)?;
    } else if let Some(k) = [
        &a.certificate,
        &a.private_key,
        &a.certificate_cmd,
        &a.key_file,
        &a.key_cmd,
    ]
    .into_iter()
    .flatten()
    .next()
    {
        return Err(t.src.error(
            Some(k.span()),
            "certificates and keys are for app-only accounts (auth = \"client_credentials\" or \"service_account\"); a person's login does not use one",
            Some("Remove it, or set auth = \"client_credentials\" (Microsoft) or \"service_account\" (Google) for a server that signs in as itself.".into()),
        ));
    }
    if let Some(p) = provider.filter(|p| p.auth_url.is_none())
        && a.auth_url.is_none()
    {
        return Err(t.src.error(
            Some(t.auth_span()),
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
    // A service account's identity is in its key file (client_email).
    let client_id = match (&a.client_id, service_account) {
        (Some(id), _) => id.clone(),
        (None, true) => String::new(),
        (None, false) => {
            return Err(t.missing(
                "client_id",
                "Add client_id = \"...\" from the OAuth client you registered with the provider (see `mailtoken providers`).",
            ));
        }
    };
    if a.client_secret.is_some() && a.client_secret_cmd.is_some() {
        return Err(t.src.error(
            Some(t.span.clone()),
            &format!("account `{name}` has both client_secret and client_secret_cmd"),
            Some("Keep one of them.".into()),
        ));
    }
    if let Some(own) = &a.tenant
        && provider.is_none_or(|p| p.default_tenant.is_none())
    {
        return Err(t.src.error(
            Some(own.span()),
            &format!("account `{name}`: `tenant` applies only to provider = \"microsoft\""),
            None,
        ));
    }
    let tenant = match &a.tenant {
        Some(own) => Some(tenant_name(t, own)?),
        None => provider.and_then(|p| p.default_tenant.map(str::to_owned)),
    };
    let from_preset =
        |key: &str, own: &Option<Spanned<String>>, preset: Option<&str>| -> Result<Option<Url>> {
            if let Some(s) = own {
                return parse_url(t.src, s, key).map(Some);
            }
            Ok(preset.map(|u| {
                let u = u.replace("{tenant}", tenant.as_deref().unwrap_or("common"));
                Url::parse(&u).expect("preset URLs are valid")
            }))
        };
    let auth_url = if app_only {
        None
    } else {
        Some(
            from_preset("auth_url", &a.auth_url, provider.and_then(|p| p.auth_url))?.ok_or_else(
                || {
                    t.missing(
                        "auth_url",
                        "Set auth_url and token_url, or a provider preset such as provider = \"google\".",
                    )
                },
            )?,
        )
    };
    let token_url = from_preset(
        "token_url",
        &a.token_url,
        provider.and_then(|p| p.token_url),
    )?
    .ok_or_else(|| {
        t.missing(
            "token_url",
            "Set token_url: the provider's OAuth 2.0 token endpoint.",
        )
    })?;
    let device_url = from_preset(
        "device_url",
        &a.device_url,
        provider.and_then(|p| p.device_url).filter(|_| !app_only),
    )?;
    let revoke_url = from_preset(
        "revoke_url",
        &a.revoke_url,
        provider.and_then(|p| p.revoke_url),
    )?;
    let scopes = match (&a.scopes, provider) {
        (Some(s), _) => s.clone(),
        (None, Some(p)) if service_account => p.scopes.iter().map(|s| (*s).to_owned()).collect(),
        (None, Some(p)) if app_only => p.app_scopes.iter().map(|s| (*s).to_owned()).collect(),
        (None, Some(p)) if p.auth_url.is_some() => {
            p.scopes.iter().map(|s| (*s).to_owned()).collect()
        }
        (None, _) => {
            return Err(t.missing(
                "scopes",
                "Set scopes = [...]: the scopes that give IMAP/SMTP access, plus offline_access where the provider wants it for a refresh token.",
            ));
        }
    };
    let mut auth_params: Vec<(String, String)> = provider
        .filter(|_| !app_only)
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
    if grant == Grant::ClientCredentials(ClientAuth::Secret)
        && client_secret.is_none()
        && a.client_secret_cmd.is_none()
    {
        return Err(t.missing(
            "client_secret",
            "The client credentials grant authenticates the app itself: add client_secret_cmd = \"cat /etc/mailtoken/secret\" (or client_secret = \"...\"), the secret made for the app registration (Entra: Certificates & secrets), or certificate and private_key for a certificate uploaded there.",
        ));
    }
    if !app_only
        && provider.is_some_and(|p| p.needs_client_secret)
        && client_secret.is_none()
        && a.client_secret_cmd.is_none()
    {
        return Err(t.missing(
            "client_secret",
            "Google's token endpoint wants the secret of your \"Desktop app\" OAuth client (it is not really secret, RFC 8252 §8.5): add client_secret = \"...\" or client_secret_cmd = \"pass show ...\".",
        ));
    }
    let redirect = redirect(t)?;
    Ok(Auth::OAuth(Box::new(OAuth {
        grant,
        client_id,
        client_secret,
        client_secret_cmd: a.client_secret_cmd.clone(),
        auth_url,
        token_url,
        device_url,
        revoke_url,
        scopes,
        auth_params,
        tenant,
        redirect,
    })))
}

/// How an app-only account authenticates: a certificate (files or a command), or
/// its secret; not both.
pub(super) fn client_auth(t: &Table) -> Result<ClientAuth> {
    let a = t.raw;
    let secret = a.client_secret.is_some() || a.client_secret_cmd.is_some();
    let material = match (&a.certificate, &a.private_key, &a.certificate_cmd) {
        (None, None, None) => return Ok(ClientAuth::Secret),
        (Some(c), Some(k), None) => KeyMaterial::Files {
            certificate: expand_home(std::path::Path::new(c.get_ref())),
            private_key: expand_home(std::path::Path::new(k.get_ref())),
        },
        (None, None, Some(cmd)) => KeyMaterial::Command(cmd.get_ref().clone()),
        (Some(c), None, None) => {
            return Err(t.src.error(
                Some(c.span()),
                "certificate needs private_key: the key that signs with it",
                Some("Add private_key = \"/path/to/key.pem\" (or certificate_cmd for a command that prints both).".into()),
            ));
        }
        (None, Some(k), None) => {
            return Err(t.src.error(
                Some(k.span()),
                "private_key needs certificate: the one uploaded to the app registration",
                Some("Add certificate = \"/path/to/cert.pem\".".into()),
            ));
        }
        (_, _, Some(cmd)) => {
            return Err(t.src.error(
                Some(cmd.span()),
                "certificate_cmd prints the certificate and the key: certificate and private_key go without it",
                Some("Keep either certificate_cmd or certificate and private_key.".into()),
            ));
        }
    };
    if secret {
        return Err(t.src.error(
            Some(t.span.clone()),
            &format!(
                "account `{}` has both a client secret and a certificate",
                t.name
            ),
            Some("Keep one way for the app to prove who it is.".into()),
        ));
    }
    Ok(ClientAuth::Certificate(material))
}

/// A service account's grant: its key from `key_file` or `key_cmd`, one of them.
pub(super) fn service_account(t: &Table) -> Result<Grant> {
    let a = t.raw;
    let key = match (&a.key_file, &a.key_cmd) {
        (Some(f), None) => KeySource::File(expand_home(std::path::Path::new(f.get_ref()))),
        (None, Some(c)) => KeySource::Command(c.get_ref().clone()),
        (Some(_), Some(c)) => {
            return Err(t.src.error(
                Some(c.span()),
                "key_file and key_cmd both say where the key is",
                Some("Keep one of them.".into()),
            ));
        }
        (None, None) => {
            return Err(t.missing(
                "key_file",
                "Add key_file = \"/etc/mailtoken/sa.json\": the JSON key of the service account (Google Cloud console > IAM & Admin > Service accounts > Keys > Add key > JSON), or key_cmd for a command that prints it.",
            ));
        }
    };
    for (k, set) in [
        (
            "client_secret",
            a.client_secret.is_some() || a.client_secret_cmd.is_some(),
        ),
        (
            "certificate",
            a.certificate.is_some() || a.private_key.is_some() || a.certificate_cmd.is_some(),
        ),
    ] {
        if set {
            return Err(t.src.error(
                Some(t.span.clone()),
                &format!("account `{}`: a service account signs with its key file; {k} does not go with it", t.name),
                Some(format!("Remove {k}.")),
            ));
        }
    }
    Ok(Grant::ServiceAccount {
        key,
        own_token_url: a.token_url.is_some(),
    })
}

/// What an app-only account cannot have: a provider without such a grant, and the
/// settings of a person's login.
fn app_only_checks(t: &Table, grant: &Grant) -> Result<()> {
    let (a, name) = (t.raw, t.name);
    let service_account = matches!(grant, Grant::ServiceAccount { .. });
    let missing = t.provider.filter(|p| {
        if service_account {
            !p.service_accounts
        } else {
            p.app_scopes.is_empty()
        }
    });
    if let Some(p) = missing {
        let (what, instead) = match (service_account, p.service_accounts) {
            (true, _) => (
                "service accounts for mail",
                if p.app_scopes.is_empty() {
                    ""
                } else {
                    " Servers use auth = \"client_credentials\" here."
                },
            ),
            (false, true) => (
                "client credentials grant for mail",
                " Servers use a Workspace service account: auth = \"service_account\".",
            ),
            (false, false) => ("client credentials grant for mail", ""),
        };
        return Err(t.src.error(
            Some(t.auth_span()),
            &format!("provider `{}` ({}) has no {what}", p.name, p.title),
            Some(format!(
                "Use auth = \"oauth\" and `mailtoken login {name}`.{instead}"
            )),
        ));
    }
    if !service_account && let Some(k) = a.key_file.as_ref().or(a.key_cmd.as_ref()) {
        return Err(t.src.error(
            Some(k.span()),
            "key_file and key_cmd are a Google service account's key: they go with auth = \"service_account\"",
            Some("For a certificate, use certificate and private_key.".into()),
        ));
    }
    let login_only = [
        ("auth_url", a.auth_url.as_ref().map(Spanned::span)),
        ("device_url", a.device_url.as_ref().map(Spanned::span)),
        ("redirect_uri", a.redirect_uri.as_ref().map(Spanned::span)),
        ("redirect_host", a.redirect_host.as_ref().map(Spanned::span)),
        ("redirect_path", a.redirect_path.as_ref().map(Spanned::span)),
    ];
    let params = (!a.auth_params.is_empty()).then(|| ("auth_params", Some(t.span.clone())));
    if let Some((key, span)) = login_only.into_iter().find(|(_, s)| s.is_some()).or(params) {
        return Err(t.src.error(
            span,
            &format!("account `{name}`: {key} is for a person's login, and nobody logs in with the client credentials grant"),
            Some(format!("Remove {key}: the app asks the token endpoint for tokens by itself.")),
        ));
    }
    Ok(())
}

/// A Microsoft tenant as the authority URL takes it: `common`, `organizations`,
/// `consumers`, a directory (tenant) ID, or one of the tenant's domain names.
/// https://learn.microsoft.com/en-us/entra/identity-platform/msal-client-application-configuration#authority
fn tenant_name(t: &Table, own: &Spanned<String>) -> Result<String> {
    let v = own.get_ref().trim();
    let domain_like = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if domain_like {
        return Ok(v.to_ascii_lowercase());
    }
    Err(t.src.error(
        Some(own.span()),
        &format!("tenant `{}` is not a tenant name, ID or domain", own.get_ref()),
        Some(
            "Use common (work and personal accounts), organizations (work or school only), consumers (personal Microsoft accounts only), your directory (tenant) ID such as 72f988bf-86f1-41af-91ab-2d7cd011db47, or a domain of the tenant such as contoso.onmicrosoft.com."
                .into(),
        ),
    ))
}

const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// The redirect URI: `redirect_uri` as the client registered it (`https://localhost`
/// included), or the older `redirect_host` and `redirect_path`, or the preset's host.
fn redirect(t: &Table) -> Result<Redirect> {
    let a = t.raw;
    let Some(text) = &a.redirect_uri else {
        return redirect_from_parts(t);
    };
    if let Some(other) = a.redirect_host.as_ref().or(a.redirect_path.as_ref()) {
        return Err(t.src.error(
            Some(other.span()),
            "redirect_uri already says where the browser comes back: redirect_host and redirect_path go with it",
            Some("Keep redirect_uri and remove redirect_host and redirect_path.".into()),
        ));
    }
    let bad = |why: &str| {
        t.src.error(
            Some(text.span()),
            &format!("redirect_uri `{}` {why}", text.get_ref()),
            Some(
                "Use the loopback redirect URI the client registered: http://localhost, http://127.0.0.1, \
                 https://localhost (a path may follow; RFC 8252 §7.3)."
                    .into(),
            ),
        )
    };
    let url = Url::parse(text.get_ref()).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        // Private-use schemes (RFC 8252 §7.1) need the OS to hand the URI to us.
        other => {
            return Err(bad(&format!(
                "has the scheme `{other}`: mailtoken listens on loopback, over http or https"
            )));
        }
    };
    let host = url.host_str().unwrap_or_default();
    if !LOOPBACK_HOSTS.contains(&host) {
        return Err(bad("is not a loopback address"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad(
            "has a query, a fragment or a user name, which a redirect URI cannot have",
        ));
    }
    // The path as written: `Url` would turn `https://localhost` into `https://localhost/`.
    let written = text.get_ref().trim();
    let after_scheme = &written[written.find("://").map_or(0, |i| i + 3)..];
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    Ok(Redirect {
        https,
        host: host.to_owned(),
        port: url.port(),
        path: path.to_owned(),
    })
}

fn redirect_from_parts(t: &Table) -> Result<Redirect> {
    let (a, provider) = (t.raw, t.provider);
    let host = match &a.redirect_host {
        Some(h) if LOOPBACK_HOSTS.contains(&h.get_ref().as_str()) => h.get_ref().clone(),
        Some(h) => {
            return Err(t.src.error(
                Some(h.span()),
                &format!("redirect_host `{}` is not a loopback name", h.get_ref()),
                Some("Use \"127.0.0.1\", \"localhost\" or \"[::1]\" (RFC 8252 §7.3).".into()),
            ));
        }
        None => provider.map_or("127.0.0.1", |p| p.redirect_host).to_owned(),
    };
    let path = match &a.redirect_path {
        Some(p) if p.get_ref().starts_with('/') => p.get_ref().clone(),
        Some(p) => {
            return Err(t
                .src
                .error(Some(p.span()), "redirect_path must start with `/`", None));
        }
        None => "/".to_owned(),
    };
    Ok(Redirect {
        https: false,
        host,
        port: None,
        path,
    })
}
