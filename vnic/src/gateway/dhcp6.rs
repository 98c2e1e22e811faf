//! DHCPv6 (RFC 8415; DNS options RFC 3646): the gateway is the guest's
//! DHCPv6 server and hands out `guest_ip6` (IA_NA) plus DNS configuration.
//!
//! smoltcp has no DHCPv6 wire types, so this module carries a small parser
//! and builder of the client/server message format (RFC 8415 §8: msg-type,
//! 24-bit transaction-id, options as 16-bit code / 16-bit length / data),
//! bounded by the input and never panicking.
//!
//! # Replies
//!
//! | request | reply |
//! | --- | --- |
//! | SOLICIT | ADVERTISE (with PREFERENCE 255, so the client need not wait for others) |
//! | SOLICIT with RAPID_COMMIT | REPLY with RAPID_COMMIT (§18.3.1) |
//! | REQUEST, RENEW, REBIND | REPLY |
//! | CONFIRM | REPLY with STATUS_CODE Success if every address is `guest_ip6`, else NotOnLink (§18.3.3); none (`NoReply`) if it lists no address |
//! | INFORMATION-REQUEST | REPLY with DNS servers and domain list only |
//! | RELEASE, DECLINE | REPLY with STATUS_CODE Success (§18.3.7, §18.3.8); the address stays the vNIC's |
//!
//! Every reply echoes the transaction id and CLIENTID and carries SERVERID
//! = DUID-LL (type 3, hardware type 1) of `gateway_mac`, DNS_SERVERS (the
//! first 16 of `dns6`, if any) and DOMAIN_LIST (`domain`, if it encodes).
//! The client's first IA_NA gets IAADDR `guest_ip6` with preferred = valid
//! = `lease_secs`, T1 = lease/2 and T2 = lease·4/5 (RFC 8415 §21.4's
//! recommended 0.5 and 0.8; both infinite for an infinite lease). In a
//! REQUEST/RENEW/REBIND, other addresses the client lists in that IA come
//! back with lifetimes 0 so it stops using them (§18.3.4, §18.3.5); further
//! IA_NAs get STATUS_CODE NoAddrsAvail, as does the message if it has no
//! IA_NA (IA_TA and IA_PD are not served).
//!
//! Replies go from the gateway's link-local address, port 547, to the
//! client's source address, port 546, at the guest's MAC, hop limit 64.

use std::net::Ipv6Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{EthernetProtocol, IpAddress, IpProtocol, UdpPacket, UdpRepr};

use super::{
    build_ipv6, ethernet, from_guest, ipv6, is_unicast6, multicast_mac6, GatewayConfig, Refusal,
    Reply, REPLY_HOP_LIMIT,
};

/// Port servers listen on.
pub const SERVER_PORT: u16 = 547;
/// Port clients listen on.
pub const CLIENT_PORT: u16 = 546;
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
pub const ALL_DHCP_RELAY_AGENTS_AND_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// Message types (RFC 8415 §7.3).
pub mod msg {
    pub const SOLICIT: u8 = 1;
    pub const ADVERTISE: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const CONFIRM: u8 = 4;
    pub const RENEW: u8 = 5;
    pub const REBIND: u8 = 6;
    pub const REPLY: u8 = 7;
    pub const RELEASE: u8 = 8;
    pub const DECLINE: u8 = 9;
    pub const RECONFIGURE: u8 = 10;
    pub const INFORMATION_REQUEST: u8 = 11;
    pub const RELAY_FORW: u8 = 12;
    pub const RELAY_REPL: u8 = 13;
}

/// Option codes (RFC 8415 §21, RFC 3646).
pub mod opt {
    pub const CLIENTID: u16 = 1;
    pub const SERVERID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IA_TA: u16 = 4;
    pub const IAADDR: u16 = 5;
    pub const ORO: u16 = 6;
    pub const PREFERENCE: u16 = 7;
    pub const ELAPSED_TIME: u16 = 8;
    pub const STATUS_CODE: u16 = 13;
    pub const RAPID_COMMIT: u16 = 14;
    pub const DNS_SERVERS: u16 = 23;
    pub const DOMAIN_LIST: u16 = 24;
    pub const IA_PD: u16 = 25;
}

/// Status codes (RFC 8415 §21.13).
pub mod status {
    pub const SUCCESS: u16 = 0;
    pub const NO_ADDRS_AVAIL: u16 = 2;
    pub const NOT_ON_LINK: u16 = 4;
}

/// At most this many IA_NAs of a message are looked at (more are ignored).
const MAX_IAS: usize = 8;
/// At most this many IAADDRs of an IA_NA are looked at.
const MAX_ADDRS: usize = 8;
/// At most this many DNS servers are sent.
const MAX_DNS: usize = 16;
/// A DUID is at most 128 octets after its 2-octet type (RFC 8415 §11.1).
const MAX_DUID: usize = 130;

/// One option: its code and data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dhcp6Option<'a> {
    pub code: u16,
    pub data: &'a [u8],
}

