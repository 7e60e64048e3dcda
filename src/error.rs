//! Errors people see, each carrying the sysexits code the command ends with.
//!
//! Every message says what happened and, where the user can do something, what to do.
//! No variant ever holds a secret: tokens are redacted before an error is built.

use std::fmt;

/// Exit codes from sysexits.h: the mail world's convention (msmtp, sendmail, procmail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// EX_USAGE: the command line was wrong.
    Usage = 64,
    /// EX_DATAERR: input data (a pasted URL, a stored record) was malformed.
    DataErr = 65,
    /// EX_UNAVAILABLE: a service could not be reached at all.
    Unavailable = 69,
    /// EX_SOFTWARE: a bug in mailtoken.
    Software = 70,
    /// EX_IOERR: a local file or store could not be read or written.
    IoErr = 74,
    /// EX_TEMPFAIL: try again later (network down, provider 5xx, timeout).
    TempFail = 75,
    /// EX_NOPERM: the user must act (log in again, approve access, unlock the keyring).
    NoPerm = 77,
    /// EX_CONFIG: the configuration is wrong.
    Config = 78,
}

impl ExitCode {
    /// The code a number stands for (another process's exit code, a reply on the
    /// wire); an unknown one is a bug somewhere.
    pub fn from_code(code: i32) -> ExitCode {
        match code {
            64 => ExitCode::Usage,
            65 => ExitCode::DataErr,
            69 => ExitCode::Unavailable,
            74 => ExitCode::IoErr,
            75 => ExitCode::TempFail,
            77 => ExitCode::NoPerm,
            78 => ExitCode::Config,
            _ => ExitCode::Software,
        }
    }
}

/// An error for a person: a message (what and why) and an optional remedy (what to do).
#[derive(Debug, Clone)]
pub struct Error {
    pub code: ExitCode,
    pub message: String,
    pub remedy: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            remedy: None,
        }
    }
    pub fn with_remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }
    pub fn usage(m: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, m)
    }
    pub fn data(m: impl Into<String>) -> Self {
        Self::new(ExitCode::DataErr, m)
    }
    pub fn config(m: impl Into<String>) -> Self {
        Self::new(ExitCode::Config, m)
    }
    pub fn temp(m: impl Into<String>) -> Self {
        Self::new(ExitCode::TempFail, m)
    }
    pub fn noperm(m: impl Into<String>) -> Self {
        Self::new(ExitCode::NoPerm, m)
    }
    pub fn io(m: impl Into<String>) -> Self {
        Self::new(ExitCode::IoErr, m)
    }
    pub fn software(m: impl Into<String>) -> Self {
        Self::new(ExitCode::Software, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(ExitCode::Unavailable, m)
    }
    /// Prefixes the message with context ("refreshing alice: ...").
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(r) = &self.remedy {
            write!(f, "\n{r}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Renders an error and its whole `source()` chain on one line: reqwest and hyper hide
/// the useful part ("connection refused", "certificate expired") a few levels down.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
