//! mcbench: the MindCache server's load generator.
//!
//! Runs WebSocket and HTTP scenarios against a server that speaks the
//! development-mode sync protocol, prints a table of headline figures and
//! writes every figure to a JSON file. See bench/README.md.

mod cpu;
mod ctx;
mod report;
mod scenarios;
mod stats;
mod target;
mod ws;

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use serde_json::{json, Value};

use crate::ctx::{CpuProbe, Ctx, Headline};
use crate::scenarios::Scenario;
use crate::target::Target;

const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Parser, Debug)]
#[command(
    name = "mcbench",
    version,
    about = "Load generator for the MindCache server (WebSocket sync + HTTP)",
    after_help = "Scenarios: latency, throughput, fanout, sync, connect, http, httpput, multi, fullstate, sockets1k, multi100.\n\
                  Exit code: 0 all passed, 1 a scenario failed, 2 bad arguments or failed preflight, 3 hard stop."
)]
struct Args {
    /// Server origin, http:// or https:// (WebSockets go to the same host).
    #[arg(long, default_value = "http://localhost:8787")]
    url: String,

    /// Bearer token sent as `Authorization: Bearer …` on HTTP and WebSocket upgrades.
    #[arg(
        long,
        conflicts_with = "api_key",
        env = "MCBENCH_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,

    /// API key, sent the same way as --token.
    #[arg(long, env = "MCBENCH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,

    /// Allow a --url that is not loopback (localhost, 127.0.0.0/8, ::1).
    #[arg(long)]
    allow_remote: bool,

    /// Comma-separated subset and order of scenarios (default: all).
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,

    /// Comma-separated scenarios to leave out of the selection, e.g.
    /// `--skip httpput` for a server without the HTTP data API.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,

    /// Shrink every scenario ~5x.
    #[arg(long)]
    quick: bool,

    /// Where to write the JSON result (default: bench/results/<timestamp>.json).
    #[arg(long)]
    out: Option<PathBuf>,

    /// Free-form label copied into the JSON.
    #[arg(long)]
    label: Option<String>,

    /// Multiply every scenario timeout by this.
    #[arg(long, default_value_t = 1.0)]
    timeout_scale: f64,

    /// Do not delete the projects the `http` scenario (or --provision) creates.
    #[arg(long)]
    keep_projects: bool,

    /// Also measure the CPU time of this process and all its descendants.
    #[arg(long)]
    server_pid: Option<i32>,

    /// Create the instances through the REST API (a project plus one
    /// instance per id; deleted afterwards). Default: on when a token or API
    /// key is given, since a production server only admits known instances.
    #[arg(long, overrides_with = "no_provision")]
    provision: bool,

    /// Never create instances; use made-up ids (development mode admits any).
    #[arg(long)]
    no_provision: bool,

    /// Give the instances of `latency` and `throughput` a Y document and one
    /// MindCache 3 listener (yjs.md) before measuring: the cost of a set on
    /// an instance that 3.x clients use too.
    #[arg(long)]
    yjs: bool,

    /// Client runtime threads (1 keeps the client's footprint small on a
    /// 2-core machine shared with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,

    /// Compare two result files instead of running: BASE NEW. Prints
    /// figures side by side with the ratio NEW/BASE; --out writes the
    /// comparison JSON.
    #[arg(long, num_args = 2, value_names = ["BASE", "NEW"])]
    compare: Option<Vec<PathBuf>>,

    /// Labels of the two compared files.
    #[arg(long, value_delimiter = ',', default_value = "base,new")]
    labels: Vec<String>,
}

fn run_id() -> String {
    let ms = ws::now_ms() as u64;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(ms ^ u64::from(std::process::id()));
    let r = h.finish();
    let mut s = String::new();
    let mut x = ms;
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    while x > 0 {
        s.insert(0, digits[(x % 36) as usize] as char);
        x /= 36;
    }
    format!("{s}-{:06x}", r & 0xff_ffff)
}

