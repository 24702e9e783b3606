//! Hiding card tokens in what a person is shown. `OrderCreated` carries the
//! customer's `card_token`; a dead letter shown in a terminal (and pasted
//! into a ticket) must not. Only the value's short prefix (`tok_`) stays, so
//! a person can still tell a token from garbage.

use serde_json::Value;
use std::borrow::Cow;

/// The field masked wherever it appears.
const FIELD: &str = "card_token";

/// What replaces a token (after its prefix, if it has one).
const MASK: &str = "****";

/// Masks every `card_token` field of a JSON value, at any depth.
pub(super) fn mask_json(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                match field {
                    Value::String(token) if key == FIELD => *token = masked(token),
                    other => mask_json(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_json),
        _ => {}
    }
}

/// Masks the string value of every `"card_token": "…"` in `text`, JSON or
/// not (a truncated body, an error message quoting a payload).
pub fn mask_card_tokens(text: &str) -> Cow<'_, str> {
    let needle = format!("\"{FIELD}\"");
    if !text.contains(&needle) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        let after_key = at + needle.len();
        out.push_str(&rest[..after_key]);
        rest = &rest[after_key..];
        // `: "` with any whitespace around the colon, else not a string value.
        let value = rest.trim_start();
        let Some(value) = value.strip_prefix(':').map(str::trim_start) else {
            continue;
        };
        let Some(token) = value.strip_prefix('"') else {
            continue;
        };
        let end = closing_quote(token).unwrap_or(token.len());
        let skipped = rest.len() - token.len();
        out.push_str(&rest[..skipped]);
        out.push_str(&masked(&token[..end]));
        rest = &token[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The byte index of the quote that ends a JSON string's contents.
fn closing_quote(contents: &str) -> Option<usize> {
    let mut escaped = false;
    for (at, c) in contents.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(at),
            _ => {}
        }
    }
    None
}

/// `tok_visa` → `tok_****`; a token without a short alphanumeric prefix
/// ending in `_` becomes `****`.
fn masked(token: &str) -> String {
    match token.find('_') {
        Some(at)
            if (1..=4).contains(&at) && token[..at].bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            format!("{}{MASK}", &token[..=at])
        }
        _ => MASK.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_keep_only_their_prefix() {
        assert_eq!(masked("tok_visa"), "tok_****");
        assert_eq!(masked("4242424242424242"), "****");
        assert_eq!(masked("averylongprefix_x"), "****");
        assert_eq!(masked(""), "****");
    }

    #[test]
    fn json_bodies_are_masked_at_any_depth() {
        let mut body = json!({
            "type": "OrderCreated",
            "payload": { "card_token": "tok_visa", "items": [{ "card_token": "secret" }] },
            "card_token_hint": "kept"
        });
        mask_json(&mut body);
        assert_eq!(body["payload"]["card_token"], "tok_****");
        assert_eq!(body["payload"]["items"][0]["card_token"], "****");
        assert_eq!(body["card_token_hint"], "kept");
    }

    #[test]
    fn text_is_masked_even_when_it_is_not_json() {
        assert_eq!(
            mask_card_tokens(r#"{"payload": {"card_token" :  "tok_vi\"sa", "x": 1"#),
            r#"{"payload": {"card_token" :  "tok_****", "x": 1"#
        );
        assert_eq!(
            mask_card_tokens(r#"truncated {"card_token":"tok_abc"#),
            r#"truncated {"card_token":"tok_****"#
        );
        assert_eq!(
            mask_card_tokens(r#"{"card_token": null, "card_token":"x"}"#),
            r#"{"card_token": null, "card_token":"****"}"#
        );
        assert!(matches!(mask_card_tokens("no token"), Cow::Borrowed(_)));
    }
}
