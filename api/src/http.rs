//! [`SluiceApi`] implemented over a [`Sluice`]: who the client is (from
//! the front door, [`crate::front`]), authorisation, then the call on a
//! blocking thread (a call may wait for a worker's answer).

use crate::api::{Changed, SluiceApi};
use crate::body::TypedBody;
use crate::error::ApiError;
use crate::front::Peers;
use crate::server::Sluice;
use crate::types::*;
use dropshot::{
    Body, ClientErrorStatusCode, HttpError, HttpResponseCreated, HttpResponseDeleted,
    HttpResponseOk, HttpResponseUpdatedNoContent, Path, Query, RequestContext, RequestInfo,
};
use http::Response;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use vnic::config::VnicConfig;
use vnic::firewall::FirewallRule;
use vnic::router::RouteEntry;

/// Who may call what.
pub struct Auth {
    /// The bearer token mutating calls need (`None`: no token needed,
    /// for in-process tests only). It is good for reads too.
    pub token: Option<String>,
    /// A token good for reads only (`[api] read_token_file`).
    pub read_token: Option<String>,
    /// Reads need a token even from this host (`[api]
    /// require_token_for_reads`); otherwise a client on this host (a
    /// loopback address, IPv4-mapped ones included) reads without one.
    pub require_token_for_reads: bool,
}

/// What [`Auth::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A token was given and is good for the call.
    Token,
    /// No token, and the call needs none (a read from this host).
    Open,
}

impl Auth {
    /// Checks the `Authorization` header of a call from `client`.
    pub fn check(
        &self,
        headers: &http::HeaderMap,
        client: IpAddr,
        mutating: bool,
    ) -> Result<Access, HttpError> {
        let Some(token) = &self.token else {
            return Ok(Access::Token);
        };
        let matches = |t: &Option<String>, g: &str| {
            t.as_deref()
                .is_some_and(|t| constant_time_eq(g.as_bytes(), t.as_bytes()))
        };
        // A header that is there but not a bearer token is refused, not
        // ignored: the front door limits only requests without one.
        let given = match headers.get(http::header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(bearer(v).ok_or_else(|| {
                HttpError::from(ApiError::Unauthorized(
                    "the Authorization header must be 'Bearer TOKEN'".into(),
                ))
            })?),
        };
        match given {
            Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(Access::Token),
            Some(g) if matches(&self.read_token, g) => {
                if mutating {
                    Err(forbidden("the read token is good for reads only; this call needs the token"))
                } else {
                    Ok(Access::Token)
                }
            }
            Some(_) => Err(ApiError::Unauthorized("the bearer token is wrong".into()).into()),
            None if !mutating && !self.require_token_for_reads && is_local(client) => {
                Ok(Access::Open)
            }
            None if mutating => Err(ApiError::Unauthorized(
                "this call needs 'Authorization: Bearer TOKEN' (the token is in the daemon's token file)".into(),
            )
            .into()),
            None => Err(ApiError::Unauthorized(format!(
                "reads {} need 'Authorization: Bearer TOKEN' (the token or the read token)",
                if self.require_token_for_reads {
                    "on this host (require_token_for_reads)"
                } else {
                    "from another host"
                }
            ))
            .into()),
        }
    }
}

