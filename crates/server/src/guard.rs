//! No work before authentication: what runs between hyper and a handler.
//!
//! Probing found that `POST /api/events` read its whole body (up to 8 MiB) before looking at
//! the key, so 100 connections without a key held 800 MB. Here, for every request, in order:
//!
//! 1. **The key, from the headers.** A route under `/api/` needs one: without a valid key in
//!    `Authorization` the answer is 401 `unauthorized`, always the same whatever is wrong, and
//!    not one byte of the body is read (hyper then closes the connection rather than drain it).
//!    The [`Caller`] is put in the request's extensions; the handlers' own
//!    `auth::admin`/`auth::authenticate` find the key in the app's cache.
//! 2. **The rate limit**, a token bucket per authenticated key (429 `rate_limited` with
//!    `Retry-After`). Only keys that authenticated get a bucket, so the table holds at most
//!    two per tenant (its admin key and its write key), whatever a client sends.
//! 3. **The body**, if there is one: a `Content-Length` over the route's limit is a 413 before
//!    anything is read; a chunked body is counted while it is read and refused at the limit;
//!    the whole body must arrive within the body timeout (408 `request_timeout`). The body is
//!    then handed to the handler in memory.
//!
//! The exceptions, each bounded by a small limit before its body is read:
//! - the Segment-compatible `/v1/*` takes `writeKey` in the body when no key is in the headers
//!   (some of Segment's libraries send it there): then the body, at most 500 KB
//!   ([`Limits::segment_body`]), is read first and the handler authenticates. A key in the
//!   headers is checked here like any other.
//! - the Douyin webhook `/webhooks/douyin/{tenant}` is authenticated by its signature over the
//!   raw body (at most [`connectors::WEBHOOK_BODY_LIMIT`]).
//! - `/healthz`, `/metrics`, `/openapi.json` (and paths that are no route) need no key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State as Axum};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use siyu_app::{Caller, Role};
use siyu_domain::time::{Clock, Millis};

use crate::error::SegmentError;
use crate::{ApiError, Limits, Rate, Settings, State, auth, connectors, journeys, layers};

/// The limit on bodies of the routes that set none of their own: axum's default.
const OTHER_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// How a path is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// No key: health, metrics, the document, and paths that are no route.
    Open,
    /// `/webhooks/*`: a signature over the body, checked by the handler.
    Signature,
    /// `/v1/*`: a key in the headers, checked here, or `writeKey` in the body.
    Segment,
    /// `/api/*`: a key in the headers, checked here.
    Key,
}

impl Access {
    fn of(path: &str) -> Access {
        if path == "/api" || path.starts_with("/api/") {
            Access::Key
        } else if path.starts_with("/v1/") {
            Access::Segment
        } else if path.starts_with("/webhooks/") {
            Access::Signature
        } else {
            Access::Open
        }
    }
}

/// The largest body a path takes, as its handler's limit says.
fn body_limit(path: &str, limits: &Limits) -> usize {
    match path {
        "/api/events" => limits.native_body,
        "/api/rules" => layers::RULES_BODY_LIMIT,
        "/api/journeys" => journeys::JOURNEY_BODY_LIMIT,
        p if p.starts_with("/v1/") => limits.segment_body,
        p if p.starts_with("/webhooks/") => connectors::WEBHOOK_BODY_LIMIT,
        _ => OTHER_BODY_LIMIT,
    }
}

/// The guard's state: the body timeout and the buckets.
pub(crate) struct Guard {
    body_timeout: Duration,
    rate: Option<Rate>,
    /// The app's clock: the buckets refill on it, so tests move them with a manual clock.
    clock: Arc<dyn Clock>,
    /// One bucket per authenticated key (tenant id, admin or not). A std `Mutex`: it is held for
    /// a few arithmetic operations, never across an `.await`.
    buckets: Mutex<HashMap<(i64, bool), Bucket>>,
}