/// Iterates over a sequence of options, yielding `Err(Malformed)` (once,
/// then ending) if one overruns the buffer.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Options<'a> {
    /// The options encoded in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Options { rest: bytes }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<Dhcp6Option<'a>, Refusal>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let (head, rest) = self.rest.split_first_chunk::<4>()?;
            let [c0, c1, l0, l1] = *head;
            let len = usize::from(u16::from_be_bytes([l0, l1]));
            let data = rest.get(..len)?;
            let after = rest.get(len..)?;
            Some((u16::from_be_bytes([c0, c1]), data, after))
        })();
        match parsed {
            Some((code, data, after)) => {
                self.rest = after;
                Some(Ok(Dhcp6Option { code, data }))
            }
            None => {
                self.rest = &[];
                Some(Err(Refusal::Malformed))
            }
        }
    }
}

/// A client/server message (RFC 8415 §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub msg_type: u8,
    pub transaction_id: [u8; 3],
    /// The encoded options, see [`Message::options`].
    pub options: &'a [u8],
}

impl<'a> Message<'a> {
    /// Splits a message into type, transaction id and options; `Malformed`
    /// if shorter than 4 octets or if an option overruns the message.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Refusal> {
        let (&[msg_type, x0, x1, x2], options) =
            bytes.split_first_chunk::<4>().ok_or(Refusal::Malformed)?;
        let message = Message {
            msg_type,
            transaction_id: [x0, x1, x2],
            options,
        };
        message.options().try_for_each(|o| o.map(drop))?;
        Ok(message)
    }

    /// The options, in order.
    pub fn options(&self) -> Options<'a> {
        Options::new(self.options)
    }
}

/// Builds a message: header, then options in the order added.
#[derive(Clone, Debug)]
pub struct MessageBuilder {
    buf: Vec<u8>,
}

impl MessageBuilder {
    /// A message of `msg_type` with `transaction_id` and no options yet.
    pub fn new(msg_type: u8, transaction_id: [u8; 3]) -> Self {
        let [x0, x1, x2] = transaction_id;
        MessageBuilder {
            buf: vec![msg_type, x0, x1, x2],
        }
    }

    /// Appends an option; `Unsupported` if `data` exceeds 65535 octets.
    pub fn option(&mut self, code: u16, data: &[u8]) -> Result<(), Refusal> {
        put_option(&mut self.buf, code, data)
    }

    /// The encoded message.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

fn put_option(buf: &mut Vec<u8>, code: u16, data: &[u8]) -> Result<(), Refusal> {
    let len = u16::try_from(data.len()).map_err(|_| Refusal::Unsupported)?;
    buf.extend_from_slice(&code.to_be_bytes());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(data);
    Ok(())
}

/// The gateway's server identifier: DUID-LL (RFC 8415 §11.4), type 3,
/// hardware type 1 (Ethernet), then `gateway_mac`.
pub fn server_duid(cfg: &GatewayConfig) -> [u8; 10] {
    let [a, b, c, d, e, f] = cfg.gateway_mac;
    [0, 3, 0, 1, a, b, c, d, e, f]
}

/// Encodes a domain as an uncompressed DNS name (RFC 1035 §3.1, as
/// RFC 8415 §10 requires): labels of 1–63 octets, 255 octets at most
/// including the final root label. A trailing dot is allowed. None if the
/// name does not fit those rules.
pub fn encode_domain(name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))?;
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

/// What the gateway reads from a client message.
struct Request<'a> {
    msg_type: u8,
    transaction_id: [u8; 3],
    client_id: Option<&'a [u8]>,
    server_id: Option<&'a [u8]>,
    rapid_commit: bool,
    ia_na: Vec<IaNa>,
    /// Any IA option (IA_NA, IA_TA, IA_PD) present.
    any_ia: bool,
}

struct IaNa {
    iaid: [u8; 4],
    addrs: Vec<Ipv6Addr>,
}

impl<'a> Request<'a> {
    /// `Malformed` for an overrunning option, a duplicated or mis-sized
    /// CLIENTID/SERVERID, a RAPID_COMMIT with data, an IA_NA shorter than
    /// 12 octets or an IAADDR shorter than 24.
    fn parse(message: &Message<'a>) -> Result<Self, Refusal> {
        let mut req = Request {
            msg_type: message.msg_type,
            transaction_id: message.transaction_id,
            client_id: None,
            server_id: None,
            rapid_commit: false,
            ia_na: Vec::new(),
            any_ia: false,
        };
        for option in message.options() {
            let Dhcp6Option { code, data } = option?;
            match code {
                opt::CLIENTID | opt::SERVERID => {
                    let slot = if code == opt::CLIENTID {
                        &mut req.client_id
                    } else {
                        &mut req.server_id
                    };
                    if slot.is_some() || !(3..=MAX_DUID).contains(&data.len()) {
                        return Err(Refusal::Malformed);
                    }
                    *slot = Some(data);
                }
                opt::RAPID_COMMIT if data.is_empty() => req.rapid_commit = true,
                opt::RAPID_COMMIT => return Err(Refusal::Malformed),
                opt::IA_NA => {
                    req.any_ia = true;
                    let ia = parse_ia_na(data)?;
                    if req.ia_na.len() < MAX_IAS {
                        req.ia_na.push(ia);
                    }
                }
                opt::IA_TA | opt::IA_PD => req.any_ia = true,
                _ => {}
            }
        }
        Ok(req)
    }

