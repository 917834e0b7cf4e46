//! The API end to end in process (the router, no socket): each fault's effect on the record.

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use axum::Router;
use chat4all_contract::channel::Channel;
use chat4all_contract::provider::{
    BatchRequest, BatchResponse, Faults, Metadata, RecordOutcome, RecordResponse, RecordSummary, SendRequest,
    SendResult, SendStatus, BATCH_PATH, FAULTS_PATH, LOOKUP_PATH, RECORD_PATH, SEND_PATH, SUMMARY_PATH,
};
use tower::ServiceExt;
use uuid::Uuid;

use crate::api::{router, AppState};

fn app(faults: Faults) -> Router {
    router(AppState::new(Channel::Whatsapp, "whatsapp-provider", "whatsapp-provider-1", faults))
}

fn msg(conversation: &str, message: Uuid, recipient: &str) -> SendRequest {
    SendRequest {
        idempotency_key: None,
        to: format!("+55{recipient}"),
        text: "hello".into(),
        metadata: Metadata {
            message_id: message,
            recipient_id: recipient.into(),
            conversation_id: conversation.into(),
        },
    }
}

async fn call(app: &Router, method: &str, uri: &str, key: Option<&str>, body: Option<String>) -> (StatusCode, Vec<u8>) {
    let mut b = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    if let Some(k) = key {
        b = b.header("Idempotency-Key", k);
    }
    let req = b.body(body.map(Body::from).unwrap_or_else(Body::empty)).expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 24).await.map(|b| b.to_vec()).unwrap_or_else(|_| b"<reset>".to_vec());
    (status, bytes)
}

async fn send(app: &Router, key: Option<&str>, m: &SendRequest) -> (StatusCode, Vec<u8>) {
    call(app, "POST", SEND_PATH, key, Some(serde_json::to_string(m).expect("json"))).await
}

async fn summary(app: &Router, prefix: &str) -> RecordSummary {
    let (s, b) = call(app, "GET", &format!("{SUMMARY_PATH}?conversationPrefix={prefix}"), None, None).await;
    assert_eq!(s, StatusCode::OK);
    serde_json::from_slice(&b).expect("summary")
}

async fn record(app: &Router) -> RecordResponse {
    let (s, b) = call(app, "GET", RECORD_PATH, None, None).await;
    assert_eq!(s, StatusCode::OK);
    serde_json::from_slice(&b).expect("record")
}

async fn set_faults(app: &Router, f: &Faults) {
    let (s, b) = call(app, "PUT", FAULTS_PATH, None, Some(serde_json::to_string(f).expect("json"))).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
}

