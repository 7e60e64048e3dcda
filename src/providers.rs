//! Built-in provider presets: endpoints, scopes, mail servers and quirks, so that a
//! user's config names a provider instead of spelling them out. The facts come from
//! `shared/docs/provider-facts.md`; change both together.

use crate::server::{Server, Tls};
use serde::Deserialize;

/// How an account signs in to its mail servers: `auth` in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// OAuth 2.0 tokens: `mailtoken login`, then `mailtoken token`.
    Oauth,
    /// An app password kept in the OS keyring: `mailtoken set-password`, then
    /// `mailtoken password` (see `crate::password`).
    Password,
    /// App-only OAuth 2.0 tokens from the client's own credentials (RFC 6749 §4.4):
    /// servers and scripts, nobody logs in.
    ClientCredentials,
    /// A Google Workspace service account acting as a mailbox (domain-wide
    /// delegation, RFC 7523 §2.1): servers and scripts, nobody logs in.
    ServiceAccount,
}

/// A provider preset. `{tenant}` in a URL is replaced by the account's `tenant`.
#[derive(Debug)]
pub struct Provider {
    pub name: &'static str,
    pub title: &'static str,
    /// How its accounts sign in unless they say `auth = ...`.
    pub default_auth: AuthKind,
    /// Where to create an app password; `None`: the provider takes none from mail
    /// programs, so `auth = "password"` is refused.
    pub app_passwords: Option<&'static str>,
    /// `None` (with `token_url`): the provider offers no OAuth to mail programs like
    /// this one; the OAuth fields below are then unused.
    pub auth_url: Option<&'static str>,
    pub token_url: Option<&'static str>,
    pub device_url: Option<&'static str>,
    /// Why `login --device` cannot work with this provider, and what to do instead:
    /// said before any request is sent.
    pub no_device_flow: Option<&'static str>,
    pub revoke_url: Option<&'static str>,
    pub scopes: &'static [&'static str],
    /// The scopes of an app-only (client credentials) token; empty: the provider has
    /// no such grant for mail.
    pub app_scopes: &'static [&'static str],
    /// Service accounts with domain-wide delegation may act as a mailbox (Google).
    pub service_accounts: bool,
    /// Extra query parameters for the authorization request.
    pub auth_params: &'static [(&'static str, &'static str)],
    /// Host of the loopback redirect URI the provider accepts for desktop clients.
    pub redirect_host: &'static str,
    /// The token endpoint insists on the client secret (Google's "Desktop app" clients
    /// have one, and it is not secret: RFC 8252 §8.5).
    pub needs_client_secret: bool,
    pub default_tenant: Option<&'static str>,
    pub imap: Option<Server>,
    pub pop: Option<Server>,
    pub smtp: Option<Server>,
    /// Other submission endpoints the provider runs (shown by `providers NAME`).
    pub smtp_alternatives: &'static [Server],
    /// Where to create the OAuth client, and other notes for `providers NAME`.
    pub notes: &'static [&'static str],
}

const fn server(host: &'static str, port: u16, tls: Tls) -> Server {
    Server::new(host, port, tls)
}

pub static GOOGLE: Provider = Provider {
    name: "google",
    title: "Gmail / Google Workspace",
    default_auth: AuthKind::Oauth,
    // Only with 2-Step Verification on; the 16 letters replace the account password.
    app_passwords: Some(
        "https://myaccount.google.com/apppasswords (2-Step Verification must be on; Workspace administrators can forbid them)",
    ),
    auth_url: Some("https://accounts.google.com/o/oauth2/v2/auth"),
    token_url: Some("https://oauth2.googleapis.com/token"),
    // Google's device flow rejects the Gmail scope (invalid_scope): no device_url.
    device_url: None,
    // https://developers.google.com/identity/protocols/oauth2/limited-input-device#allowedscopes
    no_device_flow: Some(
        "Google's device flow does not grant the Gmail scope (https://mail.google.com/ is not among the scopes it allows: https://developers.google.com/identity/protocols/oauth2/limited-input-device#allowedscopes)",
    ),
    revoke_url: Some("https://oauth2.googleapis.com/revoke"),
    scopes: &["https://mail.google.com/"],
    // Google has no client credentials grant for Gmail: servers use service accounts.
    app_scopes: &[],
    service_accounts: true,
    // A refresh token is issued only for offline access, and reliably only when the
    // consent screen is shown.
    auth_params: &[("access_type", "offline"), ("prompt", "consent")],
    redirect_host: "127.0.0.1",
    needs_client_secret: true,
    default_tenant: None,
    imap: Some(server("imap.gmail.com", 993, Tls::Implicit)),
    pop: Some(server("pop.gmail.com", 995, Tls::Implicit)),
    smtp: Some(server("smtp.gmail.com", 465, Tls::Implicit)),
    smtp_alternatives: &[server("smtp.gmail.com", 587, Tls::Starttls)],
    notes: &[
        "Create a \"Desktop app\" OAuth client in the Google Cloud console (Google Auth Platform > Clients).",
        "Publish the app (Google Auth Platform > Audience > Publish app): refresh tokens of apps in Testing status die after 7 days.",
        "IMAP and POP must be enabled in Gmail (Settings > Forwarding and POP/IMAP).",
        "Poll no more often than every 10 minutes; about 500 messages a day can be sent.",
    ],
};

