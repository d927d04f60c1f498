// Renders every template folder here (<name>/tokenizer_config.json) over every conversation of
// conversations.json, with add_generation_prompt true and false (and Qwen3's enable_thinking=false),
// using @huggingface/jinja (transformers.js's Jinja), and writes golden.json.
//   cd tests/Ponder.Tests/Hosting/Data/ChatTemplates && npm install && node generate.mjs
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Template } from "@huggingface/jinja";

const here = path.dirname(fileURLToPath(import.meta.url));
const conversations = JSON.parse(fs.readFileSync(path.join(here, "conversations.json"), "utf8"));
const templates = fs.readdirSync(here, { withFileTypes: true }).filter((d) => d.isDirectory() && d.name !== "node_modules").map((d) => d.name).sort();
const version = JSON.parse(fs.readFileSync(path.join(here, "node_modules/@huggingface/jinja/package.json"), "utf8")).version;

const cases = [];
for (const name of templates) {
  const config = JSON.parse(fs.readFileSync(path.join(here, name, "tokenizer_config.json"), "utf8"));
  const template = new Template(config.chat_template);
  const variantsOf = (c) => (c.chat_template.includes("enable_thinking") ? [{}, { enable_thinking: false }] : [{}]);
  for (const conversation of conversations) {
    for (const add_generation_prompt of [true, false]) {
      for (const variables of variantsOf(config)) {
        const context = { messages: conversation.messages, add_generation_prompt, ...variables };
        if (config.bos_token != null) context.bos_token = config.bos_token;
        if (config.eos_token != null) context.eos_token = config.eos_token;
        const entry = { template: name, conversation: conversation.name, add_generation_prompt, variables };
        try {
          entry.output = template.render(context);
        } catch (e) {
          entry.error = String(e.message);
        }
        cases.push(entry);
      }
    }
  }
}
fs.writeFileSync(path.join(here, "golden.json"), JSON.stringify({ generator: `@huggingface/jinja ${version}`, cases }, null, 1) + "\n");
console.log(`${cases.length} cases, ${cases.filter((c) => c.error).length} errors`);
