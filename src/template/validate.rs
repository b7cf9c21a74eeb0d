//! Whole-template checks: ids, the DAG, fields per kind, durations,
//! schemas, expressions.
//!
//! Parsing (`load`) has already checked the shape: keys, types, kinds and
//! durations. This pass checks what serde cannot: names, references between
//! phases, which fields belong to which kind, that schemas resolve, and that
//! every expression and string template compiles. It reports every problem
//! it finds, in document order, and never stops at the first.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Value;

use super::expr;
use super::model::KIND_FIELDS;
use super::path;
use super::upstream::Upstream;
use super::{Phase, PhaseKind, Problem, RetryPolicy, Template, TemplateError, Tool};
use crate::artifact::{ArtifactError, Registry, builtin_schema_names};

/// How deep loops nest at most: a loop inside a top-level loop runs; a
/// loop inside that one is refused (here and by the runner).
pub const MAX_LOOP_DEPTH: usize = 2;

/// Checks everything about a parsed template; reports every problem at once.
pub fn validate(template: &Template, file: &str, registry: &Registry) -> Result<(), TemplateError> {
    let mut check = Check::new(template, registry);
    check.template(template);
    if check.problems.is_empty() {
        Ok(())
    } else {
        Err(TemplateError {
            file: file.to_string(),
            problems: check.problems,
        })
    }
}

/// What a name (template, phase, artifact) may look like, in words.
const NAME_RULE: &str = "lowercase letters, digits, `-` and `_`, starting with a letter or digit";

/// True for names matching `[a-z0-9][a-z0-9_-]*`.
/// Longest template name, phase id, artifact or arg name: ids become file
/// names and ref components, which most filesystems cap at 255 bytes.
pub(crate) const MAX_ID_LEN: usize = 255;

/// The problem with an id over [`MAX_ID_LEN`], if it is one (the id is
/// shown cut: repeating 300 characters helps nobody).
fn too_long(what: &str, id: &str) -> Option<String> {
    (id.len() > MAX_ID_LEN).then(|| {
        let shown: String = id.chars().take(40).collect();
        format!(
            "the {what} `{shown}…` is {} bytes long; at most {MAX_ID_LEN}",
            id.len()
        )
    })
}

pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// True for text with template syntax (`{{ … }}`, `{% … %}`, `{# … #}`).
fn is_templated(text: &str) -> bool {
    ["{{", "{%", "{#"].iter().any(|open| text.contains(open))
}

/// True for shell variable names: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `phase` sets the kind-specific `field` (an entry of [`KIND_FIELDS`]).
fn is_set(phase: &Phase, field: &str) -> bool {
    match field {
        "run" => phase.run.is_some(),
        "cwd" => phase.cwd.is_some(),
        "env" => !phase.env.is_empty(),
        "role" => phase.role.is_some(),
        "provider" => phase.provider.is_some(),
        "model" => phase.model.is_some(),
        "prompt" => phase.prompt.is_some(),
        "system" => phase.system.is_some(),
        "tools" => !phase.tools.is_empty(),
        "max_turns" => phase.max_turns.is_some(),
        "max_tokens" => phase.max_tokens.is_some(),
        "max_invalid_submissions" => phase.max_invalid_submissions.is_some(),
        "review" => phase.review.is_some(),
        "budget" => phase.budget.is_some(),
        "phases" => !phase.phases.is_empty(),
        "until" => phase.until.is_some(),
        "max_iters" => phase.max_iters.is_some(),
        "on_exhausted" => phase.on_exhausted.is_some(),
        "outputs" => !phase.outputs.is_none(),
        "matrix" => phase.matrix.is_some(),
        "fail_fast" => phase.fail_fast.is_some(),
        "max_parallel" => phase.max_parallel.is_some(),
        "max_files_bytes" => phase.max_files_bytes.is_some(),
        "isolation" => phase.isolation.is_some(),
        "on_conflict" => phase.on_conflict.is_some(),
        _ => false,
    }
}

/// The phase ids of one level: in order (for messages) and as a set (for
/// lookups, so checking every `needs` stays linear).
struct Siblings<'a> {
    order: Vec<&'a str>,
    set: HashSet<&'a str>,
}

/// One phase as found anywhere in the template.
struct Indexed<'t> {
    path: String,
    phase: &'t Phase,
    /// The enclosing loop's id, for loop children.
    parent: Option<&'t str>,
}

struct Check<'t> {
    registry: &'t Registry,
    problems: Vec<Problem>,
    /// Every phase id in the template, at its first occurrence.
    phases: BTreeMap<&'t str, Indexed<'t>>,
    /// What the args schema declares, when it declares anything.
    args: Option<ArgsShape>,
    /// Schema names already checked, with the problem they had.
    schemas: BTreeMap<String, Option<String>>,
    /// For each top-level phase, the top-level phases it waits for,
    /// directly or not: the only ones whose artifacts it can read.
    upstream: Upstream<'t>,
}

impl<'t> Check<'t> {
    fn new(template: &'t Template, registry: &'t Registry) -> Self {
        let mut phases = BTreeMap::new();
        index(&template.phases, "phases", None, &mut phases);
        Check {
            registry,
            problems: Vec::new(),
            phases,
            args: ArgsShape::of(template.args.as_ref()),
            schemas: BTreeMap::new(),
            upstream: Upstream::new(&template.phases),
        }
    }

    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// A budget's values (serde checked the shape): each limit positive,
    /// `soft` a share, and at least one limit.
    fn budget(&mut self, budget: &crate::budget::Budget, at: &str) {
        for (field, message) in budget.problems() {
            self.problem(path::key(at, field), message);
        }
        if budget.is_empty() {
            self.problem(
                at,
                "a budget with no limit limits nothing; expected tokens, cost_usd, wall or tool_calls",
            );
        }
    }

    fn template(&mut self, template: &'t Template) {
        if let Some(message) = too_long("template name", &template.name) {
            self.problem("name", message);
        } else if template.name.is_empty() {
            self.problem(
                "name",
                format!("the template name is empty; expected {NAME_RULE}"),
            );
        } else if !is_valid_name(&template.name) {
            self.problem(
                "name",
                format!(
                    "`{}` is not a valid template name; expected {NAME_RULE}",
                    template.name
                ),
            );
        }
        if let Some(args) = &template.args {
            self.args_schema(args);
        }
        if let Some(timeout) = template.defaults.timeout
            && timeout.0.is_zero()
        {
            self.problem(
                "defaults.timeout",
                "a timeout of 0 would kill every attempt at once; expected more than 0s",
            );
        }
        if let Some(retry) = &template.defaults.retry {
            self.retry(retry, "defaults.retry");
        }
        if let Some(budget) = &template.defaults.budget {
            self.budget(budget, "defaults.budget");
        }
        for (env, at) in [
            (&template.env, "env"),
            (&template.defaults.env, "defaults.env"),
        ] {
            self.env(env, at);
            for (name, value) in env {
                if let Err(e) = expr::check_template(value) {
                    self.problem(path::key(at, name), format!("not a valid template: {e}"));
                }
            }
        }
        if template.phases.is_empty() {
            self.problem("phases", "a template needs at least one phase");
        }
        let mut seen = BTreeMap::new();
        self.level(&template.phases, "phases", true, &mut seen);
    }

