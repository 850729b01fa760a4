//! The part of Jinja a connection template may use, checked before the
//! template is rendered (pure).
//!
//! Allowed: text, `{{ expression }}`, `{% if %}`/`{% elif %}`/`{% else %}`,
//! comments, whitespace control and `{% raw %}`. Expressions: the connection
//! fields, constants, `~`, comparisons, `in`, `and`/`or`/`not`,
//! `a if b else c`, and the [`FILTERS`] and [`TESTS`] with constant
//! arguments. With no loops, variables or calls, rendering runs each part of
//! a template at most once, and every value an expression can build has a
//! bound known before it runs: the lengths of the fields it joins, times a
//! small factor per filter.
//!
//! This is the only user of minijinja's unstable parser API (feature
//! `unstable_machinery`): [`parse`], [`parser_would_nest_too_deep`] (over
//! its tokens) and the walk over its AST. The matches on the AST are
//! exhaustive, so a new kind of node fails to compile here, and the tests
//! below fail if a construct comes to parse differently.

use std::collections::BTreeMap;

use minijinja::machinery::Token;
use minijinja::machinery::ast::{self, BinOpKind, CallArg, CallType, Expr, Stmt, UnaryOpKind};

/// Filters a template may use: each one's output is at most three times its
/// input, or one of its constant arguments.
pub const FILTERS: [&str; 7] = [
    "d",
    "default",
    "lower",
    "string",
    "trim",
    "upper",
    "urlencode",
];

/// Tests (`x is defined`) a template may use.
pub const TESTS: [&str; 9] = [
    "defined",
    "endingwith",
    "false",
    "none",
    "number",
    "startingwith",
    "string",
    "true",
    "undefined",
];

/// The most a boolean takes once written (`false`).
const BOOL: usize = 5;

/// How deep a template may nest. The parser limits parentheses and blocks,
/// but not a chain of `~` or filters, which nests one level per step: the
/// engine compiles and runs it recursively, and overflowed the stack
/// (aborting the process) at 2,000 steps in a debug build. The parser itself
/// recurses without a limit over `-` or `not` in a row and over `elif`s,
/// which overflowed the stack at 4,000 `-`.
pub const MAX_DEPTH: usize = 100;

/// The refusal when [`MAX_DEPTH`] is passed.
fn too_deep() -> String {
    format!(
        "the template nests more than {MAX_DEPTH} deep (each `if`, `elif`, `-`, `not`, or `~` or filter of a chain is a level)"
    )
}

/// Why a template is refused before it is rendered.
#[derive(Debug)]
pub enum Refusal {
    /// It does not parse; the engine's own error.
    Syntax(minijinja::Error),
    /// It uses something outside the allowed subset, or could build too
    /// much: one sentence.
    Construct(String),
}

/// Parses `source` as the engine will when it renders it (default syntax and
/// whitespace, as [`minijinja::Environment::empty`] has them).
fn parse(source: &str) -> Result<Stmt<'_>, minijinja::Error> {
    minijinja::machinery::parse(source, "<string>", Default::default(), Default::default())
}

/// Whether the parser would recurse more than [`MAX_DEPTH`] deep where it
/// has no limit of its own: over `-` or `not` in a row, and over `elif`s
/// (counted in the whole template). Lexing is a loop; a lexer error is left
/// to [`parse`] to report.
fn parser_would_nest_too_deep(source: &str) -> bool {
    let tokens =
        minijinja::machinery::tokenize(source, false, Default::default(), Default::default());
    let (mut in_a_row, mut elifs) = (0usize, 0usize);
    for token in tokens {
        let Ok((token, _)) = token else {
            return false;
        };
        match token {
            Token::Minus | Token::Ident("not") => in_a_row += 1,
            Token::Ident("elif") => {
                elifs += 1;
                in_a_row = 0;
            }
            _ => in_a_row = 0,
        }
        if in_a_row > MAX_DEPTH || elifs > MAX_DEPTH {
            return true;
        }
    }
    false
}

