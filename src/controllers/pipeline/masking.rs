//! What a branch holds, as data (issue #26, `DatabaseBranch.spec.data`):
//! the pure planner of masked and schema-only branches. It reads the
//! branch's catalog ([`columns_sql`], one row per column of every user
//! table), checks the rules against it ([`plan`]), names the columns that
//! look like personal data and have no rule ([`suspects`]), and writes one
//! statement per run ([`mask_script`], [`schema_only_script`]), so a run is
//! one transaction on every SQL channel: masked completely, or not at all.
//!
//! Masking is deterministic within a run: every function is keyed by a
//! random per-run key that is never stored (a stored key would let whoever
//! reads it recover short values such as phone numbers by brute force), so
//! joins on masked keys match within the branch and differ across branches.
//! Foreign keys that involve a masked column are dropped and re-added in the
//! same transaction, which checks them again; user triggers of the masked
//! tables are disabled for the run (they would see the original values).

use std::collections::{BTreeMap, BTreeSet};

use crate::api::v1alpha1::{MaskFunction, TableMask};
use crate::providers::postgres::sql::{SqlError, ident, literal};

/// One column of a user table, as [`columns_sql`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub schema: String,
    pub table: String,
    pub name: String,
    /// `format_type` of its type (`character varying(20)`, `integer`).
    pub data_type: String,
    /// The type is a string type (`pg_type.typcategory = 'S'`).
    pub textual: bool,
    /// The most characters it holds (`varchar(n)`, `char(n)`), if limited.
    pub max_length: Option<u32>,
    pub not_null: bool,
    /// A single-column unique index or primary key covers it.
    pub unique: bool,
    /// The column it references, in a single-column foreign key.
    pub references: Option<(String, String, String)>,
}

impl Column {
    fn key(&self) -> (String, String, String) {
        (self.schema.clone(), self.table.clone(), self.name.clone())
    }
}

/// The catalog query for every column of every user table (pure): schema,
/// table, column, type, string type, length limit, not null, unique, and the
/// referenced schema, table and column (empty when none). System schemas and
/// tables of extensions are left out.
pub fn columns_sql() -> &'static str {
    "SELECT n.nspname::text, c.relname::text, a.attname::text, \
            pg_catalog.format_type(a.atttypid, a.atttypmod), \
            (t.typcategory = 'S')::text, \
            CASE WHEN t.typcategory = 'S' AND a.atttypmod > 4 THEN (a.atttypmod - 4)::text ELSE '' END, \
            a.attnotnull::text, \
            EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND i.indnatts = 1 AND i.indkey[0] = a.attnum)::text, \
            COALESCE((SELECT fn.nspname::text FROM pg_catalog.pg_constraint f JOIN pg_catalog.pg_class fc ON fc.oid = f.confrelid JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.conkey = ARRAY[a.attnum] LIMIT 1), ''), \
            COALESCE((SELECT fc.relname::text FROM pg_catalog.pg_constraint f JOIN pg_catalog.pg_class fc ON fc.oid = f.confrelid WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.conkey = ARRAY[a.attnum] LIMIT 1), ''), \
            COALESCE((SELECT fa.attname::text FROM pg_catalog.pg_constraint f JOIN pg_catalog.pg_attribute fa ON fa.attrelid = f.confrelid AND fa.attnum = f.confkey[1] WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.conkey = ARRAY[a.attnum] LIMIT 1), '') \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
     WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped \
       AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e') \
     ORDER BY 1, 2, a.attnum"
}

/// The rows of [`columns_sql`] as columns (pure); malformed rows are left out.
pub fn columns(rows: &[Vec<Option<String>>]) -> Vec<Column> {
    rows.iter()
        .filter_map(|row| {
            let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            if row.len() < 11 {
                return None;
            }
            let references = (!cell(8).is_empty()).then(|| (cell(8), cell(9), cell(10)));
            Some(Column {
                schema: cell(0),
                table: cell(1),
                name: cell(2),
                data_type: cell(3),
                textual: cell(4) == "true",
                max_length: cell(5).parse().ok(),
                not_null: cell(6) == "true",
                unique: cell(7) == "true",
                references,
            })
        })
        .collect()
}

