//! `sync`: preload one instance with many 1 KiB keys, then open fresh
//! connections one after another (the writer stays connected) and time
//! connect → `sync`, checking the payload.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{ms_between, percentiles, tracked_instance, within, Sockets, CLOSE_GRACE};
use crate::ctx::{Better, Ctx, Out};
use crate::stats::{r3, Summary};
use crate::ws::{padded, set_frame, Delivery, Kind};

const VALUE_BYTES: usize = 1024;
const PRELOAD_BATCH: usize = 100;
const PER_BATCH: Duration = Duration::from_secs(30);
const PER_CONN: Duration = Duration::from_secs(30);

fn key(i: usize) -> String {
    format!("sync{i:05}")
}

fn value(i: usize) -> String {
    padded(&format!("{}:", key(i)), VALUE_BYTES)
}

pub async fn run(ctx: &mut Ctx, out: &mut Out, sockets: &mut Sockets) -> Result<(), String> {
    let keys = ctx.size(2000, 400);
    let conns = ctx.size(20, 5);
    out.params(json!({
        "keys": keys, "valueBytes": VALUE_BYTES, "preloadBatch": PRELOAD_BATCH,
        "freshConnections": conns,
    }));
    let (instance, g, t) = tracked_instance(ctx, out, sockets, "sync", 1).await?;

    // Preload, 100 sets at a time, each batch waited for through its echoes.
    let cpu = out.cpu_mark(ctx);
    let start = Instant::now();
    let mut i = 0;
    while i < keys {
        let n = PRELOAD_BATCH.min(keys - i);
        let mut frames = Vec::with_capacity(n);
        let mut seqs = Vec::with_capacity(n);
        let now = Instant::now();
        for j in i..i + n {
            frames.push(set_frame(&key(j), &value(j)));
            let seq = t.register(key(j), value(j));
            t.sent_at[seq] = Some(now);
            seqs.push(seq);
        }
        g.send_batch(0, frames).await?;
        let mut pending = n;
        let done = g
            .pump(within(out.deadline, PER_BATCH), |f| {
                if let Kind::KeyUpdated { key, value, .. } = &f.kind {
                    if let Delivery::New { .. } = t.on_key_updated(f.sock, key, value, f.at) {
                        pending -= 1;
                    }
                }
                pending == 0
            })
            .await;
        if !done {
            return Err(format!(
                "preload: keys {i}..{}: {pending} of {n} echoes missing after {} ms",
                i + n,
                PER_BATCH.as_millis()
            ));
        }
        i += n;
    }
    let preload_s = start.elapsed().as_secs_f64();
    out.ms("preloadMs", Some(preload_s * 1000.0));
    out.metric("preloadOpsPerSec", r3(keys as f64 / preload_s));
    out.cpu_phase(ctx, cpu, "preload", keys, "set", false).await;

    // Fresh connections, one after another.
    let cpu = out.cpu_mark(ctx);
    let mut times = Vec::with_capacity(conns);
    let mut payload_bytes: Vec<usize> = Vec::with_capacity(conns);
    let mut bad_payloads = Vec::new();
    let samples: Vec<usize> = [0, 1, keys / 3, keys / 2, keys - 2, keys - 1]
        .into_iter()
        .filter(|x| *x < keys)
        .collect();
    for c in 0..conns {
        let idx = g.connect(&ctx.target, &instance, 1, 1).await?[0];
        let started = g.conns[idx].started;
        let mut got: Option<(Instant, usize, Result<(), String>)> = None;
        g.pump(within(out.deadline, PER_CONN), |f| {
            if f.sock != idx {
                return false;
            }
            if let Kind::Sync { bytes, data } = &f.kind {
                let check = if data.len() != keys {
                    Err(format!("sync had {} keys, expected {keys}", data.len()))
                } else {
                    samples
                        .iter()
                        .find(|s| {
                            data.get(&key(**s))
                                .and_then(|e| e.get("value"))
                                .and_then(|v| v.as_str())
                                != Some(value(**s).as_str())
                        })
                        .map_or(Ok(()), |s| {
                            Err(format!("key {} missing or wrong in sync", key(*s)))
                        })
                };
                got = Some((f.at, *bytes, check));
                return true;
            }
            false
        })
        .await;
        let Some((at, bytes, check)) = got else {
            return Err(format!(
                "fresh connection {c}: no sync within {} ms",
                PER_CONN.as_millis()
            ));
        };
        times.push(ms_between(started, at));
        payload_bytes.push(bytes);
        if let Err(e) = check {
            bad_payloads.push(format!("connection {c}: {e}"));
        }
        g.close_some(&[idx], CLOSE_GRACE).await;
    }
    out.cpu_phase(ctx, cpu, "fresh connections", conns, "connection", true)
        .await;

    let s = Summary::new(times);
    percentiles(out, &s, &[50, 95]);
    out.ms("maxMs", s.max());
    out.metric("connectToSyncMs", s.to_json());
    let bytes = payload_bytes.iter().copied().max().unwrap_or(0);
    out.metric("syncPayloadBytes", bytes);
    out.metric(
        "syncPayloadBytesMin",
        payload_bytes.iter().copied().min().unwrap_or(0),
    );
    out.metric(
        "payloadChecks",
        json!({"failed": bad_payloads.len(), "samples": bad_payloads}),
    );
    out.head("payload_bytes", Some(bytes as f64), "B", Better::Lower);
    out.head(
        "preload_ops_per_s",
        Some(keys as f64 / preload_s),
        "ops/s",
        Better::Higher,
    );
    if !bad_payloads.is_empty() {
        return Err(format!("sync payload check failed: {}", bad_payloads[0]));
    }
    Ok(())
}
