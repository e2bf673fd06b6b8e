//! Fuzzes everything the audit verifier reads from outside: entry bytes (which must
//! decode to their one encoding or fail), checkpoints, verifier keys and signed notes,
//! proofs, whole exports, the server's proof answers and a witness's state file. The
//! first byte picks the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ztx_audit::{
    Checkpoint, Entry, Hash, VerifierKey, Witness, answers, verify_consistency, verify_inclusion,
};

const KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => {
            if let Ok(entry) = Entry::decode(rest) {
                assert_eq!(entry.encode().as_deref(), Ok(rest));
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(checkpoint) = Checkpoint::parse(text) {
                    assert_eq!(checkpoint.to_text(), text);
                }
                let _ = VerifierKey::parse(text);
            }
        }
        2 => {
            if let (Ok(text), Ok(key)) = (std::str::from_utf8(rest), VerifierKey::parse(KEY)) {
                let _ = key.open(text);
            }
        }
        3 => {
            if let Ok(key) = VerifierKey::parse(KEY) {
                let _ = ztx_audit::export::verify(rest, &key, None);
            }
        }
        5 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = answers::consistency(text, 3, 7);
                let _ = answers::inclusion(text, 2, 7);
            }
        }
        6 => {
            if let Ok(text) = std::str::from_utf8(rest)
                && let Ok(witness) = Witness::from_state(text)
            {
                assert_eq!(
                    Witness::from_state(&witness.to_state()).as_ref(),
                    Ok(&witness)
                );
            }
        }
        _ => {
            // 16 bytes of sizes, then hashes.
            let Some((sizes, hashes)) = rest.split_first_chunk::<16>() else {
                return;
            };
            let (a, b) = sizes.split_at(8);
            let a = u64::from_be_bytes(a.try_into().unwrap_or_default());
            let b = u64::from_be_bytes(b.try_into().unwrap_or_default());
            let proof: Vec<Hash> = hashes
                .chunks_exact(32)
                .filter_map(Hash::from_slice)
                .collect();
            let (x, y) = (Hash::leaf(b"x"), Hash::leaf(b"y"));
            let _ = verify_inclusion(a, b, &x, &proof, &y);
            let _ = verify_consistency(a, b, &x, &y, &proof);
        }
    }
});
