//! Quoting values for PostgreSQL: SQL identifiers and literals, and postgresql.conf strings.

/// Quotes an SQL identifier: `"my ""odd"" name"`.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal: `'it''s'`.
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Quotes `value` as a postgresql.conf string, the way PostgreSQL's configuration parser
/// (guc-file.l and `DeescapeQuotedString`) reads it back: `'` doubled, `\` escaped (the parser
/// reads `\x` as `x` and `\n`, `\t`, `\b`, `\f`, `\r`, `\0`-`\7` as escapes), and newlines and
/// carriage returns, which a quoted string cannot hold, written as `\n` and `\r`.
pub fn conf_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Escapes `%` as `%%` in a part of `restore_command` or `archive_command` that must reach the
/// shell unchanged: PostgreSQL replaces `%f`, `%p`, `%r` and `%%` in those commands before running
/// them.
pub fn command_percent(text: &str) -> String {
    text.replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a postgresql.conf string back as guc-file.l's `DeescapeQuotedString` does.
    fn deescape(quoted: &str) -> String {
        let inner = &quoted[1..quoted.len() - 1];
        let mut out = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next().unwrap() {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    other => out.push(other),
                },
                '\'' => {
                    assert_eq!(chars.next(), Some('\''), "a lone quote ends the string");
                    out.push('\'');
                }
                '\n' => panic!("a quoted string cannot hold a newline: {quoted}"),
                c => out.push(c),
            }
        }
        out
    }

    #[test]
    fn conf_strings_read_back_as_written() {
        assert_eq!(conf_quote("it's"), "'it''s'");
        assert_eq!(conf_quote(r"C:\new"), r"'C:\\new'");
        for value in [
            "/srv/a b/it's/back\\slash/$HOME/näïve/日本",
            "line\nbreak\r",
            "tab\there",
            "'\\'",
            "",
        ] {
            assert_eq!(deescape(&conf_quote(value)), value, "{value:?}");
        }
    }

    #[test]
    fn sql_quoting_and_percent_signs() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(command_percent("/r/100%p"), "/r/100%%p");
    }
}
