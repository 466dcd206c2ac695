//! Transparency log entries (Rekor v1 and v2): the signed entry timestamp
//! (SET), the inclusion proof (RFC 6962 / RFC 9162 Merkle audit path), the
//! checkpoint (a signed note over the tree head), and whether the logged
//! body says what the bundle says.

use sha2::{Digest as _, Sha256};

use super::bundle::{InclusionProof, TlogEntry, b64};
use super::crypto::Hash;
use super::root::Log;

fn hash_children(left: &[u8], right: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// RFC 6962 leaf hash.
pub fn leaf_hash(body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(body);
    h.finalize().into()
}

/// The root a Merkle audit path leads to (RFC 9162 §2.1.3.2), or why
/// the path is malformed.
pub fn root_from_proof(
    index: u64,
    size: u64,
    leaf: [u8; 32],
    proof: &[Vec<u8>],
) -> Result<[u8; 32], String> {
    if index >= size {
        return Err(format!(
            "leaf index {index} is outside a tree of size {size}"
        ));
    }
    if proof.iter().any(|h| h.len() != 32) {
        return Err("a proof hash is not 32 bytes".into());
    }
    // Inner nodes: below the point where the paths of `index` and of the
    // last leaf meet; border: the right border above it.
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    if proof.len() != inner + border {
        return Err(format!(
            "the proof has {} hashes; a tree of size {size} needs {} for leaf {index}",
            proof.len(),
            inner + border
        ));
    }
    let mut node = leaf;
    for (i, h) in proof[..inner].iter().enumerate() {
        node = if (index >> i) & 1 == 0 {
            hash_children(&node, h)
        } else {
            hash_children(h, &node)
        };
    }
    for h in &proof[inner..] {
        node = hash_children(h, &node);
    }
    Ok(node)
}

/// Verifies the inclusion proof of `entry` and its checkpoint, signed by
/// `log`.
pub fn verify_inclusion(
    entry: &TlogEntry,
    proof: &InclusionProof,
    log: &Log,
) -> Result<(), String> {
    let root = root_from_proof(
        proof.log_index,
        proof.tree_size,
        leaf_hash(&entry.body),
        &proof.hashes,
    )?;
    if root.as_slice() != proof.root_hash.as_slice() {
        return Err("the audit path does not lead to the stated root hash".into());
    }
    let checkpoint = proof
        .checkpoint
        .as_ref()
        .ok_or("the inclusion proof has no checkpoint")?;
    let note = verify_checkpoint(&checkpoint.envelope, log)?;
    if note.size != proof.tree_size {
        return Err(format!(
            "the checkpoint is for a tree of size {}, the proof for {}",
            note.size, proof.tree_size
        ));
    }
    if note.root_hash != proof.root_hash {
        return Err("the checkpoint's root hash is not the proof's".into());
    }
    Ok(())
}

/// A verified checkpoint's tree head.
#[derive(Debug)]
pub struct Note {
    pub origin: String,
    pub size: u64,
    pub root_hash: Vec<u8>,
}

/// Verifies a checkpoint, a signed note (C2SP signed-note and
/// tlog-checkpoint): the text, a blank line, then signature lines
/// `— <name> <base64(4-byte key hint || signature)>`. At least one line
/// must carry the log's key hint and verify with the log's key; lines of
/// other signers (witnesses) are allowed and ignored.
pub fn verify_checkpoint(envelope: &str, log: &Log) -> Result<Note, String> {
    let (text, sigs) = envelope
        .split_once("\n\n")
        .ok_or("the checkpoint has no signature block")?;
    let body = format!("{text}\n");
    let mut lines = text.split('\n');
    let origin = lines.next().unwrap_or_default().to_string();
    if origin.is_empty() {
        return Err("the checkpoint has no origin line".into());
    }
    let size = lines
        .next()
        .filter(|s| !s.is_empty())
        .ok_or("the checkpoint has no tree size line")?
        .parse::<u64>()
        .map_err(|_| "the checkpoint's tree size is not a number".to_string())?;
    let root_hash = lines
        .next()
        .filter(|s| !s.is_empty())
        .ok_or("the checkpoint has no root hash line")
        .and_then(|s| {
            b64(s, "the checkpoint's root hash")
                .map_err(|_| "the checkpoint's root hash is not base64")
        })?;
    let hint = log
        .id
        .get(..4)
        .ok_or("the log id is shorter than a key hint")?;
    let mut saw_hint = false;
    for line in sigs.lines().filter(|l| !l.is_empty()) {
        let Some(rest) = line.strip_prefix("— ") else {
            return Err(format!(
                "a checkpoint signature line is malformed: '{line}'"
            ));
        };
        let Some((_name, sig)) = rest.rsplit_once(' ') else {
            return Err("a checkpoint signature line has no signature".into());
        };
        let Ok(raw) = b64(sig, "a checkpoint signature") else {
            continue;
        };
        if raw.len() < 5 || &raw[..4] != hint {
            continue;
        }
        saw_hint = true;
        if log.key.verify(Hash::Sha256, body.as_bytes(), &raw[4..]) {
            return Ok(Note {
                origin,
                size,
                root_hash,
            });
        }
    }
    Err(if saw_hint {
        "the checkpoint's signature does not verify with the log's key".into()
    } else {
        "the checkpoint carries no signature by the log that holds the entry".into()
    })
}

/// Verifies the signed entry timestamp (Rekor v1's inclusion promise):
/// the log's signature over the canonical JSON of body, integrated time,
/// log id and log index.
pub fn verify_set(entry: &TlogEntry, set: &[u8], log: &Log) -> Result<(), String> {
    use base64::Engine as _;
    let integrated = entry
        .integrated_time
        .ok_or("a signed entry timestamp needs an integrated time")?;
    let hex = super::hex(&entry.log_id);
    // Keys in sorted order, no whitespace: RFC 8785 for this shape.
    let payload = format!(
        "{{\"body\":\"{}\",\"integratedTime\":{integrated},\"logID\":\"{hex}\",\"logIndex\":{}}}",
        base64::engine::general_purpose::STANDARD.encode(&entry.body),
        entry.log_index
    );
    if log.key.verify(Hash::Sha256, payload.as_bytes(), set) {
        Ok(())
    } else {
        Err("the signed entry timestamp does not verify with the log's key".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the RFC 6962 tree hash of `leaves` directly.
    fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let k = leaves.len().next_power_of_two() / 2;
        hash_children(&mth(&leaves[..k]), &mth(&leaves[k..]))
    }

    fn path(leaves: &[[u8; 32]], m: usize) -> Vec<Vec<u8>> {
        if leaves.len() == 1 {
            return Vec::new();
        }
        let k = leaves.len().next_power_of_two() / 2;
        if m < k {
            let mut p = path(&leaves[..k], m);
            p.push(mth(&leaves[k..]).to_vec());
            p
        } else {
            let mut p = path(&leaves[k..], m - k);
            p.push(mth(&leaves[..k]).to_vec());
            p
        }
    }

    #[test]
    fn audit_paths_of_every_leaf_of_small_trees_verify_and_tampering_fails() {
        for size in 1..=17usize {
            let leaves: Vec<[u8; 32]> = (0..size).map(|i| leaf_hash(&[i as u8])).collect();
            let root = mth(&leaves);
            for m in 0..size {
                let p = path(&leaves, m);
                assert_eq!(
                    root_from_proof(m as u64, size as u64, leaves[m], &p).expect("valid path"),
                    root,
                    "size {size} leaf {m}"
                );
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0] = first.iter().map(|b| b ^ 1).collect();
                    assert_ne!(
                        root_from_proof(m as u64, size as u64, leaves[m], &bad)
                            .expect("well-formed path"),
                        root
                    );
                }
                assert!(root_from_proof(size as u64, size as u64, leaves[m], &p).is_err());
            }
        }
    }
}
