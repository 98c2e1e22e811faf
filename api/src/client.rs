//! A small blocking client over sluiced's HTTP API: one typed method per
//! endpoint of [`crate::api::SluiceApi`], what `sluiceadm` speaks.
//!
//! A failed call is a [`ClientError`] that keeps what the server said:
//! the HTTP status and dropshot's `message` (which names the bad field of
//! a 400), so the CLI can show the operator the server's own words
//! rather than a paraphrase.

use crate::api::Changed;
use crate::types::*;
use dataplane::IpCidr;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;
use vnic::config::{TransitDir, TransitIp, VnicConfig};
use vnic::firewall::FirewallRule;
use vnic::router::RouteEntry;

/// How long a call may take: a capture runs up to 60 s on the server,
/// everything else answers in milliseconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(90);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{status} {reason}: {message}")]
    Status {
        status: u16,
        /// The status's canonical reason ("Not Found").
        reason: String,
        /// The server's message (dropshot's `message`), or the body.
        message: String,
        /// dropshot's `error_code` ("InvalidField", "NotFound", ...).
        error_code: Option<String>,
    },
    /// No answer: the daemon is not running, or not at that address.
    #[error("cannot reach sluiced at {url}: {detail}")]
    Transport { url: String, detail: String },
    /// A name that cannot be a segment of a request's path (`.`, `..`,
    /// empty): refused before anything is sent.
    #[error(
        "{name:?} cannot be a name here: it is empty or a path segment with a meaning ('.', '..')"
    )]
    BadName { name: String },
    /// An answer this client does not understand (another version?).
    #[error("unexpected answer from {url}: {detail}")]
    Decode { url: String, detail: String },
}

