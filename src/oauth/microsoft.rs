//! Microsoft identity platform errors in plain words. Its token endpoint puts an
//! `AADSTS` code at the start of `error_description` (and in `error_codes`), followed
//! by a sentence and then trace lines; the code says far more than the OAuth `error`
//! (`invalid_grant` covers an expired grant as well as a missing MFA). The table is
//! provider-facts.md's, from https://learn.microsoft.com/entra/identity-platform/reference-error-codes.

use crate::record::FailureKind;

/// What one code means and what to do about it.
pub struct Explained {
    pub code: u32,
    pub kind: FailureKind,
    /// What happened, for the message.
    pub meaning: &'static str,
    /// What to do; `{name}` is the account.
    pub remedy: &'static str,
}

struct Row {
    codes: &'static [u32],
    kind: FailureKind,
    meaning: &'static str,
    remedy: &'static str,
}

use FailureKind::{Config, Rejected};

static TABLE: &[Row] = &[
    Row {
        codes: &[50011],
        kind: Config,
        meaning: "the redirect URI does not match the app registration",
        remedy: "Add the redirect mailtoken uses to the app registration (Authentication > Mobile and desktop applications: http://localhost), or set redirect_uri in [accounts.{name}] to the one registered.",
    },
    Row {
        codes: &[50020, 90072],
        kind: Config,
        meaning: "the account is not in this tenant",
        remedy: "Set tenant in [accounts.{name}] to the account's tenant (its ID or domain), or to \"common\" (any account) or \"consumers\" (Outlook.com), then run `mailtoken login {name}`.",
    },
    Row {
        codes: &[50076, 50079],
        kind: Rejected,
        meaning: "multi-factor authentication is required",
        remedy: "Run `mailtoken login {name}` and complete the second factor in the browser.",
    },
    Row {
        codes: &[50173, 70008, 700082, 70043],
        kind: Rejected,
        meaning: "the sign-in has expired, was revoked, was unused for too long, or a sign-in frequency policy asks for a new one",
        remedy: "Run `mailtoken login {name}` to log in again; a token that is used at least every few weeks (the daemon keeps it in use) does not expire this way.",
    },
    Row {
        codes: &[53003],
        kind: Rejected,
        meaning: "the tenant's Conditional Access policy blocked the sign-in (device logins are often blocked)",
        remedy: "Log in through the browser instead (`mailtoken login {name}`, with `--paste` or `--port` on a machine without one), or ask the tenant's administrator which sign-ins the policy allows.",
    },
    Row {
        codes: &[65001],
        kind: Rejected,
        meaning: "consent for the app is missing (\"Need admin approval\")",
        remedy: "Ask the tenant's administrator to grant consent for the app (Enterprise applications > the app > Permissions), then run `mailtoken login {name}`.",
    },
    Row {
        codes: &[700016],
        kind: Config,
        meaning: "there is no app with this client ID in the tenant",
        remedy: "Check client_id and tenant in [accounts.{name}]: the app must be registered in that tenant, or be multi-tenant.",
    },
    Row {
        codes: &[7000112],
        kind: Config,
        meaning: "the app is disabled",
        remedy: "Use another app registration (client_id in [accounts.{name}]), or ask the tenant's administrator to enable this one.",
    },
    Row {
        codes: &[7000218],
        kind: Config,
        meaning: "public client flows are off for the app, which the device login needs",
        remedy: "Turn on \"Allow public client flows\" in the app registration (Authentication > Advanced settings), or log in through the browser: `mailtoken login {name}`.",
    },
    // The app-only grant's own failures (client credentials).
    Row {
        codes: &[7000215],
        kind: Config,
        meaning: "the client secret is not a secret of this app",
        remedy: "Check client_secret / client_secret_cmd of [accounts.{name}]: it must be the secret's Value (not its Secret ID) from the app registration's Certificates & secrets.",
    },
    Row {
        codes: &[7000222],
        kind: Config,
        meaning: "the client secret has expired",
        remedy: "Make a new client secret in the app registration (Certificates & secrets > New client secret) and put it where client_secret_cmd of [accounts.{name}] reads it.",
    },
    Row {
        codes: &[700027],
        kind: Config,
        meaning: "the signed client assertion was refused: the certificate is not one the app registration holds, or the key does not match it",
        remedy: "Upload the certificate of [accounts.{name}] to the app registration (Certificates & secrets > Certificates), or point certificate and private_key at the pair that is there.",
    },
    Row {
        codes: &[700024],
        kind: Config,
        meaning: "the client assertion is not within its valid time range",
        remedy: "This machine's clock is probably off: check it (timedatectl), then run `mailtoken token {name}` again.",
    },
];

/// The `AADSTS` code at the start of a Microsoft `error_description`, if any.
pub fn code(description: &str) -> Option<u32> {
    let rest = description.trim_start().strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The first line of an `error_description`: Microsoft's sentence, without the trace,
/// correlation and timestamp lines after it.
pub fn first_line(description: &str) -> &str {
    description
        .split(['\r', '\n'])
        .next()
        .unwrap_or(description)
        .trim()
}

/// What the description's code means, when the table knows it.
pub fn explain(description: &str) -> Option<Explained> {
    let code = code(description)?;
    let row = TABLE.iter().find(|r| r.codes.contains(&code))?;
    Some(Explained {
        code,
        kind: row.kind,
        meaning: row.meaning,
        remedy: row.remedy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's shape: the code and a sentence, then trace lines (as its token
    /// endpoint answers; the texts are Microsoft's own).
    fn desc(code_and_text: &str) -> String {
        format!(
            "{code_and_text}\r\nTrace ID: 0f5a1c2e-aaaa-bbbb-cccc-000000000000\r\nCorrelation ID: 1b2c3d4e-aaaa-bbbb-cccc-000000000000\r\nTimestamp: 2026-12-01 12:00:00Z"
        )
    }

    #[test]
    fn every_row_of_the_table_is_found_by_each_of_its_codes() {
        for row in TABLE {
            for &c in row.codes {
                let e = explain(&desc(&format!("AADSTS{c}: Some words."))).unwrap();
                assert_eq!((e.code, e.kind), (c, row.kind));
                assert!(
                    e.remedy.contains("{name}"),
                    "{c}: the remedy names the account"
                );
            }
        }
        assert!(explain(&desc("AADSTS12345: A code nobody knows.")).is_none());
        assert!(explain("invalid refresh token").is_none());
        assert_eq!(code("AADSTS7000218: x"), Some(7000218));
    }

    #[test]
    fn the_first_line_drops_the_trace() {
        let d = desc(
            "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        );
        assert_eq!(
            first_line(&d),
            "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource."
        );
        let e = explain(&d).unwrap();
        assert_eq!(e.kind, FailureKind::Rejected);
    }
}
