//! `migrate-out` and `migrate-in`: the steps of a port's live migration
//! (see `api/src/migration.rs`) driven from one host.

use super::{MigrateInArgs, MigrateOutArgs};
use crate::client::{Client, ClientError};
use crate::migration::{CutOver, ImportMigration, MigrationImported};
use crate::types::{GuestSpec, V2pMapping, V2pSet, VhostUserMode};
use serde::Serialize;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

/// What `migrate-out` did.
#[derive(Debug, Serialize)]
struct MigratedOut {
    port: String,
    target_underlay: Ipv6Addr,
    flows_exported: usize,
    flows_imported: usize,
    flows_refused: usize,
    /// Milliseconds from the cut-over on the source to the V2P mapping
    /// pointing at the target on both hosts: the control plane's part of
    /// the gap the guest sees.
    gap_ms: f64,
    cut_over_ms: f64,
    import_ms: f64,
    v2p_ms: f64,
    grace_secs: u64,
}

fn guest(
    tap: &Option<String>,
    netns: &Option<std::path::PathBuf>,
    vhost: &Option<std::path::PathBuf>,
) -> Option<GuestSpec> {
    match (tap, vhost) {
        (Some(t), _) => Some(GuestSpec::Tap {
            name: t.clone(),
            netns: netns.clone(),
        }),
        (None, Some(s)) => Some(GuestSpec::VhostUser {
            socket: s.clone(),
            mode: VhostUserMode::Server,
            queues: 1,
        }),
        (None, None) => None,
    }
}

fn ms(a: Instant, b: Instant) -> f64 {
    (b - a).as_secs_f64() * 1000.0
}

pub(super) fn migrate_out(
    src: &Client,
    a: &MigrateOutArgs,
    json: bool,
) -> Result<String, ClientError> {
    if a.abort {
        let st = src.abort_migration(&a.port)?;
        return Ok(if json {
            super::commands::to_json(&st)
        } else {
            format!(
                "aborted the cut-over of '{}': it forwards again ({} tunnel(s) had gone to the target)\n",
                a.port, st.forwarded
            )
        });
    }
    // clap requires both without --abort.
    let (Some(url), Some(target_underlay)) = (&a.to, a.target_underlay) else {
        return Ok(String::new());
    };
    let token = a.to_token.clone().or_else(|| {
        a.to_token_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| t.trim().to_string())
    });
    let dst = Client::new(url, token);
    let grace_secs = a.grace.unwrap_or(crate::migration::DEFAULT_GRACE_SECS);
    let t0 = Instant::now();
    let doc = src.cut_over(
        &a.port,
        &CutOver {
            target_underlay,
            grace_secs: Some(grace_secs),
        },
    )?;
    let t1 = Instant::now();
    let cfg = doc.port.config.clone();
    let flows_exported = doc.state.flows.len();
    let document = serde_json::to_value(&doc).map_err(|e| ClientError::Decode {
        url: src.base().to_string(),
        detail: e.to_string(),
    })?;
    let imported: MigrationImported = match dst.import_migration(
        &a.port,
        &ImportMigration {
            document,
            guest: guest(&a.tap, &a.netns, &a.vhost_user),
        },
    ) {
        Ok(r) => r,
        Err(e) => {
            // The source resumes: a refused import leaves the port where it was.
            let _ = src.abort_migration(&a.port);
            return Err(e);
        }
    };
    let t2 = Instant::now();
    let addrs = cfg
        .ipv4
        .iter()
        .map(|v| IpAddr::V4(v.addr))
        .chain(cfg.ipv6.iter().map(|v| IpAddr::V6(v.addr)));
    let set = V2pSet {
        mappings: addrs
            .map(|ip| V2pMapping {
                vni: cfg.vni,
                ip,
                guest_mac: cfg.guest_mac,
                host: target_underlay,
            })
            .collect(),
    };
    dst.set_v2p(&set)?;
    src.set_v2p(&set)?;
    let t3 = Instant::now();
    let r = MigratedOut {
        port: a.port.clone(),
        target_underlay,
        flows_exported,
        flows_imported: imported.flows_imported,
        flows_refused: imported.flows_refused,
        gap_ms: ms(t0, t3),
        cut_over_ms: ms(t0, t1),
        import_ms: ms(t1, t2),
        v2p_ms: ms(t2, t3),
        grace_secs,
    };
    Ok(if json {
        super::commands::to_json(&r)
    } else {
        format!(
            "migrated port '{}' to {} ({}): {} of {} flow(s) imported, {} refused\n\
             gap {:.1} ms (cut-over {:.1} ms, import {:.1} ms, V2P {:.1} ms); \
             the source forwards to the target for {} s\n",
            r.port,
            url,
            r.target_underlay,
            r.flows_imported,
            r.flows_exported,
            r.flows_refused,
            r.gap_ms,
            r.cut_over_ms,
            r.import_ms,
            r.v2p_ms,
            r.grace_secs
        )
    })
}

pub(super) fn migrate_in(
    c: &Client,
    a: &MigrateInArgs,
    document: serde_json::Value,
    json: bool,
) -> Result<String, ClientError> {
    let name = document
        .pointer("/port/config/name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    let r = c.import_migration(
        &name,
        &ImportMigration {
            document,
            guest: guest(&a.tap, &a.netns, &a.vhost_user),
        },
    )?;
    Ok(if json {
        super::commands::to_json(&r)
    } else {
        format!(
            "imported port '{}': {} flow(s) rebuilt, {} refused\n",
            r.port.name, r.flows_imported, r.flows_refused
        )
    })
}
