//! The message a client posts, parsed once into types that are valid by construction.

use std::collections::HashSet;

use serde_json::Value;
use uuid::Uuid;

use crate::channel::Channel;
use crate::events::{Content, Recipient};

pub const MAX_TEXT_CHARS: usize = 10_000;
pub const MAX_RECIPIENTS: usize = 100;
pub const MAX_ID_CHARS: usize = 200;
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A validation failure: what is wrong and which field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub error: String,
    pub field: Option<String>,
}

impl Invalid {
    fn at(field: &str, error: impl Into<String>) -> Self {
        Self { error: error.into(), field: Some(field.to_string()) }
    }
}

/// A message that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub message_id: Option<Uuid>,
    pub conversation_id: String,
    pub sender_id: String,
    pub channel: Channel,
    pub content: Content,
    pub recipients: Vec<Recipient>,
}

impl NewMessage {
    /// Parses a request body. Every rule of the API lives here.
    pub fn parse(body: &[u8]) -> Result<Self, Invalid> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| Invalid { error: format!("malformed JSON: {e}"), field: None })?;
        let obj =
            value.as_object().ok_or_else(|| Invalid { error: "the body must be a JSON object".into(), field: None })?;
        let message_id = match obj.get("messageId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(Uuid::parse_str(s).map_err(|_| Invalid::at("messageId", "messageId must be a UUID"))?)
            }
            Some(_) => return Err(Invalid::at("messageId", "messageId must be a UUID string")),
        };
        let conversation_id = id_field(obj.get("conversationId"), "conversationId")?;
        let sender_id = id_field(obj.get("senderId"), "senderId")?;
        let channel = channel_field(obj.get("channel"), "channel")?;
        let content = content_field(obj.get("content"))?;
        let recipients = recipients_field(obj.get("recipients"))?;
        Ok(Self { message_id, conversation_id, sender_id, channel, content, recipients })
    }
}

fn id_field(v: Option<&Value>, field: &str) -> Result<String, Invalid> {
    match v {
        None | Some(Value::Null) => Err(Invalid::at(field, format!("{field} is required"))),
        Some(Value::String(s)) if s.trim().is_empty() => Err(Invalid::at(field, format!("{field} must not be empty"))),
        Some(Value::String(s)) if s.chars().count() > MAX_ID_CHARS => {
            Err(Invalid::at(field, format!("{field} must be at most {MAX_ID_CHARS} characters")))
        }
        Some(Value::String(s)) if s.contains('\0') => Err(nul_in(field)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Invalid::at(field, format!("{field} must be a string"))),
    }
}

/// PostgreSQL's text and jsonb cannot hold U+0000: refused here, or the insert would fail as an
/// internal error.
fn nul_in(field: &str) -> Invalid {
    Invalid::at(field, format!("{field} must not contain the NUL character (\\u0000)"))
}

fn channel_field(v: Option<&Value>, field: &str) -> Result<Channel, Invalid> {
    match v {
        None | Some(Value::Null) => Err(Invalid::at(field, format!("{field} is required"))),
        Some(Value::String(s)) => {
            s.parse().map_err(|e: crate::channel::UnknownChannel| Invalid::at(field, e.to_string()))
        }
        Some(_) => Err(Invalid::at(field, format!("{field} must be a string"))),
    }
}

fn content_field(v: Option<&Value>) -> Result<Content, Invalid> {
    let obj = match v {
        None | Some(Value::Null) => return Err(Invalid::at("content", "content is required")),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(Invalid::at("content", "content must be an object")),
    };
    let kind = match obj.get("type") {
        None | Some(Value::Null) => return Err(Invalid::at("content.type", "content.type is required")),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("TEXT") => "TEXT".to_string(),
        Some(Value::String(s)) => {
            return Err(Invalid::at("content.type", format!("unsupported content.type {s:?} (expected TEXT)")))
        }
        Some(_) => return Err(Invalid::at("content.type", "content.type must be a string")),
    };
    let text = match obj.get("text") {
        None | Some(Value::Null) => return Err(Invalid::at("content.text", "content.text is required")),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(Invalid::at("content.text", "content.text must not be empty"))
        }
        Some(Value::String(s)) if s.chars().count() > MAX_TEXT_CHARS => {
            return Err(Invalid::at(
                "content.text",
                format!("content.text must be at most {MAX_TEXT_CHARS} characters"),
            ))
        }
        Some(Value::String(s)) if s.contains('\0') => return Err(nul_in("content.text")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Invalid::at("content.text", "content.text must be a string")),
    };
    let file_ids = file_ids_field(obj.get("fileIds"))?;
    Ok(Content { kind, text, file_ids })
}

/// Most files attached to one message.
pub const MAX_FILE_IDS: usize = 10;

/// `content.fileIds`: optional, up to `MAX_FILE_IDS` distinct UUIDs (existence is checked by the
/// API against the file-service's table).
fn file_ids_field(v: Option<&Value>) -> Result<Vec<Uuid>, Invalid> {
    let arr = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(Invalid::at("content.fileIds", "content.fileIds must be an array of file ids")),
    };
    if arr.len() > MAX_FILE_IDS {
        return Err(Invalid::at("content.fileIds", format!("content.fileIds holds at most {MAX_FILE_IDS} ids")));
    }
    let mut out: Vec<Uuid> = Vec::with_capacity(arr.len());
    for (i, v) in arr.iter().enumerate() {
        let field = format!("content.fileIds[{i}]");
        let id = v
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| Invalid::at(&field, "a file id must be a UUID"))?;
        if out.contains(&id) {
            return Err(Invalid::at(&field, "the same file id appears twice"));
        }
        out.push(id);
    }
    Ok(out)
}

