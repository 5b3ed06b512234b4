//! Writes the chat app's AsyncAPI document and TypeScript typings, generated from its Rust
//! types, and the client's own declarations beside them:
//!
//! `cargo run -p eventum-demo --example export_chat_schema [DIR]` writes
//! `DIR/asyncapi.json`, `DIR/events.d.ts` and `DIR/eventum.d.ts`. Without `DIR` it writes
//! to `eventum-chat-schema` in the system's temp directory (never into the source tree);
//! it prints each path it wrote. The running chat serves the same files at
//! `/asyncapi.json`, `/events.d.ts` and `/eventum.d.ts`.
//!
//! The same two calls, `App::asyncapi()` and `App::typescript()`, export any app.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("eventum-chat-schema"));
    std::fs::create_dir_all(&dir)?;
    let app = eventum_demo::chat_app();
    let document = serde_json::to_string_pretty(&app.asyncapi()).map_err(std::io::Error::other)?;
    let files = [
        ("asyncapi.json", document + "\n"),
        ("events.d.ts", app.typescript()),
        ("eventum.d.ts", eventum_core::app::client::TYPES.to_owned()),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