/// Checks `source` against the allowed subset, with `fields` the length of
/// each connection field once written, and `max_value` the most bytes any one
/// value may have. Returns how many bytes its expressions could build in all,
/// at most (`~` and filters make new strings; the rest passes values on).
pub fn check(
    source: &str,
    fields: &BTreeMap<&str, usize>,
    max_value: usize,
) -> Result<usize, Refusal> {
    if parser_would_nest_too_deep(source) {
        return Err(Refusal::Construct(too_deep()));
    }
    let ast = parse(source).map_err(|e| match unknown_block(&e) {
        Some(name) => Refusal::Construct(format!(
            "`{{% {name} %}}` is not allowed in connection templates, only `if`, `elif`, `else` and `raw` blocks are"
        )),
        None => Refusal::Syntax(e),
    })?;
    let mut walk = Walk {
        fields,
        max_value,
        built: 0,
        depth: 0,
    };
    walk.stmt(&ast).map_err(Refusal::Construct)?;
    Ok(walk.built)
}

/// The name of a block tag the engine does not know (`macro`, `include`,
/// `import`, `extends`, `block`, `call`, `break`: the engine is built without
/// them, so they fail to parse).
fn unknown_block(error: &minijinja::Error) -> Option<&str> {
    if error.kind() != minijinja::ErrorKind::SyntaxError {
        return None;
    }
    error
        .detail()?
        .strip_prefix("unknown statement ")
        .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        // A stray `{% endif %}` or `{% else %}` is a syntax error.
        .filter(|name| !name.starts_with("end") && !matches!(*name, "elif" | "else"))
}

fn not_allowed(what: &str) -> String {
    format!("{what} not allowed in connection templates")
}

struct Walk<'f> {
    fields: &'f BTreeMap<&'f str, usize>,
    max_value: usize,
    built: usize,
    depth: usize,
}

