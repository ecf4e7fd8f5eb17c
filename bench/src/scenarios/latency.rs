//! `latency`: 1 writer + 10 listeners on one instance, sequential sets: the
//! next set is sent only when all 11 sockets got the previous key_updated.

use std::time::{Duration, Instant};

use super::{ms_between, within, CLOSE_GRACE};
use crate::ctx::{Better, Ctx, Out};
use crate::stats::Summary;
use crate::ws::{padded, set_frame, Delivery, Group, Kind, Tracker};

const LISTENERS: usize = 10;
const WARMUP: usize = 10;
const VALUE_BYTES: usize = 32;
const PER_SET: Duration = Duration::from_secs(15);

pub async fn run(ctx: &mut Ctx, out: &mut Out) -> Result<(), String> {
    let ops = ctx.size(500, 100);
    out.param("listeners", LISTENERS);
    out.param("ops", ops);
    out.param("warmupOps", WARMUP);
    out.param("valueBytes", VALUE_BYTES);
    out.param("perSetTimeoutMs", PER_SET.as_millis() as u64);
    let instance = ctx.instance("latency").await?;
    out.param("instanceId", instance.clone());

    let mut g = Group::new();
    let mut t = Tracker::new(LISTENERS + 1);
    let res = body(ctx, out, &mut g, &mut t, &instance, ops).await;
    t.finish();
    g.close_all(CLOSE_GRACE).await;
    out.absorb(&g);
    out.absorb_tracker(&t);
    res
}

async fn body(
    ctx: &mut Ctx,
    out: &mut Out,
    g: &mut Group,
    t: &mut Tracker,
    instance: &str,
    ops: usize,
) -> Result<(), String> {
    let ids = g
        .connect(&ctx.target, instance, LISTENERS + 1, LISTENERS + 1)
        .await?;
    g.wait_synced(&ids, within(out.deadline, Duration::from_secs(30)))
        .await?;

    let mut last = Vec::with_capacity(ops);
    let mut echo = Vec::with_capacity(ops);
    let mut first = Vec::with_capacity(ops);
    let cpu = out.cpu_mark(ctx);
    let phase_start = Instant::now();
    let total = WARMUP + ops;
    for i in 0..total {
        let key = format!("lat{i:05}");
        let value = padded(&format!("v{i}:"), VALUE_BYTES);
        let frame = set_frame(&key, &value);
        let seq = t.register(key.clone(), value);
        let sent = Instant::now();
        t.sent_at[seq] = Some(sent);
        g.send(0, frame).await?;
        let deadline = within(out.deadline, PER_SET);
        let done = g
            .pump(deadline, |f| match &f.kind {
                Kind::KeyUpdated { key, value, .. } => {
                    matches!(t.on_key_updated(f.sock, key, value, f.at), Delivery::New { seq: s, complete: true } if s == seq)
                }
                _ => false,
            })
            .await;
        if !done {
            out.metric("completedOps", i.saturating_sub(WARMUP));
            return Err(format!(
                "set \"{key}\" (op {i}): only {}/{} sockets received key_updated within {} ms",
                t.delivered[seq],
                LISTENERS + 1,
                PER_SET.as_millis()
            ));
        }
        if i >= WARMUP {
            let (f, l) = t.first_last(seq);
            if let (Some(f), Some(l)) = (f, l) {
                first.push(ms_between(sent, f));
                last.push(ms_between(sent, l));
            }
            if let Some(e) = t.arrivals[seq][0] {
                echo.push(ms_between(sent, e));
            }
        }
    }
    let wall = phase_start.elapsed().as_secs_f64();
    out.cpu_phase(ctx, cpu, "sets", total, "set", true).await;

    let last = Summary::new(last);
    out.metric("completedOps", ops);
    out.ms("p50Ms", last.pct(50.0));
    out.ms("p95Ms", last.pct(95.0));
    out.ms("p99Ms", last.pct(99.0));
    out.metric("sendToLastDeliveryMs", last.to_json());
    out.metric("sendToWriterEchoMs", Summary::new(echo).to_json());
    out.metric("sendToFirstDeliveryMs", Summary::new(first).to_json());
    out.metric("opsPerSec", crate::stats::r3(total as f64 / wall));
    out.head("p50", last.pct(50.0), "ms", Better::Lower);
    out.head("p95", last.pct(95.0), "ms", Better::Lower);
    out.head("p99", last.pct(99.0), "ms", Better::Lower);
    Ok(())
}
