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
    public void ModelFolderWithoutATemplateOrWithUnsupportedJinjaFallsBackToChatMlWithAReason()
    {
        string dir = Directory.CreateTempSubdirectory("ponder-template-").FullName;
        try
        {
            var none = ChatTemplate.ForModelFolder(dir);
            Assert.True(none.IsChatMl);
            Assert.Contains("does not exist", none.FallbackReason);

            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"chat_template": "{% macro m() %}x{% endmacro %}{{ m() }}"}""");
            var macro = ChatTemplate.ForModelFolder(dir);
            Assert.True(macro.IsChatMl);
            Assert.Contains("macro", macro.FallbackReason);

            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
                System.Text.Json.JsonSerializer.Serialize(new { chat_template = Llama3, bos_token = new { content = "<|begin_of_text|>" } }));
            var llama = ChatTemplate.ForModelFolder(dir);
            Assert.False(llama.IsChatMl);
            Assert.StartsWith("<|begin_of_text|><|start_header_id|>user", llama.Render([new("user", "x")]));

            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{ not json");
            var bad = Assert.Throws<InvalidDataException>(() => ChatTemplate.ForModelFolder(dir));
            Assert.Contains("tokenizer_config.json", bad.Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
