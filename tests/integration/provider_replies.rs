//! `mailtoken verify` against Office 365's and Gmail's refusals, replayed by a FAKE
//! IMAP/SMTP server (common::scripted) from the providers' own words: the real servers
//! of the harness do not say these things. The accounts are real: OAuth accounts are
//! logged in at the real authorization server (so a refresh after a rejected token
//! works), app-password accounts keep their password in the real keyring. Each test is
//! one row of the table in src/verify/diagnosis.rs: its diagnosis, its remedy, its
//! exit code.

use crate::common;

use common::mailserver::mailserver;
use common::mailtoken::*;
use common::scripted::{self, Exchange, MESSAGE, says, says_and_hangs_up};
use serde_json::Value;

// ---- Office 365 -------------------------------------------------------------------

const O365_SMTP_GREETING: &[&str] = &[
    "220 SN6PR04CA0012.outlook.office365.com Microsoft ESMTP MAIL Service ready at Tue, 1 Dec 2026 22:40:00 +0000 08DD1234ABCD5678",
];
const O365_EHLO: &[&str] = &[
    "250-SN6PR04CA0012.outlook.office365.com Hello [203.0.113.7]",
    "250-SIZE 157286400",
    "250-PIPELINING",
    "250-DSN",
    "250-ENHANCEDSTATUSCODES",
    "250-AUTH LOGIN XOAUTH2",
    "250-8BITMIME",
    "250-BINARYMIME",
    "250-CHUNKING",
    "250 SMTPUTF8",
];
const O365_QUIT: &[&str] = &["221 2.0.0 Service closing transmission channel"];

const O365_IMAP_GREETING: &[&str] = &[
    "* OK The Microsoft Exchange IMAP4 service is ready. [UwBOADYAUABSADAANABDAEEAMAAwADEAMgAuAG4AYQBtAHAAcgBkADAANAAuAHAAcgBvAGQALgBvAHUAdABsAG8AbwBrAC4AYwBvAG0A]",
];
const O365_CAPABILITY: &[&str] = &[
    "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+",
    "{tag} OK CAPABILITY completed.",
];
const O365_LOGOUT: &[&str] = &[
    "* BYE Microsoft Exchange Server IMAP4 server signing off.",
    "{tag} OK LOGOUT completed.",
];

// ---- Gmail -------------------------------------------------------------------------

const GMAIL_SMTP_GREETING: &[&str] =
    &["220 smtp.gmail.com ESMTP d2e1a72fcca58-7a1b2c3d4e5sm1234567b3b.12 - gsmtp"];
const GMAIL_EHLO: &[&str] = &[
    "250-smtp.gmail.com at your service, [203.0.113.7]",
    "250-SIZE 35882577",
    "250-8BITMIME",
    "250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
    "250-ENHANCEDSTATUSCODES",
    "250-PIPELINING",
    "250-CHUNKING",
    "250 SMTPUTF8",
];
const GMAIL_QUIT: &[&str] =
    &["221 2.0.0 closing connection d2e1a72fcca58-7a1b2c3d4e5sm1234567b3b.12 - gsmtp"];

/// An OAuth account of `provider`'s preset, logged in at the test authorization server,
/// whose `proto` server is the fake at `port`.
fn oauth_account(tag: &str, provider: &str, proto: &str, port: u16) -> (Env, String) {
    let login = unique_login(tag);
    let client = if provider == "google" {
        Client::GoogleShort
    } else {
        Client::Native
    };
    let base = account_toml("a", &login, client);
    let env = Env::with_file_store(&base);
    assert_exit(&env.login("a", &login), 0);
    env.write_config(&format!(
        "timeout = \"10s\"\n[store]\nkind = \"file\"\n{base}provider = \"{provider}\"\n{}",
        server(proto, port)
    ));
    (env, login)
}

/// An app-password account whose `proto` server is the fake at `port`, with its
/// password in the keyring.
fn password_account(tag: &str, provider: Option<&str>, proto: &str, port: u16) -> (Env, String) {
    let user = unique_login(tag);
    let provider = provider
        .map(|p| format!("provider = \"{p}\"\n"))
        .unwrap_or_default();
    let env = Env::with_file_store(&format!(
        "[accounts.a]\n{provider}auth = \"password\"\nuser = \"{user}\"\n{}",
        server(proto, port)
    ));
    let o = run_with_stdin(
        env.cmd().args(["set-password", "a"]),
        "abcd efgh ijkl mnop\n",
    );
    assert_exit(&o, 0);
    (env, user)
}

