//! The device authorization grant (RFC 8628), for machines without a browser: ask the
//! provider for a user code, show it, and poll the token endpoint until the user has
//! entered it on another device, declined, or let it expire.

use super::{HttpFault, OAuthClient, Step, TokenError, TokenGrant, describe_body, fetch};
use crate::error::{Error, Result};
use crate::record::FailureKind;
use crate::secret::Secret;
use oauth2::RequestTokenError;
use oauth2::basic::{BasicErrorResponse, BasicTokenResponse};
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// RFC 8628 §3.5: `slow_down` adds 5 seconds to the interval, for good.
pub const SLOW_DOWN: Duration = Duration::from_secs(5);

/// RFC 8628 §3.5 asks for an exponential backoff when the server cannot be reached;
/// this caps it, so that a network back in a minute is noticed within one.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the device authorization endpoint answered (RFC 8628 §3.2).
#[derive(Debug, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: Secret,
    pub user_code: String,
    /// Where the user enters the code. Google's older endpoint calls it
    /// `verification_url`, as Microsoft's v1 endpoint did.
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    /// The same page with the code filled in, for a QR code (optional in the RFC).
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Seconds the codes are valid.
    pub expires_in: u64,
    /// Seconds to wait between polls; 5 when the server says nothing (§3.2).
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_interval() -> u64 {
    5
}

/// One answer of the token endpoint to a poll (RFC 8628 §3.5).
#[derive(Debug)]
pub enum Poll {
    Granted(TokenGrant),
    /// `authorization_pending`: the user has not finished; ask again at the interval.
    Pending,
    /// `slow_down`: ask again, 5 s more patiently from now on.
    SlowDown,
    /// No answer now (the network, a 5xx): ask again later, backing off.
    Unreachable(Error),
}

/// The wait before the next poll after `answer`, given the current one.
pub fn next_interval(current: Duration, answer: &Poll) -> Duration {
    match answer {
        Poll::SlowDown => current + SLOW_DOWN,
        Poll::Unreachable(_) => (current * 2).min(MAX_BACKOFF).max(current),
        Poll::Pending | Poll::Granted(_) => current,
    }
}

