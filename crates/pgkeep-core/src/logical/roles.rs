//! The script `pg_dumpall --globals-only` writes, read statement by statement so that
//! `restore --globals` can leave roles that already exist as they are: their `CREATE ROLE`, their
//! attributes and password (`ALTER ROLE ... WITH`), settings, comments, security labels and the
//! grants they receive are skipped unless asked for.
//!
//! Only what pg_dumpall writes is understood: a statement ends at a `;` outside quotes and
//! comments; psql meta-commands (`\restrict`, `\connect`) and `--` comments stand on lines of their
//! own. Names are compared as bytes in the script's own encoding.

use std::collections::BTreeSet;

/// The script with the statements for existing roles taken out, and the roles it names.
#[derive(Debug, Default)]
pub(super) struct Filtered {
    /// What psql runs.
    pub(super) script: Vec<u8>,
    /// Roles the script creates (they did not exist).
    pub(super) created: BTreeSet<Vec<u8>>,
    /// Existing roles the script names: skipped, or (`overwrite`) given the backup's settings.
    pub(super) existing: BTreeSet<Vec<u8>>,
}

/// Takes out the statements that would change a role in `existing`: all of them, or with
/// `overwrite` only its `CREATE ROLE` (which would fail).
pub(super) fn filter_script(
    script: &[u8],
    existing: &BTreeSet<Vec<u8>>,
    overwrite: bool,
) -> Filtered {
    let mut out = Filtered::default();
    for piece in pieces(script) {
        let text = match piece {
            Piece::Other(text) => text,
            Piece::Statement(text) => {
                let (creates, roles) = touched_roles(&tokens(text));
                let named: Vec<Vec<u8>> = roles
                    .iter()
                    .filter(|r| existing.contains(*r))
                    .cloned()
                    .collect();
                if creates && named.is_empty() {
                    out.created.extend(roles);
                }
                let skip = !named.is_empty() && (creates || !overwrite);
                out.existing.extend(named);
                if skip {
                    continue;
                }
                text
            }
        };
        out.script.extend_from_slice(text);
    }
    out
}

/// Takes out the statements about tablespaces (`CREATE`/`ALTER`/`DROP TABLESPACE`, and `GRANT`,
/// `REVOKE`, `COMMENT` or `SECURITY LABEL ... ON TABLESPACE`), for a cluster that must not create
/// them at the backup's own locations (a drill's throwaway cluster on the backup's host). Returns
/// the script and how many statements were taken out.
pub(super) fn without_tablespaces(script: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(script.len());
    let mut taken = 0;
    for piece in pieces(script) {
        let text = match piece {
            Piece::Other(text) => text,
            Piece::Statement(text) => {
                let tokens = tokens(text);
                let word =
                    |i: usize, w: &str| matches!(tokens.get(i), Some(Token::Word(t)) if is(t, w));
                let about = word(1, "tablespace")
                    && (word(0, "create") || word(0, "alter") || word(0, "drop"))
                    || (0..tokens.len()).any(|i| word(i, "on") && word(i + 1, "tablespace"));
                if about {
                    taken += 1;
                    continue;
                }
                text
            }
        };
        out.extend_from_slice(text);
    }
    (out, taken)
}

/// The encoding the script is written in: its `SET client_encoding`, else UTF8.
pub(super) fn script_encoding(script: &[u8]) -> String {
    pieces(script)
        .into_iter()
        .find_map(|piece| {
            let Piece::Statement(text) = piece else {
                return None;
            };
            match tokens(text).as_slice() {
                [
                    Token::Word(set),
                    Token::Word(name),
                    _,
                    Token::Literal(value),
                    ..,
                ] if is(set, "set") && is(name, "client_encoding") => {
                    Some(String::from_utf8_lossy(value).into_owned())
                }
                _ => None,
            }
        })
        .unwrap_or_else(|| "UTF8".to_string())
}

/// Whether a statement creates a role, and the roles it changes: the one created, altered,
/// commented or labelled, or those a GRANT gives to (or a REVOKE takes from).
fn touched_roles(tokens: &[Token]) -> (bool, Vec<Vec<u8>>) {
    let word = |i: usize, w: &str| matches!(tokens.get(i), Some(Token::Word(t)) if is(t, w));
    let after = |i: usize| tokens.get(i).and_then(ident).into_iter().collect();
    if word(0, "create") && word(1, "role") {
        (true, after(2))
    } else if word(0, "alter") && (word(1, "role") || word(1, "user")) {
        (false, after(2))
    } else if word(0, "comment") && word(1, "on") && word(2, "role") {
        (false, after(3))
    } else if word(0, "security") && word(1, "label") {
        let on_role = (0..tokens.len()).find(|&i| word(i, "on") && word(i + 1, "role"));
        (false, on_role.map(|i| after(i + 2)).unwrap_or_default())
    } else if word(0, "grant") || word(0, "revoke") {
        let to = if word(0, "grant") { "to" } else { "from" };
        let Some(start) = (1..tokens.len()).find(|&i| word(i, to)) else {
            return (false, vec![]);
        };
        let mut roles = vec![];
        let mut i = start + 1;
        while let Some(role) = tokens.get(i).and_then(ident) {
            roles.push(role);
            if !matches!(tokens.get(i + 1), Some(Token::Punct(b','))) {
                break;
            }
            i += 2;
        }
        (false, roles)
    } else {
        (false, vec![])
    }
}