fn machine_info() -> Value {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
    });
    let mem_mib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb / 1024)
    });
    json!({
        "platform": format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpuModel": cpu_model,
        "totalMemMiB": mem_mib,
    })
}

fn write_json(path: &PathBuf, v: &Value) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

fn compare_files(args: &Args, files: &[PathBuf]) -> ExitCode {
    let read = |p: &PathBuf| -> Result<Value, String> {
        let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&t).map_err(|e| format!("{}: {e}", p.display()))
    };
    let (base, new) = match (read(&files[0]), read(&files[1])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("mcbench: {e}");
            return ExitCode::from(2);
        }
    };
    let l0 = args.labels.first().map(String::as_str).unwrap_or("base");
    let l1 = args.labels.get(1).map(String::as_str).unwrap_or("new");
    let (text, mut doc) = report::compare(&base, &new, (l0, l1));
    doc["table"] = json!(text);
    print!("{text}");
    if let Some(out) = &args.out {
        if let Err(e) = write_json(out, &doc) {
            eprintln!("mcbench: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// The scenarios a `--scenarios` or `--skip` list names, in its order.
fn scenarios_named(list: &[String]) -> Result<Vec<&'static Scenario>, String> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            scenarios::find(s)
                .ok_or_else(|| format!("unknown scenario {s:?} (known: {})", scenarios::names()))
        })
        .collect()
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(files) = &args.compare {
        return compare_files(&args, files);
    }

    let token = args.token.clone().or(args.api_key.clone());
    let target = match Target::parse(&args.url, token.as_deref(), args.allow_remote) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mcbench: {e}");
            return ExitCode::from(2);
        }
    };
    let chosen = match &args.scenarios {
        None => Ok(scenarios::ALL.iter().collect()),
        Some(list) => scenarios_named(list),
    };
    let (chosen, skipped) = match (chosen, scenarios_named(&args.skip)) {
        (Ok(chosen), Ok(skipped)) => (chosen, skipped),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("mcbench: {e}");
            return ExitCode::from(2);
        }
    };
    let chosen: Vec<&'static Scenario> = chosen
        .into_iter()
        .filter(|s| !skipped.iter().any(|k| k.name == s.name))
        .collect();
    if !(args.timeout_scale > 0.0 && args.timeout_scale.is_finite()) {
        eprintln!("mcbench: --timeout-scale must be a positive number");
        return ExitCode::from(2);
    }
    let cpu = match args.server_pid {
        None => None,
        Some(pid) => {
            if !cpu::readable(pid) {
                eprintln!("mcbench: cannot read /proc/{pid}/stat (--server-pid)");
                return ExitCode::from(2);
            }
            match cpu::clk_tck() {
                Some(clk_tck) => Some(CpuProbe { pid, clk_tck }),
                None => {
                    eprintln!("mcbench: cannot read CLK_TCK");
                    return ExitCode::from(2);
                }
            }
        }
    };

    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcbench: runtime: {e}");
            return ExitCode::from(2);
        }
    };

    // The overall hard stop: every scenario budget plus two minutes.
    let budget: Duration = chosen
        .iter()
        .map(|s| s.base_timeout().mul_f64(args.timeout_scale) + Duration::from_secs(30))
        .sum::<Duration>()
        + Duration::from_secs(120);
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        eprintln!("mcbench: hard stop after {} s", budget.as_secs());
        std::process::exit(3);
    });

    runtime.block_on(run(args, target, chosen, cpu))
}

