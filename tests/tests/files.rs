//! file-service through the api-gateway with a real key: a 50 MiB upload/download round trip
//! with its SHA-256 checked, metadata, content addressing on disk, the type allow-list, the size
//! limit, and an upload cut off mid-stream leaving neither a row nor a file.

#[path = "support/gateway_client.rs"]
mod gateway_client;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chat4all_ctl::load::pseudo_random_bytes as bytes;
use chat4all_tests::{unique, Config, Stack};
use gateway_client::{reply, Gw};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

const MIB: usize = 1024 * 1024;

fn sha_hex(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

fn files_dir(cfg: &Config) -> PathBuf {
    cfg.home.join("files")
}

async fn gw(cfg: &Config) -> Result<Gw> {
    Gw::with_key(cfg, 1000.0, 1000).await
}

async fn upload(gw: &Gw, data: Vec<u8>, content_type: &str, name: &str) -> Result<chat4all_tests::Reply> {
    let resp = gw
        .req(reqwest::Method::POST, &format!("/api/v1/files?name={name}"))
        .header("content-type", content_type)
        .body(data)
        .send()
        .await?;
    reply(resp).await
}

#[tokio::test]
async fn a_50_mib_round_trip_keeps_every_byte() -> Result<()> {
    let stack = Stack::connect().await?;
    let gw = gw(&stack.cfg).await?;
    let data = bytes(50 * MIB, rand_seed());
    let sha = sha_hex(&data);
    let name = unique("big");
    let started = Instant::now();
    let r = upload(&gw, data.clone(), "application/octet-stream", &name).await?;
    let up = started.elapsed();
    r.expect(201, "50 MiB upload")?;
    assert_eq!(r.body["sha256"], sha.as_str());
    assert_eq!(r.body["size"], (50 * MIB) as u64);
    assert_eq!(r.body["name"], name.as_str());
    let id = r.body["fileId"].as_str().unwrap().to_string();

    // Content-addressed on disk, exactly these bytes.
    let blob = files_dir(&stack.cfg).join("blobs").join(&sha[..2]).join(&sha);
    assert_eq!(std::fs::metadata(&blob)?.len(), (50 * MIB) as u64, "{}", blob.display());

    let meta = gw.get(&format!("/api/v1/files/{id}")).await?;
    meta.expect(200, "metadata")?;
    assert_eq!(meta.body["sha256"], sha.as_str());
    assert_eq!(meta.body["contentType"], "application/octet-stream");

    let started = Instant::now();
    let resp = gw.req(reqwest::Method::GET, &format!("/api/v1/files/{id}/content")).send().await?;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(resp.headers()["content-length"], (50 * MIB).to_string().as_str());
    assert_eq!(resp.headers()["etag"], format!("\"{sha}\"").as_str());
    let body = resp.bytes().await?;
    let down = started.elapsed();
    assert_eq!(body.len(), 50 * MIB);
    assert_eq!(sha_hex(&body), sha, "downloaded bytes differ");
    eprintln!("50 MiB through the gateway: upload {up:?}, download {down:?}");

    // The same bytes again: a new file id, the same blob.
    let again = upload(&gw, data, "application/octet-stream", &unique("again")).await?;
    again.expect(201, "second upload")?;
    assert_ne!(again.body["fileId"], id.as_str());
    assert_eq!(again.body["sha256"], sha.as_str());
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM files WHERE sha256 = $1").bind(&sha).fetch_one(&stack.db).await?;
    assert_eq!(rows, 2);
    Ok(())
}

fn rand_seed() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[tokio::test]
async fn types_outside_the_allow_list_get_415() -> Result<()> {
    let stack = Stack::connect().await?;
    let gw = gw(&stack.cfg).await?;
    let name = unique("exe");
    let r = upload(&gw, b"MZ...".to_vec(), "application/x-msdownload", &name).await?;
    r.expect(415, "disallowed type")?;
    assert!(r.error().is_some_and(|e| e.contains("not allowed")), "{}", r.raw);
    let r = reply(gw.req(reqwest::Method::POST, "/api/v1/files").body(b"x".to_vec()).send().await?).await?;
    r.expect(415, "no content type")?;
    // Parameters and case do not matter.
    let r = upload(&gw, b"hello".to_vec(), "Text/Plain; charset=utf-8", &unique("txt")).await?;
    r.expect(201, "text/plain with a charset")?;
    assert_eq!(r.body["contentType"], "text/plain");
    assert_eq!(r.body["sha256"], sha_hex(b"hello").as_str());
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM files WHERE name = $1").bind(&name).fetch_one(&stack.db).await?;
    assert_eq!(rows, 0);
    // Bad ids.
    gw.get("/api/v1/files/not-a-uuid").await?.expect(400, "bad id")?;
    gw.get(&format!("/api/v1/files/{}/content", uuid::Uuid::new_v4())).await?.expect(404, "unknown file")?;
    Ok(())
}

/// Reads one HTTP answer from `sock` until the server closes or 10 s pass: (status, raw text).
async fn read_answer(mut rd: impl tokio::io::AsyncRead + Unpin) -> Result<(u16, String)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = match tokio::time::timeout_at(deadline.into(), rd.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => 0,
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if text.contains("\r\n\r\n") && text.contains('}') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, text))
}

