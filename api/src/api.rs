//! The HTTP API as a dropshot trait: the interface alone, from which the
//! OpenAPI document (`api/openapi.json`) is generated. [`crate::http`]
//! implements it over a [`crate::server::Sluice`] (real devices in
//! `sluiced`, simulated ones in tests).
//!
//! Reads are `GET`; everything else changes state and needs the bearer
//! token. Errors: 400 names the bad field, 401 a missing or wrong token
//! (checked before a body is read), 403 the read token for a change,
//! 404 an unknown port, layer, rule or route, 408 a body that came too
//! slowly, 409 a conflict (duplicate name, MAC or address; a full table),
//! 429 too many reads without a token from one client.

use crate::body::TypedBody;
use crate::types::*;
use dropshot::{
    Body, HttpError, HttpResponseCreated, HttpResponseDeleted, HttpResponseOk,
    HttpResponseUpdatedNoContent, Path, Query, RequestContext,
};
use http::Response;
use vnic::config::VnicConfig;
use vnic::firewall::FirewallRule;
use vnic::router::RouteEntry;

/// How many entries a bulk call changed.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Changed {
    pub changed: usize,
}

#[dropshot::api_description]
pub trait SluiceApi {
    type Context;

    /// List the ports (vNICs) of this host.
    #[endpoint { method = GET, path = "/ports", tags = ["ports"] }]
    async fn list_ports(
        rqctx: RequestContext<Self::Context>,
    ) -> Result<HttpResponseOk<Vec<PortSummary>>, HttpError>;

    /// Create a port for a vNIC and attach its guest device.
    #[endpoint { method = POST, path = "/ports", tags = ["ports"] }]
    async fn create_vnic(
        rqctx: RequestContext<Self::Context>,
        body: TypedBody<CreateVnic>,
    ) -> Result<HttpResponseCreated<PortSummary>, HttpError>;