fn recipients_field(v: Option<&Value>) -> Result<Vec<Recipient>, Invalid> {
    let arr = match v {
        None | Some(Value::Null) => return Err(Invalid::at("recipients", "recipients is required")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(Invalid::at("recipients", "recipients must be an array")),
    };
    if arr.is_empty() || arr.len() > MAX_RECIPIENTS {
        return Err(Invalid::at("recipients", format!("recipients must hold 1 to {MAX_RECIPIENTS} entries")));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(arr.len());
    for (i, r) in arr.iter().enumerate() {
        let obj = r
            .as_object()
            .ok_or_else(|| Invalid::at(&format!("recipients[{i}]"), "each recipient must be an object"))?;
        let user_id = id_field(obj.get("userId"), &format!("recipients[{i}].userId"))?;
        let channel = channel_field(obj.get("channel"), &format!("recipients[{i}].channel"))?;
        let recipient = Recipient { user_id, channel };
        if !seen.insert(recipient.clone()) {
            return Err(Invalid::at(&format!("recipients[{i}]"), "the same recipient and channel appear twice"));
        }
        out.push(recipient);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "conversationId": "conv-1",
            "senderId": "user-1",
            "content": {"type": "TEXT", "text": "hello"},
            "channel": "WHATSAPP",
            "recipients": [{"userId": "user-2", "channel": "WHATSAPP"}, {"userId": "user-3", "channel": "TELEGRAM"}]
        })
    }

    fn parse(v: &Value) -> Result<NewMessage, Invalid> {
        NewMessage::parse(serde_json::to_vec(v).unwrap().as_slice())
    }

    fn field_of(v: Value) -> Option<String> {
        parse(&v).unwrap_err().field
    }

    #[test]
    fn accepts_the_seed_body() {
        let m = parse(&valid()).unwrap();
        assert_eq!(m.conversation_id, "conv-1");
        assert_eq!(m.recipients.len(), 2);
        assert_eq!(m.recipients[1].channel, Channel::Telegram);
        assert_eq!(m.message_id, None);
    }

    #[test]
    fn rejects_malformed_json_without_a_field() {
        let e = NewMessage::parse(b"{not json").unwrap_err();
        assert!(e.error.starts_with("malformed JSON"));
        assert_eq!(e.field, None);
    }

    #[test]
    fn names_the_offending_field() {
        let mut v = valid();
        v.as_object_mut().unwrap().remove("conversationId");
        assert_eq!(field_of(v), Some("conversationId".into()));

        let mut v = valid();
        v["channel"] = json!("SMS");
        assert_eq!(field_of(v), Some("channel".into()));

        let mut v = valid();
        v["senderId"] = json!(42);
        assert_eq!(field_of(v), Some("senderId".into()));

        let mut v = valid();
        v["messageId"] = json!("not-a-uuid");
        assert_eq!(field_of(v), Some("messageId".into()));

        let mut v = valid();
        v["recipients"][1]["channel"] = json!("FAX");
        assert_eq!(field_of(v), Some("recipients[1].channel".into()));

        let mut v = valid();
        v["content"]["text"] = json!("x".repeat(MAX_TEXT_CHARS + 1));
        assert_eq!(field_of(v), Some("content.text".into()));
    }

    #[test]
    fn refuses_nul_characters_postgres_cannot_store() {
        let mut v = valid();
        v["content"]["text"] = json!("a\u{0}b");
        assert_eq!(field_of(v), Some("content.text".into()));
        let mut v = valid();
        v["conversationId"] = json!("c\u{0}");
        assert_eq!(field_of(v), Some("conversationId".into()));
        let mut v = valid();
        v["recipients"][0]["userId"] = json!("\u{0}u");
        assert_eq!(field_of(v), Some("recipients[0].userId".into()));
    }

    #[test]
    fn bounds_recipients() {
        let mut v = valid();
        v["recipients"] = json!([]);
        assert_eq!(field_of(v), Some("recipients".into()));

        let many: Vec<Value> =
            (0..=MAX_RECIPIENTS).map(|i| json!({"userId": format!("u{i}"), "channel": "WHATSAPP"})).collect();
        let mut v = valid();
        v["recipients"] = Value::Array(many);
        assert_eq!(field_of(v), Some("recipients".into()));

        let mut v = valid();
        v["recipients"] = json!([{"userId": "a", "channel": "WHATSAPP"}, {"userId": "a", "channel": "whatsapp"}]);
        assert_eq!(field_of(v), Some("recipients[1]".into()));
    }

    #[test]
    fn text_limit_counts_characters_not_bytes() {
        let mut v = valid();
        v["content"]["text"] = json!("é".repeat(MAX_TEXT_CHARS));
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn accepts_a_uuid_message_id() {
        let mut v = valid();
        let id = Uuid::new_v4();
        v["messageId"] = json!(id.to_string());
        assert_eq!(parse(&v).unwrap().message_id, Some(id));
    }
}
