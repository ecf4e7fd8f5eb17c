//! `fanout`: many sockets on one instance (connected 20 at a time); sets one
//! at a time from socket 0, each timed until every socket has it.

use std::time::{Duration, Instant};

use super::{ms_between, within, CLOSE_GRACE};
use crate::ctx::{Better, Ctx, Out};
use crate::stats::{r3, Summary};
use crate::ws::{padded, set_frame, Delivery, Group, Kind, Tracker};

const SETS: usize = 20;
const WARMUP: usize = 2;
const CONCURRENCY: usize = 20;
const VALUE_BYTES: usize = 32;
const PER_SET: Duration = Duration::from_secs(30);

pub async fn run(ctx: &mut Ctx, out: &mut Out) -> Result<(), String> {
    let clients = ctx.size(200, 40);
    out.param("clients", clients);
    out.param("sets", SETS);
    out.param("warmupSets", WARMUP);
    out.param("connectConcurrency", CONCURRENCY);
    out.param("valueBytes", VALUE_BYTES);
    out.param("perSetTimeoutMs", PER_SET.as_millis() as u64);
    let instance = ctx.instance("fanout").await?;
    out.param("instanceId", instance.clone());

    let mut g = Group::new();
    let mut t = Tracker::new(clients);
    let res = body(ctx, out, &mut g, &mut t, &instance, clients).await;
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
    clients: usize,
) -> Result<(), String> {
    let cpu = out.cpu_mark(ctx);
    let t0 = Instant::now();
    let ids = g
        .connect(&ctx.target, instance, clients, CONCURRENCY)
        .await?;
    g.wait_synced(&ids, within(out.deadline, Duration::from_secs(60)))
        .await?;
    out.ms("connectAllMs", Some(ms_between(t0, Instant::now())));
    out.cpu_phase(ctx, cpu, "connect", clients, "connection", false)
        .await;

    let cpu = out.cpu_mark(ctx);
    let mut per_set = Vec::with_capacity(SETS);
    let mut first = Vec::with_capacity(SETS);
    for i in 0..WARMUP + SETS {
        let key = format!("fan{i:04}");
        let value = padded(&format!("v{i}:"), VALUE_BYTES);
        let frame = set_frame(&key, &value);
        let seq = t.register(key.clone(), value);
        let sent = Instant::now();
        t.sent_at[seq] = Some(sent);
        g.send(0, frame).await?;
        let done = g
            .pump(within(out.deadline, PER_SET), |f| match &f.kind {
                Kind::KeyUpdated { key, value, .. } => {
                    matches!(t.on_key_updated(f.sock, key, value, f.at), Delivery::New { seq: s, complete: true } if s == seq)
                }
                _ => false,
            })
            .await;
        if !done {
            return Err(format!(
                "set \"{key}\": only {}/{clients} sockets received key_updated within {} ms",
                t.delivered[seq],
                PER_SET.as_millis()
            ));
        }
        if i >= WARMUP {
            let (f, l) = t.first_last(seq);
            if let (Some(f), Some(l)) = (f, l) {
                per_set.push(ms_between(sent, l));
                first.push(ms_between(sent, f));
            }
        }
    }
    out.cpu_phase(ctx, cpu, "sets", WARMUP + SETS, "set", true)
        .await;

    let s = Summary::new(per_set);
    let msgs_per_sec = (SETS * clients) as f64 / (s.sum() / 1000.0);
    out.ms("p50Ms", s.pct(50.0));
    out.ms("p95Ms", s.pct(95.0));
    out.metric("sendToAllDeliveredMs", s.to_json());
    out.metric("sendToFirstDeliveryMs", Summary::new(first).to_json());
    out.metric("messagesPerSec", r3(msgs_per_sec));
    out.head("p50", s.pct(50.0), "ms", Better::Lower);
    out.head("p95", s.pct(95.0), "ms", Better::Lower);
    out.head("msgs_per_s", Some(msgs_per_sec), "msg/s", Better::Higher);
    Ok(())
}
