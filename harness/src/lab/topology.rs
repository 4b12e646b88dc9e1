//! The lab's layout as data: which namespaces, links, addresses, NAT and firewall rules a
//! [`NetworkPlan`] needs, as the `ip`, `tc` and `nft` command lines that build it (pure, so
//! it is tested without root).
//!
//! ```text
//!  peer ns (eth0 10.0.N.2) ── lan | router ns (NAT) | wan 198.51.100.(10+N) ──┐
//!                                                                              ├─ inet0 bridge
//!  peer ns without NAT (eth0 198.51.100.(10+N)) ──────────────────────────────┤  198.51.100.1
//!                                                                              │  (STUN/TURN)
//! ```
//!
//! The "internet" segment uses TEST-NET-2 (198.51.100.0/24, RFC 5737), the private side of
//! NAT N uses 10.0.N.0/24 (RFC 1918). Nothing in the lab has a route out of it.

use crate::scenario::{Nat, NetworkPlan, UdpPolicy};
use std::net::Ipv4Addr;

/// The STUN/TURN server's address on the internet segment.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The private ranges behind the NATs (coturn must never relay there).
pub const PRIVATE_RANGE: (Ipv4Addr, Ipv4Addr) =
    (Ipv4Addr::new(10, 0, 0, 0), Ipv4Addr::new(10, 255, 255, 255));
/// Most peers one lab holds.
pub const MAX_PEERS: usize = 200;
/// The peer's interface name in its namespace.
pub const PEER_IF: &str = "eth0";

/// One command line, with what to feed on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Standard input (nft rulesets).
    pub stdin: Option<String>,
}

impl std::fmt::Display for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.argv.join(" "))?;
        if let Some(s) = &self.stdin {
            write!(f, " <<EOF\n{}EOF", s)?;
        }
        Ok(())
    }
}

/// Where one peer ends up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlace {
    /// Peer id.
    pub peer: String,
    /// Its namespace.
    pub ns: String,
    /// Its address (what it binds and gathers as host candidate).
    pub ip: Ipv4Addr,
    /// The address the internet segment sees it as (its NAT's, or its own).
    pub public_ip: Ipv4Addr,
}

/// The whole layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Namespaces, in creation order (the internet segment first).
    pub namespaces: Vec<String>,
    /// The internet segment's namespace (where the STUN/TURN server runs).
    pub internet: String,
    /// Every peer's place, in plan order.
    pub hosts: Vec<HostPlace>,
    /// What builds it, in order (after the namespaces exist).
    pub commands: Vec<Cmd>,
}

fn ip_n(ns: &str, args: &str) -> Cmd {
    let mut argv = vec!["ip".to_string(), "-n".into(), ns.into()];
    argv.extend(args.split_whitespace().map(String::from));
    Cmd { argv, stdin: None }
}

fn in_ns(ns: &str, args: &str, stdin: Option<String>) -> Cmd {
    let mut argv = vec!["ip".to_string(), "netns".into(), "exec".into(), ns.into()];
    argv.extend(args.split_whitespace().map(String::from));
    Cmd { argv, stdin }
}

/// Token-bucket shaping of `dev`'s egress at `kbit` (burst: 20 ms of traffic, at least 3000
/// bytes so a full-size packet always fits).
fn tbf(ns: &str, dev: &str, kbit: u64) -> Cmd {
    let burst = (kbit * 5 / 2).max(3000);
    in_ns(
        ns,
        &format!("tc qdisc add dev {dev} root tbf rate {kbit}kbit burst {burst} latency 200ms"),
        None,
    )
}

/// The router's NAT and firewall: masquerade out of `wan` (with random ports for a symmetric
/// NAT), drop what arrives on `wan` without an existing flow (RFC 4787 §5 filtering; without
/// this an inbound check would create a conntrack entry that makes the next outbound mapping
/// clash and change port), forward only LAN→WAN and replies.
pub fn router_ruleset(nat: Nat) -> String {
    let masquerade = match nat {
        Nat::Symmetric => "masquerade random,fully-random",
        _ => "masquerade",
    };
    format!(
        "table ip rtch {{\n\
         \tchain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname \"wan\" {masquerade}\n\
         \t}}\n\
         \tchain prerouting {{ type filter hook prerouting priority -150; policy accept;\n\
         \t\tiifname \"wan\" ct state new drop\n\
         \t}}\n\
         \tchain forward {{ type filter hook forward priority filter; policy drop;\n\
         \t\tct state established,related accept\n\
         \t\tiifname \"lan\" oifname \"wan\" accept\n\
         \t}}\n\
         }}\n"
    )
}

