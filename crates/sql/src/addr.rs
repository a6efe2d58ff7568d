//! `host:port` addresses as operators write them in admin statements.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// A backend or frontend address. IPv6 hosts are kept without brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only IPv6 hosts contain ':'; they need brackets to stay unambiguous.
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a string is not a valid `host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("expected \"host:port\"")]
    NotHostPort,
    #[error("empty host")]
    EmptyHost,
    #[error("invalid host")]
    BadHost,
    #[error("IPv6 addresses need brackets, e.g. \"[::1]:9050\"")]
    UnbracketedIpv6,
    #[error("invalid port")]
    BadPort,
}

impl FromStr for HostPort {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or(AddrError::NotHostPort)?;
            let port = after.strip_prefix(':').ok_or(AddrError::NotHostPort)?;
            if host.is_empty() {
                return Err(AddrError::EmptyHost);
            }
            host.parse::<Ipv6Addr>().map_err(|_| AddrError::BadHost)?;
            (host, port)
        } else {
            let (host, port) = s.split_once(':').ok_or(AddrError::NotHostPort)?;
            if port.contains(':') {
                return Err(AddrError::UnbracketedIpv6);
            }
            if host.is_empty() {
                return Err(AddrError::EmptyHost);
            }
            let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
            if !host.chars().all(host_char) {
                return Err(AddrError::BadHost);
            }
            (host, port)
        };
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AddrError::BadPort);
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(AddrError::BadPort)?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(s: &str) -> Result<HostPort, AddrError> {
        s.parse()
    }

    #[test]
    fn accepts_names_ipv4_and_bracketed_ipv6() {
        let ok = |host: &str, port| {
            Ok(HostPort {
                host: host.to_string(),
                port,
            })
        };
        assert_eq!(hp("be-1.example_x:9050"), ok("be-1.example_x", 9050));
        assert_eq!(hp("10.0.0.1:65535"), ok("10.0.0.1", 65535));
        assert_eq!(hp("[::1]:1"), ok("::1", 1));
        assert_eq!(hp("h:09050"), ok("h", 9050));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(hp("abc"), Err(AddrError::NotHostPort));
        assert_eq!(hp(""), Err(AddrError::NotHostPort));
        assert_eq!(hp("[::1]"), Err(AddrError::NotHostPort));
        assert_eq!(hp(":1"), Err(AddrError::EmptyHost));
        assert_eq!(hp("[]:1"), Err(AddrError::EmptyHost));
        assert_eq!(hp("[zz]:1"), Err(AddrError::BadHost));
        assert_eq!(hp("a b:1"), Err(AddrError::BadHost));
        assert_eq!(hp("::1:9050"), Err(AddrError::UnbracketedIpv6));
        assert_eq!(hp("h:"), Err(AddrError::BadPort));
        assert_eq!(hp("h:0"), Err(AddrError::BadPort));
        assert_eq!(hp("h:65536"), Err(AddrError::BadPort));
        assert_eq!(hp("h:+1"), Err(AddrError::BadPort));
    }

    #[test]
    fn display_brackets_ipv6_only() {
        assert_eq!(hp("[fe80::1]:9010").unwrap().to_string(), "[fe80::1]:9010");
        assert_eq!(hp("h:9010").unwrap().to_string(), "h:9010");
    }
}
