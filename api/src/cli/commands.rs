//! Running a parsed command: the call, then its answer as a table or as
//! JSON. Every verb appends its output to a string the caller prints, so
//! nothing is printed half-way when a call fails.

use super::{show, Cli, Command, DirArg, FwActionArg, ProtoArg};
use crate::client::{Client, ClientError};
use crate::replay::{self, ReplayError, ReplayOptions};
use crate::types::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use vnic::config::{ExternalIps, VnicConfig};
use vnic::firewall::{FirewallRule, FwAction, FwDirection};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server refused the call, or could not be reached.
    #[error("{err}")]
    Api {
        err: ClientError,
        /// Why no token was sent, if none was.
        no_token: Option<String>,
    },
    #[error("reading {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{path}: {err}")]
    Json {
        path: PathBuf,
        err: serde_json::Error,
    },
    #[error("writing {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error("the capture is not base64: {0}")]
    Capture(String),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// `top` could not use the terminal.
    #[error("{0}")]
    Top(String),
    /// The fleet's store refused, could not be reached, or the verb is
    /// not one of desired state.
    #[error("{0}")]
    Fleet(String),
}

impl CliError {
    /// A hint to print after the error, if there is one.
    pub fn note(&self) -> Option<String> {
        match self {
            CliError::Api {
                err,
                no_token: Some(why),
            } if err.status() == Some(401) => Some(format!(
                "no token was sent ({why}); give --token or --token-file"
            )),
            _ => None,
        }
    }
}

/// The token: `--token`, else the token file's content. `Err` says why
/// there is none (fine for reads).
fn token(cli: &Cli) -> Result<String, String> {
    if let Some(t) = &cli.global.token {
        return Ok(t.trim().to_string());
    }
    let path = &cli.global.token_file;
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => Err(format!("{} is empty", path.display())),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Reads a file, or stdin for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    let rerr = |err| CliError::Read {
        path: path.to_path_buf(),
        err,
    };
    if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b).map_err(rerr)?;
        Ok(b)
    } else {
        std::fs::read(path).map_err(rerr)
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let b = read_input(path)?;
    serde_json::from_slice(&b).map_err(|err| CliError::Json {
        path: path.to_path_buf(),
        err,
    })
}

/// A list from a file holding either `{"KEY": [...]}` or the bare array.
fn read_list<T: DeserializeOwned>(path: &Path, key: &str) -> Result<Vec<T>, CliError> {
    let v: serde_json::Value = read_json(path)?;
    let list = match v {
        serde_json::Value::Object(mut o) if o.len() == 1 && o.contains_key(key) => {
            o.remove(key).unwrap_or_default()
        }
        other => other,
    };
    serde_json::from_value(list).map_err(|err| CliError::Json {
        path: path.to_path_buf(),
        err,
    })
}

pub(super) fn to_json(v: &impl Serialize) -> String {
    json(v)
}

