//! A node's replication links as its engine's INFO lists them, matched to the configured
//! peers: masters by the address this node dials, replicas by the port they announce.

use super::info::{Info, MasterLink};
use super::status::{LinkSafety, LinkStatus, PeerLink, PeerRef};

pub(super) const NOT_A_MASTER: &str = "not configured as a master in the engine";
pub(super) const NOT_A_REPLICA: &str = "not connected as a replica";
pub(super) const NOT_A_PEER: &str = "replication with an address that is not a configured peer";
pub(super) const NEVER_UP: &str = "never connected since the engine started";

/// Whether a master entry `host:port` is `peer`: the address this node dials it at.
pub(super) fn dials(peer: &PeerRef, host: &str, port: u16) -> bool {
    peer.replication_port == port && peer.host.eq_ignore_ascii_case(host)
}

/// Whether a replica entry `host:port` is `peer`: a replica names the port it announces,
/// its own engine port, or the port this node would dial it at (`keyfleet dev` makes
/// its replicas announce their proxies).
pub(super) fn is_replica(peer: &PeerRef, host: &str, port: u16) -> bool {
    (peer.engine_port == port || peer.replication_port == port)
        && peer.host.eq_ignore_ascii_case(host)
}

/// Links of a replica or active replica: one per `master[_N]_*` block.
pub(super) fn master_links(info: &Info, peers: &[PeerRef]) -> Vec<PeerLink> {
    let masters = info.masters();
    let mut links: Vec<PeerLink> = peers
        .iter()
        .map(|peer| {
            let Some(m) = masters.iter().find(|m| dials(peer, m.host, m.port)) else {
                return unlinked(peer, NOT_A_MASTER);
            };
            let never_up = !m.link_up && m.link_down_since_seconds == Some(-1);
            let mut link = master_link(m, never_up.then_some(NEVER_UP));
            link.peer = peer.name.clone();
            link.host = peer.host.clone();
            link.port = peer.replication_port;
            link
        })
        .collect();
    links.extend(
        masters
            .iter()
            .filter(|m| !peers.iter().any(|p| dials(p, m.host, m.port)))
            .map(|m| master_link(m, Some(NOT_A_PEER))),
    );
    links
}

/// A master block as a link, named by its address.
fn master_link(m: &MasterLink<'_>, reason: Option<&'static str>) -> PeerLink {
    PeerLink {
        peer: format!("{}:{}", m.host, m.port),
        host: m.host.to_owned(),
        port: m.port,
        status: if m.link_up {
            LinkStatus::Up
        } else {
            LinkStatus::Down
        },
        last_io_seconds: m
            .last_io_seconds_ago
            .filter(|_| m.link_up)
            .and_then(non_negative),
        down_since_seconds: m
            .link_down_since_seconds
            .filter(|_| !m.link_up)
            .and_then(non_negative),
        reason,
        safety: LinkSafety::default(),
    }
}

/// Links of a Redis primary: its connected replicas (`slaveN:` lines).
pub(super) fn replica_links(info: &Info, peers: &[PeerRef]) -> Vec<PeerLink> {
    let replicas: Vec<_> = info.replicas().collect();
    let mut links: Vec<PeerLink> = peers
        .iter()
        .map(|peer| {
            let Some(r) = replicas.iter().find(|r| is_replica(peer, r.ip, r.port)) else {
                return unlinked(peer, NOT_A_REPLICA);
            };
            let up = r.state == "online";
            PeerLink {
                peer: peer.name.clone(),
                host: peer.host.clone(),
                port: peer.engine_port,
                status: if up { LinkStatus::Up } else { LinkStatus::Down },
                // A replica's lag is the seconds since its last acknowledgement.
                last_io_seconds: r.lag.filter(|_| up).and_then(non_negative),
                down_since_seconds: None,
                reason: None,
                safety: LinkSafety::default(),
            }
        })
        .collect();
    for r in replicas
        .iter()
        .filter(|r| !peers.iter().any(|p| is_replica(p, r.ip, r.port)))
    {
        let up = r.state == "online";
        links.push(PeerLink {
            peer: format!("{}:{}", r.ip, r.port),
            host: r.ip.to_owned(),
            port: r.port,
            status: if up { LinkStatus::Up } else { LinkStatus::Down },
            last_io_seconds: r.lag.filter(|_| up).and_then(non_negative),
            down_since_seconds: None,
            reason: Some(NOT_A_PEER),
            safety: LinkSafety::default(),
        });
    }
    links
}

fn unlinked(peer: &PeerRef, reason: &'static str) -> PeerLink {
    PeerLink {
        peer: peer.name.clone(),
        host: peer.host.clone(),
        port: peer.replication_port,
        status: LinkStatus::Down,
        last_io_seconds: None,
        down_since_seconds: None,
        reason: Some(reason),
        safety: LinkSafety::default(),
    }
}

fn non_negative(n: i64) -> Option<u64> {
    u64::try_from(n).ok()
}
