//! Extractors whose rejections are ours: axum's `Query` and `Path` answer a request they cannot
//! read with a plain-text 400; these answer with the JSON error shape, a stable code and the
//! field, like every other refusal.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::ApiError;

/// The query string as a map (a repeated key: the last value). Handlers parse each value by
/// name with `crate::query`, so a bad value is refused with its name.
pub struct Query(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r| {
                ApiError::bad(
                    "invalid_query",
                    None,
                    format!("the query string cannot be read: {}", r.body_text()),
                )
            })
    }
}

/// Reads the one parameter of the path, naming it (`field`) when it cannot be decoded
/// (percent-encoding that is not UTF-8).
async fn one_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &'static str,
) -> Result<String, ApiError> {
    axum::extract::Path::<String>::from_request_parts(parts, state)
        .await
        .map(|p| p.0)
        .map_err(|r| {
            ApiError::bad(
                "invalid_path",
                Some(name),
                format!(
                    "the path parameter {name} cannot be read: {}",
                    r.body_text()
                ),
            )
        })
}

macro_rules! path_param {
    ($($(#[$doc:meta])* $ty:ident => $name:literal),* $(,)?) => {$(
        $(#[$doc])*
        pub struct $ty(pub String);

        impl<S: Send + Sync> FromRequestParts<S> for $ty {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
                one_param(parts, state, $name).await.map($ty)
            }
        }
    )*};
}

path_param!(
    /// `{id}` of `/api/fans/{id}` and `/api/segments/{id}`, as text: the handler parses it.
    IdParam => "id",
    /// `{tenant}` of `/webhooks/douyin/{tenant}`.
    TenantParam => "tenant",
    /// `{consumer}` of `/api/triggers/cursors/{consumer}`.
    ConsumerParam => "consumer",
    /// `{name}` of `/api/journeys/{name}`.
    NameParam => "name",
    /// `{kind}` of `/api/channels/{kind}`.
    KindParam => "kind",
);