    /// Every address the client lists in its IA_NAs.
    fn addresses(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.ia_na.iter().flat_map(|ia| ia.addrs.iter().copied())
    }
}

/// IA_NA (RFC 8415 §21.4): IAID, T1, T2, then options (IAADDR §21.6:
/// address, preferred and valid lifetimes, then options).
fn parse_ia_na(data: &[u8]) -> Result<IaNa, Refusal> {
    let (head, options) = data.split_first_chunk::<12>().ok_or(Refusal::Malformed)?;
    let [i0, i1, i2, i3, ..] = *head;
    let mut ia = IaNa {
        iaid: [i0, i1, i2, i3],
        addrs: Vec::new(),
    };
    for option in Options::new(options) {
        let option = option?;
        if option.code == opt::IAADDR {
            let (addr, _) = option
                .data
                .split_first_chunk::<16>()
                .ok_or(Refusal::Malformed)?;
            if option.data.len() < 24 {
                return Err(Refusal::Malformed);
            }
            if ia.addrs.len() < MAX_ADDRS {
                ia.addrs.push(Ipv6Addr::from(*addr));
            }
        }
    }
    Ok(ia)
}

/// Answers the guest's DHCPv6 message; see the module documentation for
/// what is answered with what.
///
/// Refusals:
/// - `Malformed`: truncated or inconsistent Ethernet/IPv6/UDP, a message
///   shorter than 4 octets, an option overrunning its container, a bad
///   CLIENTID/SERVERID/RAPID_COMMIT/IA_NA/IAADDR (see above), or a message
///   breaking RFC 8415 §16's rules: SOLICIT, REQUEST, RENEW, REBIND,
///   CONFIRM, RELEASE, DECLINE without CLIENTID; REQUEST, RENEW, RELEASE,
///   DECLINE without SERVERID; SOLICIT, REBIND, CONFIRM with one; an
///   INFORMATION-REQUEST with an IA option.
/// - `NotForGateway`: not IPv6/UDP to port 547; not sent to
///   ff02::1:2 or a gateway address (at the matching multicast MAC or
///   `gateway_mac`); a server or relay-reply message (ADVERTISE, REPLY,
///   RECONFIGURE); a SERVERID that is not the gateway's.
/// - `Unsupported`: a VLAN tag, IPv6 extension headers, RELAY-FORW, an
///   unknown message type.
/// - `WrongAddress`: not from `guest_mac`, or from `::` or a multicast
///   address.
/// - `NoAddress`: SOLICIT, REQUEST, RENEW, REBIND or CONFIRM while the
///   guest has no IPv6 address.
/// - `NoReply`: a CONFIRM listing no address.
pub fn reply(cfg: &GatewayConfig, frame: &[u8]) -> Reply {
    let eth = ethernet(frame, EthernetProtocol::Ipv6)?;
    let (ip, payload) = ipv6(&eth, IpProtocol::Udp)?;
    let udp = UdpPacket::new_checked(payload).map_err(|_| Refusal::Malformed)?;
    if udp.dst_port() != SERVER_PORT {
        return Err(Refusal::NotForGateway);
    }
    let dst = ip.dst_addr;
    let eth_dst = eth.dst_addr().0;
    if !(dst == ALL_DHCP_RELAY_AGENTS_AND_SERVERS || cfg.is_gateway_ip6(dst))
        || !(eth_dst == cfg.gateway_mac || (dst.is_multicast() && eth_dst == multicast_mac6(dst)))
    {
        return Err(Refusal::NotForGateway);
    }
    let message = Message::parse(udp.payload())?;
    match message.msg_type {
        msg::ADVERTISE | msg::REPLY | msg::RECONFIGURE | msg::RELAY_REPL => {
            return Err(Refusal::NotForGateway)
        }
        msg::SOLICIT
        | msg::REQUEST
        | msg::CONFIRM
        | msg::RENEW
        | msg::REBIND
        | msg::RELEASE
        | msg::DECLINE
        | msg::INFORMATION_REQUEST => {}
        _ => return Err(Refusal::Unsupported),
    }
    let req = Request::parse(&message)?;
    from_guest(cfg, &eth)?;
    if !is_unicast6(ip.src_addr) {
        return Err(Refusal::WrongAddress);
    }
    let duid = server_duid(cfg);
    check_identifiers(&req, &duid)?;
    let answer = build_message(cfg, &req, &duid)?;
    let (src, dst) = (cfg.gateway_ll6(), ip.src_addr);
    let udp = UdpRepr {
        src_port: SERVER_PORT,
        dst_port: CLIENT_PORT,
    };
    build_ipv6(
        cfg.gateway_mac,
        eth.src_addr().0,
        src,
        dst,
        IpProtocol::Udp,
        REPLY_HOP_LIMIT,
        udp.header_len() + answer.len(),
        |buf| {
            udp.emit(
                &mut UdpPacket::new_unchecked(buf),
                &IpAddress::Ipv6(src),
                &IpAddress::Ipv6(dst),
                answer.len(),
                |payload| {
                    if let Some(out) = payload.get_mut(..answer.len()) {
                        out.copy_from_slice(&answer);
                    }
                },
                &ChecksumCapabilities::default(),
            )
        },
    )
}

