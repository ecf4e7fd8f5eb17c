//! What the object counts of each WebSocket session for its log line
//! (`event: "websocket"`, docs/operations.md): frames in, frames out and
//! when it ended. Pure bookkeeping, kept in memory: a count costs a map
//! lookup per frame, and a broadcast costs one increment however many
//! sockets it reaches (each socket remembers the broadcast count at which
//! it started receiving them).
//!
//! An object that hibernates loses this memory (the sockets survive): the
//! counts of a session that outlives a hibernation cover only the time
//! since the object woke, and its line says `partial: true`. The session's
//! start time lives in its attachment, so its duration is always whole.

use std::collections::HashMap;

use crate::log::{Head, Level, SessionLine, Who};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    frames_in: u64,
    /// Frames sent to this socket alone (replies, `auth_success`, `sync`, …).
    sent: u64,
    /// The object's broadcast count when this socket began to receive
    /// broadcasts (it authenticated); `None` while it does not.
    broadcast_base: Option<u64>,
    /// Created after a wake-up, for a session that began before it.
    partial: bool,
}

/// The object's sessions, by connection id.
#[derive(Debug, Default)]
pub struct Sessions {
    counts: HashMap<u32, Counts>,
    broadcasts: u64,
}

/// A finished session's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub frames_in: u64,
    pub frames_out: u64,
    pub partial: bool,
}

impl Sessions {
    /// A socket was accepted now (authenticated, or to authenticate in-band).
    pub fn opened(&mut self, conn: u32, authenticated: bool) {
        self.counts.insert(
            conn,
            Counts {
                broadcast_base: authenticated.then_some(self.broadcasts),
                ..Counts::default()
            },
        );
    }

    fn entry(&mut self, conn: u32, authenticated: bool) -> &mut Counts {
        // Unknown: the session began before the object last woke; every
        // broadcast since then reached it if it was authenticated.
        self.counts.entry(conn).or_insert_with(|| Counts {
            broadcast_base: authenticated.then_some(0),
            partial: true,
            ..Counts::default()
        })
    }

    /// A frame arrived from the socket.
    pub fn received(&mut self, conn: u32, authenticated: bool) {
        self.entry(conn, authenticated).frames_in += 1;
    }

    /// `n` frames were sent to this socket alone.
    pub fn sent(&mut self, conn: u32, authenticated: bool, n: u64) {
        self.entry(conn, authenticated).sent += n;
    }

    /// The socket authenticated in-band: broadcasts reach it from now on.
    pub fn authenticated(&mut self, conn: u32) {
        let broadcasts = self.broadcasts;
        let counts = self.entry(conn, true);
        if counts.broadcast_base.is_none() {
            counts.broadcast_base = Some(broadcasts);
        }
    }

    /// One frame went to every authenticated socket.
    pub fn broadcast(&mut self) {
        self.broadcasts += 1;
    }

    /// The session ended: its numbers, and it is forgotten.
    pub fn end(&mut self, conn: u32, authenticated: bool) -> Ended {
        let counts = match self.counts.remove(&conn) {
            Some(c) => c,
            None => Counts {
                broadcast_base: authenticated.then_some(0),
                partial: true,
                ..Counts::default()
            },
        };
        let received_broadcasts = counts
            .broadcast_base
            .map_or(0, |base| self.broadcasts.saturating_sub(base));
        Ended {
            frames_in: counts.frames_in,
            frames_out: counts.sent + received_broadcasts,
            partial: counts.partial,
        }
    }
}

impl Ended {
    /// The session's log line.
    pub fn line<'a>(
        &self,
        now_ms: i64,
        opened_ms: i64,
        instance_id: &'a str,
        close_code: u16,
        who: Who,
    ) -> SessionLine<'a> {
        SessionLine {
            head: Head::new(now_ms, Level::Info, "websocket"),
            instance_id,
            duration_ms: if opened_ms > 0 {
                (now_ms - opened_ms).max(0)
            } else {
                0
            },
            frames_in: self.frames_in,
            frames_out: self.frames_out,
            close_code,
            partial: self.partial,
            who,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_counts_its_frames_and_the_broadcasts_it_received() {
        let mut s = Sessions::default();
        s.broadcast(); // before it joined: not its
        s.opened(1, true);
        s.sent(1, true, 2); // auth_success, sync
        s.received(1, true);
        s.broadcast(); // its own set, echoed
        s.received(1, true);
        s.sent(1, true, 1); // an error
        s.broadcast();
        let ended = s.end(1, true);
        assert_eq!(
            ended,
            Ended {
                frames_in: 2,
                frames_out: 5,
                partial: false
            }
        );
    }

    #[test]
    fn broadcasts_reach_a_pending_socket_only_once_it_authenticated() {
        let mut s = Sessions::default();
        s.opened(7, false);
        s.broadcast();
        s.received(7, false); // auth
        s.authenticated(7);
        s.sent(7, true, 2);
        s.broadcast();
        assert_eq!(s.end(7, true).frames_out, 3);
    }

    #[test]
    fn after_a_wake_up_the_counts_are_partial() {
        let mut s = Sessions::default();
        s.broadcast();
        s.received(3, true);
        let ended = s.end(3, true);
        assert_eq!(ended.frames_in, 1);
        assert_eq!(ended.frames_out, 1);
        assert!(ended.partial);
        // A session never seen since the wake-up ends with what is known.
        let unknown = s.end(4, false);
        assert!(unknown.partial);
        assert_eq!(unknown.frames_out, 0);
    }

    #[test]
    fn the_line_has_the_duration_and_the_close_code() {
        let mut s = Sessions::default();
        s.opened(1, true);
        let ended = s.end(1, true);
        let line = ended.line(10_500, 10_000, "i-1", 4003, Who::default());
        assert_eq!(line.duration_ms, 500);
        assert_eq!(line.close_code, 4003);
        assert_eq!(line.instance_id, "i-1");
        assert_eq!(
            ended.line(10_500, 0, "i", 1000, Who::default()).duration_ms,
            0
        );
    }
}
