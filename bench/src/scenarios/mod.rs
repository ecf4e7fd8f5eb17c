//! The scenarios. Each one uses fresh instance ids, is bounded in time
//! (a deadline checked by every wait, and a hard timeout around it), and
//! closes the sockets it opened whatever happened.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ctx::{Ctx, Headline, Out};

mod connect;
mod fanout;
mod fullstate;
mod http;
mod latency;
mod multi;
mod sync;
mod throughput;

pub const ALL: [&str; 8] = [
    "latency",
    "throughput",
    "fanout",
    "sync",
    "connect",
    "http",
    "multi",
    "fullstate",
];

/// The time budget of a scenario before `--timeout-scale`.
pub fn base_timeout(name: &str) -> Duration {
    Duration::from_secs(match name {
        "latency" | "fanout" | "sync" => 180,
        "multi" | "fullstate" => 300,
        _ => 120,
    })
}

/// How long to wait for the server's close frames at the end.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// The earlier of `deadline` and `d` from now.
pub fn within(deadline: Instant, d: Duration) -> Instant {
    deadline.min(Instant::now() + d)
}

pub fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1000.0
}

/// Runs one scenario; returns (ok, its JSON, its headline figures).
pub async fn run(name: &'static str, ctx: &mut Ctx) -> (bool, Value, Vec<Headline>) {
    let timeout = ctx.scaled(base_timeout(name));
    let mut out = Out::new(name, timeout, ctx);
    let work = async {
        match name {
            "latency" => latency::run(ctx, &mut out).await,
            "throughput" => throughput::run(ctx, &mut out).await,
            "fanout" => fanout::run(ctx, &mut out).await,
            "sync" => sync::run(ctx, &mut out).await,
            "connect" => connect::run(ctx, &mut out).await,
            "http" => http::run(ctx, &mut out).await,
            "multi" => multi::run(ctx, &mut out).await,
            "fullstate" => fullstate::run(ctx, &mut out).await,
            other => Err(format!("unknown scenario {other}")),
        }
    };
    // The scenario checks its own deadline everywhere; this is the backstop.
    let res = match tokio::time::timeout(timeout + Duration::from_secs(20), work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "hard timeout: still running {} s after its {} s budget",
            20,
            timeout.as_secs()
        )),
    };
    let ok = res.is_ok();
    let (v, h) = out.finish(ctx, ok, res.err());
    (ok, v, h)
}
