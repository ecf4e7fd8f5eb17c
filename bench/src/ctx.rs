//! What every scenario gets (the run context) and what it fills in (its
//! outcome), including the server CPU phases.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::cpu;
use crate::stats::r3;
use crate::target::Target;
use crate::ws::{CloseStats, Counts, Group, Tracker};

/// Whether a bigger figure is better, for tables and comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

impl Better {
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Headline {
    pub key: String,
    pub value: f64,
    pub unit: &'static str,
    pub better: Better,
}

pub struct CpuProbe {
    pub pid: i32,
    pub clk_tck: u64,
}

pub struct Ctx {
    pub target: Target,
    pub quick: bool,
    pub run_id: String,
    pub timeout_scale: f64,
    pub keep_projects: bool,
    pub cpu: Option<CpuProbe>,
    pub http: reqwest::Client,
    /// Create real instances through the REST API (needed in production,
    /// where the server only lets a caller into instances it can see).
    pub provision: bool,
    pub provision_project: Option<String>,
    pub provision_errors: Vec<String>,
    /// `--yjs`: see `scenarios::y_listener`.
    pub yjs: bool,
}

impl Ctx {
    /// A size: `full`, or `quick` under `--quick`.
    pub fn size(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    pub fn scaled(&self, base: Duration) -> Duration {
        base.mul_f64(self.timeout_scale.max(0.01))
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.target.auth {
            Some(a) => rb.header("authorization", a),
            None => rb,
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.auth(self.http.get(self.target.http(path)))
    }

    /// `rb` with `body` as its JSON body, authenticated.
    fn json_body(&self, rb: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
        self.auth(
            rb.header("content-type", "application/json")
                .body(body.to_string()),
        )
    }

    pub fn post_json(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.json_body(self.http.post(self.target.http(path)), body)
    }

    pub fn put_json(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.json_body(self.http.put(self.target.http(path)), body)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.auth(self.http.delete(self.target.http(path)))
    }

    /// An instance id for `name`, fresh for this run.
    pub async fn instance(&mut self, name: &str) -> Result<String, String> {
        if !self.provision {
            return Ok(format!("mcb-{}-{name}", self.run_id));
        }
        let project = match &self.provision_project {
            Some(p) => p.clone(),
            None => {
                let body = json!({"name": format!("mcbench-{}", self.run_id)});
                let v = request_json(self.post_json("/api/projects", &body)).await?;
                let id = id_of(&v).ok_or_else(|| format!("no id in project answer {v}"))?;
                self.provision_project = Some(id.clone());
                id
            }
        };
        let body = json!({"name": format!("bench-{name}")});
        let v = request_json(self.post_json(&format!("/api/projects/{project}/instances"), &body))
            .await?;
        id_of(&v).ok_or_else(|| format!("no id in instance answer {v}"))
    }

    /// Deletes the project created for provisioned instances.
    pub async fn cleanup(&mut self) {
        if let Some(p) = self.provision_project.take() {
            if self.keep_projects {
                eprintln!("keeping project {p} (--keep-projects)");
                return;
            }
            if let Err(e) = request_json(self.delete(&format!("/api/projects/{p}"))).await {
                self.provision_errors
                    .push(format!("deleting project {p}: {e}"));
            }
        }
    }
}

/// The `id` of a created resource (`{id}` or `{project: {id}}`).
pub fn id_of(v: &Value) -> Option<String> {
    let direct = v.get("id");
    let nested = v
        .as_object()
        .and_then(|o| o.values().find_map(|x| x.get("id")));
    match direct.or(nested)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Sends a request and parses a 2xx JSON answer.
pub async fn request_json(rb: reqwest::RequestBuilder) -> Result<Value, String> {
    let resp = rb.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        ));
    }
    serde_json::from_str(&body).map_err(|e| {
        format!(
            "not JSON ({e}): {}",
            body.chars().take(200).collect::<String>()
        )
    })
}

/// One measured span of server CPU.
struct Phase {
    name: String,
    ops: usize,
    unit: &'static str,
    delta: cpu::Delta,
}

/// Everything a scenario reports.
pub struct Out {
    pub name: &'static str,
    pub started: Instant,
    pub deadline: Instant,
    pub timeout: Duration,
    pub params: Map<String, Value>,
    pub metrics: Map<String, Value>,
    pub warnings: Vec<String>,
    pub counts: Counts,
    pub server_error_samples: Vec<String>,
    pub client_error_samples: Vec<String>,
    pub close: CloseStats,
    pub headline: Vec<Headline>,
    start_sample: Option<cpu::Sample>,
    phases: Vec<Phase>,
    op_phase: Option<String>,
    whole_ops: Option<(usize, &'static str)>,
    pub extra: Map<String, Value>,
}

impl Out {
    pub fn new(name: &'static str, timeout: Duration, ctx: &Ctx) -> Out {
        let started = Instant::now();
        Out {
            name,
            started,
            deadline: started + timeout,
            timeout,
            params: Map::new(),
            metrics: Map::new(),
            warnings: Vec::new(),
            counts: Counts::default(),
            server_error_samples: Vec::new(),
            client_error_samples: Vec::new(),
            close: CloseStats::default(),
            headline: Vec::new(),
            start_sample: ctx.cpu.as_ref().map(|c| cpu::sample(c.pid)),
            phases: Vec::new(),
            op_phase: None,
            whole_ops: None,
            extra: Map::new(),
        }
    }

