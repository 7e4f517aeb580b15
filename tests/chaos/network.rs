//! Network namespaces for the processes whose connections the run cuts: each gets a veth pair
//! to the host, so its traffic crosses a real interface, and a cut is an iptables rule that
//! drops the packets of one port in the namespace (both directions), as a broken link would:
//! no reset, no error, only silence until TCP or the application gives up.
//!
//! Addresses come from 198.18.0.0/15, the range reserved for benchmarking networks, and live
//! only on the veth pairs inside this machine. The namespaces are named after the test
//! process (`pgcdc-<pid>-…`), so the test bed's cleanup removes those of a killed run.

use std::net::Ipv4Addr;
use std::process::Command;

/// A namespace with a veth pair to the host and a default route through it: every address of
/// the host (the clusters, the broker, the registry all listen on the host's veth addresses)
/// is reached over the pair.
pub struct Namespace {
    pub name: String,
    /// The host's end of the pair.
    pub host_address: Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Namespace {
    /// Creates namespace `pgcdc-<pid>-<role>` and its pair, on the `index`th /30 of this
    /// process's block of addresses.
    pub fn create(role: &str, index: u32) -> Result<Namespace, String> {
        let pid = std::process::id();
        let name = format!("pgcdc-{pid}-{role}");
        // Interface names are limited to 15 bytes.
        let host_if = format!("pc{}x{index}h", pid % 1_000_000);
        let inner_if = format!("pc{}x{index}n", pid % 1_000_000);
        let block = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (pid % 8192) * 16 + index * 4;
        let host_address = Ipv4Addr::from(block + 1);
        let inner_address = Ipv4Addr::from(block + 2);
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        let namespace = Namespace { name, host_address };
        let host = format!("{host_address}/30");
        let inner = format!("{inner_address}/30");
        let name = namespace.name.as_str();
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &inner_if, "netns", name,
        ])?;
        ip(&["addr", "add", &host, "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&["-n", name, "addr", "add", &inner, "dev", &inner_if])?;
        ip(&["-n", name, "link", "set", &inner_if, "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            name,
            "route",
            "add",
            "default",
            "via",
            &host_address.to_string(),
        ])?;
        Ok(namespace)
    }

    /// Inserts (`-I`) or deletes (`-D`) the rules that drop this namespace's packets to and
    /// from `port`.
    fn iptables(&self, action: &str, port: u16) {
        let port = port.to_string();
        for (chain, direction) in [("OUTPUT", "--dport"), ("INPUT", "--sport")] {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.name, "iptables", action, chain])
                .args(["-p", "tcp", direction, &port, "-j", "DROP"])
                .output()
                .expect("run iptables");
            assert!(
                out.status.success(),
                "iptables {action} {chain} {direction} {port} in {}: {} \
                 (scripts/install-testbed.sh installs iptables)",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Drops every packet between this namespace and `port` from now on.
    pub fn cut(&self, port: u16) {
        self.iptables("-I", port);
    }

    /// Undoes [`cut`](Self::cut).
    pub fn restore(&self, port: u16) {
        self.iptables("-D", port);
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the pair, and with it the host's end.
        let _ = ip(&["netns", "del", &self.name]);
    }
}
