//! A string written by a 2.0 client to a `document` key becomes edits of its
//! Y.Text, never a replacement (yjs.md): concurrent 3.x edits elsewhere in
//! the text survive. Offsets are UTF-16 code units, as in Y.js.

use yrs::{Text, TextRef, TransactionMut};

/// Edits `text` (currently `old`) into `new`; whether anything changed.
pub fn apply_diff(txn: &mut TransactionMut, text: &TextRef, old: &str, new: &str) -> bool {
    if old == new {
        return false;
    }
    let mut at: u32 = 0;
    for chunk in dissimilar::diff(old, new) {
        match chunk {
            dissimilar::Chunk::Equal(s) => at += utf16_len(s),
            dissimilar::Chunk::Delete(s) => text.remove_range(txn, at, utf16_len(s)),
            dissimilar::Chunk::Insert(s) => {
                text.insert(txn, at, s);
                at += utf16_len(s);
            }
        }
    }
    true
}

fn utf16_len(s: &str) -> u32 {
    s.encode_utf16().count() as u32
}