    pub fn param(&mut self, k: &str, v: impl Into<Value>) {
        self.params.insert(k.to_string(), v.into());
    }

    /// Records every field of `params`, a `json!({…})` object, in its order.
    pub fn params(&mut self, params: Value) {
        let Value::Object(params) = params else {
            panic!("parameters are a JSON object, not {params}");
        };
        self.params.extend(params);
    }

    pub fn metric(&mut self, k: &str, v: impl Into<Value>) {
        self.metrics.insert(k.to_string(), v.into());
    }

    pub fn ms(&mut self, k: &str, v: Option<f64>) {
        self.metrics.insert(k.to_string(), json!(v.map(r3)));
    }

    pub fn head(&mut self, key: &str, value: Option<f64>, unit: &'static str, better: Better) {
        if let Some(value) = value {
            self.headline.push(Headline {
                key: format!("{}.{key}", self.name),
                value,
                unit,
                better,
            });
        }
    }

    pub fn warn(&mut self, w: impl Into<String>) {
        self.warnings.push(w.into());
    }

    /// Merges a group's counts (after its sockets were closed).
    pub fn absorb(&mut self, g: &Group) {
        self.counts.merge(&g.counts);
        self.close.merge(&g.close);
        for s in &g.server_error_samples {
            if self.server_error_samples.len() < 10 {
                self.server_error_samples.push(s.clone());
            }
        }
        for s in &g.client_error_samples {
            if self.client_error_samples.len() < 10 {
                self.client_error_samples.push(s.clone());
            }
        }
    }

    pub fn absorb_tracker(&mut self, t: &Tracker) {
        self.counts.merge(&t.counts);
    }

    /// Starts a CPU phase (None when CPU is not measured).
    pub fn cpu_mark(&self, ctx: &Ctx) -> Option<cpu::Sample> {
        ctx.cpu.as_ref().map(|c| cpu::sample(c.pid))
    }