/// Words in a column name that suggest personal data or secrets: a column
/// whose name has one of them as a `_`-separated word (or, for the longer
/// ones, anywhere in the name) is a suspect. The README lists them.
pub const PII_WORDS: &[&str] = &[
    "email",
    "mail",
    "phone",
    "mobile",
    "tel",
    "fax",
    "name",
    "firstname",
    "lastname",
    "fullname",
    "surname",
    "username",
    "address",
    "street",
    "zip",
    "postcode",
    "postal",
    "birth",
    "birthday",
    "birthdate",
    "dob",
    "token",
    "password",
    "passwd",
    "secret",
    "apikey",
    "iban",
    "bic",
    "card",
    "ccn",
    "cvv",
    "ssn",
    "passport",
    "license",
    "licence",
    "tax",
    "ip",
];

/// Words that count anywhere in a name (`useremail`, `auth_token_hash`).
const PII_SUBSTRINGS: &[&str] = &[
    "email", "phone", "password", "passwd", "secret", "token", "iban", "ssn", "address",
];

/// Types that are personal data whatever the column is called.
const PII_TYPES: &[&str] = &["inet", "cidr", "macaddr", "macaddr8"];

/// Whether column `c` looks like personal data (pure).
pub fn looks_personal(c: &Column) -> bool {
    let name = c.name.to_ascii_lowercase();
    let words = name.split(|ch: char| !ch.is_ascii_alphanumeric());
    let by_word = words.into_iter().any(|w| PII_WORDS.contains(&w));
    let by_substring = PII_SUBSTRINGS.iter().any(|s| name.contains(s));
    let by_type = PII_TYPES.contains(&c.data_type.as_str());
    (by_word || by_substring || by_type) && c.data_type != "boolean"
}

/// The columns that look like personal data and that no rule masks (pure),
/// as `schema.table.column`.
pub fn suspects(columns: &[Column], rules: &[TableMask]) -> Vec<String> {
    let masked: BTreeSet<(String, String, String)> = rules
        .iter()
        .flat_map(|rule| {
            let (schema, table) = split_table(&rule.table);
            rule.columns
                .keys()
                .map(move |c| (schema.clone(), table.clone(), c.clone()))
        })
        .collect();
    columns
        .iter()
        .filter(|c| looks_personal(c) && !masked.contains(&c.key()))
        .map(|c| format!("{}.{}.{}", c.schema, c.table, c.name))
        .collect()
}

/// `schema.table` (or `table`, in `public`) as its parts.
pub fn split_table(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((schema, table)) => (schema.to_string(), table.to_string()),
        None => ("public".to_string(), name.to_string()),
    }
}

/// Why rules cannot be applied to a branch's tables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskError {
    #[error("spec.data.masking names table {0}, which the branch does not have")]
    UnknownTable(String),
    #[error("spec.data.masking names column {0}, which the branch does not have")]
    UnknownColumn(String),
    #[error(
        "column {column} is {data_type}; {function} masks text columns only (use Null or Constant)"
    )]
    NotText {
        column: String,
        data_type: String,
        function: MaskFunction,
    },
    #[error(
        "column {column} holds at most {limit} characters; {function} writes {needs} (use Digits, Redact or Constant)"
    )]
    TooShort {
        column: String,
        limit: u32,
        function: MaskFunction,
        needs: u32,
    },
    #[error("column {0} is NOT NULL; Null cannot mask it")]
    NotNullable(String),
    #[error("column {column} is unique; {function} could make two rows equal (use Hash or Email)")]
    NotUnique {
        column: String,
        function: MaskFunction,
    },
    #[error(
        "column {column} references {referenced}; mask both with the same rule, or neither, so the foreign key still holds"
    )]
    ForeignKey { column: String, referenced: String },
}

/// One masked column and how.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Masked {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub function: MaskFunction,
    pub value: Option<String>,
}

