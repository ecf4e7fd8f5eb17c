//! `fanout`: many sockets on one instance (connected 20 at a time); sets one
//! at a time from socket 0, each timed until every socket has it.

use std::time::{Duration, Instant};

use super::{fan_out, fan_out_params, instance, ms_between, open_synced, percentiles, Sockets};
use crate::ctx::{Better, Ctx, Out};
use crate::stats::{r3, Summary};

const SETS: usize = 20;
const WARMUP: usize = 2;
const CONCURRENCY: usize = 20;
const PER_SET: Duration = Duration::from_secs(30);

pub async fn run(ctx: &mut Ctx, out: &mut Out, sockets: &mut Sockets) -> Result<(), String> {
    let clients = ctx.size(200, 40);
    fan_out_params(out, clients, (WARMUP, SETS), CONCURRENCY, PER_SET);
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
    let times = fan_out(g, t, out.deadline, "fan", (WARMUP, SETS), PER_SET).await?;
    out.cpu_phase(ctx, cpu, "sets", WARMUP + SETS, "set", true)
        .await;

    let s = Summary::new(times.last);
    let msgs_per_sec = (SETS * clients) as f64 / (s.sum() / 1000.0);
    percentiles(out, &s, &[50, 95]);
    out.metric("sendToAllDeliveredMs", s.to_json());
    out.metric("sendToFirstDeliveryMs", Summary::new(times.first).to_json());
    out.metric("messagesPerSec", r3(msgs_per_sec));
    out.head("msgs_per_s", Some(msgs_per_sec), "msg/s", Better::Higher);
    Ok(())
}
