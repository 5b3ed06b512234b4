//! The JavaScript side, checked by JavaScript tools: `eventum.js` under Node's test runner
//! against the fixture server through both adapters, the chat's AsyncAPI document through
//! the official AsyncAPI parser, and the chat's generated TypeScript typings through
//! `tsc --strict` with a correct sample and one that must fail; the same for the schema
//! fixture app (recursive types, a flattened map, event names that sanitize alike); and the
//! chat page's script (`// @ts-check`) against the typings the chat generates.
//!
//! Node and the npm packages (pinned in `eventum-e2e/js/package-lock.json`) are required:
//! missing packages are installed with `npm ci`; a missing `node` or `npm` fails loudly.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use eventum_e2e::js::{self, node, output_text, run};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("eventum-js-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The number after `# NAME ` in node --test's summary.
fn summary(stdout: &str, name: &str) -> Option<usize> {
    let prefix = format!("# {name} ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

#[test]
fn eventum_js_in_node_against_both_adapters() {
    let output = run(node()
        .args(js::node_websocket_flags())
        .arg("--test")
        .arg("--test-reporter=tap")
        .arg(js::js_dir().join("client.test.mjs"))
        .env("EVENTUM_FIXTURE", env!("CARGO_BIN_EXE_client_fixture"))
        .env("EVENTUM_CLIENT", js::client_dir().join("eventum.js")));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "node --test failed:\n{}", output_text(&output));
    assert_eq!(summary(&stdout, "fail"), Some(0), "{}", output_text(&output));
    assert_eq!(summary(&stdout, "skipped"), Some(0), "{}", output_text(&output));
    // 7 adapter-free tests + 8 per adapter: a test that silently vanished fails here.
    assert_eq!(summary(&stdout, "pass"), Some(23), "{}", output_text(&output));
}

fn validate_asyncapi(dir: &TempDir, name: &str, document: &serde_json::Value) -> std::process::Output {
    let file = dir.0.join(name);
    fs::write(&file, serde_json::to_string_pretty(document).unwrap()).unwrap();
    run(node()
        .arg(js::js_dir().join("validate-asyncapi.mjs"))
        .arg(&file)
        .current_dir(js::js_dir()))
}

#[test]
fn asyncapi_documents_pass_the_official_parser() {
    js::ensure_node_modules();
    let dir = TempDir::new("asyncapi");

    let chat = eventum_demo::chat_app().asyncapi();
    let output = validate_asyncapi(&dir, "chat.json", &chat);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "chat document invalid:\n{}",
        output_text(&output)
    );
    // 4 client operations (join, message, leave, rooms) + 5 server ones (joined, message,
    // left, error, validation_error); the rooms reply is a tenth message.
    assert!(
        stdout.contains("VALID asyncapi 3.0.0: 1 channel(s), 9 operation(s), 10 message(s)"),
        "{}",
        output_text(&output)
    );

    // Recursive types, a flattened map, `chat:join` beside `chat_join`: every `$ref`
    // resolves in the document (the parser checks), and no message replaces another.
    let fixture = js::schema_fixture_app().asyncapi();
    let output = validate_asyncapi(&dir, "schema-fixture.json", &fixture);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schema fixture document invalid:\n{}",
        output_text(&output)
    );
    // 5 client operations + 5 server ones (4 + validation_error); the mirror reply is an
    // eleventh message.
    assert!(
        stdout.contains("VALID asyncapi 3.0.0: 1 channel(s), 10 operation(s), 11 message(s)"),
        "{}",
        output_text(&output)
    );
    assert!(fixture["components"]["schemas"]["RoomTree"].is_object(), "{fixture:#}");
    assert!(!fixture.to_string().contains("#/definitions/"), "{fixture:#}");
    let messages = &fixture["components"]["messages"];
    assert_eq!(messages["client.chat_join"]["name"], "chat:join");
    assert_eq!(messages["client.chat_join_2"]["name"], "chat_join");
    assert_eq!(messages["server.chat_joined"]["name"], "chat:joined");
    assert_eq!(messages["server.chat_joined_2"]["name"], "chat_joined");

    // An app with untyped handlers only, and the schema-less forms.
    let fixture = js::client_fixture_app().asyncapi();
    let output = validate_asyncapi(&dir, "fixture.json", &fixture);
    assert!(
        output.status.success(),
        "fixture document invalid:\n{}",
        output_text(&output)
    );

    // The validator can fail: a reply that names a message of no channel.
    let mut broken = chat.clone();
    broken["operations"]["receive.rooms"]["reply"]["messages"][0]["$ref"] =
        serde_json::json!("#/channels/events/messages/nope");
    let output = validate_asyncapi(&dir, "broken.json", &broken);
    assert!(
        !output.status.success(),
        "a broken document passed:\n{}",
        output_text(&output)
    );
    let mut no_info = chat;
    no_info.as_object_mut().unwrap().remove("info");
    let output = validate_asyncapi(&dir, "no-info.json", &no_info);
    assert!(
        !output.status.success(),
        "a document without info passed:\n{}",
        output_text(&output)
    );
}