    /// The args schema: a valid JSON Schema for an object.
    fn args_schema(&mut self, args: &Value) {
        let Value::Object(map) = args else {
            let found = super::load::describe_value(args);
            self.problem("args", format!("expected a JSON Schema object like {{\"type\": \"object\", \"properties\": {{…}}}}, found {found}"));
            return;
        };
        match map.get("type") {
            None => {}
            Some(Value::String(t)) if t == "object" => {}
            Some(other) => {
                let found = super::load::describe_value(other);
                self.problem("args.type", format!("args are named, so the args schema must have \"type\": \"object\" (or no type); found {found}"));
            }
        }
        if let Some(Value::Object(properties)) = map.get("properties") {
            for name in properties.keys() {
                if let Some(message) = too_long("arg name", name) {
                    self.problem(path::key("args.properties", name), message);
                }
            }
        }
        if let Err(e) = jsonschema::meta::validate(args) {
            let at = path::from_pointer("args", args, e.instance_path().as_str());
            self.problem(at, format!("not a valid JSON Schema: {e}"));
        } else if let Err(e) = jsonschema::validator_for(args) {
            self.problem("args", format!("the args schema cannot be used: {e}"));
        }
    }

    fn retry(&mut self, retry: &RetryPolicy, at: &str) {
        if retry.max_attempts == 0 {
            self.problem(
                path::key(at, "max_attempts"),
                "must be at least 1 (the first attempt counts)",
            );
        }
    }

    /// The phases of one level: the template's, or one loop's children.
    fn level(
        &mut self,
        phases: &'t [Phase],
        parent: &str,
        top: bool,
        seen: &mut BTreeMap<&'t str, String>,
    ) {
        let siblings = Siblings {
            order: phases.iter().map(|p| p.id.as_str()).collect(),
            set: phases.iter().map(|p| p.id.as_str()).collect(),
        };
        for (i, phase) in phases.iter().enumerate() {
            let at = path::index(parent, i);
            self.phase(phase, &at, &siblings, top, seen);
        }
        self.cycles(phases, parent);
        // Built once per level, and only when a loop hands over.
        let mut before = None;
        for (i, phase) in phases.iter().enumerate() {
            self.handover(
                phases,
                &siblings,
                &mut before,
                phase,
                &path::index(parent, i),
            );
        }
    }

    /// What a loop can run: loops nested at most [`MAX_LOOP_DEPTH`] deep,
    /// `on_exhausted: next` only on a top-level loop (its fallback is a
    /// top-level phase), no `retry` or `timeout` (its children take them).
    fn loop_rules(&mut self, phase: &Phase, at: &str, top: bool) {
        if phase.kind != PhaseKind::Loop {
            return;
        }
        // `phases[0].phases[1]`: one `phases[` per level.
        let depth = at.matches("phases[").count();
        if depth > MAX_LOOP_DEPTH {
            self.problem(
                path::key(at, "kind"),
                format!("a loop nested {depth} deep cannot run: loops nest at most {MAX_LOOP_DEPTH} deep (a loop inside a loop); fold its children into the loop around it"),
            );
        }
        if !top && phase.on_exhausted.as_ref().and_then(|o| o.next()).is_some() {
            self.problem(
                path::key(&path::key(at, "on_exhausted"), "next"),
                "only a top-level loop hands over to a fallback phase; inside a loop use `on_exhausted: continue` (and `if` on what follows) or `fail`",
            );
        }
        if phase.retry.is_some() {
            self.problem(
                path::key(at, "retry"),
                "a loop is not retried as a whole; give `retry` to its child phases",
            );
        }
        if phase.timeout.is_some() {
            self.problem(
                path::key(at, "timeout"),
                "a loop has no timeout of its own; give `timeout` to its child phases",
            );
        }
    }

    /// `on_exhausted: {"next": PHASE}`: PHASE is a sibling of the loop
    /// that the loop does not wait for (it starts once the loop ran out),
    /// and the loop has an `until` to run out of.
    fn handover(
        &mut self,
        phases: &'t [Phase],
        siblings: &Siblings<'_>,
        before: &mut Option<Upstream<'t>>,
        phase: &Phase,
        at: &str,
    ) {
        let Some(target) = phase.on_exhausted.as_ref().and_then(|o| o.next()) else {
            return;
        };
        if at.matches("phases[").count() > 1 {
            // Refused as a whole by `loop_rules`: a nested loop has no fallback.
            return;
        }
        let next_at = path::key(&path::key(at, "on_exhausted"), "next");
        if phase.until.is_none() {
            self.problem(
                &next_at,
                "a loop without `until` never runs out (it completes after `max_iters`); add `until` or remove on_exhausted",
            );
        }
        if target == phase.id {
            self.problem(
                next_at,
                format!("loop `{target}` cannot hand over to itself; name the phase to run when it runs out (e.g. a re-plan after it)"),
            );
            return;
        }
        if !siblings.set.contains(target) {
            let siblings: Vec<String> = phases
                .iter()
                .filter(|p| p.id != phase.id)
                .map(|p| format!("`{}`", p.id))
                .collect();
            let mut message = format!(
                "unknown phase `{target}` in on_exhausted.next; expected a phase beside loop `{}`: {}",
                phase.id,
                list_or_none(&siblings)
            );
            if let Some(elsewhere) = self.phases.get(target) {
                match elsewhere.parent {
                    Some(parent) if parent == phase.id => message.push_str(&format!(
                        " (`{target}` is inside this loop; the fallback runs after the loop ends)"
                    )),
                    Some(parent) => {
                        message.push_str(&format!(" (`{target}` is inside loop `{parent}`)"))
                    }
                    None => message.push_str(&format!(" (`{target}` is at the top level)")),
                }
            }
            self.problem(next_at, message);
            return;
        }
        let before = before.get_or_insert_with(|| Upstream::new(phases));
        if before.contains(&phase.id, target) {
            self.problem(
                next_at,
                format!(
                    "`{target}` runs before loop `{}` (the loop needs it), so it cannot start when the loop runs out: that would be a cycle; name a phase that runs after the loop",
                    phase.id
                ),
            );
        }
    }

    fn phase(
        &mut self,
        phase: &'t Phase,
        at: &str,
        siblings: &Siblings<'_>,
        top: bool,
        seen: &mut BTreeMap<&'t str, String>,
    ) {
        let id_at = path::key(at, "id");
        if let Some(message) = too_long("phase id", &phase.id) {
            self.problem(&id_at, message);
        } else if phase.id.is_empty() {
            self.problem(
                &id_at,
                format!("the phase id is empty; expected {NAME_RULE}"),
            );
        } else if !is_valid_name(&phase.id) {
            self.problem(
                &id_at,
                format!(
                    "`{}` is not a valid phase id; expected {NAME_RULE}",
                    phase.id
                ),
            );
        }
        if let Some(first) = seen.get(phase.id.as_str()) {
            self.problem(&id_at, format!("duplicate phase id `{}`: {first}.id has it too; ids must be unique in the whole template", phase.id));
        } else {
            seen.insert(&phase.id, at.to_string());
        }

        self.needs(phase, at, siblings);
        self.fields(phase, at);
        if !top && phase.matrix.is_some() {
            self.problem(
                path::key(at, "matrix"),
                "a loop's child phase cannot have a matrix; put the matrix on a top-level phase",
            );
        }
        if let Some(retry) = &phase.retry {
            self.retry(retry, &path::key(at, "retry"));
        }
        if let Some(timeout) = phase.timeout
            && timeout.0.is_zero()
        {
            self.problem(
                path::key(at, "timeout"),
                "a timeout of 0 would kill every attempt at once; expected more than 0s",
            );
        }
        self.outputs(phase, at);
        self.sources(phase, at, top);
        self.loop_rules(phase, at, top);
        if phase.kind == PhaseKind::Loop {
            self.level(&phase.phases, &path::key(at, "phases"), false, seen);
        }
    }

