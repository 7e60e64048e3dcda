//! The daemon's wire format: one JSON object per line, each carrying `"v": 1`, and
//! exactly one reply per request. Pure types and codecs, shared by the server and the
//! lean client. Strings only on the wire; formats and protocols are parsed by their
//! own types, with the command line's rules.

use crate::error::{Error, ExitCode};
use crate::format::Format;
use crate::server::Proto;
use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;

/// Longest request line accepted; a token request is a few hundred bytes.
pub const MAX_REQUEST: usize = 16 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A credential for `account`, rendered in `format` (`raw`, `xoauth2`, ...).
    Token {
        account: String,
        #[serde(default = "default_format")]
        format: Format,
        /// Seconds the handed-out token must stay valid (capped at half its lifetime).
        #[serde(default = "default_min_valid")]
        min_valid: u64,
        /// imap | pop | smtp: whose host and port go into an OAUTHBEARER string.
        #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
        for_proto: Option<Proto>,
        /// Milliseconds to wait for an in-flight refresh or a pending login.
        #[serde(default)]
        wait_ms: u64,
    },
    /// The same rows as `mailtoken status --json`.
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
    },
    /// A login for `account` has started in another process: `token --wait` waits for it.
    LoginStarted { account: String },
    /// The store changed behind the daemon's back (login, logout): read it again.
    Reload { account: String },
    /// Is anybody there? Answers with the daemon's pid.
    Ping,
}

fn default_format() -> Format {
    Format::Raw
}