impl ClientError {
    /// The HTTP status of a refused call.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// dropshot's error body.
#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: Option<String>,
    message: String,
}

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the API at `base` (`http://127.0.0.1:7480`), with the
    /// bearer token mutating calls need (reads from loopback need none).
    pub fn new(base: &str, token: Option<String>) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// One call: `body` as JSON if given; the answer's body (empty for a
    /// 204) or the server's error.
    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut rq = self.agent.request(method, &url);
        for (k, v) in query {
            rq = rq.query(k, v);
        }
        if let Some(t) = &self.token {
            rq = rq.set("Authorization", &format!("Bearer {t}"));
        }
        let res = match body {
            Some(b) => rq.send_json(b),
            None => rq.call(),
        };
        let decode = |detail: String| ClientError::Decode {
            url: url.clone(),
            detail,
        };
        match res {
            Ok(r) => r.into_string().map_err(|e| decode(e.to_string())),
            Err(ureq::Error::Status(status, r)) => {
                let text = r.into_string().unwrap_or_default();
                let (message, error_code) = match serde_json::from_str::<ErrorBody>(&text) {
                    Ok(b) => (b.message, b.error_code),
                    Err(_) => (text.trim().to_string(), None),
                };
                let reason = http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Error")
                    .to_string();
                Err(ClientError::Status {
                    status,
                    reason,
                    message,
                    error_code,
                })
            }
            Err(ureq::Error::Transport(t)) => {
                // ureq's own text starts with the URL, which ours names.
                let mut detail = t.kind().to_string();
                if let Some(m) = t.message() {
                    detail += &format!(": {m}");
                }
                if let Some(src) = std::error::Error::source(&t) {
                    detail += &format!(": {src}");
                }
                Err(ClientError::Transport {
                    url: self.base.clone(),
                    detail,
                })
            }
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let text = self.send(method, path, query, body)?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode {
            url: format!("{}{path}", self.base),
            detail: e.to_string(),
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call("GET", path, &[], None)
    }

    fn with_body<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let v = serde_json::to_value(body).map_err(|e| ClientError::Decode {
            url: format!("{}{path}", self.base),
            detail: format!("encoding the request: {e}"),
        })?;
        self.call(method, path, &[], Some(v))
    }

    fn delete_no_content(&self, path: &str) -> Result<(), ClientError> {
        self.send("DELETE", path, &[], None).map(drop)
    }

    /// Is the daemon up?
    pub fn health(&self) -> Result<(), ClientError> {
        self.send("GET", "/health", &[], None).map(drop)
    }

    // ---- ports ----

    pub fn list_ports(&self) -> Result<Vec<PortSummary>, ClientError> {
        self.get("/ports")
    }

    pub fn create_vnic(&self, req: &CreateVnic) -> Result<PortSummary, ClientError> {
        self.with_body("POST", "/ports", req)
    }

    pub fn get_port(&self, name: &str) -> Result<PortDetail, ClientError> {
        self.get(&port_path(name, "")?)
    }

    pub fn delete_vnic(&self, name: &str) -> Result<(), ClientError> {
        self.delete_no_content(&port_path(name, "")?)
    }

    // ---- tables of a port (the engine's own documents) ----

    pub fn list_layers(&self, name: &str) -> Result<Vec<LayerSummary>, ClientError> {
        self.get(&port_path(name, "/layers")?)
    }

    pub fn dump_layer(&self, name: &str, layer: &str) -> Result<LayerDoc, ClientError> {
        self.get(&port_path(name, &format!("/layers/{}", segment(layer)?))?)
    }

    pub fn dump_uft(&self, name: &str) -> Result<UftDoc, ClientError> {
        self.get(&port_path(name, "/uft")?)
    }

    pub fn clear_uft(&self, name: &str) -> Result<(), ClientError> {
        self.delete_no_content(&port_path(name, "/uft")?)
    }

    pub fn dump_tcp_flows(&self, name: &str) -> Result<Vec<TcpFlowDoc>, ClientError> {
        self.get(&port_path(name, "/tcp-flows")?)
    }

    // ---- firewall ----

    pub fn list_fw_rules(&self, name: &str) -> Result<Vec<NumberedRule>, ClientError> {
        self.get(&port_path(name, "/firewall")?)
    }

    pub fn add_fw_rule(
        &self,
        name: &str,
        rule: &FirewallRule,
    ) -> Result<Vec<NumberedRule>, ClientError> {
        self.with_body("POST", &port_path(name, "/firewall")?, rule)
    }

    pub fn set_fw_rules(
        &self,
        name: &str,
        rules: &FirewallRules,
    ) -> Result<Vec<NumberedRule>, ClientError> {
        self.with_body("PUT", &port_path(name, "/firewall")?, rules)
    }

    pub fn rm_fw_rule(&self, name: &str, id: usize) -> Result<Vec<NumberedRule>, ClientError> {
        self.call(
            "DELETE",
            &port_path(name, &format!("/firewall/{id}"))?,
            &[],
            None,
        )
    }

    // ---- router ----

    pub fn list_routes(&self, name: &str) -> Result<Routes, ClientError> {
        self.get(&port_path(name, "/routes")?)
    }

    pub fn add_router_entry(&self, name: &str, r: &RouteEntry) -> Result<Routes, ClientError> {
        self.with_body("POST", &port_path(name, "/routes")?, r)
    }

    pub fn del_router_entry(&self, name: &str, dest: &IpCidr) -> Result<Routes, ClientError> {
        self.call(
            "DELETE",
            &port_path(name, "/routes")?,
            &[("dest", dest.to_string())],
            None,
        )
    }

    // ---- nat ----

    pub fn set_external_ips(
        &self,
        name: &str,
        e: &SetExternalIps,
    ) -> Result<VnicConfig, ClientError> {
        self.with_body("PUT", &port_path(name, "/external-ips")?, e)
    }

    pub fn allow_cidr(&self, name: &str, t: &TransitIp) -> Result<VnicConfig, ClientError> {
        self.with_body("POST", &port_path(name, "/transit-ips")?, t)
    }

    pub fn remove_cidr(
        &self,
        name: &str,
        cidr: &IpCidr,
        dir: TransitDir,
    ) -> Result<VnicConfig, ClientError> {
        let q = [("cidr", cidr.to_string()), ("dir", dir.name().to_string())];
        self.call("DELETE", &port_path(name, "/transit-ips")?, &q, None)
    }

    pub fn attach_subnet(&self, name: &str, a: &AttachSubnet) -> Result<VnicConfig, ClientError> {
        self.with_body("POST", &port_path(name, "/attached-subnets")?, a)
    }

    pub fn detach_subnet(&self, name: &str, cidr: &IpCidr) -> Result<VnicConfig, ClientError> {
        let q = [("cidr", cidr.to_string())];
        self.call("DELETE", &port_path(name, "/attached-subnets")?, &q, None)
    }

    pub fn set_rate_limit(&self, name: &str, r: &SetRateLimit) -> Result<VnicConfig, ClientError> {
        self.with_body("PUT", &port_path(name, "/rate-limit")?, r)
    }

    // ---- observability ----

    pub fn port_stats(&self, name: &str) -> Result<PortStatsDoc, ClientError> {
        self.get(&port_path(name, "/stats")?)
    }

    pub fn stats(&self) -> Result<HostStats, ClientError> {
        self.get("/stats")
    }

    pub fn trace(&self, name: &str, req: &TraceRequest) -> Result<TraceResponse, ClientError> {
        self.with_body("POST", &port_path(name, "/trace")?, req)
    }

    pub fn capture(
        &self,
        name: &str,
        req: &CaptureRequest,
    ) -> Result<CaptureResponse, ClientError> {
        self.with_body("POST", &port_path(name, "/capture")?, req)
    }

    pub fn dump_state(&self) -> Result<StateDoc, ClientError> {
        self.get("/state")
    }

    /// The Prometheus text.
    pub fn metrics(&self) -> Result<String, ClientError> {
        self.send("GET", "/metrics", &[], None)
    }

    // ---- V2P, V2B ----

    pub fn dump_v2p(&self, vni: Option<u32>) -> Result<Vec<V2pMapping>, ClientError> {
        let q: Vec<(&str, String)> = vni.iter().map(|v| ("vni", v.to_string())).collect();
        self.call("GET", "/v2p", &q, None)
    }

    pub fn set_v2p(&self, set: &V2pSet) -> Result<Changed, ClientError> {
        self.with_body("PUT", "/v2p", set)
    }

    pub fn clear_v2p(&self, vni: u32, ip: Option<IpAddr>) -> Result<Changed, ClientError> {
        let mut q = vec![("vni", vni.to_string())];
        q.extend(ip.map(|ip| ("ip", ip.to_string())));
        self.call("DELETE", "/v2p", &q, None)
    }

    // ---- multicast ----

    pub fn dump_m2p(&self, vni: Option<u32>) -> Result<Vec<M2pMapping>, ClientError> {
        let q: Vec<(&str, String)> = vni.iter().map(|v| ("vni", v.to_string())).collect();
        self.call("GET", "/m2p", &q, None)
    }

    pub fn set_m2p(&self, set: &M2pSet) -> Result<Changed, ClientError> {
        self.with_body("PUT", "/m2p", set)
    }

    pub fn clear_m2p(&self, vni: u32, group: Option<IpAddr>) -> Result<Changed, ClientError> {
        let mut q = vec![("vni", vni.to_string())];
        q.extend(group.map(|g| ("group", g.to_string())));
        self.call("DELETE", "/m2p", &q, None)
    }

    pub fn dump_mcast_subs(&self, port: Option<&str>) -> Result<Vec<McastSub>, ClientError> {
        let q: Vec<(&str, String)> = port.iter().map(|p| ("port", p.to_string())).collect();
        self.call("GET", "/mcast-subs", &q, None)
    }

    pub fn mcast_subscribe(
        &self,
        port: &str,
        req: &McastSubscribe,
    ) -> Result<Vec<McastSub>, ClientError> {
        self.with_body("PUT", &port_path(port, "/mcast-subs")?, req)
    }

    pub fn mcast_unsubscribe(
        &self,
        port: &str,
        group: Option<IpAddr>,
    ) -> Result<Changed, ClientError> {
        let q: Vec<(&str, String)> = group.iter().map(|g| ("group", g.to_string())).collect();
        self.call("DELETE", &port_path(port, "/mcast-subs")?, &q, None)
    }

    pub fn dump_mcast_fwd(&self, vni: Option<u32>) -> Result<Vec<McastFwdEntry>, ClientError> {
        let q: Vec<(&str, String)> = vni.iter().map(|v| ("vni", v.to_string())).collect();
        self.call("GET", "/mcast-fwd", &q, None)
    }

    pub fn set_mcast_fwd(&self, e: &McastFwdEntry) -> Result<Changed, ClientError> {
        self.with_body("PUT", "/mcast-fwd", e)
    }

    pub fn clear_mcast_fwd(
        &self,
        vni: u32,
        group: IpAddr,
        next_hop: Option<Ipv6Addr>,
    ) -> Result<Changed, ClientError> {
        let mut q = vec![("vni", vni.to_string()), ("group", group.to_string())];
        q.extend(next_hop.map(|h| ("next_hop", h.to_string())));
        self.call("DELETE", "/mcast-fwd", &q, None)
    }

    // ---- underlay ----

    pub fn dump_underlay(&self) -> Result<UnderlayDoc, ClientError> {
        self.get("/underlay")
    }

    pub fn set_underlay(&self, set: &UnderlaySet) -> Result<UnderlayDoc, ClientError> {
        self.with_body("PUT", "/underlay", set)
    }

    pub fn dump_v2b(&self, vni: Option<u32>) -> Result<Vec<V2bRoute>, ClientError> {
        let q: Vec<(&str, String)> = vni.iter().map(|v| ("vni", v.to_string())).collect();
        self.call("GET", "/v2b", &q, None)
    }

    pub fn set_v2b(&self, set: &V2bSet) -> Result<Changed, ClientError> {
        self.with_body("PUT", "/v2b", set)
    }

    pub fn clear_v2b(&self, vni: u32, prefix: Option<IpCidr>) -> Result<Changed, ClientError> {
        let mut q = vec![("vni", vni.to_string())];
        q.extend(prefix.map(|p| ("prefix", p.to_string())));
        self.call("DELETE", "/v2b", &q, None)
    }
}