/// What a masking run changes: per table, its masked columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaskPlan {
    pub tables: BTreeMap<(String, String), Vec<Masked>>,
}

impl MaskPlan {
    fn uses(&self, function: MaskFunction) -> bool {
        self.tables
            .values()
            .flatten()
            .any(|m| m.function == function)
    }
}

/// The characters a function writes, where that is fixed.
fn written_length(function: MaskFunction) -> Option<u32> {
    match function {
        MaskFunction::Email => Some(33),
        MaskFunction::Hash => Some(64),
        _ => None,
    }
}

/// Checks `rules` against the branch's `columns` and plans the run (pure).
pub fn plan(rules: &[TableMask], columns: &[Column]) -> Result<MaskPlan, MaskError> {
    let by_key: BTreeMap<(String, String, String), &Column> =
        columns.iter().map(|c| (c.key(), c)).collect();
    let tables: BTreeSet<(String, String)> = columns
        .iter()
        .map(|c| (c.schema.clone(), c.table.clone()))
        .collect();
    let mut out = MaskPlan::default();
    let mut rule_of: BTreeMap<(String, String, String), (MaskFunction, Option<String>)> =
        BTreeMap::new();
    for rule in rules {
        let (schema, table) = split_table(&rule.table);
        if !tables.contains(&(schema.clone(), table.clone())) {
            return Err(MaskError::UnknownTable(format!("{schema}.{table}")));
        }
        for (name, mask) in &rule.columns {
            let key = (schema.clone(), table.clone(), name.clone());
            let shown = format!("{schema}.{table}.{name}");
            let column = by_key
                .get(&key)
                .ok_or_else(|| MaskError::UnknownColumn(shown.clone()))?;
            let function = mask.with;
            let text_only = !matches!(function, MaskFunction::Null | MaskFunction::Constant);
            if text_only && !column.textual {
                return Err(MaskError::NotText {
                    column: shown,
                    data_type: column.data_type.clone(),
                    function,
                });
            }
            if let (Some(limit), Some(needs)) = (column.max_length, written_length(function))
                && limit < needs
            {
                return Err(MaskError::TooShort {
                    column: shown,
                    limit,
                    function,
                    needs,
                });
            }
            if function == MaskFunction::Null && column.not_null {
                return Err(MaskError::NotNullable(shown));
            }
            if column.unique && !matches!(function, MaskFunction::Hash | MaskFunction::Email) {
                return Err(MaskError::NotUnique {
                    column: shown,
                    function,
                });
            }
            rule_of.insert(key, (function, mask.value.clone()));
            out.tables
                .entry((schema.clone(), table.clone()))
                .or_default()
                .push(Masked {
                    schema: schema.clone(),
                    table: table.clone(),
                    column: name.clone(),
                    function,
                    value: mask.value.clone(),
                });
        }
    }
    // A foreign key holds after the run only if both of its ends are masked
    // the same way (or neither is).
    for column in columns {
        let Some(referenced) = &column.references else {
            continue;
        };
        if rule_of.get(&column.key()) != rule_of.get(referenced) {
            return Err(MaskError::ForeignKey {
                column: format!("{}.{}.{}", column.schema, column.table, column.name),
                referenced: format!("{}.{}.{}", referenced.0, referenced.1, referenced.2),
            });
        }
    }
    Ok(out)
}

/// The value `function` writes for column `col` under `key` (pure SQL).
fn expression(m: &Masked, key: &str) -> Result<String, SqlError> {
    let col = ident(&m.column);
    let hash = format!(
        "pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to({key} || {col}::text, 'UTF8')), 'hex')"
    );
    Ok(match m.function {
        MaskFunction::Hash => hash,
        MaskFunction::Email => format!("'u' || pg_catalog.left({hash}, 16) || '@example.invalid'"),
        MaskFunction::Null => "NULL".to_string(),
        MaskFunction::Constant => literal(m.value.as_deref().unwrap_or_default())?,
        MaskFunction::Redact => {
            format!("pg_catalog.repeat('*', pg_catalog.char_length({col}::text))")
        }
        MaskFunction::Digits => format!("pg_temp.dbops_digits({col}::text, {key})"),
    })
}

