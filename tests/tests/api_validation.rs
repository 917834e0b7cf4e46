//! The message API's contract: validation (status, error body, offending field, nothing
//! written), body limits, content type, idempotent resubmission, lookups and pagination.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use chat4all_tests::{
    assert_delivered_exactly_once, message_rows, outbox_rows, unique, MessageBuilder, Stack, INSTAGRAM, TELEGRAM,
    WHATSAPP,
};
use serde_json::{json, Value};
use uuid::Uuid;

/// One request that must be refused.
struct Case {
    name: String,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    status: u16,
    /// The `field` the error must name; None: the error must carry no field.
    field: Option<String>,
    conversation_id: String,
    sender_id: String,
}

/// A valid body in a fresh conversation, from a fresh sender, to two recipients.
fn valid(tag: &str) -> (Value, String, String) {
    let conv = unique(&format!("val-{tag}"));
    let sender = unique("val-sender");
    let body = MessageBuilder::new(&conv)
        .sender(&sender)
        .to(&unique("val-u"), WHATSAPP)
        .to(&unique("val-u"), TELEGRAM)
        .build();
    (body, conv, sender)
}

/// A 400 case: a valid body changed by `edit`, refused naming `field`.
fn bad(name: &str, field: Option<&str>, edit: impl FnOnce(&mut Value)) -> Case {
    let (mut body, conv, sender) = valid(name);
    edit(&mut body);
    Case {
        name: name.to_string(),
        body: serde_json::to_vec(&body).unwrap(),
        content_type: Some("application/json"),
        status: 400,
        field: field.map(str::to_owned),
        conversation_id: conv,
        sender_id: sender,
    }
}

fn remove(v: &mut Value, key: &str) {
    v.as_object_mut().unwrap().remove(key);
}

/// Posts the case and returns what is wrong with the outcome (empty when all is right).
async fn check(s: &Stack, case: &Case) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let reply = s.api.post_raw(case.body.clone(), case.content_type).await?;
    if reply.status != case.status {
        problems.push(format!("status {} instead of {} (body {})", reply.status, case.status, reply.raw));
    }
    if !reply.body.is_object() {
        problems.push(format!("the error body is not a JSON object: {:?}", reply.raw));
    }
    match reply.error() {
        Some(e) if !e.trim().is_empty() => {}
        _ => problems.push(format!("no non-empty `error` string in {}", reply.raw)),
    }
    let field = reply.body.get("field");
    match (&case.field, field) {
        (Some(want), Some(Value::String(got))) if got == want => {}
        (None, None) => {}
        (want, got) => problems.push(format!("`field` should be {want:?}, is {got:?} (body {})", reply.raw)),
    }
    let rows = message_rows(&s.db, &case.conversation_id, &case.sender_id).await?;
    if rows != 0 {
        problems.push(format!("{rows} messages rows were written for the refused request"));
    }
    let outbox = outbox_rows(&s.db, std::slice::from_ref(&case.conversation_id)).await?;
    if outbox != 0 {
        problems.push(format!("{outbox} outbox rows were written for the refused request"));
    }
    Ok(problems.into_iter().map(|p| format!("[{}] {p}", case.name)).collect())
}