fn server(proto: &str, port: u16) -> String {
    format!(
        "ca_file = \"{}\"\n{proto} = {{ host = \"127.0.0.1\", port = {port}, tls = \"implicit\" }}\n",
        mailserver().ca.display()
    )
}

/// `mailtoken verify a --PROTO --json EXTRA...`: the exit code and the one check.
fn verify(env: &Env, proto: &str, extra: &[&str]) -> (i32, Value) {
    let flag = format!("--{proto}");
    let mut args = vec!["verify", "a", flag.as_str(), "--json", "--timeout", "10s"];
    args.extend_from_slice(extra);
    let o = env.run(&args);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {}", stderr(&o)));
    (o.status.code().unwrap(), v["checks"][0].clone())
}

fn text_of(check: &Value, key: &str) -> String {
    check[key].as_str().unwrap_or_default().to_owned()
}

const SMTP_535_5_7_139_TENANT: &[Exchange] = &[
    says("EHLO", O365_EHLO),
    says(
        "AUTH XOAUTH2",
        &[
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [SN6PR04CA0012.namprd04.prod.outlook.com 2026-12-01T22:40:00.000Z 08DD1234ABCD5678]",
        ],
    ),
    says("QUIT", O365_QUIT),
];

#[test]
fn smtp_auth_disabled_for_the_tenant_names_the_exchange_setting_and_exits_77() {
    let fake = scripted::serve(O365_SMTP_GREETING, SMTP_535_5_7_139_TENANT);
    let (env, _) = oauth_account("o365tenant", "microsoft", "smtp", fake.port);
    let (code, c) = verify(&env, "smtp", &[]);
    assert_eq!(code, 77, "{c}");
    assert!(
        text_of(&c, "diagnosis")
            .starts_with("SMTP AUTH is switched off for the whole tenant: 535 5.7.139"),
        "{c}"
    );
    let r = text_of(&c, "remedy");
    assert!(
        r.contains("Set-TransportConfig -SmtpClientAuthenticationDisabled $false"),
        "{r}"
    );
}

const SMTP_535_5_7_139_MAILBOX: &[Exchange] = &[
    says("EHLO", O365_EHLO),
    says(
        "AUTH XOAUTH2",
        &[
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. [SN6PR04CA0012.namprd04.prod.outlook.com 2026-12-01T22:40:00.000Z 08DD1234ABCD5678]",
        ],
    ),
    says("QUIT", O365_QUIT),
];

#[test]
fn smtp_auth_disabled_for_the_mailbox_names_set_casmailbox_for_that_user() {
    let fake = scripted::serve(O365_SMTP_GREETING, SMTP_535_5_7_139_MAILBOX);
    let (env, login) = oauth_account("o365mailbox", "microsoft", "smtp", fake.port);
    let (code, c) = verify(&env, "smtp", &[]);
    assert_eq!(code, 77, "{c}");
    assert!(
        text_of(&c, "diagnosis").starts_with(&format!(
            "SMTP AUTH is switched off for the mailbox {login}"
        )),
        "{c}"
    );
    assert!(
        text_of(&c, "remedy").contains(&format!(
            "Set-CASMailbox -Identity {login} -SmtpClientAuthenticationDisabled $false"
        )),
        "{c}"
    );
}

const SMTP_535_5_7_3: &[Exchange] = &[
    says("EHLO", O365_EHLO),
    says(
        "AUTH XOAUTH2",
        &[
            "535 5.7.3 Authentication unsuccessful [SN6PR04CA0012.namprd04.prod.outlook.com 2026-12-01T22:40:00.000Z 08DD1234ABCD5678]",
        ],
    ),
    says("QUIT", O365_QUIT),
];