impl Walk<'_> {
    fn stmts(&mut self, stmts: &[Stmt<'_>]) -> Result<(), String> {
        stmts.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, stmt: &Stmt<'_>) -> Result<(), String> {
        self.nested(|walk| walk.stmt_at_depth(stmt))
    }

    /// Runs `check` one level deeper, if the template may nest that deep.
    fn nested<T>(
        &mut self,
        check: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<T, String> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        self.depth += 1;
        let result = check(self);
        self.depth -= 1;
        result
    }

    fn stmt_at_depth(&mut self, stmt: &Stmt<'_>) -> Result<(), String> {
        match stmt {
            Stmt::Template(t) => self.stmts(&t.children),
            Stmt::EmitRaw(_) => Ok(()),
            Stmt::EmitExpr(e) => self.expr(&e.expr).map(drop),
            Stmt::IfCond(c) => {
                self.expr(&c.expr)?;
                self.stmts(&c.true_body)?;
                self.stmts(&c.false_body)
            }
            Stmt::ForLoop(_) => Err(not_allowed("loops (`{% for %}`) are")),
            Stmt::Set(_) | Stmt::SetBlock(_) => Err(not_allowed("variables (`{% set %}`) are")),
            Stmt::WithBlock(_) => Err(not_allowed("`{% with %}` is")),
            Stmt::FilterBlock(_) => Err(not_allowed("filter blocks (`{% filter %}`) are")),
            Stmt::AutoEscape(_) => Err(not_allowed("`{% autoescape %}` is")),
            Stmt::Do(_) => Err(not_allowed("`{% do %}` is")),
        }
    }

    /// Checks `expr`; returns the most bytes its value can take once written.
    fn expr(&mut self, expr: &Expr<'_>) -> Result<usize, String> {
        self.nested(|walk| walk.expr_at_depth(expr))
    }

    fn expr_at_depth(&mut self, expr: &Expr<'_>) -> Result<usize, String> {
        let bound = match expr {
            // An unknown name is undefined: an error when rendered.
            Expr::Var(v) => self.fields.get(v.id).copied().unwrap_or(0),
            Expr::Const(c) => match c.value.as_str() {
                Some(s) => s.len(),
                None => c.value.to_string().len(),
            },
            Expr::UnaryOp(u) => {
                let inner = self.expr(&u.expr)?;
                match u.op {
                    UnaryOpKind::Not => BOOL,
                    UnaryOpKind::Neg => inner.saturating_add(1),
                }
            }
            Expr::BinOp(b) => self.bin_op(b)?,
            Expr::Compare(c) => {
                self.expr(&c.expr)?;
                for op in &c.ops {
                    self.expr(&op.expr)?;
                }
                BOOL
            }
            Expr::IfExpr(e) => {
                self.expr(&e.test_expr)?;
                let yes = self.expr(&e.true_expr)?;
                let no = match &e.false_expr {
                    Some(no) => self.expr(no)?,
                    None => 0,
                };
                yes.max(no)
            }
            Expr::Filter(f) => self.filter(f)?,
            Expr::Test(t) => {
                if !TESTS.contains(&t.name) {
                    return Err(format!(
                        "the test `is {}` is not allowed in connection templates (allowed: {})",
                        t.name,
                        TESTS.join(", ")
                    ));
                }
                self.expr(&t.expr)?;
                constant_args("test", t.name, &t.args)?;
                BOOL
            }
            Expr::Call(c) => {
                return Err(match c.identify_call() {
                    CallType::Function(name) => {
                        not_allowed(&format!("function calls (`{name}(...)`) are"))
                    }
                    CallType::Method(_, name) => {
                        not_allowed(&format!("method calls (`.{name}(...)`) are"))
                    }
                    _ => not_allowed("calls are"),
                });
            }
            Expr::GetAttr(a) => {
                return Err(not_allowed(&format!("attribute access (`.{}`) is", a.name)));
            }
            Expr::GetItem(_) => return Err(not_allowed("item access (`[...]`) is")),
            Expr::Slice(_) => return Err(not_allowed("slices (`[a:b]`) are")),
            Expr::List(_) => return Err(not_allowed("list literals are")),
            Expr::Map(_) => return Err(not_allowed("map literals are")),
        };
        if bound > self.max_value {
            return Err(format!(
                "an expression could build a value of more than {} KiB, more than a Secret key may hold",
                self.max_value / 1024
            ));
        }
        Ok(bound)
    }

    fn bin_op(&mut self, b: &ast::BinOp<'_>) -> Result<usize, String> {
        let arithmetic = match b.op {
            BinOpKind::Add => Some("+"),
            BinOpKind::Sub => Some("-"),
            BinOpKind::Mul => Some("*"),
            BinOpKind::Div => Some("/"),
            BinOpKind::FloorDiv => Some("//"),
            BinOpKind::Rem => Some("%"),
            BinOpKind::Pow => Some("**"),
            BinOpKind::Concat
            | BinOpKind::ScAnd
            | BinOpKind::ScOr
            | BinOpKind::Eq
            | BinOpKind::Ne
            | BinOpKind::Lt
            | BinOpKind::Lte
            | BinOpKind::Gt
            | BinOpKind::Gte
            | BinOpKind::In => None,
        };
        if let Some(op) = arithmetic {
            return Err(format!(
                "`{op}` is not allowed in connection templates (join text with `~`)"
            ));
        }
        let left = self.expr(&b.left)?;
        let right = self.expr(&b.right)?;
        Ok(match b.op {
            BinOpKind::Concat => self.builds(left.saturating_add(right)),
            // `and` and `or` pass one of their operands on.
            BinOpKind::ScAnd | BinOpKind::ScOr => left.max(right).max(BOOL),
            _ => BOOL,
        })
    }

    fn filter(&mut self, f: &ast::Filter<'_>) -> Result<usize, String> {
        if !FILTERS.contains(&f.name) {
            return Err(format!(
                "the filter `{}` is not allowed in connection templates (allowed: {})",
                f.name,
                FILTERS.join(", ")
            ));
        }
        let input = match &f.expr {
            Some(e) => self.expr(e)?,
            None => 0,
        };
        let args = constant_args("filter", f.name, &f.args)?;
        let output = match f.name {
            // Percent-encoding triples a byte at most, and so does a change of
            // case (U+0390, two bytes, upper-cases to three two-byte chars).
            "urlencode" | "lower" | "upper" => input.saturating_mul(3),
            "d" | "default" => args.into_iter().fold(input, usize::max),
            // `trim` and `string`: no longer than the value written.
            _ => input,
        };
        Ok(self.builds(output))
    }

    /// Counts a new string of at most `bytes`.
    fn builds(&mut self, bytes: usize) -> usize {
        self.built = self.built.saturating_add(bytes);
        bytes
    }
}

