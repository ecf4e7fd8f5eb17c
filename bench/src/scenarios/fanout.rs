//! `fanout`: many sockets on one instance (connected 20 at a time); sets one
//! at a time from socket 0, each timed until every socket has it.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{instance, ms_between, open_synced, percentiles, set_everywhere, Sockets, VALUE_BYTES};
use crate::ctx::{Better, Ctx, Out};
use crate::stats::{r3, Summary};
use crate::ws::padded;

const SETS: usize = 20;
const WARMUP: usize = 2;
const CONCURRENCY: usize = 20;
const PER_SET: Duration = Duration::from_secs(30);

pub async fn run(ctx: &mut Ctx, out: &mut Out, sockets: &mut Sockets) -> Result<(), String> {
    let clients = ctx.size(200, 40);
    out.params(json!({
        "clients": clients, "sets": SETS, "warmupSets": WARMUP,
        "connectConcurrency": CONCURRENCY, "valueBytes": VALUE_BYTES,
        "perSetTimeoutMs": PER_SET.as_millis() as u64,
    }));
    let instance = instance(ctx, out, "fanout").await?;
    let (g, t) = sockets.tracked(clients);
    let cpu = out.cpu_mark(ctx);
    let t0 = Instant::now();
    let wait = Duration::from_secs(60);
    open_synced(ctx, out, g, &instance, clients, CONCURRENCY, wait).await?;
    out.ms("connectAllMs", Some(ms_between(t0, Instant::now())));
    out.cpu_phase(ctx, cpu, "connect", clients, "connection", false)
        .await;

    let cpu = out.cpu_mark(ctx);
    let mut per_set = Vec::with_capacity(SETS);
    let mut first = Vec::with_capacity(SETS);
    for i in 0..WARMUP + SETS {
        let key = format!("fan{i:04}");
        let value = padded(&format!("v{i}:"), VALUE_BYTES);
        let set = set_everywhere(g, t, &key, value, out.deadline, PER_SET).await?;
        if !set.delivered {
            return Err(format!(
                "set \"{key}\": only {}/{clients} sockets received key_updated within {} ms",
                t.delivered[set.seq],
                PER_SET.as_millis()
            ));
        }
        if i >= WARMUP {
            let (f, l) = t.first_last(set.seq);
            if let (Some(f), Some(l)) = (f, l) {
                per_set.push(ms_between(set.sent, l));
                first.push(ms_between(set.sent, f));
            }
        }
    }
    out.cpu_phase(ctx, cpu, "sets", WARMUP + SETS, "set", true)
        .await;

    let s = Summary::new(per_set);
    let msgs_per_sec = (SETS * clients) as f64 / (s.sum() / 1000.0);
    percentiles(out, &s, &[50, 95]);
    out.metric("sendToAllDeliveredMs", s.to_json());
    out.metric("sendToFirstDeliveryMs", Summary::new(first).to_json());
    out.metric("messagesPerSec", r3(msgs_per_sec));
    out.head("msgs_per_s", Some(msgs_per_sec), "msg/s", Better::Higher);
    Ok(())
}
