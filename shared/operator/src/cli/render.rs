//! Text for a terminal: one-line cells, dashes for what is missing.

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
