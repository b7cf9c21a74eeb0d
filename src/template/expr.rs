//! Expressions (`if`, `until`) and string templates (`run`, `cwd`, `env`,
//! prompts), both minijinja, over a context of `args` and `artifacts`.
//!
//! One environment serves every template, with choices made for workflows
//! rather than web pages:
//!
//! - undefined is strict (minijinja's `SemiStrict`): printing, joining
//!   (`~`), iterating, filtering or looking into an undefined value is an
//!   error naming the variable, never an empty string, so
//!   `rm -rf {{ args.dir }}/build` without `dir` fails instead of running
//!   `rm -rf /build`. Testing one is fine: `x if artifacts.shout else y`,
//!   `artifacts.shout is defined`, `args.dir | default('.')`;
//! - rendering is bounded: at most [`RENDER_FUEL`] instructions and
//!   [`MAX_RENDER_BYTES`] of output, so a template that loops for ever
//!   fails in well under a second instead of hanging the runner (which
//!   renders between its checks for cancel and signals);
//! - auto-escaping is off: these templates render shell commands and
//!   prompts, not HTML;
//! - a trailing newline is kept, so a rendered script is the script written.
//!
//! Filters beyond minijinja's built-ins:
//!
//! - `shquote`: quotes a value for POSIX `sh` with single quotes
//!   (`it's` → `'it'\''s'`), so `echo {{ args.title | shquote }}` is safe
//!   whatever the title holds. None quotes as `''`; undefined is an error.
//!
//! `tojson` (minijinja's) escapes `'`, `<`, `>` and `&` as `\u0027`…, so
//! `'{{ x | tojson }}'` is a safe single-quoted shell word holding JSON.
//!
//! Nothing here reads files or the environment: the caller builds the
//! context (a JSON object) and gets a value or an [`ExprError`] back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::Value;

/// An expression or template that failed to compile or evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// minijinja's message, with the position when known.
    pub message: String,
}

/// Checks that `source` compiles as an expression.
///
/// Beyond syntax, a dry run over an empty context catches unknown filters,
/// tests and functions, which minijinja only looks up when evaluating. The
/// dry run has a budget of [`CHECK_FUEL`] instructions, so a template that
/// loops for ever cannot hang validation.
pub fn check_expression(source: &str) -> Result<(), ExprError> {
    let env = checking_environment();
    let expr = env
        .compile_expression(source)
        .map_err(|e| describe(&e, source))?;
    match expr.eval(minijinja::Value::from(())) {
        Err(e) if is_unknown_name(&e) => Err(describe(&e, source)),
        _ => Ok(()),
    }
}

/// Checks that `source` compiles as a string template.
///
/// Like [`check_expression`], a dry run catches unknown filters, tests and
/// functions.
pub fn check_template(source: &str) -> Result<(), ExprError> {
    let env = checking_environment();
    let template = env
        .template_from_str(source)
        .map_err(|e| describe(&e, source))?;
    match template.render(minijinja::Value::from(())) {
        Err(e) if is_unknown_name(&e) => Err(describe(&e, source)),
        _ => Ok(()),
    }
}

/// Evaluates `source` as an expression over `context` for its truth.
///
/// A condition asks a question, so an undefined value in it is false
/// (chained lookups into a skipped phase's artifacts included) rather than
/// an error; it never becomes text.
pub fn eval_condition(source: &str, context: &Value) -> Result<bool, ExprError> {
    let env = condition_environment();
    let expr = env
        .compile_expression(source)
        .map_err(|e| describe(&e, source))?;
    let value = expr
        .eval(to_minijinja(context))
        .map_err(|e| explain(&e, source, true, context))?;
    Ok(value.is_true())
}

/// Renders `source` as a string template over `context`.
///
/// Undefined values are errors naming the variable; the render stops after
/// [`RENDER_FUEL`] instructions or [`MAX_RENDER_BYTES`] of output.
pub fn render(source: &str, context: &Value) -> Result<String, ExprError> {
    let env = environment();
    let template = env
        .template_from_str(source)
        .map_err(|e| describe(&e, source))?;
    let mut out = CappedWriter::default();
    match template.render_captured_to(to_minijinja(context), &mut out) {
        Ok(_) => Ok(String::from_utf8_lossy(&out.bytes).into_owned()),
        Err(e) => Err(explain(&e, source, false, context)),
    }
}

