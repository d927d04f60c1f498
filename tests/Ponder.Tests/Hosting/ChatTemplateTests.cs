using Ponder.Hosting;

namespace Ponder.Tests.Hosting;

/// <summary>Chat templates of real model families, rendered by the Jinja subset, against hand-written expected prompts.</summary>
public sealed class ChatTemplateTests
{
    static readonly ChatTurn[] Conversation = [new("system", "Be brief."), new("user", " What is 2+3? "), new("assistant", "5"), new("user", "And 2*3?")];

    // Meta-Llama-3-8B-Instruct's tokenizer_config.json chat_template (as stored: \n escapes inside Jinja strings).
    const string Llama3 = @"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    // Qwen2-7B-Instruct's chat_template.
    const string Qwen2 = @"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    [Fact]
    public void Llama3TemplateRendersHeadersTrimmedContentAndBos()
    {
        var t = ChatTemplate.Parse(Llama3, bosToken: "<|begin_of_text|>");
        string expected =
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+3?<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n5<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nAnd 2*3?<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n";
        Assert.Equal(expected, t.Render(Conversation));
        Assert.Contains("<|eot_id|>", t.StopStrings);
        Assert.False(t.IsChatMl);
    }

    [Fact]
    public void Qwen2TemplateAddsTheDefaultSystemPromptOnlyWhenMissing()
    {
        var t = ChatTemplate.Parse(Qwen2);
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            t.Render([new("user", "hi")]));
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n",
            t.Render([new("system", "Be brief."), new("user", "hi")], addGenerationPrompt: false));
    }

    [Fact]
    public void ChatMlFallbackMatchesQwen2WithASystemMessage()
    {
        var qwen = ChatTemplate.Parse(Qwen2);
        ChatTurn[] turns = [new("system", "S"), new("user", "U"), new("assistant", "A"), new("user", "V")];
        Assert.Equal(qwen.Render(turns), ChatTemplate.ChatMl.Render(turns));
        Assert.Contains("<|im_end|>", ChatTemplate.ChatMl.StopStrings);
    }

    [Fact]
    public void MultiLineTemplateFollowsTrimBlocksAndLstripBlocks()
    {
        const string source = "{% for message in messages %}\n  {% if message.role == 'user' %}\n[INST] {{ message.content }} [/INST]\n  {% else %}\n{{ message.content }}{{ eos_token }}\n  {% endif %}\n{% endfor %}";
        var t = ChatTemplate.Parse(source, eosToken: "</s>");
        Assert.Equal("[INST] hi [/INST]\nhello</s>\n", t.Render([new("user", "hi"), new("assistant", "hello")]));
    }

    [Fact]
    public void ExpressionsSlicesTestsFiltersAndWhitespaceControl()
    {
        const string source = "{%- if messages[0].role == 'system' -%}{%- set sys = messages[0].content -%}{%- set rest = messages[1:] -%}{%- else -%}{%- set rest = messages -%}{%- endif -%}" +
                              "{{ sys if sys is defined else 'none' }}|{{ rest | length }}|{% for m in rest %}{{ loop.index }}:{{ m.content | upper }}{% if not loop.last %},{% endif %}{% endfor %}" +
                              "|{{ 'x' ~ 3 }}|{{ 'b' in 'abc' }}|{{ 7 // 2 }}|{{ none is none }}";
        var t = ChatTemplate.Parse(source);
        Assert.Equal("S|2|1:A,2:B|x3|True|3|True", t.Render([new("system", "S"), new("user", "a"), new("assistant", "b")], false));
        Assert.Equal("none|1|1:A|x3|True|3|True", t.Render([new("user", "a")], false));
    }

    [Fact]
    public void RaiseExceptionBecomesAnArgumentExceptionWithTheTemplatesMessage()
    {
        var t = ChatTemplate.Parse("{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{{ m.content }}{% endfor %}");
        Assert.Equal("ab", t.Render([new("user", "a"), new("assistant", "b")]));
        var e = Assert.Throws<ArgumentException>(() => t.Render([new("user", "a"), new("user", "b")]));
        Assert.Contains("roles must alternate", e.Message);
    }

    [Fact]
    public void ModelFolderWithoutAUsableTemplateFailsUnlessTheHostOptsIntoChatMlWhichIsLogged()
    {
        string dir = Directory.CreateTempSubdirectory("ponder-template-").FullName;
        try
        {
            var missing = Assert.Throws<FileNotFoundException>(() => ChatTemplate.ForModelFolder(dir));
            Assert.Contains("tokenizer_config.json", missing.Message);
            var log = new ListLogger();
            var none = ChatTemplate.ForModelFolder(dir, allowChatMlFallback: true, logger: log);
            Assert.True(none.IsChatMl);
            Assert.Contains("does not exist", none.FallbackReason);
            Assert.Contains(log.Lines, l => l.Contains("ChatML", StringComparison.Ordinal) && l.Contains("does not exist", StringComparison.Ordinal));

            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"bos_token": "<s>"}""");
            Assert.Contains("no chat_template", Assert.Throws<InvalidDataException>(() => ChatTemplate.ForModelFolder(dir)).Message);

            // A construct outside the interpreter: an error naming it, its line and column, and the file.
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
                System.Text.Json.JsonSerializer.Serialize(new { chat_template = "{% for m in messages %}\n  {{ m.content | wordwrap(5) }}\n{% endfor %}" }));
            var unsupported = Assert.Throws<ChatTemplateException>(() => ChatTemplate.ForModelFolder(dir));
            Assert.Equal((2, 18), (unsupported.Line, unsupported.Column));
            Assert.Contains("filter 'wordwrap' is not supported", unsupported.Message);
            Assert.Contains("tokenizer_config.json", unsupported.Message);
            var fallback = ChatTemplate.ForModelFolder(dir, allowChatMlFallback: true, logger: log);
            Assert.True(fallback.IsChatMl);
            Assert.Contains("wordwrap", fallback.FallbackReason);
            Assert.Contains(log.Lines, l => l.Contains("wordwrap", StringComparison.Ordinal));

            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
                System.Text.Json.JsonSerializer.Serialize(new { chat_template = Llama3, bos_token = new { content = "<|begin_of_text|>" } }));
            var llama = ChatTemplate.ForModelFolder(dir);
            Assert.False(llama.IsChatMl);
            Assert.Null(llama.FallbackReason);
            Assert.StartsWith("<|begin_of_text|><|start_header_id|>user", llama.Render([new("user", "x")]));

            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{ not json");
            var bad = Assert.Throws<InvalidDataException>(() => ChatTemplate.ForModelFolder(dir, allowChatMlFallback: true));
            Assert.Contains("tokenizer_config.json", bad.Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData("{% call foo() %}x{% endcall %}", 1, 4, "statement '{% call %}' is not supported")]
    [InlineData("a\n{{ x | wordwrap }}", 2, 8, "filter 'wordwrap' is not supported")]
    [InlineData("{% if x is foo %}{% endif %}", 1, 12, "test 'is foo' is not supported")]
    [InlineData("{% for m in messages %}", 1, 24, "missing '{% endfor %}'")]
    [InlineData("{{ 'abc }}", 1, 4, "string literal is never closed")]
    [InlineData("x\n  {{ a ? b }}", 2, 8, "unexpected character '?'")]
    [InlineData("{% for a in b recursive %}{% endfor %}", 1, 15, "recursive for loops are not supported")]
    public void UnsupportedOrMalformedTemplatesNameTheConstructAndItsPlace(string source, int line, int column, string problem)
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(source.Replace("\\n", "\n")));
        Assert.Contains(problem, e.Problem);
        Assert.Equal((line, column), (e.Line, e.Column));
    }

    [Fact]
    public void AnUnsupportedMethodFailsWhenCalledNamingItsPlace()
    {
        var t = ChatTemplate.Parse("{% for m in messages %}\n{{ m.content.zfill(3) }}{% endfor %}".Replace("\\n", "\n"));
        var e = Assert.Throws<ChatTemplateException>(() => t.Render([new("user", "7")]));
        Assert.Contains("method 'zfill' of str is not supported", e.Problem);
        Assert.Equal((2, 14), (e.Line, e.Column));
    }

    // Python's semantics where @huggingface/jinja 0.5.11 differs (it ignores strip()'s argument, prints None as ""
    // and booleans as "true"): apply_chat_template runs Python's Jinja2, which these expectations follow.
    [Theory]
    [InlineData("{{ '\\n  x \\n'.strip('\\n') }}", "  x ")]
    [InlineData("{{ 'xxhixx'.lstrip('x') ~ '|' ~ 'a b  c'.split() | length ~ '|' ~ 'a,b,,c'.split(',') }}", "hixx|3|['a', 'b', '', 'c']")]
    [InlineData("{{ none }}|{{ true }}|{{ 1.0 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 1 / 4 }}", "None|True|1.0|3|-4|2|1024|0.25")]
    [InlineData("{{ [3, 1, 2][::-1] }}|{{ 'hello'[1:-1] }}|{{ (1, 'a') }}|{{ {'k': [1, none]} }}", "[2, 1, 3]|ell|(1, 'a')|{'k': [1, None]}")]
    [InlineData("{{ {'b': 1, 'a': 'é\"'} | tojson }}|{{ [1, {'x': 2}] | tojson(indent=2) }}", "{\"b\": 1, \"a\": \"é\\\\\\\"\"}|[\n  1,\n  {\n    \"x\": 2\n  }\n]")]
    [InlineData("{% set ns = namespace(n=0) %}{% for i in range(5) if i is odd %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", "4")]
    [InlineData("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }}", "Hi A! Hi B?")]
    [InlineData("{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}={{ v }}{{ ',' if not loop.last }}{% endfor %}", "a=1,b=2")]
    [InlineData("{{ [{'r': 'u'}, {'r': 'a'}, {'r': 'u'}] | selectattr('r', 'equalto', 'u') | list | length }}|{{ ['a', 'b'] | map('upper') | join('-') }}", "2|A-B")]
    [InlineData("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}|{{ 'a' if false }}|{{ y | default('d') }}", "1||d")]
    [InlineData("{%- for i in [1, 2, 3] -%}{%- if i == 2 %}{% continue %}{% endif -%}{{ i }}{%- if i == 3 %}{% break %}{% endif -%}{%- endfor %}", "13")]
    public void ExpressionsFollowPython(string source, string expected)
    {
        string Unescape(string s) => System.Text.RegularExpressions.Regex.Unescape(s);
        Assert.Equal(Unescape(expected), ChatTemplate.Parse(Unescape(source)).Render([], false));
    }

    sealed class ListLogger : Microsoft.Extensions.Logging.ILogger
    {
        public List<string> Lines { get; } = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;
        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Lines) Lines.Add(formatter(state, exception));
        }
    }
}