async fn run(
    args: Args,
    target: Target,
    chosen: Vec<&'static Scenario>,
    cpu: Option<CpuProbe>,
) -> ExitCode {
    let names: Vec<&'static str> = chosen.iter().map(|s| s.name).collect();
    let started = SystemTime::now();
    let http = match reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcbench: HTTP client: {e}");
            return ExitCode::from(2);
        }
    };
    let provision = (target.auth.is_some() || args.provision) && !args.no_provision;
    let mut ctx = Ctx {
        target,
        quick: args.quick,
        run_id: run_id(),
        timeout_scale: args.timeout_scale,
        keep_projects: args.keep_projects,
        cpu,
        http,
        provision,
        provision_project: None,
        provision_errors: Vec::new(),
        yjs: args.yjs,
    };

    // Preflight.
    let health = tokio::time::timeout(
        Duration::from_secs(10),
        ctx::request_json(ctx.get("/health")),
    )
    .await;
    match health {
        Ok(Ok(v)) => eprintln!("mcbench: {} is up: {v}", ctx.target.http_base),
        Ok(Err(e)) => {
            eprintln!("mcbench: GET {}/health failed: {e}", ctx.target.http_base);
            return ExitCode::from(2);
        }
        Err(_) => {
            eprintln!(
                "mcbench: GET {}/health: no answer in 10 s",
                ctx.target.http_base
            );
            return ExitCode::from(2);
        }
    }

    let mut doc = json!({
        "tool": "mcbench",
        "toolVersion": TOOL_VERSION,
        "label": args.label,
        "url": ctx.target.http_base,
        "authenticated": ctx.target.auth.is_some(),
        "provisionedInstances": ctx.provision,
        "runId": ctx.run_id,
        "date": report::iso(started),
        "quick": args.quick,
        "clientThreads": args.threads.max(1),
        "timeoutScale": args.timeout_scale,
        "scenariosRequested": names,
        "scenariosSkipped": args.skip,
        "percentileMethod": "nearest-rank: the smallest sample with at least p% of samples <= it",
        "timing": "client monotonic clock, taken when a frame comes off the socket (before JSON parsing); set frames are timed from just before they are written",
    });
    for (k, v) in machine_info().as_object().into_iter().flatten() {
        doc[k] = v.clone();
    }
    if let Some(c) = &ctx.cpu {
        let a = cpu::sample(c.pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = cpu::sample(c.pid);
        let d = cpu::delta(&a, &b, c.clk_tck);
        let per_s = 1000.0 / d.wall_ms.max(1.0);
        doc["serverPid"] = json!(c.pid);
        doc["serverCpu"] = json!({
            "clkTck": c.clk_tck,
            "idle": {
                "serverCpuMsPerSec": stats::r3(d.total_ms * per_s),
                "workerdCpuMsPerSec": stats::r3(d.workerd_ms * per_s),
                "wallMs": stats::r3(d.wall_ms),
            },
            "treeAtStart": cpu::tree_json(&b),
        });
    }

    let mut results = serde_json::Map::new();
    let mut headline: Vec<(Headline, bool)> = Vec::new();
    let mut all_ok = true;
    let mut server_errors = 0u64;
    for scenario in &chosen {
        let name = scenario.name;
        eprintln!("mcbench: {name} …");
        let t0 = Instant::now();
        let (ok, v, h) = scenario.run(&mut ctx).await;
        eprintln!(
            "mcbench: {name} {} in {:.1} s{}",
            if ok { "ok" } else { "FAILED" },
            t0.elapsed().as_secs_f64(),
            v["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        all_ok &= ok;
        server_errors += v["counts"]["serverErrors"].as_u64().unwrap_or(0);
        headline.extend(h.into_iter().map(|h| (h, ok)));
        results.insert(name.to_string(), v);
    }
    ctx.cleanup().await;

    doc["finishedAt"] = json!(report::iso(SystemTime::now()));
    doc["headline"] = report::headline_json(&headline);
    doc["scenarios"] = Value::Object(results);
    doc["allOk"] = json!(all_ok);
    doc["totalServerErrors"] = json!(server_errors);
    if !ctx.provision_errors.is_empty() {
        doc["provisionErrors"] = json!(ctx.provision_errors);
    }

    print!("{}", report::table(&doc, &names));
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join(format!("{}.json", report::stamp(started)))
    });
    match write_json(&out, &doc) {
        Ok(()) => eprintln!("mcbench: wrote {}", out.display()),
        Err(e) => {
            eprintln!("mcbench: writing the result failed: {e}");
            return ExitCode::from(1);
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
