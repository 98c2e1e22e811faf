//! The demo `sluiced` runs when it has no configuration: one simulated
//! host (the real control plane, workers and engine; in-memory devices,
//! so no root and no interface is needed) with a small VPC, a scripted
//! exchange that shows each part of the dataplane at work, and then the
//! API served on loopback for `sluiceadm` to explore.

use crate::cli::summary::frame as describe;
use crate::serve::SimHost;
use crate::types::{CreateVnic, GuestSpec, V2bRoute, V2bSet, V2pMapping, V2pSet};
use etherparse::PacketBuilder;
use serde_json::json;
use std::time::{Duration, Instant};
use vmm_net::backend::Wire;

pub const VNI: u32 = 7777;
const GW_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0xff, 0x01];
const REMOTE_HOST: &str = "fd00:99::b";
const BOUNDARY: &str = "fd00:99::100";

fn mac(last: u8) -> [u8; 6] {
    [0xa8, 0x40, 0x25, 0, 0, last]
}

fn vnic(name: &str, last: u8) -> CreateVnic {
    let first = 2048 + u16::from(last).saturating_sub(5) * 2048;
    let c = json!({
        "name": name,
        "guest_mac": vnic::config::MacAddr(mac(last)).to_string(),
        "gateway_mac": vnic::config::MacAddr(GW_MAC).to_string(),
        "vni": VNI,
        "ipv4": { "addr": format!("10.0.0.{last}"), "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" },
        "dhcp": { "dns4": ["10.0.0.2"], "domain": "demo.internal", "hostname": name },
        // Ports of one host never share SNAT ports: vm1 2048-4095, vm2 4096-6143.
        "external": { "snat": [{ "ip": "203.0.113.10", "first_port": first, "last_port": first + 2047 }] },
        "routes": [{ "dest": "0.0.0.0/0", "target": "internet_gateway", "class": "system" }],
        "firewall": [{ "direction": "in", "priority": 10, "action": "allow", "protocol": "icmp",
                       "hosts": { "subnet": "10.0.0.0/24" } }],
        "limits": { "flows": 65536 }
    });
    CreateVnic {
        // The literal above is a valid configuration.
        config: serde_json::from_value(c).unwrap_or_else(|e| panic!("demo config: {e}")),
        guest: GuestSpec::Tap {
            name: format!("tap-{name}"),
            netns: None,
        },
    }
}

/// Writes the demo's token where `sluiceadm --token-file` can read it:
/// a new private directory (mode 0700, a random name made with mkdir,
/// which never follows a link) in `${TMPDIR:-/tmp}`, the file in it
/// made with O_EXCL|O_NOFOLLOW, mode 0600. A fixed name in a shared
/// directory would let another user plant a link there for root to
/// write through, or read the token. Returns the file's path.
pub fn write_token(token: &str) -> Result<std::path::PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    let base = std::env::temp_dir();
    let mut dir = None;
    for _ in 0..16 {
        let rand = crate::serve::new_token().map_err(|e| e.to_string())?;
        let d = base.join(format!("sluice-demo-{}", &rand[..12]));
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => {
                dir = Some(d);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("making a directory in {}: {e}", base.display())),
        }
    }
    let dir = dir.ok_or_else(|| format!("no free directory name in {}", base.display()))?;
    // What mkdir made, checked rather than trusted (the umask may be odd).
    let m = std::fs::symlink_metadata(&dir).map_err(|e| e.to_string())?;
    let me = crate::serve::effective_uid().map_err(|e| e.to_string())?;
    if !m.is_dir() || m.uid() != me || m.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory of ours",
            dir.display()
        ));
    }
    let path = dir.join("token");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{token}\n").as_bytes()).map(|()| f))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let _ = f.flush();
    Ok(path)
}

/// Removes what [`write_token`] made.
pub fn remove_token(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    if let Some(d) = path.parent() {
        let _ = std::fs::remove_dir(d);
    }
}

