//! What a check's outcome means and what to do about it: the table in provider-facts.md
//! ("Troubleshooting advice") as cases tried in order, each naming the outcome it is for,
//! any server words it looks for, and its diagnosis, remedy and exit code.

use super::server_words;
use super::session::{Outcome, Target};
use super::wire::Challenge;
use crate::config::Account;
use crate::error::ExitCode;
use crate::server::{Proto, Tls};
use crate::state::RefreshError;

/// One row of the table.
struct Case {
    /// The outcome and circumstances the case is for.
    when: fn(&Facts) -> bool,
    /// Words (lower case) of which the server's reply must hold one; empty: any reply.
    words: &'static [&'static str],
    /// What is wrong and what to do, with `{placeholders}` (see `Facts::value`).
    diagnosis: &'static str,
    remedy: Option<&'static str>,
    /// `None`: all is well.
    code: Option<ExitCode>,
}

/// The cases, most specific first: the first that applies is the diagnosis. The last
/// one for each kind of outcome has no further condition, so every outcome finds one.
static CASES: &[Case] = &[
    // ---- signed in ----
    Case {
        when: |f| f.accepted() && f.target.message.is_some(),
        words: &[],
        diagnosis: "{p} accepted the credential and took the test message from {from} to {to}",
        remedy: None,
        code: None,
    },
    Case {
        when: |f| f.accepted() && f.app_password,
        words: &[],
        diagnosis: "{p} accepted the app password",
        remedy: None,
        code: None,
    },
    Case {
        when: |f| f.accepted() && f.refreshed,
        words: &[],
        diagnosis: "{p} accepted a fresh token (the first one was rejected although it had not expired by our clock)",
        remedy: None,
        code: None,
    },
    Case {
        when: |f| f.accepted(),
        words: &[],
        diagnosis: "{p} accepted the token",
        remedy: None,
        code: None,
    },
    // ---- the credential refused; first, a token that could not be replaced ----
    Case {
        when: |f| f.rejected() && f.refresh_error.is_some_and(|e| e.error().remedy.is_some()),
        words: &[],
        diagnosis: "{p} rejected the token, and getting a fresh one failed: {refresh_error}",
        remedy: Some("{refresh_remedy}"),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected() && f.refresh_error.is_some_and(RefreshError::needs_login),
        words: &[],
        diagnosis: "{p} rejected the token, and getting a fresh one failed: {refresh_error}",
        remedy: Some("Log in again: mailtoken login {name}"),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected() && f.refresh_error.is_some(),
        words: &[],
        diagnosis: "{p} rejected the token, and getting a fresh one failed: {refresh_error}",
        remedy: None,
        code: Some(ExitCode::NoPerm),
    },
    // Gmail: `454 4.7.0 Too many login attempts, please try again later.`
    Case {
        when: |f| f.rejected(),
        words: &["too many login attempts"],
        diagnosis: "{p} refuses logins for a while: {reply}",
        remedy: Some(
            "Too many logins failed or came too fast. Wait (Google lifts the block after some minutes, at most about an hour) and try again; first stop any program that keeps retrying with an old password or token.",
        ),
        code: Some(ExitCode::TempFail),
    },
    // Office 365 ends an IMAP session whose token has expired by its clock.
    Case {
        when: |f| f.rejected() || f.follow_up_failed(),
        words: &["accesstokenexpired"],
        diagnosis: "{p} ended the session: the server considers the access token expired: {reply}",
        remedy: Some(
            "mailtoken hands out tokens with time left by this machine's clock, so the server's clock and this machine's disagree, or the token was used long after it was handed out. Check the clock (timedatectl: \"System clock synchronized: yes\"), then try again; mail programs that keep a session open must reconnect with a fresh token from mailtoken (their password command is asked again).",
        ),
        code: Some(ExitCode::TempFail),
    },
    Case {
        when: |f| f.rejected() && temporary_refusal(f.reply()),
        words: &[],
        diagnosis: "{p} could not check the credential just now: {reply}",
        remedy: Some(
            "A temporary failure at the server (its token check or password database did not answer): try again later.",
        ),
        code: Some(ExitCode::TempFail),
    },
    // ---- the server says why ----
    Case {
        when: |f| f.rejected() && f.app_password,
        words: &["application-specific password"],
        diagnosis: "{p} wants an app password: {reply}",
        remedy: Some(
            "2-Step Verification is on for this account, and the stored password is not an app password (the account password is refused).{create_at} Store it with `mailtoken set-password {name}`.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected(),
        words: &["application-specific password"],
        diagnosis: "{p} wants an app password: {reply}",
        remedy: Some(
            "2-Step Verification is on for this account: create an app password and store it, or use OAuth.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    // Gmail's 535 5.7.8 (BadCredentials) for PLAIN/LOGIN.
    Case {
        when: |f| f.rejected(),
        words: &["username and password not accepted"],
        diagnosis: "{p} did not accept the user name and password: {reply}",
        remedy: Some(
            "Check that user = \"{user}\" is the full address and that the stored password is a current app password: an app password dies when it is revoked or the account password changes, and the account password itself is refused when 2-Step Verification is on or password sign-in is blocked.{create_at} Store a new one with `mailtoken set-password {name}`, or use OAuth.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected(),
        words: &["not enabled for imap", "imap access is disabled"],
        diagnosis: "IMAP is disabled for this account: {reply}",
        remedy: Some(
            "Enable IMAP in the mailbox's settings (Gmail: Settings > Forwarding and POP/IMAP).",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected(),
        words: &[
            "web login required",
            "log in via your web browser",
            "log in with your web browser",
        ],
        diagnosis: "{p} wants a sign-in in a browser first: {reply}",
        remedy: Some(
            "Google held this sign-in back as unusual (a new place or device) or wants the account holder to confirm something. Sign in at https://mail.google.com in a browser, from this network if you can, do what Google asks, then try again.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    // Microsoft 365: SMTP AUTH switched off (https://aka.ms/smtp_auth_disabled).
    Case {
        when: |f| f.rejected(),
        words: &["smtpclientauthentication is disabled for the mailbox"],
        diagnosis: "SMTP AUTH is switched off for the mailbox {user}: {reply}",
        remedy: Some(
            "An Exchange administrator turns it on for this mailbox: Set-CASMailbox -Identity {user} -SmtpClientAuthenticationDisabled $false (or in the Microsoft 365 admin center: Users > Active users > the user > Mail > Manage email apps > Authenticated SMTP). It can take an hour to apply.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected(),
        words: &["smtpclientauthentication is disabled"],
        diagnosis: "SMTP AUTH is switched off for the whole tenant: {reply}",
        remedy: Some(
            "An Exchange administrator turns it on for the organization (Set-TransportConfig -SmtpClientAuthenticationDisabled $false) or only for this mailbox (Set-CASMailbox -Identity {user} -SmtpClientAuthenticationDisabled $false). OAuth does not get around this setting: it decides whether SMTP AUTH is allowed at all.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected(),
        words: &["5.7.139"],
        diagnosis: "Microsoft 365 refused SMTP AUTH by policy: {reply}",
        remedy: Some(
            "The words after 5.7.139 name the policy. Security defaults and \"basic authentication is disabled\" stop passwords, not OAuth: use auth = \"oauth\" (provider = \"microsoft\") and `mailtoken login {name}`. A locked or disabled user is for the administrator to release.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected(),
        words: &["5.7.30"],
        diagnosis: "Microsoft 365 no longer takes a password for SMTP AUTH: {reply}",
        remedy: Some(
            "Exchange Online turns off basic authentication for SMTP AUTH (by default for existing tenants at the end of December 2026). Sign in with OAuth instead: set provider = \"microsoft\" and auth = \"oauth\" with your app's client_id in [accounts.{name}], then `mailtoken login {name}`.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    // App-only tokens: Exchange needs the app's service principal and its access to
    // the mailbox. https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth#register-service-principals-in-exchange
    Case {
        when: |f| f.rejected() && f.account.app_only() && f.microsoft(),
        words: &[
            "5.7.3 authentication unsuccessful",
            "authenticate failed",
            "auth failed",
        ],
        diagnosis: "Exchange Online refused the app's token for {user}: {reply}",
        remedy: Some(
            "The app has a token but no access to this mailbox in Exchange. An Exchange administrator registers the app's service principal and grants it the mailbox: New-ServicePrincipal -AppId {client_id} -ObjectId <the Enterprise application's Object ID>, then Add-MailboxPermission -Identity {user} -User <that Object ID> -AccessRights FullAccess (IMAP, POP) and Add-RecipientPermission -Identity {user} -Trustee <that Object ID> -AccessRights SendAs (SMTP). The app also needs the application permissions IMAP.AccessAsApp, POP.AccessAsApp and SMTP.SendAsApp with admin consent.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected() && f.target.proto == Proto::Smtp,
        words: &["5.7.3 authentication unsuccessful"],
        diagnosis: "Microsoft 365 took the token but not for {user}: {reply}",
        remedy: Some(
            "The token belongs to another user than user = \"{user}\" (log in as {user}: `mailtoken login {name}`), or the app registration lacks the delegated permission SMTP.Send (scopes = {scopes}; add it and log in again).",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected() && f.microsoft() && f.target.proto != Proto::Smtp,
        words: &["authenticate failed", "auth failed"],
        diagnosis: "Office 365 refused the token: {reply}",
        remedy: Some(
            "Office 365 says no more than this. Most often: {p} is off for the mailbox (an Exchange administrator: Set-CASMailbox -Identity {user} -{ms_flag} $true), the token was issued to another user than user = \"{user}\" (log in as {user}: `mailtoken login {name}`), or the app registration lacks {ms_scope} (scopes = {scopes}).",
        ),
        code: Some(ExitCode::NoPerm),
    },
    // Gmail IMAP's refusal of a token or a password.
    Case {
        when: |f| f.rejected() && f.app_password,
        words: &["invalid credentials (failure)"],
        diagnosis: "Gmail did not accept the app password: {reply}",
        remedy: Some(
            "Check that user = \"{user}\" is the full address and that the app password is still listed at https://myaccount.google.com/apppasswords (changing the account password revokes them all). Store a new one with `mailtoken set-password {name}`.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected(),
        words: &["invalid credentials (failure)"],
        diagnosis: "Gmail refused {which_token} token: {reply}",
        remedy: Some(
            "Gmail takes a token only for the account that logged in, with the scope https://mail.google.com/: check that user = \"{user}\" is the Google account you log in as, and that scopes has that scope (scopes = {scopes}); then `mailtoken login {name}`. Also check that IMAP is on (Gmail: Settings > Forwarding and POP/IMAP).",
        ),
        code: Some(ExitCode::NoPerm),
    },
    // ---- the failure challenge says why ----
    Case {
        when: |f| f.challenge().is_some_and(Challenge::token_rejected),
        words: &[],
        diagnosis: "{p} rejected {which_token} token (challenge status {status}): {reply}",
        remedy: Some(
            "A token just issued was refused, so refreshing will not help. Most often the token belongs to another account than user = \"{user}\": log in with that account (mailtoken login {name}), or set user to the address you log in with.{scope_hint}{gmail_hint}",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.challenge().is_some(),
        words: &[],
        diagnosis: "{p} refused the token (challenge status {status}): {reply}",
        remedy: Some(
            "The token was accepted as genuine but not allowed here; check the account's scopes (scopes = {scopes}) and log in again.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    // ---- nothing says why ----
    Case {
        when: |f| f.rejected() && f.app_password,
        words: &[],
        diagnosis: "{p} refused the login: {reply}",
        remedy: Some(
            "The server did not take user = \"{user}\" with the stored app password. Check that user is the mailbox's full address; an app password stops working when it is revoked or the account password changes.{create_at} Store a new one with `mailtoken set-password {name}`.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.rejected(),
        words: &[],
        diagnosis: "{p} refused the login: {reply}",
        remedy: Some(
            "Check that user = \"{user}\" is the mailbox's full address, then log in again (mailtoken login {name}).",
        ),
        code: Some(ExitCode::NoPerm),
    },
    // ---- signed in, then refused ----
    Case {
        when: |f| f.follow_up_failed() && f.target.message.is_some(),
        words: &["sendasdenied", "5.2.252"],
        diagnosis: "{p} accepted the login but will not send as {from}: {reply}",
        remedy: Some(
            "The mailbox {user} may not send as {from}. Send from {user}, or have an Exchange administrator grant Send As: Add-RecipientPermission -Identity {from} -Trustee {user} -AccessRights SendAs (Exchange admin center: Recipients > Mailboxes > {from} > Delegation > Send as).",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| f.follow_up_failed() && f.target.message.is_some(),
        words: &[],
        diagnosis: "{p} accepted the login but refused the test message from {from} to {to}: {reply}",
        remedy: Some(
            "Signing in works. The server's words say why the message was refused: most often the From address is not one this mailbox may use, or the recipient was refused.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| matches!(f.outcome, Outcome::FollowUpFailed { .. }) && f.gmail_imap_or_pop(),
        words: &[],
        diagnosis: "{p} accepted the login, then refused the next command: {reply}",
        remedy: Some("Enable {p} in Gmail (Settings > Forwarding and POP/IMAP)."),
        code: Some(ExitCode::NoPerm),
    },
    Case {
        when: |f| matches!(f.outcome, Outcome::FollowUpFailed { .. }),
        words: &[],
        diagnosis: "{p} accepted the login, then refused the next command: {reply}",
        remedy: Some(
            "The server lets this account in but not to its mailbox: check that {p} access is enabled for it.",
        ),
        code: Some(ExitCode::NoPerm),
    },
    // ---- no sign-in attempted ----
    Case {
        when: |f| matches!(f.outcome, Outcome::NoMechanism { .. }) && f.app_password,
        words: &[],
        diagnosis: "{p} at {host}:{port}: no sign-in method in common: {why}",
        remedy: Some(
            "An app password needs PLAIN or LOGIN. A server that offers only XOAUTH2 or OAUTHBEARER wants OAuth (set auth = \"oauth\" and log in); otherwise the host may be wrong.",
        ),
        code: Some(ExitCode::Unavailable),
    },
    Case {
        when: |f| matches!(f.outcome, Outcome::NoMechanism { .. }),
        words: &[],
        diagnosis: "{p} at {host}:{port}: no sign-in method in common: {why}",
        remedy: Some(
            "OAuth needs XOAUTH2 or OAUTHBEARER. If the server only offers PLAIN or LOGIN, it wants a password (an app password), not a token; otherwise the host may be wrong.",
        ),
        code: Some(ExitCode::Unavailable),
    },
    Case {
        when: |f| matches!(f.outcome, Outcome::NoStarttls),
        words: &[],
        diagnosis: "{p} at {host}:{port} does not offer STARTTLS, and mailtoken never sends a credential unencrypted",
        remedy: Some(
            "If this port is for implicit TLS, set tls = \"implicit\" {where}; otherwise use the provider's STARTTLS port (IMAP 143, POP3 110, submission 587).",
        ),
        code: Some(ExitCode::Config),
    },
    Case {
        when: |f| {
            matches!(
                f.outcome,
                Outcome::WrongTls {
                    port_speaks: Tls::Implicit
                }
            )
        },
        words: &[],
        diagnosis: "port {port} of {host} speaks implicit TLS, but the account says STARTTLS",
        remedy: Some(
            "Set tls = \"implicit\" {where} (465, 993 and 995 are implicit TLS), or use the STARTTLS port (587 for submission, 143 for IMAP, 110 for POP3).",
        ),
        code: Some(ExitCode::Config),
    },
    Case {
        when: |f| {
            matches!(
                f.outcome,
                Outcome::WrongTls {
                    port_speaks: Tls::Starttls
                }
            )
        },
        words: &[],
        diagnosis: "port {port} of {host} answered in plain text: it expects STARTTLS, but the account says implicit TLS",
        remedy: Some(
            "Set tls = \"starttls\" {where} (587, 143 and 110 start plain and switch to TLS), or use the implicit-TLS port (465 for submission, 993 for IMAP, 995 for POP3).",
        ),
        code: Some(ExitCode::Config),
    },
    Case {
        when: |f| matches!(f.outcome, Outcome::Unreachable { .. }),
        words: &[],
        diagnosis: "{p}: {why}",
        remedy: Some("Check the host and port {where} and the network (a firewall, a VPN)."),
        code: Some(ExitCode::Unavailable),
    },
    Case {
        when: |f| matches!(f.outcome, Outcome::Certificate { .. }),
        words: &[],
        diagnosis: "{p}: {why}",
        remedy: Some(
            "If the server uses a private certificate authority, put its certificate in a PEM file and set ca_file = \"/path/to/ca.pem\" in [accounts.{name}]. A certificate for another name means the host name is wrong, or something between you and the server intercepts TLS; do not work around it.",
        ),
        code: Some(ExitCode::Unavailable),
    },
    Case {
        when: |f| matches!(f.outcome, Outcome::Timeout { .. }),
        words: &[],
        diagnosis: "{p} at {host}:{port}: no answer while {during}",
        remedy: Some(
            "The server or a firewall is silent. Check the port; if it is right, try again later or raise --timeout.",
        ),
        code: Some(ExitCode::TempFail),
    },
    Case {
        when: |f| matches!(f.outcome, Outcome::Protocol { .. }),
        words: &[],
        diagnosis: "{p} at {host}:{port}: {why}",
        remedy: Some("Check that {host}:{port} is the {p} server of this provider."),
        code: Some(ExitCode::Unavailable),
    },
];

/// What is wrong, what to do, and the exit code it calls for (`None`: all well).
pub(super) fn diagnose(
    target: &Target,
    outcome: &Outcome,
    refreshed: bool,
    refresh_error: Option<&RefreshError>,
    account: &Account,
) -> (String, Option<String>, Option<ExitCode>) {
    let f = Facts {
        target,
        outcome,
        refreshed,
        refresh_error,
        account,
        app_password: account.uses_app_password(),
        words: server_words(outcome).unwrap_or("").to_ascii_lowercase(),
    };
    let case = CASES
        .iter()
        .find(|c| c.applies(&f))
        .expect("each kind of outcome ends with an unconditional case");
    (
        fill(case.diagnosis, &f),
        case.remedy.map(|r| fill(r, &f)),
        case.code,
    )
}

impl Case {
    fn applies(&self, f: &Facts) -> bool {
        (self.when)(f) && (self.words.is_empty() || self.words.iter().any(|w| f.words.contains(w)))
    }
}

/// What the cases look at and the placeholders are filled from.
struct Facts<'a> {
    target: &'a Target,
    outcome: &'a Outcome,
    /// The check's attempt is a second one, with a refreshed token.
    refreshed: bool,
    /// Why getting a fresh token after the first rejection failed.
    refresh_error: Option<&'a RefreshError>,
    account: &'a Account,
    app_password: bool,
    /// The server's reply, lower-cased, for `Case::words`.
    words: String,
}

impl Facts<'_> {
    fn accepted(&self) -> bool {
        matches!(self.outcome, Outcome::Accepted { .. })
    }

    fn rejected(&self) -> bool {
        matches!(self.outcome, Outcome::Rejected { .. })
    }

    /// The decoded failure challenge of a rejection, when the server sent one.
    fn challenge(&self) -> Option<&Challenge> {
        match self.outcome {
            Outcome::Rejected { challenge, .. } => challenge.as_ref(),
            _ => None,
        }
    }

    fn follow_up_failed(&self) -> bool {
        matches!(self.outcome, Outcome::FollowUpFailed { .. })
    }

    /// Microsoft's servers (Office 365, Outlook.com), by preset or by host.
    fn microsoft(&self) -> bool {
        self.account.provider.is_some_and(|p| p.name == "microsoft")
            || ["office365.com", "outlook.com"]
                .iter()
                .any(|d| self.target.host.ends_with(d))
    }

    fn reply(&self) -> &str {
        server_words(self.outcome).unwrap_or("")
    }

    /// Gmail's IMAP or POP, which the account holder can have switched off.
    fn gmail_imap_or_pop(&self) -> bool {
        let gmail = self.account.provider.is_some_and(|p| p.name == "google")
            || self.target.host.ends_with(".gmail.com");
        gmail && self.target.proto != Proto::Smtp
    }

    fn scopes(&self) -> &[String] {
        self.account.oauth().map_or(&[], |o| &o.scopes)
    }

    /// The text for `{key}` (empty where these facts have none); `None` for an unknown key.
    fn value(&self, key: &str) -> Option<String> {
        let a = self.account;
        Some(match key {
            "p" => self.target.proto.title().to_owned(),
            "host" => self.target.host.clone(),
            "port" => self.target.port.to_string(),
            "reply" => self.reply().to_owned(),
            "why" => match self.outcome {
                Outcome::NoMechanism { why }
                | Outcome::Unreachable { why }
                | Outcome::Certificate { why }
                | Outcome::Protocol { why } => why.clone(),
                _ => String::new(),
            },
            "during" => match self.outcome {
                Outcome::Timeout { during } => during.clone(),
                _ => String::new(),
            },
            "name" => a.name.clone(),
            "user" => a.user.clone(),
            "scopes" => format!("{:?}", self.scopes()),
            // Where the user fixes a setting: the account's server table, or the command
            // line for a one-off --host.
            "where" => {
                if a.server(self.target.proto)
                    .is_some_and(|s| s.host == self.target.host)
                {
                    format!("in [accounts.{}.{}]", a.name, self.target.proto.name())
                } else {
                    "on the command line".to_owned()
                }
            }
            // Where the provider makes app passwords, as a sentence to append.
            "create_at" => a
                .provider
                .and_then(|p| p.app_passwords)
                .map(|w| format!(" Create one at {w}."))
                .unwrap_or_default(),
            "which_token" => if self.refreshed { "a freshly refreshed" } else { "the" }.to_owned(),
            "status" => self
                .challenge()
                .and_then(|c| c.status.clone())
                .unwrap_or_else(|| "?".to_owned()),
            // A scope the server names that the account does not ask for is the likely
            // reason a fresh token is refused.
            "scope_hint" => match self.challenge().and_then(|c| c.scope.as_ref()) {
                Some(s)
                    if !s
                        .split_whitespace()
                        .all(|s| self.scopes().iter().any(|a| a == s)) =>
                {
                    format!(
                        " The server wants the scope \"{s}\", which the account does not ask for (scopes = {:?}): add it and log in again.",
                        self.scopes()
                    )
                }
                _ => String::new(),
            },
            "gmail_hint" => if self.gmail_imap_or_pop() {
                " Also check that IMAP or POP is enabled in Gmail (Settings > Forwarding and POP/IMAP)."
            } else {
                ""
            }
            .to_owned(),
            "client_id" => self.account.oauth().map(|o| o.client_id.clone()).unwrap_or_default(),
            "from" => self.target.message.as_ref().map(|m| m.from.clone()).unwrap_or_default(),
            "to" => self.target.message.as_ref().map(|m| m.to.clone()).unwrap_or_default(),
            // Exchange's per-mailbox switch (Set-CASMailbox) and delegated permission
            // for the protocol; SMTP's switch is the other way round and has rows of its own.
            "ms_flag" => match self.target.proto {
                Proto::Imap => "ImapEnabled",
                Proto::Pop => "PopEnabled",
                Proto::Smtp => "",
            }
            .to_owned(),
            "ms_scope" => match self.target.proto {
                Proto::Imap => "IMAP.AccessAsUser.All",
                Proto::Pop => "POP.AccessAsUser.All",
                Proto::Smtp => "SMTP.Send",
            }
            .to_owned(),
            "refresh_error" => self
                .refresh_error
                .map(|e| e.error().message.clone())
                .unwrap_or_default(),
            "refresh_remedy" => self
                .refresh_error
                .and_then(|e| e.error().remedy.clone())
                .unwrap_or_default(),
            _ => return None,
        })
    }
}

/// `template` with each `{key}` replaced by its value, in one pass: braces in a value
/// (the server's words may have some) are left alone, as is an unknown `{key}`.
fn fill(template: &str, f: &Facts) -> String {
    let mut out = String::with_capacity(template.len() + 80);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find('}')
            .and_then(|close| Some((close, f.value(&after[..close])?)))
        {
            Some((close, value)) => {
                out.push_str(&value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A refusal that says "not now" rather than "no": SMTP 4xx (`454 4.7.0`), IMAP's
/// `[UNAVAILABLE]` (RFC 5530), POP3's `[SYS/TEMP]` (RFC 3206).
fn temporary_refusal(reply: &str) -> bool {
    reply.starts_with('4') && reply.as_bytes().get(3) == Some(&b' ')
        || reply.starts_with("[UNAVAILABLE]")
        || reply.starts_with("[SYS/TEMP]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::Error;
    use crate::record::FailureKind;
    use crate::verify::wire::{decode_challenge, smtp_line};

    fn account(toml: &str) -> Account {
        let c = Config::parse(std::path::Path::new("c.toml"), toml).unwrap();
        c.accounts.into_values().next().unwrap()
    }

    fn gmail() -> Account {
        account(
            "[accounts.g]\nprovider = \"google\"\nuser = \"g@gmail.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n",
        )
    }

    fn gmail_app_password() -> Account {
        account(
            "[accounts.gp]\nprovider = \"google\"\nauth = \"password\"\nuser = \"gp@gmail.com\"\n",
        )
    }

    /// OAuth against a server of the account's own, asking for the scope `mail` (as the
    /// test Dovecot wants).
    fn own_server() -> Account {
        account(
            "[accounts.o]\nuser = \"o@example.test\"\nauth_url = \"http://127.0.0.1:9/auth\"\n\
             token_url = \"http://127.0.0.1:9/token\"\nclient_id = \"c\"\nscopes = [\"mail\"]\n\
             imap = { host = \"mail.example.test\" }\npop = { host = \"mail.example.test\" }\n\
             smtp = { host = \"mail.example.test\" }\n",
        )
    }

    /// The account's own server for `proto`.
    fn target(a: &Account, proto: Proto) -> Target {
        let s = a.server(proto).unwrap();
        Target {
            proto,
            host: s.host.to_string(),
            port: s.port,
            tls: s.tls,
            message: None,
        }
    }

    fn rejected(reply: &str, challenge: Option<Challenge>) -> Outcome {
        Outcome::Rejected {
            reply: reply.into(),
            challenge,
        }
    }

    /// The first attempt's diagnosis: no refresh before it.
    fn first(a: &Account, proto: Proto, o: &Outcome) -> (String, Option<String>, Option<ExitCode>) {
        diagnose(&target(a, proto), o, false, None, a)
    }

    /// An SMTP reply as the SMTP dialogue reports it: the code, then the lines' texts.
    fn smtp_reply(lines: &[&str]) -> String {
        let parsed: Vec<_> = lines.iter().map(|l| smtp_line(l).unwrap()).collect();
        let texts: Vec<&str> = parsed.iter().map(|l| l.text).collect();
        format!("{} {}", parsed[0].code, texts.join(" "))
    }

    /// Dovecot's XOAUTH2 failure challenge (recorded from the test suite's Dovecot).
    fn dovecot_challenge() -> Option<Challenge> {
        decode_challenge(
            "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwOi8vMTI3LjAuMC4xOjM2Mzk1Ly53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=",
        )
    }

    /// Google's documented XOAUTH2 failure challenge.
    fn google_challenge() -> Option<Challenge> {
        decode_challenge(
            "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==",
        )
    }

    #[test]
    fn every_outcome_finds_a_case() {
        let samples = [
            Outcome::Accepted { reply: "ok".into() },
            rejected("no", None),
            Outcome::FollowUpFailed { reply: "no".into() },
            Outcome::NoMechanism { why: "w".into() },
            Outcome::NoStarttls,
            Outcome::WrongTls {
                port_speaks: Tls::Implicit,
            },
            Outcome::WrongTls {
                port_speaks: Tls::Starttls,
            },
            Outcome::Unreachable { why: "w".into() },
            Outcome::Certificate { why: "w".into() },
            Outcome::Timeout { during: "d".into() },
            Outcome::Protocol { why: "w".into() },
        ];
        for o in &samples {
            // No wildcard: a new kind of outcome fails to compile here until it has a
            // sample above (and so a case).
            match o {
                Outcome::Accepted { .. }
                | Outcome::Rejected { .. }
                | Outcome::FollowUpFailed { .. }
                | Outcome::NoMechanism { .. }
                | Outcome::NoStarttls
                | Outcome::WrongTls { .. }
                | Outcome::Unreachable { .. }
                | Outcome::Certificate { .. }
                | Outcome::Timeout { .. }
                | Outcome::Protocol { .. } => {}
            }
            for a in [gmail(), gmail_app_password(), own_server()] {
                for proto in Proto::ALL {
                    let (_, remedy, code) = first(&a, proto, o);
                    let accepted = matches!(o, Outcome::Accepted { .. });
                    assert_eq!(code.is_none(), accepted, "{o:?}");
                    assert_eq!(remedy.is_none(), accepted, "{o:?}");
                }
            }
        }
    }

    #[test]
    fn every_placeholder_is_known() {
        let (a, o) = (own_server(), rejected("no", dovecot_challenge()));
        let e = RefreshError::Failed(
            FailureKind::Rejected,
            Error::noperm("refresh failed").with_remedy("Do this."),
        );
        let f = Facts {
            target: &target(&a, Proto::Imap),
            outcome: &o,
            refreshed: true,
            refresh_error: Some(&e),
            account: &a,
            app_password: false,
            words: String::new(),
        };
        for c in CASES {
            for t in [Some(c.diagnosis), c.remedy].into_iter().flatten() {
                let filled = fill(t, &f);
                assert!(!filled.contains(['{', '}']), "{t}: {filled}");
            }
        }
    }

    #[test]
    fn words_are_looked_for_in_lower_case() {
        for c in CASES {
            for w in c.words {
                assert_eq!(*w, w.to_ascii_lowercase());
            }
        }
    }

    #[test]
    fn braces_in_the_servers_words_stay_as_they_are() {
        let a = own_server();
        let (d, ..) = first(&a, Proto::Imap, &rejected("{name} {user}", None));
        assert_eq!(d, "IMAP refused the login: {name} {user}");
    }

    #[test]
    fn temporary_refusals() {
        // Dovecot's answers when its token introspection is unreachable (recorded).
        assert!(temporary_refusal(
            "[UNAVAILABLE] Temporary authentication failure. [vm:2026-11-22 05:33:24]"
        ));
        assert!(temporary_refusal(
            "454 4.7.0 Temporary authentication failure. [vm:2026-11-22 05:33:25]"
        ));
        assert!(temporary_refusal(
            "[SYS/TEMP] Temporary authentication failure. [vm:2026-11-22 05:33:25]"
        ));
        assert!(!temporary_refusal("535 5.7.8 Authentication failed"));
        assert!(!temporary_refusal(
            "[AUTHENTICATIONFAILED] Authentication failed."
        ));
        assert!(!temporary_refusal("[AUTH] Authentication failed."));
    }

    #[test]
    fn a_temporary_refusal_says_try_later() {
        let a = own_server();
        let reply = "454 4.7.0 Temporary authentication failure. [vm:2026-11-22 05:33:25]";
        let (d, r, code) = first(&a, Proto::Smtp, &rejected(reply, None));
        assert_eq!(
            d,
            format!("SMTP could not check the credential just now: {reply}")
        );
        assert!(r.unwrap().contains("try again later"));
        assert_eq!(code, Some(ExitCode::TempFail));
    }

    #[test]
    fn gmail_wants_an_app_password() {
        // Gmail's IMAP and SMTP answers to the account password when 2-Step Verification
        // is on, as public bug reports quote them (not recorded here).
        let imap = "[ALERT] Application-specific password required: https://support.google.com/accounts/answer/185833 (Failure)";
        let a = gmail_app_password();
        let (d, r, code) = first(&a, Proto::Imap, &rejected(imap, None));
        assert_eq!(d, format!("IMAP wants an app password: {imap}"));
        let r = r.unwrap();
        assert!(
            r.contains("the stored password is not an app password")
                && r.contains(" Create one at https://myaccount.google.com/apppasswords")
                && r.contains("`mailtoken set-password gp`"),
            "{r}"
        );
        assert_eq!(code, Some(ExitCode::NoPerm));

        let smtp = smtp_reply(&[
            "534-5.7.9 Application-specific password required. For more information, go to",
            "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor",
        ]);
        let (d, r, _) = first(&gmail(), Proto::Smtp, &rejected(&smtp, None));
        assert_eq!(d, format!("SMTP wants an app password: {smtp}"));
        assert_eq!(
            r.unwrap(),
            "2-Step Verification is on for this account: create an app password and store it, or use OAuth."
        );
    }

    #[test]
    fn gmail_refuses_the_user_name_and_password() {
        // Google's documented failure (also in wire's gmail_smtp_failure).
        let reply = smtp_reply(&[
            "535-5.7.8 Username and Password not accepted. For more information, go to",
            "535 5.7.8  https://support.google.com/mail/?p=BadCredentials",
        ]);
        let a = gmail_app_password();
        let (d, r, code) = first(&a, Proto::Smtp, &rejected(&reply, None));
        assert_eq!(
            d,
            "SMTP did not accept the user name and password: 535 5.7.8 Username and Password not accepted. For more information, go to 5.7.8  https://support.google.com/mail/?p=BadCredentials"
        );
        let r = r.unwrap();
        assert!(
            r.starts_with("Check that user = \"gp@gmail.com\" is the full address")
                && r.contains(" Create one at https://myaccount.google.com/apppasswords")
                && r.ends_with("Store a new one with `mailtoken set-password gp`, or use OAuth."),
            "{r}"
        );
        assert_eq!(code, Some(ExitCode::NoPerm));
    }

    #[test]
    fn imap_switched_off_for_the_account_or_the_domain() {
        // Gmail's words as other mail programs match them (Firefox OS's email app); not
        // recorded here.
        for reply in [
            "[ALERT] Your account is not enabled for IMAP use.",
            "[ALERT] IMAP access is disabled for your domain.",
        ] {
            let (d, r, code) = first(&gmail(), Proto::Imap, &rejected(reply, None));
            assert_eq!(d, format!("IMAP is disabled for this account: {reply}"));
            assert_eq!(
                r.unwrap(),
                "Enable IMAP in the mailbox's settings (Gmail: Settings > Forwarding and POP/IMAP)."
            );
            assert_eq!(code, Some(ExitCode::NoPerm));
        }
    }

    #[test]
    fn gmail_wants_a_browser_sign_in_first() {
        // Gmail's IMAP answer after a blocked sign-in, as public bug reports quote it.
        let reply = "[ALERT] Please log in via your web browser: https://support.google.com/mail/accounts/answer/78754 (Failure)";
        let (d, r, code) = first(&gmail_app_password(), Proto::Imap, &rejected(reply, None));
        assert_eq!(
            d,
            format!("IMAP wants a sign-in in a browser first: {reply}")
        );
        assert!(
            r.unwrap()
                .starts_with("Google held this sign-in back as unusual")
        );
        assert_eq!(code, Some(ExitCode::NoPerm));
    }

    #[test]
    fn a_refused_token_names_the_challenge_status_and_the_likely_cause() {
        let reply = "[AUTHENTICATIONFAILED] Authentication failed.";
        let a = own_server();
        let o = rejected(reply, dovecot_challenge());
        let (d, r, code) = diagnose(&target(&a, Proto::Imap), &o, true, None, &a);
        assert_eq!(
            d,
            format!("IMAP rejected a freshly refreshed token (challenge status 401): {reply}")
        );
        // The account asks for `mail`, the scope Dovecot names: no scope hint; not Gmail.
        assert_eq!(
            r.unwrap(),
            "A token just issued was refused, so refreshing will not help. Most often the token belongs to another account than user = \"o@example.test\": log in with that account (mailtoken login o), or set user to the address you log in with."
        );
        assert_eq!(code, Some(ExitCode::NoPerm));

        // A scope the account does not ask for is named.
        let o = rejected(reply, google_challenge());
        let (d, r, _) = first(&a, Proto::Imap, &o);
        assert!(
            d.starts_with("IMAP rejected the token (challenge status 400)"),
            "{d}"
        );
        assert!(r.unwrap().ends_with(
            " The server wants the scope \"https://mail.google.com/\", which the account does not ask for (scopes = [\"mail\"]): add it and log in again."
        ));

        // Gmail's IMAP and POP can be switched off; its SMTP cannot.
        let g = gmail();
        let gmail_hint = " Also check that IMAP or POP is enabled in Gmail (Settings > Forwarding and POP/IMAP).";
        for (proto, hinted) in [
            (Proto::Imap, true),
            (Proto::Pop, true),
            (Proto::Smtp, false),
        ] {
            let r = first(&g, proto, &o).1.unwrap();
            assert_eq!(r.ends_with(gmail_hint), hinted, "{proto:?}: {r}");
            assert!(!r.contains("The server wants the scope"), "{r}");
        }
    }

    #[test]
    fn a_genuine_token_without_the_right_to_this_service() {
        // insufficient_scope (RFC 6750 §3.1), as an OAUTHBEARER server sends it (RFC 7628
        // §3.2.2).
        let c = decode_challenge(&base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            r#"{"status":"insufficient_scope","scope":"mail"}"#,
        ));
        let a = own_server();
        let (d, r, code) = first(
            &a,
            Proto::Smtp,
            &rejected("535 5.7.8 Authentication failed", c),
        );
        assert_eq!(
            d,
            "SMTP refused the token (challenge status insufficient_scope): 535 5.7.8 Authentication failed"
        );
        assert!(r.unwrap().contains("(scopes = [\"mail\"])"));
        assert_eq!(code, Some(ExitCode::NoPerm));
    }

    #[test]
    fn a_failed_refresh_comes_before_what_the_server_said() {
        let a = own_server();
        let t = target(&a, Proto::Imap);
        // Even words that have a case of their own.
        let o = rejected(
            "[ALERT] Application-specific password required",
            dovecot_challenge(),
        );
        let grant = Error::noperm("invalid_grant: Token has been expired or revoked.");
        let rejected_grant = RefreshError::Failed(FailureKind::Rejected, grant.clone());
        let (d, r, code) = diagnose(&t, &o, false, Some(&rejected_grant), &a);
        assert_eq!(
            d,
            "IMAP rejected the token, and getting a fresh one failed: invalid_grant: Token has been expired or revoked."
        );
        assert_eq!(r.as_deref(), Some("Log in again: mailtoken login o"));
        assert_eq!(code, Some(ExitCode::NoPerm));
        let with_remedy = RefreshError::Failed(
            FailureKind::Rejected,
            grant.with_remedy("Publish the OAuth app, then log in again."),
        );
        let r = diagnose(&t, &o, false, Some(&with_remedy), &a).1;
        assert_eq!(
            r.as_deref(),
            Some("Publish the OAuth app, then log in again.")
        );
        let offline = RefreshError::Failed(
            FailureKind::Temporary,
            Error::temp("the token endpoint did not answer"),
        );
        let (_, r, code) = diagnose(&t, &o, false, Some(&offline), &a);
        assert_eq!((r, code), (None, Some(ExitCode::NoPerm)));
    }

    #[test]
    fn a_login_refused_without_a_reason() {
        // Dovecot's words (recorded in tests/integration/app_password.rs).
        let reply = "[AUTHENTICATIONFAILED] Authentication failed.";
        let (_, r, _) = first(&gmail_app_password(), Proto::Imap, &rejected(reply, None));
        assert!(r.unwrap().contains("with the stored app password"));
        let (d, r, _) = first(&own_server(), Proto::Imap, &rejected(reply, None));
        assert_eq!(d, format!("IMAP refused the login: {reply}"));
        assert_eq!(
            r.unwrap(),
            "Check that user = \"o@example.test\" is the mailbox's full address, then log in again (mailtoken login o)."
        );
    }

    #[test]
    fn a_refused_follow_up_points_at_gmails_switch() {
        let o = Outcome::FollowUpFailed {
            reply: "[NOPERM] no".into(),
        };
        let r = first(&gmail(), Proto::Pop, &o).1.unwrap();
        assert_eq!(
            r,
            "Enable POP3 in Gmail (Settings > Forwarding and POP/IMAP)."
        );
        let r = first(&own_server(), Proto::Imap, &o).1.unwrap();
        assert_eq!(
            r,
            "The server lets this account in but not to its mailbox: check that IMAP access is enabled for it."
        );
    }

    #[test]
    fn settings_are_named_where_they_are_made() {
        let a = own_server();
        let o = Outcome::NoStarttls;
        let r = first(&a, Proto::Imap, &o).1.unwrap();
        assert!(
            r.contains("set tls = \"implicit\" in [accounts.o.imap];"),
            "{r}"
        );
        let one_off = Target {
            proto: Proto::Smtp,
            host: "smtp.example.net".into(),
            port: 2525,
            tls: Tls::Starttls,
            message: None,
        };
        let (d, r, code) = diagnose(&one_off, &o, false, None, &a);
        assert_eq!(
            d,
            "SMTP at smtp.example.net:2525 does not offer STARTTLS, and mailtoken never sends a credential unencrypted"
        );
        assert!(
            r.unwrap()
                .contains("set tls = \"implicit\" on the command line;")
        );
        assert_eq!(code, Some(ExitCode::Config));
    }
}