/// The peer's own firewall: UDP blocked and random loss on its interface, both directions.
/// `None` when it has nothing to do.
pub fn peer_ruleset(udp: UdpPolicy, loss_pct: u8) -> Option<String> {
    let mut rules = Vec::new();
    if udp == UdpPolicy::Blocked {
        rules.push("meta l4proto udp drop".to_string());
    }
    if loss_pct > 0 {
        rules.push(format!("numgen random mod 100 < {loss_pct} drop"));
    }
    if rules.is_empty() {
        return None;
    }
    let chain = |name: &str, hook: &str, dir: &str| {
        let body: String = rules
            .iter()
            .map(|r| format!("\t\t{dir} \"{PEER_IF}\" {r}\n"))
            .collect();
        format!(
            "\tchain {name} {{ type filter hook {hook} priority filter; policy accept;\n{body}\t}}\n"
        )
    };
    Some(format!(
        "table inet rtch {{\n{}{}}}\n",
        chain("input", "input", "iifname"),
        chain("output", "output", "oifname")
    ))
}

/// The command that replaces a peer's firewall table (creating it if missing, so the delete
/// cannot fail) with the rules for `udp` and `loss_pct`, atomically.
pub fn replace_peer_ruleset(ns: &str, udp: UdpPolicy, loss_pct: u8) -> Cmd {
    let mut script = String::from("table inet rtch {}\ndelete table inet rtch\n");
    if let Some(rules) = peer_ruleset(udp, loss_pct) {
        script.push_str(&rules);
    }
    in_ns(ns, "nft -f -", Some(script))
}

