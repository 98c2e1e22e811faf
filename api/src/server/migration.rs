//! The steps of a port's live migration on a host (see `api/src/migration.rs`
//! for the document and the order of the steps).

use super::*;
use crate::migration::*;
use std::time::{Duration, Instant};

/// The longest grace period a cut-over may ask for, seconds.
const MAX_GRACE_SECS: u64 = 3600;

impl Sluice {
    /// The port's migration document; with `cut`, the port is cut over to
    /// that host in the same job on its worker, so no packet is processed
    /// between the state written down and the forwarding that follows.
    pub fn export_migration(
        &self,
        name: &str,
        cut: Option<CutOver>,
    ) -> Result<MigrationDoc, ApiError> {
        let grace = match &cut {
            Some(c) => {
                let g = c.grace_secs.unwrap_or(DEFAULT_GRACE_SECS);
                if g == 0 || g > MAX_GRACE_SECS {
                    return Err(ApiError::field(
                        "grace_secs",
                        format!("{g} is out of range 1..={MAX_GRACE_SECS}"),
                    ));
                }
                if c.target_underlay == self.host.underlay_ip {
                    return Err(ApiError::field(
                        "target_underlay",
                        format!("{} is this host's own address", c.target_underlay),
                    ));
                }
                Some(Duration::from_secs(g))
            }
            None => None,
        };
        let mut ports = lock(&self.ports);
        let Some(p) = ports.get(name).cloned() else {
            return Err(no_port(name));
        };
        let already = lock(&self.cutovers).contains_key(name);
        if cut.is_some() && already {
            return Err(ApiError::Conflict(format!(
                "port '{name}' is cut over already (abort with DELETE /ports/{name}/migration)"
            )));
        }
        let w = self.workers.owner(name).ok_or_else(|| no_port(name))?;
        let n = name.to_string();
        let to = cut.as_ref().map(|c| c.target_underlay);
        let state = self
            .workers
            .run_on(w, move |sw| {
                if let Some(t) = to {
                    sw.set_moved(&n, Some(t), Some(Box::new(Null)));
                }
                sw.port(&n).map(|v| v.port.export_state())
            })
            .map_err(worker_error)?
            .ok_or_else(|| no_port(name))?;
        let mut doc = MigrationDoc {
            version: MIGRATION_VERSION,
            source_underlay: self.host.underlay_ip,
            cut_over: cut.is_some() || already,
            port: p.clone(),
            state,
        };
        if let Some(g) = grace {
            // The device is the target's now: this host must neither
            // remove it when the port goes nor count it lost. The guest
            // spec is kept aside for an abort.
            if let Some(rec) = ports.get_mut(name) {
                rec.guest = GuestSpec::None;
            }
            let saved = self.record(&ports, || Change::Port {
                port: Box::new(ports[name].clone()),
            });
            if let Err(e) = saved {
                if let Some(rec) = ports.get_mut(name) {
                    rec.guest = p.guest.clone();
                }
                self.resume(name, &p.guest);
                return Err(e);
            }
            lock(&self.failed).remove(name);
            lock(&self.cutovers).insert(name.to_string(), (Instant::now() + g, p.guest.clone()));
        }
        if let Some(orig) = lock(&self.cutovers).get(name) {
            doc.port.guest = orig.1.clone();
        }
        Ok(doc)
    }

    /// Undoes a cut-over (the source resumes): forwarding again, and the
    /// guest device reopened by the guest retry (within 2 s) once the
    /// target has let it go.
    pub fn abort_migration(&self, name: &str) -> Result<MigrationStatus, ApiError> {
        let mut ports = lock(&self.ports);
        if !ports.contains_key(name) {
            return Err(no_port(name));
        }
        let status = self.migration_status(name)?;
        let Some((_, guest)) = lock(&self.cutovers).remove(name) else {
            return Err(ApiError::Conflict(format!(
                "port '{name}' is not cut over: there is nothing to abort"
            )));
        };
        if let Some(rec) = ports.get_mut(name) {
            rec.guest = guest.clone();
        }
        let saved = self.record(&ports, || Change::Port {
            port: Box::new(ports[name].clone()),
        });
        self.resume(name, &guest);
        saved.map(|()| status)
    }