pub static MICROSOFT: Provider = Provider {
    name: "microsoft",
    title: "Outlook.com / Microsoft 365",
    default_auth: AuthKind::Oauth,
    // Microsoft switched password ("basic") sign-in off for IMAP and POP of
    // Outlook.com and Exchange Online; OAuth is the way in.
    app_passwords: None,
    auth_url: Some("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"),
    token_url: Some("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
    device_url: Some("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode"),
    no_device_flow: None,
    revoke_url: None,
    scopes: &[
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/POP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
    ],
    // App-only access: the application permissions IMAP.AccessAsApp, POP.AccessAsApp
    // and SMTP.SendAsApp, all in the .default scope of Exchange Online.
    // https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth#use-client-credentials-grant-flow-to-authenticate-smtp-imap-and-pop-connections
    app_scopes: &["https://outlook.office365.com/.default"],
    service_accounts: false,
    auth_params: &[],
    redirect_host: "localhost",
    needs_client_secret: false,
    default_tenant: Some("common"),
    imap: Some(server("outlook.office365.com", 993, Tls::Implicit)),
    pop: Some(server("outlook.office365.com", 995, Tls::Implicit)),
    smtp: Some(server("smtp.office365.com", 587, Tls::Starttls)),
    smtp_alternatives: &[],
    notes: &[
        "Register a public client (Microsoft Entra admin center > App registrations): platform \"Mobile and desktop applications\" with redirect URI http://localhost, and the delegated permissions IMAP.AccessAsUser.All, POP.AccessAsUser.All, SMTP.Send and offline_access; for --device, Authentication > \"Allow public client flows\": Yes.",
        "A registration that lists only https://localhost (Thunderbird's, say): set redirect_uri = \"https://localhost\"; the browser then warns about mailtoken's own certificate for the one login.",
        "Refresh tokens rotate on use; mailtoken stores each new one before it answers.",
    ],
};

/// iCloud Mail takes app-specific passwords only: there is no OAuth for mail programs.
pub static ICLOUD: Provider = Provider {
    name: "icloud",
    title: "iCloud Mail",
    default_auth: AuthKind::Password,
    app_passwords: Some(
        "https://account.apple.com > Sign-In and Security > App-Specific Passwords (two-factor authentication must be on)",
    ),
    auth_url: None,
    token_url: None,
    device_url: None,
    no_device_flow: None,
    revoke_url: None,
    scopes: &[],
    app_scopes: &[],
    service_accounts: false,
    auth_params: &[],
    redirect_host: "127.0.0.1",
    needs_client_secret: false,
    default_tenant: None,
    imap: Some(server("imap.mail.me.com", 993, Tls::Implicit)),
    pop: None,
    smtp: Some(server("smtp.mail.me.com", 587, Tls::Starttls)),
    smtp_alternatives: &[],
    notes: &[
        "user: the full iCloud Mail address (Apple's IMAP also takes the part before the @).",
        "No POP3: iCloud Mail offers IMAP and SMTP only.",
    ],
};

/// Fastmail gives OAuth only to clients it has approved; everyone else uses an app
/// password.
pub static FASTMAIL: Provider = Provider {
    name: "fastmail",
    title: "Fastmail",
    default_auth: AuthKind::Password,
    app_passwords: Some(
        "Fastmail Settings > Privacy & Security > Manage app passwords and access > New app password (access: IMAP, POP and SMTP)",
    ),
    auth_url: None,
    token_url: None,
    device_url: None,
    no_device_flow: None,
    revoke_url: None,
    scopes: &[],
    app_scopes: &[],
    service_accounts: false,
    auth_params: &[],
    redirect_host: "127.0.0.1",
    needs_client_secret: false,
    default_tenant: None,
    imap: Some(server("imap.fastmail.com", 993, Tls::Implicit)),
    pop: Some(server("pop.fastmail.com", 995, Tls::Implicit)),
    smtp: Some(server("smtp.fastmail.com", 465, Tls::Implicit)),
    smtp_alternatives: &[server("smtp.fastmail.com", 587, Tls::Starttls)],
    notes: &["user: your full Fastmail address (or login name)."],
};

/// Yahoo Mail, like Fastmail, keeps OAuth for approved clients.
pub static YAHOO: Provider = Provider {
    name: "yahoo",
    title: "Yahoo Mail",
    default_auth: AuthKind::Password,
    app_passwords: Some("https://login.yahoo.com/account/security > Generate app password"),
    auth_url: None,
    token_url: None,
    device_url: None,
    no_device_flow: None,
    revoke_url: None,
    scopes: &[],
    app_scopes: &[],
    service_accounts: false,
    auth_params: &[],
    redirect_host: "127.0.0.1",
    needs_client_secret: false,
    default_tenant: None,
    imap: Some(server("imap.mail.yahoo.com", 993, Tls::Implicit)),
    pop: Some(server("pop.mail.yahoo.com", 995, Tls::Implicit)),
    smtp: Some(server("smtp.mail.yahoo.com", 465, Tls::Implicit)),
    smtp_alternatives: &[server("smtp.mail.yahoo.com", 587, Tls::Starttls)],
    notes: &["user: your full Yahoo Mail address."],
};

pub static ALL: &[&Provider] = &[&GOOGLE, &MICROSOFT, &ICLOUD, &FASTMAIL, &YAHOO];

pub fn find(name: &str) -> Option<&'static Provider> {
    ALL.iter()
        .copied()
        .find(|p| p.name.eq_ignore_ascii_case(name))
}

