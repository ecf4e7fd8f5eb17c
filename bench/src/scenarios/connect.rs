//! `connect`: many connections to one fresh instance at once, until every
//! one has received `sync`.

use std::time::{Duration, Instant};

use super::{instance, ms_between, percentiles, sync_times, within, Sockets};
use crate::ctx::{Better, Ctx, Out};
use crate::stats::Summary;

pub async fn run(ctx: &mut Ctx, out: &mut Out, sockets: &mut Sockets) -> Result<(), String> {
    let conns = ctx.size(200, 40);
    out.param("connections", conns);
    let instance = instance(ctx, out, "connect").await?;
    out.whole_is_op_phase(conns, "connection");
    let g = sockets.group();
    let cpu = out.cpu_mark(ctx);
    let t0 = Instant::now();
    let ids = g.connect(&ctx.target, &instance, conns, conns).await?;
    let upgraded = Instant::now();
    g.wait_synced(&ids, within(out.deadline, Duration::from_secs(60)))
        .await?;
    let last = g.conns.iter().filter_map(|c| c.synced).max().unwrap_or(t0);
    let total = ms_between(t0, last);
    out.cpu_phase(ctx, cpu, "open-to-sync", conns, "connection", false)
        .await;

    let s = Summary::new(sync_times(&g.conns));
    out.ms("totalMs", Some(total));
    out.head("total_ms", Some(total), "ms", Better::Lower);
    out.ms("allUpgradedMs", Some(ms_between(t0, upgraded)));
    percentiles(out, &s, &[50, 95]);
    out.metric("connectToSyncMs", s.to_json());
    Ok(())
}
