//! Binary frames (yjs.md, "Binary frames"): exactly one y-protocols sync
//! message each, with no outer envelope — a lib0 varuint type (0 Step1,
//! 1 Step2, 2 Update), a varuint length, the payload.

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncMessage {
    /// A state vector: answer with what the sender lacks.
    Step1(Vec<u8>),
    /// A v1 update answering a Step1.
    Step2(Vec<u8>),
    /// A v1 update.
    Update(Vec<u8>),
}

pub const STEP1: u64 = 0;
pub const STEP2: u64 = 1;
pub const UPDATE: u64 = 2;

/// Why a frame is not one sync message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

/// Decodes a frame; the payload must end exactly where the frame does.
pub fn decode(frame: &[u8]) -> Result<SyncMessage, WireError> {
    let mut at = 0;
    let kind = read_varuint(frame, &mut at)?;
    let len = read_varuint(frame, &mut at)?;
    let rest = frame.len() - at;
    if len != rest as u64 {
        return Err(WireError(format!(
            "the frame announces a {len}-byte payload but carries {rest} bytes"
        )));
    }
    let payload = frame[at..].to_vec();
    match kind {
        STEP1 => Ok(SyncMessage::Step1(payload)),
        STEP2 => Ok(SyncMessage::Step2(payload)),
        UPDATE => Ok(SyncMessage::Update(payload)),
        other => Err(WireError(format!(
            "unknown sync message type {other} (0 Step1, 1 Step2, 2 Update)"
        ))),
    }
}

/// Encodes one message.
pub fn encode(kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 6);
    write_varuint(&mut out, kind);
    write_varuint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

fn read_varuint(buf: &[u8], at: &mut usize) -> Result<u64, WireError> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let Some(&byte) = buf.get(*at) else {
            return Err(WireError("the frame ends inside a varuint".into()));
        };
        *at += 1;
        if shift > 49 {
            return Err(WireError("a varuint is longer than 53 bits".into()));
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

fn write_varuint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_step1_is_three_bytes() {
        assert_eq!(encode(STEP1, &[0]), vec![0, 1, 0]);
        assert_eq!(decode(&[0, 1, 0]), Ok(SyncMessage::Step1(vec![0])));
    }

    #[test]
    fn long_payloads_round_trip() {
        let payload = vec![7u8; 300];
        let frame = encode(UPDATE, &payload);
        assert_eq!(&frame[..3], &[2, 0xac, 0x02]);
        assert_eq!(decode(&frame), Ok(SyncMessage::Update(payload)));
        assert_eq!(
            decode(&encode(STEP2, &[1, 2])),
            Ok(SyncMessage::Step2(vec![1, 2]))
        );
    }

    #[test]
    fn bad_frames_are_refused() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[1, 2]).is_err(), "announces 2 bytes, carries none");
        assert!(decode(&[2, 1, 0, 0]).is_err(), "trailing byte");
        assert!(decode(&[3, 0]).is_err(), "unknown type");
        assert!(decode(&[0x80, 0x80]).is_err(), "unterminated varuint");
    }
}