pub fn names() -> String {
    ALL.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// `mailtoken providers`: every preset, a line each.
pub fn listing() -> String {
    let mut s = String::from("Provider presets (use `mailtoken providers NAME` for details):\n");
    for p in ALL {
        let how = match p.default_auth {
            AuthKind::Oauth | AuthKind::ClientCredentials | AuthKind::ServiceAccount => "",
            AuthKind::Password => " (app password)",
        };
        s += &format!("  {:<10} {}{how}\n", p.name, p.title);
    }
    s += "Any other OAuth 2.0 provider: leave `provider` out and set auth_url, token_url and scopes.\n";
    s += "Any other server with a password: leave `provider` out, set auth = \"password\" and its servers.\n";
    s
}

fn server_line(label: &str, s: &Server) -> String {
    format!("  {label:<14} {}:{} ({})\n", s.host, s.port, s.tls.title())
}

/// `mailtoken providers NAME`: one preset in full.
pub fn describe(p: &Provider) -> String {
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
        s += &format!(
            "  redirect       http://{}:PORT/ (any free port; redirect_uri = \"...\" sets the one the client registered)\n",
            p.redirect_host
        );
        s += &match (p.no_device_flow, p.device_url) {
            (Some(why), _) => format!("  device login   no: {why}\n"),
            (None, Some(_)) => "  device login   yes: `mailtoken login ACCOUNT --device` (the app registration must allow public client flows)\n".to_owned(),
            (None, None) => "  device login   no device endpoint\n".to_owned(),
        };
    }
    if !p.app_scopes.is_empty() {
        s += &format!(
            "  servers        auth = \"client_credentials\": app-only tokens, scope {}\n",
            p.app_scopes.join(" ")
        );
    }
    if p.service_accounts {
        s += "  servers        auth = \"service_account\": a Workspace service account with domain-wide delegation acts as the mailbox\n";
    }
    if let Some(t) = p.default_tenant {
        s += &format!(
            "  tenant         {t} (default; set `tenant` in the account: common, organizations, consumers, a tenant ID or a domain)\n"
        );
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

    #[test]
    fn app_password_presets_are_listed_and_described() {
        let l = listing();
        for p in ["icloud", "fastmail", "yahoo"] {
            assert!(l.contains(p), "{l}");
        }
        assert!(l.contains("iCloud Mail (app password)"), "{l}");
        let d = describe(&ICLOUD);
        assert!(d.contains("sign-in        app password"), "{d}");
        assert!(d.contains("smtp.mail.me.com:587 (STARTTLS)"), "{d}");
        assert!(
            !d.contains("authorization") && !d.contains("redirect"),
            "{d}"
        );
        let g = describe(&GOOGLE);
        assert!(
            g.contains("or an app password with auth = \"password\""),
            "{g}"
        );
    }

    #[test]
    fn providers_listing_names_every_preset() {
        let l = listing();
        assert!(l.contains("google") && l.contains("microsoft"));
        let g = describe(&GOOGLE);
        assert!(
            g.contains("imap.gmail.com:993 (implicit TLS)")
                && g.contains("smtp.gmail.com:587 (STARTTLS)"),
            "{g}"
        );
    }
}