#[test]
fn smtp_535_5_7_3_says_the_token_is_for_another_user_or_lacks_smtp_send() {
    let fake = scripted::serve(O365_SMTP_GREETING, SMTP_535_5_7_3);
    let (env, login) = oauth_account("o365other", "microsoft", "smtp", fake.port);
    let (code, c) = verify(&env, "smtp", &[]);
    assert_eq!(code, 77, "{c}");
    assert!(
        text_of(&c, "diagnosis").starts_with(&format!(
            "Microsoft 365 took the token but not for {login}: 535 5.7.3"
        )),
        "{c}"
    );
    let r = text_of(&c, "remedy");
    assert!(r.contains("another user") && r.contains("SMTP.Send"), "{r}");
}

const SMTP_550_5_7_30: &[Exchange] = &[
    says("EHLO", O365_EHLO),
    says("AUTH LOGIN", &["334 VXNlcm5hbWU6"]),
    says("", &["334 UGFzc3dvcmQ6"]),
    says(
        "",
        &[
            "550 5.7.30 Basic authentication is not supported for Client Submission. [SN6PR04CA0012.namprd04.prod.outlook.com 2026-12-01T22:40:00.000Z 08DD1234ABCD5678]",
        ],
    ),
    says("QUIT", O365_QUIT),
];

#[test]
fn smtp_550_5_7_30_for_a_password_says_to_sign_in_with_oauth() {
    let fake = scripted::serve(O365_SMTP_GREETING, SMTP_550_5_7_30);
    let (env, _) = password_account("o365basic", None, "smtp", fake.port);
    let (code, c) = verify(&env, "smtp", &[]);
    assert_eq!(code, 77, "{c}");
    assert!(
        text_of(&c, "diagnosis")
            .starts_with("Microsoft 365 no longer takes a password for SMTP AUTH: 550 5.7.30"),
        "{c}"
    );
    let r = text_of(&c, "remedy");
    assert!(
        r.contains("auth = \"oauth\"") && r.contains("mailtoken login a"),
        "{r}"
    );
}

const SMTP_SEND_AS_DENIED: &[Exchange] = &[
    says("EHLO", O365_EHLO),
    says("AUTH XOAUTH2", &["235 2.7.0 Authentication successful"]),
    says("MAIL FROM:<boss@contoso.example>", &["250 2.1.0 Sender OK"]),
    says("RCPT TO:<", &["250 2.1.5 Recipient OK"]),
    says("DATA", &["354 Start mail input; end with <CRLF>.<CRLF>"]),
    says(
        MESSAGE,
        &[
            "554 5.2.252 SendAsDenied; alerts@contoso.example not allowed to send as boss@contoso.example; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message. 0.35250:0A00E589, 1.36674:0A000000, 1.61250:00000000[EndDiagnosticData] [Hostname=SN6PR04MB1234.namprd04.prod.outlook.com]",
        ],
    ),
    says("QUIT", O365_QUIT),
];

#[test]
fn a_test_message_refused_with_send_as_denied_names_the_send_as_permission() {
    let fake = scripted::serve(O365_SMTP_GREETING, SMTP_SEND_AS_DENIED);
    let (env, login) = oauth_account("o365sendas", "microsoft", "smtp", fake.port);
    let (code, c) = verify(
        &env,
        "smtp",
        &[
            "--send-to",
            "me@contoso.example",
            "--from",
            "boss@contoso.example",
        ],
    );
    assert_eq!(code, 77, "{c}");
    assert!(
        text_of(&c, "diagnosis")
            .starts_with("SMTP accepted the login but will not send as boss@contoso.example: 554 5.2.252 SendAsDenied"),
        "{c}"
    );
    assert!(
        text_of(&c, "remedy").contains(&format!(
            "Add-RecipientPermission -Identity boss@contoso.example -Trustee {login} -AccessRights SendAs"
        )),
        "{c}"
    );
    assert!(fake.heard().contains(&"<message>".to_owned()));
}

const IMAP_AUTHENTICATE_FAILED: &[Exchange] = &[
    says("CAPABILITY", O365_CAPABILITY),
    says("AUTHENTICATE XOAUTH2", &["{tag} NO AUTHENTICATE failed."]),
    says("LOGOUT", O365_LOGOUT),
];