/// `Digits`: each digit of `v` replaced by one from a keyed hash stream, the
/// rest kept; `NULL` stays `NULL`.
const DIGITS_FUNCTION: &str = "CREATE FUNCTION pg_temp.dbops_digits(v text, k text) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $f$ \
SELECT pg_catalog.string_agg(CASE WHEN pg_catalog.substr(v, i, 1) BETWEEN '0' AND '9' THEN pg_catalog.substr(h.s, i, 1) ELSE pg_catalog.substr(v, i, 1) END, '' ORDER BY i) \
FROM (SELECT pg_catalog.string_agg(pg_catalog.translate(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(k || v || b::text, 'UTF8')), 'hex'), 'abcdef', '012345'), '' ORDER BY b) AS s \
      FROM pg_catalog.generate_series(0, pg_catalog.char_length(v) / 64) AS b) AS h, \
     pg_catalog.generate_series(1, pg_catalog.char_length(v)) AS i $f$";

/// The `DO` block of a run: `body`, with the variables it uses.
fn do_block(body: &str) -> String {
    crate::providers::postgres::sql::do_block(
        "  r record;\n  later text[] := '{}';\n  s text;\n",
        body,
    )
}

/// The one statement that masks the branch as `plan` says, under the
/// per-run `key` (pure): foreign keys and user triggers on the masked
/// columns' tables set aside, one `UPDATE` per table, then everything put
/// back (re-adding the foreign keys checks them again).
pub fn mask_script(plan: &MaskPlan, key: &str) -> Result<String, SqlError> {
    let key = literal(key)?;
    let mut body = String::new();
    if plan.uses(MaskFunction::Digits) {
        body.push_str(&format!("  EXECUTE {};\n", literal(DIGITS_FUNCTION)?));
    }
    let mut masked_columns = Vec::new();
    let mut masked_tables = Vec::new();
    for (schema, table) in plan.tables.keys() {
        let relation = literal(&format!("{}.{}", ident(schema), ident(table)))?;
        masked_tables.push(format!("{relation}::pg_catalog.regclass"));
        for m in &plan.tables[&(schema.clone(), table.clone())] {
            masked_columns.push(format!(
                "({relation}::pg_catalog.regclass, {})",
                literal(&m.column)?
            ));
        }
    }
    if masked_columns.is_empty() {
        return Ok(do_block("  NULL;\n"));
    }
    let masked = masked_columns.join(", ");
    let ends = |rel: &str, keys: &str| {
        format!(
            "EXISTS (SELECT 1 FROM pg_catalog.unnest(con.{keys}) AS k JOIN pg_catalog.pg_attribute a ON a.attrelid = con.{rel} AND a.attnum = k WHERE (con.{rel}, a.attname::text) IN ({masked}))"
        )
    };
    body.push_str(&format!(
        "  FOR r IN SELECT con.conrelid::pg_catalog.regclass::text AS tbl, con.conname::text AS name, pg_catalog.pg_get_constraintdef(con.oid) AS def \
FROM pg_catalog.pg_constraint con WHERE con.contype = 'f' AND ({} OR {}) LOOP\n\
    later := later || pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.tbl, r.name, r.def);\n\
    EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.name);\n\
  END LOOP;\n",
        ends("conrelid", "conkey"),
        ends("confrelid", "confkey"),
    ));
    body.push_str(&format!(
        "  FOR r IN SELECT t.tgrelid::pg_catalog.regclass::text AS tbl, t.tgname::text AS name FROM pg_catalog.pg_trigger t \
WHERE NOT t.tgisinternal AND t.tgenabled = 'O' AND t.tgrelid IN ({}) LOOP\n\
    later := later || pg_catalog.format('ALTER TABLE %s ENABLE TRIGGER %I', r.tbl, r.name);\n\
    EXECUTE pg_catalog.format('ALTER TABLE %s DISABLE TRIGGER %I', r.tbl, r.name);\n\
  END LOOP;\n",
        masked_tables.join(", ")
    ));
    for ((schema, table), columns) in &plan.tables {
        let sets = columns
            .iter()
            .map(|m| Ok(format!("{} = {}", ident(&m.column), expression(m, &key)?)))
            .collect::<Result<Vec<_>, SqlError>>()?;
        body.push_str(&format!(
            "  UPDATE {}.{} SET {};\n",
            ident(schema),
            ident(table),
            sets.join(", ")
        ));
    }
    body.push_str("  FOREACH s IN ARRAY later LOOP\n    EXECUTE s;\n  END LOOP;\n");
    Ok(do_block(&body))
}

