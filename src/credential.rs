//! The credential service: the one way to a credential for every consumer (`token`,
//! `git-credential`, `verify`, the daemon's socket, and the front executable). It owns:
//! - daemon or in-process: [`get`] asks the daemon when one answers ([`from_daemon`]),
//!   else does the work in this process ([`in_process`]);
//! - app password or OAuth: [`answer`] is the one place where the account's kind picks
//!   the path, for both of the [`Source`]s below;
//! - the freshness rules: both sources decide through the account state machine
//!   (`state.rs`), the daemon from memory and this process from the store;
//! - the form the credential is handed out in (`format.rs`).

use crate::broker::{Broker, Served};
use crate::config::{Account, Auth, Config};
use crate::error::{Error, Result};
use crate::format::{Format, render_token};
use crate::ipc::client;
use crate::ipc::protocol::{self, Op};
use crate::password;
use crate::record::{DEFAULT_MIN_VALID, FailureKind};
use crate::secret::Secret;
use crate::server::Proto;
use crate::state::RefreshError;
use std::cell::OnceCell;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use zeroize::Zeroizing;

/// What a consumer asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub account: String,
    pub format: Format,
    /// The token handed out stays valid at least this long (half its lifetime if that
    /// is shorter).
    pub min_valid: Duration,
    /// Whose host and port go into an OAUTHBEARER string.
    pub for_proto: Proto,
    /// With the daemon: how long to wait for a refresh in flight or a pending login.
    pub wait: Duration,
}

impl Request {
    /// The defaults of `mailtoken token ACCOUNT`.
    pub fn new(account: impl Into<String>) -> Request {
        Request {
            account: account.into(),
            format: Format::Raw,
            min_valid: DEFAULT_MIN_VALID,
            for_proto: Proto::Imap,
            wait: Duration::ZERO,
        }
    }