#[tokio::test]
async fn a_replayed_key_is_answered_again_without_a_second_effect() {
    let app = app(Faults::default());
    let m = msg("t1-c", Uuid::new_v4(), "u1");
    let (s1, b1) = send(&app, Some("k1"), &m).await;
    let (s2, b2) = send(&app, Some("k1"), &m).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    let (r1, r2): (SendResult, SendResult) =
        (serde_json::from_slice(&b1).unwrap(), serde_json::from_slice(&b2).unwrap());
    assert_eq!(r1.status, SendStatus::Accepted);
    assert!(r2.replayed && r2.id == r1.id);
    let (s, b) = call(&app, "GET", &format!("{LOOKUP_PATH}/k1"), None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<SendResult>(&b).unwrap().id, r1.id);
    let (s, _) = call(&app, "GET", &format!("{LOOKUP_PATH}/never"), None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let sum = summary(&app, "t1-").await;
    assert_eq!((sum.requests, sum.delivered, sum.duplicate_requests, sum.duplicate_deliveries), (2, 1, 1, 0));
}

#[tokio::test]
async fn without_keys_the_same_message_twice_is_a_duplicate_delivery() {
    let app = app(Faults::default());
    let m = msg("t2-c", Uuid::new_v4(), "u1");
    send(&app, None, &m).await;
    send(&app, None, &m).await;
    let sum = summary(&app, "t2-").await;
    assert_eq!((sum.delivered, sum.duplicate_deliveries), (1, 1));
    // The same with keys but the provider's idempotency off.
    set_faults(&app, &Faults { idempotency: false, ..Faults::default() }).await;
    let m = msg("t2b-c", Uuid::new_v4(), "u1");
    send(&app, Some("k"), &m).await;
    send(&app, Some("k"), &m).await;
    assert_eq!(summary(&app, "t2b-").await.duplicate_deliveries, 1);
}

#[tokio::test]
async fn a_batch_is_handled_in_order_with_keys_per_item() {
    let app = app(Faults::default());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut items = vec![msg("t3-c", a, "u1"), msg("t3-c", b, "u1"), msg("t3-c", a, "u1")];
    items[0].idempotency_key = Some("a".into());
    items[1].idempotency_key = Some("b".into());
    items[2].idempotency_key = Some("a".into());
    let body = serde_json::to_string(&BatchRequest { messages: items }).unwrap();
    let (s, bytes) = call(&app, "POST", BATCH_PATH, None, Some(body)).await;
    assert_eq!(s, StatusCode::OK);
    let resp: BatchResponse = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(resp.results.iter().map(|r| r.replayed).collect::<Vec<_>>(), vec![false, false, true]);
    let rec = record(&app).await;
    let order: Vec<_> = rec.entries.iter().map(|e| (e.metadata.message_id, e.outcome)).collect();
    assert_eq!(order, vec![(a, RecordOutcome::Accepted), (b, RecordOutcome::Accepted), (a, RecordOutcome::Replayed)]);
}

#[tokio::test]
async fn rejections_errors_and_outages_do_nothing() {
    let app = app(Faults { reject_rate: 1.0, ..Faults::default() });
    let m = msg("t4-c", Uuid::new_v4(), "u1");
    let (s, b) = send(&app, Some("k"), &m).await;
    assert_eq!(s, StatusCode::OK);
    let r: SendResult = serde_json::from_slice(&b).unwrap();
    assert!(r.status == SendStatus::Rejected && r.retryable);
    set_faults(&app, &Faults { error_rate: 1.0, ..Faults::default() }).await;
    assert_eq!(send(&app, Some("k"), &m).await.0, StatusCode::INTERNAL_SERVER_ERROR);
    set_faults(&app, &Faults { down: true, ..Faults::default() }).await;
    let (s, b) = send(&app, Some("k"), &m).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(serde_json::from_slice::<serde_json::Value>(&b).unwrap()["error"].is_string());
    let sum = summary(&app, "t4-").await;
    assert_eq!((sum.requests, sum.delivered, sum.rejected, sum.failed), (3, 0, 1, 2));
    // Back up: the key was never used, so this is the first effect.
    set_faults(&app, &Faults::default()).await;
    let r: SendResult = serde_json::from_slice(&send(&app, Some("k"), &m).await.1).unwrap();
    assert!(r.status == SendStatus::Accepted && !r.replayed);
}

#[tokio::test]
async fn garbage_timeout_and_reset_answers_come_after_the_work_is_done() {
    let app = app(Faults { garbage_rate: 1.0, ..Faults::default() });
    let m1 = msg("t5-c", Uuid::new_v4(), "u1");
    let (s, b) = send(&app, Some("g"), &m1).await;
    assert_eq!(s, StatusCode::OK);
    assert!(serde_json::from_slice::<serde_json::Value>(&b).is_err(), "garbage is not JSON");

    set_faults(&app, &Faults { reset_rate: 1.0, ..Faults::default() }).await;
    let m2 = msg("t5-c", Uuid::new_v4(), "u2");
    let (_, b) = send(&app, Some("r"), &m2).await;
    assert_eq!(b, b"<reset>", "the body stream breaks");

    set_faults(&app, &Faults { timeout_rate: 1.0, hang_ms: 60_000, ..Faults::default() }).await;
    let m3 = msg("t5-c", Uuid::new_v4(), "u3");
    let hung = tokio::time::timeout(std::time::Duration::from_millis(300), send(&app, Some("t"), &m3)).await;
    assert!(hung.is_err(), "a timeout fault hangs past the caller's patience");

    let sum = summary(&app, "t5-").await;
    assert_eq!((sum.requests, sum.delivered, sum.accepted), (3, 3, 3), "all three were done");
    set_faults(&app, &Faults::default()).await;
    for (k, m) in [("g", &m1), ("r", &m2), ("t", &m3)] {
        let r: SendResult = serde_json::from_slice(&send(&app, Some(k), m).await.1).unwrap();
        assert!(r.replayed, "{k}: the retry is a replay");
    }
    assert_eq!(summary(&app, "t5-").await.duplicate_deliveries, 0);
}

#[tokio::test]
async fn bad_input_is_a_400_json_error() {
    let app = app(Faults::default());
    for (uri, body) in [
        (SEND_PATH, "not json".to_string()),
        (SEND_PATH, r#"{"to":"","text":"x","metadata":{"messageId":"00000000-0000-0000-0000-000000000000","recipientId":"u","conversationId":"c"}}"#.into()),
        (BATCH_PATH, r#"{"messages":[]}"#.into()),
    ] {
        let (s, b) = call(&app, "POST", uri, None, Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(serde_json::from_slice::<serde_json::Value>(&b).unwrap()["error"].is_string());
    }
    let (s, _) = call(&app, "PUT", FAULTS_PATH, None, Some(r#"{"rejectRate": 2}"#.into())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&app, "PUT", FAULTS_PATH, None, Some(r#"{"rejectRate": "lots"}"#.into())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let m = msg("t6-c", Uuid::new_v4(), "u1");
    send(&app, Some("k"), &m).await;
    let other = msg("t6-c", Uuid::new_v4(), "u1");
    assert_eq!(send(&app, Some("k"), &other).await.0, StatusCode::UNPROCESSABLE_ENTITY);
}
