//! [`SluiceApi`] implemented over a [`Sluice`]: authorisation, then the
//! call on a blocking thread (a call may wait for a worker's answer).

use crate::api::{Changed, SluiceApi};
use crate::error::ApiError;
use crate::server::Sluice;
use crate::types::*;
use dropshot::{
    Body, HttpError, HttpResponseCreated, HttpResponseDeleted, HttpResponseOk,
    HttpResponseUpdatedNoContent, Path, Query, RequestContext, TypedBody,
};
use http::Response;
use std::sync::Arc;
use vnic::config::VnicConfig;
use vnic::firewall::FirewallRule;
use vnic::router::RouteEntry;

/// Who may call what.
pub struct Auth {
    /// The bearer token mutating calls need (`None`: no token needed,
    /// for in-process tests only).
    pub token: Option<String>,
    /// Reads without a token from a loopback address.
    pub open_loopback_reads: bool,
}

impl Auth {
    fn check<C: Send + Sync + 'static>(
        &self,
        rq: &RequestContext<C>,
        mutating: bool,
    ) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        if !mutating && self.open_loopback_reads && rq.request.remote_addr().ip().is_loopback() {
            return Ok(());
        }
        let given = rq
            .request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if constant_time_eq(g.trim().as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::Unauthorized("the bearer token is wrong".into())),
            None => Err(ApiError::Unauthorized(
                "this call needs 'Authorization: Bearer TOKEN' (the token is in the daemon's token file)".into(),
            )),
        }
    }
}

/// Compares without an early exit, so timing does not tell how much of
/// a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's context.
pub struct Ctx {
    pub sluice: Arc<Sluice>,
    pub auth: Auth,
}

pub enum SluiceImpl {}

type Rq = RequestContext<Arc<Ctx>>;

async fn call<T: Send + 'static>(
    rq: &Rq,
    mutating: bool,
    f: impl FnOnce(&Sluice) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, HttpError> {
    let ctx = Arc::clone(rq.context());
    ctx.auth.check(rq, mutating)?;
    let s = Arc::clone(&ctx.sluice);
    let r = tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| HttpError::for_internal_error(format!("handler failed: {e}")))?;
    if let Err(e) = &r {
        if matches!(e, ApiError::Internal(_)) {
            slog::error!(rq.log, "internal error"; "error" => %e);
        }
    }
    r.map_err(Into::into)
}

impl SluiceApi for SluiceImpl {
    type Context = Arc<Ctx>;

    async fn list_ports(rq: Rq) -> Result<HttpResponseOk<Vec<PortSummary>>, HttpError> {
        call(&rq, false, |s| s.list_ports())
            .await
            .map(HttpResponseOk)
    }

    async fn create_vnic(
        rq: Rq,
        body: TypedBody<CreateVnic>,
    ) -> Result<HttpResponseCreated<PortSummary>, HttpError> {
        let b = body.into_inner();
        call(&rq, true, move |s| s.create_vnic(b, true))
            .await
            .map(HttpResponseCreated)
    }