/// A token bucket: `tokens` as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Millis,
}

impl Guard {
    pub(crate) fn new(settings: &Settings, clock: Arc<dyn Clock>) -> Guard {
        Guard {
            body_timeout: settings.body_timeout,
            rate: settings.rate,
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from the caller's bucket, or says in how many seconds there is one.
    fn admit(&self, caller: &Caller) -> Result<(), ApiError> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let now = self.clock.now();
        let burst = f64::from(rate.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets
            .entry((caller.id, caller.role == Role::Admin))
            .or_insert(Bucket {
                tokens: burst,
                at: now,
            });
        // A clock that steps back refills nothing, and the bucket keeps its later time.
        let elapsed = now.saturating_sub(bucket.at).max(0) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(burst);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = if rate.per_second > 0.0 {
            ((1.0 - bucket.tokens) / rate.per_second).ceil()
        } else {
            // No refill at all: only the burst was ever allowed.
            f64::from(u32::MAX)
        };
        Err(ApiError::RateLimited {
            retry_after: (wait as u64).max(1),
        })
    }
}

/// The middleware (see the module's documentation).
///
/// A refusal of a request with a body says `Connection: close`: the body was not read (or not
/// to its end), so the connection cannot carry another request, and a client that pooled it
/// would send its next request into a connection the server is closing.
pub(crate) async fn guard(Axum(state): Axum<State>, request: Request, next: Next) -> Response {
    let access = Access::of(request.uri().path());
    let has_body = request.body().size_hint().exact() != Some(0);
    let mut refusal = match check(&state, access, request).await {
        Ok(request) => return next.run(request).await,
        Err(e) if access == Access::Segment => SegmentError(e).into_response(),
        Err(e) => e.into_response(),
    };
    if has_body {
        refusal
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    refusal
}

/// Steps 1 to 3: the request with its body in memory, or the refusal.
async fn check(state: &State, access: Access, mut request: Request) -> Result<Request, ApiError> {
    let key = auth::header_key(request.headers());
    let needs_key = match access {
        Access::Key => true,
        Access::Segment => key.is_some(),
        Access::Open | Access::Signature => false,
    };
    if needs_key {
        let caller = match auth::authenticate(state, key).await {
            Err(ApiError::Unauthorized(_)) => return Err(auth::unauthorized()),
            other => other?,
        };
        state.guard.admit(&caller)?;
        request.extensions_mut().insert(caller);
    }
    let limit = body_limit(request.uri().path(), &state.limits);
    read_body(request, limit, state.guard.body_timeout).await
}

/// Reads the body within `limit` bytes and `timeout`, refusing a declared length over the
/// limit before reading anything.
async fn read_body(request: Request, limit: usize, timeout: Duration) -> Result<Request, ApiError> {
    use http_body_util::BodyExt;
    if request.body().size_hint().exact() == Some(0) {
        return Ok(request);
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge(limit));
    }
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, limit);
    let bytes = match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => return Err(ApiError::BodyTimeout(timeout.as_secs().max(1))),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::TooLarge(limit));
        }
        Ok(Err(e)) => {
            return Err(ApiError::bad(
                "invalid_body",
                None,
                format!("the request body cannot be read: {e}"),
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use siyu_domain::time::ManualClock;

    use super::*;

    fn caller(id: i64, role: Role) -> Caller {
        Caller {
            id,
            name: format!("t{id}"),
            custom_domain: "private".into(),
            role,
        }
    }

    fn guard(per_second: f64, burst: u32, clock: Arc<ManualClock>) -> Guard {
        let settings = Settings {
            rate: Some(Rate { per_second, burst }),
            ..Settings::default()
        };
        Guard::new(&settings, clock)
    }

    fn retry_after(r: Result<(), ApiError>) -> Option<u64> {
        match r {
            Ok(()) => None,
            Err(ApiError::RateLimited { retry_after }) => Some(retry_after),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn a_bucket_lets_the_burst_through_then_refills_at_the_rate() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let g = guard(2.0, 3, clock.clone());
        let admin = caller(1, Role::Admin);
        for _ in 0..3 {
            assert_eq!(retry_after(g.admit(&admin)), None);
        }
        assert_eq!(retry_after(g.admit(&admin)), Some(1));
        // Half a second at 2 per second: one more.
        clock.advance(500);
        assert_eq!(retry_after(g.admit(&admin)), None);
        assert_eq!(retry_after(g.admit(&admin)), Some(1));
        // A long pause refills to the burst, not beyond it.
        clock.advance(60_000);
        for _ in 0..3 {
            assert_eq!(retry_after(g.admit(&admin)), None);
        }
        assert_eq!(retry_after(g.admit(&admin)), Some(1));
    }

    #[test]
    fn each_key_has_its_own_bucket_and_retry_after_is_whole_seconds() {
        let clock = Arc::new(ManualClock::new(0));
        let g = guard(0.25, 1, clock.clone());
        assert_eq!(retry_after(g.admit(&caller(1, Role::Admin))), None);
        assert_eq!(retry_after(g.admit(&caller(1, Role::Admin))), Some(4));
        // The same tenant's write key, and another tenant's admin key, are not slowed.
        assert_eq!(retry_after(g.admit(&caller(1, Role::Write))), None);
        assert_eq!(retry_after(g.admit(&caller(2, Role::Admin))), None);
        clock.advance(3_000);
        assert_eq!(retry_after(g.admit(&caller(1, Role::Admin))), Some(1));
        clock.advance(1_000);
        assert_eq!(retry_after(g.admit(&caller(1, Role::Admin))), None);
        assert_eq!(g.buckets.lock().unwrap().len(), 3);
    }

    #[test]
    fn a_clock_that_steps_back_refills_nothing() {
        let clock = Arc::new(ManualClock::new(10_000));
        let g = guard(1.0, 1, clock.clone());
        let c = caller(1, Role::Write);
        assert_eq!(retry_after(g.admit(&c)), None);
        clock.set(0);
        assert_eq!(retry_after(g.admit(&c)), Some(1));
        clock.set(10_999);
        assert_eq!(retry_after(g.admit(&c)), Some(1));
        clock.set(11_000);
        assert_eq!(retry_after(g.admit(&c)), None);
    }

    #[test]
    fn no_rate_is_no_limit() {
        let settings = Settings {
            rate: None,
            ..Settings::default()
        };
        let g = Guard::new(&settings, Arc::new(ManualClock::new(0)));
        for _ in 0..10_000 {
            assert_eq!(retry_after(g.admit(&caller(1, Role::Admin))), None);
        }
        assert!(g.buckets.lock().unwrap().is_empty());
    }

    #[test]
    fn paths_are_authenticated_as_documented() {
        for (path, access) in [
            ("/api/events", Access::Key),
            ("/api/no-such-thing", Access::Key),
            ("/api", Access::Key),
            ("/v1/batch", Access::Segment),
            ("/webhooks/douyin/acme", Access::Signature),
            ("/healthz", Access::Open),
            ("/metrics", Access::Open),
            ("/openapi.json", Access::Open),
            ("/apis", Access::Open),
        ] {
            assert_eq!(Access::of(path), access, "{path}");
        }
        let limits = Limits::default();
        assert_eq!(body_limit("/api/events", &limits), limits.native_body);
        assert_eq!(body_limit("/v1/track", &limits), 500 * 1024);
        assert_eq!(body_limit("/api/rules", &limits), 64 * 1024);
        assert_eq!(body_limit("/api/journeys", &limits), 256 * 1024);
        assert_eq!(
            body_limit("/webhooks/douyin/acme", &limits),
            connectors::WEBHOOK_BODY_LIMIT
        );
        assert_eq!(body_limit("/api/segments", &limits), OTHER_BODY_LIMIT);
    }
}
