//! `throughput`: 1 writer + 1 listener; the writer pipelines every set (in
//! batches of 50, yielding between them) and the listener must get them all,
//! in send order, once each, with the values sent.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{ms_between, rate, stream_check, tracked_instance, within, Sockets, VALUE_BYTES};
use crate::ctx::{Ctx, Out};
use crate::stats::r3;
use crate::ws::{padded, send_all, set_frame, Kind};

const BATCH: usize = 50;
const STALL: Duration = Duration::from_secs(20);

pub async fn run(ctx: &mut Ctx, out: &mut Out, sockets: &mut Sockets) -> Result<(), String> {
    let ops = ctx.size(5000, 1000);
    out.params(json!({
        "ops": ops, "batch": BATCH, "valueBytes": VALUE_BYTES,
        "stallTimeoutMs": STALL.as_millis() as u64,
    }));
    let (_, g, t) = tracked_instance(ctx, out, sockets, "throughput", 2).await?;

    let mut frames = Vec::with_capacity(ops);
    for i in 0..ops {
        let key = format!("tp{i:06}");
        let value = padded(&format!("v{i}:"), VALUE_BYTES);
        frames.push(set_frame(&key, &value));
        t.register(key, value);
    }
    let Some(mut sink) = g.take_sink(0) else {
        return Err("writer socket has no sink".into());
    };
    let cpu = out.cpu_mark(ctx);
    let start = Instant::now();
    for s in t.sent_at.iter_mut() {
        *s = Some(start);
    }
    let writer = tokio::spawn(async move {
        let mut frames = frames.into_iter();
        let mut res = Ok(());
        loop {
            let batch: Vec<String> = frames.by_ref().take(BATCH).collect();
            if batch.is_empty() {
                break;
            }
            if let Err(e) = send_all(&mut sink, batch).await {
                res = Err(e);
                break;
            }
            tokio::task::yield_now().await;
        }
        (sink, res, Instant::now())
    });

    let mut got = [0usize; 2];
    let mut done_at: [Option<Instant>; 2] = [None, None];
    let mut progress = Instant::now();
    while got[1] < ops || got[0] < ops {
        let deadline = within(out.deadline, STALL).min(progress + STALL);
        let Some(f) = g.recv(deadline).await else {
            break;
        };
        if let Kind::KeyUpdated { key, value, .. } = &f.kind {
            if f.sock < 2 {
                if let crate::ws::Delivery::New { .. } = t.on_key_updated(f.sock, key, value, f.at)
                {
                    got[f.sock] += 1;
                    progress = f.at;
                    if got[f.sock] == ops {
                        done_at[f.sock] = Some(f.at);
                    }
                }
            }
        }
    }
    let (sink, send_res, sent_all_at) = writer
        .await
        .map_err(|e| format!("writer task failed: {e}"))?;
    g.put_sink(0, sink);
    out.cpu_phase(ctx, cpu, "sets", ops, "set", true).await;

    out.metric("listenerReceived", got[1]);
    out.metric("writerEchoes", got[0]);
    out.ms("sendLoopMs", Some(ms_between(start, sent_all_at)));
    send_res?;
    let (Some(listener_done), Some(writer_done)) = (done_at[1], done_at[0]) else {
        return Err(format!(
            "listener got {}/{ops} and writer {}/{ops} key_updated; no progress for {} ms",
            got[1],
            got[0],
            STALL.as_millis()
        ));
    };
    rate(out, "", ops, start, listener_done);
    out.metric(
        "writerEchoOpsPerSec",
        r3(ops as f64 / writer_done.duration_since(start).as_secs_f64()),
    );
    let intact = stream_check("stream check failed", &t.counts);
    out.metric("inOrderAndIntact", intact.is_ok());
    intact
}
