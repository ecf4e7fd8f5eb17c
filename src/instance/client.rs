//! The Worker's side of the internal interface: typed calls to one
//! instance's Durable Object. Every request carries the instance id and
//! its read-only flag so the object never has to ask D1.

use serde::Serialize;
use serde_json::value::RawValue;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Stub};

use super::internal::{
    self, DeleteRequest, ImportRequest, ReadOnlyFlag, RecheckRequest, RecheckResult, Refusal,
    SetRequest, WriteResult,
};
use crate::error::ApiError;
use crate::permission::{AccessBasis, Permission};

/// Who a WebSocket connection is, as established by the Worker.
pub enum Identity {
    /// Authenticated before the upgrade (token, header or development).
    User {
        user_id: String,
        permission: Permission,
        basis: AccessBasis,
    },
    /// Production without a credential: must send `auth` within 10 s.
    Unauthenticated,
}

pub struct InstanceClient {
    stub: Stub,
    instance_id: String,
    /// The read-only flag as D1 had it, with its version; `None`: do not
    /// tell the object (it keeps the newest it was told).
    read_only: Option<ReadOnlyFlag>,
}

/// Base URL of internal requests; the host is never resolved.
const INTERNAL_ORIGIN: &str = "https://instance.internal";

impl InstanceClient {
    /// A client that tells the object nothing about its read-only flag.
    pub fn new(env: &Env, instance_id: &str) -> Result<Self, ApiError> {
        Self::with_read_only(env, instance_id, None)
    }

    /// A client that passes on the flag D1 had (a newer one always wins in
    /// the object, so a stale read cannot undo a later change).
    pub fn with_read_only(
        env: &Env,
        instance_id: &str,
        read_only: Option<ReadOnlyFlag>,
    ) -> Result<Self, ApiError> {
        let namespace = env.durable_object("MINDCACHE_INSTANCE")?;
        let stub = namespace.id_from_name(instance_id)?.get_stub()?;
        Ok(InstanceClient {
            stub,
            instance_id: instance_id.to_string(),
            read_only,
        })
    }

    /// A client for an object known only by its 64-hex id (admin
    /// introspection); it does not tell the object anything about itself.
    pub fn from_object_id(env: &Env, object_id: &str) -> Result<Self, ApiError> {
        let namespace = env.durable_object("MINDCACHE_INSTANCE")?;
        let stub = namespace.id_from_string(object_id)?.get_stub()?;
        Ok(InstanceClient {
            stub,
            instance_id: String::new(),
            read_only: None,
        })
    }

    fn headers(&self) -> Result<Headers, ApiError> {
        let headers = Headers::new();
        if self.instance_id.is_empty() {
            return Ok(headers);
        }
        headers.set(internal::HEADER_INSTANCE_ID, &self.instance_id)?;
        if let Some(flag) = self.read_only {
            headers.set(
                internal::HEADER_READ_ONLY,
                if flag.read_only { "1" } else { "0" },
            )?;
            headers.set(
                internal::HEADER_READ_ONLY_VERSION,
                &flag.version.to_string(),
            )?;
        }
        Ok(headers)
    }

