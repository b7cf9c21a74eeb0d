//! Secrets never reach git: provider keys are kept out of script phases
//! and the agent's `bash` tool, and declared secrets are masked in
//! everything wfe commits, indexes or prints.

use std::path::Path;

use crate::common;

use common::Repo;
use serde_json::{Value, json};
use wfe::testing::llm::{FakeServer as Server, Part, Reply};

/// A fake provider key in wfe's environment.
const KEY: &str = "sk-ant-KEYLEAK-1b2c3d4e5f60718293";
/// A deploy token the config and a phase declare secret.
const TOKEN: &str = "dtok-TOKLEAK-99aa88bb77cc66dd";

/// A password passed as an arg the args schema declares secret.
const PASSWORD: &str = "pw-PASSLEAK-31415926";

/// Every spelling of a secret a search could find: the values and
/// their distinctive, lowercased middle parts (what a tokenizer keeps).
const NEEDLES: &[&str] = &[
    KEY, TOKEN, PASSWORD, "KEYLEAK", "TOKLEAK", "PASSLEAK", "keyleak", "tokleak", "passleak",
];

fn repo_with(url: &str) -> Repo {
    let repo = Repo::new();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "secrets": ["DEPLOY_TOKEN"],
            "providers": { "claude": { "kind": "anthropic", "base_url": url } },
            "roles": { "primary": { "provider": "claude", "model": "claude-test" } }
        }))
        .unwrap(),
    );
    repo.template(
        "leaky",
        &json!({
            "name": "leaky",
            "args": {
                "type": "object",
                "properties": {
                    "password": { "type": "string", "secret": true },
                    "target": { "type": "string" }
                },
                "required": ["password", "target"]
            },
            "phases": [
                {
                    "id": "dump", "kind": "script", "secrets": ["DEPLOY_TOKEN"],
                    "run": "env; printenv; printenv ANTHROPIC_API_KEY || echo no-key-here; echo \"token is $DEPLOY_TOKEN\"; echo \"token to stderr $DEPLOY_TOKEN\" >&2; printf '{\"text\": \"deploying with %s\"}' \"$DEPLOY_TOKEN\" > \"$WFE_OUT/note.json\"; test \"$WFE_ARG_PASSWORD\" = '{{ args.password }}' && case \"$WFE_ARG_PASSWORD\" in pw-*) echo password-rendered;; esac; echo 'pw {{ args.password }} to {{ args.target }}'",
                    "outputs": { "note": "message" }
                },
                {
                    "id": "keeper", "kind": "script", "pass_env": ["ANTHROPIC_API_KEY"],
                    "run": "test -n \"$ANTHROPIC_API_KEY\" && echo key-kept; echo \"$ANTHROPIC_API_KEY\""
                },
                {
                    "id": "plan", "kind": "agent", "role": "primary", "needs": ["dump"],
                    "prompt": "Look at the environment, then submit a plan.",
                    "tools": ["bash"],
                    "outputs": { "plan": "message" }
                },
                {
                    "id": "fail", "kind": "script", "needs": ["plan"],
                    "run": "echo \"failing with $DEPLOY_TOKEN\" >&2; echo 'retried with {{ args.password }}' >&2; exit 3"
                }
            ]
        }),
    );
    repo
}