/// RFC 8415 §16: which messages must and must not carry CLIENTID and
/// SERVERID, and discarding those for another server.
fn check_identifiers(req: &Request<'_>, duid: &[u8]) -> Result<(), Refusal> {
    let needs_client = req.msg_type != msg::INFORMATION_REQUEST;
    let (needs_server, forbids_server) = match req.msg_type {
        msg::REQUEST | msg::RENEW | msg::RELEASE | msg::DECLINE => (true, false),
        msg::SOLICIT | msg::REBIND | msg::CONFIRM => (false, true),
        _ => (false, false),
    };
    if (needs_client && req.client_id.is_none())
        || (needs_server && req.server_id.is_none())
        || (forbids_server && req.server_id.is_some())
        || (req.msg_type == msg::INFORMATION_REQUEST && req.any_ia)
    {
        return Err(Refusal::Malformed);
    }
    if req.server_id.is_some_and(|id| id != duid) {
        return Err(Refusal::NotForGateway);
    }
    Ok(())
}

/// Builds the ADVERTISE or REPLY for a validated client message.
fn build_message(cfg: &GatewayConfig, req: &Request<'_>, duid: &[u8]) -> Result<Vec<u8>, Refusal> {
    let assigns = matches!(
        req.msg_type,
        msg::SOLICIT | msg::REQUEST | msg::RENEW | msg::REBIND
    );
    let guest = if assigns || req.msg_type == msg::CONFIRM {
        Some(cfg.guest_ip6.ok_or(Refusal::NoAddress)?)
    } else {
        None
    };
    let advertise = req.msg_type == msg::SOLICIT && !req.rapid_commit;
    let reply_type = if advertise {
        msg::ADVERTISE
    } else {
        msg::REPLY
    };

    let mut out = MessageBuilder::new(reply_type, req.transaction_id);
    if let Some(id) = req.client_id {
        out.option(opt::CLIENTID, id)?;
    }
    out.option(opt::SERVERID, duid)?;
    if let (true, Some(guest)) = (assigns, guest) {
        // Stale addresses are only withdrawn where the client holds them.
        let withdraw = req.msg_type != msg::SOLICIT;
        ia_options(&mut out, cfg, req, guest, withdraw)?;
        if req.msg_type == msg::SOLICIT && req.rapid_commit {
            out.option(opt::RAPID_COMMIT, &[])?;
        }
        if advertise {
            out.option(opt::PREFERENCE, &[255])?;
        }
    }
    if matches!(req.msg_type, msg::RELEASE | msg::DECLINE) {
        // RFC 8415 §18.3.7, §18.3.8: acknowledge with Success. The address
        // is the vNIC's for its life: nothing is released or blocked, and
        // the client's next SOLICIT gets the same one.
        out.option(opt::STATUS_CODE, &status_data(status::SUCCESS, ""))?;
    }
    if let (msg::CONFIRM, Some(guest)) = (req.msg_type, guest) {
        let mut addrs = req.addresses().peekable();
        if addrs.peek().is_none() {
            return Err(Refusal::NoReply);
        }
        let code = if addrs.all(|a| a == guest) {
            status::SUCCESS
        } else {
            status::NOT_ON_LINK
        };
        out.option(opt::STATUS_CODE, &status_data(code, ""))?;
    }
    let dns: Vec<u8> = cfg
        .dns6
        .iter()
        .take(MAX_DNS)
        .flat_map(|a| a.octets())
        .collect();
    if !dns.is_empty() {
        out.option(opt::DNS_SERVERS, &dns)?;
    }
    if let Some(domain) = cfg.domain.as_deref().and_then(encode_domain) {
        out.option(opt::DOMAIN_LIST, &domain)?;
    }
    Ok(out.finish())
}

/// The IA_NA options of an ADVERTISE/REPLY (see the module documentation).
fn ia_options(
    out: &mut MessageBuilder,
    cfg: &GatewayConfig,
    req: &Request<'_>,
    guest: Ipv6Addr,
    withdraw: bool,
) -> Result<(), Refusal> {
    let Some((first, others)) = req.ia_na.split_first() else {
        return out.option(
            opt::STATUS_CODE,
            &status_data(status::NO_ADDRS_AVAIL, "only IA_NA is served"),
        );
    };
    let lease = cfg.lease_secs;
    let (t1, t2) = if lease == u32::MAX {
        (u32::MAX, u32::MAX)
    } else {
        let t2 = u32::try_from(u64::from(lease) * 4 / 5).unwrap_or(u32::MAX);
        (lease / 2, t2)
    };
    let mut ia = ia_header(first.iaid, t1, t2);
    put_option(&mut ia, opt::IAADDR, &iaaddr(guest, lease, lease))?;
    if withdraw {
        for stale in first.addrs.iter().filter(|&&a| a != guest) {
            put_option(&mut ia, opt::IAADDR, &iaaddr(*stale, 0, 0))?;
        }
    }
    out.option(opt::IA_NA, &ia)?;
    for other in others {
        let mut ia = ia_header(other.iaid, 0, 0);
        put_option(
            &mut ia,
            opt::STATUS_CODE,
            &status_data(status::NO_ADDRS_AVAIL, "one address per client"),
        )?;
        out.option(opt::IA_NA, &ia)?;
    }
    Ok(())
}