    /// Forwards a client's WebSocket upgrade with the identity the Worker
    /// established. Only the upgrade headers travel on: nothing else the
    /// client sent (in particular no `x-mc-internal-*` header) reaches the
    /// object.
    pub async fn connect(
        &self,
        client: &Request,
        identity: Identity,
        development: bool,
    ) -> Result<Response, ApiError> {
        let headers = self.headers()?;
        for (name, value) in client.headers().entries() {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with(internal::HEADER_PREFIX) {
                continue;
            }
            if lower == "upgrade" || lower.starts_with("sec-websocket-") || lower == "connection" {
                headers.set(&name, &value)?;
            }
        }
        identify(&headers, identity, development)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers);
        let req =
            Request::new_with_init(&format!("{INTERNAL_ORIGIN}{}", internal::PATH_SYNC), &init)?;
        Ok(self.stub.fetch_with_request(req).await?)
    }

    /// Opens a server-sent event stream for `identity` (data-api.md); the
    /// response's body is the stream.
    pub async fn events(
        &self,
        identity: Identity,
        development: bool,
    ) -> Result<Response, ApiError> {
        let headers = self.headers()?;
        identify(&headers, identity, development)?;
        self.send(Method::Get, internal::PATH_EVENTS, headers, None)
            .await
    }

    /// A data-API call (`/internal/data/*`, data-api.md) for `actor`, with
    /// the query parameters, the client's preconditions and body. The
    /// object's answer is returned as is when it succeeded.
    pub async fn data(&self, call: DataCall<'_>) -> Result<Response, ApiError> {
        let headers = self.headers()?;
        if let Some(actor) = call.actor {
            headers.set(internal::HEADER_ACTOR, actor)?;
        }
        if let Some(tags) = call.if_match {
            headers.set(internal::HEADER_IF_MATCH, tags)?;
        }
        if let Some(tags) = call.if_none_match {
            headers.set(internal::HEADER_IF_NONE_MATCH, tags)?;
        }
        let mut url = worker::Url::parse(INTERNAL_ORIGIN)
            .map_err(|e| ApiError::internal(format!("internal url: {e}")))?;
        url.set_path(call.path);
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().copied());
        }
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", call.path),
            None => call.path.to_string(),
        };
        self.send(call.method, &path_and_query, headers, call.body)
            .await
    }

    /// Every key, as the `{"keys": {...}}` document (same map as
    /// `sync.data`), in one piece: for copying an instance. Readers that
    /// must cope with any size page through `key_page` (pages.rs).
    pub async fn keys_document(&self) -> Result<String, ApiError> {
        let mut resp = self.call(Method::Get, internal::PATH_KEYS, None).await?;
        Ok(resp.text().await?)
    }

    /// Sets a key on behalf of `actor`, with the WebSocket path's validation
    /// and broadcast.
    pub async fn set(
        &self,
        actor: &str,
        key: &str,
        value: &RawValue,
        attributes: Option<&RawValue>,
    ) -> Result<WriteResult, ApiError> {
        let body = SetRequest {
            actor: actor.to_string(),
            key: key.to_string(),
            value,
            attributes,
        };
        self.write(internal::PATH_SET, &body).await
    }

    pub async fn delete(&self, actor: &str, key: &str) -> Result<WriteResult, ApiError> {
        let body = DeleteRequest {
            actor: actor.to_string(),
            key: key.to_string(),
        };
        self.write(internal::PATH_DELETE, &body).await
    }

    /// Copies every key of `data` (a `sync.data` map) into this instance.
    pub async fn import(&self, actor: &str, data: &RawValue) -> Result<WriteResult, ApiError> {
        let body = ImportRequest {
            actor: actor.to_string(),
            data,
        };
        self.write(internal::PATH_IMPORT, &body).await
    }

    /// Closes every socket (1000, "Instance deleted") and deletes all keys.
    pub async fn destroy(&self) -> Result<(), ApiError> {
        self.call(Method::Post, internal::PATH_DESTROY, Some("{}".into()))
            .await
            .map(|_| ())
    }

    /// Tells the object its read-only flag (sent as headers, with its version).
    pub async fn configure(&self) -> Result<(), ApiError> {
        self.call(Method::Post, internal::PATH_CONFIGURE, Some("{}".into()))
            .await
            .map(|_| ())
    }

    /// Whether the object holds a deleted instance's tombstone.
    pub async fn is_deleted(&self) -> Result<bool, ApiError> {
        Ok(self.storage_report().await?["deleted"] == serde_json::Value::Bool(true))
    }

    /// What the object stores: `{"tables": [...], "alarm": bool, "deleted": bool}`.
    pub async fn storage_report(&self) -> Result<serde_json::Value, ApiError> {
        let mut resp = self.call(Method::Get, internal::PATH_STORAGE, None).await?;
        Ok(resp.json().await?)
    }

    /// Has the object re-evaluate the sockets `affected` may concern
    /// (protocol.md §8); returns how many it closed and lowered.
    pub async fn recheck(&self, request: &RecheckRequest) -> Result<RecheckResult, ApiError> {
        let body = serde_json::to_string(request)?;
        let mut resp = self
            .call(Method::Post, internal::PATH_RECHECK, Some(body))
            .await?;
        Ok(resp.json().await?)
    }

    /// Gives the object its webhooks (all of them; an older version is
    /// ignored by the object).
    pub async fn configure_webhooks(
        &self,
        config: &super::outbox::Configuration,
    ) -> Result<(), ApiError> {
        let body = serde_json::to_string(config)?;
        self.call(Method::Post, internal::PATH_WEBHOOKS, Some(body))
            .await
            .map(|_| ())
    }

    /// A webhook's delivery log, newest first.
    pub async fn webhook_deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<super::outbox::DeliveryView>, ApiError> {
        let path = format!(
            "{}?webhook={}&limit={limit}",
            internal::PATH_WEBHOOK_LOG,
            url::form_urlencoded::byte_serialize(webhook_id.as_bytes()).collect::<String>()
        );
        let mut resp = self.call(Method::Get, &path, None).await?;
        Ok(resp.json().await?)
    }

    async fn write<T: Serialize>(&self, path: &str, body: &T) -> Result<WriteResult, ApiError> {
        let mut resp = self
            .call(Method::Post, path, Some(serde_json::to_string(body)?))
            .await?;
        Ok(resp.json().await?)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Response, ApiError> {
        let headers = self.headers()?;
        self.send(method, path, headers, body).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: Headers,
        body: Option<String>,
    ) -> Result<Response, ApiError> {
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers);
        if let Some(body) = body {
            init.with_body(Some(body.into()));
        }
        let req = Request::new_with_init(&format!("{INTERNAL_ORIGIN}{path}"), &init)?;
        let mut resp = self.stub.fetch_with_request(req).await?;
        match resp.status_code() {
            200..=299 => Ok(resp),
            // A deleted instance's tombstone (protocol.md §8).
            404 => Err(ApiError::not_found("Instance not found")),
            412 => {
                let refusal: Refusal = resp.json().await?;
                Err(ApiError::PreconditionFailed(refusal.error))
            }
            422 => {
                let refusal: Refusal = resp.json().await?;
                Err(refusal_error(refusal))
            }
            status => Err(ApiError::internal(format!(
                "instance {} answered {status} on {path}",
                self.instance_id
            ))),
        }
    }
}