/// A name as the server stores it: a quoted identifier as written, an unquoted one folded to
/// lower case.
fn ident(token: &Token) -> Option<Vec<u8>> {
    match token {
        Token::Ident(name) => Some(name.clone()),
        Token::Word(word) => Some(word.to_ascii_lowercase()),
        _ => None,
    }
}

fn is(word: &[u8], keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword.as_bytes())
}

/// A part of the script: a statement (up to and with its `;`), or what lies between statements
/// (white space, comments, psql meta-commands).
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Statement(&'a [u8]),
    Other(&'a [u8]),
}

fn pieces(s: &[u8]) -> Vec<Piece<'_>> {
    let mut out = vec![];
    let mut i = 0;
    while i < s.len() {
        let end = if s[i].is_ascii_whitespace() {
            i + s[i..]
                .iter()
                .take_while(|c| c.is_ascii_whitespace())
                .count()
        } else if s[i] == b'\\' || s[i..].starts_with(b"--") {
            line_end(s, i)
        } else {
            let mut j = i;
            while let Some((token, next)) = next_token(s, j) {
                j = next;
                if token == Token::Punct(b';') {
                    break;
                }
            }
            // Only a comment left: it runs to the end.
            let end = if j > i { j } else { s.len() };
            out.push(Piece::Statement(&s[i..end]));
            i = end;
            continue;
        };
        out.push(Piece::Other(&s[i..end]));
        i = end;
    }
    out
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    /// A keyword or an unquoted name.
    Word(&'a [u8]),
    /// A quoted name, unquoted.
    Ident(Vec<u8>),
    /// A string literal, unquoted.
    Literal(Vec<u8>),
    Punct(u8),
}

fn tokens(s: &[u8]) -> Vec<Token<'_>> {
    let mut out = vec![];
    let mut i = 0;
    while let Some((token, next)) = next_token(s, i) {
        out.push(token);
        i = next;
    }
    out
}

/// The token at or after `i` (white space and comments skipped) and the index after it.
fn next_token(s: &[u8], mut i: usize) -> Option<(Token<'_>, usize)> {
    loop {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if s[i..].starts_with(b"--") {
            i = line_end(s, i);
        } else if s[i..].starts_with(b"/*") {
            i = s[i + 2..]
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(s.len(), |p| i + 2 + p + 2);
        } else {
            break;
        }
    }
    let c = *s.get(i)?;
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    Some(match c {
        b'\'' => quoted(s, i, b'\'', false, Token::Literal),
        b'"' => quoted(s, i, b'"', false, Token::Ident),
        c if is_word(c) => {
            let end = i + s[i..].iter().take_while(|&&c| is_word(c)).count();
            if end == i + 1 && (c == b'E' || c == b'e') && s.get(end) == Some(&b'\'') {
                quoted(s, end, b'\'', true, Token::Literal)
            } else {
                (Token::Word(&s[i..end]), end)
            }
        }
        c => (Token::Punct(c), i + 1),
    })
}

/// The text between the quote `q` at `start` and its closing quote (a doubled quote stands for
/// itself; with `backslash`, as in `E'...'`, a backslash escapes the next byte).
fn quoted<'a>(
    s: &'a [u8],
    start: usize,
    q: u8,
    backslash: bool,
    make: fn(Vec<u8>) -> Token<'a>,
) -> (Token<'a>, usize) {
    let mut text = vec![];
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            b'\\' if backslash && i + 1 < s.len() => {
                text.push(s[i + 1]);
                i += 2;
            }
            c if c == q && s.get(i + 1) == Some(&q) => {
                text.push(q);
                i += 2;
            }
            c if c == q => return (make(text), i + 1),
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    (make(text), s.len())
}