/// The lengths of `args`, which must all be positional constants.
fn constant_args(kind: &str, name: &str, args: &[CallArg<'_>]) -> Result<Vec<usize>, String> {
    args.iter()
        .map(|arg| match arg {
            CallArg::Pos(Expr::Const(c)) => Ok(match c.value.as_str() {
                Some(s) => s.len(),
                None => c.value.to_string().len(),
            }),
            _ => Err(format!(
                "the arguments of the {kind} `{name}` must be constants (text, numbers, true, false or none) in connection templates"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> BTreeMap<&'static str, usize> {
        BTreeMap::from([("uri", 60), ("password", 10), ("port", 4), ("hasPooler", 5)])
    }

    fn refusal(source: &str) -> String {
        match check(source, &fields(), 64 * 1024) {
            Ok(_) => panic!("{source:?} was allowed"),
            Err(Refusal::Construct(reason)) => reason,
            Err(Refusal::Syntax(e)) => format!("syntax error: {e}"),
        }
    }

    #[test]
    fn the_allowed_subset_parses_and_passes() {
        for source in [
            "plain text",
            "{{ uri }}",
            "{{ host }}:{{ port }}",
            "{% if hasPooler %}yes{% elif port == 5432 %}maybe{% else %}no{% endif %}",
            "{# a comment #}{{- password -}}",
            "{%- if hasPooler -%} x {%- endif -%}",
            "{% raw %}{% for x in y %}{{ x }}{% endfor %}{% endraw %}",
            "{{ uri ~ '?application_name=shop' }}",
            "{{ password | urlencode }}{{ username | lower | upper | trim | string }}",
            "{{ nothing | default('none') }}{{ nothing | d(1) }}{{ uri | trim('/') }}",
            "{{ 'yes' if hasPooler and not (port != 5432 or port < 1) else 'no' }}",
            "{% if 'sslmode' in uri and port is number and uri is startingwith('postgres') %}{% endif %}",
            "{% if x is defined or x is undefined or x is none or x is not string %}{% endif %}",
            "{% if 1 < port <= 65535 and hasPooler is true %}{{ -1 }}{% endif %}",
        ] {
            assert!(
                check(source, &fields(), 64 * 1024).is_ok(),
                "{source:?}: {}",
                refusal(source)
            );
        }
    }

    /// Each construct outside the subset, and the reason given.
    #[test]
    fn everything_else_is_refused_with_its_reason() {
        for (source, reason) in [
            (
                "{% for c in password %}{{ c }}{% endfor %}",
                "loops (`{% for %}`) are not allowed",
            ),
            (
                "{% set a = uri %}{{ a }}",
                "variables (`{% set %}`) are not",
            ),
            (
                "{% set a %}x{% endset %}",
                "variables (`{% set %}`) are not",
            ),
            (
                "{% with a = uri %}{{ a }}{% endwith %}",
                "`{% with %}` is not",
            ),
            (
                "{% filter upper %}{{ uri }}{% endfilter %}",
                "filter blocks (`{% filter %}`) are not",
            ),
            (
                "{% autoescape true %}x{% endautoescape %}",
                "`{% autoescape %}` is not",
            ),
            ("{% do uri.upper() %}", "`{% do %}` is not"),
            (
                "{% macro m() %}x{% endmacro %}",
                "`{% macro %}` is not allowed in connection templates, only `if`",
            ),
            ("{% include 'x' %}", "`{% include %}` is not allowed"),
            ("{% import 'x' as y %}", "`{% import %}` is not allowed"),
            ("{% extends 'x' %}", "`{% extends %}` is not allowed"),
            (
                "{% block b %}x{% endblock %}",
                "`{% block %}` is not allowed",
            ),
            (
                "{% call m() %}x{% endcall %}",
                "`{% call %}` is not allowed",
            ),
            ("{{ range(10) }}", "function calls (`range(...)`) are not"),
            ("{{ uri.upper() }}", "method calls (`.upper(...)`) are not"),
            ("{{ uri.scheme }}", "attribute access (`.scheme`) is not"),
            ("{{ password[99] }}", "item access (`[...]`) is not"),
            ("{{ password[1:3] }}", "slices (`[a:b]`) are not"),
            ("{{ [uri] }}", "list literals are not"),
            ("{{ {'a': uri} }}", "map literals are not"),
            ("{{ password * 1000 }}", "`*` is not allowed"),
            ("{{ password + 1 }}", "`+` is not allowed"),
            ("{{ port ** 2 }}", "`**` is not allowed"),
            ("{{ port % 2 }}", "`%` is not allowed"),
            (
                "{{ uri | replace('', uri) }}",
                "the filter `replace` is not",
            ),
            ("{{ password | int }}", "the filter `int` is not"),
            ("{{ uri | indent(100000) }}", "the filter `indent` is not"),
            (
                "{% if port is divisibleby(3) %}{% endif %}",
                "the test `is divisibleby`",
            ),
            (
                "{{ x | default(uri) }}",
                "the arguments of the filter `default` must be constants",
            ),
            (
                "{{ x | default(value='a') }}",
                "the arguments of the filter `default` must be constants",
            ),
            (
                "{% if uri is startingwith(host) %}{% endif %}",
                "the arguments of the test `startingwith` must be constants",
            ),
        ] {
            let got = refusal(source);
            assert!(got.contains(reason), "{source:?}: {got}");
            assert!(
                got.starts_with("syntax error")
                    || got.contains("not allowed in connection templates")
                    || got.contains("must be constants"),
                "{source:?}: {got}"
            );
        }
    }

    #[test]
    fn a_syntax_error_is_the_engines() {
        for source in ["{{ uri ", "{% if %}", "{% endif %}"] {
            assert!(
                matches!(check(source, &fields(), 1024), Err(Refusal::Syntax(_))),
                "{source:?}"
            );
        }
    }

    /// The shapes that grow without bound, each refused before it runs.
    #[test]
    fn the_runaway_shapes_are_refused_before_they_run() {
        let nested_loops = "{% for i in range(100000) %}{% for j in range(100000) %}{{ uri }}{% endfor %}{% endfor %}";
        assert!(refusal(nested_loops).contains("loops"));
        let doubling =
            "{% set a = password ~ password %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c }}";
        assert!(refusal(doubling).contains("`{% set %}`"));
        let nested_replace = "{{ uri | replace('', uri) | replace('', uri) | replace('', uri) }}";
        assert!(refusal(nested_replace).contains("`replace`"));
    }

    #[test]
    fn the_values_an_expression_can_build_are_bounded_before_it_runs() {
        // A 1000-byte URI: 64 KiB is 65 of them.
        let long = BTreeMap::from([("uri", 1000)]);
        let joined = format!("{{{{ uri{} }}}}", " ~ uri".repeat(70));
        assert!(matches!(
            check(&joined, &long, 64 * 1024),
            Err(Refusal::Construct(r)) if r == "an expression could build a value of more than 64 KiB, more than a Secret key may hold"
        ));
        let upper = "{{ uri | upper | upper | upper | upper }}";
        assert!(
            check(upper, &long, 64 * 1024).is_err(),
            "3^4 times 1000 bytes"
        );
        assert!(check("{{ uri | upper | upper | upper }}", &long, 64 * 1024).is_ok());
        // ~ builds a new string each time: 1 + 2 + ... + n uris in all.
        let built = check(
            &format!("{{{{ uri{} }}}}", " ~ uri".repeat(9)),
            &fields(),
            1 << 16,
        )
        .unwrap_or_default();
        assert_eq!(built, 60 * (2..=10).sum::<usize>());
        // Filters count as a factor of their input, also where nothing is written.
        let hidden = format!(
            "{{% if (uri{}) | urlencode == '' %}}{{% endif %}}",
            " ~ uri".repeat(30)
        );
        assert!(matches!(
            check(&hidden, &long, 64 * 1024),
            Err(Refusal::Construct(r)) if r.contains("more than 64 KiB")
        ));
        // Plain output builds nothing: the writer caps it.
        assert_eq!(
            check(&"{{ uri }}".repeat(100), &fields(), 1 << 16).unwrap_or(1),
            0
        );
    }

    #[test]
    fn deep_nesting_stops_at_the_engines_recursion_limit() {
        let deep = format!("{}uri{}", "(".repeat(500), ")".repeat(500));
        assert!(matches!(
            check(&format!("{{{{ {deep} }}}}"), &fields(), 1024),
            Err(Refusal::Syntax(_))
        ));
    }

    /// Chains the parser does not limit, and the engine recurses over: 2,000
    /// `~` (4,096 characters allow 2,047) overflowed the stack of a test
    /// thread, aborting the process, in the engine; 4,000 `-` in the parser.
    /// Each is refused before either runs (this test would abort otherwise).
    #[test]
    fn long_chains_are_refused_before_the_engine_recurses_over_them() {
        let elifs = "{% elif port %}".repeat(MAX_DEPTH);
        for chain in [
            format!("{{{{ 1{} }}}}", "~1".repeat(2046)),
            format!("{{{{ {}1 }}}}", "-".repeat(4090)),
            format!("{{{{ {}1 }}}}", "not ".repeat(1020)),
            format!("{{% if port %}}{elifs}{{% elif 1 %}}{{% endif %}}"),
            format!("{{{{ port{} }}}}", " ~ port".repeat(MAX_DEPTH)),
            format!("{{{{ port{} }}}}", "|trim".repeat(MAX_DEPTH)),
            format!("{{{{ port{} }}}}", " is defined".repeat(MAX_DEPTH)),
            format!("{{{{ port{} }}}}", " if 1 else port".repeat(MAX_DEPTH)),
        ] {
            assert_eq!(
                refusal(&chain),
                "the template nests more than 100 deep (each `if`, `elif`, `-`, `not`, or `~` or filter of a chain is a level)",
                "{}",
                &chain[..30]
            );
        }
        // The parser's own limit on blocks and parentheses.
        for deep in [
            format!("{}x", "{% if 1 %}".repeat(400)),
            format!("{{{{ {}1 }}}}", "(".repeat(2000)),
        ] {
            assert!(matches!(
                check(&deep, &fields(), 1 << 16),
                Err(Refusal::Syntax(_))
            ));
        }
        // Up to the limit (counting the template and the `{{ }}`) is fine.
        let fine = [
            format!("{{{{ port{} }}}}", " ~ port".repeat(MAX_DEPTH - 5)),
            format!("{{{{ {}1 }}}}", "-".repeat(MAX_DEPTH - 5)),
            format!(
                "{}x{}",
                "{% if port %}".repeat(45),
                "{% endif %}".repeat(45)
            ),
            format!(
                "{{% if port %}}{}{{% endif %}}",
                "{% elif port %}".repeat(45)
            ),
        ];
        for source in fine {
            assert!(
                check(&source, &fields(), 1 << 16).is_ok(),
                "{}",
                refusal(&source)
            );
        }
    }
}