    fn to_op(&self) -> Op {
        Op::Token {
            account: self.account.clone(),
            format: self.format,
            min_valid: self.min_valid.as_secs(),
            for_proto: Some(self.for_proto),
            wait_ms: u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The request a daemon received.
    pub fn from_op(op: Op) -> Option<Request> {
        match op {
            Op::Token {
                account,
                format,
                min_valid,
                for_proto,
                wait_ms,
            } => Some(Request {
                account,
                format,
                min_valid: Duration::from_secs(min_valid),
                for_proto: for_proto.unwrap_or(Proto::Imap),
                wait: Duration::from_millis(wait_ms),
            }),
            _ => None,
        }
    }
}

/// A credential, ready to hand out.
pub struct Credential {
    /// In the requested format, without a newline.
    pub secret: Zeroizing<String>,
    /// When the token expires; `None` for an app password.
    pub expires_at: Option<u64>,
    /// Something the user should know although the credential is good: the store
    /// refused the new tokens (they are kept elsewhere, nothing is lost).
    pub warning: Option<Error>,
}

/// Where an account's secrets come from: this process (the store, the lock, the
/// network) or the daemon's memory.
pub trait Source {
    /// The account's stored app password.
    fn password(&self, account: &Account) -> impl Future<Output = Result<Secret>>;
    /// A record whose access token stays valid for `min_valid`, waiting up to `wait`
    /// for a refresh in flight or a login (the daemon only).
    fn token(
        &self,
        account: &Account,
        min_valid: Duration,
        wait: Duration,
    ) -> impl Future<Output = Result<Served>>;
}

/// The credential `req` asks for, from `source`.
pub async fn answer(source: &impl Source, account: &Account, req: &Request) -> Result<Credential> {
    match &account.auth {
        Auth::Password => {
            // The other formats wrap OAuth tokens: refused before the keyring is asked.
            if req.format != Format::Raw {
                return Err(password_format_refused(account, req.format));
            }
            let password = source.password(account).await?;
            Ok(Credential {
                secret: Zeroizing::new(password.expose().to_owned()),
                expires_at: None,
                warning: None,
            })
        }
        Auth::OAuth(_) => {
            let served = source.token(account, req.min_valid, req.wait).await?;
            let token = served
                .record
                .access_token
                .as_ref()
                .ok_or_else(|| Error::software("no access token to hand out"))?;
            // The last look before it leaves: a token judged good before a slow save
            // (a keyring waiting on its unlock prompt, a store command near its timeout)
            // may have run out since. An expired token is never handed out.
            let now = crate::record::Now::current();
            if served.record.expires_at.is_some() && served.record.remaining(now.clone()) == 0 {
                return Err(Error::temp(format!(
                    "the access token of {} ran out before it could be handed out (getting or \
                     saving it took longer than its life); the tokens are kept, try again",
                    account.name
                ))
                .with_remedy(served.warning.as_ref().map_or_else(
                    || "The next call refreshes it.".to_owned(),
                    |w| w.to_string(),
                )));
            }
            // When it stops working on the wall clock as it reads now: after the clock
            // was set back, earlier than the stored time (git caches the credential
            // until then, `password_expiry_utc`).
            let expires_at = served.record.expires_at_on(&now);
            Ok(Credential {
                secret: render_token(
                    req.format,
                    account,
                    expires_at,
                    token.expose(),
                    req.for_proto,
                ),
                expires_at,
                warning: served.warning,
            })
        }
    }
}

/// Every consumer's way in: from the daemon when one answers (no config, keyring or
/// TLS on that path), else in this process.
pub fn get(req: &Request) -> Result<Credential> {
    match from_daemon(req)? {
        Some(c) => Ok(c),
        None => in_process(req),
    }
}

/// The daemon's answer; `Ok(None)` when no daemon listens.
pub fn from_daemon(req: &Request) -> Result<Option<Credential>> {
    let Some(reply) = client::ask(
        &protocol::Request {
            v: protocol::VERSION,
            op: req.to_op(),
        },
        req.wait,
    )?
    else {
        return Ok(None);
    };
    match reply.credential {
        Some(c) if reply.ok => Ok(Some(Credential {
            secret: Zeroizing::new(c),
            expires_at: reply.expires_at,
            warning: None,
        })),
        _ => Err(reply.into_error()),
    }
}

/// The work done in this process: the config, the store, a refresh under the lock.
pub fn in_process(req: &Request) -> Result<Credential> {
    let config = Config::load_default()?;
    let account = config.account(&req.account)?.clone();
    let local = Local::new(config);
    block_on(answer(&local, &account, req))
}

/// After a server refused `rejected` (verify): a new token, unless another process
/// has stored one meanwhile, and a running daemon reads the store again.
pub fn renew_rejected(
    config: &Config,
    account: &Account,
    rejected: &Secret,
) -> Result<Secret, RefreshError> {
    let mut broker =
        Broker::open(config.clone()).map_err(|e| RefreshError::Failed(FailureKind::Store, e))?;
    // As `token` does: a sent refresh outlives this process's wait (`worker.rs`).
    use_worker(&mut broker);
    let refreshed = broker.refresh_unless_replaced(account, Some(rejected))?;
    client::tell(Op::Reload {
        account: account.name.clone(),
    });
    refreshed.record.access_token.ok_or_else(|| {
        RefreshError::Failed(
            FailureKind::Temporary,
            Error::software("the refresh gave no access token"),
        )
    })
}

/// A refresh runs in a worker that outlives this process (`worker.rs`); the worker is
/// mailtoken-core, beside this executable (mailtoken-add's too).
fn use_worker(broker: &mut Broker) {
    if let Ok(core) = crate::paths::core_exe()
        && core.is_file()
    {
        broker.refresh_in_worker(core);
    }
}

fn password_format_refused(account: &Account, format: Format) -> Error {
    let n = &account.name;
    Error::usage(format!(
        "account {n} signs in with an app password: `--format {format}` applies to OAuth tokens only; use `--format raw` (the default), which prints the password"
    ))
    .with_remedy(format!(
        "Use `mailtoken token {n} --format raw` or `mailtoken password {n}`, and let the mail program sign in with PLAIN or LOGIN."
    ))
}

/// This process as a source: the keyring for app passwords, the Broker for tokens,
/// opened only when needed.
struct Local {
    config: Config,
    broker: OnceCell<Broker>,
}

impl Local {
    fn new(config: Config) -> Local {
        Local {
            config,
            broker: OnceCell::new(),
        }
    }

    fn broker(&self) -> Result<&Broker> {
        if let Some(b) = self.broker.get() {
            return Ok(b);
        }
        let mut b = Broker::open(self.config.clone())?;
        use_worker(&mut b);
        Ok(self.broker.get_or_init(|| b))
    }
}

impl Source for Local {
    async fn password(&self, account: &Account) -> Result<Secret> {
        password::lookup(account)
    }

    async fn token(
        &self,
        account: &Account,
        min_valid: Duration,
        _wait: Duration,
    ) -> Result<Served> {
        self.broker()?.access_token(account, min_valid)
    }
}

/// Runs a future to completion on this thread. The in-process source does its work
/// (the store, the lock, a refresh on a runtime of its own) synchronously, so its
/// futures are ready at the first poll; parking covers one that is not.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TokenRecord;
    use std::sync::Mutex;

    /// A source with fixed answers, counting what it was asked.
    #[derive(Default)]
    struct Fixed {
        asked: Mutex<Vec<&'static str>>,
        /// When its token expires (default [`LATER`]).
        expires_at: Option<u64>,
    }

    /// 2096: a token that is good for the whole test.
    const LATER: u64 = 4_000_000_000;

    /// A source whose record was stamped an hour ahead of the wall clock as it reads
    /// now, on this boot: the clock was set back an hour after the token came.
    struct SetBack(TokenRecord);

    impl Source for SetBack {
        async fn password(&self, _: &Account) -> Result<Secret> {
            unreachable!()
        }
        async fn token(&self, _: &Account, _: Duration, _: Duration) -> Result<Served> {
            Ok(Served::from(self.0.clone()))
        }
    }

    impl Source for Fixed {
        async fn password(&self, _: &Account) -> Result<Secret> {
            self.asked.lock().unwrap().push("password");
            Ok(Secret::new("app pw"))
        }
        async fn token(&self, _: &Account, _: Duration, _: Duration) -> Result<Served> {
            self.asked.lock().unwrap().push("token");
            Ok(Served::from(TokenRecord {
                access_token: Some(Secret::new("TOK")),
                expires_at: Some(self.expires_at.unwrap_or(LATER)),
                ..Default::default()
            }))
        }
    }

    use crate::config::test_account as account;

    const OAUTH: &str = "[accounts.g]\nprovider = \"google\"\nuser = \"g@gmail.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n";
    const PASSWORD: &str = "[accounts.c]\nprovider = \"icloud\"\nuser = \"c@icloud.com\"\n";

    #[test]
    fn a_token_that_ran_out_on_its_way_is_never_handed_out() {
        let src = Fixed {
            expires_at: Some(crate::record::now() - 1),
            ..Default::default()
        };
        let Err(e) = block_on(answer(&src, &account(OAUTH), &Request::new("g"))) else {
            panic!("an expired token was handed out");
        };
        assert_eq!(e.code, crate::error::ExitCode::TempFail);
        assert!(
            e.message.contains("ran out before it could be handed out"),
            "{e}"
        );
        assert!(!e.to_string().contains("TOK"), "{e}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_expiry_handed_out_is_on_the_clock_as_it_reads_now() {
        let now = crate::record::Now::current();
        let boot = now
            .boot
            .clone()
            .expect("Linux has a boot id and CLOCK_BOOTTIME");
        let src = SetBack(TokenRecord {
            access_token: Some(Secret::new("TOK")),
            obtained_at: now.wall + 3600,
            expires_at: Some(now.wall + 3600 + 600),
            obtained_boot: Some(boot),
            ..Default::default()
        });
        let req = Request {
            format: Format::Json,
            ..Request::new("g")
        };
        let Ok(c) = block_on(answer(&src, &account(OAUTH), &req)) else {
            panic!("a valid token was refused");
        };
        // 600 s left, not 4200: what git and JSON readers are told.
        let at = c.expires_at.unwrap();
        assert!(
            (now.wall + 598..=now.wall + 600).contains(&at),
            "{at} vs {}",
            now.wall
        );
        let j: serde_json::Value = serde_json::from_str(&c.secret).unwrap();
        assert_eq!(j["expires_at"], at);
    }

    #[test]
    fn the_account_kind_picks_the_path() {
        let src = Fixed::default();
        let c = block_on(answer(&src, &account(OAUTH), &Request::new("g"))).unwrap();
        assert_eq!((c.secret.as_str(), c.expires_at), ("TOK", Some(LATER)));
        let c = block_on(answer(&src, &account(PASSWORD), &Request::new("c"))).unwrap();
        assert_eq!((c.secret.as_str(), c.expires_at), ("app pw", None));
        assert_eq!(*src.asked.lock().unwrap(), ["token", "password"]);
    }

    #[test]
    fn an_app_password_comes_only_raw_and_the_keyring_is_not_asked_otherwise() {
        let src = Fixed::default();
        for f in [Format::Xoauth2, Format::Oauthbearer, Format::Json] {
            let req = Request {
                format: f,
                ..Request::new("c")
            };
            let e = block_on(answer(&src, &account(PASSWORD), &req))
                .err()
                .unwrap();
            assert_eq!(e.code, crate::error::ExitCode::Usage);
            assert!(e.message.contains("--format raw"), "{}", e.message);
        }
        assert!(src.asked.lock().unwrap().is_empty());
    }

    #[test]
    fn requests_cross_the_wire_unchanged() {
        let req = Request {
            format: Format::Oauthbearer,
            min_valid: Duration::from_secs(600),
            for_proto: Proto::Smtp,
            wait: Duration::from_millis(2500),
            ..Request::new("work")
        };
        let line = protocol::encode(&protocol::Request {
            v: protocol::VERSION,
            op: req.to_op(),
        });
        let back = protocol::parse_request(&line[..line.len() - 1]).unwrap();
        assert_eq!(Request::from_op(back.op), Some(req));
    }
}
