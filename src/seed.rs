//! Test seeding through the server's own D1 binding: fault-injection
//! builds only (scripts/build.sh refuses to deploy one), requests addressed
//! to the loopback host only. The integration tests write rows no route
//! writes (expired tokens, bare users, malformed rows). Writing them from a
//! second process (`wrangler d1 execute`) while the server ran made the
//! server's own D1 writes fail now and then with "internal error"; through
//! the binding the seed is one more D1 batch, queued with the server's own.

use worker::{D1Database, Env, Request, Response, Result};

/// The route the tests post their statements to.
pub const PATH: &str = "/__test/d1";

/// Runs the posted statements (a JSON array of SQL strings) in one batch,
/// as one transaction: 204, or 400 naming the failing statement's error.
pub async fn handle(mut req: Request, env: &Env) -> Result<Response> {
    let statements: Vec<String> = match req.json().await {
        Ok(s) => s,
        Err(e) => return Response::error(format!("body: {e}"), 400),
    };
    let db: D1Database = env.d1("DB")?;
    let prepared = statements.iter().map(|s| db.prepare(s)).collect();
    match db.batch(prepared).await {
        Ok(_) => Ok(Response::empty()?.with_status(204)),
        Err(e) => Response::error(format!("seed failed: {e}"), 400),
    }
}