    /// A port's summary and full configuration.
    #[endpoint { method = GET, path = "/ports/{name}", tags = ["ports"] }]
    async fn get_port(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<PortDetail>, HttpError>;

    /// Delete a port (its flows go with it; its guest device is closed).
    #[endpoint { method = DELETE, path = "/ports/{name}", tags = ["ports"] }]
    async fn delete_vnic(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseDeleted, HttpError>;

    /// A port's layers in processing order, with rule and flow counts.
    #[endpoint { method = GET, path = "/ports/{name}/layers", tags = ["tables"] }]
    async fn list_layers(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<Vec<LayerSummary>>, HttpError>;

    /// One layer: its rules (with hit counts), defaults and flow table.
    #[endpoint { method = GET, path = "/ports/{name}/layers/{layer}", tags = ["tables"] }]
    async fn dump_layer(
        rqctx: RequestContext<Self::Context>,
        path: Path<LayerPath>,
    ) -> Result<HttpResponseOk<LayerDoc>, HttpError>;

    /// The port's unified flow table, both directions.
    #[endpoint { method = GET, path = "/ports/{name}/uft", tags = ["tables"] }]
    async fn dump_uft(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<UftDoc>, HttpError>;

    /// Clear the port's flow tables (UFT, every LFT, TCP state): every
    /// flow is decided again by the layers at its next packet.
    #[endpoint { method = DELETE, path = "/ports/{name}/uft", tags = ["tables"] }]
    async fn clear_uft(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseDeleted, HttpError>;

    /// The TCP connections the port tracks, with their states.
    #[endpoint { method = GET, path = "/ports/{name}/tcp-flows", tags = ["tables"] }]
    async fn dump_tcp_flows(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<Vec<TcpFlowDoc>>, HttpError>;

    /// The port's firewall rules, numbered.
    #[endpoint { method = GET, path = "/ports/{name}/firewall", tags = ["firewall"] }]
    async fn list_fw_rules(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<Vec<NumberedRule>>, HttpError>;

    /// Add a firewall rule.
    #[endpoint { method = POST, path = "/ports/{name}/firewall", tags = ["firewall"] }]
    async fn add_fw_rule(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<FirewallRule>,
    ) -> Result<HttpResponseOk<Vec<NumberedRule>>, HttpError>;

    /// Replace the whole firewall rule set atomically: no packet sees a
    /// mix of old and new rules; flows the new set refuses stop.
    #[endpoint { method = PUT, path = "/ports/{name}/firewall", tags = ["firewall"] }]
    async fn set_fw_rules(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<FirewallRules>,
    ) -> Result<HttpResponseOk<Vec<NumberedRule>>, HttpError>;

    /// Remove firewall rule `id` (its number in the listing).
    #[endpoint { method = DELETE, path = "/ports/{name}/firewall/{id}", tags = ["firewall"] }]
    async fn rm_fw_rule(
        rqctx: RequestContext<Self::Context>,
        path: Path<RulePath>,
    ) -> Result<HttpResponseOk<Vec<NumberedRule>>, HttpError>;

    /// The port's routes: the VPC's system routes, then custom ones.
    #[endpoint { method = GET, path = "/ports/{name}/routes", tags = ["router"] }]
    async fn list_routes(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<Routes>, HttpError>;

    /// Add a custom route (or replace the one to the same destination).
    #[endpoint { method = POST, path = "/ports/{name}/routes", tags = ["router"] }]
    async fn add_router_entry(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<RouteEntry>,
    ) -> Result<HttpResponseOk<Routes>, HttpError>;

    /// Delete the custom route to `dest`.
    #[endpoint { method = DELETE, path = "/ports/{name}/routes", tags = ["router"] }]
    async fn del_router_entry(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        query: Query<RouteDest>,
    ) -> Result<HttpResponseOk<Routes>, HttpError>;

    /// Set the port's external IPs (SNAT, ephemeral, floating).
    #[endpoint { method = PUT, path = "/ports/{name}/external-ips", tags = ["nat"] }]
    async fn set_external_ips(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<SetExternalIps>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError>;

    /// Allow a transit prefix: the guest may send from it (`out`) and/or
    /// receive for it (`in`), untranslated (a router or VPN endpoint).
    /// Adds to what the prefix allowed already.
    #[endpoint { method = POST, path = "/ports/{name}/transit-ips", tags = ["ports"] }]
    async fn allow_cidr(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<vnic::config::TransitIp>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError>;

    /// Stop allowing a direction of a transit prefix; its flows stop at
    /// their next packet, the port's other flows are untouched.
    #[endpoint { method = DELETE, path = "/ports/{name}/transit-ips", tags = ["ports"] }]
    async fn remove_cidr(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        query: Query<TransitRemove>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError>;

    /// Attach a subnet to the port (routed to the guest, which may send
    /// from it); `external` for an external address block, which is never
    /// translated and never reaches a VPC recipient.
    #[endpoint { method = POST, path = "/ports/{name}/attached-subnets", tags = ["ports"] }]
    async fn attach_subnet(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<AttachSubnet>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError>;

    /// Detach a subnet from the port; its flows stop at their next packet.
    #[endpoint { method = DELETE, path = "/ports/{name}/attached-subnets", tags = ["ports"] }]
    async fn detach_subnet(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        query: Query<SubnetCidr>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError>;

    /// Set or remove the limit on what the port's guest sends (packets
    /// and bytes per second, token buckets). Packets over it are dropped
    /// and counted as `rate_limited`. Takes effect at once, buckets full.
    #[endpoint { method = PUT, path = "/ports/{name}/rate-limit", tags = ["ports"] }]
    async fn set_rate_limit(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<SetRateLimit>,
    ) -> Result<HttpResponseOk<VnicConfig>, HttpError>;

    /// The port's counters: packets and bytes per direction, flows, drops
    /// by reason, per layer.
    #[endpoint { method = GET, path = "/ports/{name}/stats", tags = ["observability"] }]
    async fn port_stats(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<PortStatsDoc>, HttpError>;

    /// Walk a described packet through the port's layers, without
    /// changing its flow tables: per layer, the rule that matched, the
    /// action and transform; the verdict and the packet that would leave.
    #[endpoint { method = POST, path = "/ports/{name}/trace", tags = ["observability"] }]
    async fn trace(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<TraceRequest>,
    ) -> Result<HttpResponseOk<TraceResponse>, HttpError>;

    /// Record the port's guest-side frames for a while, as pcap.
    #[endpoint { method = POST, path = "/ports/{name}/capture", tags = ["observability"] }]
    async fn capture(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<CaptureRequest>,
    ) -> Result<HttpResponseOk<CaptureResponse>, HttpError>;

    /// Export the port's whole state for a live migration (configuration,
    /// guest attachment, flows with TCP and NAT state, counters, rate
    /// buckets) as one versioned document. Changes nothing.
    #[endpoint { method = GET, path = "/ports/{name}/migration", tags = ["migration"] }]
    async fn export_migration(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<crate::migration::MigrationDoc>, HttpError>;

    /// Import a migration document: create the port (refused, naming the
    /// conflict, if its name, VNI and MAC, or addresses clash with a port
    /// here; refused if the document's version is not this host's) and
    /// rebuild its flows so they work from their first packet.
    #[endpoint { method = PUT, path = "/ports/{name}/migration", tags = ["migration"] }]
    async fn import_migration(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<crate::migration::ImportMigration>,
    ) -> Result<HttpResponseOk<crate::migration::MigrationImported>, HttpError>;

    /// Cut the port over to the target host: it stops forwarding, lets go
    /// of its guest device, and for the grace period tunnels what still
    /// arrives for its guest to the target (then it is deleted). Returns
    /// the migration document as of the cut-over.
    #[endpoint { method = POST, path = "/ports/{name}/migration/cutover", tags = ["migration"] }]
    async fn cut_over(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<crate::migration::CutOver>,
    ) -> Result<HttpResponseOk<crate::migration::MigrationDoc>, HttpError>;

    /// A port's cut-over: its target and what it forwarded there.
    #[endpoint { method = GET, path = "/ports/{name}/migration/status", tags = ["migration"] }]
    async fn migration_status(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<crate::migration::MigrationStatus>, HttpError>;

    /// Abort a cut-over: the source port forwards again and reopens its
    /// guest device. Returns the cut-over's counters.
    #[endpoint { method = DELETE, path = "/ports/{name}/migration", tags = ["migration"] }]
    async fn abort_migration(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
    ) -> Result<HttpResponseOk<crate::migration::MigrationStatus>, HttpError>;

    /// V2P mappings, of one VPC (`vni`) or all.
    #[endpoint { method = GET, path = "/v2p", tags = ["overlay"] }]
    async fn dump_v2p(
        rqctx: RequestContext<Self::Context>,
        query: Query<V2pSelector>,
    ) -> Result<HttpResponseOk<Vec<V2pMapping>>, HttpError>;

    /// Add or replace V2P mappings in bulk (all or nothing).
    #[endpoint { method = PUT, path = "/v2p", tags = ["overlay"] }]
    async fn set_v2p(
        rqctx: RequestContext<Self::Context>,
        body: TypedBody<V2pSet>,
    ) -> Result<HttpResponseOk<Changed>, HttpError>;

    /// Remove one mapping (`vni` and `ip`) or a whole VPC's (`vni`).
    #[endpoint { method = DELETE, path = "/v2p", tags = ["overlay"] }]
    async fn clear_v2p(
        rqctx: RequestContext<Self::Context>,
        query: Query<V2pSelector>,
    ) -> Result<HttpResponseOk<Changed>, HttpError>;

    /// M2P mappings (overlay multicast group to underlay group), of one
    /// VPC (`vni`) and group, or all.
    #[endpoint { method = GET, path = "/m2p", tags = ["multicast"] }]
    async fn dump_m2p(
        rqctx: RequestContext<Self::Context>,
        query: Query<M2pSelector>,
    ) -> Result<HttpResponseOk<Vec<M2pMapping>>, HttpError>;

    /// Add or replace M2P mappings in bulk (all or nothing).
    #[endpoint { method = PUT, path = "/m2p", tags = ["multicast"] }]
    async fn set_m2p(
        rqctx: RequestContext<Self::Context>,
        body: TypedBody<M2pSet>,
    ) -> Result<HttpResponseOk<Changed>, HttpError>;

    /// Remove one mapping (`vni` and `group`) or a whole VPC's (`vni`).
    #[endpoint { method = DELETE, path = "/m2p", tags = ["multicast"] }]
    async fn clear_m2p(
        rqctx: RequestContext<Self::Context>,
        query: Query<M2pSelector>,
    ) -> Result<HttpResponseOk<Changed>, HttpError>;

    /// Multicast subscriptions, of one port or of every port.
    #[endpoint { method = GET, path = "/mcast-subs", tags = ["multicast"] }]
    async fn dump_mcast_subs(
        rqctx: RequestContext<Self::Context>,
        query: Query<McastSubsSelector>,
    ) -> Result<HttpResponseOk<Vec<McastSub>>, HttpError>;

    /// Subscribe a port to a group of its VPC (again: replaces its source
    /// filter). Returns the port's subscriptions.
    #[endpoint { method = PUT, path = "/ports/{name}/mcast-subs", tags = ["multicast"] }]
    async fn mcast_subscribe(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        body: TypedBody<McastSubscribe>,
    ) -> Result<HttpResponseOk<Vec<McastSub>>, HttpError>;

    /// Unsubscribe a port from one group (`group`) or from all.
    #[endpoint { method = DELETE, path = "/ports/{name}/mcast-subs", tags = ["multicast"] }]
    async fn mcast_unsubscribe(
        rqctx: RequestContext<Self::Context>,
        path: Path<PortPath>,
        query: Query<McastUnsubscribe>,
    ) -> Result<HttpResponseOk<Changed>, HttpError>;

    /// Multicast forwarding entries, filtered by any of `vni`, `group`,
    /// `next_hop`.
    #[endpoint { method = GET, path = "/mcast-fwd", tags = ["multicast"] }]
    async fn dump_mcast_fwd(
        rqctx: RequestContext<Self::Context>,
        query: Query<McastFwdSelector>,
    ) -> Result<HttpResponseOk<Vec<McastFwdEntry>>, HttpError>;

    /// Add or replace a next hop of a group (`underlay` and `both` need
    /// the group's M2P mapping).
    #[endpoint { method = PUT, path = "/mcast-fwd", tags = ["multicast"] }]
    async fn set_mcast_fwd(
        rqctx: RequestContext<Self::Context>,
        body: TypedBody<McastFwdEntry>,
    ) -> Result<HttpResponseOk<Changed>, HttpError>;

    /// Remove one next hop of a group (`vni`, `group`, `next_hop`) or all
    /// of them (`vni`, `group`).
    #[endpoint { method = DELETE, path = "/mcast-fwd", tags = ["multicast"] }]
    async fn clear_mcast_fwd(
        rqctx: RequestContext<Self::Context>,
        query: Query<McastFwdSelector>,
    ) -> Result<HttpResponseOk<Changed>, HttpError>;

    /// V2B routes, of one VPC (`vni`) or all.
    #[endpoint { method = GET, path = "/v2b", tags = ["overlay"] }]
    async fn dump_v2b(
        rqctx: RequestContext<Self::Context>,
        query: Query<V2bSelector>,
    ) -> Result<HttpResponseOk<Vec<V2bRoute>>, HttpError>;

    /// Add or replace V2B routes.
    #[endpoint { method = PUT, path = "/v2b", tags = ["overlay"] }]
    async fn set_v2b(
        rqctx: RequestContext<Self::Context>,
        body: TypedBody<V2bSet>,
    ) -> Result<HttpResponseOk<Changed>, HttpError>;

    /// Remove one route (`vni` and `prefix`) or a whole VPC's (`vni`).
    #[endpoint { method = DELETE, path = "/v2b", tags = ["overlay"] }]
    async fn clear_v2b(
        rqctx: RequestContext<Self::Context>,
        query: Query<V2bSelector>,
    ) -> Result<HttpResponseOk<Changed>, HttpError>;

    /// This host's underlay address and uplinks: each one's link state,
    /// whether it is in use, its MACs and counters.
    #[endpoint { method = GET, path = "/underlay", tags = ["underlay"] }]
    async fn dump_underlay(
        rqctx: RequestContext<Self::Context>,
    ) -> Result<HttpResponseOk<UnderlayDoc>, HttpError>;

    /// Choose which configured uplinks carry traffic (by name; one or
    /// all). The others still receive. Lasts until sluiced restarts.
    #[endpoint { method = PUT, path = "/underlay", tags = ["underlay"] }]
    async fn set_underlay(
        rqctx: RequestContext<Self::Context>,
        body: TypedBody<UnderlaySet>,
    ) -> Result<HttpResponseOk<UnderlayDoc>, HttpError>;

    /// Every port's and worker's counters.
    #[endpoint { method = GET, path = "/stats", tags = ["observability"] }]
    async fn stats(
        rqctx: RequestContext<Self::Context>,
    ) -> Result<HttpResponseOk<HostStats>, HttpError>;

    /// The whole persisted state (what `sluiceadm replay --state` reads).
    #[endpoint { method = GET, path = "/state", tags = ["observability"] }]
    async fn dump_state(
        rqctx: RequestContext<Self::Context>,
    ) -> Result<HttpResponseOk<StateDoc>, HttpError>;

    /// Prometheus metrics (text exposition format).
    #[endpoint { method = GET, path = "/metrics", tags = ["observability"] }]
    async fn metrics(rqctx: RequestContext<Self::Context>) -> Result<Response<Body>, HttpError>;

    /// Is the daemon up? (No token needed, ever.)
    #[endpoint { method = GET, path = "/health", tags = ["observability"] }]
    async fn health(
        rqctx: RequestContext<Self::Context>,
    ) -> Result<HttpResponseUpdatedNoContent, HttpError>;
}

/// The OpenAPI document of [`SluiceApi`], as checked in at
/// `api/openapi.json`.
pub fn openapi_json() -> String {
    let d = match sluice_api_mod::stub_api_description() {
        Ok(d) => d,
        Err(e) => return format!("{{\"error\": \"{e}\"}}"),
    };
    let mut spec = d.openapi("sluice", semver::Version::new(1, 0, 0));
    spec.description("The control API of sluiced, a host's virtual networking dataplane.");
    match spec.json() {
        Ok(j) => serde_json::to_string_pretty(&j).unwrap_or_default() + "\n",
        Err(e) => format!("{{\"error\": \"{e}\"}}"),
    }
}