fn upload_head(gw: &Gw, addr: &str, name: &str, length: Option<usize>) -> String {
    let length = match length {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".to_string(),
    };
    format!(
        "POST /api/v1/files?name={name} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\n{length}\r\n\r\n",
        gw.key.as_deref().unwrap()
    )
}

/// Over the limit, declared (refused before any byte of the body) and streamed without a length
/// (refused once the count passes it): 413 JSON, no row, no blob.
#[tokio::test]
async fn an_upload_over_the_limit_gets_413_and_stores_nothing() -> Result<()> {
    let stack = Stack::connect().await?;
    let gw = gw(&stack.cfg).await?;
    let addr = gw.base.trim_start_matches("http://").to_string();

    let declared = unique("declared");
    let mut sock = tokio::net::TcpStream::connect(&addr).await?;
    sock.write_all(upload_head(&gw, &addr, &declared, Some(100 * MIB + 1)).as_bytes()).await?;
    let (status, text) = read_answer(&mut sock).await?;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("exceeds the limit"), "{text}");

    let streamed = unique("streamed");
    let sock = tokio::net::TcpStream::connect(&addr).await?;
    let (rd, mut wr) = sock.into_split();
    let head = upload_head(&gw, &addr, &streamed, None);
    let writer = tokio::spawn(async move {
        let chunk = bytes(MIB, 3);
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if wr.write_all(head.as_bytes()).await.is_err() {
            return 0;
        }
        let mut sent = 0;
        // Up to 120 MiB; the server stops reading after 100 MiB.
        for _ in 0..120 {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let (status, text) = read_answer(rd).await?;
    let sent = writer.await?;
    assert_eq!(status, 413, "after {sent} MiB: {text}");
    assert!(text.contains("exceeds the limit"), "{text}");

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM files WHERE name = ANY($1)")
        .bind(vec![declared, streamed])
        .fetch_one(&stack.db)
        .await?;
    assert_eq!(rows, 0);
    Ok(())
}

/// Sends headers announcing 8 MiB, 2 MiB of body, then closes the connection.
#[tokio::test]
async fn an_upload_cut_off_mid_stream_leaves_no_row_and_no_file() -> Result<()> {
    let stack = Stack::connect().await?;
    let gw = gw(&stack.cfg).await?;
    let name = unique("cut");
    let addr = gw.base.trim_start_matches("http://").to_string();
    let partial = bytes(2 * MIB, 11);
    let mut sock = tokio::net::TcpStream::connect(&addr).await?;
    let head = format!(
        "POST /api/v1/files?name={name} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        gw.key.as_deref().unwrap(),
        8 * MIB
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&partial).await?;
    sock.flush().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(sock);

    // Nothing half-written: no row, and the temp file is gone once the service noticed.
    let tmp = files_dir(&stack.cfg).join("tmp");
    // Other tests of this binary upload in parallel: wait for the directory to be empty.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: i64 =
            sqlx::query_scalar("SELECT count(*) FROM files WHERE name = $1").bind(&name).fetch_one(&stack.db).await?;
        assert_eq!(rows, 0, "a metadata row for a cut-off upload");
        let left: Vec<_> = std::fs::read_dir(&tmp)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("temp files left 30 s after the cut: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The service still works.
    upload(&gw, b"after".to_vec(), "text/plain", &unique("after")).await?.expect(201, "upload after a cut")?;
    Ok(())
}

/// Messages may reference files; an unknown file id is refused with 400 and nothing is written.
#[tokio::test]
async fn a_message_with_an_unknown_file_id_is_rejected() -> Result<()> {
    let stack = Stack::connect().await?;
    let gw = gw(&stack.cfg).await?;
    let up = upload(&gw, b"attached".to_vec(), "text/plain", &unique("att")).await?;
    up.expect(201, "upload")?;
    let file = up.body["fileId"].as_str().unwrap().to_string();
    let conv = unique("files-msg");
    let mut body = chat4all_tests::MessageBuilder::new(&conv).to(&unique("u"), "WHATSAPP").build();
    body["content"]["fileIds"] = serde_json::json!([file]);
    let ok = gw.post_json("/api/v1/messages", &body).await?;
    ok.expect(202, "message with a stored file")?;
    let id = ok.message_id()?;
    let view = gw.get(&format!("/api/v1/messages/{id}")).await?;
    assert_eq!(view.body["content"]["fileIds"], serde_json::json!([file]), "{}", view.raw);

    let conv = unique("files-bad");
    let mut body = chat4all_tests::MessageBuilder::new(&conv).to(&unique("u"), "WHATSAPP").build();
    body["content"]["fileIds"] = serde_json::json!([file, uuid::Uuid::new_v4().to_string()]);
    let bad = gw.post_json("/api/v1/messages", &body).await?;
    bad.expect(400, "unknown file id")?;
    assert_eq!(bad.field(), Some("content.fileIds"));
    body["content"]["fileIds"] = serde_json::json!(["not-a-uuid"]);
    let bad = gw.post_json("/api/v1/messages", &body).await?;
    bad.expect(400, "malformed file id")?;
    assert_eq!(bad.field(), Some("content.fileIds[0]"));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE conversation_id = $1")
        .bind(&conv)
        .fetch_one(&stack.db)
        .await?;
    assert_eq!(rows, 0, "a refused message was written");
    Ok(())
}