#[test]
fn office365_imap_authenticate_failed_lists_its_usual_causes() {
    let fake = scripted::serve(O365_IMAP_GREETING, IMAP_AUTHENTICATE_FAILED);
    let (env, login) = oauth_account("o365imap", "microsoft", "imap", fake.port);
    let (code, c) = verify(&env, "imap", &[]);
    assert_eq!(code, 77, "{c}");
    assert_eq!(
        text_of(&c, "diagnosis"),
        "Office 365 refused the token: AUTHENTICATE failed."
    );
    let r = text_of(&c, "remedy");
    assert!(
        r.contains(&format!(
            "Set-CASMailbox -Identity {login} -ImapEnabled $true"
        )) && r.contains("IMAP.AccessAsUser.All"),
        "{r}"
    );
}

#[test]
fn an_app_only_token_refused_by_office365_names_the_service_principal_and_mailbox_permission() {
    let fake = scripted::serve(O365_IMAP_GREETING, IMAP_AUTHENTICATE_FAILED);
    let (env, app) = app_env("o365app", None);
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    // The account `a` this file's `verify` checks, at Microsoft, IMAP at the fake.
    let text = text.replace("[accounts.app]", "[accounts.a]").replace(
        "auth = \"client_credentials\"\n",
        "auth = \"client_credentials\"\nprovider = \"microsoft\"\n",
    );
    let imap = text
        .lines()
        .find(|l| l.starts_with("imap = "))
        .unwrap()
        .to_owned();
    env.write_config(&text.replace(
        &imap,
        &format!(
            "imap = {{ host = \"127.0.0.1\", port = {}, tls = \"implicit\" }}",
            fake.port
        ),
    ));
    let (code, c) = verify(&env, "imap", &[]);
    assert_eq!(code, 77, "{c}");
    assert_eq!(
        text_of(&c, "diagnosis"),
        format!(
            "Exchange Online refused the app's token for {}: AUTHENTICATE failed.",
            app.mailbox
        )
    );
    let r = text_of(&c, "remedy");
    assert!(
        r.contains(&format!("New-ServicePrincipal -AppId {}", app.client_id))
            && r.contains(&format!("Add-MailboxPermission -Identity {}", app.mailbox)),
        "{r}"
    );
}

const IMAP_BYE_TOKEN_EXPIRED: &[Exchange] = &[
    says("CAPABILITY", O365_CAPABILITY),
    says_and_hangs_up(
        "AUTHENTICATE XOAUTH2",
        &["* BYE Session invalidated - AccessTokenExpired"],
    ),
];

#[test]
fn office365_bye_access_token_expired_says_check_the_clock_and_exits_75() {
    let fake = scripted::serve(O365_IMAP_GREETING, IMAP_BYE_TOKEN_EXPIRED);
    let (env, _) = oauth_account("o365bye", "microsoft", "imap", fake.port);
    let (code, c) = verify(&env, "imap", &[]);
    assert_eq!(code, 75, "{c}");
    assert_eq!(
        text_of(&c, "diagnosis"),
        "IMAP ended the session: the server considers the access token expired: BYE Session invalidated - AccessTokenExpired"
    );
    assert!(text_of(&c, "remedy").contains("timedatectl"), "{c}");
}

const GMAIL_534_5_7_9: &[Exchange] = &[
    says("EHLO", GMAIL_EHLO),
    says(
        "AUTH PLAIN",
        &[
            "534-5.7.9 Application-specific password required. For more information, go to",
            "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor d2e1a72fcca58-7a1b2c3d4e5sm1234567b3b.12 - gsmtp",
        ],
    ),
    says("QUIT", GMAIL_QUIT),
];

#[test]
fn gmail_534_5_7_9_says_an_app_password_is_needed_and_where_to_make_one() {
    let fake = scripted::serve(GMAIL_SMTP_GREETING, GMAIL_534_5_7_9);
    let (env, _) = password_account("gmail579", Some("google"), "smtp", fake.port);
    let (code, c) = verify(&env, "smtp", &[]);
    assert_eq!(code, 77, "{c}");
    assert!(
        text_of(&c, "diagnosis").starts_with(
            "SMTP wants an app password: 534 5.7.9 Application-specific password required."
        ),
        "{c}"
    );
    let r = text_of(&c, "remedy");
    assert!(
        r.contains("https://myaccount.google.com/apppasswords")
            && r.contains("mailtoken set-password a"),
        "{r}"
    );
}