/// The one statement that empties every user table (pure): the schema
/// stays whole (tables, sequences, constraints, indexes, views, functions),
/// the rows go, and the sequences the tables own start again.
pub fn schema_only_script() -> String {
    do_block(
        "  SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I', n.nspname, c.relname), ', ') INTO s \
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
AND NOT c.relispartition \
AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e');\n\
  IF s IS NOT NULL THEN\n    EXECUTE 'TRUNCATE TABLE ' || s || ' RESTART IDENTITY';\n  END IF;\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::ColumnMask;

    fn column(table: &str, name: &str, data_type: &str) -> Column {
        Column {
            schema: "public".into(),
            table: table.into(),
            name: name.into(),
            data_type: data_type.into(),
            textual: data_type.starts_with("text") || data_type.starts_with("character"),
            max_length: None,
            not_null: false,
            unique: false,
            references: None,
        }
    }

    fn rule(table: &str, columns: &[(&str, MaskFunction)]) -> TableMask {
        TableMask {
            table: table.into(),
            columns: columns
                .iter()
                .map(|(c, with)| {
                    let value = (*with == MaskFunction::Constant).then(|| "0000".to_string());
                    (c.to_string(), ColumnMask { with: *with, value })
                })
                .collect(),
        }
    }

    #[test]
    fn personal_looking_columns_without_a_rule_are_suspects() {
        let columns = [
            column("users", "id", "integer"),
            column("users", "email", "text"),
            column("users", "full_name", "text"),
            column("users", "filename", "text"),
            column("users", "is_email_verified", "boolean"),
            column("users", "last_ip", "inet"),
            column("users", "auth_token_hash", "text"),
            column("payments", "card_last4", "text"),
            column("orders", "cents", "integer"),
        ];
        let rules = [rule("users", &[("email", MaskFunction::Email)])];
        assert_eq!(
            suspects(&columns, &rules),
            [
                "public.users.full_name",
                "public.users.last_ip",
                "public.users.auth_token_hash",
                "public.payments.card_last4",
            ]
        );
    }

    #[test]
    fn rules_are_checked_against_the_tables() {
        let mut email = column("users", "email", "character varying(20)");
        email.max_length = Some(20);
        let mut id = column("users", "id", "integer");
        id.not_null = true;
        let columns = [email, id];
        let err = |rules: &[TableMask]| plan(rules, &columns).unwrap_err().to_string();
        assert_eq!(
            err(&[rule("people", &[("email", MaskFunction::Hash)])]),
            "spec.data.masking names table public.people, which the branch does not have"
        );
        assert_eq!(
            err(&[rule("users", &[("mail", MaskFunction::Hash)])]),
            "spec.data.masking names column public.users.mail, which the branch does not have"
        );
        assert!(
            err(&[rule("users", &[("email", MaskFunction::Hash)])])
                .contains("at most 20 characters; Hash writes 64")
        );
        assert!(
            err(&[rule("users", &[("id", MaskFunction::Digits)])])
                .contains("is integer; Digits masks text columns only")
        );
        assert_eq!(
            err(&[rule("users", &[("id", MaskFunction::Null)])]),
            "column public.users.id is NOT NULL; Null cannot mask it"
        );
        assert!(
            plan(
                &[rule("users", &[("email", MaskFunction::Digits)])],
                &columns
            )
            .is_ok()
        );
    }

    #[test]
    fn a_unique_column_needs_a_function_that_keeps_it_unique() {
        let mut email = column("users", "email", "text");
        email.unique = true;
        let columns = [email];
        let refused = plan(
            &[rule("users", &[("email", MaskFunction::Redact)])],
            &columns,
        );
        assert!(matches!(refused, Err(MaskError::NotUnique { .. })));
        assert!(
            plan(
                &[rule("users", &[("email", MaskFunction::Email)])],
                &columns
            )
            .is_ok()
        );
    }

    #[test]
    fn both_ends_of_a_foreign_key_are_masked_alike_or_not_at_all() {
        let mut users_email = column("users", "email", "text");
        users_email.unique = true;
        let mut orders_email = column("orders", "customer_email", "text");
        orders_email.references = Some(("public".into(), "users".into(), "email".into()));
        let columns = [users_email, orders_email];
        let one_end = plan(
            &[rule("users", &[("email", MaskFunction::Email)])],
            &columns,
        );
        assert_eq!(
            one_end.unwrap_err().to_string(),
            "column public.orders.customer_email references public.users.email; mask both with the same rule, or neither, so the foreign key still holds"
        );
        let both = [
            rule("users", &[("email", MaskFunction::Email)]),
            rule("orders", &[("customer_email", MaskFunction::Email)]),
        ];
        let planned = plan(&both, &columns).unwrap();
        assert_eq!(planned.tables.len(), 2);
        assert!(plan(&[], &columns).unwrap().tables.is_empty());
    }

    #[test]
    fn a_run_is_one_block_that_sets_aside_foreign_keys_and_triggers() {
        let columns = [
            column("users", "email", "text"),
            column("users", "phone", "text"),
        ];
        let planned = plan(
            &[rule(
                "users",
                &[
                    ("email", MaskFunction::Email),
                    ("phone", MaskFunction::Digits),
                ],
            )],
            &columns,
        )
        .unwrap();
        let script = mask_script(&planned, "k1").unwrap();
        assert!(script.starts_with("DO $dbops$"));
        assert!(script.contains("CREATE FUNCTION pg_temp.dbops_digits"));
        assert!(script.contains("UPDATE \"public\".\"users\" SET \"email\" = 'u' || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to('k1' || \"email\"::text, 'UTF8')), 'hex'), 16) || '@example.invalid', \"phone\" = pg_temp.dbops_digits(\"phone\"::text, 'k1');"));
        assert!(script.contains("DROP CONSTRAINT"));
        assert!(script.contains("DISABLE TRIGGER"));
        assert!(script.trim_end().ends_with("$dbops$"));
        // Nothing to mask: a block that changes nothing.
        assert_eq!(
            mask_script(&MaskPlan::default(), "k1").unwrap(),
            "DO $dbops$\nDECLARE\n  r record;\n  later text[] := '{}';\n  s text;\nBEGIN\n  NULL;\nEND\n$dbops$"
        );
        assert!(mask_script(&planned, "bad\\key").is_err());
    }

    #[test]
    fn the_catalog_rows_become_columns() {
        let row = |cells: &[&str]| -> Vec<Option<String>> {
            cells.iter().map(|c| Some(c.to_string())).collect()
        };
        let parsed = columns(&[
            row(&[
                "public",
                "users",
                "email",
                "character varying(40)",
                "true",
                "40",
                "true",
                "true",
                "",
                "",
                "",
            ]),
            row(&[
                "public",
                "orders",
                "user_email",
                "text",
                "true",
                "",
                "false",
                "false",
                "public",
                "users",
                "email",
            ]),
            row(&["short"]),
        ]);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].max_length, Some(40));
        assert!(parsed[0].unique && parsed[0].not_null && parsed[0].textual);
        assert_eq!(
            parsed[1].references,
            Some(("public".into(), "users".into(), "email".into()))
        );
    }
}