    /// Ends a CPU phase: waits 150 ms for the server to settle, samples, and
    /// records CPU per `unit`. `op` marks the scenario's op phase.
    pub async fn cpu_phase(
        &mut self,
        ctx: &Ctx,
        start: Option<cpu::Sample>,
        name: &str,
        ops: usize,
        unit: &'static str,
        op: bool,
    ) {
        let (Some(probe), Some(start)) = (ctx.cpu.as_ref(), start) else {
            return;
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        let end = cpu::sample(probe.pid);
        let delta = cpu::delta(&start, &end, probe.clk_tck);
        if op {
            self.op_phase = Some(name.to_string());
        }
        self.phases.push(Phase {
            name: name.to_string(),
            ops,
            unit,
            delta,
        });
    }

    /// Makes the whole scenario the op phase (for scenarios whose op is a
    /// connection or a request, set-up included).
    pub fn whole_is_op_phase(&mut self, ops: usize, unit: &'static str) {
        self.whole_ops = Some((ops, unit));
    }

    /// The JSON of the scenario, with CPU figures when measured.
    pub fn finish(mut self, ctx: &Ctx, ok: bool, error: Option<String>) -> (Value, Vec<Headline>) {
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        for w in self.counts.warnings() {
            self.warnings.push(w);
        }
        let unanswered = self.close.terminated_after_grace + self.close.ended_without_close_frame;
        if unanswered > 0 {
            self.warnings.push(format!(
                "{unanswered} of {} sockets did not answer our close frame with theirs",
                self.close.sockets
            ));
        }
        let mut v = json!({
            "ok": ok,
            "error": error,
            "warnings": self.warnings,
            "params": self.params,
            "timeoutMs": self.timeout.as_millis() as u64,
            "durationMs": r3(duration_ms),
            "metrics": self.metrics,
            "counts": self.counts,
            "serverErrorSamples": self.server_error_samples,
            "clientErrorSamples": self.client_error_samples,
            "close": self.close,
        });
        for (k, x) in std::mem::take(&mut self.extra) {
            v[k] = x;
        }
        if let (Some(probe), Some(start)) = (ctx.cpu.as_ref(), self.start_sample.as_ref()) {
            let end = cpu::sample(probe.pid);
            let whole = cpu::delta(start, &end, probe.clk_tck);
            v["server_cpu_ms"] = json!(whole.total_ms);
            v["workerd_cpu_ms"] = json!(whole.workerd_ms);
            let per_op = |d: &cpu::Delta, ops: usize| -> (Value, Value) {
                if ops == 0 {
                    (Value::Null, Value::Null)
                } else {
                    (
                        json!(r3(d.total_ms * 1000.0 / ops as f64)),
                        json!(r3(d.workerd_ms * 1000.0 / ops as f64)),
                    )
                }
            };
            let (op_name, op_ops, op_unit, op_delta) = match (self.whole_ops, &self.op_phase) {
                (Some((ops, unit)), _) => ("scenario".to_string(), ops, unit, whole.clone()),
                (None, Some(name)) => match self.phases.iter().find(|p| &p.name == name) {
                    Some(p) => (p.name.clone(), p.ops, p.unit, p.delta.clone()),
                    None => ("none".to_string(), 0, "", cpu::Delta::default()),
                },
                _ => ("none".to_string(), 0, "", cpu::Delta::default()),
            };
            let (s_op, w_op) = per_op(&op_delta, op_ops);
            v["server_cpu_us_per_op"] = s_op.clone();
            v["workerd_cpu_us_per_op"] = w_op.clone();
            let phases: Vec<Value> = self
                .phases
                .iter()
                .map(|p| {
                    let (s, w) = per_op(&p.delta, p.ops);
                    json!({
                        "name": p.name, "ops": p.ops, "opUnit": p.unit,
                        "cpuMs": p.delta.total_ms, "workerdCpuMs": p.delta.workerd_ms,
                        "wallMs": r3(p.delta.wall_ms),
                        "serverCpuUsPerOp": s, "workerdCpuUsPerOp": w,
                    })
                })
                .collect();
            let detail = whole.to_json();
            v["server_cpu"] = json!({
                "opPhase": op_name, "ops": op_ops, "opUnit": op_unit,
                "wallMs": r3(whole.wall_ms),
                "opPhaseCpuMs": op_delta.total_ms, "opPhaseWorkerdCpuMs": op_delta.workerd_ms,
                "phases": phases,
                "perProcess": detail["perProcess"], "newProcesses": detail["newProcesses"],
                "exitedProcesses": detail["exitedProcesses"], "clkTck": probe.clk_tck,
            });
            if !whole.exited_processes.is_empty() {
                let w = format!(
                    "{} server processes exited during the scenario (their last interval is lost)",
                    whole.exited_processes.len()
                );
                if let Some(a) = v["warnings"].as_array_mut() {
                    a.push(json!(w));
                }
            }
            self.head("server_cpu_us_per_op", s_op.as_f64(), "us", Better::Lower);
            self.head("workerd_cpu_us_per_op", w_op.as_f64(), "us", Better::Lower);
        }
        (v, self.headline)
    }
}