    fn needs(&mut self, phase: &Phase, at: &str, siblings: &Siblings<'_>) {
        let mut listed = BTreeSet::new();
        for (j, need) in phase.needs.iter().enumerate() {
            let need_at = path::index(&path::key(at, "needs"), j);
            if *need == phase.id {
                self.problem(need_at, format!("phase `{need}` needs itself"));
            } else if !listed.insert(need.as_str()) {
                self.problem(need_at, format!("`{need}` is listed twice in needs"));
            } else if !siblings.set.contains(need.as_str()) {
                let known = siblings
                    .order
                    .iter()
                    .filter(|s| **s != phase.id)
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>();
                let mut message = format!(
                    "unknown phase `{need}` in needs; known phases: {}",
                    list_or_none(&known)
                );
                if let Some(elsewhere) = self.phases.get(need.as_str()) {
                    let place = match elsewhere.parent {
                        Some(parent) => format!("inside loop `{parent}`"),
                        None => "at the top level".to_string(),
                    };
                    message.push_str(&format!(
                        " (`{need}` is {place}; needs name phases at the same level)"
                    ));
                } else {
                    let candidates: Vec<String> =
                        siblings.order.iter().map(|s| s.to_string()).collect();
                    if let Some(suggestion) = super::load::closest(need, &candidates) {
                        message.push_str(&format!("; did you mean `{suggestion}`?"));
                    }
                }
                self.problem(need_at, message);
            }
        }
    }

