//! `mailtoken git-credential get|store|erase`: a Git credential helper
//! (gitcredentials(7), git-credential(1)), so that git send-email can authenticate
//! with an account's access token.
//!
//! Git writes `key=value` lines on the helper's stdin, ending with an empty line or
//! EOF: `protocol`, `host` (with `:port` when there is one), `path`, `username`, and in
//! newer versions keys such as `capability[]` and `wwwauth[]`, which are read and
//! ignored. git send-email asks for `protocol=smtp` and `host=HOST:PORT` (it fills in
//! the port before asking), plus `username` when `sendemail.smtpUser` is set.
//!
//! - `get` picks the account whose SMTP (or IMAP, POP3) server is that host, and port
//!   when given, and whose `user` is the username when one is given. It answers
//!   `username`, `password` (an access token valid for at least 5 minutes, from the
//!   daemon when it runs, else in this process, exactly as `mailtoken token`) and
//!   `password_expiry_utc`, so that Git (2.41 and later) never keeps it past its
//!   expiry. When no account or more than one fits, it answers nothing and exits 0,
//!   so git asks the next helper or the user; the reason goes to stderr in one line.
//!   Requests for other protocols (https, ssh...) get no answer and no message: a
//!   helper set for all URLs is asked about every git remote.
//! - `store` and `erase` read the request and do nothing: the token is mailtoken's to
//!   keep and refresh, and git erases a credential after any failed login, which must
//!   not log the user out.
//! - Any other operation is ignored, as git-credential(1) asks of helpers.

use crate::config::{Account, Config};
use crate::credential::{self, Request};
use crate::error::{Error, Result};
use crate::server::{Proto, Server};
use std::io::{BufRead, Write};
use zeroize::Zeroizing;

/// Longest request read from git; a real one is a few hundred bytes.
const MAX_REQUEST: u64 = 64 * 1024;

/// Protocols whose credentials may be a mail account's token.
const MAIL_PROTOCOLS: &[&str] = &[
    "smtp",
    "smtps",
    "submission",
    "submissions",
    "imap",
    "imaps",
    "pop",
    "pop3",
    "pop3s",
    "pops",
];

/// What git asked about: the attributes that pick an account.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    pub protocol: Option<String>,
    /// The host without the port (and without brackets around an IPv6 address).
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub username: Option<String>,
}

impl Query {
    /// `protocol://[username@]host[:port]`, for messages.
    pub fn describe(&self) -> String {
        let mut s = format!("{}://", self.protocol.as_deref().unwrap_or("?"));
        if let Some(u) = &self.username {
            s += &format!("{u}@");
        }
        match &self.host {
            Some(h) if h.contains(':') => s += &format!("[{h}]"),
            Some(h) => s += h,
            None => s += "?",
        }
        if let Some(p) = self.port {
            s += &format!(":{p}");
        }
        s
    }
}

/// Parses git's request: `key=value` lines up to an empty line or the end. Later
/// values of a key replace earlier ones, as in git; keys this helper does not use
/// (`capability[]`, `wwwauth[]`, `password`, ...) and lines without `=` are skipped.
/// `url=` is split into its parts, as `git credential` does with it.
pub fn parse(input: &str) -> Query {
    let mut q = Query::default();
    for line in input.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        // git's protocol: "The value may contain any bytes except newline or NUL"
        // (git-credential(1), INPUT/OUTPUT FORMAT); a line with a NUL is not git's.
        if line.contains('\0') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "protocol" => q.protocol = Some(value.to_ascii_lowercase()),
            "host" => {
                let (h, p) = split_host(value);
                q.host = Some(h);
                q.port = p;
            }
            "path" => q.path = Some(value.to_owned()),
            "username" => q.username = Some(value.to_owned()),
            "url" => {
                if let Ok(u) = url::Url::parse(value) {
                    q.protocol = Some(u.scheme().to_ascii_lowercase());
                    q.host = u.host_str().map(|h| {
                        h.trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_ascii_lowercase()
                    });
                    q.port = u.port();
                    q.username = (!u.username().is_empty()).then(|| {
                        percent_encoding_decode(u.username()).unwrap_or_else(|| u.username().into())
                    });
                    let path = u.path().trim_start_matches('/');
                    q.path = (!path.is_empty()).then(|| path.to_owned());
                }
            }
            _ => {}
        }
    }
    q
}

