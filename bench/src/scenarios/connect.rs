//! `connect`: many connections to one fresh instance at once, until every
//! one has received `sync`.

use std::time::{Duration, Instant};

use super::{ms_between, within, CLOSE_GRACE};
use crate::ctx::{Better, Ctx, Out};
use crate::stats::Summary;
use crate::ws::Group;

pub async fn run(ctx: &mut Ctx, out: &mut Out) -> Result<(), String> {
    let conns = ctx.size(200, 40);
    out.param("connections", conns);
    let instance = ctx.instance("connect").await?;
    out.param("instanceId", instance.clone());
    out.whole_is_op_phase(conns, "connection");

    let mut g = Group::new();
    let res = body(ctx, out, &mut g, &instance, conns).await;
    g.close_all(CLOSE_GRACE).await;
    out.absorb(&g);
    res
}

async fn body(
    ctx: &mut Ctx,
    out: &mut Out,
    g: &mut Group,
    instance: &str,
    conns: usize,
) -> Result<(), String> {
    let cpu = out.cpu_mark(ctx);
    let t0 = Instant::now();
    let ids = g.connect(&ctx.target, instance, conns, conns).await?;
    let upgraded = Instant::now();
    g.wait_synced(&ids, within(out.deadline, Duration::from_secs(60)))
        .await?;
    let last = g.conns.iter().filter_map(|c| c.synced).max().unwrap_or(t0);
    let total = ms_between(t0, last);
    out.cpu_phase(ctx, cpu, "open-to-sync", conns, "connection", false)
        .await;

    let per: Vec<f64> = g
        .conns
        .iter()
        .filter_map(|c| c.synced.map(|s| ms_between(c.started, s)))
        .collect();
    let s = Summary::new(per);
    out.ms("totalMs", Some(total));
    out.ms("allUpgradedMs", Some(ms_between(t0, upgraded)));
    out.ms("p50Ms", s.pct(50.0));
    out.ms("p95Ms", s.pct(95.0));
    out.metric("connectToSyncMs", s.to_json());
    out.head("total_ms", Some(total), "ms", Better::Lower);
    out.head("p50", s.pct(50.0), "ms", Better::Lower);
    out.head("p95", s.pct(95.0), "ms", Better::Lower);
    Ok(())
}