const GMAIL_534_5_7_14: &[Exchange] = &[
    says("EHLO", GMAIL_EHLO),
    says(
        "AUTH PLAIN",
        &[
            "534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbtFakeFakeFake>",
            "534-5.7.14 Please log in with your web browser and then try again. For more",
            "534-5.7.14 information, go to",
            "534 5.7.14  https://support.google.com/mail/?p=WebLoginRequired d2e1a72fcca58-7a1b2c3d4e5sm1234567b3b.12 - gsmtp",
        ],
    ),
    says("QUIT", GMAIL_QUIT),
];

#[test]
fn gmail_534_5_7_14_says_to_sign_in_through_the_web_browser_first() {
    let fake = scripted::serve(GMAIL_SMTP_GREETING, GMAIL_534_5_7_14);
    let (env, _) = password_account("gmail5714", Some("google"), "smtp", fake.port);
    let (code, c) = verify(&env, "smtp", &[]);
    assert_eq!(code, 77, "{c}");
    assert!(
        text_of(&c, "diagnosis").starts_with("SMTP wants a sign-in in a browser first: 534 5.7.14"),
        "{c}"
    );
    assert!(
        text_of(&c, "remedy").contains("https://mail.google.com"),
        "{c}"
    );
}

const GMAIL_IMAP_GREETING: &[&str] =
    &["* OK Gimap ready for requests from 203.0.113.7 l12mb3456789wrb"];
const GMAIL_IMAP_INVALID: &[Exchange] = &[
    says(
        "CAPABILITY",
        &[
            "* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 XYZZY SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER",
            "{tag} OK Thats all she wrote! l12mb3456789wrb",
        ],
    ),
    // {"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}
    says(
        "AUTHENTICATE XOAUTH2",
        &[
            "+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==",
        ],
    ),
    says(
        "",
        &["{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)"],
    ),
    says(
        "LOGOUT",
        &["* BYE LOGOUT Requested", "{tag} OK 73 good day (Success)"],
    ),
];

#[test]
fn gmail_invalid_credentials_after_a_refresh_names_the_account_and_the_scope() {
    let fake = scripted::serve(GMAIL_IMAP_GREETING, GMAIL_IMAP_INVALID);
    let (env, login) = oauth_account("gmailinvalid", "google", "imap", fake.port);
    let (code, c) = verify(&env, "imap", &[]);
    assert_eq!(code, 77, "{c}");
    assert_eq!(
        text_of(&c, "diagnosis"),
        "Gmail refused a freshly refreshed token: [AUTHENTICATIONFAILED] Invalid credentials (Failure)"
    );
    let r = text_of(&c, "remedy");
    assert!(
        r.contains(&format!("user = \"{login}\"")) && r.contains("https://mail.google.com/"),
        "{r}"
    );
    // Two connections: the first token, then the refreshed one.
    let auths = fake
        .heard()
        .iter()
        .filter(|l| l.contains("AUTHENTICATE"))
        .count();
    assert_eq!(auths, 2);
}

const GMAIL_454: &[Exchange] = &[
    says("EHLO", GMAIL_EHLO),
    says(
        "AUTH XOAUTH2",
        &[
            "454-4.7.0 Too many login attempts, please try again later. For more",
            "454-4.7.0 information, go to",
            "454 4.7.0  https://support.google.com/mail/answer/7126229 d2e1a72fcca58-7a1b2c3d4e5sm1234567b3b.12 - gsmtp",
        ],
    ),
    says("QUIT", GMAIL_QUIT),
];

#[test]
fn gmail_454_too_many_login_attempts_says_wait_and_exits_75() {
    let fake = scripted::serve(GMAIL_SMTP_GREETING, GMAIL_454);
    let (env, _) = oauth_account("gmail454", "google", "smtp", fake.port);
    let (code, c) = verify(&env, "smtp", &[]);
    assert_eq!(code, 75, "{c}");
    assert!(
        text_of(&c, "diagnosis")
            .starts_with("SMTP refuses logins for a while: 454 4.7.0 Too many login attempts"),
        "{c}"
    );
    assert!(text_of(&c, "remedy").contains("Wait"), "{c}");
}
