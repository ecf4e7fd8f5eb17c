//! `http`: keep-alive workers loop `GET /health`, then (after creating
//! projects) `GET /api/projects`; the created projects are deleted at the end.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{ms_between, Sockets};
use crate::cpu::Sample;
use crate::ctx::{id_of, Better, Ctx, Out};
use crate::stats::{r3, Summary};

const WARMUP: Duration = Duration::from_millis(500);
/// Bound on requests per worker per load phase, whatever the duration.
const MAX_PER_WORKER: usize = 1_000_000;

struct Load {
    latencies: Vec<f64>,
    errors: u64,
    error_samples: Vec<String>,
    bytes: u64,
    elapsed: f64,
}

/// `workers` tasks each loop GET `path` until `duration` has passed.
async fn load(ctx: &Ctx, path: &str, workers: usize, duration: Duration) -> Load {
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let client = ctx.http.clone();
        let url = ctx.target.http(path);
        let auth = ctx.target.auth.clone();
        tasks.push(tokio::spawn(async move {
            let mut l = Load {
                latencies: Vec::new(),
                errors: 0,
                error_samples: Vec::new(),
                bytes: 0,
                elapsed: 0.0,
            };
            let mut n = 0;
            while Instant::now() < end && n < MAX_PER_WORKER {
                n += 1;
                let mut rb = client.get(&url);
                if let Some(a) = &auth {
                    rb = rb.header("authorization", a);
                }
                let t0 = Instant::now();
                let res = match rb.send().await {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(b) if status.is_success() => Ok(b.len()),
                            Ok(b) => Err(format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&b)
                                    .chars()
                                    .take(120)
                                    .collect::<String>()
                            )),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                match res {
                    Ok(b) => {
                        l.latencies.push(ms_between(t0, Instant::now()));
                        l.bytes += b as u64;
                    }
                    Err(e) => {
                        l.errors += 1;
                        if l.error_samples.len() < 3 {
                            l.error_samples.push(e);
                        }
                        // Do not spin on a refusing server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            l
        }));
    }
    let mut all = Load {
        latencies: Vec::new(),
        errors: 0,
        error_samples: Vec::new(),
        bytes: 0,
        elapsed: 0.0,
    };
    for t in tasks {
        match t.await {
            Ok(l) => {
                all.latencies.extend(l.latencies);
                all.errors += l.errors;
                all.bytes += l.bytes;
                for e in l.error_samples {
                    if all.error_samples.len() < 5 {
                        all.error_samples.push(e);
                    }
                }
            }
            Err(e) => {
                all.errors += 1;
                all.error_samples.push(format!("worker failed: {e}"));
            }
        }
    }
    all.elapsed = start.elapsed().as_secs_f64();
    all
}

/// Load on keep-alive workers: how many, and for how long.
#[derive(Clone, Copy)]
struct Workers {
    n: usize,
    duration: Duration,
}

/// Warms `path` up, loads it and reports it as `name`, then ends the CPU
/// phase `cpu` (which `earlier` requests also belong to). Returns how many
/// requests were sent, and an error when none of the load succeeded.
async fn load_phase(
    ctx: &Ctx,
    out: &mut Out,
    workers: Workers,
    path: &str,
    name: &str,
    cpu: Option<Sample>,
    earlier: usize,
) -> (f64, Result<(), String>) {
    let warm = load(ctx, path, workers.n, WARMUP).await;
    let l = load(ctx, path, workers.n, workers.duration).await;
    let n = (warm.latencies.len() as u64 + warm.errors) as usize;
    let requests = n as f64 + report(out, name, &l);
    let ops = earlier + n + l.latencies.len() + l.errors as usize;
    out.cpu_phase(ctx, cpu, &format!("GET {path}"), ops, "request", false)
        .await;
    if l.latencies.is_empty() {
        return (requests, Err(format!("GET {path}: no request succeeded")));
    }
    (requests, Ok(()))
}

fn report(out: &mut Out, name: &str, l: &Load) -> f64 {
    let s = Summary::new(l.latencies.clone());
    let rps = l.latencies.len() as f64 / l.elapsed;
    out.metric(
        name,
        json!({
            "requests": l.latencies.len(), "errors": l.errors, "errorSamples": l.error_samples,
            "reqPerSec": r3(rps), "latencyMs": s.to_json(),
            "meanResponseBytes": if l.latencies.is_empty() { 0 } else { l.bytes / l.latencies.len() as u64 },
            "elapsedMs": r3(l.elapsed * 1000.0),
        }),
    );
    out.head(&format!("{name}_rps"), Some(rps), "req/s", Better::Higher);
    out.head(&format!("{name}_p50"), s.pct(50.0), "ms", Better::Lower);
    out.head(&format!("{name}_p99"), s.pct(99.0), "ms", Better::Lower);
    if l.errors > 0 {
        out.warn(format!(
            "{name}: {} failed requests, e.g. {}",
            l.errors,
            l.error_samples.first().cloned().unwrap_or_default()
        ));
    }
    (l.latencies.len() as u64 + l.errors) as f64
}

/// (No sockets: HTTP only.)
pub async fn run(ctx: &mut Ctx, out: &mut Out, _: &mut Sockets) -> Result<(), String> {
    let workers = Workers {
        n: ctx.size(20, 4),
        duration: Duration::from_millis(ctx.size(5000, 1000) as u64),
    };
    let projects = ctx.size(100, 20);
    out.params(json!({
        "workers": workers.n, "durationMs": workers.duration.as_millis() as u64,
        "warmupMs": WARMUP.as_millis() as u64, "projects": projects,
    }));

    let mut created: Vec<String> = Vec::new();
    let mut requests = 0.0;
    let res = body(ctx, out, workers, projects, &mut created, &mut requests).await;

    // Cleanup, whatever happened.
    let cpu = out.cpu_mark(ctx);
    let (mut deleted, mut failed) = (0, 0);
    let mut samples = Vec::new();
    if ctx.keep_projects {
        out.warn(format!("kept {} projects (--keep-projects)", created.len()));
    } else {
        for id in &created {
            let r = ctx.delete(&format!("/api/projects/{id}")).send().await;
            match r {
                Ok(r) if r.status().is_success() => deleted += 1,
                Ok(r) => {
                    failed += 1;
                    samples.push(format!("{id}: HTTP {}", r.status()));
                }
                Err(e) => {
                    failed += 1;
                    samples.push(format!("{id}: {e}"));
                }
            }
        }
        requests += created.len() as f64;
    }
    out.cpu_phase(
        ctx,
        cpu,
        "DELETE /api/projects/:id",
        created.len(),
        "request",
        false,
    )
    .await;
    out.extra.insert(
        "projectCleanup".into(),
        json!({"deleted": deleted, "failed": failed, "samples": samples.into_iter().take(5).collect::<Vec<_>>()}),
    );
    if failed > 0 {
        out.warn(format!("{failed} projects could not be deleted"));
    }
    out.whole_is_op_phase(requests as usize, "request");
    res
}

async fn body(
    ctx: &mut Ctx,
    out: &mut Out,
    workers: Workers,
    projects: usize,
    created: &mut Vec<String>,
    requests: &mut f64,
) -> Result<(), String> {
    // GET /health
    let cpu = out.cpu_mark(ctx);
    let (n, res) = load_phase(ctx, out, workers, "/health", "health", cpu, 0).await;
    *requests += n;
    res?;

    // POST /api/projects, one after another.
    let cpu = out.cpu_mark(ctx);
    let mut create_ms = Vec::with_capacity(projects);
    let mut create_err = None;
    for i in 0..projects {
        if Instant::now() > out.deadline {
            create_err = Some("scenario deadline reached while creating projects".to_string());
            break;
        }
        let body = json!({"name": format!("mcbench-{}-{i}", ctx.run_id)});
        let t0 = Instant::now();
        *requests += 1.0;
        match crate::ctx::request_json(ctx.post_json("/api/projects", &body)).await {
            Ok(v) => {
                create_ms.push(ms_between(t0, Instant::now()));
                match id_of(&v) {
                    Some(id) => created.push(id),
                    None => {
                        create_err =
                            Some(format!("POST /api/projects answered without an id: {v}"));
                        break;
                    }
                }
            }
            Err(e) => {
                create_err = Some(format!("POST /api/projects #{i}: {e}"));
                break;
            }
        }
    }
    let cs = Summary::new(create_ms);
    out.metric("createProjectMs", cs.to_json());
    out.cpu_phase(
        ctx,
        cpu,
        "POST /api/projects",
        created.len(),
        "request",
        false,
    )
    .await;
    if let Some(e) = create_err {
        return Err(e);
    }

    // Check they are listed, then load GET /api/projects.
    let cpu = out.cpu_mark(ctx);
    *requests += 1.0;
    let list = crate::ctx::request_json(ctx.get("/api/projects"))
        .await
        .map_err(|e| format!("GET /api/projects: {e}"))?;
    let listed: Vec<String> = list
        .get("projects")
        .or(Some(&list))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(id_of).collect())
        .unwrap_or_default();
    let missing = created.iter().filter(|id| !listed.contains(id)).count();
    out.metric("projectsListed", listed.len());
    out.metric("listResponseBytes", list.to_string().len());
    if missing > 0 {
        return Err(format!(
            "GET /api/projects: {missing} of the {} created projects are not listed",
            created.len()
        ));
    }
    let (n, res) = load_phase(ctx, out, workers, "/api/projects", "projects", cpu, 1).await;
    *requests += n;
    res
}
