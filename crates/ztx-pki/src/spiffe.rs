//! SPIFFE ids (`spiffe://<trust-domain>/<path>`), parsed as the SPIFFE ID standard
//! defines them, and the allow-lists endpoints check them against.

use std::fmt;

/// The longest SPIFFE id the standard allows, in bytes.
const MAX_LEN: usize = 2048;
const SCHEME: &str = "spiffe://";

/// A workload's or a person's identity: a trust domain and a non-empty path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    /// Without its leading `/`; never empty.
    path: String,
}

/// Why a string is not a SPIFFE id this platform accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("{0:?} is not a SPIFFE id: it does not start with spiffe://")]
    Scheme(String),
    #[error("{0:?} is not a SPIFFE id: longer than 2048 bytes")]
    TooLong(String),
    #[error(
        "{0:?} is not a SPIFFE id: the trust domain must be non-empty and only lowercase letters, digits, '.', '-' and '_'"
    )]
    TrustDomain(String),
    #[error(
        "{0:?} is not a SPIFFE id: each path segment must be non-empty, not '.' or '..', and only letters, digits, '.', '-' and '_'"
    )]
    Path(String),
    #[error("{0:?} names a trust domain, not a workload: it needs a path")]
    NoPath(String),
}

fn trust_domain_ok(td: &str) -> bool {
    !td.is_empty()
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
}

fn segment_ok(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
}

impl SpiffeId {
    /// `spiffe://<trust_domain>/<path>`; `path` without its leading slash.
    pub fn new(trust_domain: &str, path: &str) -> Result<SpiffeId, SpiffeIdError> {
        SpiffeId::parse(&format!("{SCHEME}{trust_domain}/{path}"))
    }

    pub fn parse(text: &str) -> Result<SpiffeId, SpiffeIdError> {
        let (td, path) = SpiffeId::parse_parts(text)?;
        if path.is_empty() {
            return Err(SpiffeIdError::NoPath(text.to_owned()));
        }
        Ok(SpiffeId {
            trust_domain: td.to_owned(),
            path: path.to_owned(),
        })
    }

    /// A trust domain's own id, `spiffe://<td>` (what the CA certificates carry).
    pub fn parse_trust_domain(text: &str) -> Result<String, SpiffeIdError> {
        match SpiffeId::parse_parts(text)? {
            (td, "") => Ok(td.to_owned()),
            _ => Err(SpiffeIdError::TrustDomain(text.to_owned())),
        }
    }

    /// Checks a trust domain name on its own.
    pub fn check_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
        SpiffeId::parse_trust_domain(&format!("{SCHEME}{td}")).map(|_| ())
    }

    fn parse_parts(text: &str) -> Result<(&str, &str), SpiffeIdError> {
        if text.len() > MAX_LEN {
            return Err(SpiffeIdError::TooLong(text.chars().take(64).collect()));
        }
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| SpiffeIdError::Scheme(text.to_owned()))?;
        let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !trust_domain_ok(td) {
            return Err(SpiffeIdError::TrustDomain(text.to_owned()));
        }
        if rest.contains('/') && !path.split('/').all(segment_ok) {
            return Err(SpiffeIdError::Path(text.to_owned()));
        }
        Ok((td, path))
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path without its leading slash, e.g. `exchange` or `operator/alice`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The operator's name when this is an operator's identity.
    pub fn operator(&self) -> Option<&str> {
        self.path.strip_prefix("operator/")
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.trust_domain, self.path)
    }
}

