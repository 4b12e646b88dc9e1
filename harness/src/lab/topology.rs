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
//! NAT N uses 10.0.N.0/24 (RFC 1918). Nothing in the lab has a route out of it. A peer's
//! firewall and loss act on the far end of its link (`lan`, or the bridge port `pN`): see
//! [`link_ruleset`].

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
    /// The namespace of the far end of its link (its router, or the internet segment).
    pub link_ns: String,
    /// The far end of its link in `link_ns` (`lan`, or the bridge port `pN`), where its
    /// firewall and loss act ([`link_ruleset`]).
    pub link_if: String,
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

/// The rule that drops `loss_pct` percent of the packets at random: none for 0, all for 100
/// (`numgen random mod 100` yields 0-99, so nft refuses `< 100`).
fn loss_rule(loss_pct: u8) -> Option<String> {
    match loss_pct {
        0 => None,
        100.. => Some("drop".into()),
        n => Some(format!("numgen random mod 100 < {n} drop")),
    }
}

/// The nftables table that holds the firewall and loss of the link whose far end is `dev`.
pub fn link_table(dev: &str) -> String {
    format!("netdev rtch_{dev}")
}

/// The firewall and loss of one peer's link, acting on `dev`, the far end of the peer's veth
/// (the router's `lan`, or the bridge port `pN` on the internet segment): `udp = "blocked"`
/// drops UDP and `loss_pct` drops that share of the IPv4/IPv6 packets at random, each direction
/// on its own. `None` when there is nothing to do.
///
/// Why netdev `ingress` and `egress` hooks on the far end, and not the peer's own
/// `input`/`output` hooks as before: a drop in the peer's output hook fails the peer's
/// `sendto` with EPERM, which webrtc-rs reports as a local socket failure ("Failed to write
/// packet ... Operation not permitted"), whereas a real network loses packets silently. On the
/// far end, the peer's outgoing packets are dropped on arrival (`ingress`, in the receive path,
/// after the peer's send has returned), and its incoming ones on the way to it (`egress`, on a
/// router's forwarding or a bridge's, where no socket waits for the result). The same two
/// hooks fit both places a peer can hang from, where a `forward` chain exists only on routers
/// and a `bridge` chain only on the segment; `ingress` also comes before the router's
/// conntrack and NAT, so a lost packet leaves no state behind, as a loss on the wire would.
/// Only IP is touched (`meta protocol`): ARP passes, so neighbour resolution never fails and
/// becomes a send error of its own after an outage. One table per link, so [`replace_link_ruleset`]
/// can swap it atomically.
pub fn link_ruleset(dev: &str, udp: UdpPolicy, loss_pct: u8) -> Option<String> {
    let mut rules = Vec::new();
    if udp == UdpPolicy::Blocked {
        rules.push("meta l4proto udp drop".to_string());
    }
    rules.extend(loss_rule(loss_pct));
    if rules.is_empty() {
        return None;
    }
    let chain = |hook: &str| {
        let body: String = rules
            .iter()
            .map(|r| format!("\t\tmeta protocol {{ ip, ip6 }} {r}\n"))
            .collect();
        format!(
            "\tchain {hook} {{ type filter hook {hook} device \"{dev}\" priority filter; policy accept;\n{body}\t}}\n"
        )
    };
    Some(format!(
        "table {} {{\n{}{}}}\n",
        link_table(dev),
        chain("ingress"),
        chain("egress")
    ))
}

