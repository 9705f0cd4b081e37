//! The Windows form of a block, as arguments for an agent there; palisade runs it nowhere.

use std::net::IpAddr;

use crate::actions::ParamValue;

/// The `netsh advfirewall` commands that would block an address on Windows, one argument per
/// element (for a Windows agent; palisade itself runs them nowhere).
pub fn netsh_block_args(ip: IpAddr, prefix: u8, direction: &str) -> Vec<Vec<String>> {
    let address = ParamValue::Address { ip, prefix }.to_string();
    let dirs: &[&str] = match direction {
        "inbound" => &["in"],
        "outbound" => &["out"],
        _ => &["in", "out"],
    };
    dirs.iter()
        .map(|dir| {
            ["advfirewall", "firewall", "add", "rule"]
                .iter()
                .map(|s| s.to_string())
                .chain([
                    format!("name=palisade block {address} {dir}"),
                    format!("dir={dir}"),
                    "action=block".to_string(),
                    format!("remoteip={address}"),
                    "enable=yes".to_string(),
                ])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netsh_arguments_are_one_value_each() {
        let args = netsh_block_args("185.12.33.4".parse().unwrap(), 32, "both");
        assert_eq!(args.len(), 2);
        assert_eq!(
            args[0],
            [
                "advfirewall",
                "firewall",
                "add",
                "rule",
                "name=palisade block 185.12.33.4 in",
                "dir=in",
                "action=block",
                "remoteip=185.12.33.4",
                "enable=yes"
            ]
        );
        let range = netsh_block_args("2001:db8::".parse().unwrap(), 32, "outbound");
        assert_eq!(range[0][7], "remoteip=2001:db8::/32");
    }
}