    /// Reports each cycle among one level's needs once, naming its phases.
    fn cycles(&mut self, phases: &[Phase], parent: &str) {
        let position: BTreeMap<&str, usize> = phases
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), i))
            .collect();
        let edges: Vec<Vec<usize>> = phases
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut to: Vec<usize> = p
                    .needs
                    .iter()
                    .filter_map(|n| position.get(n.as_str()).copied())
                    .filter(|j| *j != i)
                    .collect();
                to.dedup();
                to
            })
            .collect();
        for cycle in find_cycles(&edges) {
            let names: Vec<&str> = cycle
                .iter()
                .chain(cycle.first())
                .map(|&i| phases[i].id.as_str())
                .collect();
            let at = path::key(&path::index(parent, cycle[0]), "needs");
            self.problem(
                at,
                format!(
                    "needs form a cycle: {} (each needs the next)",
                    names.join(" → ")
                ),
            );
        }
    }

    /// Required fields per kind, and fields that belong to another kind.
    fn fields(&mut self, phase: &Phase, at: &str) {
        use PhaseKind::{Agent, Gate, Loop, Script};
        let kind = phase.kind;
        for (field, kinds) in KIND_FIELDS {
            if is_set(phase, field) && !kinds.contains(&kind) {
                let message = match kinds {
                    [only] => format!(
                        "`{field}` is only allowed on {} phases; this is {} phase",
                        only.as_str(),
                        with_article(kind)
                    ),
                    _ if *field == "outputs" => format!(
                        "`{field}` is not allowed on {} phases; give outputs to the loop's child phases",
                        kind.as_str()
                    ),
                    _ => format!(
                        "`{field}` is not allowed on {} phases; it is for {} phases",
                        kind.as_str(),
                        kinds
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                };
                self.problem(path::key(at, field), message);
            }
        }

        let mut require = |field: &str, value: Option<&String>, what: &str| match value {
            None => self.problem(
                at,
                format!("{} phase needs `{field}`: {what}", with_article(kind)),
            ),
            Some(v) if v.trim().is_empty() => self.problem(
                path::key(at, field),
                format!("must not be empty; expected {what}"),
            ),
            Some(_) => {}
        };
        match kind {
            Script => require("run", phase.run.as_ref(), "the shell command to run"),
            Agent => require("prompt", phase.prompt.as_ref(), "the agent's instructions"),
            Gate => {}
            Loop => {
                if phase.phases.is_empty() {
                    self.problem(
                        at,
                        "a loop phase needs `phases`: the child phases to repeat (at least one)",
                    );
                }
                match phase.max_iters {
                    None => self.problem(
                        at,
                        "a loop phase needs `max_iters`: the most iterations to run (at least 1)",
                    ),
                    Some(0) => self.problem(path::key(at, "max_iters"), "must be at least 1"),
                    Some(_) => {}
                }
            }
        }
        if phase.max_turns == Some(0) {
            self.problem(path::key(at, "max_turns"), "must be at least 1");
        }
        if let Some(budget) = &phase.budget {
            self.budget(budget, &path::key(at, "budget"));
        }
        if phase.max_tokens == Some(0) {
            self.problem(path::key(at, "max_tokens"), "must be at least 1");
        }
        for (i, tool) in phase.tools.iter().enumerate() {
            if Tool::from_name(tool).is_none() {
                let names: Vec<&str> = Tool::ALL.iter().map(|t| t.name()).collect();
                self.problem(
                    path::index(&path::key(at, "tools"), i),
                    format!(
                        "unknown tool `{tool}`; expected one of {}",
                        names.join(", ")
                    ),
                );
            }
        }
        for (field, value) in [
            ("role", &phase.role),
            ("provider", &phase.provider),
            ("model", &phase.model),
        ] {
            self.not_templated(&path::key(at, field), field, value.as_deref());
        }
        if let Some(review) = &phase.review {
            let review_at = path::key(at, "review");
            for (field, value) in [
                ("role", &review.role),
                ("provider", &review.provider),
                ("model", &review.model),
            ] {
                self.not_templated(&path::key(&review_at, field), field, value.as_deref());
            }
            if review.role.as_deref().is_some_and(|r| r.trim().is_empty()) {
                self.problem(
                    path::key(&review_at, "role"),
                    "must not be empty; expected a role from .wfe/config.json",
                );
            }
            if review
                .provider
                .as_deref()
                .is_some_and(|p| p.trim().is_empty())
            {
                self.problem(
                    path::key(&review_at, "provider"),
                    "must not be empty; expected a provider from .wfe/config.json",
                );
            }
            if phase.outputs.is_empty() {
                self.problem(
                    review_at.clone(),
                    "a review needs something to review: give the phase `outputs`",
                );
            }
            if review.rounds == Some(0) {
                self.problem(path::key(&review_at, "rounds"), "must be at least 1");
            }
        }
        if kind == Script {
            self.env(&phase.env, &path::key(at, "env"));
        }
        self.matrix(phase, at);
        if phase.on_conflict.is_some() && phase.isolation.is_none() {
            self.problem(
                path::key(at, "on_conflict"),
                "`on_conflict` is about merging an isolated phase's changes back; this phase has no `isolation`",
            );
        }
    }

    /// Names and values of an `env` (a phase's, `defaults.env`, the
    /// template's): shell names, not `WFE_`, no NUL (no process can be
    /// given one).
    fn env(&mut self, env: &BTreeMap<String, String>, env_path: &str) {
        for (name, value) in env {
            let env_at = path::key(env_path, name);
            if let Some(message) = too_long("environment variable name", name) {
                self.problem(&env_at, message);
            } else if !is_shell_name(name) {
                self.problem(&env_at, format!("`{name}` is not a valid environment variable name; expected letters, digits and `_`, not starting with a digit"));
            } else if name.starts_with("WFE_") {
                self.problem(
                    &env_at,
                    format!("`{name}` is reserved: wfe sets the `WFE_` variables itself"),
                );
            }
            if value.contains('\0') {
                self.problem(
                    env_at,
                    "the value contains a NUL byte, which no environment variable can hold",
                );
            }
        }
    }

    /// A `matrix` expands cleanly; `fail_fast` and `max_parallel` come with one.
    fn matrix(&mut self, phase: &Phase, at: &str) {
        match &phase.matrix {
            Some(matrix) => {
                for (where_, message) in super::matrix::problems(matrix, &path::key(at, "matrix")) {
                    self.problem(where_, message);
                }
                if phase.max_parallel == Some(0) {
                    self.problem(path::key(at, "max_parallel"), "must be at least 1");
                }
            }
            None => {
                for (field, set) in [
                    ("fail_fast", phase.fail_fast.is_some()),
                    ("max_parallel", phase.max_parallel.is_some()),
                ] {
                    if set {
                        self.problem(
                            path::key(at, field),
                            format!("`{field}` is about a matrix's combinations; this phase has no `matrix`"),
                        );
                    }
                }
            }
        }
    }

    /// Refuses a template in a seat field: roles, providers and models are
    /// looked up in the config before the run starts, when nothing is rendered.
    fn not_templated(&mut self, at: &str, field: &str, value: Option<&str>) {
        if let Some(value) = value
            && is_templated(value)
        {
            self.problem(
                at,
                format!(
                    "`{value}` is a template, but a {field} is not rendered: it is looked up in .wfe/config.json before the run starts; name one literally"
                ),
            );
        }
    }

    fn outputs(&mut self, phase: &Phase, at: &str) {
        let outputs_at = path::key(at, "outputs");
        for (name, schema) in &phase.outputs {
            let output_at = path::key(&outputs_at, name);
            if let Some(message) = too_long("artifact name", name) {
                self.problem(&output_at, message);
            } else if !is_valid_name(name) {
                self.problem(
                    &output_at,
                    format!("`{name}` is not a valid artifact name; expected {NAME_RULE}"),
                );
            }
            if let Some(message) = self.schema_problem(schema) {
                self.problem(output_at, message);
            }
        }
        for (name, file) in &phase.outputs.files {
            let output_at = path::key(&outputs_at, name);
            if !is_valid_name(name) {
                self.problem(
                    &output_at,
                    format!("`{name}` is not a valid artifact name; expected {NAME_RULE}"),
                );
            }
            if phase.kind != PhaseKind::Script {
                self.problem(
                    &output_at,
                    format!(
                        "file artifacts are collected from script phases only, not {} phases; write the files in a script phase that needs this one",
                        phase.kind.as_str()
                    ),
                );
            }
            for problem in file.problems() {
                self.problem(&output_at, problem);
            }
        }
    }

    /// Resolves and compiles `name` once; the problem it has, if any.
    fn schema_problem(&mut self, name: &str) -> Option<String> {
        if let Some(known) = self.schemas.get(name) {
            return known.clone();
        }
        let problem = match self.registry.compile(name) {
            Err(e @ ArtifactError::UnknownSchema { .. }) => Some(format!(
                "{e}; built-in schemas: {}",
                builtin_schema_names().join(", ")
            )),
            Err(e) => Some(e.to_string()),
            Ok(_) => None,
        };
        self.schemas.insert(name.to_string(), problem.clone());
        problem
    }

    /// Expressions and string templates: they compile, and the phases and
    /// artifacts they name exist (and, for top-level phases, are upstream).
    fn sources(&mut self, phase: &Phase, at: &str, top: bool) {
        let reader = if top { Some(phase.id.as_str()) } else { None };
        let fields = [
            ("if", &phase.condition, true),
            ("until", &phase.until, true),
            ("run", &phase.run, false),
            ("cwd", &phase.cwd, false),
            ("prompt", &phase.prompt, false),
            ("system", &phase.system, false),
        ];
        let mut sources: Vec<(String, &str, bool)> = fields
            .into_iter()
            .filter_map(|(field, value, expression)| {
                Some((path::key(at, field), value.as_deref()?, expression))
            })
            .collect();
        for (name, value) in &phase.env {
            sources.push((
                path::key(&path::key(at, "env"), name),
                value.as_str(),
                false,
            ));
        }
        for (source_at, source, expression) in sources {
            let checked = if expression {
                expr::check_expression(source)
            } else {
                expr::check_template(source)
            };
            if let Err(e) = checked {
                let what = if expression { "expression" } else { "template" };
                self.problem(source_at, format!("not a valid {what}: {e}"));
                continue;
            }
            if let Ok(variables) = expr::variables(source, expression) {
                for variable in variables {
                    if let Some(message) = matrix_reference_problem(phase, &variable) {
                        self.problem(&source_at, message);
                    }
                    if let Some(message) =
                        self.reference_problem(&variable, reader, source, expression)
                    {
                        self.problem(&source_at, message);
                    }
                }
            }
        }
    }

    /// What is wrong with a context variable a source reads: an artifact of
    /// a phase that does not exist, does not produce it, or (for a top-level
    /// `reader`) is not upstream of the reader; or an arg the args schema
    /// does not declare, or (in a string template, unguarded) declares
    /// optional without a default: undefined is an error when rendering,
    /// so such a template fails whenever the arg is not given.
    ///
    /// A phase's context holds the artifacts of the phases it waits for, so
    /// any other reference is undefined whenever it runs. Loops are left
    /// out: what a loop's children and its `until` see is the loop's affair.
    fn reference_problem(
        &mut self,
        variable: &str,
        reader: Option<&str>,
        source: &str,
        expression: bool,
    ) -> Option<String> {
        let parts: Vec<&str> = variable.split('.').collect();
        match parts.as_slice() {
            ["artifacts", phase, rest @ ..] => {
                let Some(found) = self.phases.get(phase) else {
                    let known: Vec<String> = self.phases.keys().map(|k| k.to_string()).collect();
                    let mut message = format!(
                        "`artifacts.{phase}` names no phase; phases: {}",
                        list_or_none(&known)
                    );
                    if let Some(suggestion) = super::load::closest(phase, &known) {
                        message.push_str(&format!("; did you mean `{suggestion}`?"));
                    }
                    return Some(message);
                };
                if let Some(reader) = reader
                    && found.parent.is_none()
                    && !self.upstream.contains(reader, phase)
                {
                    return Some(if reader == *phase {
                        format!("`artifacts.{phase}`: a phase cannot read its own artifacts")
                    } else {
                        format!(
                            "`artifacts.{phase}` is never available to `{reader}`: `{phase}` is not upstream of it; add `{phase}` to its needs (directly or through another phase)"
                        )
                    });
                }
                // A matrix phase's artifacts are by combination first.
                if found.phase.matrix.is_some() {
                    return None;
                }
                let artifact = rest.first()?;
                if found.phase.outputs.contains_key(*artifact) {
                    return None;
                }
                let outputs: Vec<String> = found.phase.outputs.keys().cloned().collect();
                Some(format!(
                    "`artifacts.{phase}.{artifact}`: phase `{phase}` ({}) has no output `{artifact}`; its outputs: {}",
                    found.path,
                    list_or_none(&outputs)
                ))
            }
            ["args", name, ..] => {
                let args = self.args.as_ref()?;
                if !args.declared.contains(*name) {
                    let known: Vec<String> = args.declared.iter().cloned().collect();
                    let mut message = if args.closed {
                        format!(
                            "`args.{name}` is not in the args schema, which allows no other args; args: {}",
                            list_or_none(&known)
                        )
                    } else {
                        format!(
                            "`args.{name}` is not declared in the args schema (`args.properties`), so it is undefined unless someone happens to pass it; args: {}",
                            list_or_none(&known)
                        )
                    };
                    if let Some(suggestion) = super::load::closest(name, &known) {
                        message.push_str(&format!("; did you mean `{suggestion}`?"));
                    }
                    return Some(message);
                }
                // A condition tests: undefined there is false, not an error.
                if expression || !args.optional.contains(*name) || is_guarded(source, name) {
                    return None;
                }
                Some(format!(
                    "`args.{name}` is optional without a default, and undefined is an error when rendering: this fails whenever `{name}` is not given; add it to `args.required`, give it a `default`, or guard it (`{{% if args.{name} %}}…{{% endif %}}`, `args.{name} | default('…')`)"
                ))
            }
            _ => None,
        }
    }
}