fn json(v: &impl Serialize) -> String {
    // Serialising the types of this crate cannot fail (no maps with
    // non-string keys); an empty document would say so.
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn fw_rule(a: &super::AddFwRuleArgs) -> FirewallRule {
    FirewallRule {
        direction: match a.direction {
            DirArg::In => FwDirection::In,
            DirArg::Out => FwDirection::Out,
        },
        priority: a.priority,
        action: match a.action {
            FwActionArg::Allow => FwAction::Allow,
            FwActionArg::Deny => FwAction::Deny,
        },
        hosts: a.hosts.clone(),
        protocol: a.protocol,
        ports: a.ports.clone(),
    }
}

fn trace_request(a: &super::TraceArgs) -> TraceRequest {
    let direction = match a.direction {
        DirArg::In => Dir::In,
        DirArg::Out => Dir::Out,
    };
    let packet = match (a.proto, a.src, a.dst) {
        (Some(p), Some(src), Some(dst)) if a.frame.is_none() => Some(PacketDesc {
            protocol: match p {
                ProtoArg::Tcp => TraceProto::Tcp,
                ProtoArg::Udp => TraceProto::Udp,
                ProtoArg::Icmp => TraceProto::Icmp,
            },
            src,
            dst,
            src_port: a.sport,
            dst_port: a.dport,
            tcp_flags: a.flags.clone(),
            payload_len: a.len,
            outer_src: a.outer_src,
            external: a.external,
        }),
        _ => None,
    };
    TraceRequest {
        direction,
        packet,
        frame_hex: a.frame.clone(),
    }
}

/// Runs the command, appending what it prints to `out`.
pub fn run(cli: &Cli, out: &mut String) -> Result<(), CliError> {
    if let Command::Replay(a) = &cli.command {
        let mut o = ReplayOptions::new(a.state.clone(), a.inputs.clone(), a.out_dir.clone());
        o.underlay_ip = a.underlay_ip;
        o.underlay_mtu = a.underlay_mtu;
        o.verbose = a.verbose;
        o.accept_zero_udp6_checksum = a.accept_zero_udp6_checksum;
        if let Some(m) = a.underlay_mac {
            o.underlay_mac = m.0;
        }
        if let Some(m) = a.next_hop_mac {
            o.next_hop_mac = m.0;
        }
        let r = replay::run(&o)?;
        *out += &if cli.global.json {
            json(&r)
        } else {
            show::replay(&r)
        };
        return Ok(());
    }
    if cli.global.etcd.is_some() || matches!(cli.command, Command::FleetStatus) {
        #[cfg(feature = "fleet")]
        return super::fleet::run(cli, out);
        #[cfg(not(feature = "fleet"))]
        return Err(CliError::Fleet(
            "this sluiceadm was built without fleet mode: --etcd and fleet-status need \
             `cargo build --release -p api --features fleet` (which needs protoc)"
                .to_string(),
        ));
    }
    run_on(cli, &cli.global.url, token(cli), out)
}

/// Runs a verb against the API at `url` (a host's, or the staging host
/// `--etcd` runs verbs on).
pub(super) fn run_on(
    cli: &Cli,
    url: &str,
    tok: Result<String, String>,
    out: &mut String,
) -> Result<(), CliError> {
    let no_token = tok.as_ref().err().cloned();
    let c = Client::new(url, tok.ok());
    let api = |err| CliError::Api {
        err,
        no_token: no_token.clone(),
    };
    let j = cli.global.json;
    // Prints `v` as JSON or through `human`.
    let mut emit = |text: String| *out += &text;
    macro_rules! show {
        ($v:expr, $human:expr) => {{
            let v = $v.map_err(api)?;
            emit(if j { json(&v) } else { $human(&v) });
        }};
    }
    match &cli.command {
        Command::ListPorts => show!(c.list_ports(), |v: &Vec<_>| show::ports(v)),
        Command::CreateVnic(a) => {
            let config: VnicConfig = read_json(&a.config)?;
            let vhost = |socket: &std::path::PathBuf, mode| GuestSpec::VhostUser {
                socket: socket.clone(),
                mode,
                queues: a.queues.unwrap_or(1),
            };
            let guest = match (&a.tap, &a.vhost_user, &a.vhost_user_client) {
                (Some(t), _, _) => GuestSpec::Tap {
                    name: t.clone(),
                    netns: a.netns.clone(),
                },
                (None, Some(s), _) => vhost(s, VhostUserMode::Server),
                (None, None, Some(s)) => vhost(s, VhostUserMode::Client),
                (None, None, None) => GuestSpec::None,
            };
            show!(
                c.create_vnic(&CreateVnic { config, guest }),
                |p: &PortSummary| {
                    format!("created port '{}'\n", p.name) + &show::ports(std::slice::from_ref(p))
                }
            );
        }
        Command::DeleteVnic { port } => {
            c.delete_vnic(port).map_err(api)?;
            if !j {
                emit(format!("deleted port '{port}'\n"));
            }
        }
        Command::ListLayers { port } => show!(c.list_layers(port), show::list_layers),
        Command::DumpLayer { port, layer } => {
            show!(c.dump_layer(port, layer), |v| show::dump_layer(port, v))
        }
        Command::DumpUft { port } => show!(c.dump_uft(port), |v| show::dump_uft(port, v)),
        Command::ClearUft { port } => {
            c.clear_uft(port).map_err(api)?;
            if !j {
                emit(format!("cleared the flow tables of port '{port}'\n"));
            }
        }
        Command::DumpTcpFlows { port } => show!(c.dump_tcp_flows(port), show::tcp_flows),
        Command::ListFwRules { port } => {
            show!(c.list_fw_rules(port), |v: &Vec<_>| show::fw_rules(v))
        }
        Command::AddFwRule(a) => show!(c.add_fw_rule(&a.port, &fw_rule(a)), |v: &Vec<_>| {
            show::fw_rules(v)
        }),
        Command::RmFwRule { port, id } => {
            show!(c.rm_fw_rule(port, *id), |v: &Vec<_>| show::fw_rules(v))
        }
        Command::SetFwRules { port, file } => {
            let rules: Vec<FirewallRule> = read_list(file, "rules")?;
            show!(
                c.set_fw_rules(port, &FirewallRules { rules }),
                |v: &Vec<_>| show::fw_rules(v)
            )
        }
        Command::ListRoutes { port } => show!(c.list_routes(port), show::routes),
        Command::AddRouterEntry { port, dest, target } => {
            let r = vnic::router::RouteEntry {
                dest: *dest,
                target: target.clone(),
                class: vnic::router::RouteClass::Custom,
            };
            show!(c.add_router_entry(port, &r), show::routes)
        }
        Command::DelRouterEntry { port, dest } => {
            show!(c.del_router_entry(port, dest), show::routes)
        }
        Command::SetV2p(a) => {
            let mappings = match (&a.file, a.vni, a.ip, a.mac, a.host) {
                (Some(f), ..) => read_list(f, "mappings")?,
                (None, Some(vni), Some(ip), Some(guest_mac), Some(host)) => vec![V2pMapping {
                    vni: dataplane::Vni::new(vni).unwrap_or_default(),
                    ip,
                    guest_mac,
                    host,
                }],
                // clap requires all four without --file.
                _ => Vec::new(),
            };
            let n = mappings.len();
            show!(
                c.set_v2p(&V2pSet { mappings }),
                |r: &crate::api::Changed| {
                    format!("set {n} V2P mapping(s), {} changed\n", r.changed)
                }
            )
        }
        Command::ClearV2p { vni, ip } => {
            show!(c.clear_v2p(*vni, *ip), |r: &crate::api::Changed| {
                format!("cleared {} V2P mapping(s)\n", r.changed)
            })
        }
        Command::DumpV2p { vni } => show!(c.dump_v2p(*vni), |v: &Vec<_>| show::v2p(v)),
        Command::SetM2p {
            group,
            underlay,
            vni,
        } => {
            let mappings = vec![M2pMapping {
                vni: dataplane::Vni::new(*vni).unwrap_or_default(),
                group: *group,
                underlay: *underlay,
            }];
            show!(
                c.set_m2p(&M2pSet { mappings }),
                |r: &crate::api::Changed| { format!("set 1 M2P mapping, {} changed\n", r.changed) }
            )
        }
        Command::ClearM2p { group, vni } => {
            show!(c.clear_m2p(*vni, *group), |r: &crate::api::Changed| {
                format!("cleared {} M2P mapping(s)\n", r.changed)
            })
        }
        Command::DumpM2p { vni } => show!(c.dump_m2p(*vni), |v: &Vec<_>| show::m2p(v)),
        Command::McastSubscribe {
            port,
            group,
            sources,
        } => {
            let req = McastSubscribe {
                group: *group,
                sources: sources.clone(),
            };
            show!(
                c.mcast_subscribe(port, &req),
                |v: &Vec<_>| show::mcast_subs(v)
            )
        }
        Command::McastUnsubscribe { port, group } => {
            show!(
                c.mcast_unsubscribe(port, Some(*group)),
                |r: &crate::api::Changed| { format!("removed {} subscription(s)\n", r.changed) }
            )
        }
        Command::McastUnsubscribeAll { port } => {
            show!(
                c.mcast_unsubscribe(port, None),
                |r: &crate::api::Changed| { format!("removed {} subscription(s)\n", r.changed) }
            )
        }
        Command::DumpMcastSubs { port } => {
            show!(c.dump_mcast_subs(port.as_deref()), |v: &Vec<_>| {
                show::mcast_subs(v)
            })
        }
        Command::SetMcastFwd {
            group,
            next_hop,
            replication,
            vni,
        } => {
            let e = McastFwdEntry {
                vni: dataplane::Vni::new(*vni).unwrap_or_default(),
                group: *group,
                next_hop: *next_hop,
                replication: (*replication).into(),
            };
            show!(c.set_mcast_fwd(&e), |r: &crate::api::Changed| {
                format!("set 1 forwarding entry, {} changed\n", r.changed)
            })
        }
        Command::ClearMcastFwd {
            group,
            next_hop,
            vni,
        } => {
            show!(
                c.clear_mcast_fwd(*vni, *group, *next_hop),
                |r: &crate::api::Changed| {
                    format!("cleared {} forwarding entr(y/ies)\n", r.changed)
                }
            )
        }
        Command::DumpMcastFwd { vni } => {
            show!(c.dump_mcast_fwd(*vni), |v: &Vec<_>| show::mcast_fwd(v))
        }
        Command::SetV2b(a) => {
            let routes = match (&a.file, a.vni, a.prefix, &a.endpoints) {
                (Some(f), ..) => read_list(f, "routes")?,
                (None, Some(vni), Some(prefix), Some(endpoints)) => vec![V2bRoute {
                    vni: dataplane::Vni::new(vni).unwrap_or_default(),
                    prefix,
                    endpoints: endpoints.0.clone(),
                }],
                _ => Vec::new(),
            };
            show!(c.set_v2b(&V2bSet { routes }), |r: &crate::api::Changed| {
                format!("set {} V2B route(s)\n", r.changed)
            })
        }
        Command::ClearV2b { vni, prefix } => {
            show!(c.clear_v2b(*vni, *prefix), |r: &crate::api::Changed| {
                format!("cleared {} V2B route(s)\n", r.changed)
            })
        }
        Command::DumpV2b { vni } => show!(c.dump_v2b(*vni), |v: &Vec<_>| show::v2b(v)),
        Command::SetUnderlay { uplinks } => show!(
            c.set_underlay(&UnderlaySet {
                uplinks: uplinks.clone()
            }),
            |u: &UnderlayDoc| show::underlay(u)
        ),
        Command::DumpUnderlay => show!(c.dump_underlay(), |u: &UnderlayDoc| show::underlay(u)),
        Command::SetExternalIps(a) => {
            let external = ExternalIps {
                snat: a.snat.clone(),
                ephemeral: a.ephemeral.clone(),
                floating: a.floating.clone(),
            };
            show!(
                c.set_external_ips(&a.port, &SetExternalIps { external }),
                |cfg: &VnicConfig| show::external(&cfg.external)
            )
        }
        Command::AllowCidr { port, cidr, dir } => {
            let t = vnic::config::TransitIp {
                cidr: *cidr,
                dir: (*dir).into(),
            };
            show!(c.allow_cidr(port, &t), show::prefixes)
        }
        Command::RemoveCidr { port, cidr, dir } => {
            show!(c.remove_cidr(port, cidr, (*dir).into()), show::prefixes)
        }
        Command::AttachSubnet {
            port,
            cidr,
            external,
        } => {
            let a = AttachSubnet {
                cidr: *cidr,
                external: *external,
            };
            show!(c.attach_subnet(port, &a), show::prefixes)
        }
        Command::DetachSubnet { port, cidr } => {
            show!(c.detach_subnet(port, cidr), show::prefixes)
        }
        Command::SetRateLimit(a) => {
            let rate_limit = (!a.none).then(|| dataplane::RateLimit {
                packets_per_sec: a.pps.unwrap_or(0),
                bytes_per_sec: a.bps.unwrap_or(0),
                burst_packets: a.burst_packets,
                burst_bytes: a.burst_bytes,
            });
            show!(
                c.set_rate_limit(&a.port, &SetRateLimit { rate_limit }),
                |cfg: &VnicConfig| show::rate_limit(cfg.rate_limit.as_ref())
            )
        }
        Command::Stats { port: Some(p) } => show!(c.port_stats(p), show::port_stats),
        Command::Stats { port: None } => show!(c.stats(), show::host_stats),
        Command::Top(a) => {
            let o = super::top::TopOptions {
                interval: std::time::Duration::from_secs_f64(a.interval),
                once: a.once,
                json: j,
                flows: a.flows,
                sort: a.sort,
            };
            return super::top::run(&c, &o, out).map_err(|e| match e {
                CliError::Api { err, .. } => api(err),
                e => e,
            });
        }
        Command::Capture {
            port,
            out: file,
            packets,
            seconds,
        } => {
            let req = CaptureRequest {
                packets: *packets,
                seconds: *seconds,
            };
            let r = c.capture(port, &req).map_err(api)?;
            use base64::Engine as _;
            let pcap = base64::engine::general_purpose::STANDARD
                .decode(&r.pcap_base64)
                .map_err(|e| CliError::Capture(e.to_string()))?;
            std::fs::write(file, &pcap).map_err(|err| CliError::Write {
                path: file.clone(),
                err,
            })?;
            emit(if j {
                json(&serde_json::json!({ "packets": r.packets, "file": file }))
            } else {
                format!(
                    "captured {} frame(s) of port '{port}' to {}\n",
                    r.packets,
                    file.display()
                )
            });
        }
        Command::Trace(a) => show!(c.trace(&a.port, &trace_request(a)), show::trace),
        Command::DumpState => emit(json(&c.dump_state().map_err(api)?)),
        Command::MigrateOut(a) => emit(super::migrate::migrate_out(&c, a, j).map_err(api)?),
        Command::MigrateIn(a) => {
            let doc: serde_json::Value = read_json(&a.file)?;
            emit(super::migrate::migrate_in(&c, a, doc, j).map_err(api)?)
        }
        Command::Replay(_) | Command::FleetStatus => {}
    }
    Ok(())
}