fn ia_header(iaid: [u8; 4], t1: u32, t2: u32) -> Vec<u8> {
    let mut ia = Vec::with_capacity(12 + 28);
    ia.extend_from_slice(&iaid);
    ia.extend_from_slice(&t1.to_be_bytes());
    ia.extend_from_slice(&t2.to_be_bytes());
    ia
}

fn iaaddr(addr: Ipv6Addr, preferred: u32, valid: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity(24);
    data.extend_from_slice(&addr.octets());
    data.extend_from_slice(&preferred.to_be_bytes());
    data.extend_from_slice(&valid.to_be_bytes());
    data
}

fn status_data(code: u16, message: &str) -> Vec<u8> {
    let mut data = code.to_be_bytes().to_vec();
    data.extend_from_slice(message.as_bytes());
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testutil::{self, cfg, guest_ll6, GATEWAY_MAC, GUEST_MAC, OTHER_MAC};
    use etherparse::{NetSlice, PacketBuilder, TransportSlice};

    const XID: [u8; 3] = [0xab, 0xcd, 0xef];
    const IAID: [u8; 4] = [0, 0, 0, 7];

    // Requests are written out by hand, octet by octet, not with the
    // builder under test.

    fn o(code: u16, data: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn client_duid() -> Vec<u8> {
        // DUID-LLT: type 1, hardware 1, time, MAC.
        let mut d = vec![0, 1, 0, 1, 0x2a, 0x3b, 0x4c, 0x5d];
        d.extend_from_slice(&GUEST_MAC);
        d
    }

    fn ia_na(iaid: [u8; 4], addrs: &[Ipv6Addr]) -> Vec<u8> {
        let mut d = iaid.to_vec();
        d.extend_from_slice(&[0; 8]); // T1, T2 0: no preference
        for a in addrs {
            let mut ad = a.octets().to_vec();
            ad.extend_from_slice(&[0; 8]);
            d.extend(o(opt::IAADDR, &ad));
        }
        o(opt::IA_NA, &d)
    }

    fn message(msg_type: u8, options: &[Vec<u8>]) -> Vec<u8> {
        let mut m = vec![msg_type];
        m.extend_from_slice(&XID);
        for option in options {
            m.extend_from_slice(option);
        }
        m
    }

    fn frame_from(src_mac: [u8; 6], src: Ipv6Addr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let dst = ALL_DHCP_RELAY_AGENTS_AND_SERVERS;
        let b = PacketBuilder::ethernet2(src_mac, multicast_mac6(dst))
            .ipv6(src.octets(), dst.octets(), 1)
            .udp(CLIENT_PORT, dst_port);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        frame_from(GUEST_MAC, guest_ll6(), SERVER_PORT, payload)
    }

    fn common() -> Vec<Vec<u8>> {
        vec![
            o(opt::CLIENTID, &client_duid()),
            o(opt::ELAPSED_TIME, &[0, 0]),
            o(opt::ORO, &[0, 23, 0, 24]),
        ]
    }

    fn solicit(rapid: bool) -> Vec<u8> {
        let mut opts = common();
        opts.push(ia_na(IAID, &[]));
        if rapid {
            opts.push(o(opt::RAPID_COMMIT, &[]));
        }
        frame(&message(msg::SOLICIT, &opts))
    }

    fn with_server(msg_type: u8, addrs: &[Ipv6Addr]) -> Vec<u8> {
        let mut opts = common();
        opts.push(o(opt::SERVERID, &server_duid(&cfg())));
        opts.push(ia_na(IAID, addrs));
        frame(&message(msg_type, &opts))
    }

    fn without_server(msg_type: u8, addrs: &[Ipv6Addr]) -> Vec<u8> {
        let mut opts = common();
        opts.push(ia_na(IAID, addrs));
        frame(&message(msg_type, &opts))
    }

    /// A parsed reply: options walked by a separate, test-only reader.
    struct Seen {
        msg_type: u8,
        xid: [u8; 3],
        options: Vec<(u16, Vec<u8>)>,
    }

    fn walk(mut b: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let code = u16::from_be_bytes([b[0], b[1]]);
            let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
            out.push((code, b[4..4 + len].to_vec()));
            b = &b[4 + len..];
        }
        out
    }

    impl Seen {
        fn all(&self, code: u16) -> Vec<&[u8]> {
            self.options
                .iter()
                .filter(|(c, _)| *c == code)
                .map(|(_, d)| &d[..])
                .collect()
        }
        fn one(&self, code: u16) -> &[u8] {
            let all = self.all(code);
            assert_eq!(all.len(), 1, "option {code} once");
            all[0]
        }
        fn codes(&self) -> Vec<u16> {
            self.options.iter().map(|(c, _)| *c).collect()
        }
    }

    /// Checks the frame (etherparse: IPv6/UDP, checksum, addresses, ports)
    /// and reads the DHCPv6 message.
    fn seen(reply: &[u8]) -> Seen {
        let c = cfg();
        let sliced = testutil::check_ipv6(reply, 64);
        assert_eq!(testutil::macs(&sliced), (GATEWAY_MAC, GUEST_MAC));
        let Some(NetSlice::Ipv6(ip)) = &sliced.net else {
            panic!()
        };
        assert_eq!(ip.header().source_addr(), c.gateway_ll6());
        assert_eq!(ip.header().destination_addr(), guest_ll6());
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            panic!()
        };
        assert_eq!((udp.source_port(), udp.destination_port()), (547, 546));
        // smoltcp agrees on the UDP checksum.
        let eth = smoltcp::wire::EthernetFrame::new_checked(reply).unwrap();
        let ip6 = smoltcp::wire::Ipv6Packet::new_checked(eth.payload()).unwrap();
        let u = UdpPacket::new_checked(ip6.payload()).unwrap();
        assert!(u.verify_checksum(
            &IpAddress::Ipv6(ip6.src_addr()),
            &IpAddress::Ipv6(ip6.dst_addr())
        ));
        let p = udp.payload();
        // The module's own parser accepts its output too.
        let m = Message::parse(p).unwrap();
        assert_eq!(m.options().count(), walk(&p[4..]).len());
        Seen {
            msg_type: p[0],
            xid: [p[1], p[2], p[3]],
            options: walk(&p[4..]),
        }
    }

    /// Checks the IA_NA granting the guest's address (RFC 8415 §21.4,
    /// §21.6) and returns the withdrawn addresses.
    fn assert_granted(s: &Seen) -> Vec<Ipv6Addr> {
        let c = cfg();
        let ia = s.one(opt::IA_NA);
        assert_eq!(ia[..4], IAID);
        assert_eq!(ia[4..8], 43_200u32.to_be_bytes(), "T1 = lease/2");
        assert_eq!(ia[8..12], 69_120u32.to_be_bytes(), "T2 = lease*0.8");
        let inner = walk(&ia[12..]);
        assert_eq!(inner[0].0, opt::IAADDR);
        assert_eq!(inner[0].1[..16], c.guest_ip6.unwrap().octets());
        assert_eq!(inner[0].1[16..20], 86_400u32.to_be_bytes(), "preferred");
        assert_eq!(inner[0].1[20..24], 86_400u32.to_be_bytes(), "valid");
        inner[1..]
            .iter()
            .map(|(code, d)| {
                assert_eq!(*code, opt::IAADDR);
                assert_eq!(d[16..24], [0; 8], "withdrawn: lifetimes 0");
                Ipv6Addr::from(<[u8; 16]>::try_from(&d[..16]).unwrap())
            })
            .collect()
    }

    /// RFC 8415 §21.2, §21.3, RFC 3646 §3–4: CLIENTID echoed, SERVERID =
    /// DUID-LL of the gateway MAC, DNS servers, domain list.
    fn assert_ids_and_dns(s: &Seen) {
        assert_eq!(s.xid, XID);
        assert_eq!(s.one(opt::CLIENTID), client_duid());
        assert_eq!(
            s.one(opt::SERVERID),
            [0, 3, 0, 1, 0xa8, 0x40, 0x25, 0xff, 0x77, 0x77]
        );
        let mut dns = Vec::new();
        for a in cfg().dns6 {
            dns.extend_from_slice(&a.octets());
        }
        assert_eq!(s.one(opt::DNS_SERVERS), dns);
        assert_eq!(s.one(opt::DOMAIN_LIST), b"\x03vpc\x07example\x03com\x00");
    }

    /// RFC 8415 §18.3.1: SOLICIT → ADVERTISE with the IA_NA, the server's
    /// preference (§21.8; 255 = take it now).
    #[test]
    fn solicit_gets_advertise() {
        let s = seen(&reply(&cfg(), &solicit(false)).unwrap());
        assert_eq!(s.msg_type, msg::ADVERTISE);
        assert_ids_and_dns(&s);
        assert!(assert_granted(&s).is_empty());
        assert_eq!(s.one(opt::PREFERENCE), [255]);
        assert!(s.all(opt::RAPID_COMMIT).is_empty());
    }

    /// RFC 8415 §18.3.1, §21.14: SOLICIT with RAPID_COMMIT → REPLY with
    /// RAPID_COMMIT.
    #[test]
    fn rapid_commit_gets_reply() {
        let s = seen(&reply(&cfg(), &solicit(true)).unwrap());
        assert_eq!(s.msg_type, msg::REPLY);
        assert_ids_and_dns(&s);
        assert!(assert_granted(&s).is_empty());
        assert!(s.one(opt::RAPID_COMMIT).is_empty());
        assert!(s.all(opt::PREFERENCE).is_empty());
    }

    /// RFC 8415 §18.3.2, §18.3.4, §18.3.5: REQUEST, RENEW, REBIND → REPLY
    /// with the address; other addresses in the IA withdrawn (lifetimes 0).
    #[test]
    fn request_renew_rebind_get_reply() {
        let c = cfg();
        let guest = c.guest_ip6.unwrap();
        let stale: Ipv6Addr = "fd00:1122:3344:101::99".parse().unwrap();
        for frame in [
            with_server(msg::REQUEST, &[]),
            with_server(msg::RENEW, &[guest, stale]),
            without_server(msg::REBIND, &[stale]),
        ] {
            let s = seen(&reply(&c, &frame).unwrap());
            assert_eq!(s.msg_type, msg::REPLY);
            assert_ids_and_dns(&s);
            let withdrawn = assert_granted(&s);
            assert!(withdrawn.is_empty() || withdrawn == [stale]);
        }
    }

    /// RFC 8415 §16.4, §16.6, §16.7: REQUEST/RENEW need our SERVERID; for
    /// another server's, no answer; REBIND must not carry one.
    #[test]
    fn server_identifier_rules() {
        let c = cfg();
        let mut opts = common();
        opts.push(o(opt::SERVERID, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]));
        opts.push(ia_na(IAID, &[]));
        let other = frame(&message(msg::REQUEST, &opts));
        assert_eq!(reply(&c, &other), Err(Refusal::NotForGateway));
        let missing = without_server(msg::REQUEST, &[]);
        assert_eq!(reply(&c, &missing), Err(Refusal::Malformed));
        let rebind = with_server(msg::REBIND, &[]);
        assert_eq!(reply(&c, &rebind), Err(Refusal::Malformed));
        let mut no_client = vec![o(opt::SERVERID, &server_duid(&c))];
        no_client.push(ia_na(IAID, &[]));
        let f = frame(&message(msg::RENEW, &no_client));
        assert_eq!(reply(&c, &f), Err(Refusal::Malformed));
    }

    /// RFC 8415 §18.3.3: CONFIRM → Success if the addresses are on the
    /// link (are the guest's), NotOnLink otherwise, nothing if none listed.
    #[test]
    fn confirm() {
        let c = cfg();
        let guest = c.guest_ip6.unwrap();
        let s = seen(&reply(&c, &without_server(msg::CONFIRM, &[guest])).unwrap());
        assert_eq!(s.msg_type, msg::REPLY);
        assert_eq!(s.one(opt::STATUS_CODE), [0, 0]);
        assert!(s.all(opt::IA_NA).is_empty());
        let other: Ipv6Addr = "fd00:9999::5".parse().unwrap();
        let s = seen(&reply(&c, &without_server(msg::CONFIRM, &[guest, other])).unwrap());
        assert_eq!(s.one(opt::STATUS_CODE), [0, 4]);
        assert_eq!(
            reply(&c, &without_server(msg::CONFIRM, &[])),
            Err(Refusal::NoReply)
        );
    }

    /// RFC 8415 §18.3.6: INFORMATION-REQUEST → REPLY with configuration
    /// only; §16.12: one with an IA is discarded.
    #[test]
    fn information_request() {
        let c = cfg();
        let s = seen(&reply(&c, &frame(&message(msg::INFORMATION_REQUEST, &common()))).unwrap());
        assert_eq!(s.msg_type, msg::REPLY);
        assert_ids_and_dns(&s);
        assert_eq!(
            s.codes(),
            [
                opt::CLIENTID,
                opt::SERVERID,
                opt::DNS_SERVERS,
                opt::DOMAIN_LIST
            ]
        );
        // Still answered without a guest address.
        let mut no_v6 = cfg();
        no_v6.guest_ip6 = None;
        let f = frame(&message(msg::INFORMATION_REQUEST, &common()));
        assert!(reply(&no_v6, &f).is_ok());
        assert_eq!(reply(&no_v6, &solicit(false)), Err(Refusal::NoAddress));
        let f = without_server(msg::INFORMATION_REQUEST, &[]);
        assert_eq!(reply(&c, &f), Err(Refusal::Malformed));
    }

    /// RFC 8415 §18.3.7, §18.3.8: RELEASE and DECLINE are acknowledged
    /// with a REPLY carrying STATUS_CODE Success, so clients stop
    /// retransmitting.
    #[test]
    fn release_and_decline_are_acknowledged() {
        let c = cfg();
        let guest = c.guest_ip6.unwrap();
        for t in [msg::RELEASE, msg::DECLINE] {
            let f = reply(&c, &with_server(t, &[guest])).expect("a REPLY");
            let p = etherparse::PacketHeaders::from_ethernet_slice(&f).unwrap();
            let m = Message::parse(p.payload.slice()).expect("parses");
            assert_eq!(m.msg_type, msg::REPLY);
            let status: Vec<_> = m
                .options()
                .map(|o| o.unwrap())
                .filter(|o| o.code == opt::STATUS_CODE)
                .collect();
            assert_eq!(status.len(), 1);
            assert_eq!(&status[0].data[..2], &status::SUCCESS.to_be_bytes());
        }
    }

    /// RFC 8415 §21.4: one address per client; a second IA_NA gets
    /// NoAddrsAvail, and a SOLICIT without IA_NA a message-level status.
    #[test]
    fn several_or_no_ia_na() {
        let c = cfg();
        let mut opts = common();
        opts.push(ia_na(IAID, &[]));
        opts.push(ia_na([0, 0, 0, 8], &[]));
        let s = seen(&reply(&c, &frame(&message(msg::SOLICIT, &opts))).unwrap());
        let ias = s.all(opt::IA_NA);
        assert_eq!(ias.len(), 2);
        assert_eq!(ias[0][..4], IAID);
        assert_eq!(ias[1][..12], [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        let inner = walk(&ias[1][12..]);
        assert_eq!(inner[0].0, opt::STATUS_CODE);
        assert_eq!(inner[0].1[..2], [0, 2]);

        let s = seen(&reply(&c, &frame(&message(msg::SOLICIT, &common()))).unwrap());
        assert!(s.all(opt::IA_NA).is_empty());
        assert_eq!(s.one(opt::STATUS_CODE)[..2], [0, 2]);
    }

    /// RFC 8415 §16 / §21.1: option and message framing.
    #[test]
    fn malformed_messages() {
        let c = cfg();
        // An option overrunning the message.
        let mut m = message(msg::SOLICIT, &common());
        m.extend_from_slice(&[0, 3, 0, 40, 0, 0]);
        assert_eq!(reply(&c, &frame(&m)), Err(Refusal::Malformed));
        // Two client identifiers.
        let mut opts = common();
        opts.push(o(opt::CLIENTID, &client_duid()));
        let f = frame(&message(msg::SOLICIT, &opts));
        assert_eq!(reply(&c, &f), Err(Refusal::Malformed));
        // IA_NA shorter than its fixed part; IAADDR shorter than 24.
        let mut opts = common();
        opts.push(o(opt::IA_NA, &[0, 0, 0, 1, 0, 0]));
        assert_eq!(
            reply(&c, &frame(&message(msg::SOLICIT, &opts))),
            Err(Refusal::Malformed)
        );
        let mut opts = common();
        let mut ia = IAID.to_vec();
        ia.extend_from_slice(&[0; 8]);
        ia.extend(o(opt::IAADDR, &[0; 20]));
        opts.push(o(opt::IA_NA, &ia));
        assert_eq!(
            reply(&c, &frame(&message(msg::SOLICIT, &opts))),
            Err(Refusal::Malformed)
        );
        // Shorter than the 4-octet header.
        assert_eq!(reply(&c, &frame(&[1, 2])), Err(Refusal::Malformed));
    }

    /// RFC 8415 §7.2 (server port 547), §7.3 (message types: ADVERTISE is
    /// a server's, RELAY-FORW a relay's), §13.1 (clients send from a
    /// link-local unicast address).
    #[test]
    fn not_for_the_gateway() {
        let c = cfg();
        let m = message(msg::SOLICIT, &[o(opt::CLIENTID, &client_duid())]);
        assert_eq!(
            reply(&c, &frame_from(OTHER_MAC, guest_ll6(), SERVER_PORT, &m)),
            Err(Refusal::WrongAddress)
        );
        assert_eq!(
            reply(
                &c,
                &frame_from(GUEST_MAC, Ipv6Addr::UNSPECIFIED, SERVER_PORT, &m)
            ),
            Err(Refusal::WrongAddress)
        );
        assert_eq!(
            reply(&c, &frame_from(GUEST_MAC, guest_ll6(), 548, &m)),
            Err(Refusal::NotForGateway)
        );
        let adv = message(msg::ADVERTISE, &common());
        assert_eq!(reply(&c, &frame(&adv)), Err(Refusal::NotForGateway));
        let relay = message(msg::RELAY_FORW, &[]);
        assert_eq!(reply(&c, &frame(&relay)), Err(Refusal::Unsupported));
    }

    /// RFC 1035 §3.1 name encoding as used by RFC 8415 §10.
    #[test]
    fn domain_encoding() {
        assert_eq!(encode_domain("a.bc."), Some(b"\x01a\x02bc\x00".to_vec()));
        assert_eq!(encode_domain(""), None);
        assert_eq!(encode_domain("a..b"), None);
        assert_eq!(encode_domain(&"x".repeat(64)), None);
        assert!(
            encode_domain(&vec!["y".repeat(63); 4].join(".")).is_none(),
            "over 255"
        );
        assert!(encode_domain(&vec!["y".repeat(62); 4].join(".")).is_some());
    }

    /// Robustness (RFC 1122 §1.2.2: assume the network is full of malformed
    /// packets): every truncation is refused, and random corruption, fed to
    /// every builder, never panics.
    #[test]
    fn never_panics() {
        let c = cfg();
        let guest = c.guest_ip6.unwrap();
        let frames = [
            solicit(false),
            solicit(true),
            with_server(msg::REQUEST, &[guest]),
            without_server(msg::REBIND, &[guest]),
            frame(&message(msg::INFORMATION_REQUEST, &common())),
        ];
        for (i, f) in frames.iter().enumerate() {
            testutil::truncations_refused(reply, &c, f);
            let answered = testutil::random_flips(reply, &c, f, 2000, 90 + i as u64);
            assert!(answered > 0);
        }
    }
}
