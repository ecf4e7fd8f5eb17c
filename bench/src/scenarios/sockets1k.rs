//! `sockets1k`: a thousand sockets on one instance. One socket loads the
//! instance first; the workerd processes' resident memory is read, the
//! other sockets connect 50 at a time, memory is read again, and then sets
//! from socket 0 are timed one at a time until every socket has each.

use std::time::{Duration, Instant};

use super::{
    ensure_fds, fan_out, fan_out_params, instance, ms_between, named_percentiles, open_synced,
    stream_check, sync_times, Sockets,
};
use crate::cpu;
use crate::ctx::{Better, Ctx, Out};
use crate::stats::{r3, Summary};

const WARMUP: usize = 2;
const CONCURRENCY: usize = 50;
const PER_SET: Duration = Duration::from_secs(30);
/// How long the server is left alone before its memory is read.
const SETTLE: Duration = Duration::from_millis(500);

/// VmRSS (KiB) summed over the server's workerd processes after [`SETTLE`],
/// or None without `--server-pid` (or when none could be read).
async fn workerd_rss(ctx: &Ctx, out: &mut Out, when: &str) -> Option<u64> {
    let probe = ctx.cpu.as_ref()?;
    tokio::time::sleep(SETTLE).await;
    let (kib, procs) = cpu::workerd_rss_kib(&cpu::sample(probe.pid));
    if procs == 0 {
        return None;
    }
    out.metric(&format!("workerdRssKiB{when}"), kib);
    out.metric("workerdProcesses", procs);
    Some(kib)
}

pub async fn run(ctx: &mut Ctx, out: &mut Out, sockets: &mut Sockets) -> Result<(), String> {
    let clients = ctx.size(1000, 200);
    let sets = ctx.size(20, 10);
    ensure_fds(out, clients)?;
    fan_out_params(out, clients, (WARMUP, sets), CONCURRENCY, PER_SET);
    let instance = instance(ctx, out, "sockets1k").await?;
    let (g, t) = sockets.tracked(clients);
    let wait = Duration::from_secs(30);
    open_synced(ctx, out, g, &instance, 1, 1, wait).await?;
    let before = workerd_rss(ctx, out, "Before").await;

    let cpu = out.cpu_mark(ctx);
    let t0 = Instant::now();
    let rest = clients - 1;
    let wait = Duration::from_secs(120);
    open_synced(ctx, out, g, &instance, rest, CONCURRENCY, wait).await?;
    let last = g.conns.iter().filter_map(|c| c.synced).max().unwrap_or(t0);
    let total = ms_between(t0, last);
    out.cpu_phase(ctx, cpu, "connect", rest, "connection", false)
        .await;
    let connect = Summary::new(sync_times(&g.conns[1..]));
    named_percentiles(out, "connect", &connect, &[50, 99]);
    out.metric("connectToSyncMs", connect.to_json());
    out.ms("connectTotalMs", Some(total));
    out.head("connect_total_ms", Some(total), "ms", Better::Lower);

    let after = workerd_rss(ctx, out, "Connected").await;
    match (before, after) {
        (Some(b), Some(a)) => {
            let per = (a as f64 - b as f64) / rest as f64;
            out.metric("rssKiBPerSocket", r3(per));
            out.head("rss_kib_per_socket", Some(per), "KiB", Better::Lower);
        }
        _ => out.warn("workerd memory not measured (needs --server-pid)"),
    }

    let cpu = out.cpu_mark(ctx);
    let times = fan_out(g, t, out.deadline, "k1k-", (WARMUP, sets), PER_SET).await?;
    out.cpu_phase(ctx, cpu, "sets", WARMUP + sets, "set", true)
        .await;
    workerd_rss(ctx, out, "AfterSets").await;

    let s = Summary::new(times.last);
    named_percentiles(out, "fanout", &s, &[50, 99]);
    out.metric("sendToAllDeliveredMs", s.to_json());
    out.metric("sendToFirstDeliveryMs", Summary::new(times.first).to_json());
    stream_check("fan-out", &t.counts)
}
