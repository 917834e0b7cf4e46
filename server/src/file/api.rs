//! HTTP API of the file-service: `POST /api/v1/files` (the raw bytes as the body, their type as
//! Content-Type, optional `?name=`), `GET /api/v1/files/{id}` (metadata) and
//! `GET /api/v1/files/{id}/content` (the bytes).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use super::blob::DiskStore;
use super::meta;
use crate::http::AppError;

#[derive(Clone)]
pub struct ApiState {
    pub pool: sqlx::PgPool,
    pub store: Arc<DiskStore>,
    pub max_bytes: u64,
    pub allowed_types: Arc<Vec<String>>,
}

pub fn routes(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/files", post(upload))
        .route("/api/v1/files/{id}", get(metadata))
        .route("/api/v1/files/{id}/content", get(download))
        .with_state(state)
}

/// The media type without parameters, lower-cased: `Text/Plain; charset=utf-8` -> `text/plain`.
pub fn media_type(raw: &str) -> String {
    raw.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

fn too_large(max: u64) -> AppError {
    AppError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the file exceeds the limit of {max} bytes"))
}

fn content_type(headers: &HeaderMap, allowed: &[String]) -> Result<String, AppError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AppError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type is required"))?;
    let mt = media_type(raw);
    if !allowed.iter().any(|a| media_type(a) == mt) {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {mt:?} is not allowed (allowed: {})", allowed.join(", ")),
        ));
    }
    Ok(mt)
}

async fn upload(State(s): State<ApiState>, Query(q): Query<UploadQuery>, req: Request) -> Result<Response, AppError> {
    let ct = content_type(req.headers(), &s.allowed_types)?;
    let name = q.name.filter(|n| !n.trim().is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 255) {
        return Err(AppError::bad_request("name must be at most 255 characters", Some("name")));
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.max_bytes) {
        return Err(too_large(s.max_bytes));
    }
    let writer = s.store.begin().map_err(AppError::internal)?;
    let mut stream = req.into_body().into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = chunk.map_err(|e| {
            tracing::info!(error = %e, received = total, "upload cut off: nothing stored");
            AppError::bad_request(format!("upload interrupted: {e}"), None)
        })?;
        total += chunk.len() as u64;
        if total > s.max_bytes {
            return Err(too_large(s.max_bytes));
        }
        if !writer.write(chunk).await {
            break;
        }
    }
    // Returning early above drops `writer`: its thread ends and the temp file is removed.
    let written = writer.finish().await.map_err(AppError::internal)?;
    if written.size != total {
        return Err(AppError::internal(format!("wrote {} of {total} bytes", written.size)));
    }
    let sha = written.sha256.clone();
    let size = written.size;
    s.store.commit(written).await.map_err(AppError::internal)?;
    let meta = meta::insert(&s.pool, &sha, size, &ct, name.as_deref()).await?;
    tracing::info!(file_id = %meta.file_id, sha256 = %sha, size, "file stored");
    Ok((StatusCode::CREATED, Json(meta)).into_response())
}

fn file_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::bad_request("fileId must be a UUID", Some("fileId")))
}

async fn load(s: &ApiState, raw: &str) -> Result<meta::FileMeta, AppError> {
    let id = file_id(raw)?;
    meta::get(&s.pool, id).await?.ok_or_else(|| AppError::not_found(format!("file {id} not found")))
}

async fn metadata(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Response, AppError> {
    Ok(Json(load(&s, &id).await?).into_response())
}

const READ_CHUNK: usize = 256 * 1024;

async fn download(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Response, AppError> {
    let meta = load(&s, &id).await?;
    let path = s.store.blob_path(&meta.sha256);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| AppError::internal(format!("blob {} of file {}: {e}", meta.sha256, meta.file_id)))?;
    let stream = futures::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; READ_CHUNK];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        meta.content_type.parse().unwrap_or(header::HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, meta.size.into());
    if let Ok(v) = format!("\"{}\"", meta.sha256).parse() {
        h.insert(header::ETAG, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_drops_parameters_and_case() {
        assert_eq!(media_type("Text/Plain; charset=utf-8"), "text/plain");
        assert_eq!(media_type("image/png"), "image/png");
        let allowed = vec!["image/png".to_string()];
        let mut h = HeaderMap::new();
        assert_eq!(content_type(&h, &allowed).unwrap_err().status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        h.insert(header::CONTENT_TYPE, "IMAGE/PNG".parse().unwrap());
        assert_eq!(content_type(&h, &allowed).unwrap(), "image/png");
        h.insert(header::CONTENT_TYPE, "application/x-msdownload".parse().unwrap());
        assert!(content_type(&h, &allowed).is_err());
    }
}