    fn resume(&self, name: &str, guest: &GuestSpec) {
        let n = name.to_string();
        if let Some(w) = self.workers.owner(name) {
            let _ = self
                .workers
                .run_on(w, move |sw| sw.set_moved(&n, None, None));
        }
        if !matches!(guest, GuestSpec::None) {
            lock(&self.failed).insert(
                name.to_string(),
                "reopening the guest device after an aborted migration".into(),
            );
        }
    }

    pub fn migration_status(&self, name: &str) -> Result<MigrationStatus, ApiError> {
        let n = name.to_string();
        let w = self.workers.owner(name).ok_or_else(|| no_port(name))?;
        let m = self
            .workers
            .run_on(w, move |sw| sw.moved_stats(&n))
            .map_err(worker_error)?
            .ok_or_else(|| no_port(name))?;
        let left = lock(&self.cutovers)
            .get(name)
            .map(|(t, _)| t.saturating_duration_since(Instant::now()).as_secs());
        Ok(MigrationStatus {
            port: name.to_string(),
            target_underlay: m.to,
            grace_left_secs: left,
            forwarded: m.forwarded,
            forward_dropped: m.forward_dropped,
            guest_dropped: m.guest_dropped,
        })
    }

    /// Creates the port of a migration document and rebuilds its state.
    pub fn import_migration(
        &self,
        name: &str,
        req: ImportMigration,
    ) -> Result<MigrationImported, ApiError> {
        let version = req.document.get("version").and_then(|v| v.as_u64());
        if version != Some(u64::from(MIGRATION_VERSION)) {
            let v = version.map_or("none".to_string(), |v| v.to_string());
            return Err(ApiError::field(
                "document.version",
                format!("{v} is not this host's migration document version {MIGRATION_VERSION}"),
            ));
        }
        let doc: MigrationDoc = serde_json::from_value(req.document)
            .map_err(|e| ApiError::field("document", e.to_string()))?;
        if doc.port.config.name != name {
            return Err(ApiError::field(
                "document.port.config.name",
                format!(
                    "'{}' is not the port named in the path ('{name}')",
                    doc.port.config.name
                ),
            ));
        }
        let mut create = doc.port;
        if let Some(g) = req.guest {
            create.guest = g;
        }
        // The flows are rebuilt before the port is attached: the guest's
        // first packet on this host (iperf3 mid-stream) must find its
        // flow, not make a second one that the import would then refuse.
        let mut n = dataplane::port::ImportCount::default();
        let state = doc.state;
        let port = self.create_vnic_with(create, true, |v| n = v.port.import_state(&state))?;
        Ok(MigrationImported {
            port,
            flows_imported: n.imported,
            flows_refused: n.refused,
        })
    }

    /// Deletes the ports whose grace period after a cut-over has ended.
    pub fn end_grace_periods(&self) -> usize {
        let now = Instant::now();
        let due: Vec<String> = lock(&self.cutovers)
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        let mut n = 0;
        for name in due {
            lock(&self.cutovers).remove(&name);
            if self.delete_vnic(&name).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// The cut-over ports' counters, as Prometheus text (appended to
    /// `/metrics`): `sluice_port_migration_{forwarded,forward_dropped,
    /// guest_dropped}_total{port}`.
    pub fn migration_metrics(&self) -> String {
        use std::fmt::Write as _;
        let names: Vec<String> = lock(&self.cutovers).keys().cloned().collect();
        let rows: Vec<MigrationStatus> = names
            .iter()
            .filter_map(|n| self.migration_status(n).ok())
            .collect();
        let mut o = String::new();
        type Counter = fn(&MigrationStatus) -> u64;
        let fams: [(&str, &str, Counter); 3] = [
            (
                "forwarded",
                "Tunnels for a cut-over port's guest sent on to the migration's target.",
                |m| m.forwarded,
            ),
            (
                "forward_dropped",
                "Tunnels for a cut-over port's guest that could not be sent on.",
                |m| m.forward_dropped,
            ),
            (
                "guest_dropped",
                "Frames a cut-over port's guest still sent on the source (dropped).",
                |m| m.guest_dropped,
            ),
        ];
        for (name, help, get) in fams {
            let fam = format!("sluice_port_migration_{name}_total");
            let _ = writeln!(o, "# HELP {fam} {help}\n# TYPE {fam} counter");
            for m in &rows {
                let port = m.port.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(o, "{fam}{{port=\"{port}\"}} {}", get(m));
            }
        }
        o
    }
}
