//! Reading rows the same way on both engines.
//!
//! The engines store most columns alike (text, bytes, integers, booleans) but ids and times
//! differently: PostgreSQL has `uuid` and `timestamptz`, SQLite TEXT and INTEGER microseconds.
//! [`Columns`] hides that difference, so each record's row mapper (in its capability module) is
//! written once and reads a `PgRow` and a `SqliteRow` alike.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Postgres, Row, Sqlite, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::clock::{from_unix_micros, unix_micros};

/// A statement whose text is the same on both engines (`$N` placeholders, which sqlx's SQLite
/// driver binds by number), built once from the column lists.
pub(super) type Sql = std::sync::LazyLock<String>;

/// A column type both engines decode the same way (text, bytes, integers, booleans and their
/// `Option`s).
pub(super) trait Plain:
    for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

impl<T> Plain for T where
    T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

/// A row read by column name, with each engine's codec for ids and times.
pub(super) trait Columns {
    /// A column stored alike on both engines.
    fn value<T: Plain>(&self, column: &str) -> Result<T, StoreError>;

    fn id(&self, column: &str) -> Result<Uuid, StoreError>;

    fn optional_id(&self, column: &str) -> Result<Option<Uuid>, StoreError>;

    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError>;

    fn optional_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError>;

    /// A time as Unix microseconds, as the audit chain hashes it (read without a range check on
    /// SQLite, so a tampered value reaches the verifier instead of failing the read).
    fn micros(&self, column: &str) -> Result<i64, StoreError>;
}

impl Columns for PgRow {
    fn value<T: Plain>(&self, column: &str) -> Result<T, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn id(&self, column: &str) -> Result<Uuid, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn optional_id(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn optional_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn micros(&self, column: &str) -> Result<i64, StoreError> {
        Ok(unix_micros(self.try_get(column)?))
    }
}

impl Columns for SqliteRow {
    fn value<T: Plain>(&self, column: &str) -> Result<T, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn id(&self, column: &str) -> Result<Uuid, StoreError> {
        let text: String = self.try_get(column)?;
        parse_uuid(&text, column)
    }

    fn optional_id(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
        let text: Option<String> = self.try_get(column)?;
        text.map(|text| parse_uuid(&text, column)).transpose()
    }

    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        micros_to_time(self.try_get(column)?, column)
    }

    fn optional_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let micros: Option<i64> = self.try_get(column)?;
        micros.map(|micros| micros_to_time(micros, column)).transpose()
    }

    fn micros(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(column)?)
    }
}

/// An id stored as TEXT (SQLite).
pub(super) fn parse_uuid(text: &str, column: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("{column} `{text}` is not a UUID")))
}

pub(super) fn micros_to_time(micros: i64, column: &str) -> Result<OffsetDateTime, StoreError> {
    from_unix_micros(micros).ok_or_else(|| StoreError::Corrupt(format!("{column} {micros} out of range")))
}

/// `columns` of `table` as `t.c`, for a query that joins it.
pub(super) fn qualified(columns: &str, table: &str) -> String {
    columns.split(", ").map(|c| format!("{table}.{c}")).collect::<Vec<_>>().join(", ")
}

/// `columns` of `table` as `t.c AS t_c`, read back with the prefix `t_` (a join whose tables
/// share column names).
pub(super) fn aliased(columns: &str, table: &str) -> String {
    columns.split(", ").map(|c| format!("{table}.{c} AS {table}_{c}")).collect::<Vec<_>>().join(", ")
}