/// The credentials of an `Authorization` header: the scheme is
/// case-insensitive (RFC 9110 §11.1), one or more spaces follow it.
fn bearer(v: &http::HeaderValue) -> Option<&str> {
    let v = v.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// A client on this host: a loopback address, including `::ffff:127.x`
/// as a dual-stack `[::]` listen sees an IPv4 loopback client.
pub fn is_local(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

fn forbidden(msg: &str) -> HttpError {
    HttpError::for_client_error(
        Some("Forbidden".into()),
        ClientErrorStatusCode::FORBIDDEN,
        msg.to_string(),
    )
}

/// Compares without an early exit, so timing does not tell how much of
/// a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How long a request may take to send what it sends.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// The whole body must arrive within this (`[api] body_timeout_secs`).
    pub body_timeout: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// The server's context.
pub struct Ctx {
    pub sluice: Arc<Sluice>,
    pub auth: Auth,
    pub limits: RequestLimits,
    /// Who is behind each connection the front door relays.
    pub peers: Arc<Peers>,
}

impl Ctx {
    /// The client behind a request: the front door's record of it. A
    /// request that did not come through the front door is refused.
    pub fn client(&self, rq: &RequestInfo) -> Result<SocketAddr, HttpError> {
        self.peers
            .client(rq.remote_addr())
            .ok_or_else(|| forbidden("connect to sluiced's API address; this listener is internal"))
    }

    /// Who is calling, and may they make this call.
    pub fn admit(
        &self,
        rq: &RequestInfo,
        mutating: bool,
    ) -> Result<(SocketAddr, Access), HttpError> {
        let client = self.client(rq)?;
        let access = self.auth.check(rq.headers(), client.ip(), mutating)?;
        Ok((client, access))
    }
}

pub enum SluiceImpl {}

type Rq = RequestContext<Arc<Ctx>>;

async fn call<T: Send + 'static>(
    rq: &Rq,
    mutating: bool,
    f: impl FnOnce(&Sluice) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, HttpError> {
    let ctx = Arc::clone(rq.context());
    ctx.admit(&rq.request, mutating)?;
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

/// A call that changes the host's desired state: refused with 409 on a
/// host a fleet programs (its store is where the change belongs; a local
/// change would be undone, or worse, kept on this host alone).
async fn change<T: Send + 'static>(
    rq: &Rq,
    f: impl FnOnce(&Sluice) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, HttpError> {
    let ctx = Arc::clone(rq.context());
    ctx.admit(&rq.request, true)?;
    if let Some(fleet) = ctx.sluice.fleet() {
        return Err(ApiError::Conflict(format!(
            "this host's desired state is managed by the fleet ({fleet}); \
             change it there: sluiceadm --etcd URL --fleet-host NAME <verb>"
        ))
        .into());
    }
    call(rq, true, f).await
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
        change(&rq, move |s| s.create_vnic(b, true))
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
        change(&rq, move |s| s.delete_vnic(&n))
            .await
            .map(|()| HttpResponseDeleted())
    }

    async fn list_layers(
        rq: Rq,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<Vec<LayerSummary>>, HttpError> {
        let n = path.into_inner().name;
        call(&rq, false, move |s| s.list_layers(&n))
            .await
            .map(HttpResponseOk)
    }

    async fn dump_layer(
        rq: Rq,
        path: Path<LayerPath>,
    ) -> Result<HttpResponseOk<LayerDoc>, HttpError> {
        let p = path.into_inner();
        call(&rq, false, move |s| s.dump_layer(&p.name, &p.layer))
            .await
            .map(HttpResponseOk)
    }

    async fn dump_uft(rq: Rq, path: Path<PortPath>) -> Result<HttpResponseOk<UftDoc>, HttpError> {
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
    ) -> Result<HttpResponseOk<Vec<TcpFlowDoc>>, HttpError> {
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
        change(&rq, move |s| s.add_fw_rule(&n, r))
            .await
            .map(HttpResponseOk)
    }

    async fn set_fw_rules(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<FirewallRules>,
    ) -> Result<HttpResponseOk<Vec<NumberedRule>>, HttpError> {
        let (n, r) = (path.into_inner().name, body.into_inner().rules);
        change(&rq, move |s| s.set_fw_rules(&n, r))
            .await
            .map(HttpResponseOk)
    }

    async fn rm_fw_rule(
        rq: Rq,
        path: Path<RulePath>,
    ) -> Result<HttpResponseOk<Vec<NumberedRule>>, HttpError> {
        let p = path.into_inner();
        change(&rq, move |s| s.rm_fw_rule(&p.name, p.id))
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
        change(&rq, move |s| s.add_route(&n, r))
            .await
            .map(HttpResponseOk)
    }

    async fn del_router_entry(
        rq: Rq,
        path: Path<PortPath>,
        query: Query<RouteDest>,
    ) -> Result<HttpResponseOk<Routes>, HttpError> {
        let (n, d) = (path.into_inner().name, query.into_inner().dest);
        change(&rq, move |s| s.del_route(&n, d))
            .await
            .map(HttpResponseOk)
    }

    async fn set_external_ips(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<SetExternalIps>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError> {
        let (n, e) = (path.into_inner().name, body.into_inner().external);
        change(&rq, move |s| s.set_external_ips(&n, e))
            .await
            .map(HttpResponseOk)
    }

    async fn allow_cidr(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<vnic::config::TransitIp>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError> {
        let (n, t) = (path.into_inner().name, body.into_inner());
        call(&rq, true, move |s| s.allow_cidr(&n, t))
            .await
            .map(HttpResponseOk)
    }

    async fn remove_cidr(
        rq: Rq,
        path: Path<PortPath>,
        query: Query<TransitRemove>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError> {
        let (n, q) = (path.into_inner().name, query.into_inner());
        call(&rq, true, move |s| s.remove_cidr(&n, q.cidr, q.dir))
            .await
            .map(HttpResponseOk)
    }

    async fn attach_subnet(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<AttachSubnet>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError> {
        let (n, a) = (path.into_inner().name, body.into_inner());
        call(&rq, true, move |s| s.attach_subnet(&n, a))
            .await
            .map(HttpResponseOk)
    }

    async fn detach_subnet(
        rq: Rq,
        path: Path<PortPath>,
        query: Query<SubnetCidr>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError> {
        let (n, q) = (path.into_inner().name, query.into_inner());
        call(&rq, true, move |s| s.detach_subnet(&n, q.cidr))
            .await
            .map(HttpResponseOk)
    }

    async fn set_rate_limit(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<SetRateLimit>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError> {
        let (n, r) = (path.into_inner().name, body.into_inner().rate_limit);
        change(&rq, move |s| s.set_rate_limit(&n, r))
            .await
            .map(HttpResponseOk)
    }

    async fn export_migration(
        rq: Rq,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<crate::migration::MigrationDoc>, HttpError> {
        let n = path.into_inner().name;
        call(&rq, false, move |s| s.export_migration(&n, None))
            .await
            .map(HttpResponseOk)
    }

    async fn import_migration(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<crate::migration::ImportMigration>,
    ) -> Result<HttpResponseOk<crate::migration::MigrationImported>, HttpError> {
        let (n, b) = (path.into_inner().name, body.into_inner());
        change(&rq, move |s| s.import_migration(&n, b))
            .await
            .map(HttpResponseOk)
    }

    async fn cut_over(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<crate::migration::CutOver>,
    ) -> Result<HttpResponseOk<crate::migration::MigrationDoc>, HttpError> {
        let (n, b) = (path.into_inner().name, body.into_inner());
        change(&rq, move |s| s.export_migration(&n, Some(b)))
            .await
            .map(HttpResponseOk)
    }

    async fn migration_status(
        rq: Rq,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<crate::migration::MigrationStatus>, HttpError> {
        let n = path.into_inner().name;
        call(&rq, false, move |s| s.migration_status(&n))
            .await
            .map(HttpResponseOk)
    }

    async fn abort_migration(
        rq: Rq,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<crate::migration::MigrationStatus>, HttpError> {
        let n = path.into_inner().name;
        call(&rq, true, move |s| s.abort_migration(&n))
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
        change(&rq, move |s| s.set_v2p(b, true))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn clear_v2p(
        rq: Rq,
        query: Query<V2pSelector>,
    ) -> Result<HttpResponseOk<Changed>, HttpError> {
        let q = query.into_inner();
        change(&rq, move |s| s.clear_v2p(q))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn dump_m2p(
        rq: Rq,
        query: Query<M2pSelector>,
    ) -> Result<HttpResponseOk<Vec<M2pMapping>>, HttpError> {
        let q = query.into_inner();
        call(&rq, false, move |s| {
            let mut d = s.dump_m2p(crate::server::vni_opt(q.vni)?);
            d.retain(|m| q.group.is_none_or(|g| g == m.group));
            Ok(d)
        })
        .await
        .map(HttpResponseOk)
    }

    async fn set_m2p(
        rq: Rq,
        body: TypedBody<M2pSet>,
    ) -> Result<HttpResponseOk<Changed>, HttpError> {
        let b = body.into_inner();
        change(&rq, move |s| s.set_m2p(b, true))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn clear_m2p(
        rq: Rq,
        query: Query<M2pSelector>,
    ) -> Result<HttpResponseOk<Changed>, HttpError> {
        let q = query.into_inner();
        change(&rq, move |s| s.clear_m2p(q))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn dump_mcast_subs(
        rq: Rq,
        query: Query<McastSubsSelector>,
    ) -> Result<HttpResponseOk<Vec<McastSub>>, HttpError> {
        let q = query.into_inner();
        call(&rq, false, move |s| s.dump_mcast_subs(q.port.as_deref()))
            .await
            .map(HttpResponseOk)
    }

    async fn mcast_subscribe(
        rq: Rq,
        path: Path<PortPath>,
        body: TypedBody<McastSubscribe>,
    ) -> Result<HttpResponseOk<Vec<McastSub>>, HttpError> {
        let (n, b) = (path.into_inner().name, body.into_inner());
        change(&rq, move |s| s.mcast_subscribe(&n, b))
            .await
            .map(HttpResponseOk)
    }

    async fn mcast_unsubscribe(
        rq: Rq,
        path: Path<PortPath>,
        query: Query<McastUnsubscribe>,
    ) -> Result<HttpResponseOk<Changed>, HttpError> {
        let (n, q) = (path.into_inner().name, query.into_inner());
        change(&rq, move |s| s.mcast_unsubscribe(&n, q))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn dump_mcast_fwd(
        rq: Rq,
        query: Query<McastFwdSelector>,
    ) -> Result<HttpResponseOk<Vec<McastFwdEntry>>, HttpError> {
        let q = query.into_inner();
        call(&rq, false, move |s| {
            let mut d = s.dump_mcast_fwd(crate::server::vni_opt(q.vni)?);
            d.retain(|f| {
                q.group.is_none_or(|g| g == f.group) && q.next_hop.is_none_or(|h| h == f.next_hop)
            });
            Ok(d)
        })
        .await
        .map(HttpResponseOk)
    }

    async fn set_mcast_fwd(
        rq: Rq,
        body: TypedBody<McastFwdEntry>,
    ) -> Result<HttpResponseOk<Changed>, HttpError> {
        let b = body.into_inner();
        change(&rq, move |s| s.set_mcast_fwd(b))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn clear_mcast_fwd(
        rq: Rq,
        query: Query<McastFwdSelector>,
    ) -> Result<HttpResponseOk<Changed>, HttpError> {
        let q = query.into_inner();
        change(&rq, move |s| s.clear_mcast_fwd(q))
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
        change(&rq, move |s| s.set_v2b(b, true))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn clear_v2b(
        rq: Rq,
        query: Query<V2bSelector>,
    ) -> Result<HttpResponseOk<Changed>, HttpError> {
        let q = query.into_inner();
        change(&rq, move |s| s.clear_v2b(q))
            .await
            .map(|changed| HttpResponseOk(Changed { changed }))
    }

    async fn dump_underlay(rq: Rq) -> Result<HttpResponseOk<UnderlayDoc>, HttpError> {
        call(&rq, false, |s| s.dump_underlay())
            .await
            .map(HttpResponseOk)
    }

    async fn set_underlay(
        rq: Rq,
        body: TypedBody<UnderlaySet>,
    ) -> Result<HttpResponseOk<UnderlayDoc>, HttpError> {
        let b = body.into_inner();
        // This host's own wiring, not desired state a fleet holds: allowed
        // in fleet mode too.
        call(&rq, true, move |s| s.set_underlay(b))
            .await
            .map(HttpResponseOk)
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
        let text = call(&rq, false, |s| {
            let mut t = crate::metrics::render(&s.stats()?) + &s.migration_metrics();
            if let Some(fl) = s.flow_logs() {
                t += &fl.metrics();
            }
            if s.fleet().is_some() {
                t += &s.fleet_gauges().render();
            }
            Ok(t)
        })
        .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn bearer_tokens_local_clients_and_the_read_token() {
        let a = Auth {
            token: Some("t0k3n".into()),
            read_token: Some("r34d".into()),
            require_token_for_reads: false,
        };
        let local: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let remote: IpAddr = "192.0.2.1".parse().unwrap();
        let none = http::HeaderMap::new();
        assert_eq!(
            a.check(&headers("bearer t0k3n"), remote, true).unwrap(),
            Access::Token
        );
        assert_eq!(
            a.check(&headers("BEARER\tt0k3n "), remote, true).unwrap(),
            Access::Token
        );
        assert_eq!(a.check(&none, local, false).unwrap(), Access::Open);
        assert_eq!(
            a.check(&none, "::1".parse().unwrap(), false).unwrap(),
            Access::Open
        );
        assert_eq!(
            a.check(&none, remote, false)
                .unwrap_err()
                .status_code
                .as_u16(),
            401
        );
        assert_eq!(
            a.check(&none, local, true)
                .unwrap_err()
                .status_code
                .as_u16(),
            401
        );
        assert_eq!(
            a.check(&headers("Bearer r34d"), remote, false).unwrap(),
            Access::Token
        );
        assert_eq!(
            a.check(&headers("Bearer r34d"), local, true)
                .unwrap_err()
                .status_code
                .as_u16(),
            403
        );
        assert_eq!(
            a.check(&headers("Bearer nope"), local, false)
                .unwrap_err()
                .status_code
                .as_u16(),
            401
        );
        assert_eq!(
            a.check(&headers("Basic t0k3n"), remote, true)
                .unwrap_err()
                .status_code
                .as_u16(),
            401
        );
        // Another scheme is no way around the token, nor around the
        // front door's limit on reads without a header.
        assert_eq!(
            a.check(&headers("Basic t0k3n"), local, false)
                .unwrap_err()
                .status_code
                .as_u16(),
            401
        );
        assert_eq!(
            a.check(&headers("Bearer"), local, false)
                .unwrap_err()
                .status_code
                .as_u16(),
            401
        );
        let strict = Auth {
            require_token_for_reads: true,
            ..a
        };
        assert_eq!(
            strict
                .check(&none, local, false)
                .unwrap_err()
                .status_code
                .as_u16(),
            401
        );
    }
}
