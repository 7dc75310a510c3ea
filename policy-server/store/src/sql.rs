//! Placeholders for multi-row statements (`VALUES (…), (…)` and `IN (…)` lists).
//!
//! PostgreSQL takes only `$1..$N`, and sqlx's `QueryBuilder<Any>::push_bind` writes `?`, which
//! PostgreSQL refuses (sqlx #3000), so these lists are written here. On SQLite they are
//! anonymous `?` instead: SQLite treats `$7` as a *named* parameter, and both its parser and
//! `sqlite3_bind_parameter_name` (which sqlx calls for every parameter) find a name by a linear
//! search, so binding `$1..$N` costs O(N²). With 1,700 values per statement that was 44 % of
//! the time of an ingest (measured with `perf` on `examples/ingest_bench.rs`); anonymous
//! placeholders are bound in order at O(1) each.
//!
//! Anonymous and numbered placeholders must not be mixed in one statement (sqlx would bind
//! the `?` from the start of the arguments), so a statement built with these helpers has no
//! other placeholders: they always number from 1.
//!
//! One statement binds at most [`MAX_BINDS`] values: SQLite's limit (32,766 since 3.32) is the
//! lower of the two (PostgreSQL's is 65,535).

use crate::Backend;

/// Values one statement may bind on both databases.
pub(crate) const MAX_BINDS: usize = 32_766;

/// Rows per multi-row statement: as many as fit [`MAX_BINDS`], at most 1,000 (larger
/// statements cost more to parse than they save in round trips).
pub(crate) const fn rows_per_statement(columns: usize) -> usize {
    let fit = MAX_BINDS / columns;
    if fit < 1000 {
        fit
    } else {
        1000
    }
}

/// `n` comma-separated placeholders, the statement's first: `$1, $2, …` or `?, ?, …`.
pub(crate) fn placeholders(backend: Backend, n: usize) -> String {
    let mut out = String::with_capacity(n * 6);
    push_placeholders(&mut out, backend, 1, n);
    out
}

/// `rows` tuples of `columns` placeholders, the statement's only ones:
/// `($1, $2), ($3, $4)` or `(?, ?), (?, ?)`.
pub(crate) fn values(backend: Backend, rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * (columns * 7 + 4));
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        push_placeholders(&mut out, backend, 1 + r * columns, columns);
        out.push(')');
    }
    out
}

fn push_placeholders(out: &mut String, backend: Backend, first: usize, n: usize) {
    for i in first..first + n {
        if i > first {
            out.push_str(", ");
        }
        match backend {
            Backend::Postgres => {
                out.push('$');
                out.push_str(&i.to_string());
            }
            Backend::Sqlite => out.push('?'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_on_postgres_and_anonymous_on_sqlite() {
        assert_eq!(placeholders(Backend::Postgres, 3), "$1, $2, $3");
        assert_eq!(placeholders(Backend::Sqlite, 3), "?, ?, ?");
        assert_eq!(placeholders(Backend::Postgres, 0), "");
        assert_eq!(values(Backend::Postgres, 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(values(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(values(Backend::Postgres, 1, 3), "($1, $2, $3)");
    }

    #[test]
    fn statements_stay_under_the_bind_limit() {
        for columns in 1..=40 {
            let rows = rows_per_statement(columns);
            assert!(rows >= 1 && rows * columns <= MAX_BINDS, "{columns}");
        }
        assert_eq!(rows_per_statement(17), 1000);
        assert_eq!(rows_per_statement(40), 819);
    }
}
