//! Rules for the text people give Boardroom to show (titles, labels, board names, topics,
//! echoed arguments): which characters are invisible, whether a text shows anything, and
//! excerpts of long input. See "Hostile content" in docs/SECURITY.md.

/// Whether `c` is a default-ignorable code point (Unicode's `Default_Ignorable_Code_Point`):
/// zero-width spaces and joiners, bidi marks and controls, invisible operators, fillers,
/// variation selectors, the byte-order mark, tag characters. A renderer shows nothing for
/// them.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Whether `s` shows something: a character that is neither whitespace nor invisible.
pub fn has_visible(s: &str) -> bool {
    s.chars().any(|c| !c.is_whitespace() && !is_invisible(c) && !c.is_control())
}

/// Checks a one-line text a person names something with (`what`: "a title"): it shows
/// something, has at most `max` characters and no control characters (a line break would
/// let it forge a line of Boardroom's own in a message's plain body).
pub fn validate_line(s: &str, what: &str, max: usize) -> Result<(), String> {
    if !has_visible(s) {
        return Err(format!("{what} must not be blank"));
    }
    let n = s.chars().count();
    if n > max {
        return Err(format!("{what} has at most {max} characters; this one has {n}"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!(
            "{what} is one line: no line breaks, tabs or other control characters"
        ));
    }
    Ok(())
}

/// The longest excerpt of someone's input a reply repeats, in characters.
pub const MAX_ECHO_CHARS: usize = 200;

/// `s` as a reply repeats it: whole when it has at most `max` characters, otherwise its
/// first `max` characters and `…`.
pub fn excerpt(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(s),
        Some((at, _)) => std::borrow::Cow::Owned(format!("{}…", &s[..at])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_text_is_blank_and_control_characters_are_refused() {
        assert!(has_visible("a\u{200B}"));
        for blank in [
            "",
            " ",
            "\u{200B}",
            "\u{200B}\u{200D}\u{FEFF}",
            "\u{202E}\u{2066}",
            "\u{3164}",
            "\u{E0041}",
        ] {
            assert!(!has_visible(blank), "{blank:?}");
            assert!(validate_line(blank, "a title", 10).is_err(), "{blank:?}");
        }
        assert!(validate_line("ok\nStatus: done", "a title", 100).is_err());
        assert!(validate_line("tab\there", "a title", 100).is_err());
        assert!(
            validate_line("emoji 👩\u{200D}💻 and ZWNJ می\u{200C}خواهم", "a title", 100).is_ok()
        );
        let err = validate_line(&"x".repeat(11), "a title", 10).expect_err("too long");
        assert_eq!(err, "a title has at most 10 characters; this one has 11");
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("ééééé", 3), "ééé…");
        assert_eq!(excerpt(&"<".repeat(10_000), 200).chars().count(), 201);
    }
}