impl Topology {
    /// The layout for `plan`, with namespace names starting with `prefix`.
    pub fn build(prefix: &str, plan: &NetworkPlan) -> Result<Topology, String> {
        if plan.peers.len() > MAX_PEERS {
            return Err(format!(
                "the lab holds at most {MAX_PEERS} peers, the scenario has {}",
                plan.peers.len()
            ));
        }
        let internet = format!("{prefix}-inet");
        let mut namespaces = vec![internet.clone()];
        let mut hosts = Vec::new();
        let mut c = vec![
            ip_n(&internet, "link set lo up"),
            ip_n(&internet, "link add inet0 type bridge"),
            ip_n(&internet, &format!("addr add {SERVER_IP}/24 dev inet0")),
            ip_n(&internet, "link set inet0 up"),
        ];
        for (i, p) in plan.peers.iter().enumerate() {
            let n = i + 1;
            let public_ip = Ipv4Addr::new(198, 51, 100, 10 + n as u8);
            let peer_ns = format!("{prefix}-p{n}");
            namespaces.push(peer_ns.clone());
            c.push(ip_n(&peer_ns, "link set lo up"));
            let ip = if p.nat == Nat::None {
                // Straight on the internet segment.
                c.push(ip_n(
                    &internet,
                    &format!("link add p{n} type veth peer name {PEER_IF} netns {peer_ns}"),
                ));
                c.push(ip_n(&internet, &format!("link set p{n} master inet0")));
                c.push(ip_n(&internet, &format!("link set p{n} up")));
                c.push(ip_n(
                    &peer_ns,
                    &format!("addr add {public_ip}/24 dev {PEER_IF}"),
                ));
                c.push(ip_n(&peer_ns, &format!("link set {PEER_IF} up")));
                // A default route (Firefox gathers nothing without one); the segment forwards
                // nowhere.
                c.push(ip_n(
                    &peer_ns,
                    &format!("route add default via {SERVER_IP}"),
                ));
                if let Some(kbit) = p.rate_kbit {
                    c.push(tbf(&internet, &format!("p{n}"), kbit));
                }
                public_ip
            } else {
                let router = format!("{prefix}-r{n}");
                namespaces.push(router.clone());
                let lan_router = Ipv4Addr::new(10, 0, n as u8, 1);
                let lan_peer = Ipv4Addr::new(10, 0, n as u8, 2);
                c.push(ip_n(&router, "link set lo up"));
                c.push(ip_n(
                    &internet,
                    &format!("link add r{n} type veth peer name wan netns {router}"),
                ));
                c.push(ip_n(&internet, &format!("link set r{n} master inet0")));
                c.push(ip_n(&internet, &format!("link set r{n} up")));
                c.push(ip_n(&router, &format!("addr add {public_ip}/24 dev wan")));
                c.push(ip_n(&router, "link set wan up"));
                c.push(ip_n(
                    &peer_ns,
                    &format!("link add {PEER_IF} type veth peer name lan netns {router}"),
                ));
                c.push(ip_n(&router, &format!("addr add {lan_router}/24 dev lan")));
                c.push(ip_n(&router, "link set lan up"));
                c.push(ip_n(
                    &peer_ns,
                    &format!("addr add {lan_peer}/24 dev {PEER_IF}"),
                ));
                c.push(ip_n(&peer_ns, &format!("link set {PEER_IF} up")));
                c.push(ip_n(
                    &peer_ns,
                    &format!("route add default via {lan_router}"),
                ));
                c.push(in_ns(&router, "sysctl -qw net.ipv4.ip_forward=1", None));
                c.push(in_ns(&router, "nft -f -", Some(router_ruleset(p.nat))));
                if let Some(kbit) = p.rate_kbit {
                    c.push(tbf(&router, "lan", kbit));
                }
                lan_peer
            };
            if let Some(rules) = peer_ruleset(p.udp, p.loss_pct) {
                c.push(in_ns(&peer_ns, "nft -f -", Some(rules)));
            }
            if let Some(kbit) = p.rate_kbit {
                c.push(tbf(&peer_ns, PEER_IF, kbit));
            }
            hosts.push(HostPlace {
                peer: p.peer.clone(),
                ns: peer_ns,
                ip,
                public_ip,
            });
        }
        Ok(Topology {
            namespaces,
            internet,
            hosts,
            commands: c,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::PeerNetwork;

    fn peer(id: &str, nat: Nat, udp: UdpPolicy, loss_pct: u8, rate: Option<u64>) -> PeerNetwork {
        PeerNetwork {
            peer: id.into(),
            nat,
            udp,
            loss_pct,
            rate_kbit: rate,
        }
    }

    #[test]
    fn layout_of_a_natted_and_a_public_peer() {
        let plan = NetworkPlan {
            peers: vec![
                peer("a", Nat::Symmetric, UdpPolicy::Blocked, 5, Some(1000)),
                peer("b", Nat::None, UdpPolicy::Open, 0, None),
            ],
        };
        let t = Topology::build("rtch-1-1", &plan).unwrap();
        assert_eq!(
            t.namespaces,
            ["rtch-1-1-inet", "rtch-1-1-p1", "rtch-1-1-r1", "rtch-1-1-p2"]
        );
        assert_eq!(t.hosts[0].ip, Ipv4Addr::new(10, 0, 1, 2));
        assert_eq!(t.hosts[0].public_ip, Ipv4Addr::new(198, 51, 100, 11));
        assert_eq!(t.hosts[1].ip, Ipv4Addr::new(198, 51, 100, 12));
        let script: Vec<String> = t.commands.iter().map(|c| c.to_string()).collect();
        insta::assert_snapshot!(script.join("\n"));
    }

    #[test]
    fn symmetric_nat_uses_random_ports_and_cone_nat_does_not() {
        assert!(router_ruleset(Nat::Symmetric).contains("masquerade random,fully-random"));
        let eim = router_ruleset(Nat::EndpointIndependent);
        assert!(eim.contains("oifname \"wan\" masquerade\n"));
        assert!(eim.contains("iifname \"wan\" ct state new drop"));
    }

    #[test]
    fn an_open_lossless_peer_needs_no_firewall() {
        assert_eq!(peer_ruleset(UdpPolicy::Open, 0), None);
        let r = peer_ruleset(UdpPolicy::Open, 5).unwrap();
        assert!(r.contains("iifname \"eth0\" numgen random mod 100 < 5 drop"));
        assert!(r.contains("oifname \"eth0\" numgen random mod 100 < 5 drop"));
        assert!(!r.contains("udp"));
    }

    #[test]
    fn replacing_a_firewall_creates_then_deletes_then_adds() {
        let c = replace_peer_ruleset("n", UdpPolicy::Open, 0);
        assert_eq!(c.argv, ["ip", "netns", "exec", "n", "nft", "-f", "-"]);
        assert_eq!(
            c.stdin.as_deref(),
            Some("table inet rtch {}\ndelete table inet rtch\n")
        );
        let c = replace_peer_ruleset("n", UdpPolicy::Blocked, 5);
        let script = c.stdin.unwrap();
        assert!(
            script.starts_with("table inet rtch {}\ndelete table inet rtch\ntable inet rtch {")
        );
        assert!(script.contains("numgen random mod 100 < 5 drop"));
        assert!(script.contains("meta l4proto udp drop"));
    }

    #[test]
    fn too_many_peers_is_an_error() {
        let plan = NetworkPlan {
            peers: (0..=MAX_PEERS)
                .map(|i| peer(&i.to_string(), Nat::None, UdpPolicy::Open, 0, None))
                .collect(),
        };
        assert!(Topology::build("x", &plan).is_err());
    }
}