/// What is wrong with a `matrix.<axis>` that `phase` reads: it has no
/// matrix, or no such axis.
fn matrix_reference_problem(phase: &Phase, variable: &str) -> Option<String> {
    let axis = match variable.split('.').collect::<Vec<_>>().as_slice() {
        ["matrix", axis, ..] => axis.to_string(),
        ["matrix"] => {
            return phase
                .matrix
                .is_none()
                .then(|| "`matrix` is only defined in a phase with a `matrix`".to_string());
        }
        _ => return None,
    };
    let Some(matrix) = &phase.matrix else {
        return Some(format!(
            "`matrix.{axis}` is only defined in a phase with a `matrix`; this phase has none"
        ));
    };
    if matrix.axes.iter().any(|(a, _)| *a == axis) {
        return None;
    }
    let axes: Vec<String> = matrix.axes.iter().map(|(a, _)| format!("`{a}`")).collect();
    Some(format!(
        "`matrix.{axis}` names no axis of this phase's matrix; axes: {}",
        list_or_none(&axes)
    ))
}

/// Records every phase by id, at its first occurrence, with its path.
fn index<'t>(
    phases: &'t [Phase],
    parent: &str,
    enclosing: Option<&'t str>,
    out: &mut BTreeMap<&'t str, Indexed<'t>>,
) {
    for (i, phase) in phases.iter().enumerate() {
        let at = path::index(parent, i);
        if phase.kind == PhaseKind::Loop {
            index(
                &phase.phases,
                &path::key(&at, "phases"),
                Some(&phase.id),
                out,
            );
        }
        out.entry(&phase.id).or_insert(Indexed {
            path: at,
            phase,
            parent: enclosing,
        });
    }
}

/// What an args schema declares about the args.
struct ArgsShape {
    /// The property names.
    declared: BTreeSet<String>,
    /// Properties neither required nor with a default: possibly undefined.
    optional: BTreeSet<String>,
    /// Whether the schema forbids other args (`additionalProperties: false`).
    closed: bool,
}

impl ArgsShape {
    /// The shape of `args`, when it declares properties or forbids others;
    /// a schema that says nothing about names leaves every arg possible.
    fn of(args: Option<&Value>) -> Option<ArgsShape> {
        let args = args?;
        let closed = args.get("additionalProperties") == Some(&Value::Bool(false));
        let properties = args.get("properties").and_then(Value::as_object);
        if properties.is_none() && !closed {
            return None;
        }
        let required: BTreeSet<&str> = args
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut shape = ArgsShape {
            declared: BTreeSet::new(),
            optional: BTreeSet::new(),
            closed,
        };
        for (name, property) in properties.into_iter().flatten() {
            shape.declared.insert(name.clone());
            if !required.contains(name.as_str()) && property.get("default").is_none() {
                shape.optional.insert(name.clone());
            }
        }
        Some(shape)
    }
}

/// Whether `source` tests `args.<name>` before using it: `{% if args.x %}`,
/// `… if args.x else …`, `args.x is defined`, `args.x | default(…)`,
/// `'x' in args`. A heuristic (minijinja gives no syntax tree): a guard
/// anywhere in the source counts; the render still fails, naming the arg,
/// if the guard does not cover a use.
fn is_guarded(source: &str, name: &str) -> bool {
    let text = source.split_whitespace().collect::<Vec<_>>().join(" ");
    let var = format!("args.{name}");
    let ends_name = |rest: &str| {
        !rest
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    };
    let mut at = 0;
    while let Some(found) = text[at..].find(&var) {
        let start = at + found;
        let end = start + var.len();
        at = end;
        let before = text[..start].trim_end();
        let after = text[end..].trim_start();
        if !ends_name(&text[end..]) {
            continue;
        }
        let last_word = before
            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or_default();
        let tested = ["if", "elif", "not", "and", "or"].contains(&last_word);
        let defaulted = after.starts_with("is ")
            || after.starts_with("or ")
            || after.starts_with("and ")
            || after.starts_with("|default")
            || after.starts_with("| default")
            || after.starts_with("|d(")
            || after.starts_with("| d(");
        if tested || defaulted {
            return true;
        }
    }
    text.contains(&format!("'{name}' in args")) || text.contains(&format!("\"{name}\" in args"))
}