/// The context variables `source` reads, as dotted paths
/// (`artifacts.greet.greeting.text`); `expression` picks the syntax.
///
/// Validation uses this to catch references to phases and artifacts that do
/// not exist. Subscripts (`artifacts["x"]`) end a path where they start.
pub(crate) fn variables(source: &str, expression: bool) -> Result<BTreeSet<String>, ExprError> {
    let env = environment();
    let found = if expression {
        env.compile_expression(source)
            .map_err(|e| describe(&e, source))?
            .undeclared_variables(true)
    } else {
        env.template_from_str(source)
            .map_err(|e| describe(&e, source))?
            .undeclared_variables(true)
    };
    Ok(found.into_iter().collect())
}

/// Quotes `value` as one POSIX shell word: `it's` becomes `'it'\''s'`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// How many minijinja instructions the dry run of a check may execute:
/// enough for any real template's dry run, far less than a hang.
pub const CHECK_FUEL: u64 = 100_000;

/// How many minijinja instructions one render or condition may execute:
/// orders of magnitude more than a real template needs (a prompt looping
/// over a few hundred tasks takes thousands), and still well under a second
/// of work, so a runaway loop fails fast and the runner gets back to
/// cancels and signals.
pub const RENDER_FUEL: u64 = 5_000_000;

/// The most text one render may produce: far more than a command or prompt
/// holds, far less than memory.
pub const MAX_RENDER_BYTES: usize = 16 * 1024 * 1024;

/// The environment for rendering string templates: strict undefined, with a budget.
fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| build_environment(RENDER_FUEL, UndefinedBehavior::SemiStrict))
}

/// The environment for conditions: undefined chains and is false.
fn condition_environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| build_environment(RENDER_FUEL, UndefinedBehavior::Chainable))
}

/// The environment for checks: lenient, so the dry run over an empty
/// context gets as far as it can, with a small budget.
fn checking_environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| build_environment(CHECK_FUEL, UndefinedBehavior::Chainable))
}

fn build_environment(fuel: u64, undefined: UndefinedBehavior) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(fuel));
    env.set_undefined_behavior(undefined);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // The default syntax with one change cannot fail to build; if it ever
    // did, the default (trailing newline dropped) is still usable.
    if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    env.add_filter("shquote", shquote_filter);
    env
}

/// Undefined is an error even here: `rm -rf {{ args.dir | shquote }}/build`
/// must not become `rm -rf ''/build`. The dry-run checks render over an
/// empty context, so there (lenient undefined) it quotes as `''`.
fn shquote_filter(
    state: &minijinja::State,
    value: minijinja::Value,
) -> Result<String, minijinja::Error> {
    if value.is_undefined() {
        if state.undefined_behavior() == UndefinedBehavior::Chainable {
            return Ok(shell_quote(""));
        }
        return Err(minijinja::Error::new(
            ErrorKind::UndefinedError,
            "shquote of an undefined value",
        ));
    }
    if value.is_none() {
        return Ok(shell_quote(""));
    }
    Ok(shell_quote(&value.to_string()))
}

