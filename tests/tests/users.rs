//! user-service through the api-gateway with a real key: users, identities per channel,
//! resolve, the Redis cache and its invalidation, and bad input.

#[path = "support/gateway_client.rs"]
mod gateway_client;

use anyhow::Result;
use chat4all_tests::{unique, Config};
use gateway_client::Gw;
use serde_json::json;

async fn gw() -> Result<Gw> {
    Gw::with_key(&Config::from_env(), 1000.0, 1000).await
}

#[tokio::test]
async fn create_get_list_users() -> Result<()> {
    let gw = gw().await?;
    let phone = unique("+55");
    let r = gw
        .post_json(
            "/api/v1/users",
            &json!({"name": "Ana", "identities": [{"channel": "WHATSAPP", "externalId": phone}]}),
        )
        .await?;
    r.expect(201, "POST /api/v1/users")?;
    let id = r.body["userId"].as_str().unwrap().to_string();
    assert_eq!(r.body["identities"], json!([{"channel": "WHATSAPP", "externalId": phone}]));

    let got = gw.get(&format!("/api/v1/users/{id}")).await?;
    got.expect(200, "GET user")?;
    assert_eq!(got.body["name"], "Ana");
    assert_eq!(got.body["identities"][0]["externalId"], phone.as_str());

    // The list pages by cursor until it finds the new user.
    let mut cursor = String::new();
    let mut found = false;
    for _ in 0..1000 {
        let page = gw.get(&format!("/api/v1/users?limit=100&cursor={cursor}")).await?;
        page.expect(200, "GET /api/v1/users")?;
        found |= page.body["users"].as_array().unwrap().iter().any(|u| u["userId"] == id.as_str());
        match page.body["nextCursor"].as_str() {
            Some(c) if !found => cursor = c.to_string(),
            _ => break,
        }
    }
    assert!(found, "the new user is not listed");
    Ok(())
}

#[tokio::test]
async fn identities_resolve_and_the_cache_follows_changes() -> Result<()> {
    let gw = gw().await?;
    let r = gw.post_json("/api/v1/users", &json!({"name": "Bo"})).await?;
    r.expect(201, "create")?;
    let id = r.body["userId"].as_str().unwrap().to_string();
    let handle = unique("tg");

    // Read the user once so that it is cached, then change it: the next read must see the change.
    gw.get(&format!("/api/v1/users/{id}")).await?.expect(200, "get")?;
    let add = gw
        .post_json(&format!("/api/v1/users/{id}/identities"), &json!({"channel": "TELEGRAM", "externalId": handle}))
        .await?;
    add.expect(201, "add identity")?;
    let got = gw.get(&format!("/api/v1/users/{id}")).await?;
    assert_eq!(
        got.body["identities"],
        json!([{"channel": "TELEGRAM", "externalId": handle}]),
        "stale user: {}",
        got.raw
    );

    // Resolve: a miss, then served from the cache.
    let path = format!("/api/v1/identities/resolve?channel=TELEGRAM&id={handle}");
    let first = gw.req(reqwest::Method::GET, &path).send().await?;
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.headers()["x-cache"], "miss");
    let body: serde_json::Value = first.json().await?;
    assert_eq!(body["userId"], id.as_str());
    let second = gw.req(reqwest::Method::GET, &path).send().await?;
    assert_eq!(second.headers()["x-cache"], "hit", "Redis cache not used");
    let cached_user = gw.req(reqwest::Method::GET, &format!("/api/v1/users/{id}")).send().await?;
    assert_eq!(cached_user.headers()["x-cache"], "hit");

    // Another user cannot take the same identity.
    let other = gw.post_json("/api/v1/users", &json!({"name": "Cy"})).await?;
    let other_id = other.body["userId"].as_str().unwrap().to_string();
    let taken = gw
        .post_json(
            &format!("/api/v1/users/{other_id}/identities"),
            &json!({"channel": "TELEGRAM", "externalId": handle}),
        )
        .await?;
    taken.expect(409, "identity of another user")?;
    assert_eq!(taken.field(), Some("externalId"));

    // Delete: the cached resolve and user are invalidated.
    let del = gw.delete(&format!("/api/v1/users/{id}/identities/TELEGRAM")).await?;
    del.expect(204, "delete identity")?;
    gw.get(&path).await?.expect(404, "resolve after delete (stale cache?)")?;
    let got = gw.get(&format!("/api/v1/users/{id}")).await?;
    assert_eq!(got.body["identities"], json!([]), "stale user after delete: {}", got.raw);
    gw.delete(&format!("/api/v1/users/{id}/identities/TELEGRAM")).await?.expect(404, "delete twice")?;

    // Now the other user can have it.
    gw.post_json(
        &format!("/api/v1/users/{other_id}/identities"),
        &json!({"channel": "TELEGRAM", "externalId": handle}),
    )
    .await?
    .expect(201, "identity freed")?;
    let r = gw.get(&path).await?;
    assert_eq!(r.body["userId"], other_id.as_str());
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_4xx_json() -> Result<()> {
    let gw = gw().await?;
    let cases = [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "identities": [{"channel": "SMS", "externalId": "1"}]}), "identities[0].channel"),
        (json!({"name": "x", "identities": [{"channel": "WHATSAPP"}]}), "identities[0].externalId"),
    ];
    for (body, field) in cases {
        let r = gw.post_json("/api/v1/users", &body).await?;
        r.expect(400, &format!("{body}"))?;
        assert_eq!(r.field(), Some(field), "{}", r.raw);
    }
    let r = gw.req(reqwest::Method::POST, "/api/v1/users").body("{not json").send().await?;
    assert_eq!(r.status().as_u16(), 400);
    gw.get("/api/v1/users/not-a-uuid").await?.expect(400, "bad id")?;
    gw.get(&format!("/api/v1/users/{}", uuid::Uuid::new_v4())).await?.expect(404, "unknown user")?;
    let r = gw
        .post_json(
            &format!("/api/v1/users/{}/identities", uuid::Uuid::new_v4()),
            &json!({"channel": "WHATSAPP", "externalId": "1"}),
        )
        .await?;
    r.expect(404, "identity of an unknown user")?;
    gw.get("/api/v1/identities/resolve?channel=FAX&id=1").await?.expect(400, "bad channel")?;
    gw.get("/api/v1/identities/resolve?channel=WHATSAPP").await?.expect(400, "no id")?;
    gw.get("/api/v1/users?limit=0").await?.expect(400, "limit 0")?;
    gw.delete(&format!("/api/v1/users/{}/identities/FAX", uuid::Uuid::new_v4())).await?.expect(400, "bad channel")?;
    Ok(())
}