/// "a script", "an agent": for messages about a phase's kind.
fn with_article(kind: PhaseKind) -> String {
    let article = if kind == PhaseKind::Agent { "an" } else { "a" };
    format!("{article} {}", kind.as_str())
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

/// Every cycle in a graph given as adjacency lists, each once, rotated to
/// start at its lowest node. A depth-first search with an explicit stack
/// (no recursion, so no stack overflow on a long chain) finds one cycle per
/// back edge.
fn find_cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; edges.len()];
    let mut found = BTreeSet::new();
    for start in 0..edges.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // (node, index of the next edge to follow)
        let mut stack = vec![(start, 0usize)];
        mark[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&to) = edges[node].get(*next) {
                *next += 1;
                match mark[to] {
                    Mark::New => {
                        mark[to] = Mark::OnPath;
                        stack.push((to, 0));
                    }
                    Mark::OnPath => {
                        let from = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|(n, _)| *n).collect();
                        let lowest = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| **n)
                            .map_or(0, |(i, _)| i);
                        cycle.rotate_left(lowest);
                        found.insert(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::template::load::template_from_value;

    /// A valid template to break one field at a time.
    fn base() -> Value {
        json!({
            "name": "t",
            "args": {
                "type": "object",
                "properties": { "feature": { "type": "string" } },
                "required": ["feature"],
                "additionalProperties": false
            },
            "phases": [
                { "id": "lint", "kind": "script", "run": "cargo clippy", "outputs": { "report": "message" } },
                { "id": "plan", "kind": "agent", "prompt": "Plan {{ args.feature }}", "outputs": { "spec": "message" } },
                { "id": "approve", "kind": "gate", "needs": ["plan"] },
                { "id": "build", "kind": "script", "needs": ["approve", "lint"], "run": "make",
                  "if": "artifacts.lint.report.text", "env": { "MODE": "{{ args.feature }}" } },
                { "id": "fix", "kind": "loop", "needs": ["build"], "max_iters": 3,
                  "until": "artifacts.test.result.text == 'ok'",
                  "phases": [
                    { "id": "edit", "kind": "agent", "prompt": "fix it" },
                    { "id": "test", "kind": "script", "needs": ["edit"], "run": "make test", "outputs": { "result": "message" } }
                  ] }
            ]
        })
    }

    fn problems_of(doc: Value) -> Vec<Problem> {
        let template = match template_from_value(doc) {
            Ok(t) => t,
            Err(problems) => panic!("does not parse: {problems:?}"),
        };
        let registry = Registry::new(std::path::Path::new("/nonexistent"));
        match validate(&template, "t.json", &registry) {
            Ok(()) => Vec::new(),
            Err(e) => e.problems,
        }
    }

    /// Applies `edit` at a JSON pointer of the base template.
    fn with(pointer: &str, value: Value) -> Value {
        let mut doc = base();
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        match doc.pointer_mut(parent) {
            Some(Value::Object(map)) => {
                if value.is_null() {
                    map.remove(key);
                } else {
                    map.insert(key.to_string(), value);
                }
            }
            Some(Value::Array(items)) => {
                let i: usize = key.parse().unwrap();
                if value.is_null() {
                    items.remove(i);
                } else if i == items.len() {
                    items.push(value);
                } else {
                    items[i] = value;
                }
            }
            other => panic!("no container at {parent}: {other:?}"),
        }
        doc
    }

    /// A template of `n` phases, each reading its predecessor's artifact
    /// and needing it (a chain), plus one last phase that reads the first
    /// phase's artifact (upstream through the whole chain) and one that
    /// reads an artifact not upstream of it.
    fn long_chain(n: usize) -> Value {
        let id = |i: usize| format!("p{i:05}");
        let mut phases: Vec<Value> = (0..n)
            .map(|i| {
                let mut phase = json!({ "id": id(i), "kind": "script", "run": "true",
                                        "outputs": { "report": "message" } });
                if i > 0 {
                    phase["needs"] = json!([id(i - 1)]);
                    phase["run"] = json!(format!(
                        "echo {{{{ artifacts.{}.report.text }}}}",
                        id(i - 1)
                    ));
                }
                phase
            })
            .collect();
        phases.push(
            json!({ "id": "last", "kind": "script", "needs": [id(n - 1)],
                            "run": format!("echo {{{{ artifacts.{}.report.text }}}}", id(0)) }),
        );
        phases.push(json!({ "id": "stray", "kind": "script", "needs": [id(0)],
                            "run": format!("echo {{{{ artifacts.{}.report.text }}}}", id(1)) }));
        json!({ "name": "chain", "phases": phases })
    }

    #[test]
    fn a_ten_thousand_phase_chain_is_validated() {
        // Quadratic checks took 25 s and 1.6 GB here; no timing is asserted,
        // but the test suite would crawl.
        let problems = problems_of(long_chain(10_000));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].path, "phases[10001].run");
        assert!(
            problems[0]
                .message
                .contains("`p00001` is not upstream of it"),
            "{problems:#?}"
        );
    }

    #[test]
    fn the_base_template_is_valid() {
        assert_eq!(problems_of(base()), Vec::new());
    }

    #[test]
    fn each_rule_reports_its_path_and_what_was_expected() {
        let null = Value::Null;
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            // seats are looked up before the run: never templates
            (
                "/phases/1/provider",
                json!("{{ args.feature }}"),
                "phases[1].provider",
                "`{{ args.feature }}` is a template, but a provider is not rendered",
            ),
            (
                "/phases/4/phases/0/model",
                json!("{% if args.feature %}big{% endif %}"),
                "phases[4].phases[0].model",
                "is a template, but a model is not rendered",
            ),
            (
                "/phases/1/review",
                json!({ "role": "{{ args.feature }}" }),
                "phases[1].review.role",
                "is a template, but a role is not rendered",
            ),
            // names and ids
            ("/name", json!(""), "name", "the template name is empty"),
            (
                "/name",
                json!("My Flow"),
                "name",
                "not a valid template name; expected lowercase",
            ),
            (
                "/phases/0/id",
                json!("Lint"),
                "phases[0].id",
                "`Lint` is not a valid phase id",
            ),
            (
                "/phases/0/id",
                json!(""),
                "phases[0].id",
                "the phase id is empty",
            ),
            (
                "/phases/1/id",
                json!("lint"),
                "phases[1].id",
                "duplicate phase id `lint`: phases[0].id has it too",
            ),
            (
                "/phases/4/phases/1/id",
                json!("build"),
                "phases[4].phases[1].id",
                "duplicate phase id `build`: phases[3].id",
            ),
            // needs
            (
                "/phases/3/needs",
                json!(["approve", "lnt"]),
                "phases[3].needs[1]",
                "unknown phase `lnt` in needs; known phases: `lint`, `plan`, `approve`, `fix`; did you mean `lint`?",
            ),
            (
                "/phases/3/needs",
                json!(["build"]),
                "phases[3].needs[0]",
                "phase `build` needs itself",
            ),
            (
                "/phases/3/needs",
                json!(["lint", "lint"]),
                "phases[3].needs[1]",
                "`lint` is listed twice in needs",
            ),
            (
                "/phases/3/needs",
                json!(["test"]),
                "phases[3].needs[0]",
                "(`test` is inside loop `fix`; needs name phases at the same level)",
            ),
            (
                "/phases/4/phases/0/needs",
                json!(["build"]),
                "phases[4].phases[0].needs[0]",
                "known phases: `test` (`build` is at the top level",
            ),
            (
                "/phases/0/needs",
                json!(["build"]),
                "phases[0].needs",
                "needs form a cycle: lint → build → lint",
            ),
            (
                "/phases/1/needs",
                json!(["fix"]),
                "phases[1].needs",
                "needs form a cycle: plan → fix → build → approve → plan",
            ),
            (
                "/phases/4/phases/0/needs",
                json!(["test"]),
                "phases[4].phases[0].needs",
                "needs form a cycle: edit → test → edit",
            ),
            // fields per kind
            (
                "/phases/1/run",
                json!("echo"),
                "phases[1].run",
                "`run` is only allowed on script phases; this is an agent phase",
            ),
            (
                "/phases/2/prompt",
                json!("hi"),
                "phases[2].prompt",
                "`prompt` is only allowed on agent phases; this is a gate phase",
            ),
            (
                "/phases/0/max_iters",
                json!(2),
                "phases[0].max_iters",
                "`max_iters` is only allowed on loop phases",
            ),
            (
                "/phases/0/tools",
                json!(["bash"]),
                "phases[0].tools",
                "`tools` is only allowed on agent phases",
            ),
            (
                "/phases/2/env",
                json!({"A": "b"}),
                "phases[2].env",
                "`env` is only allowed on script phases",
            ),
            (
                "/phases/4/outputs",
                json!({"x": "message"}),
                "phases[4].outputs",
                "`outputs` is not allowed on loop phases",
            ),
            (
                "/phases/0/run",
                null.clone(),
                "phases[0]",
                "a script phase needs `run`: the shell command to run",
            ),
            (
                "/phases/0/run",
                json!("  "),
                "phases[0].run",
                "must not be empty",
            ),
            (
                "/phases/1/prompt",
                null.clone(),
                "phases[1]",
                "an agent phase needs `prompt`",
            ),
            (
                "/phases/4/max_iters",
                null.clone(),
                "phases[4]",
                "a loop phase needs `max_iters`",
            ),
            (
                "/phases/4/max_iters",
                json!(0),
                "phases[4].max_iters",
                "must be at least 1",
            ),
            (
                "/phases/4/phases",
                json!([]),
                "phases[4]",
                "a loop phase needs `phases`",
            ),
            (
                "/phases/1/max_turns",
                json!(0),
                "phases[1].max_turns",
                "must be at least 1",
            ),
            (
                "/phases/1/review",
                json!({"role": "", "rounds": 0}),
                "phases[1].review.role",
                "must not be empty",
            ),
            (
                "/phases/1/review",
                json!({"role": "x", "rounds": 0}),
                "phases[1].review.rounds",
                "must be at least 1",
            ),
            (
                "/phases/0/retry",
                json!({"max_attempts": 0}),
                "phases[0].retry.max_attempts",
                "must be at least 1",
            ),
            (
                "/defaults",
                json!({"retry": {"max_attempts": 0}}),
                "defaults.retry.max_attempts",
                "must be at least 1",
            ),
            (
                "/defaults",
                json!({"timeout": 0}),
                "defaults.timeout",
                "expected more than 0s",
            ),
            (
                "/phases/0/timeout",
                json!("0s"),
                "phases[0].timeout",
                "expected more than 0s",
            ),
            (
                "/phases",
                json!([]),
                "phases",
                "a template needs at least one phase",
            ),
            // outputs
            (
                "/phases/0/outputs",
                json!({"Report": "message"}),
                "phases[0].outputs.Report",
                "`Report` is not a valid artifact name",
            ),
            (
                "/phases/0/outputs",
                json!({"report": "nope"}),
                "phases[0].outputs.report",
                "unknown schema `nope`",
            ),
            (
                "/phases/0/outputs",
                json!({"report": "nope"}),
                "phases[0].outputs.report",
                "built-in schemas: build-report, decision, decision-log,",
            ),
            (
                "/phases/0/outputs",
                json!({"report": "schemas/missing.json"}),
                "phases[0].outputs.report",
                "unknown schema `schemas/missing.json`",
            ),
            // expressions and templates
            (
                "/phases/3/if",
                json!("args.feature =="),
                "phases[3].if",
                "not a valid expression: syntax error",
            ),
            (
                "/phases/3/if",
                json!("args.feature | nofilter"),
                "phases[3].if",
                "unknown filter",
            ),
            (
                "/phases/4/until",
                json!("{{ x }}"),
                "phases[4].until",
                "not a valid expression",
            ),
            (
                "/phases/0/run",
                json!("echo {{ args.feature"),
                "phases[0].run",
                "not a valid template: syntax error",
            ),
            (
                "/phases/3/cwd",
                json!("{% if %}"),
                "phases[3].cwd",
                "not a valid template",
            ),
            (
                "/phases/3/env",
                json!({"MODE": "{{ x }"}),
                "phases[3].env.MODE",
                "not a valid template",
            ),
            (
                "/phases/1/prompt",
                json!("{{ a | nope }}"),
                "phases[1].prompt",
                "unknown filter",
            ),
            (
                "/phases/1/system",
                json!("{% endfor %}"),
                "phases[1].system",
                "not a valid template",
            ),
            (
                "/phases/3/if",
                json!("artifacts.lnt.report"),
                "phases[3].if",
                "`artifacts.lnt` names no phase; phases: approve, build, edit, fix, lint, plan, test; did you mean `lint`?",
            ),
            (
                "/phases/3/if",
                json!("artifacts.lint.reprot.text"),
                "phases[3].if",
                "phase `lint` (phases[0]) has no output `reprot`; its outputs: report",
            ),
            (
                "/phases/3/if",
                json!("artifacts.approve.x"),
                "phases[3].if",
                "its outputs: (none)",
            ),
            (
                "/phases/1/prompt",
                json!("{{ artifacts.lint.report }}"),
                "phases[1].prompt",
                "`artifacts.lint` is never available to `plan`: `lint` is not upstream of it; add `lint` to its needs",
            ),
            (
                "/phases/0/run",
                json!("{{ artifacts.lint.report }}"),
                "phases[0].run",
                "`artifacts.lint`: a phase cannot read its own artifacts",
            ),
            (
                "/phases/0/run",
                json!("echo {{ args.feeture }}"),
                "phases[0].run",
                "`args.feeture` is not in the args schema, which allows no other args; args: feature",
            ),
            // env
            (
                "/phases/3/env",
                json!({"WFE_OUT": "x"}),
                "phases[3].env.WFE_OUT",
                "`WFE_OUT` is reserved",
            ),
            (
                "/phases/3/env",
                json!({"1X": "x"}),
                "phases[3].env.1X",
                "not a valid environment variable name",
            ),
            (
                "/phases/3/env",
                json!({"A-B": "x"}),
                "phases[3].env.A-B",
                "not a valid environment variable name",
            ),
            // args
            (
                "/args",
                json!({"type": "string"}),
                "args.type",
                "must have \"type\": \"object\"",
            ),
            (
                "/args",
                json!(true),
                "args",
                "expected a JSON Schema object",
            ),
            (
                "/args",
                json!({"type": "object", "properties": {"n": {"type": "integr"}}}),
                "args.properties.n.type",
                "not a valid JSON Schema",
            ),
            (
                "/args",
                json!({"type": "object", "required": "n"}),
                "args.required",
                "not a valid JSON Schema",
            ),
        ];
        for (pointer, value, path, fragment) in cases {
            let problems = problems_of(with(pointer, value.clone()));
            assert!(
                problems
                    .iter()
                    .any(|p| p.path == path && p.message.contains(fragment)),
                "{pointer} = {value}\nwanted {path}: {fragment}\nfound {problems:#?}"
            );
        }
    }

    #[test]
    fn args_that_may_be_undefined_are_refused_unless_guarded() {
        let args = json!({
            "type": "object",
            "properties": {
                "dir": { "type": "string" },
                "name": { "type": "string", "default": "x" },
                "must": { "type": "string" },
                "feature": { "type": "string" }
            },
            "required": ["must", "feature"]
        });
        let with_run = |run: &str| {
            let mut doc = base();
            doc["args"] = args.clone();
            doc["phases"][0]["run"] = json!(run);
            problems_of(doc)
        };
        let problems = with_run("rm -rf {{ args.dir }}/build");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "phases[0].run");
        assert!(
            problems[0]
                .message
                .contains("`args.dir` is optional without a default"),
            "{problems:?}"
        );
        let problems = with_run("echo {{ args.nmae }}");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .message
                .contains("`args.nmae` is not declared in the args schema"),
            "{problems:?}"
        );
        assert!(
            problems[0].message.contains("did you mean `name`?"),
            "{problems:?}"
        );
        for fine in [
            "echo {{ args.name }} {{ args.must }}",
            "{% if args.dir %}rm -rf {{ args.dir }}/build{% endif %}",
            "cd {{ args.dir | default('.') }}",
            "{{ args.dir if args.dir is defined else '.' }}",
            "{% if not args.dir %}none{% else %}{{ args.dir }}{% endif %}",
            "{{ args.dir or '.' }}",
        ] {
            assert_eq!(with_run(fine), Vec::new(), "{fine}");
        }
        // A condition tests: an optional arg there is fine.
        let mut doc = base();
        doc["args"] = args.clone();
        doc["phases"][0]["if"] = json!("args.dir");
        assert_eq!(problems_of(doc), Vec::new());
        // A schema that names no properties leaves every arg possible.
        let mut doc = base();
        doc["args"] = json!({ "type": "object" });
        doc["phases"][0]["run"] = json!("echo {{ args.anything }}");
        assert_eq!(problems_of(doc), Vec::new());
    }

    #[test]
    fn all_problems_are_reported_in_document_order() {
        let mut doc = with("/name", json!("Bad"));
        doc["phases"][0]["run"] = json!("{{");
        doc["phases"][3]["needs"] = json!(["approve", "lint", "nope"]);
        doc["phases"][4]["phases"][1]["env"] = json!({"WFE_X": "1"});
        let paths: Vec<String> = problems_of(doc).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "name",
                "phases[0].run",
                "phases[3].needs[2]",
                "phases[4].phases[1].env.WFE_X"
            ]
        );
    }

    #[test]
    fn loops_refuse_what_the_runner_cannot_run() {
        let fix = |extra: Value| {
            let mut l = json!({"id": "fix", "kind": "loop", "max_iters": 2, "until": "true",
                "phases": [{"id": "test", "kind": "gate"}]});
            for (k, v) in extra.as_object().unwrap() {
                l[k] = v.clone();
            }
            l
        };
        let innermost = json!({"id": "innermost", "kind": "loop", "max_iters": 2, "phases": [{"id": "x", "kind": "gate"}]});
        let inner = json!({"id": "inner", "kind": "loop", "max_iters": 2, "phases": [innermost]});
        let fallback = json!({"id": "inner", "kind": "loop", "max_iters": 2, "until": "true",
            "on_exhausted": {"next": "y"}, "phases": [{"id": "x", "kind": "gate"}, {"id": "y", "kind": "gate"}]});
        let cases = [
            (
                json!({"name": "t", "phases": [fix(json!({"phases": [inner]}))]}),
                vec![(
                    "phases[0].phases[0].phases[0].kind",
                    "a loop nested 3 deep cannot run: loops nest at most 2 deep",
                )],
            ),
            (
                json!({"name": "t", "phases": [fix(json!({"phases": [fallback]}))]}),
                vec![(
                    "phases[0].phases[0].on_exhausted.next",
                    "only a top-level loop hands over to a fallback phase",
                )],
            ),
            (
                json!({"name": "t", "phases": [fix(json!({"timeout": "1m", "retry": {"max_attempts": 2}}))]}),
                vec![
                    ("phases[0].retry", "a loop is not retried as a whole"),
                    ("phases[0].timeout", "a loop has no timeout of its own"),
                ],
            ),
            (
                json!({"name": "t", "phases": [fix(json!({"on_exhausted": {"next": "nope"}})), {"id": "replan", "kind": "gate"}]}),
                vec![(
                    "phases[0].on_exhausted.next",
                    "unknown phase `nope` in on_exhausted.next; expected a phase beside loop `fix`: `replan`",
                )],
            ),
            (
                json!({"name": "t", "phases": [fix(json!({"on_exhausted": {"next": "test"}}))]}),
                vec![(
                    "phases[0].on_exhausted.next",
                    "(`test` is inside this loop; the fallback runs after the loop ends)",
                )],
            ),
            (
                json!({"name": "t", "phases": [fix(json!({"on_exhausted": {"next": "fix"}}))]}),
                vec![(
                    "phases[0].on_exhausted.next",
                    "loop `fix` cannot hand over to itself",
                )],
            ),
            (
                json!({"name": "t", "phases": [{"id": "plan", "kind": "gate"}, fix(json!({"needs": ["plan"], "on_exhausted": {"next": "plan"}}))]}),
                vec![(
                    "phases[1].on_exhausted.next",
                    "`plan` runs before loop `fix` (the loop needs it), so it cannot start when the loop runs out",
                )],
            ),
            (
                json!({"name": "t", "phases": [{"id": "fix", "kind": "loop", "max_iters": 2, "phases": [{"id": "x", "kind": "gate"}], "on_exhausted": {"next": "replan"}}, {"id": "replan", "kind": "gate"}]}),
                vec![(
                    "phases[0].on_exhausted.next",
                    "a loop without `until` never runs out",
                )],
            ),
        ];
        for (doc, expected) in cases {
            let problems = problems_of(doc.clone());
            assert_eq!(problems.len(), expected.len(), "{doc}: {problems:#?}");
            for ((path, text), problem) in expected.iter().zip(&problems) {
                assert_eq!(problem.path, *path, "{problems:#?}");
                assert!(problem.message.contains(text), "{problems:#?}");
            }
        }
        // A fallback after the loop, gates and approvals inside it: fine.
        let ok = json!({"name": "t", "phases": [
            fix(json!({"on_exhausted": {"next": "replan"}, "phases": [
                {"id": "work", "kind": "script", "run": "true", "approval": "after"},
                {"id": "check", "kind": "gate", "needs": ["work"]}]})),
            {"id": "replan", "kind": "gate"},
            {"id": "after", "kind": "gate", "needs": ["replan"]}]});
        assert_eq!(problems_of(ok), vec![]);
        // A loop inside a loop, with a gate and `on_exhausted: continue`: fine.
        let nested = json!({"name": "t", "phases": [fix(json!({"phases": [
            {"id": "inner", "kind": "loop", "max_iters": 3, "until": "true", "on_exhausted": "continue",
             "phases": [{"id": "check", "kind": "gate"}]}]}))]});
        assert_eq!(problems_of(nested), vec![]);
    }

    #[test]
    fn a_cycle_is_reported_once() {
        let doc = json!({"name": "t", "phases": [
            {"id": "a", "kind": "gate", "needs": ["c"]},
            {"id": "b", "kind": "gate", "needs": ["a"]},
            {"id": "c", "kind": "gate", "needs": ["b"]}
        ]});
        let problems = problems_of(doc);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].path, "phases[0].needs");
        assert_eq!(
            problems[0].message,
            "needs form a cycle: a → c → b → a (each needs the next)"
        );
    }

    #[test]
    fn cycles_are_found_once_each() {
        type Graph = Vec<Vec<usize>>;
        let cases: Vec<(Graph, Graph)> = vec![
            (vec![vec![], vec![0], vec![1]], vec![]),
            (vec![vec![1], vec![0]], vec![vec![0, 1]]),
            (vec![vec![1], vec![2], vec![0]], vec![vec![0, 1, 2]]),
            (
                vec![vec![1], vec![0], vec![3], vec![2]],
                vec![vec![0, 1], vec![2, 3]],
            ),
            // a diamond is not a cycle
            (vec![vec![1, 2], vec![3], vec![3], vec![]], vec![]),
        ];
        for (edges, expected) in cases {
            assert_eq!(find_cycles(&edges), expected, "{edges:?}");
        }
        let long: Vec<Vec<usize>> = (0..100_000)
            .map(|i| if i == 0 { vec![99_999] } else { vec![i - 1] })
            .collect();
        assert_eq!(find_cycles(&long).len(), 1);
    }

    #[test]
    fn every_kind_field_is_checked() {
        let phase: Phase = serde_json::from_value(json!({
            "id": "x", "kind": "gate", "run": "r", "cwd": "c", "env": {"A": "b"}, "role": "r", "provider": "p",
            "model": "m", "prompt": "p", "system": "s", "tools": ["t"], "max_turns": 1, "max_tokens": 9, "max_invalid_submissions": 2, "review": {"role": "r"}, "budget": {"tokens": 1},
            "phases": [{"id": "y", "kind": "gate"}], "until": "u", "max_iters": 1, "on_exhausted": "fail",
            "outputs": {"o": "message"}, "matrix": {"a": [1]}, "fail_fast": true, "max_parallel": 1, "max_files_bytes": 5,
            "isolation": "worktree", "on_conflict": "gate"
        }))
        .unwrap();
        for (field, _) in KIND_FIELDS {
            assert!(is_set(&phase, field), "{field}");
        }
    }

    #[test]
    fn odd_templates_give_problems_not_panics() {
        let registry = Registry::new(std::path::Path::new("/nonexistent"));
        let mut deep = json!({ "id": "leaf", "kind": "gate" });
        for i in 0..40 {
            deep =
                json!({ "id": format!("l{i}"), "kind": "loop", "max_iters": 1, "phases": [deep] });
        }
        let docs = [
            json!({ "name": "t", "args": { "$ref": "https://example.com/remote.json" }, "phases": [{ "id": "a", "kind": "gate" }] }),
            json!({ "name": "t", "args": { "$ref": "#/nope" }, "phases": [{ "id": "a", "kind": "gate" }] }),
            json!({ "name": "t", "args": { "$schema": "https://example.com/meta" }, "phases": [{ "id": "a", "kind": "gate" }] }),
            json!({ "name": "t", "args": { "type": ["object", "null"] }, "phases": [{ "id": "a", "kind": "gate" }] }),
            json!({ "name": "t", "phases": [deep] }),
            json!({ "name": "t", "phases": [{ "id": "é", "kind": "gate", "needs": ["é", "é", ""] }] }),
            json!({ "name": "t", "phases": [{ "id": "a", "kind": "script", "run": "{{ artifacts }}{{ artifacts[0] }}{{ args }}", "outputs": { "": "" } }] }),
            json!({ "name": "t", "phases": [{ "id": "a", "kind": "script", "run": "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}" }] }),
            json!({ "name": "t", "phases": [{ "id": "a", "kind": "script", "run": "x", "outputs": { "o": "../../../../etc/passwd" } }] }),
        ];
        for doc in docs {
            let Ok(template) = template_from_value(doc.clone()) else {
                continue;
            };
            let _ = validate(&template, "t.json", &registry);
        }
        let yaml = [
            "a: &a [1, 2]\nb: *a\n",
            "? [1]\n: x\n",
            "1: 2\n",
            "!!binary aGk=",
            "- - - - -",
        ];
        for text in yaml {
            assert!(
                crate::template::parse_template(text, "t.yaml", true).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn name_rules() {
        for good in ["a", "0", "build-2", "a_b", "x-"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "A", "-a", "_a", "a b", "a.b", "a/b", "é"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        // The generated JSON Schema says the same with a pattern.
        let pattern = json!({ "pattern": crate::template::model::NAME_PATTERN });
        for name in [
            "a", "0", "build-2", "a_b", "x-", "", "A", "-a", "_a", "a b", "a.b", "a/b", "é", "a\n",
        ] {
            assert_eq!(
                jsonschema::is_valid(&pattern, &json!(name)),
                is_valid_name(name),
                "{name:?}"
            );
        }
        for good in ["A", "_", "a1", "PATH"] {
            assert!(is_shell_name(good), "{good}");
        }
        for bad in ["", "1a", "a-b", "a b"] {
            assert!(!is_shell_name(bad), "{bad}");
        }
    }
}