/// Which SPIFFE ids an endpoint admits: exact ids, and path prefixes written with a
/// trailing `/*` (e.g. `spiffe://ztx.local/operator/*` for every operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    trust_domain: String,
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl Allow {
    /// Parses each pattern; all must be in `trust_domain`.
    pub fn new(trust_domain: &str, patterns: &[&str]) -> Result<Allow, SpiffeIdError> {
        SpiffeId::check_trust_domain(trust_domain)?;
        let mut allow = Allow {
            trust_domain: trust_domain.to_owned(),
            exact: Vec::new(),
            prefixes: Vec::new(),
        };
        for pattern in patterns {
            let (id, prefix) = match pattern.strip_suffix("/*") {
                Some(stem) => (SpiffeId::parse(stem)?, true),
                None => (SpiffeId::parse(pattern)?, false),
            };
            if id.trust_domain != trust_domain {
                return Err(SpiffeIdError::TrustDomain((*pattern).to_owned()));
            }
            if prefix {
                allow.prefixes.push(format!("{}/", id.path));
            } else {
                allow.exact.push(id.path);
            }
        }
        Ok(allow)
    }

    pub fn admits(&self, id: &SpiffeId) -> bool {
        id.trust_domain == self.trust_domain
            && (self.exact.contains(&id.path)
                || self
                    .prefixes
                    .iter()
                    .any(|p| id.path.starts_with(p.as_str())))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_workloads_and_operators() {
        let id = SpiffeId::parse("spiffe://ztx.local/exchange").unwrap();
        assert_eq!((id.trust_domain(), id.path()), ("ztx.local", "exchange"));
        let op = SpiffeId::parse("spiffe://ztx.local/operator/alice").unwrap();
        assert_eq!(op.operator(), Some("alice"));
        assert_eq!(id.operator(), None);
    }

    #[test]
    fn refuses_what_the_standard_refuses() {
        for bad in [
            "https://ztx.local/exchange",
            "spiffe://ZTX.local/exchange",
            "spiffe:///exchange",
            "spiffe://ztx.local/",
            "spiffe://ztx.local//exchange",
            "spiffe://ztx.local/exchange/",
            "spiffe://ztx.local/../exchange",
            "spiffe://ztx.local/a/./b",
            "spiffe://ztx.local/ex change",
            "spiffe://ztx.local/exchange?x=1",
            "spiffe://ztx.local/exchange#f",
            "spiffe://user@ztx.local/exchange",
            "spiffe://ztx.local:443/exchange",
            "spiffe://ztx.local",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(SpiffeId::parse(&format!("spiffe://ztx.local/{}", "a".repeat(2048))).is_err());
    }

    #[test]
    fn an_allow_list_admits_exact_ids_and_prefixes_only_in_its_domain() {
        let allow = Allow::new(
            "ztx.local",
            &[
                "spiffe://ztx.local/exchange",
                "spiffe://ztx.local/operator/*",
            ],
        )
        .unwrap();
        let id = |s| SpiffeId::parse(s).unwrap();
        assert!(allow.admits(&id("spiffe://ztx.local/exchange")));
        assert!(allow.admits(&id("spiffe://ztx.local/operator/alice")));
        assert!(!allow.admits(&id("spiffe://ztx.local/operator")));
        assert!(!allow.admits(&id("spiffe://ztx.local/operatorx/alice")));
        assert!(!allow.admits(&id("spiffe://ztx.local/exchange/x")));
        assert!(!allow.admits(&id("spiffe://other.local/exchange")));
        assert!(Allow::new("ztx.local", &["spiffe://other.local/exchange"]).is_err());
    }

    proptest! {
        #[test]
        fn every_valid_id_prints_as_it_was_parsed(
            td in "[a-z0-9][a-z0-9.\\-_]{0,20}",
            segments in proptest::collection::vec("[A-Za-z0-9_\\-][A-Za-z0-9._\\-]{0,10}", 1..4),
        ) {
            let text = format!("spiffe://{td}/{}", segments.join("/"));
            prop_assume!(segments.iter().all(|s| s != "." && s != ".."));
            let id = SpiffeId::parse(&text).unwrap();
            prop_assert_eq!(id.to_string(), text);
        }

        #[test]
        fn parsing_any_string_never_panics(text in ".{0,80}") {
            let _ = SpiffeId::parse(&text);
            let _ = SpiffeId::parse(&format!("spiffe://{text}"));
        }
    }
}