/// The index after the end of the line at `i`.
fn line_end(s: &[u8], i: usize) -> usize {
    s[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(s.len(), |p| i + p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = r#"--
-- PostgreSQL database cluster dump
--

\restrict abc123

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE app;
ALTER ROLE app WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:a;b$c';
CREATE ROLE "Odd ""name"";";
ALTER ROLE "Odd ""name"";" WITH NOLOGIN;
COMMENT ON ROLE app IS 'line one;
line two '' -- not a comment';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'md5x';

--
-- User Configurations
--

ALTER ROLE app SET work_mem TO '8MB';

--
-- Role memberships
--

GRANT "Odd ""name"";" TO app GRANTED BY postgres;
GRANT app TO "Odd ""name"";", postgres GRANTED BY postgres;

\unrestrict abc123

--
-- PostgreSQL database cluster dump complete
--

"#;

    fn set(names: &[&str]) -> BTreeSet<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[test]
    fn pieces_put_the_script_back_together() {
        let joined: Vec<u8> = pieces(SCRIPT.as_bytes())
            .into_iter()
            .flat_map(|p| match p {
                Piece::Statement(t) | Piece::Other(t) => t.to_vec(),
            })
            .collect();
        assert_eq!(String::from_utf8(joined).unwrap(), SCRIPT);
        let statements = pieces(SCRIPT.as_bytes())
            .into_iter()
            .filter(|p| matches!(p, Piece::Statement(_)))
            .count();
        assert_eq!(statements, 13);
    }

    #[test]
    fn existing_roles_are_left_alone() {
        let out = filter_script(SCRIPT.as_bytes(), &set(&["app", "postgres"]), false);
        let script = String::from_utf8(out.script).unwrap();
        assert_eq!(out.existing, set(&["app", "postgres"]));
        assert_eq!(out.created, set(&["Odd \"name\";"]));
        for gone in [
            "CREATE ROLE app;",
            "PASSWORD 'SCRAM",
            "COMMENT ON ROLE app",
            "line two",
            "SET work_mem",
            "TO app GRANTED",
            "GRANT app TO",
            "ROLE postgres",
        ] {
            assert!(!script.contains(gone), "{gone} kept:\n{script}");
        }
        for kept in [
            "\\restrict abc123\n",
            "SET client_encoding = 'UTF8';",
            "CREATE ROLE \"Odd \"\"name\"\";\";",
            "ALTER ROLE \"Odd \"\"name\"\";\" WITH NOLOGIN;",
            "\\unrestrict abc123\n",
        ] {
            assert!(script.contains(kept), "{kept} missing:\n{script}");
        }
    }

    #[test]
    fn overwrite_applies_all_but_create_role() {
        let out = filter_script(SCRIPT.as_bytes(), &set(&["app", "postgres"]), true);
        let script = String::from_utf8(out.script).unwrap();
        assert_eq!(out.existing, set(&["app", "postgres"]));
        assert!(!script.contains("CREATE ROLE app;"), "{script}");
        assert!(!script.contains("CREATE ROLE postgres;"), "{script}");
        for kept in [
            "ALTER ROLE app WITH NOSUPERUSER",
            "line two",
            "GRANT app TO",
            "ALTER ROLE postgres WITH",
        ] {
            assert!(script.contains(kept), "{kept} missing:\n{script}");
        }
    }

    #[test]
    fn nothing_exists_nothing_is_taken_out() {
        let out = filter_script(SCRIPT.as_bytes(), &BTreeSet::new(), false);
        assert_eq!(String::from_utf8(out.script).unwrap(), SCRIPT);
        assert_eq!(out.created, set(&["app", "Odd \"name\";", "postgres"]));
        assert!(out.existing.is_empty());
    }

    #[test]
    fn the_encoding_is_read_from_the_script() {
        assert_eq!(script_encoding(SCRIPT.as_bytes()), "UTF8");
        assert_eq!(
            script_encoding(b"SET client_encoding = 'LATIN1';\nCREATE ROLE a;"),
            "LATIN1"
        );
        assert_eq!(script_encoding(b"CREATE ROLE a;"), "UTF8");
    }

    #[test]
    fn e_strings_and_block_comments() {
        let s = b"COMMENT ON ROLE a IS E'it\\'s; fine' /* ; */;\nCREATE ROLE b;";
        let p = pieces(s);
        assert_eq!(
            p[0],
            Piece::Statement(b"COMMENT ON ROLE a IS E'it\\'s; fine' /* ; */;")
        );
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn tablespace_statements_are_taken_out_and_the_rest_stays() {
        let script = b"CREATE ROLE a;\nCREATE TABLESPACE ts OWNER a LOCATION '/srv/ts';\n\
            ALTER TABLESPACE ts SET (seq_page_cost = 2);\nGRANT CREATE ON TABLESPACE \"T s\" TO a;\n\
            COMMENT ON TABLESPACE ts IS 'on tablespace';\nGRANT a TO postgres;\n";
        let (out, taken) = without_tablespaces(script);
        assert_eq!(taken, 4);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CREATE ROLE a;\n\n\n\n\nGRANT a TO postgres;\n"
        );
    }
}
