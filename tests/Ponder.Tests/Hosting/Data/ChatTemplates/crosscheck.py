"""Renders the same cases as generate.mjs with Python's Jinja2 configured as transformers' apply_chat_template
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, raise_exception, tojson without ASCII escaping) and
reports every case where it differs from golden.json (written by @huggingface/jinja). Run: python3 crosscheck.py"""
import json, os, sys
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.exceptions import TemplateError

here = os.path.dirname(os.path.abspath(__file__))
golden = json.load(open(os.path.join(here, "golden.json"), encoding="utf-8"))
conversations = {c["name"]: c["messages"] for c in json.load(open(os.path.join(here, "conversations.json"), encoding="utf-8"))}

def raise_exception(message):
    raise TemplateError(message)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.filters["tojson"] = lambda x, indent=None, separators=None, sort_keys=False: json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)
env.globals["raise_exception"] = raise_exception
compiled = {}
differences = 0
for case in golden["cases"]:
    name = case["template"]
    config = json.load(open(os.path.join(here, name, "tokenizer_config.json"), encoding="utf-8"))
    template = compiled.setdefault(name, env.from_string(config["chat_template"]))
    context = dict(messages=conversations[case["conversation"]], add_generation_prompt=case["add_generation_prompt"], **case["variables"])
    for token in ("bos_token", "eos_token"):
        if config.get(token) is not None:
            context[token] = config[token]
    try:
        out, err = template.render(**context), None
    except TemplateError as e:
        out, err = None, str(e)
    if out != case.get("output") or (err is None) != ("error" not in case):
        differences += 1
        print(f"DIFFERS {name} / {case['conversation']} / add_generation_prompt={case['add_generation_prompt']}: jinja2 {out!r} {err!r} vs golden {case.get('output')!r} {case.get('error')!r}")
print(f"{len(golden['cases'])} cases, {differences} differ from Python Jinja2")
sys.exit(1 if differences else 0)