/// A user id as a recipient resolves to the user's identity on the requested channel; an unknown
/// user, or a user without an identity on that channel, fails only that recipient (FAILED with a
/// reason) while the others of the same message are delivered.
#[tokio::test]
async fn user_id_recipients_resolve_or_fail_alone() -> Result<()> {
    let gw = gw().await?;
    let r = gw
        .post_json(
            "/api/v1/users",
            &json!({"name": "Di", "identities": [{"channel": "WHATSAPP", "externalId": unique("+55")}]}),
        )
        .await?;
    r.expect(201, "create")?;
    let user = r.body["userId"].as_str().unwrap().to_string();
    let stranger = uuid::Uuid::new_v4().to_string();
    let conv = unique("resolve");
    let body = chat4all_tests::MessageBuilder::new(&conv)
        .to(&user, "WHATSAPP")
        .to(&user, "TELEGRAM")
        .to(&stranger, "WHATSAPP")
        .to(&unique("native"), "WHATSAPP")
        .build();
    let posted = gw.post_json("/api/v1/messages", &body).await?;
    posted.expect(202, "message to users")?;
    let id = posted.message_id()?;
    let view = chat4all_tests::wait_for("every recipient settled", std::time::Duration::from_secs(30), || {
        let gw = gw.clone();
        async move {
            let v = gw.get(&format!("/api/v1/messages/{id}")).await?;
            let recipients = v.body["recipients"].as_array().cloned().unwrap_or_default();
            let settled = recipients.len() == 4
                && recipients.iter().all(|r| matches!(r["status"].as_str(), Some("DELIVERED" | "READ" | "FAILED")));
            Ok((settled.then(|| v.body.clone()), v.raw))
        }
    })
    .await?;
    let of = |uid: &str, ch: &str| {
        view["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["userId"] == uid && r["channel"] == ch)
            .cloned()
            .unwrap_or_else(|| panic!("no recipient {uid}/{ch} in {view}"))
    };
    let ok = of(&user, "WHATSAPP");
    assert_ne!(ok["status"], "FAILED", "{ok}");
    let no_identity = of(&user, "TELEGRAM");
    assert_eq!(no_identity["status"], "FAILED");
    assert!(no_identity["reason"].as_str().unwrap().contains("has no TELEGRAM identity"), "{no_identity}");
    let unknown = of(&stranger, "WHATSAPP");
    assert_eq!(unknown["status"], "FAILED");
    assert!(unknown["reason"].as_str().unwrap().contains("no user"), "{unknown}");
    let native = view["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["userId"].as_str().unwrap().starts_with("native"))
        .unwrap();
    assert_ne!(native["status"], "FAILED", "a channel-native address is delivered as before: {native}");
    Ok(())
}