/// The error body of a device-flow token response: the RFC 6749 codes plus RFC 8628's.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl OAuthClient<'_> {
    /// Asks for a device code and a user code (RFC 8628 §3.1) at `url`.
    pub async fn device_authorization(&self, url: &Url) -> Result<DeviceAuthorization> {
        let scope = self.oauth.scopes.join(" ");
        let mut form = vec![
            ("client_id", self.oauth.client_id.as_str()),
            ("scope", scope.as_str()),
        ];
        if let Some(s) = &self.secret {
            form.push(("client_secret", s.expose()));
        }
        let name = &self.account.name;
        let req = self
            .http
            .post(url.clone())
            .form(&form)
            .build()
            .map_err(|e| Error::software(format!("building the device request: {e}")))?;
        let fault = |f: HttpFault| {
            self.refused(Step::Device, RequestTokenError::Request(f))
                .error
        };
        let (status, content_type, body) = fetch(&self.http, req).await.map_err(fault)?;
        if status == 200 {
            return serde_json::from_slice(&body).map_err(|_| {
                Error::temp(format!(
                    "asking {url} for a device code for {name}: the answer is not a device authorization ({})",
                    describe_body(&content_type, &body)
                ))
            });
        }
        // RFC 6749 §5.2 errors (invalid_client, invalid_scope, unauthorized_client).
        match serde_json::from_slice::<BasicErrorResponse>(&body) {
            Ok(r) if matches!(status, 400 | 401) => Err(self
                .refused(Step::Device, RequestTokenError::ServerResponse(r))
                .error),
            _ => Err(fault(HttpFault::Status {
                status,
                body: describe_body(&content_type, &body),
            })),
        }
    }

    /// Asks the token endpoint once whether the user has finished (RFC 8628 §3.4).
    pub async fn poll_device(&self, auth: &DeviceAuthorization) -> Result<Poll, TokenError> {
        let mut form = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", auth.device_code.expose()),
            ("client_id", self.oauth.client_id.as_str()),
        ];
        if let Some(s) = &self.secret {
            form.push(("client_secret", s.expose()));
        }
        let req = self
            .http
            .post(self.oauth.token_url.clone())
            .form(&form)
            .build()
            .map_err(|e| TokenError {
                kind: FailureKind::Temporary,
                error: Error::software(format!("building the token request: {e}")),
            })?;
        let classified = |e| self.refused(Step::Device, e);
        let (status, content_type, body) = match fetch(&self.http, req).await {
            Ok(answer) => answer,
            Err(f) => {
                return Ok(Poll::Unreachable(
                    classified(RequestTokenError::Request(f)).error,
                ));
            }
        };
        match status {
            200 => {
                let t: BasicTokenResponse = serde_json::from_slice(&body).map_err(|_| {
                    classified(RequestTokenError::Request(HttpFault::Malformed {
                        status,
                        detail: describe_body(&content_type, &body),
                    }))
                })?;
                return Ok(Poll::Granted(TokenGrant::from(t)));
            }
            400 | 401 => {}
            s if s >= 500 || s == 429 => {
                let f = HttpFault::Status {
                    status,
                    body: describe_body(&content_type, &body),
                };
                return Ok(Poll::Unreachable(
                    classified(RequestTokenError::Request(f)).error,
                ));
            }
            _ => {
                let f = HttpFault::Status {
                    status,
                    body: describe_body(&content_type, &body),
                };
                return Err(classified(RequestTokenError::Request(f)));
            }
        }
        let Ok(e) = serde_json::from_slice::<ErrorBody>(&body) else {
            let f = HttpFault::Status {
                status,
                body: describe_body(&content_type, &body),
            };
            return Err(classified(RequestTokenError::Request(f)));
        };
        let name = &self.account.name;
        let desc = e
            .error_description
            .as_deref()
            .map(|d| format!(": {}", super::microsoft::first_line(d)))
            .unwrap_or_default();
        let again = format!("Run `mailtoken login {name} --device` again");
        match e.error.as_str() {
            "authorization_pending" => Ok(Poll::Pending),
            "slow_down" => Ok(Poll::SlowDown),
            // Microsoft says `authorization_declined` for RFC 8628's `access_denied`.
            "access_denied" | "authorization_declined" => Err(TokenError {
                kind: FailureKind::Rejected,
                error: Error::noperm(format!(
                    "the device login of {name} was declined ({}{desc})",
                    e.error
                ))
                .with_remedy(format!(
                    "{again} and approve the request, signed in as {}.",
                    self.account.user
                )),
            }),
            "expired_token" => Err(TokenError {
                kind: FailureKind::Rejected,
                error: Error::noperm(format!(
                    "the code {} expired before the login of {name} was finished (expired_token{desc})",
                    auth.user_code
                ))
                .with_remedy(format!(
                    "{again}, and enter the new code within {}.",
                    humantime::format_duration(Duration::from_secs(auth.expires_in))
                )),
            }),
            // Everything else is an RFC 6749 §5.2 error, worded as the code exchange's.
            _ => match serde_json::from_slice::<BasicErrorResponse>(&body) {
                Ok(r) => Err(classified(RequestTokenError::ServerResponse(r))),
                Err(_) => Err(TokenError {
                    kind: FailureKind::Temporary,
                    error: Error::temp(format!(
                        "waiting for the device login of {name}: the provider answered {}{desc}",
                        e.error
                    )),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_follows_rfc_8628() {
        let five = Duration::from_secs(5);
        assert_eq!(next_interval(five, &Poll::Pending), five);
        assert_eq!(
            next_interval(five, &Poll::SlowDown),
            Duration::from_secs(10)
        );
        assert_eq!(
            next_interval(Duration::from_secs(10), &Poll::SlowDown),
            Duration::from_secs(15)
        );
        let down = || Poll::Unreachable(Error::temp("503"));
        assert_eq!(next_interval(five, &down()), Duration::from_secs(10));
        assert_eq!(next_interval(Duration::from_secs(40), &down()), MAX_BACKOFF);
        // A server that asked for more than the cap keeps its interval.
        assert_eq!(
            next_interval(Duration::from_secs(90), &down()),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn a_device_authorization_parses_with_and_without_the_optional_fields() {
        let a: DeviceAuthorization = serde_json::from_str(
            r#"{"device_code":"DC","user_code":"ABCD-EFGH","verification_uri":"https://microsoft.com/devicelogin","expires_in":900,"interval":5,"message":"To sign in, use a web browser..."}"#,
        )
        .unwrap();
        assert_eq!(a.user_code, "ABCD-EFGH");
        assert!(a.verification_uri_complete.is_none());
        assert_eq!((a.expires_in, a.interval), (900, 5));
        let g: DeviceAuthorization = serde_json::from_str(
            r#"{"device_code":"DC","user_code":"GQVQ-JKEC","verification_url":"https://www.google.com/device","expires_in":1800}"#,
        )
        .unwrap();
        assert_eq!(g.verification_uri, "https://www.google.com/device");
        assert_eq!(g.interval, 5);
        assert_eq!(format!("{:?}", g.device_code), "[redacted]");
    }
}