// ---- live migration (api/src/migration.rs) ----

impl Client {
    /// Cuts a port over to another host; its document as of the cut-over.
    pub fn cut_over(
        &self,
        name: &str,
        req: &crate::migration::CutOver,
    ) -> Result<crate::migration::MigrationDoc, ClientError> {
        self.with_body("POST", &port_path(name, "/migration/cutover")?, req)
    }

    pub fn import_migration(
        &self,
        name: &str,
        req: &crate::migration::ImportMigration,
    ) -> Result<crate::migration::MigrationImported, ClientError> {
        self.with_body("PUT", &port_path(name, "/migration")?, req)
    }

    pub fn abort_migration(
        &self,
        name: &str,
    ) -> Result<crate::migration::MigrationStatus, ClientError> {
        self.call("DELETE", &port_path(name, "/migration")?, &[], None)
    }
}

/// `/ports/{name}{rest}`, the name percent-encoded.
fn port_path(name: &str, rest: &str) -> Result<String, ClientError> {
    Ok(format!("/ports/{}{rest}", segment(name)?))
}

/// A path segment, percent-encoded (a name with a '/' or '?' stays one
/// segment and reaches the server as the 404 it deserves). `.` and `..`
/// are refused: URL parsers resolve them, encoded or not, so
/// `/ports/./uft` would become `/ports/uft`, another port's path.
fn segment(s: &str) -> Result<String, ClientError> {
    if s.is_empty() || s == "." || s == ".." {
        return Err(ClientError::BadName {
            name: s.to_string(),
        });
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(port_path("vm1", "/uft").unwrap(), "/ports/vm1/uft");
        assert_eq!(port_path("a/b?c", "").unwrap(), "/ports/a%2Fb%3Fc");
        assert_eq!(port_path("a.b", "").unwrap(), "/ports/a.b");
        assert_eq!(port_path("...", "").unwrap(), "/ports/...");
        for bad in [".", "..", ""] {
            assert!(
                matches!(port_path(bad, "/uft"), Err(ClientError::BadName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_unreachable_daemon_is_a_transport_error() {
        // Port 9 (discard) on loopback: nothing listens in a test box.
        let c = Client::new("http://127.0.0.1:9/", None);
        match c.list_ports() {
            Err(e @ ClientError::Transport { .. }) => {
                assert!(e
                    .to_string()
                    .starts_with("cannot reach sluiced at http://127.0.0.1:9"))
            }
            other => panic!("{other:?}"),
        }
    }
}
