//! Quoting for command lines that `/bin/sh` reads.

/// Single-quotes `value` for a POSIX shell: `'it'\''s'`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        assert_eq!(super::shell_quote("/a b/it's"), "'/a b/it'\\''s'");
    }
}
