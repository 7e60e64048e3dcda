//! Where in the config file a problem is, for messages of the form
//! `FILE:LINE:COL: what is wrong` with the fix, and the account table being resolved.

use super::raw::RawAccount;
use crate::error::{Error, Result};
use crate::providers::Provider;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;
use url::Url;

/// Where in the file a problem is, for messages of the form `FILE:LINE:COL: ...`.
pub(super) struct Source<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Source<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    pub(super) fn error(
        &self,
        span: Option<Range<usize>>,
        message: &str,
        remedy: Option<String>,
    ) -> Error {
        let at = match span {
            Some(s) => {
                let (l, c) = self.line_col(s.start);
                format!("{}:{l}:{c}", self.path.display())
            }
            None => self.path.display().to_string(),
        };
        let e = Error::config(format!("{at}: {message}"));
        match remedy {
            Some(r) => e.with_remedy(r),
            None => e,
        }
    }
}

/// One `[accounts.NAME]` table on its way to an `Account`: what the resolvers of each
/// kind of account (`oauth.rs`, `password.rs`) share.
pub(super) struct Table<'a> {
    pub(super) src: &'a Source<'a>,
    /// The whole table, for errors about the account as a whole.
    pub(super) span: Range<usize>,
    pub(super) name: &'a str,
    pub(super) provider: Option<&'static Provider>,
    pub(super) raw: &'a RawAccount,
}

impl Table<'_> {
    /// "account `NAME` has no `KEY`", pointing at the table, with a hint.
    pub(super) fn missing(&self, key: &str, hint: &str) -> Error {
        self.src.error(
            Some(self.span.clone()),
            &format!("account `{}` has no `{key}`", self.name),
            Some(hint.to_owned()),
        )
    }

    /// The `auth` key, or the table when there is none.
    pub(super) fn auth_span(&self) -> Range<usize> {
        self.raw
            .auth
            .as_ref()
            .map_or(self.span.clone(), |k| k.span())
    }
}

/// A URL from the config: https, or plain http on loopback only.
pub(super) fn parse_url(src: &Source, s: &Spanned<String>, key: &str) -> Result<Url> {
    endpoint_url(s.get_ref())
        .map_err(|why| src.error(Some(s.span()), &format!("{key} {why}"), None))
}

/// An endpoint's URL as mailtoken will send credentials to it: https, or plain http
/// on loopback only. The error says what is wrong, to follow the key's name.
pub fn endpoint_url(text: &str) -> std::result::Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err("must use https (plain http is allowed only on loopback)".into());
    }
    Ok(url)
}

/// A `proxy` value: `"none"`, or an http:// proxy URL.
pub(super) fn proxy_setting(src: &Source, s: &Spanned<String>) -> Result<crate::proxy::Setting> {
    crate::proxy::Setting::parse(s.get_ref()).map_err(|why| {
        src.error(
            Some(s.span()),
            &format!("proxy {why}"),
            Some("Use proxy = \"http://HOST:PORT\" (credentials may go in it), or \"none\" for no proxy.".into()),
        )
    })
}