/// A render's output, refusing to grow past [`MAX_RENDER_BYTES`].
#[derive(Default)]
struct CappedWriter {
    bytes: Vec<u8>,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > MAX_RENDER_BYTES {
            return Err(std::io::Error::other("render output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`describe`], saying in wfe's words what a limit or an undefined
/// variable means, and naming the variable.
fn explain(e: &minijinja::Error, source: &str, expression: bool, context: &Value) -> ExprError {
    let line = || match e.line() {
        Some(line) if source.contains('\n') => format!(" (line {line})"),
        _ => String::new(),
    };
    match e.kind() {
        ErrorKind::OutOfFuel => ExprError {
            message: format!(
                "rendering took more than {RENDER_FUEL} steps (a loop too large?); templates must render in well under a second{}",
                line()
            ),
        },
        ErrorKind::WriteFailure => ExprError {
            message: format!(
                "the rendered text is over the limit of {} MiB",
                MAX_RENDER_BYTES / (1024 * 1024)
            ),
        },
        ErrorKind::UndefinedError => {
            let missing = undefined_variables(source, expression, context);
            let message = match missing.as_slice() {
                [] => describe(e, source).message,
                [one] => format!("`{one}` is undefined{}", line()),
                many => format!(
                    "undefined value{}; undefined here: {}",
                    line(),
                    many.iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            ExprError { message }
        }
        _ => describe(e, source),
    }
}

/// The variables `source` reads that `context` does not hold, each cut at
/// its first missing part (`args.dir`, `artifacts.lint`).
fn undefined_variables(source: &str, expression: bool, context: &Value) -> Vec<String> {
    let Ok(variables) = variables(source, expression) else {
        return Vec::new();
    };
    let mut missing: Vec<String> = Vec::new();
    for variable in variables {
        let mut at = context;
        let mut path = Vec::new();
        for part in variable.split('.') {
            path.push(part);
            match at.get(part) {
                Some(next) => at = next,
                None => {
                    let cut = path.join(".");
                    if !missing.contains(&cut) {
                        missing.push(cut);
                    }
                    break;
                }
            }
        }
    }
    missing
}

fn is_unknown_name(e: &minijinja::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnknownFilter | ErrorKind::UnknownTest | ErrorKind::UnknownFunction
    )
}

/// minijinja's message without its `(in <string>:1)` suffix, plus the line
/// when the source has more than one.
fn describe(e: &minijinja::Error, source: &str) -> ExprError {
    let mut message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if source.contains('\n')
        && let Some(line) = e.line()
    {
        message.push_str(&format!(" (line {line})"));
    }
    ExprError { message }
}

/// Converts a JSON value to a minijinja value (minijinja's `serde` feature
/// is off; this is the one conversion wfe needs).
fn to_minijinja(value: &Value) -> minijinja::Value {
    match value {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                minijinja::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                minijinja::Value::from(u)
            } else {
                minijinja::Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => minijinja::Value::from(s.as_str()),
        Value::Array(items) => items.iter().map(to_minijinja).collect(),
        Value::Object(map) => minijinja::Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), to_minijinja(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn context() -> Value {
        json!({
            "args": { "name": "it's me", "shout": true, "n": 3, "empty": "" },
            "artifacts": { "greet": { "greeting": { "text": "Hello <b> & 'you'", "tags": ["a", "b"] } } },
        })
    }

    #[test]
    fn conditions_are_truthy_or_falsy() {
        let cases = [
            ("args.shout", true),
            ("not args.shout", false),
            ("args.n > 2", true),
            ("args.n == 3 and args.shout", true),
            ("args.empty", false),
            ("args.missing", false),
            // A condition is a question: a skipped phase's artifacts are
            // undefined, chained lookups included, and undefined is false.
            ("artifacts.shout.loud.text", false),
            ("artifacts.shout.loud.text is defined", false),
            ("artifacts.greet.greeting.text", true),
            ("'b' in artifacts.greet.greeting.tags", true),
            ("artifacts.greet.greeting.tags | length == 2", true),
        ];
        for (source, expected) in cases {
            assert_eq!(eval_condition(source, &context()), Ok(expected), "{source}");
        }
    }

    #[test]
    fn renders_templates_over_the_context() {
        let cases = [
            ("echo {{ args.name }}", "echo it's me"),
            ("{{ args.name | upper }}", "IT'S ME"),
            (
                "{{ ('Hello, ' ~ args.name ~ '!') | lower }}",
                "hello, it's me!",
            ),
            (
                "{{ artifacts.shout.loud.text if artifacts.shout else 'none' }}",
                "none",
            ),
            ("{{ 'yes' if artifacts.shout is defined else 'no' }}", "no"),
            ("{{ args.missing | default('.') }}", "."),
            // No HTML escaping: these are shell commands.
            ("{{ artifacts.greet.greeting.text }}", "Hello <b> & 'you'"),
            ("line\n", "line\n"),
        ];
        for (source, expected) in cases {
            assert_eq!(
                render(source, &context()).as_deref(),
                Ok(expected),
                "{source}"
            );
        }
    }

    #[test]
    fn shquote_makes_one_shell_word() {
        let cases = [
            ("{{ args.name | shquote }}", r"'it'\''s me'"),
            ("{{ args.n | shquote }}", "'3'"),
            ("{{ 'a b; rm -rf /' | shquote }}", "'a b; rm -rf /'"),
        ];
        for (source, expected) in cases {
            assert_eq!(
                render(source, &context()).as_deref(),
                Ok(expected),
                "{source}"
            );
        }
    }

    #[test]
    fn tojson_is_safe_inside_single_quotes() {
        let out = render(
            "echo '{{ artifacts.greet.greeting.text | tojson }}'",
            &context(),
        )
        .unwrap();
        assert_eq!(
            out,
            r#"echo '"Hello \u003cb\u003e \u0026 \u0027you\u0027"'"#
        );
        assert!(!out[6..out.len() - 1].contains('\''), "{out}");
        let out = render("{{ args | tojson }}", &context()).unwrap();
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, context()["args"]);
    }

    #[test]
    fn bad_sources_are_reported() {
        let expressions = [
            ("args.x ==", "syntax error"),
            ("args.x | nosuchfilter", "unknown filter"),
        ];
        for (source, fragment) in expressions {
            let err = check_expression(source).unwrap_err();
            assert!(err.message.contains(fragment), "{source}: {err}");
            assert!(!err.message.contains("<expression>"), "{source}: {err}");
        }
        let templates = [
            ("{{ args.x", "syntax error"),
            ("{% if x %}", "syntax error"),
            ("ok\n{{ x | nosuchfilter }}", "unknown filter"),
            ("{{ x is nosuchtest }}", "unknown test"),
            ("{{ nosuchfunction() }}", "unknown function"),
        ];
        for (source, fragment) in templates {
            let err = check_template(source).unwrap_err();
            assert!(err.message.contains(fragment), "{source}: {err}");
            assert!(!err.message.contains("<string>"), "{source}: {err}");
        }
        assert!(
            check_template("ok\n{{ x | nosuchfilter }}")
                .unwrap_err()
                .message
                .contains("line 2")
        );
    }

    #[test]
    fn good_sources_pass_the_checks() {
        for source in [
            "args.shout",
            "artifacts.a.b.c is defined and args.n > 1",
            "x | default('y') | upper",
        ] {
            assert_eq!(check_expression(source), Ok(()), "{source}");
        }
        for source in [
            "plain",
            "{{ args.n + 1 }}",
            "{% for t in artifacts.a.b.tags %}{{ t }}{% endfor %}",
        ] {
            assert_eq!(check_template(source), Ok(()), "{source}");
        }
    }

    #[test]
    fn variables_are_dotted_paths() {
        let vars = variables("artifacts.greet.greeting.text if args.shout else ''", true).unwrap();
        assert!(vars.contains("artifacts.greet.greeting.text"), "{vars:?}");
        assert!(vars.contains("args.shout"), "{vars:?}");
        let vars = variables("{% set x = 1 %}{{ x }}{{ args.name }}", false).unwrap();
        assert_eq!(vars.into_iter().collect::<Vec<_>>(), ["args.name"]);
    }

    #[test]
    fn checks_cannot_hang() {
        let forever = "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}";
        assert_eq!(check_template(forever), Ok(()));
        let err = check_template(&format!("{forever}{{{{ x | nosuchfilter }}}}"));
        assert_eq!(
            err,
            Ok(()),
            "the budget ends the dry run before the filter; syntax is still checked"
        );
    }

    #[test]
    fn undefined_is_an_error_naming_the_variable() {
        let cases = [
            ("rm -rf {{ args.dir }}/build", "`args.dir` is undefined"),
            (
                "rm -rf {{ args.dir ~ '/build' }}",
                "`args.dir` is undefined",
            ),
            (
                "rm -rf {{ args.dir | shquote }}/build",
                "`args.dir` is undefined",
            ),
            ("{{ args.dir | upper }}", "`args.dir` is undefined"),
            (
                "{% for x in args.list %}{{ x }}{% endfor %}",
                "`args.list` is undefined",
            ),
            (
                "[{{ artifacts.shout.loud.text }}]",
                "`artifacts.shout` is undefined",
            ),
            ("a\n{{ nothing }}", "`nothing` is undefined (line 2)"),
        ];
        for (source, fragment) in cases {
            let err = render(source, &context()).unwrap_err();
            assert!(err.message.contains(fragment), "{source}: {err}");
        }
        // None is a value: it renders, and quotes as ''.
        let with_null = json!({ "args": { "dir": null } });
        assert_eq!(
            render("{{ args.dir | shquote }}", &with_null).as_deref(),
            Ok("''")
        );
    }

    #[test]
    fn renders_are_bounded() {
        let forever = "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}";
        let started = std::time::Instant::now();
        let err = render(forever, &context()).unwrap_err();
        assert!(err.message.contains("steps (a loop too large?)"), "{err}");
        // Generous: the point is "not for ever", on a loaded debug build.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        let silent =
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        assert!(render(silent, &context()).is_err());
        let huge = "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}";
        let err = render(huge, &context()).unwrap_err();
        assert!(err.message.contains("over the limit of 16 MiB"), "{err}");
    }

    #[test]
    fn evaluation_errors_are_errors() {
        assert!(eval_condition("args.x ==", &context()).is_err());
        assert!(render("{{ args.name + 1 }}", &context()).is_err());
    }
}
