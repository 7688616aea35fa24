//! Bearer-authenticated JSON requests shared by the API clients: where the token comes
//! from, the one retry after a 401, and the mapping of error responses.

use std::sync::Arc;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::error_from_response;
use crate::oauth::OAuthClient;
use crate::Error;

/// Where the bearer token comes from.
pub(crate) enum Auth {
    Static(String),
    OAuth {
        client: Arc<OAuthClient>,
        audience: String,
        scope: Option<String>,
    },
}

impl Auth {
    /// For `Debug` output: never the token itself.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Static(_) => "static bearer token".to_owned(),
            Self::OAuth { audience, .. } => format!("client credentials for {audience}"),
        }
    }

    async fn bearer(&self) -> Result<String, Error> {
        match self {
            Self::Static(token) => Ok(token.clone()),
            Self::OAuth {
                client,
                audience,
                scope,
            } => Ok(client
                .client_credentials_with_scope(audience, scope.as_deref())
                .await?
                .access_token),
        }
    }
}

/// Sends the request; a 401 with an OAuth-sourced token is retried once with a new one.
/// Returns the status and body of a 2xx answer; anything else is an [`Error`].
pub(crate) async fn execute(
    http: &reqwest::Client,
    auth: &Auth,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Vec<u8>), Error> {
    let mut token = auth.bearer().await?;
    let mut retried = false;
    loop {
        let mut request = http
            .request(method.clone(), url)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(ACCEPT, "application/json, application/problem+json");
        if let Some(body) = &body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        if status == 401 && !retried {
            if let Auth::OAuth {
                client,
                audience,
                scope,
            } = auth
            {
                client
                    .invalidate_if(audience, scope.as_deref(), &token)
                    .await;
                token = auth.bearer().await?;
                retried = true;
                continue;
            }
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await?;
        if !(200..300).contains(&status) {
            return Err(error_from_response(status, content_type.as_deref(), &bytes));
        }
        return Ok((status, bytes.to_vec()));
    }
}

/// Decodes a success body.
pub(crate) fn decode<T: DeserializeOwned>(status: u16, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Decode {
        status,
        message: e.to_string(),
    })
}

/// Serializes a request body without its `null` members: for the create/update bodies an
/// absent field and `null` mean the same, and the request stays minimal.
pub(crate) fn json_body<T: Serialize>(body: &T) -> Result<Vec<u8>, Error> {
    let value = without_nulls(body)?;
    serde_json::to_vec(&value).map_err(|e| Error::InvalidArgument(e.to_string()))
}

pub(crate) fn without_nulls<T: Serialize>(body: &T) -> Result<Value, Error> {
    let value = serde_json::to_value(body).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    Ok(match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    })
}
