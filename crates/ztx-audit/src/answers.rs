//! The proofs the server's public endpoints answer with, read as a customer reads them:
//! JSON from whoever is on the other end, so bounded, checked to answer what was asked,
//! and never trusted further than [`crate::witness::Witness`] verifies.
//!
//! ```text
//! GET /ztx/v1/audit/consistency?from=M&to=N  {"from":M,"to":N,"proof":["<base64>",…]}
//! GET /ztx/v1/audit/inclusion?index=I&size=N {"index":I,"size":N,"leaf":"<base64>","proof":[…]}
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use crate::hash::Hash;

/// Answers longer than this are refused before they are parsed (a proof for any size
/// that fits in a u64 is a few kilobytes).
pub const MAX_ANSWER_LEN: usize = 64 * 1024;
/// No proof for sizes that fit in a u64 has more hashes than this.
const MAX_PROOF_HASHES: usize = 192;

/// Why an answer is not the proof that was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer is longer than {MAX_ANSWER_LEN} bytes")]
    TooLong,
    #[error("the answer is not the expected JSON: {0}")]
    Json(String),
    #[error("the answer is for {field} {got}, not the {want} asked for")]
    Unasked {
        field: &'static str,
        got: u64,
        want: u64,
    },
    #[error("the proof has {0} hashes, more than any proof has")]
    TooManyHashes(usize),
    #[error("hash {at} of the proof is not a base64 32-byte hash")]
    BadHash { at: usize },
    #[error("the answer's leaf is not a base64 32-byte hash")]
    BadLeaf,
}

#[derive(Debug, Deserialize)]
struct Consistency {
    from: u64,
    to: u64,
    proof: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Inclusion {
    index: u64,
    size: u64,
    leaf: String,
    proof: Vec<String>,
}

/// An entry's leaf hash and its audit path, as the inclusion endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionAnswer {
    pub leaf: Hash,
    pub proof: Vec<Hash>,
}

fn json<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, AnswerError> {
    if text.len() > MAX_ANSWER_LEN {
        return Err(AnswerError::TooLong);
    }
    serde_json::from_str(text).map_err(|e| AnswerError::Json(e.to_string()))
}

fn same(field: &'static str, got: u64, want: u64) -> Result<(), AnswerError> {
    if got != want {
        return Err(AnswerError::Unasked { field, got, want });
    }
    Ok(())
}

fn hash(text: &str) -> Option<Hash> {
    B64.decode(text)
        .ok()
        .and_then(|bytes| Hash::from_slice(&bytes))
}

fn hashes(proof: &[String]) -> Result<Vec<Hash>, AnswerError> {
    if proof.len() > MAX_PROOF_HASHES {
        return Err(AnswerError::TooManyHashes(proof.len()));
    }
    proof
        .iter()
        .enumerate()
        .map(|(at, h)| hash(h).ok_or(AnswerError::BadHash { at }))
        .collect()
}

/// Reads the consistency endpoint's answer to `from=…&to=…`: the proof's hashes.
pub fn consistency(text: &str, from: u64, to: u64) -> Result<Vec<Hash>, AnswerError> {
    let answer: Consistency = json(text)?;
    same("from", answer.from, from)?;
    same("to", answer.to, to)?;
    hashes(&answer.proof)
}

/// Reads the inclusion endpoint's answer to `index=…&size=…`: the leaf and its path.
pub fn inclusion(text: &str, index: u64, size: u64) -> Result<InclusionAnswer, AnswerError> {
    let answer: Inclusion = json(text)?;
    same("index", answer.index, index)?;
    same("size", answer.size, size)?;
    Ok(InclusionAnswer {
        leaf: hash(&answer.leaf).ok_or(AnswerError::BadLeaf)?,
        proof: hashes(&answer.proof)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(h: &Hash) -> String {
        B64.encode(h.0)
    }

    #[test]
    fn reads_a_consistency_answer() {
        let (a, b) = (Hash::leaf(b"a"), Hash::leaf(b"b"));
        let text = format!(
            r#"{{"from":3,"to":7,"proof":["{}","{}"]}}"#,
            b64(&a),
            b64(&b)
        );
        assert_eq!(consistency(&text, 3, 7), Ok(vec![a, b]));
    }

    #[test]
    fn refuses_an_answer_to_another_question() {
        let text = r#"{"from":3,"to":6,"proof":[]}"#;
        assert_eq!(
            consistency(text, 3, 7),
            Err(AnswerError::Unasked {
                field: "to",
                got: 6,
                want: 7
            })
        );
        let text = r#"{"index":1,"size":7,"leaf":"","proof":[]}"#;
        assert!(matches!(
            inclusion(text, 2, 7),
            Err(AnswerError::Unasked { field: "index", .. })
        ));
    }

    #[test]
    fn refuses_a_truncated_or_garbled_answer() {
        let a = b64(&Hash::leaf(b"a"));
        let whole = format!(r#"{{"from":3,"to":7,"proof":["{a}"]}}"#);
        for cut in 0..whole.len() {
            assert!(consistency(&whole[..cut], 3, 7).is_err(), "{cut}");
        }
        let short = format!(r#"{{"from":3,"to":7,"proof":["{}"]}}"#, &a[..40]);
        assert_eq!(
            consistency(&short, 3, 7),
            Err(AnswerError::BadHash { at: 0 })
        );
        assert!(matches!(
            consistency("<html>502</html>", 3, 7),
            Err(AnswerError::Json(_))
        ));
        assert!(matches!(
            consistency(r#"{"from":-3,"to":7,"proof":[]}"#, 3, 7),
            Err(AnswerError::Json(_))
        ));
    }

    #[test]
    fn refuses_an_oversized_answer() {
        let many = vec![format!("\"{}\"", b64(&Hash::ZERO)); 193].join(",");
        let text = format!(r#"{{"from":3,"to":7,"proof":[{many}]}}"#);
        assert_eq!(
            consistency(&text, 3, 7),
            Err(AnswerError::TooManyHashes(193))
        );
        let huge = format!(
            r#"{{"from":3,"to":7,"proof":[],"x":"{}"}}"#,
            "a".repeat(70_000)
        );
        assert_eq!(consistency(&huge, 3, 7), Err(AnswerError::TooLong));
    }

    #[test]
    fn reads_an_inclusion_answer() {
        let (leaf, p) = (Hash::leaf(b"a"), Hash::leaf(b"p"));
        let text = format!(
            r#"{{"index":2,"size":7,"leaf":"{}","proof":["{}"]}}"#,
            b64(&leaf),
            b64(&p)
        );
        assert_eq!(
            inclusion(&text, 2, 7),
            Ok(InclusionAnswer {
                leaf,
                proof: vec![p]
            })
        );
    }
}