/// `%40` and friends in a URL's user name (`alice%40gmail.com`).
fn percent_encoding_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` into the host (lower case, no brackets)
/// and the port. A suffix that is not a port stays part of the host.
pub fn split_host(value: &str) -> (String, Option<u16>) {
    if let Some(rest) = value.strip_prefix('[')
        && let Some((h, after)) = rest.split_once(']')
    {
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (h.to_ascii_lowercase(), port);
    }
    match value.rsplit_once(':') {
        // One colon only: more would be a bare IPv6 address.
        Some((h, p))
            if !h.contains(':') && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) =>
        {
            match p.parse() {
                Ok(port) => (h.to_ascii_lowercase(), Some(port)),
                Err(_) => (value.to_ascii_lowercase(), None),
            }
        }
        _ => (value.to_ascii_lowercase(), None),
    }
}

/// Why `get` answers nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not a mail protocol: not ours to answer, and nothing to say.
    NotMail,
    /// No account, or more than one, fits; the words for stderr.
    Reason(String),
}

/// Every server of `account` a mail program may be sent to: SMTP (and the provider's
/// other SMTP ports on the same host), IMAP, POP3.
fn servers(account: &Account) -> Vec<&Server> {
    let mut v = Vec::new();
    if let Some(s) = &account.smtp {
        v.push(s);
        if let Some(p) = account.provider {
            v.extend(
                p.smtp_alternatives
                    .iter()
                    .filter(|alt| alt.host.eq_ignore_ascii_case(&s.host)),
            );
        }
    }
    v.extend(account.imap.iter());
    v.extend(account.pop.iter());
    v
}

fn same_host(a: &str, b: &str) -> bool {
    let strip = |h: &str| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_owned()
    };
    strip(a).eq_ignore_ascii_case(&strip(b))
}

/// Whether `account` has a server at the query's host (and port, when given).
fn serves(account: &Account, q: &Query) -> bool {
    let Some(host) = &q.host else {
        return false;
    };
    servers(account)
        .into_iter()
        .any(|s| same_host(&s.host, host) && q.port.is_none_or(|p| p == s.port))
}

/// The one account that fits the query (see the module documentation).
pub fn pick<'a>(
    accounts: impl IntoIterator<Item = &'a Account>,
    q: &Query,
) -> Result<&'a Account, Skip> {
    if let Some(p) = &q.protocol
        && !MAIL_PROTOCOLS.contains(&p.as_str())
    {
        return Err(Skip::NotMail);
    }
    let what = q.describe();
    if q.host.is_none() {
        return Err(Skip::Reason(format!(
            "git asked for {what} without a host; no account to pick"
        )));
    }
    let on_host: Vec<&Account> = accounts.into_iter().filter(|a| serves(a, q)).collect();
    let names = |v: &[&Account]| {
        v.iter()
            .map(|a| format!("{} ({})", a.name, a.user))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if on_host.is_empty() {
        return Err(Skip::Reason(format!(
            "no account has the server of {what}; set the account's `smtp = {{ host = ..., port = ... }}` to the sendemail.smtpServer and smtpServerPort git uses"
        )));
    }
    let chosen: Vec<&Account> = match &q.username {
        Some(u) => on_host
            .iter()
            .copied()
            .filter(|a| a.user.eq_ignore_ascii_case(u))
            .collect(),
        None => on_host.clone(),
    };
    match chosen.as_slice() {
        [one] => Ok(one),
        [] => Err(Skip::Reason(format!(
            "no account on the server of {what} has user `{}` (accounts there: {}); set sendemail.smtpUser to the account's `user`",
            q.username.as_deref().unwrap_or_default(),
            names(&on_host)
        ))),
        many => Err(Skip::Reason(format!(
            "{} accounts have the server of {what}: {}; set sendemail.smtpUser to the `user` of the one to use",
            many.len(),
            names(many)
        ))),
    }
}

/// The answer to `get`: `username`, `password` and, when known, `password_expiry_utc`.
pub fn answer(user: &str, token: &str, expires_at: Option<u64>) -> Result<Zeroizing<String>> {
    // Git refuses values with a newline or NUL, and would misread the lines after one.
    if [user, token].iter().any(|v| v.contains(['\n', '\0'])) {
        return Err(Error::software(
            "the user name or token contains a newline, which Git cannot take",
        ));
    }
    let mut s = Zeroizing::new(format!("username={user}\npassword="));
    s.push_str(token);
    s.push('\n');
    if let Some(e) = expires_at {
        s.push_str(&format!("password_expiry_utc={e}\n"));
    }
    Ok(s)
}

/// Reads git's request from `input`: lines up to an empty one or EOF.
pub fn read_request(input: impl BufRead) -> Result<String> {
    let mut text = String::new();
    let mut input = input.take(MAX_REQUEST);
    loop {
        let mut line = Vec::new();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(format!("reading git's request on stdin: {e}")))?;
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&line);
        if line.trim_end_matches(['\n', '\r']).is_empty() {
            break;
        }
        text.push_str(&line);
    }
    Ok(text)
}

/// `mailtoken git-credential OPERATION`, with git's request on stdin.
pub fn run(operation: &str) -> Result<()> {
    let request = read_request(std::io::stdin().lock())?;
    if operation != "get" {
        // store, erase, and whatever later versions of git may add.
        return Ok(());
    }
    let query = parse(&request);
    let config = Config::load_default()?;
    let account = match pick(config.accounts.values(), &query) {
        Ok(a) => a.clone(),
        Err(Skip::NotMail) => return Ok(()),
        Err(Skip::Reason(r)) => {
            eprintln!("mailtoken: {r}");
            return Ok(());
        }
    };
    // Valid for the default `--min-valid`, from the daemon when it runs, exactly as
    // `mailtoken token`; an app-password account gets its password (no expiry).
    let c = credential::get(&Request {
        for_proto: Proto::Smtp,
        ..Request::new(account.name.clone())
    })?;
    if let Some(w) = &c.warning {
        eprintln!("mailtoken: warning: {w}");
    }
    let out = answer(&account.user, &c.secret, c.expires_at)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io(format!("writing to stdout: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::parse(Path::new("c.toml"), text).unwrap()
    }

    const CUSTOM: &str = "auth_url = \"https://id.example.org/a\"\ntoken_url = \"https://id.example.org/t\"\nscopes = [\"mail\"]\nclient_id = \"c\"\n";

    fn accounts() -> Config {
        config(&format!(
            "[accounts.alice]\nprovider = \"google\"\nuser = \"alice@gmail.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n\
             [accounts.bob]\nprovider = \"google\"\nuser = \"Bob@gmail.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n\
             [accounts.lab]\nuser = \"dev@example.org\"\n{CUSTOM}\
             smtp = {{ host = \"mail.example.org\", port = 587 }}\nimap = {{ host = \"imap.example.org\" }}\n\
             [accounts.v6]\nuser = \"v6@example.org\"\n{CUSTOM}smtp = {{ host = \"::1\", port = 2525 }}\n"
        ))
    }

    fn pick_name(c: &Config, input: &str) -> Result<String, Skip> {
        pick(c.accounts.values(), &parse(input)).map(|a| a.name.clone())
    }

    #[test]
    fn a_line_with_a_nul_is_not_gits_and_is_skipped() {
        // Found by fuzz/fuzz_targets/git_credential.rs: a host of "\0\u{1}=".
        let q = parse("protocol=smtp\nhost=\0\u{1}=\nhost=smtp.example.com\n\n");
        assert_eq!(q.host.as_deref(), Some("smtp.example.com"));
        let q = parse("host=\0\n");
        assert_eq!(q.host, None);
    }

    #[test]
    fn parses_git_requests_and_tolerates_new_keys() {
        let q = parse(
            "capability[]=authtype\ncapability[]=state\nprotocol=smtp\nhost=Smtp.Gmail.com:587\n\
             username=alice@gmail.com\nwwwauth[]=Bearer realm=\"x\"\npassword_expiry_utc=1\nbogus line\n\
             path=a/b\n\nprotocol=https\n",
        );
        assert_eq!(
            q,
            Query {
                protocol: Some("smtp".into()),
                host: Some("smtp.gmail.com".into()),
                port: Some(587),
                path: Some("a/b".into()),
                username: Some("alice@gmail.com".into()),
            }
        );
        assert_eq!(q.describe(), "smtp://alice@gmail.com@smtp.gmail.com:587");
        // CRLF, no final newline, the last value wins.
        let q = parse("protocol=imap\r\nhost=a\r\nhost=b:993");
        assert_eq!((q.host.as_deref(), q.port), (Some("b"), Some(993)));
        assert_eq!(parse(""), Query::default());
        let q = parse("url=smtp://alice%40gmail.com@smtp.gmail.com:465\n");
        assert_eq!(q.protocol.as_deref(), Some("smtp"));
        assert_eq!(q.host.as_deref(), Some("smtp.gmail.com"));
        assert_eq!(q.port, Some(465));
        assert_eq!(q.username.as_deref(), Some("alice@gmail.com"));
    }

    #[test]
    fn splits_host_and_port() {
        assert_eq!(split_host("h.example"), ("h.example".into(), None));
        assert_eq!(split_host("H.example:465"), ("h.example".into(), Some(465)));
        assert_eq!(split_host("[::1]:2525"), ("::1".into(), Some(2525)));
        assert_eq!(split_host("[::1]"), ("::1".into(), None));
        assert_eq!(split_host("::1"), ("::1".into(), None));
        assert_eq!(split_host("h:99999"), ("h:99999".into(), None));
        assert_eq!(split_host("h:x"), ("h:x".into(), None));
        assert_eq!(split_host("h:"), ("h:".into(), None));
    }

    #[test]
    fn picks_by_host_port_and_user() {
        let c = accounts();
        assert_eq!(
            pick_name(&c, "protocol=smtp\nhost=mail.example.org:587\n"),
            Ok("lab".into())
        );
        // The IMAP server counts too, and no port means any port.
        assert_eq!(
            pick_name(&c, "protocol=imaps\nhost=IMAP.example.org\n"),
            Ok("lab".into())
        );
        assert_eq!(
            pick_name(
                &c,
                "protocol=smtp\nhost=mail.example.org\nusername=DEV@example.org\n"
            ),
            Ok("lab".into())
        );
        assert_eq!(
            pick_name(&c, "protocol=smtp\nhost=[::1]:2525\n"),
            Ok("v6".into())
        );
        // Two Gmail accounts: the user decides; 587 is the preset's other SMTP port.
        assert_eq!(
            pick_name(
                &c,
                "protocol=smtp\nhost=smtp.gmail.com:587\nusername=bob@gmail.com\n"
            ),
            Ok("bob".into())
        );
        assert_eq!(
            pick_name(
                &c,
                "protocol=smtp\nhost=smtp.gmail.com:465\nusername=alice@gmail.com\n"
            ),
            Ok("alice".into())
        );
    }

    #[test]
    fn explains_none_and_ambiguous() {
        let c = accounts();
        let reason = |input: &str| match pick_name(&c, input) {
            Err(Skip::Reason(r)) => r,
            other => panic!("{input:?}: {other:?}"),
        };
        let r = reason("protocol=smtp\nhost=smtp.gmail.com:587\n");
        assert!(r.starts_with("2 accounts have the server of smtp://smtp.gmail.com:587: alice (alice@gmail.com), bob (Bob@gmail.com);"), "{r}");
        assert!(r.contains("sendemail.smtpUser"), "{r}");
        let r = reason("protocol=smtp\nhost=smtp.gmail.com:587\nusername=carol@gmail.com\n");
        assert!(r.contains("no account on the server of smtp://carol@gmail.com@smtp.gmail.com:587 has user `carol@gmail.com`"), "{r}");
        let r = reason("protocol=smtp\nhost=mail.example.org:465\n");
        assert!(
            r.starts_with("no account has the server of smtp://mail.example.org:465"),
            "{r}"
        );
        let r = reason("protocol=smtp\nhost=smtp.office365.com:587\n");
        assert!(r.starts_with("no account has the server"), "{r}");
        assert!(reason("protocol=smtp\n").contains("without a host"));
        for r in [
            "protocol=smtp\nhost=smtp.gmail.com\n",
            "protocol=smtp\nhost=mail.example.org:465\n",
        ] {
            assert!(!reason(r).contains('\n'), "one line: {r:?}");
        }
        // Other protocols are not ours: no answer, no message.
        assert_eq!(
            pick_name(&c, "protocol=https\nhost=mail.example.org\n"),
            Err(Skip::NotMail)
        );
        assert_eq!(
            pick_name(&c, "protocol=ssh\nhost=smtp.gmail.com\n"),
            Err(Skip::NotMail)
        );
    }

    #[test]
    fn answer_is_three_lines() {
        assert_eq!(
            answer("a@b", "TOK", Some(1700000000)).unwrap().as_str(),
            "username=a@b\npassword=TOK\npassword_expiry_utc=1700000000\n"
        );
        assert_eq!(
            answer("a@b", "TOK", None).unwrap().as_str(),
            "username=a@b\npassword=TOK\n"
        );
        assert!(answer("a@b", "T\nOK", None).is_err());
        assert!(answer("a\n@b", "TOK", None).is_err());
    }

    #[test]
    fn reads_up_to_the_blank_line() {
        let r = read_request(&b"protocol=smtp\nhost=h\n\nignored=1\n"[..]).unwrap();
        assert_eq!(r, "protocol=smtp\nhost=h\n");
        let r = read_request(&b"protocol=smtp\r\n\r\nx=1\n"[..]).unwrap();
        assert_eq!(r, "protocol=smtp\r\n");
        let r = read_request(&b"protocol=smtp"[..]).unwrap();
        assert_eq!(r, "protocol=smtp");
        assert_eq!(read_request(&b""[..]).unwrap(), "");
    }
}
