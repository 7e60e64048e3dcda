//! What mailtoken knows without asking anyone: the domains of the big providers, and
//! the mail exchangers that show a provider behind a custom domain. Pure tables.

use crate::providers::{self, Provider};

/// A provider found for a domain, and the tenant it implies (Microsoft).
#[derive(Debug, Clone)]
pub struct Hit {
    pub provider: &'static Provider,
    pub tenant: Option<String>,
}

fn hit(name: &str, tenant: Option<&str>) -> Hit {
    Hit {
        provider: providers::find(name).expect("a preset of the table"),
        tenant: tenant.map(str::to_owned),
    }
}

/// Domains whose first label is one of these, under a country or generic suffix
/// (`hotmail.co.uk`, `yahoo.fr`): each provider's own list is long and changes.
const FAMILIES: &[(&str, &str, Option<&str>)] = &[
    // Personal Microsoft accounts only: `consumers` (a work account never has these).
    ("outlook", "microsoft", Some("consumers")),
    ("hotmail", "microsoft", Some("consumers")),
    ("live", "microsoft", Some("consumers")),
    ("yahoo", "yahoo", None),
    ("fastmail", "fastmail", None),
];

const EXACT: &[(&str, &str, Option<&str>)] = &[
    ("gmail.com", "google", None),
    ("googlemail.com", "google", None),
    ("msn.com", "microsoft", Some("consumers")),
    ("passport.com", "microsoft", Some("consumers")),
    ("windowslive.com", "microsoft", Some("consumers")),
    ("icloud.com", "icloud", None),
    ("me.com", "icloud", None),
    ("mac.com", "icloud", None),
    ("ymail.com", "yahoo", None),
    ("rocketmail.com", "yahoo", None),
    ("fastmail.com", "fastmail", None),
    ("fastmail.fm", "fastmail", None),
];

/// The built-in table: a provider's own consumer domains.
pub fn by_domain(domain: &str) -> Option<Hit> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    if let Some((_, p, t)) = EXACT.iter().find(|(name, ..)| *name == d) {
        return Some(hit(p, *t));
    }
    let labels: Vec<&str> = d.split('.').collect();
    let suffix_ok = match labels.len() {
        2 => true,
        // hotmail.co.uk, yahoo.com.au: a second-level public suffix.
        3 => matches!(labels[1], "co" | "com" | "net" | "org" | "ne" | "or"),
        _ => false,
    };
    if !suffix_ok {
        return None;
    }
    FAMILIES
        .iter()
        .find(|(first, ..)| labels[0] == *first)
        .map(|(_, p, t)| hit(p, *t))
}

/// The provider a mail exchanger shows, for a custom domain (`tenant` for Microsoft:
/// the domain itself, which Microsoft accepts in place of the tenant ID:
/// <https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols#endpoints>).
///
/// Sources: Google Workspace's MX values, `smtp.google.com` or `ASPMX.L.GOOGLE.COM` and
/// its `ALTn` hosts (<https://support.google.com/a/answer/174125>); Microsoft 365's
/// `DOMAIN-TLD.mail.protection.outlook.com` and, with DNSSEC, `*.mx.microsoft`
/// (<https://learn.microsoft.com/en-us/microsoft-365/enterprise/external-domain-name-system-records>);
/// iCloud+ custom domains' `mx01.mail.icloud.com` and `mx02` (the records iCloud's
/// custom-domain setup asks for); Fastmail's `in1-smtp.messagingengine.com` and `in2`
/// (<https://www.fastmail.help/hc/en-us/articles/360060591153>).
pub fn by_mx(exchange: &str, domain: &str) -> Option<Hit> {
    let mx = exchange.trim_end_matches('.').to_ascii_lowercase();
    let under = |suffix: &str| mx == suffix || mx.ends_with(&format!(".{suffix}"));
    if under("aspmx.l.google.com") || mx == "smtp.google.com" || under("googlemail.com") {
        return Some(hit("google", None));
    }
    if under("mail.protection.outlook.com") || under("mx.microsoft") {
        return Some(hit("microsoft", Some(domain)));
    }
    if under("mail.icloud.com") {
        return Some(hit("icloud", None));
    }
    if under("messagingengine.com") {
        return Some(hit("fastmail", None));
    }
    None
}

/// The provider an autoconfig file's OAuth issuer belongs to: its preset knows the
/// endpoints, scopes and quirks better than the file.
pub fn by_issuer(issuer: &str) -> Option<Hit> {
    let host = issuer
        .split("://")
        .last()
        .unwrap_or(issuer)
        .split(['/', ':'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match host.as_str() {
        "accounts.google.com" => Some(hit("google", None)),
        "login.microsoftonline.com" | "login.live.com" => Some(hit("microsoft", None)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(h: Option<Hit>) -> Option<(&'static str, Option<String>)> {
        h.map(|h| (h.provider.name, h.tenant))
    }

    #[test]
    fn consumer_domains() {
        assert_eq!(name(by_domain("gmail.com")), Some(("google", None)));
        assert_eq!(name(by_domain("GoogleMail.COM.")), Some(("google", None)));
        assert_eq!(
            name(by_domain("hotmail.co.uk")),
            Some(("microsoft", Some("consumers".into())))
        );
        assert_eq!(name(by_domain("live.fr")).unwrap().0, "microsoft");
        assert_eq!(name(by_domain("yahoo.com.au")).unwrap().0, "yahoo");
        assert_eq!(name(by_domain("me.com")).unwrap().0, "icloud");
        assert_eq!(name(by_domain("fastmail.fm")).unwrap().0, "fastmail");
        // Not a family member: a subdomain of someone else's, or a look-alike.
        assert!(by_domain("hotmail.evil.example").is_none());
        assert!(by_domain("mail.gmail.com.example").is_none());
        assert!(by_domain("outlookish.com").is_none());
        assert!(by_domain("example.com").is_none());
    }

    #[test]
    fn mail_exchangers() {
        assert_eq!(
            name(by_mx("ASPMX.L.GOOGLE.COM.", "a.example")).unwrap().0,
            "google"
        );
        assert_eq!(
            name(by_mx("alt1.aspmx.l.google.com", "a.example"))
                .unwrap()
                .0,
            "google"
        );
        assert_eq!(
            name(by_mx("smtp.google.com", "a.example")).unwrap().0,
            "google"
        );
        assert_eq!(
            name(by_mx(
                "contoso-com.mail.protection.outlook.com",
                "contoso.com"
            )),
            Some(("microsoft", Some("contoso.com".into())))
        );
        assert_eq!(
            name(by_mx("contoso-com.o-v1.mx.microsoft", "contoso.com"))
                .unwrap()
                .0,
            "microsoft"
        );
        assert_eq!(
            name(by_mx("mx01.mail.icloud.com", "x.example")).unwrap().0,
            "icloud"
        );
        assert_eq!(
            name(by_mx("in1-smtp.messagingengine.com", "x.example"))
                .unwrap()
                .0,
            "fastmail"
        );
        assert!(by_mx("mail.example.com", "example.com").is_none());
        assert!(by_mx("notaspmx.l.google.com.evil", "x").is_none());
        assert!(by_mx("evilmail.protection.outlook.com", "x").is_none());
    }

    #[test]
    fn issuers() {
        assert_eq!(name(by_issuer("accounts.google.com")).unwrap().0, "google");
        assert_eq!(
            name(by_issuer("https://login.microsoftonline.com/common/v2.0"))
                .unwrap()
                .0,
            "microsoft"
        );
        assert!(by_issuer("https://auth.example.com").is_none());
    }
}
