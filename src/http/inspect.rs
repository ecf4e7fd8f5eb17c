//! `GET /inspect/:instanceId`: a live view of an instance's keys for a
//! developer, as one static page (`inspect.html`: markup, style and script
//! in one file, no framework, no build step). The page connects to
//! `/sync/:instanceId` over the ordinary protocol, so it sees exactly what
//! any client sees and may write exactly what its credential allows.
//!
//! In development mode the page is served to anyone and connects as
//! `dev-user`. In production it needs `?token=<ws-token>` (from
//! `POST /api/ws-token`, for this instance, not expired): the token is
//! checked here without being used up, and the page's socket then uses it.
//!
//! The Content-Security-Policy allows nothing but the page's own inline
//! script and style (by hash), connections to this origin and `data:`
//! images; Trusted Types are enforced, so the script cannot turn key data
//! into markup.

use std::sync::OnceLock;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use worker::{Headers, Request, Response};

use crate::auth::secrets::hash_ws_token;
use crate::ctx::Ctx;
use crate::db;
use crate::error::ApiError;
use crate::ids::is_valid_instance_id;

const PAGE: &str = include_str!("inspect.html");

pub async fn page(req: &Request, ctx: &Ctx, instance_id: &str) -> Result<Response, ApiError> {
    if !is_valid_instance_id(instance_id) {
        return Err(ApiError::bad_request("Invalid instance id"));
    }
    if !ctx.development {
        let token = req
            .url()?
            .query_pairs()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "A ws-token is required: open /inspect/<instanceId>?token=<token from POST /api/ws-token>"
                        .into(),
                )
            })?;
        check_token(ctx, &token, instance_id).await?;
    }
    let headers = Headers::new();
    headers.set("Content-Type", "text/html; charset=utf-8")?;
    headers.set("Content-Security-Policy", policy())?;
    headers.set("X-Content-Type-Options", "nosniff")?;
    headers.set("X-Frame-Options", "DENY")?;
    headers.set("Referrer-Policy", "no-referrer")?;
    headers.set("Cache-Control", "no-store")?;
    Ok(Response::ok(PAGE)?.with_headers(headers))
}

/// The token must exist, be unexpired and be for this instance; it stays
/// for the page's socket to take.
async fn check_token(ctx: &Ctx, token: &str, instance_id: &str) -> Result<(), ApiError> {
    let row = db::ws_tokens::stmt::peek(&hash_ws_token(token))
        .first(&ctx.db()?)
        .await?;
    super::sync::usable_token(row, instance_id).map(|_| ())
}

/// The page's Content-Security-Policy (computed once).
fn policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| content_security_policy(PAGE))
}

/// A policy that allows the page's one inline `<script>` and one inline
/// `<style>` by their SHA-256, and nothing else from anywhere.
pub fn content_security_policy(page: &str) -> String {
    format!(
        "default-src 'none'; script-src '{script}'; style-src '{style}'; \
         connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'",
        script = element_hash(page, "script"),
        style = element_hash(page, "style"),
    )
}

/// `sha256-<base64>` of the text of the first `<tag>…</tag>` (empty when
/// there is none, which then allows nothing).
fn element_hash(page: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let text = page
        .find(&open)
        .map(|i| &page[i + open.len()..])
        .and_then(|rest| rest.find(&close).map(|j| &rest[..j]))
        .unwrap_or("");
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_hashes_exactly_the_inline_script_and_style() {
        let page = "<style>b{}</style><p>x</p><script>go()</script>";
        let csp = content_security_policy(page);
        let hash = |s: &str| {
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes()))
        };
        assert!(csp.contains(&format!("script-src 'sha256-{}'", hash("go()"))));
        assert!(csp.contains(&format!("style-src 'sha256-{}'", hash("b{}"))));
        assert!(csp.starts_with("default-src 'none';"));
    }

    #[test]
    fn the_page_is_one_file_with_one_script_and_one_style() {
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        assert!(PAGE.contains("<script>") && PAGE.contains("<style>"));
        // Nothing the policy would block: no inline handlers or style
        // attributes, no markup built from strings, nothing from elsewhere.
        for banned in [
            " onclick=",
            " onload=",
            " style=",
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "http://",
            "https://",
        ] {
            assert!(!PAGE.contains(banned), "inspect.html contains {banned}");
        }
    }
}