    async fn get_port(
        rq: Rq,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<PortDetail>, HttpError> {
        let n = path.into_inner().name;
        call(&rq, false, move |s| s.get_port(&n))
            .await
            .map(HttpResponseOk)
    }

    async fn delete_vnic(rq: Rq, path: Path<PortPath>) -> Result<HttpResponseDeleted, HttpError> {
        let n = path.into_inner().name;
        call(&rq, true, move |s| s.delete_vnic(&n))
            .await
            .map(|()| HttpResponseDeleted())
    }

    async fn list_layers(
        rq: Rq,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<serde_json::Value>, HttpError> {
        let n = path.into_inner().name;
        call(&rq, false, move |s| s.list_layers(&n))
            .await
            .map(HttpResponseOk)
    }

    async fn dump_layer(
        rq: Rq,
        path: Path<LayerPath>,
    ) -> Result<HttpResponseOk<serde_json::Value>, HttpError> {
        let p = path.into_inner();
        call(&rq, false, move |s| s.dump_layer(&p.name, &p.layer))
            .await
            .map(HttpResponseOk)
    }

    async fn dump_uft(
        rq: Rq,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<serde_json::Value>, HttpError> {
        let n = path.into_inner().name;
        call(&rq, false, move |s| s.dump_uft(&n))
            .await
            .map(HttpResponseOk)
    }

    async fn clear_uft(rq: Rq, path: Path<PortPath>) -> Result<HttpResponseDeleted, HttpError> {
        let n = path.into_inner().name;
        call(&rq, true, move |s| s.clear_uft(&n))
            .await
            .map(|()| HttpResponseDeleted())
    }

    async fn dump_tcp_flows(
        rq: Rq,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<serde_json::Value>, HttpError> {
        let n = path.into_inner().name;
        call(&rq, false, move |s| s.dump_tcp_flows(&n))
            .await
            .map(HttpResponseOk)
    }

    async fn list_fw_rules(
        rq: Rq,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<Vec<NumberedRule>>, HttpError> {
        let n = path.into_inner().name;
        call(&rq, false, move |s| s.firewall(&n))
            .await
            .map(HttpResponseOk)
    }

    async fn add_fw_rule(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<FirewallRule>,
    ) -> Result<HttpResponseOk<Vec<NumberedRule>>, HttpError> {
        let (n, r) = (path.into_inner().name, body.into_inner());
        call(&rq, true, move |s| s.add_fw_rule(&n, r))
            .await
            .map(HttpResponseOk)
    }

    async fn set_fw_rules(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<FirewallRules>,
    ) -> Result<HttpResponseOk<Vec<NumberedRule>>, HttpError> {
        let (n, r) = (path.into_inner().name, body.into_inner().rules);
        call(&rq, true, move |s| s.set_fw_rules(&n, r))
            .await
            .map(HttpResponseOk)
    }

    async fn rm_fw_rule(
        rq: Rq,
        path: Path<RulePath>,
    ) -> Result<HttpResponseOk<Vec<NumberedRule>>, HttpError> {
        let p = path.into_inner();
        call(&rq, true, move |s| s.rm_fw_rule(&p.name, p.id))
            .await
            .map(HttpResponseOk)
    }

    async fn list_routes(
        rq: Rq,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<Routes>, HttpError> {
        let n = path.into_inner().name;
        call(&rq, false, move |s| s.routes(&n))
            .await
            .map(HttpResponseOk)
    }

    async fn add_router_entry(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<RouteEntry>,
    ) -> Result<HttpResponseOk<Routes>, HttpError> {
        let (n, r) = (path.into_inner().name, body.into_inner());
        call(&rq, true, move |s| s.add_route(&n, r))
            .await
            .map(HttpResponseOk)
    }

    async fn del_router_entry(
        rq: Rq,
        path: Path<PortPath>,
        query: Query<RouteDest>,
    ) -> Result<HttpResponseOk<Routes>, HttpError> {
        let (n, d) = (path.into_inner().name, query.into_inner().dest);
        call(&rq, true, move |s| s.del_route(&n, d))
            .await
            .map(HttpResponseOk)
    }

    async fn set_external_ips(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<SetExternalIps>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError> {
        let (n, e) = (path.into_inner().name, body.into_inner().external);
        call(&rq, true, move |s| s.set_external_ips(&n, e))
            .await
            .map(HttpResponseOk)
    }

    async fn set_rate_limit(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<SetRateLimit>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError> {
        let (n, r) = (path.into_inner().name, body.into_inner().rate_limit);
        call(&rq, true, move |s| s.set_rate_limit(&n, r))
            .await
            .map(HttpResponseOk)
    }

    async fn port_stats(
        rq: Rq,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<PortStatsDoc>, HttpError> {
        let n = path.into_inner().name;
        call(&rq, false, move |s| s.port_stats(&n))
            .await
            .map(HttpResponseOk)
    }

    async fn trace(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<TraceRequest>,
    ) -> Result<HttpResponseOk<TraceResponse>, HttpError> {
        let (n, t) = (path.into_inner().name, body.into_inner());
        // A trace counts in the rule counters like a packet: a mutation.
        call(&rq, true, move |s| s.trace(&n, t))
            .await
            .map(HttpResponseOk)
    }

    async fn capture(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<CaptureRequest>,
    ) -> Result<HttpResponseOk<CaptureResponse>, HttpError> {
        let (n, c) = (path.into_inner().name, body.into_inner());
        // Guests' traffic: as sensitive as any mutation.
        call(&rq, true, move |s| s.capture(&n, c))
            .await
            .map(HttpResponseOk)
    }

    async fn dump_v2p(
        rq: Rq,
        query: Query<V2pSelector>,
    ) -> Result<HttpResponseOk<Vec<V2pMapping>>, HttpError> {
        let q = query.into_inner();
        call(&rq, false, move |s| {
            Ok(s.dump_v2p(crate::server::vni_opt(q.vni)?))
        })
        .await
        .map(HttpResponseOk)
    }

    async fn set_v2p(
        rq: Rq,
        body: TypedBody<V2pSet>,
    ) -> Result<HttpResponseOk<Changed>, HttpError> {
        let b = body.into_inner();
        call(&rq, true, move |s| s.set_v2p(b, true))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn clear_v2p(
        rq: Rq,
        query: Query<V2pSelector>,
    ) -> Result<HttpResponseOk<Changed>, HttpError> {
        let q = query.into_inner();
        call(&rq, true, move |s| s.clear_v2p(q))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn dump_v2b(
        rq: Rq,
        query: Query<V2bSelector>,
    ) -> Result<HttpResponseOk<Vec<V2bRoute>>, HttpError> {
        let q = query.into_inner();
        call(&rq, false, move |s| {
            Ok(s.dump_v2b(crate::server::vni_opt(q.vni)?))
        })
        .await
        .map(HttpResponseOk)
    }

    async fn set_v2b(
        rq: Rq,
        body: TypedBody<V2bSet>,
    ) -> Result<HttpResponseOk<Changed>, HttpError> {
        let b = body.into_inner();
        call(&rq, true, move |s| s.set_v2b(b, true))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn clear_v2b(
        rq: Rq,
        query: Query<V2bSelector>,
    ) -> Result<HttpResponseOk<Changed>, HttpError> {
        let q = query.into_inner();
        call(&rq, true, move |s| s.clear_v2b(q))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn stats(rq: Rq) -> Result<HttpResponseOk<HostStats>, HttpError> {
        call(&rq, false, |s| s.stats()).await.map(HttpResponseOk)
    }

    async fn dump_state(rq: Rq) -> Result<HttpResponseOk<StateDoc>, HttpError> {
        call(&rq, false, |s| Ok(s.state()))
            .await
            .map(HttpResponseOk)
    }

    async fn metrics(rq: Rq) -> Result<Response<Body>, HttpError> {
        let text = call(&rq, false, |s| Ok(crate::metrics::render(&s.stats()?))).await?;
        Ok(Response::builder()
            .status(http::StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(text.into())?)
    }

    async fn health(_rq: Rq) -> Result<HttpResponseUpdatedNoContent, HttpError> {
        Ok(HttpResponseUpdatedNoContent())
    }
}

/// The API description with the real implementation.
pub fn api() -> dropshot::ApiDescription<Arc<Ctx>> {
    match crate::api::sluice_api_mod::api_description::<SluiceImpl>() {
        Ok(a) => a,
        // The description is fixed at compile time; a failure here is a
        // programming error caught by every test.
        Err(e) => panic!("the API description is invalid: {e}"),
    }
}
