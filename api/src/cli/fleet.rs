//! `sluiceadm --etcd`: the desired-state verbs on the fleet's store.
//!
//! A verb runs, unchanged, against a staging host: an in-process
//! `sluiced` (the real API, validation and model, simulated devices)
//! loaded with the part of the desired state the verb is about. What the
//! verb changed there is then written to etcd, each key guarded by the
//! revision it was read at. So a change the API would refuse is refused
//! here with the API's own message, before anything is written.

use super::commands::{run_on, CliError};
use super::table::Table;
use super::{Cli, Command};
use crate::fleet::admin::{FleetStatus, Loaded, Store};
use crate::serve::SimHost;
use crate::server::HostLimits;
use crate::types::{V2bSet, V2pSet};

/// Runs `cli`'s verb on the fleet's store.
pub fn run(cli: &Cli, out: &mut String) -> Result<(), CliError> {
    let fail = CliError::Fleet;
    let Some(etcd) = &cli.global.etcd else {
        return Err(fail(
            "fleet-status needs --etcd URL (the fleet's etcd client URLs)".into(),
        ));
    };
    let endpoints: Vec<String> = etcd
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    let port_verb = match &cli.command {
        Command::FleetStatus => {
            let mut store = Store::connect(&endpoints).map_err(fail)?;
            let st = store.fleet_status().map_err(fail)?;
            *out += &if cli.global.json {
                serde_json::to_string_pretty(&st).unwrap_or_default() + "\n"
            } else {
                fleet_status(&st)
            };
            return Ok(());
        }
        Command::SetV2p(_)
        | Command::ClearV2p { .. }
        | Command::DumpV2p { .. }
        | Command::SetV2b(_)
        | Command::ClearV2b { .. }
        | Command::DumpV2b { .. } => false,
        Command::ListPorts
        | Command::CreateVnic(_)
        | Command::DeleteVnic { .. }
        | Command::ListFwRules { .. }
        | Command::AddFwRule(_)
        | Command::RmFwRule { .. }
        | Command::SetFwRules { .. }
        | Command::ListRoutes { .. }
        | Command::AddRouterEntry { .. }
        | Command::DelRouterEntry { .. }
        | Command::SetExternalIps(_)
        | Command::SetRateLimit(_)
        | Command::DumpState => true,
        Command::SetM2p { .. }
        | Command::ClearM2p { .. }
        | Command::DumpM2p { .. }
        | Command::McastSubscribe { .. }
        | Command::McastUnsubscribe { .. }
        | Command::McastUnsubscribeAll { .. }
        | Command::DumpMcastSubs { .. }
        | Command::SetMcastFwd { .. }
        | Command::ClearMcastFwd { .. }
        | Command::DumpMcastFwd { .. } => {
            return Err(fail(
                "the fleet's store does not carry multicast state yet: \
                 run the multicast verbs against each host's API (--url), without --etcd"
                    .into(),
            ))
        }
        _ => {
            return Err(fail(
                "this verb reads or acts on a running host, not on desired state: \
                 run it against the host's API (--url), without --etcd"
                    .into(),
            ))
        }
    };
    let host = match (&cli.global.fleet_host, port_verb) {
        (Some(h), _) => {
            if let Some(p) = crate::fleet::keys::host_name_problem(h) {
                return Err(fail(format!("--fleet-host: {p}")));
            }
            Some(h.as_str())
        }
        (None, true) => {
            return Err(fail(
                "port verbs with --etcd need --fleet-host NAME (the fleet host the port is on)"
                    .into(),
            ))
        }
        (None, false) => None,
    };
    let mut store = Store::connect(&endpoints).map_err(fail)?;
    if let (Some(h), Command::CreateVnic(_)) = (host, &cli.command) {
        if !store.host_known(h).map_err(fail)? {
            return Err(fail(format!(
                "no host '{h}' has joined the fleet (no {}): start its sluiced with \
                 [fleet] host = \"{h}\" first",
                crate::fleet::keys::host_record(h)
            )));
        }
    }
    let mut loaded = store.load(host).map_err(fail)?;
    let staging = SimHost::start_with(None, 1, HostLimits::default()).map_err(fail)?;
    stage(&staging, &mut loaded);
    run_on(cli, &staging.url(), Ok(staging.token.clone()), out)?;
    let after = staging.sluice.state();
    drop(staging);
    let w = store.write(host, &loaded, &after).map_err(fail)?;
    if !cli.global.json && w.puts + w.deletes > 0 {
        *out += &format!(
            "etcd: {} key(s) written, {} deleted (revision {})\n",
            w.puts, w.deletes, w.revision
        );
    }
    Ok(())
}

/// Loads what was read into the staging host. What it refuses (a key
/// the hosts refuse too) is left out of `loaded`, so the write leaves
/// it alone rather than deleting it.
fn stage(staging: &SimHost, loaded: &mut Loaded) {
    let s = &staging.sluice;
    let mappings = loaded.v2p.values().map(|(m, _)| m.clone()).collect();
    if s.set_v2p(V2pSet { mappings }, false).is_err() {
        loaded.v2p.retain(|_, (m, _)| {
            s.set_v2p(
                V2pSet {
                    mappings: vec![m.clone()],
                },
                false,
            )
            .is_ok()
        });
    }
    loaded.v2b.retain(|_, (r, _)| {
        s.set_v2b(
            V2bSet {
                routes: vec![r.clone()],
            },
            false,
        )
        .is_ok()
    });
    loaded
        .ports
        .retain(|_, (p, _)| s.create_vnic(p.clone(), false).is_ok());
}

fn fleet_status(st: &FleetStatus) -> String {
    let mut t = Table::new(&[
        "HOST", "UNDERLAY", "ALIVE", "APPLIED", "LAG", "PORTS", "REFUSED",
    ]);
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for h in &st.hosts {
        t.row(vec![
            h.host.clone(),
            h.underlay_ip.map(|a| a.to_string()).unwrap_or_default(),
            if h.alive { "yes" } else { "no" }.into(),
            opt(h.applied_revision),
            opt(h.lag),
            match &h.status {
                Some(s) => format!("{}/{}", s.ports.len(), h.desired_ports),
                None => format!("-/{}", h.desired_ports),
            },
            h.status
                .as_ref()
                .map(|s| s.refused.len().to_string())
                .unwrap_or_default(),
        ]);
    }
    let mut s = format!(
        "revision {}, desired state at {}\n",
        st.revision, st.desired_revision
    );
    s += &t.render();
    for h in &st.hosts {
        for r in h.status.iter().flat_map(|s| &s.refused) {
            s += &format!("refused by {}: {}: {}\n", h.host, r.key, r.error);
        }
    }
    for r in &st.unknown_host_keys {
        s += &format!("applied by no host: {}: {}\n", r.key, r.error);
    }
    s
}
