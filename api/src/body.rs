//! The JSON body extractor of every endpoint that takes a body, in place
//! of dropshot's `TypedBody` (same name, same `into_inner`):
//!
//! - the caller's token is checked before a byte of the body is read, so
//!   a client without it cannot make sluiced buffer a 32 MB body (401,
//!   and the body is never read);
//! - the whole body must arrive within the body timeout (`[api]
//!   body_timeout_secs`), else 408: a dripping client holds neither a
//!   buffer nor a handler for long;
//! - the body is one JSON document and nothing else: trailing data or a
//!   second document is refused with a 400 saying so (dropshot 0.18's
//!   `TypedBody` ignores whatever follows the first document).

use crate::http::Ctx;
use async_trait::async_trait;
use dropshot::{
    ApiEndpointBodyContentType, ClientErrorStatusCode, ExclusiveExtractor, ExtractorMetadata,
    HttpError, RequestContext, ServerContext, UntypedBody,
};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::sync::Arc;

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct TypedBody<T> {
    inner: T,
}

impl<T> TypedBody<T> {
    pub fn into_inner(self) -> T {
        self.inner
    }
}

#[async_trait]
impl<T> ExclusiveExtractor for TypedBody<T>
where
    T: JsonSchema + DeserializeOwned + Send + Sync + 'static,
{
    async fn from_request<C: ServerContext>(
        rqctx: &RequestContext<C>,
        request: hyper::Request<dropshot::Body>,
    ) -> Result<TypedBody<T>, HttpError> {
        let ctx = (rqctx.context() as &dyn Any)
            .downcast_ref::<Arc<Ctx>>()
            .ok_or_else(|| {
                HttpError::for_internal_error("the body extractor needs sluice's context".into())
            })?;
        // Every endpoint with a body changes something (or, like trace
        // and capture, is as sensitive): the token first.
        ctx.admit(&rqctx.request, true)?;
        json_content_type(request.headers())?;
        let timeout = ctx.limits.body_timeout;
        let body = tokio::time::timeout(timeout, UntypedBody::from_request(rqctx, request))
            .await
            .map_err(|_| {
                HttpError::for_client_error(
                    Some("RequestTimeout".into()),
                    ClientErrorStatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s (body_timeout_secs)",
                        timeout.as_secs()
                    ),
                )
            })??;
        Ok(TypedBody {
            inner: parse(body.as_bytes())?,
        })
    }

    fn metadata(content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
        dropshot::TypedBody::<T>::metadata(content_type)
    }
}

/// A missing content type is taken as JSON (as dropshot does); any other
/// than JSON is refused.
fn json_content_type(h: &http::HeaderMap) -> Result<(), HttpError> {
    let Some(v) = h.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let v = v
        .to_str()
        .map_err(|e| HttpError::for_bad_request(None, format!("invalid content type: {e}")))?;
    let mime = v.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case(dropshot::CONTENT_TYPE_JSON) {
        Ok(())
    } else {
        Err(HttpError::for_bad_request(
            None,
            format!("expected content type \"application/json\", got \"{mime}\""),
        ))
    }
}

/// One JSON document of type `T`, with the path of a bad field in the
/// error, and nothing after it but whitespace.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| HttpError::for_bad_request(None, format!("unable to parse JSON body: {e}")))?;
    de.end().map_err(|e| {
        HttpError::for_bad_request(
            None,
            format!(
                "unable to parse JSON body: data after the JSON document ({e}); send exactly one document"
            ),
        )
    })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct V {
        a: u32,
    }

    #[test]
    fn one_document_and_nothing_after_it() {
        assert_eq!(parse::<V>(b" {\"a\": 1}\n ").unwrap(), V { a: 1 });
        for bad in [
            &b"{\"a\": 1} x"[..],
            b"{\"a\": 1}{\"a\": 2}",
            b"{\"a\": 1} 7",
        ] {
            let e = parse::<V>(bad).unwrap_err();
            assert_eq!(e.status_code.as_u16(), 400);
            assert!(
                e.external_message.contains("data after the JSON document"),
                "{}",
                e.external_message
            );
        }
        let e = parse::<V>(b"{\"a\": \"x\"}").unwrap_err();
        assert!(e.external_message.contains("a:"), "{}", e.external_message);
    }
}
