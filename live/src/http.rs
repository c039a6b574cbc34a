//! REST GETs with retries: 429 / 418 / 5xx and transport errors are retried after the server's
//! `Retry-After` (seconds) or, without one, the capped exponential backoff; other statuses fail
//! at once with the response body (Binance puts its error code and message there).

use crate::backoff::Backoff;
use crate::error::{LiveError, Result};
use std::time::Duration;

/// How a GET is retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all (≥ 1).
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Longest `Retry-After` honoured; a longer one is an error (the caller decides what to do).
    pub max_retry_after: Duration,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(120),
            timeout: Duration::from_secs(10),
        }
    }
}

/// One retried request's outcome.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Attempts {
    pub attempts: u32,
    /// Statuses (or 0 for a transport error) of the failed attempts, in order.
    pub failures: Vec<u16>,
    /// Sum of the waits between attempts, ms.
    pub waited_ms: u64,
    /// `Retry-After` (s) of the last failed response, if it had one.
    pub last_retry_after_s: Option<u64>,
}

/// A reqwest client (rustls) with the retry policy.
#[derive(Clone)]
pub struct Rest {
    client: reqwest::Client,
    pub policy: RetryPolicy,
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn retryable(status: u16) -> bool {
    status == 429 || status == 418 || (500..600).contains(&status)
}

impl Rest {
    pub fn new(policy: RetryPolicy) -> Result<Rest> {
        crate::init_tls();
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .user_agent(concat!("flowcast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LiveError::Config(format!("HTTP client: {e}")))?;
        Ok(Rest { client, policy })
    }

    /// GET `url` and return its body, retrying as the policy says.
    pub async fn get_text(&self, url: &str) -> (Result<String>, Attempts) {
        let mut backoff = Backoff::new(self.policy.base, self.policy.cap);
        let mut a = Attempts::default();
        loop {
            a.attempts += 1;
            let (err, wait_hint) = match self.client.get(url).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let hint = retry_after(resp.headers());
                    match resp.text().await {
                        Ok(body) if (200..300).contains(&status) => return (Ok(body), a),
                        Ok(body) => {
                            let e = LiveError::Http { url: url.to_string(), status, body: body.chars().take(300).collect() };
                            if !retryable(status) {
                                return (Err(e), a);
                            }
                            a.failures.push(status);
                            (e, hint)
                        }
                        Err(e) => {
                            a.failures.push(0);
                            (LiveError::Request { url: url.to_string(), reason: format!("reading the body: {e}") }, None)
                        }
                    }
                }
                Err(e) => {
                    a.failures.push(0);
                    (LiveError::Request { url: url.to_string(), reason: e.to_string() }, None)
                }
            };
            if a.attempts >= self.policy.max_attempts.max(1) {
                return (Err(err), a);
            }
            a.last_retry_after_s = wait_hint.map(|w| w.as_secs());
            let wait = match wait_hint {
                Some(w) if w > self.policy.max_retry_after => {
                    return (
                        Err(LiveError::Request {
                            url: url.to_string(),
                            reason: format!(
                                "Retry-After {}s exceeds the {}s limit ({err})",
                                w.as_secs(),
                                self.policy.max_retry_after.as_secs()
                            ),
                        }),
                        a,
                    )
                }
                Some(w) => {
                    backoff.next_delay();
                    w
                }
                None => backoff.next_delay(),
            };
            tracing::warn!(%url, attempt = a.attempts, wait_ms = wait.as_millis() as u64, "retrying: {err}");
            a.waited_ms += wait.as_millis() as u64;
            tokio::time::sleep(wait).await;
        }
    }
}