/// Programs the demo topology: vm1 and vm2 here, vm3 on another host,
/// the boundary for the internet.
pub fn program(h: &SimHost) -> Result<(), String> {
    let s = &h.sluice;
    for (n, l) in [("vm1", 5), ("vm2", 6)] {
        s.create_vnic(vnic(n, l), true).map_err(|e| e.to_string())?;
    }
    let here = h.sluice.host().underlay_ip;
    let map = |last: u8, host: std::net::Ipv6Addr| V2pMapping {
        vni: dataplane::Vni::new(VNI).unwrap_or_default(),
        ip: format!("10.0.0.{last}")
            .parse()
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
        guest_mac: vnic::config::MacAddr(mac(last)),
        host,
    };
    let remote: std::net::Ipv6Addr = REMOTE_HOST.parse().map_err(|_| "address")?;
    s.set_v2p(
        V2pSet {
            mappings: vec![map(5, here), map(6, here), map(7, remote)],
        },
        true,
    )
    .map_err(|e| e.to_string())?;
    s.set_v2b(
        V2bSet {
            routes: vec![V2bRoute {
                vni: dataplane::Vni::new(VNI).unwrap_or_default(),
                prefix: "0.0.0.0/0".parse().map_err(|_| "prefix")?,
                endpoints: vec![BOUNDARY.parse().map_err(|_| "address")?],
            }],
        },
        true,
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Waits (at most 2 s) for a frame on a wire's guest or uplink side.
fn wait_frame(w: &Wire) -> Option<Vec<u8>> {
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if let Some(f) = w.take().into_iter().next() {
            return Some(f);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn arp_request(last: u8) -> Vec<u8> {
    let mut v = Vec::new();
    let arp = etherparse::ArpPacket::new(
        etherparse::ArpHardwareId::ETHERNET,
        etherparse::EtherType::IPV4,
        etherparse::ArpOperation::REQUEST,
        &mac(last),
        &[10, 0, 0, last],
        &[0; 6],
        &[10, 0, 0, 1],
    );
    if let Ok(a) = arp {
        let _ = PacketBuilder::ethernet2(mac(last), [0xff; 6])
            .arp(a)
            .write(&mut v);
    }
    v
}

fn dhcp_discover(last: u8) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[4..8].copy_from_slice(&0x5eed_0001u32.to_be_bytes());
    b[10] = 0x80; // broadcast
    b[28..34].copy_from_slice(&mac(last));
    b.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 55, 3, 1, 3, 6, 255]);
    let mut v = Vec::new();
    let _ = PacketBuilder::ethernet2(mac(last), [0xff; 6])
        .ipv4([0; 4], [255; 4], 64)
        .udp(68, 67)
        .write(&mut v, &b);
    v
}

fn ping(from: u8, to: [u8; 4], to_mac: [u8; 6], reply: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(mac(from), to_mac).ipv4([10, 0, 0, from], to, 64);
    let _ = if reply {
        b.icmpv4_echo_reply(7, 1).write(&mut v, b"sluice")
    } else {
        b.icmpv4_echo_request(7, 1).write(&mut v, b"sluice")
    };
    v
}

fn syn(from: u8, to: [u8; 4], port: u16) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = PacketBuilder::ethernet2(mac(from), GW_MAC)
        .ipv4([10, 0, 0, from], to, 64)
        .tcp(40000, port, 1, 64240)
        .syn()
        .write(&mut v, &[]);
    v
}

/// Runs the scripted exchange; returns the lines it printed and whether
/// every step saw what it should.
pub fn script(h: &SimHost) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut ok = true;
    let (Some(vm1), Some(vm2)) = (h.devices.wire("vm1"), h.devices.wire("vm2")) else {
        return (vec!["the demo ports are missing".into()], false);
    };
    let mut step = |what: &str, send: &Wire, frame: Vec<u8>, watch: &Wire, want: &str| {
        send.send(&frame);
        let got = wait_frame(watch);
        let seen = got.as_deref().map_or("nothing".to_string(), describe);
        let good = seen.contains(want);
        ok &= good;
        lines.push(format!(
            "{} {what}\n    sent: {}\n    got:  {seen}",
            if good { "ok  " } else { "FAIL" },
            describe(&frame)
        ));
    };
    step(
        "vm1 asks the gateway's MAC (answered by the gateway layer)",
        &vm1,
        arp_request(5),
        &vm1,
        "ARP reply",
    );
    step(
        "vm1 asks for an address (DHCPv4 hairpin)",
        &vm1,
        dhcp_discover(5),
        &vm1,
        // The gateway's DHCP server (port 67) to the client (port 68).
        ":67 > 255.255.255.255:68",
    );
    step(
        "vm1 pings vm2 on this host (local delivery, no wire)",
        &vm1,
        ping(5, [10, 0, 0, 6], GW_MAC, false),
        &vm2,
        "echo request",
    );
    step(
        "vm2 answers (stateful firewall: the reply is allowed)",
        &vm2,
        ping(6, [10, 0, 0, 5], GW_MAC, true),
        &vm1,
        "echo reply",
    );
    step(
        "vm1 opens TCP to vm3 on another host (Geneve to its host)",
        &vm1,
        syn(5, [10, 0, 0, 7], 22),
        &h.uplink,
        REMOTE_HOST,
    );
    step(
        "vm1 opens TCP to the internet (SNAT, Geneve to the boundary)",
        &vm1,
        syn(5, [93, 184, 216, 34], 443),
        &h.uplink,
        "203.0.113.10",
    );
    (lines, ok)
}
