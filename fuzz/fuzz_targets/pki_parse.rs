//! Fuzzes what the PKI reads from files and peers: PEM certificate chains, single DER
//! certificates (a TLS peer's), revocation lists, and SPIFFE ids and allow-list
//! patterns. The first byte picks the parser; none may panic, and a SPIFFE id that
//! parses prints back as it was written.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ztx_pki::verify::{CertInfo, Crl, certificates};
use ztx_pki::{Allow, SpiffeId};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    let path = Path::new("fuzz");
    match which % 4 {
        0 => {
            if let Ok(chain) = certificates(path, rest) {
                for der in chain {
                    let _ = CertInfo::from_der(path, &der);
                }
            }
        }
        1 => {
            if let Ok(info) = CertInfo::from_der(path, rest) {
                let _ = info.check_current(path, 0);
            }
        }
        2 => {
            let _ = Crl::parse(path, rest);
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(id) = SpiffeId::parse(text) {
                    assert_eq!(id.to_string(), text);
                }
                let _ = Allow::new("ztx.local", &[text]);
            }
        }
    }
});