/// The command that replaces the firewall table of the link whose far end is `dev` in
/// namespace `ns` (creating it if missing, so the delete cannot fail) with the rules for `udp`
/// and `loss_pct`, in one nftables transaction: no packet sees a half-built table.
pub fn replace_link_ruleset(ns: &str, dev: &str, udp: UdpPolicy, loss_pct: u8) -> Cmd {
    let table = link_table(dev);
    let mut script = format!("table {table} {{}}\ndelete table {table}\n");
    if let Some(rules) = link_ruleset(dev, udp, loss_pct) {
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
            let (ip, link_ns, link_if) = if p.nat == Nat::None {
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
                (public_ip, internet.clone(), format!("p{n}"))
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
                (lan_peer, router, "lan".to_string())
            };
            if let Some(rules) = link_ruleset(&link_if, p.udp, p.loss_pct) {
                c.push(in_ns(&link_ns, "nft -f -", Some(rules)));
            }
            if let Some(kbit) = p.rate_kbit {
                c.push(tbf(&peer_ns, PEER_IF, kbit));
            }
            hosts.push(HostPlace {
                peer: p.peer.clone(),
                ns: peer_ns,
                ip,
                public_ip,
                link_ns,
                link_if,
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
                peer("b", Nat::None, UdpPolicy::Open, 100, None),
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
    fn an_open_lossless_link_needs_no_firewall() {
        assert_eq!(link_ruleset("lan", UdpPolicy::Open, 0), None);
        let r = link_ruleset("lan", UdpPolicy::Open, 5).unwrap();
        assert!(r.starts_with("table netdev rtch_lan {"));
        assert!(r.contains("hook ingress device \"lan\""));
        assert!(r.contains("hook egress device \"lan\""));
        assert_eq!(
            r.matches("meta protocol { ip, ip6 } numgen random mod 100 < 5 drop")
                .count(),
            2
        );
        assert!(!r.contains("udp"));
    }

    #[test]
    fn replacing_a_firewall_creates_then_deletes_then_adds() {
        let c = replace_link_ruleset("n", "p3", UdpPolicy::Open, 0);
        assert_eq!(c.argv, ["ip", "netns", "exec", "n", "nft", "-f", "-"]);
        assert_eq!(
            c.stdin.as_deref(),
            Some("table netdev rtch_p3 {}\ndelete table netdev rtch_p3\n")
        );
        let c = replace_link_ruleset("n", "p3", UdpPolicy::Blocked, 5);
        let script = c.stdin.unwrap();
        assert!(script.starts_with(
            "table netdev rtch_p3 {}\ndelete table netdev rtch_p3\ntable netdev rtch_p3 {"
        ));
        assert!(script.contains("numgen random mod 100 < 5 drop"));
        assert!(script.contains("meta l4proto udp drop"));
    }

    #[test]
    fn total_loss_drops_every_ip_packet_without_numgen() {
        // `numgen random mod 100 < 100` is refused by nft (value out of range 0-99).
        let r = link_ruleset("lan", UdpPolicy::Open, 100).unwrap();
        assert!(!r.contains("numgen"), "{r}");
        assert_eq!(r.matches("meta protocol { ip, ip6 } drop\n").count(), 2);
        let r = link_ruleset("lan", UdpPolicy::Open, 99).unwrap();
        assert!(r.contains("numgen random mod 100 < 99 drop"));
    }

    #[test]
    fn loss_and_firewall_act_on_the_far_end_not_in_the_peers_namespace() {
        // A drop in the peer's own output hook fails its sendto with EPERM.
        let plan = NetworkPlan {
            peers: vec![
                peer("a", Nat::EndpointIndependent, UdpPolicy::Blocked, 5, None),
                peer("b", Nat::None, UdpPolicy::Open, 5, None),
            ],
        };
        let t = Topology::build("x", &plan).unwrap();
        assert_eq!(
            (t.hosts[0].link_ns.as_str(), t.hosts[0].link_if.as_str()),
            ("x-r1", "lan")
        );
        assert_eq!(
            (t.hosts[1].link_ns.as_str(), t.hosts[1].link_if.as_str()),
            ("x-inet", "p2")
        );
        let firewalls: Vec<&Cmd> = t
            .commands
            .iter()
            .filter(|c| c.stdin.as_deref().is_some_and(|s| s.contains("numgen")))
            .collect();
        assert_eq!(firewalls.len(), 2);
        assert_eq!(firewalls[0].argv[3], "x-r1");
        assert_eq!(firewalls[1].argv[3], "x-inet");
        for c in &t.commands {
            assert!(
                !c.argv.iter().any(|a| a == "x-p1" || a == "x-p2") || c.stdin.is_none(),
                "{c}"
            );
        }
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
