// Validates an AsyncAPI document with the official parser (@asyncapi/parser), which checks it
// against the AsyncAPI 3.0 JSON Schema and the spec's own rules (references, operations
// on channels, messages of those channels, ...).
//   node validate-asyncapi.mjs FILE   -> exit 0 when valid (warnings are printed), 1 when not
import { Parser } from "@asyncapi/parser";
import { readFile } from "node:fs/promises";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate-asyncapi.mjs FILE");
  process.exit(2);
}
const parser = new Parser();
const { document, diagnostics } = await parser.parse(await readFile(file, "utf8"));
const severity = ["error", "warning", "info", "hint"];
for (const d of diagnostics) {
  console.log(`${severity[d.severity] || d.severity} ${d.code} at ${d.path.join(".")}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === 0);
if (!document || errors.length > 0) {
  console.error(`INVALID: ${errors.length} error(s)`);
  process.exit(1);
}
console.log(
  `VALID asyncapi ${document.version()}: ${document.channels().length} channel(s), ` +
    `${document.operations().length} operation(s), ${document.messages().length} message(s)`
);