async fn check_all(s: &Stack, cases: &[Case]) -> Result<()> {
    let mut problems = Vec::new();
    for case in cases {
        problems.extend(check(s, case).await?);
    }
    if !problems.is_empty() {
        bail!("{} of {} refusals went wrong:\n{}", problems.len(), cases.len(), problems.join("\n"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bodies_are_refused_naming_the_field_and_nothing_is_written() -> Result<()> {
    let s = Stack::connect().await?;
    let many: Vec<Value> = (0..101).map(|i| json!({"userId": format!("u{i}"), "channel": "WHATSAPP"})).collect();
    let cases = vec![
        bad("missing conversationId", Some("conversationId"), |v| remove(v, "conversationId")),
        bad("null conversationId", Some("conversationId"), |v| v["conversationId"] = Value::Null),
        bad("blank conversationId", Some("conversationId"), |v| v["conversationId"] = json!("  ")),
        bad("numeric conversationId", Some("conversationId"), |v| v["conversationId"] = json!(7)),
        bad("missing senderId", Some("senderId"), |v| remove(v, "senderId")),
        bad("empty senderId", Some("senderId"), |v| v["senderId"] = json!("")),
        bad("missing channel", Some("channel"), |v| remove(v, "channel")),
        bad("unknown channel", Some("channel"), |v| v["channel"] = json!("SMS")),
        bad("non-string channel", Some("channel"), |v| v["channel"] = json!(1)),
        bad("missing content", Some("content"), |v| remove(v, "content")),
        bad("content not an object", Some("content"), |v| v["content"] = json!("hello")),
        bad("missing content.type", Some("content.type"), |v| remove(&mut v["content"], "type")),
        bad("unsupported content.type", Some("content.type"), |v| v["content"]["type"] = json!("IMAGE")),
        bad("missing content.text", Some("content.text"), |v| remove(&mut v["content"], "text")),
        bad("empty content.text", Some("content.text"), |v| v["content"]["text"] = json!("")),
        bad("content.text over 10000 characters", Some("content.text"), |v| {
            v["content"]["text"] = json!("x".repeat(10_001))
        }),
        bad("content.text over 10000 multi-byte characters", Some("content.text"), |v| {
            v["content"]["text"] = json!("é".repeat(10_001))
        }),
        bad("NUL character in content.text", Some("content.text"), |v| v["content"]["text"] = json!("a\u{0}b")),
        bad("NUL character in a recipient's userId", Some("recipients[0].userId"), |v| {
            v["recipients"][0]["userId"] = json!("u\u{0}")
        }),
        bad("missing recipients", Some("recipients"), |v| remove(v, "recipients")),
        bad("recipients not an array", Some("recipients"), |v| v["recipients"] = json!({"userId": "a"})),
        bad("no recipients", Some("recipients"), |v| v["recipients"] = json!([])),
        bad("101 recipients", Some("recipients"), move |v| v["recipients"] = Value::Array(many)),
        bad("recipient not an object", Some("recipients[1]"), |v| v["recipients"][1] = json!("bob")),
        bad("recipient without userId", Some("recipients[0].userId"), |v| remove(&mut v["recipients"][0], "userId")),
        bad("recipient without channel", Some("recipients[1].channel"), |v| remove(&mut v["recipients"][1], "channel")),
        bad("recipient with unknown channel", Some("recipients[1].channel"), |v| {
            v["recipients"][1]["channel"] = json!("FAX")
        }),
        bad("duplicate recipient", Some("recipients[2]"), |v| {
            let first = v["recipients"][0].clone();
            v["recipients"].as_array_mut().unwrap().push(first)
        }),
        bad("duplicate recipient in another case", Some("recipients[2]"), |v| {
            let user = v["recipients"][0]["userId"].clone();
            v["recipients"].as_array_mut().unwrap().push(json!({"userId": user, "channel": "whatsapp"}))
        }),
        bad("messageId not a UUID", Some("messageId"), |v| v["messageId"] = json!("not-a-uuid")),
        bad("messageId not a string", Some("messageId"), |v| v["messageId"] = json!(42)),
        bad("body is an array", None, |v| *v = json!([v.clone()])),
    ];
    let mut cases = cases;
    // Malformed JSON: a valid body cut short (it still names its conversation and sender, so
    // the "nothing written" check means something).
    let (body, conv, sender) = valid("malformed");
    let mut raw = serde_json::to_vec(&body)?;
    raw.truncate(raw.len() - 1);
    cases.push(Case {
        name: "malformed JSON".into(),
        body: raw,
        content_type: Some("application/json"),
        status: 400,
        field: None,
        conversation_id: conv,
        sender_id: sender,
    });
    check_all(&s, &cases).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_refused_with_413() -> Result<()> {
    let s = Stack::connect().await?;
    let (mut body, conv, sender) = valid("oversized");
    // Otherwise valid, but more than 64 KiB on the wire.
    body["padding"] = json!("p".repeat(70 * 1024));
    let raw = serde_json::to_vec(&body)?;
    ensure!(raw.len() > 64 * 1024);
    check_all(
        &s,
        &[Case {
            name: "body over 64 KiB".into(),
            body: raw,
            content_type: Some("application/json"),
            status: 413,
            field: None,
            conversation_id: conv,
            sender_id: sender,
        }],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_content_type_is_refused_with_415() -> Result<()> {
    let s = Stack::connect().await?;
    let mut cases = Vec::new();
    for ct in ["text/plain", "application/x-www-form-urlencoded", "application/xml"] {
        let (body, conv, sender) = valid("content-type");
        cases.push(Case {
            name: format!("content-type {ct}"),
            body: serde_json::to_vec(&body)?,
            content_type: Some(ct),
            status: 415,
            field: None,
            conversation_id: conv,
            sender_id: sender,
        });
    }
    check_all(&s, &cases).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_values_are_accepted_and_stored() -> Result<()> {
    let s = Stack::connect().await?;

    // 10,000 characters of two bytes each, lower-case channels, a charset in the content type.
    let conv = unique("val-boundary");
    let text = "é".repeat(10_000);
    let alice = unique("alice");
    let bob = unique("bob");
    let carol = unique("carol");
    let msg = MessageBuilder::new(&conv)
        .channel("telegram")
        .text(text.clone())
        .to(&alice, "whatsapp")
        .to(&bob, "Telegram")
        .to(&carol, INSTAGRAM)
        // The same user on two channels is two distinct recipients.
        .to(&alice, TELEGRAM);
    let reply = s.api.post_raw(serde_json::to_vec(&msg.build())?, Some("application/json; charset=utf-8")).await?;
    reply.expect(202, "10,000-character text with lower-case channels")?;
    ensure!(reply.body["status"] == "PENDING", "answer {}", reply.raw);
    let id = reply.message_id()?;

    let got = s.api.get_message(&id.to_string()).await?;
    got.expect(200, "GET the accepted message")?;
    let v = &got.body;
    ensure!(v["messageId"] == id.to_string(), "messageId in {}", got.raw);
    ensure!(v["conversationId"] == conv.as_str(), "conversationId in {}", got.raw);
    ensure!(v["senderId"] == msg.sender_id.as_str(), "senderId in {}", got.raw);
    ensure!(v["channel"] == TELEGRAM, "channel should be stored upper-case: {}", v["channel"]);
    ensure!(v["content"]["type"] == "TEXT" && v["content"]["text"] == text.as_str(), "content not stored verbatim");
    ensure!(v["createdAt"].is_string(), "createdAt missing: {}", v["createdAt"]);
    ensure!(v["status"].is_string(), "status missing");
    let mut recipients: Vec<(String, String)> = v["recipients"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|r| (r["userId"].as_str().unwrap_or("").to_string(), r["channel"].as_str().unwrap_or("").to_string()))
        .collect();
    recipients.sort();
    let mut want = vec![
        (alice.clone(), WHATSAPP.to_string()),
        (alice.clone(), TELEGRAM.to_string()),
        (bob.clone(), TELEGRAM.to_string()),
        (carol.clone(), INSTAGRAM.to_string()),
    ];
    want.sort();
    ensure!(recipients == want, "recipients {recipients:?}, expected {want:?}");
    for r in v["recipients"].as_array().unwrap() {
        for key in ["status", "sentAt", "deliveredAt"] {
            ensure!(r.get(key).is_some(), "recipient {r} lacks {key}");
        }
    }
    ensure!(message_rows(&s.db, &conv, &msg.sender_id).await? == 1);
    let views = s.api.wait_delivered(&[id], Instant::now() + Duration::from_secs(30)).await?;
    for r in views[&id]["recipients"].as_array().unwrap() {
        ensure!(r["sentAt"].is_string() && r["deliveredAt"].is_string(), "timestamps of a delivered recipient: {r}");
    }
    ensure!(views[&id]["status"] == "DELIVERED", "overall status {}", views[&id]["status"]);
    assert_delivered_exactly_once(&s.db, &msg.deliveries(id)).await?;

    // Exactly 100 recipients.
    let conv = unique("val-100");
    let mut msg = MessageBuilder::new(&conv);
    for i in 0..100 {
        msg = msg.to(&format!("{conv}-u{i}"), [WHATSAPP, TELEGRAM, INSTAGRAM][i % 3]);
    }
    let id = s.api.send(&msg.build()).await?;
    let got = s.api.get_message(&id.to_string()).await?;
    got.expect(200, "GET the 100-recipient message")?;
    let n = got.body["recipients"].as_array().map_or(0, Vec::len);
    ensure!(n == 100, "{n} recipients stored instead of 100");
    s.api.wait_delivered(&[id], Instant::now() + Duration::from_secs(30)).await?;
    assert_delivered_exactly_once(&s.db, &msg.deliveries(id)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_the_same_message_id_is_idempotent() -> Result<()> {
    let s = Stack::connect().await?;
    let conv = unique("val-idem");
    let id = Uuid::new_v4();
    let msg = MessageBuilder::new(&conv).message_id(id).to(&unique("u"), WHATSAPP).to(&unique("u"), TELEGRAM);
    let body = msg.build();

    let first = s.api.post_message(&body).await?;
    first.expect(202, "first submission")?;
    ensure!(first.message_id()? == id, "the answer should carry the given messageId: {}", first.raw);
    ensure!(first.body["status"] == "PENDING", "first answer {}", first.raw);
    let again = s.api.post_message(&body).await?;
    again.expect(202, "identical resubmission")?;
    ensure!(again.body == first.body, "resubmission answered {} instead of {}", again.raw, first.raw);

    // Concurrent identical resubmissions too.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (api, body) = (s.api.clone(), body.clone());
        set.spawn(async move { api.post_message(&body).await });
    }
    while let Some(r) = set.join_next().await {
        let r = r??;
        r.expect(202, "concurrent identical resubmission")?;
        ensure!(r.body == first.body, "concurrent resubmission answered {}", r.raw);
    }

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE id = $1 OR conversation_id = $2")
        .bind(id)
        .bind(&conv)
        .fetch_one(&s.db)
        .await?;
    ensure!(count == 1, "{count} messages rows for one idempotent message");
    let deliveries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE message_id = $1").bind(id).fetch_one(&s.db).await?;
    ensure!(deliveries == 2, "{deliveries} deliveries rows instead of 2");

    s.api.wait_delivered(&[id], Instant::now() + Duration::from_secs(30)).await?;
    // Once more after delivery: same answer, nothing delivered again.
    let late = s.api.post_message(&body).await?;
    late.expect(202, "resubmission after delivery")?;
    ensure!(late.body == first.body, "late resubmission answered {}", late.raw);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_delivered_exactly_once(&s.db, &msg.deliveries(id)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_a_message_id_with_another_body_is_a_conflict() -> Result<()> {
    let s = Stack::connect().await?;
    let conv = unique("val-conflict");
    let id = Uuid::new_v4();
    let user = unique("u");
    let original = MessageBuilder::new(&conv).message_id(id).text("the original").to(&user, WHATSAPP);
    s.api.send(&original.build()).await?;

    let variants = vec![
        ("other text", original.clone().text("something else")),
        ("other conversation", {
            let mut m = original.clone();
            m.conversation_id = unique("val-conflict-other");
            m
        }),
        ("other sender", original.clone().sender(&unique("sender"))),
        ("other channel", original.clone().channel(TELEGRAM)),
        ("extra recipient", original.clone().to(&unique("u"), TELEGRAM)),
    ];
    let mut problems = Vec::new();
    for (name, variant) in &variants {
        let r = s.api.post_message(&variant.build()).await?;
        if r.status != 409 {
            problems.push(format!("[{name}] status {} instead of 409: {}", r.status, r.raw));
        }
        if r.error().is_none_or(|e| e.trim().is_empty()) {
            problems.push(format!("[{name}] no `error` in {}", r.raw));
        }
    }
    ensure!(problems.is_empty(), "conflicting resubmissions:\n{}", problems.join("\n"));

    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE id = $1").bind(id).fetch_one(&s.db).await?;
    ensure!(count == 1, "{count} rows for message {id}");
    let got = s.api.get_message(&id.to_string()).await?;
    got.expect(200, "GET after conflicts")?;
    ensure!(got.body["content"]["text"] == "the original", "the stored message changed: {}", got.raw);
    ensure!(got.body["conversationId"] == conv.as_str(), "the stored message changed: {}", got.raw);
    s.api.wait_delivered(&[id], Instant::now() + Duration::from_secs(30)).await?;
    assert_delivered_exactly_once(&s.db, &original.deliveries(id)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_unknown_message_is_404_and_malformed_id_is_400() -> Result<()> {
    let s = Stack::connect().await?;
    let r = s.api.get_message(&Uuid::new_v4().to_string()).await?;
    r.expect(404, "GET an unknown message")?;
    ensure!(r.error().is_some_and(|e| !e.is_empty()), "404 without an error body: {}", r.raw);

    for bad in ["not-a-uuid", "12345", "0c4a-zz"] {
        let r = s.api.get_message(bad).await?;
        r.expect(400, &format!("GET /api/v1/messages/{bad}"))?;
        ensure!(r.error().is_some_and(|e| !e.is_empty()), "400 without an error body: {}", r.raw);
        ensure!(r.field() == Some("messageId"), "400 for {bad} should name messageId: {}", r.raw);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_pages_walk_in_order() -> Result<()> {
    let s = Stack::connect().await?;
    let conv = unique("val-page");
    let user = unique("u");
    let mut posted = Vec::new();
    for i in 0..7 {
        let body = MessageBuilder::new(&conv).text(format!("page message {i}")).to(&user, WHATSAPP).build();
        posted.push(s.api.send(&body).await?.to_string());
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    for page_no in 0..5 {
        let r = s.api.conversation_page(&conv, Some("3"), cursor.as_deref()).await?;
        r.expect(200, &format!("page {page_no}"))?;
        ensure!(r.body["conversationId"] == conv.as_str(), "conversationId in {}", r.raw);
        let msgs = r.body["messages"].as_array().cloned().unwrap_or_default();
        pages.push(msgs.len());
        for m in &msgs {
            ensure!(m["conversationId"] == conv.as_str(), "foreign message on the page: {m}");
            ensure!(m["recipients"].is_array(), "page message without recipients: {m}");
            seen.push(m["messageId"].as_str().unwrap_or_default().to_string());
        }
        match &r.body["nextCursor"] {
            Value::Null => {
                cursor = None;
                break;
            }
            Value::String(c) => cursor = Some(c.clone()),
            other => bail!("nextCursor must be a string or null, is {other}"),
        }
    }
    ensure!(cursor.is_none(), "the walk never ended (pages {pages:?})");
    ensure!(pages == vec![3, 3, 1], "page sizes {pages:?}, expected [3, 3, 1]");
    ensure!(seen == posted, "pages gave {seen:?}, posted in the order {posted:?}");

    // Without a limit, all seven at once (default 50), no next page.
    let all = s.api.conversation_page(&conv, None, None).await?;
    all.expect(200, "page without limit")?;
    let ids: Vec<&str> =
        all.body["messages"].as_array().unwrap().iter().map(|m| m["messageId"].as_str().unwrap_or("")).collect();
    ensure!(ids == posted.iter().map(String::as_str).collect::<Vec<_>>(), "default page {ids:?}");
    ensure!(all.body["nextCursor"].is_null(), "nextCursor should be null: {}", all.raw);

    // An unknown conversation is an empty page.
    let none = s.api.conversation_page(&unique("val-page-empty"), Some("3"), None).await?;
    none.expect(200, "unknown conversation")?;
    ensure!(none.body["messages"].as_array().is_some_and(Vec::is_empty), "{}", none.raw);
    ensure!(none.body["nextCursor"].is_null(), "{}", none.raw);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_limits_outside_1_to_500_are_refused() -> Result<()> {
    let s = Stack::connect().await?;
    let conv = unique("val-limit");
    s.api.send(&MessageBuilder::new(&conv).to(&unique("u"), WHATSAPP).build()).await?;
    for ok in ["1", "500"] {
        s.api.conversation_page(&conv, Some(ok), None).await?.expect(200, &format!("limit={ok}"))?;
    }
    let mut problems = Vec::new();
    for bad in ["0", "501", "-1", "abc", "2.5"] {
        let r = s.api.conversation_page(&conv, Some(bad), None).await?;
        if r.status != 400 || r.error().is_none() || r.field() != Some("limit") {
            problems.push(format!("limit={bad}: {} {}", r.status, r.raw));
        }
    }
    let r = s.api.conversation_page(&conv, Some("3"), Some("not-a-cursor")).await?;
    if r.status != 400 || r.error().is_none() {
        problems.push(format!("cursor=not-a-cursor: {} {}", r.status, r.raw));
    }
    ensure!(problems.is_empty(), "bad page parameters accepted or mis-answered:\n{}", problems.join("\n"));
    Ok(())
}