fn tsc(dir: &TempDir, sample: &str, extra: &[&str]) -> std::process::Output {
    run(node()
        .arg(js::js_dir().join("node_modules/typescript/bin/tsc"))
        .args([
            "--strict",
            "--noEmit",
            "--pretty",
            "false",
            "--target",
            "es2022",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            "--lib",
            "es2022,dom",
        ])
        .args(extra)
        .arg(sample)
        .current_dir(&dir.0))
}

/// The numbers of the lines of `file` with a type error, from tsc's output.
fn error_lines(stdout: &str, file: &str) -> BTreeSet<usize> {
    let prefix = format!("{file}(");
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| rest.split(',').next()?.parse().ok())
        .collect()
}

/// `ok` compiles; `bad` has type errors on exactly its `// must-fail` lines (`count` of
/// them) and none in the declarations.
fn check_samples(dir: &TempDir, ok: &str, bad: &str, count: usize) {
    let output = tsc(dir, ok, &[]);
    assert!(
        output.status.success(),
        "{ok} does not compile:\n{}",
        output_text(&output)
    );
    let output = tsc(dir, bad, &[]);
    assert!(!output.status.success(), "{bad} compiled:\n{}", output_text(&output));
    let source = fs::read_to_string(dir.0.join(bad)).unwrap();
    let expected: BTreeSet<usize> = source
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains("// must-fail"))
        .map(|(i, _)| i + 1)
        .collect();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(expected.len(), count, "{bad}");
    assert_eq!(
        error_lines(&stdout, bad),
        expected,
        "{bad}: type errors on other lines than expected:\n{stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l.contains(".d.ts(")),
        "the declarations themselves have errors:\n{stdout}"
    );
}

#[test]
fn generated_typescript_compiles_strict_and_rejects_misuse() {
    js::ensure_node_modules();
    let dir = TempDir::new("tsc");
    let samples = js::js_dir().join("types");
    fs::write(dir.0.join("eventum.d.ts"), eventum_core::app::client::TYPES).unwrap();
    fs::write(dir.0.join("events.d.ts"), eventum_demo::chat_app().typescript()).unwrap();
    fs::write(dir.0.join("schema-events.d.ts"), js::schema_fixture_app().typescript()).unwrap();
    for sample in [
        "sample_ok.ts",
        "sample_bad.ts",
        "sample_schema_ok.ts",
        "sample_schema_bad.ts",
    ] {
        fs::copy(samples.join(sample), dir.0.join(sample)).unwrap();
    }
    check_samples(&dir, "sample_ok.ts", "sample_bad.ts", 7);
    check_samples(&dir, "sample_schema_ok.ts", "sample_schema_bad.ts", 7);
}

#[test]
fn chat_page_script_type_checks_against_the_typings_the_chat_serves() {
    js::ensure_node_modules();
    let dir = TempDir::new("chat-js");
    fs::write(dir.0.join("eventum.d.ts"), eventum_core::app::client::TYPES).unwrap();
    fs::write(dir.0.join("events.d.ts"), eventum_demo::chat_app().typescript()).unwrap();
    let script = eventum_demo::CHAT_SCRIPT;
    assert!(script.starts_with("// @ts-check\n"));
    fs::write(dir.0.join("chat.js"), script).unwrap();
    let check_js = ["--allowJs", "--checkJs"];
    let output = tsc(&dir, "chat.js", &check_js);
    assert!(
        output.status.success(),
        "the chat page's script does not type-check:\n{}",
        output_text(&output)
    );
    // The typings do apply: a field the `joined` event does not have is an error.
    let wrong = script.replace("ev.name + \" joined \"", "ev.nickname + \" joined \"");
    assert_ne!(wrong, script);
    fs::write(dir.0.join("chat_wrong.js"), wrong).unwrap();
    let output = tsc(&dir, "chat_wrong.js", &check_js);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{}", output_text(&output));
    assert!(stdout.contains("nickname"), "{stdout}");
}
