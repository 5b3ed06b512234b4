//! The JavaScript side, checked by JavaScript tools: `eventum.js` under Node's test runner
//! against the fixture server through both adapters, the chat's AsyncAPI document through
//! the official AsyncAPI parser, and the chat's generated TypeScript typings through
//! `tsc --strict` with a correct sample and one that must fail.
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
    // 4 adapter-free tests + 7 per adapter: a test that silently vanished fails here.
    assert_eq!(summary(&stdout, "pass"), Some(18), "{}", output_text(&output));
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

fn tsc(dir: &TempDir, sample: &str) -> std::process::Output {
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
        .arg(sample)
        .current_dir(&dir.0))
}

#[test]
fn generated_typescript_compiles_strict_and_rejects_misuse() {
    js::ensure_node_modules();
    let dir = TempDir::new("tsc");
    let samples = js::js_dir().join("types");
    fs::write(dir.0.join("eventum.d.ts"), eventum_core::app::client::TYPES).unwrap();
    fs::write(dir.0.join("chat-events.d.ts"), eventum_demo::chat_app().typescript()).unwrap();
    for sample in ["sample_ok.ts", "sample_bad.ts"] {
        fs::copy(samples.join(sample), dir.0.join(sample)).unwrap();
    }

    let ok = tsc(&dir, "sample_ok.ts");
    assert!(
        ok.status.success(),
        "the correct sample does not compile:\n{}",
        output_text(&ok)
    );

    let bad = tsc(&dir, "sample_bad.ts");
    assert!(
        !bad.status.success(),
        "the wrong sample compiled:\n{}",
        output_text(&bad)
    );
    let source = fs::read_to_string(dir.0.join("sample_bad.ts")).unwrap();
    let expected: BTreeSet<usize> = source
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains("// must-fail"))
        .map(|(i, _)| i + 1)
        .collect();
    let stdout = String::from_utf8_lossy(&bad.stdout);
    let reported: BTreeSet<usize> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("sample_bad.ts("))
        .filter_map(|rest| rest.split(',').next()?.parse().ok())
        .collect();
    assert_eq!(expected.len(), 7);
    assert_eq!(
        reported, expected,
        "type errors on other lines than expected:\n{stdout}"
    );
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with("eventum.d.ts") || l.starts_with("chat-events.d.ts")),
        "the declarations themselves have errors:\n{stdout}"
    );
}
