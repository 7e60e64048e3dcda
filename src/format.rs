//! The forms a credential is handed out in (`--format`), and their rendering: the bare
//! access token, the base64 SASL strings XOAUTH2 and OAUTHBEARER, and JSON. The names
//! are parsed here only, for the command line and the daemon protocol alike.

use crate::config::Account;
use crate::sasl;
use crate::server::Proto;
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The bare access token (or app password): what msmtp, mutt, neomutt, mbsync,
    /// aerc and himalaya want; they build the SASL string themselves.
    Raw,
    /// base64 of `user=U\x01auth=Bearer T\x01\x01` (Google's and Microsoft's form).
    Xoauth2,
    /// base64 of the RFC 7628 initial response, for the server chosen by `--for`.
    Oauthbearer,
    /// `{"access_token","token_type","expires_at","account","user"}`.
    Json,
}

impl Format {
    pub const ALL: [Format; 4] = [
        Format::Raw,
        Format::Xoauth2,
        Format::Oauthbearer,
        Format::Json,
    ];

    /// The name on the command line and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Xoauth2 => "xoauth2",
            Format::Oauthbearer => "oauthbearer",
            Format::Json => "json",
        }
    }
}

crate::names::by_name!(Format, "format");

/// An access token in `format`, without a newline. `for_proto` picks the server whose
/// host and port go into an OAUTHBEARER string (left out when the account has none).
pub fn render_token(
    format: Format,
    account: &Account,
    expires_at: Option<u64>,
    token: &str,
    for_proto: Proto,
) -> Zeroizing<String> {
    match format {
        Format::Raw => Zeroizing::new(token.to_owned()),
        Format::Xoauth2 => sasl::xoauth2(&account.user, token),
        Format::Oauthbearer => {
            let server = account.server(for_proto);
            sasl::oauthbearer(
                &account.user,
                server.map(|s| &*s.host),
                server.map(|s| s.port),
                token,
            )
        }
        Format::Json => Zeroizing::new(
            serde_json::json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_at": expires_at,
                "account": account.name,
                "user": account.user,
            })
            .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TokenRecord;
    use crate::secret::Secret;
    use base64::Engine;
    use clap::ValueEnum;

    fn account() -> Account {
        crate::config::test_account(crate::config::TEST_GOOGLE)
    }

    fn rec() -> TokenRecord {
        TokenRecord {
            access_token: Some(Secret::new("TOK")),
            expires_at: Some(2000),
            obtained_at: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn every_format_renders_the_token() {
        let (a, r) = (account(), rec());
        let render = |f, p| render_token(f, &a, r.expires_at, "TOK", p);
        assert_eq!(render(Format::Raw, Proto::Imap).as_str(), "TOK");
        let b64 = base64::engine::general_purpose::STANDARD;
        let x = b64
            .decode(render(Format::Xoauth2, Proto::Imap).as_str())
            .unwrap();
        assert_eq!(x, b"user=a@gmail.com\x01auth=Bearer TOK\x01\x01");
        let o = b64
            .decode(render(Format::Oauthbearer, Proto::Smtp).as_str())
            .unwrap();
        assert_eq!(
            o,
            b"n,a=a@gmail.com,\x01host=smtp.gmail.com\x01port=465\x01auth=Bearer TOK\x01\x01"
        );
        let j: serde_json::Value =
            serde_json::from_str(&render(Format::Json, Proto::Imap)).unwrap();
        assert_eq!(j["access_token"], "TOK");
        assert_eq!(j["expires_at"], 2000);
        assert_eq!(j["user"], "a@gmail.com");
    }

    #[test]
    fn names_are_the_same_on_the_command_line_and_the_wire() {
        for f in Format::ALL {
            assert_eq!(f.to_possible_value().unwrap().get_name(), f.name());
            assert_eq!(f.name().parse::<Format>(), Ok(f));
            let wire = serde_json::to_string(&f).unwrap();
            assert_eq!(serde_json::from_str::<Format>(&wire).unwrap(), f);
        }
        assert_eq!(Format::value_variants(), Format::ALL);
        // clap takes no other case, and so the daemon takes none.
        assert!("XOAUTH2".parse::<Format>().is_err());
        assert!(serde_json::from_str::<Format>("\"Json\"").is_err());
    }
}