fn assert_clean(what: &str, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    for needle in NEEDLES {
        assert!(
            !text.contains(needle),
            "{what} holds `{needle}`:\n{}",
            &text[..text.len().min(4000)]
        );
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn show(repo: &Repo, run: &str, path: &str) -> String {
    repo.git(&["show", &format!("refs/wfe/runs/{run}:{path}")])
}

#[test]
fn keys_stay_out_of_phases_and_secrets_out_of_git_the_index_and_output() {
    let server = Server::spawn(vec![
        Reply::anthropic(vec![
            Part::Text("Let me look around.".into()),
            Part::Tool(
                "bash",
                json!({ "command": "env; printenv; printenv ANTHROPIC_API_KEY || echo agent-has-no-key; echo \"agent sees $DEPLOY_TOKEN\"; echo \"token=$DEPLOY_TOKEN\" > deploy.env" }),
            ),
        ]),
        Reply::anthropic(vec![Part::Tool(
            "submit_plan",
            json!({ "text": format!("the token is {TOKEN}") }),
        )]),
    ]);
    let repo = repo_with(server.url());
    let run = |args: &[&str]| {
        let out = repo
            .wfe_cmd()
            .env("ANTHROPIC_API_KEY", KEY)
            .env("DEPLOY_TOKEN", TOKEN)
            .args(args)
            .output()
            .unwrap();
        common::Run::from(out)
    };
    // `fail` fails (exit 1): its error message names the token.
    let target = format!("--arg=target=prod via {TOKEN}");
    let password = format!("--arg=password={PASSWORD}");
    let ran = run(&["run", "leaky", "--jobs", "1", &password, &target]);
    ran.code(1);
    let id = repo.run_id();

    // The args are committed masked: the declared secret whole, the one
    // holding the token around it; phases were rendered with the values.
    let record: Value = serde_json::from_str(&show(&repo, &id, "run.json")).unwrap();
    assert_eq!(
        record["args"],
        json!({ "password": "***", "target": "prod via ***" })
    );
    assert_eq!(record["secret_args"], json!(["password", "target"]));

    // The script phase saw no key, and said so; the token it printed is masked.
    let dump = show(&repo, &id, "phases/dump/log.jsonl");
    assert!(dump.contains("no-key-here"), "{dump}");
    assert!(dump.contains("token is ***"), "{dump}");
    assert!(dump.contains("token to stderr ***"), "{dump}");
    assert!(dump.contains("password-rendered"), "{dump}");
    assert!(dump.contains("pw *** to prod via ***"), "{dump}");
    assert!(!dump.contains("ANTHROPIC_API_KEY="), "{dump}");
    // Its artifact held the token: stored masked, and marked.
    let note: Value =
        serde_json::from_str(&show(&repo, &id, "phases/dump/artifacts/note.json")).unwrap();
    assert_eq!(note, json!({ "text": "deploying with ***" }));
    let state: Value = serde_json::from_str(&show(&repo, &id, "phases/dump/state.json")).unwrap();
    assert_eq!(state["masked"], json!(["note"]));

    // A phase that asks for the key by name gets it (and prints it masked).
    let keeper = show(&repo, &id, "phases/keeper/log.jsonl");
    assert!(keeper.contains("key-kept"), "{keeper}");
    assert!(keeper.contains("\"***\""), "{keeper}");

    // The agent's bash saw no key; the token it printed never reached the
    // model nor the record.
    let calls = show(&repo, &id, "phases/plan/tool-calls.jsonl");
    assert!(calls.contains("agent-has-no-key"), "{calls}");
    assert!(calls.contains("agent sees ***"), "{calls}");
    for request in server.requests() {
        assert_clean(
            "a request to the model",
            request.body.to_string().as_bytes(),
        );
    }
    let plan: Value =
        serde_json::from_str(&show(&repo, &id, "phases/plan/artifacts/plan.json")).unwrap();
    assert_eq!(plan, json!({ "text": "the token is ***" }));

    // The file the agent wrote is in the phase's workspace snapshot, masked.
    let snapshot = show(&repo, &id, "workspace/deploy.env");
    assert_eq!(snapshot, "token=***\n");

    // The failure's message is masked too.
    let fail = show(&repo, &id, "phases/fail/log.jsonl");
    assert!(fail.contains("failing with ***"), "{fail}");

    // A retry renders the secret args again, from this clone's own copy.
    let retried = run(&["retry", &id, "fail"]);
    retried.code(1);
    let fail = show(&repo, &id, "phases/fail/log.jsonl");
    assert!(fail.contains("retried with ***"), "{fail}");

    // The search index is built from what was committed.
    let searched = run(&["search", "x"]);
    let leak = run(&["search", "TOKLEAK"]);
    let pass_leak = run(&["search", "PASSLEAK"]);
    let status = run(&["status", &id]);
    let shown = run(&["show", &id, "dump"]);
    let log = run(&["log", &id]);

    // Nothing in any git object, the index, or anything wfe printed.
    let objects = repo.git_output(&["cat-file", "--batch-all-objects", "--batch"]);
    assert!(objects.status.success());
    assert_clean("a git object", &objects.stdout);
    let git_dir = repo.git(&["rev-parse", "--absolute-git-dir"]);
    let index = Path::new(git_dir.trim()).join("wfe/index");
    let index_files = files(&index);
    assert!(!index_files.is_empty(), "no index at {}", index.display());
    for file in index_files {
        assert_clean(&file.display().to_string(), &std::fs::read(&file).unwrap());
    }
    assert!(
        !leak.stdout.contains(&id),
        "search found the token: {}",
        leak.stdout
    );
    assert!(
        !pass_leak.stdout.contains(&id),
        "search found the secret arg: {}",
        pass_leak.stdout
    );
    for out in [
        &ran, &retried, &searched, &leak, &pass_leak, &status, &shown, &log,
    ] {
        assert_clean("stdout", out.stdout.as_bytes());
        assert_clean("stderr", out.stderr.as_bytes());
    }
}

#[test]
fn a_secret_arg_must_be_a_string_and_is_needed_to_go_on() {
    let repo = Repo::new();
    repo.template(
        "creds",
        &json!({
            "name": "creds",
            "args": { "type": "object", "properties": {
                "pin": { "secret": true },
                "password": { "type": "string", "secret": true }
            }, "required": ["password"] },
            "phases": [
                { "id": "a", "kind": "script", "run": "echo 'using {{ args.password }}'" },
                { "id": "b", "kind": "script", "needs": ["a"], "run": "exit 1" }
            ]
        }),
    );
    // Not a string: exit 2, nothing written.
    let out = repo.wfe(&["run", "creds", "--arg", "pin=1234", "--arg", "password=x"]);
    out.code(1);
    let id = repo.run_id();
    let log = show(&repo, &id, "phases/a/log.jsonl");
    // `x` is shorter than 8 characters: masked where it is a whole string
    // (run.json), not inside the line.
    assert!(log.contains("using x"), "{log}");
    let record: Value = serde_json::from_str(&show(&repo, &id, "run.json")).unwrap();
    assert_eq!(record["args"], json!({ "pin": "***", "password": "***" }));

    let refs = repo.wfe_refs();
    let bad = repo
        .wfe_cmd()
        .args(["run", "creds", "--args-file", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(br#"{"pin": 1234, "password": "p"}"#)?;
            child.wait_with_output()
        })
        .unwrap();
    let bad = common::Run::from(bad);
    bad.code(2);
    assert!(
        bad.stderr.contains("arg `pin` is declared secret"),
        "{}",
        bad.stderr
    );
    assert_eq!(repo.wfe_refs(), refs, "nothing written");

    // Without this clone's copy of the values, the run cannot go on.
    let git_dir = repo.git(&["rev-parse", "--absolute-git-dir"]);
    let kept = Path::new(git_dir.trim()).join(format!("wfe/secrets/{id}.json"));
    assert!(kept.exists());
    std::fs::remove_file(&kept).unwrap();
    let retry = repo.wfe(&["retry", &id, "b"]);
    retry.code(2);
    assert!(
        retry.stderr.contains("secret args (password, pin)"),
        "{}",
        retry.stderr
    );

    // `rm --purge` deletes a run's kept secret args with it.
    repo.wfe(&["run", "creds", "--arg", "pin=1234", "--arg", "password=x"])
        .code(1);
    let second = repo
        .wfe_refs()
        .into_iter()
        .map(|r| r.trim_start_matches("refs/wfe/runs/").to_string())
        .find(|r| *r != id)
        .unwrap();
    let kept = Path::new(git_dir.trim()).join(format!("wfe/secrets/{second}.json"));
    assert!(kept.exists());
    repo.wfe(&["rm", "--purge", &second]).code(0);
    assert!(!kept.exists());
}

/// An executable script at `name` in the repository that runs `body`.
fn executable(repo: &Repo, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = repo.write(name, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[test]
fn approve_edit_and_comment_mask_declared_secrets_before_committing() {
    let repo = Repo::new();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string(&json!({ "secrets": ["DEPLOY_TOKEN"] })).unwrap(),
    );
    repo.template(
        "gated",
        &json!({ "name": "gated", "phases": [
            { "id": "build", "kind": "script",
              "run": "printf '{\"text\": \"built\"}' > \"$WFE_OUT/note.json\"",
              "outputs": { "note": "message" } },
            { "id": "ok", "kind": "gate", "needs": ["build"], "outputs": { "note": "message" } },
        ]}),
    );
    let wfe = |args: &[&str], editor: Option<&str>| {
        let mut cmd = repo.wfe_cmd();
        cmd.env("DEPLOY_TOKEN", TOKEN).args(args);
        if let Some(editor) = editor {
            cmd.env("EDITOR", editor).env_remove("VISUAL");
        }
        common::Run::from(cmd.output().unwrap())
    };
    wfe(&["run", "gated"], None).code(3);
    let id = repo.run_id();
    let outside = tempfile::TempDir::new().unwrap();
    let approval = outside.path().join("note.json");
    std::fs::write(
        &approval,
        json!({ "text": format!("ship with {TOKEN}") }).to_string(),
    )
    .unwrap();
    let approved = wfe(
        &[
            "approve",
            &id,
            "ok",
            "--artifact",
            &approval.display().to_string(),
        ],
        None,
    );
    approved.code(0);
    let editor = executable(
        &repo,
        "editor.sh",
        &format!("printf '{{\"text\": \"edited with {TOKEN}\"}}' > \"$1\""),
    );
    let edited = wfe(&["edit", &id, "build", "note"], Some(&editor));
    edited.code(0);
    let commented = wfe(
        &["comment", &id, "build", &format!("the token is {TOKEN}")],
        None,
    );
    commented.code(0);

    let approved_note: Value =
        serde_json::from_str(&show(&repo, &id, "phases/ok/artifacts/note.json")).unwrap();
    assert_eq!(approved_note, json!({ "text": "ship with ***" }));
    let edited_note: Value =
        serde_json::from_str(&show(&repo, &id, "phases/build/artifacts/note.json")).unwrap();
    assert_eq!(edited_note, json!({ "text": "edited with ***" }));
    let comments = show(&repo, &id, "comments.jsonl");
    assert!(comments.contains("the token is ***"), "{comments}");
    let searched = wfe(&["search", "token"], None);
    searched.code(0);
    assert!(searched.stdout.contains(&id), "{}", searched.stdout);
    let git_dir = repo.git(&["rev-parse", "--absolute-git-dir"]);
    for file in files(&Path::new(git_dir.trim()).join("wfe/index")) {
        assert_clean(&file.display().to_string(), &std::fs::read(&file).unwrap());
    }
    let objects = repo.git_output(&["cat-file", "--batch-all-objects", "--batch"]);
    assert_clean("a git object", &objects.stdout);
    for out in [&approved, &edited, &commented, &searched] {
        assert_clean("stdout", out.stdout.as_bytes());
        assert_clean("stderr", out.stderr.as_bytes());
    }
}
