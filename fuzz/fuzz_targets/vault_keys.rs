//! Fuzzes what the vault reads from key files, the environment and the database: the
//! key-encryption-key text (`kek`, `ZTX_KEKS`), a 64-hex-digit key, and a stored sealed
//! address with its wrapped data key. None may panic; a key text that parses prints back
//! to text that parses to the same versions; bytes that are not a sealing never open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ztx_vault::MasterKey;
use ztx_vault::contact::{ContactKeys, SealedEmail};
use ztx_vault::envelope::{IndexKey, LocalKeks, WrappedKey};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(keks) = LocalKeks::from_text(&text) {
                let again = LocalKeks::from_text(&keks.to_text()).expect("printed text parses");
                assert_eq!(again.versions(), keks.versions());
            }
        }
        1 => {
            let text = String::from_utf8_lossy(rest);
            let _ = MasterKey::from_hex(&text);
            let _ = IndexKey::from_hex(&text);
        }
        _ => {
            let keys = ContactKeys::new(LocalKeks::generate(), IndexKey::generate());
            let (version, rest) = rest.split_at(rest.len().min(4));
            let mut v = [0u8; 4];
            v[..version.len()].copy_from_slice(version);
            let split = rest.len() / 2;
            let sealed = SealedEmail {
                sealed: rest[..split].to_vec(),
                key: WrappedKey {
                    kek_version: u32::from_be_bytes(v),
                    sealed: rest[split..].to_vec(),
                },
            };
            assert!(keys.open_email(1, &sealed).is_err(), "random bytes opened");
        }
    }
});
