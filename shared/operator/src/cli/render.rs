//! Text for a terminal: one-line cells, dashes for what is missing, AMQP
//! header values spelled out.

use lapin::types::AMQPValue;

/// The value, or `-` when there is none.
pub(super) fn or_dash(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

/// `text` on one line (control characters as spaces), cut at `max`
/// characters with an ellipsis.
pub(super) fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

/// A header value as text: strings as they are, tables and arrays (such as
/// `x-death`) spelled out.
pub(super) fn render(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::FieldArray(items) => {
            let items: Vec<String> = items.as_slice().iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        AMQPValue::FieldTable(table) => {
            let fields: Vec<String> = table
                .inner()
                .iter()
                .map(|(key, value)| format!("{key}: {}", render(value)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        AMQPValue::Timestamp(seconds) => chrono::DateTime::from_timestamp(*seconds as i64, 0)
            .map_or_else(|| seconds.to_string(), |t| t.to_rfc3339()),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}