/// One data-API call to the object (see `InstanceClient::data`).
pub struct DataCall<'a> {
    pub method: Method,
    /// One of the `internal::PATH_DATA_*` paths.
    pub path: &'a str,
    pub query: Vec<(&'a str, &'a str)>,
    pub actor: Option<&'a str>,
    pub if_match: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub body: Option<String>,
}

impl<'a> DataCall<'a> {
    pub fn new(method: Method, path: &'a str) -> Self {
        DataCall {
            method,
            path,
            query: Vec::new(),
            actor: None,
            if_match: None,
            if_none_match: None,
            body: None,
        }
    }
}

/// Tells the object who a connection (socket or event stream) is.
fn identify(headers: &Headers, identity: Identity, development: bool) -> Result<(), ApiError> {
    if let Identity::User {
        user_id,
        permission,
        basis,
    } = identity
    {
        headers.set(internal::HEADER_USER_ID, &user_id)?;
        headers.set(
            internal::HEADER_PERMISSION,
            permission.for_session().as_str(),
        )?;
        if !basis.is_user() {
            headers.set(internal::HEADER_BASIS, &serde_json::to_string(&basis)?)?;
        }
    }
    if development {
        headers.set(internal::HEADER_DEVELOPMENT, "1")?;
    }
    Ok(())
}

/// The REST status for a refusal from the object.
fn refusal_error(r: Refusal) -> ApiError {
    match r.code.as_str() {
        "READ_ONLY" => ApiError::ReadOnly,
        "TOO_LARGE" => ApiError::PayloadTooLarge(r.error),
        _ => ApiError::BadRequest(r.error),
    }
}