fn default_min_valid() -> u64 {
    crate::record::DEFAULT_MIN_VALID.as_secs()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reply {
    pub v: u32,
    pub ok: bool,
    /// The credential (for `token`), with no trailing newline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// When the credential's token expires (Unix seconds); none for an app password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Structured answers (`status` rows, `ping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// On failure: the exit code the client should end with, and the words for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

impl Reply {
    pub fn credential(c: String, expires_at: Option<u64>) -> Reply {
        Reply {
            v: VERSION,
            ok: true,
            credential: Some(c),
            expires_at,
            ..Default::default()
        }
    }
    pub fn data(d: serde_json::Value) -> Reply {
        Reply {
            v: VERSION,
            ok: true,
            data: Some(d),
            ..Default::default()
        }
    }
    pub fn ok() -> Reply {
        Reply {
            v: VERSION,
            ok: true,
            ..Default::default()
        }
    }
    pub fn error(e: &Error) -> Reply {
        Reply {
            v: VERSION,
            ok: false,
            code: Some(e.code as i32),
            message: Some(e.message.clone()),
            remedy: e.remedy.clone(),
            ..Default::default()
        }
    }
    /// The reply's error as ours, for the client to print and exit with.
    pub fn into_error(self) -> Error {
        let code = self.code.map_or(ExitCode::Software, ExitCode::from_code);
        let e = Error::new(
            code,
            self.message
                .unwrap_or_else(|| "the daemon gave no reason".into()),
        );
        match self.remedy {
            Some(r) => e.with_remedy(r),
            None => e,
        }
    }
}

/// Parses one request line, with an error for people that the daemon sends back.
pub fn parse_request(line: &[u8]) -> Result<Request, Error> {
    if line.len() > MAX_REQUEST {
        return Err(Error::usage(format!(
            "request longer than {MAX_REQUEST} bytes"
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| Error::usage(format!("request is not JSON: {e}")))?;
    match value.get("v").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(Error::usage(format!(
                "protocol version {v} is not supported (this daemon speaks {VERSION})"
            )));
        }
        None => return Err(Error::usage("request has no \"v\" (protocol version)")),
    }
    serde_json::from_value(value)
        .map_err(|e| Error::usage(format!("bad request: {}", without_value(&e.to_string()))))
}

/// A decoding error without the value it choked on: serde and the name parsers quote the
/// offending value first (`invalid type: string "..."`, ``unknown format `...` ``), and a
/// client may have put a secret in the wrong field. Field names stay; so do the lists of
/// what is accepted, which come after the value.
fn without_value(msg: &str) -> String {
    if ["missing field", "unknown field", "duplicate field"]
        .iter()
        .any(|p| msg.starts_with(p))
    {
        return msg.to_owned();
    }
    let Some(open) = msg.find(['`', '"']) else {
        return msg.to_owned();
    };
    let quote = msg[open..].chars().next().unwrap_or('`');
    // The value may itself hold quotes: its end is the last place a known suffix
    // begins (serde's ", expected ...", the name parsers' " (raw, xoauth2, ...)").
    let close = [format!("{quote}, expected"), format!("{quote} (")]
        .iter()
        .filter_map(|m| msg.rfind(m.as_str()))
        .filter(|&i| i > open)
        .max();
    match close {
        Some(c) => format!("{}{quote}…{}", &msg[..open], &msg[c..]),
        None => format!("{}{quote}…", &msg[..open]),
    }
}

/// One line of JSON with its newline.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(msg).expect("protocol messages serialize");
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_request_round_trip_with_defaults() {
        let r = parse_request(br#"{"v":1,"op":"token","account":"alice"}"#).unwrap();
        assert_eq!(
            r.op,
            Op::Token {
                account: "alice".into(),
                format: Format::Raw,
                min_valid: 300,
                for_proto: None,
                wait_ms: 0
            }
        );
        let line = encode(&r);
        assert_eq!(*line.last().unwrap(), b'\n');
        assert_eq!(parse_request(&line[..line.len() - 1]).unwrap(), r);
    }

    #[test]
    fn formats_and_protocols_are_parsed_as_the_command_line_parses_them() {
        let r = parse_request(
            br#"{"v":1,"op":"token","account":"a","format":"oauthbearer","for":"smtp"}"#,
        )
        .unwrap();
        assert!(matches!(
            r.op,
            Op::Token {
                format: Format::Oauthbearer,
                for_proto: Some(Proto::Smtp),
                ..
            }
        ));
        for bad in [
            &br#"{"v":1,"op":"token","account":"a","format":"XOAUTH2"}"#[..],
            br#"{"v":1,"op":"token","account":"a","format":"plain"}"#,
            br#"{"v":1,"op":"token","account":"a","for":"Imap"}"#,
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(e.message.contains("unknown"), "{e}");
        }
    }

    #[test]
    fn refusals_do_not_repeat_the_value_they_refuse() {
        let e = parse_request(br#"{"v":1,"op":"token","account":"w","format":"hunter2-secret"}"#)
            .unwrap_err();
        assert!(!e.message.contains("hunter2"), "{e}");
        assert!(e.message.contains("raw, xoauth2, oauthbearer, json"), "{e}");
        let e = parse_request(br#"{"v":1,"op":"token","account":"w","min_valid":"s3cr3t-token"}"#)
            .unwrap_err();
        assert!(!e.message.contains("s3cr3t"), "{e}");
        let e = parse_request(br#"{"v":1,"op":"token"}"#).unwrap_err();
        assert!(e.message.contains("missing field `account`"), "{e}");
        // A value with quotes of its own (found by fuzz/fuzz_targets/daemon_request.rs).
        let e = parse_request(br#"{"v":1,"op":"x``secret-op``y","account":"w"}"#).unwrap_err();
        assert!(!e.message.contains("secret-op"), "{e}");
        assert!(e.message.contains("expected one of `token`"), "{e}");
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let cases: [(&[u8], &str); 5] = [
            (b"hello", "not JSON"),
            (br#"{"op":"ping"}"#, "no \"v\""),
            (br#"{"v":2,"op":"ping"}"#, "version 2"),
            (br#"{"v":1,"op":"launch"}"#, "bad request"),
            (br#"{"v":1,"op":"token"}"#, "bad request"),
        ];
        for (line, needle) in cases {
            let e = parse_request(line).unwrap_err();
            assert!(
                e.message.contains(needle),
                "{}: {e}",
                String::from_utf8_lossy(line)
            );
        }
        let big = vec![b' '; MAX_REQUEST + 1];
        assert!(
            parse_request(&big)
                .unwrap_err()
                .message
                .contains("longer than")
        );
    }

    #[test]
    fn error_replies_carry_the_exit_code_and_remedy() {
        let e = Error::noperm("rejected").with_remedy("log in");
        let r = Reply::error(&e);
        let back: Reply = serde_json::from_slice(&encode(&r)).unwrap();
        let e2 = back.into_error();
        assert_eq!(e2.code, ExitCode::NoPerm);
        assert_eq!(e2.message, "rejected");
        assert_eq!(e2.remedy.as_deref(), Some("log in"));
    }

    #[test]
    fn a_credential_reply_is_one_line() {
        let line = encode(&Reply::credential("tok".into(), None));
        assert_eq!(line, b"{\"v\":1,\"ok\":true,\"credential\":\"tok\"}\n");
    }
}
