//! User-service request bodies, parsed once into valid values.

use serde_json::Value;

use crate::channel::Channel;
use crate::message::domain::Invalid;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_EXTERNAL_ID_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub struct NewIdentity {
    pub channel: Channel,
    pub external_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub name: String,
    pub identities: Vec<NewIdentity>,
}

fn invalid(field: &str, error: impl Into<String>) -> Invalid {
    Invalid { error: error.into(), field: Some(field.to_string()) }
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Invalid> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Invalid { error: "the body must be a JSON object".into(), field: None }),
        Err(e) => Err(Invalid { error: format!("malformed JSON: {e}"), field: None }),
    }
}

fn text(v: Option<&Value>, field: &str, max: usize) -> Result<String, Invalid> {
    match v {
        None | Some(Value::Null) => Err(invalid(field, format!("{field} is required"))),
        Some(Value::String(s)) if s.trim().is_empty() => Err(invalid(field, format!("{field} must not be empty"))),
        Some(Value::String(s)) if s.chars().count() > max => {
            Err(invalid(field, format!("{field} must be at most {max} characters")))
        }
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(_) => Err(invalid(field, format!("{field} must be a string"))),
    }
}

pub fn channel(v: Option<&Value>, field: &str) -> Result<Channel, Invalid> {
    match v {
        None | Some(Value::Null) => Err(invalid(field, format!("{field} is required"))),
        Some(Value::String(s)) => s.parse().map_err(|e: crate::channel::UnknownChannel| invalid(field, e.to_string())),
        Some(_) => Err(invalid(field, format!("{field} must be a string"))),
    }
}

fn identity(obj: &serde_json::Map<String, Value>, prefix: &str) -> Result<NewIdentity, Invalid> {
    Ok(NewIdentity {
        channel: channel(obj.get("channel"), &format!("{prefix}channel"))?,
        external_id: text(obj.get("externalId"), &format!("{prefix}externalId"), MAX_EXTERNAL_ID_CHARS)?,
    })
}

impl NewIdentity {
    /// `{"channel": "WHATSAPP", "externalId": "+5511..."}`
    pub fn parse(body: &[u8]) -> Result<Self, Invalid> {
        identity(&object(body)?, "")
    }
}

impl NewUser {
    /// `{"name": "Ana", "identities": [{"channel": ..., "externalId": ...}]}` (identities optional).
    pub fn parse(body: &[u8]) -> Result<Self, Invalid> {
        let obj = object(body)?;
        let name = text(obj.get("name"), "name", MAX_NAME_CHARS)?;
        let mut identities: Vec<NewIdentity> = Vec::new();
        match obj.get("identities") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let field = format!("identities[{i}]");
                    let o = item.as_object().ok_or_else(|| invalid(&field, "each identity must be an object"))?;
                    let id = identity(o, &format!("{field}."))?;
                    if identities.iter().any(|x| x.channel == id.channel) {
                        return Err(invalid(&field, format!("a second identity on {}", id.channel)));
                    }
                    identities.push(id);
                }
            }
            Some(_) => return Err(invalid("identities", "identities must be an array")),
        }
        Ok(Self { name, identities })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_user_with_identities() {
        let u =
            NewUser::parse(br#"{"name":" Ana ","identities":[{"channel":"whatsapp","externalId":"+551"}]}"#).unwrap();
        assert_eq!(u.name, "Ana");
        assert_eq!(u.identities, vec![NewIdentity { channel: Channel::Whatsapp, external_id: "+551".into() }]);
    }

    #[test]
    fn names_the_bad_field() {
        let field = |b: &[u8]| NewUser::parse(b).unwrap_err().field;
        assert_eq!(field(br#"{}"#), Some("name".into()));
        assert_eq!(field(br#"{"name":""}"#), Some("name".into()));
        assert_eq!(field(br#"{"name":"a","identities":{}}"#), Some("identities".into()));
        assert_eq!(
            field(br#"{"name":"a","identities":[{"channel":"SMS","externalId":"1"}]}"#),
            Some("identities[0].channel".into())
        );
        assert_eq!(
            field(br#"{"name":"a","identities":[{"channel":"TELEGRAM","externalId":"1"},{"channel":"TELEGRAM","externalId":"2"}]}"#),
            Some("identities[1]".into())
        );
        assert_eq!(NewUser::parse(b"nope").unwrap_err().field, None);
        assert_eq!(NewIdentity::parse(br#"{"channel":"TELEGRAM"}"#).unwrap_err().field, Some("externalId".into()));
    }
}
