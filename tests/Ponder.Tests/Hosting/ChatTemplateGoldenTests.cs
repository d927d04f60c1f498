using System.Text.Json;
using Ponder.Hosting;

namespace Ponder.Tests.Hosting;

/// <summary>
/// Real chat templates (Data/ChatTemplates/*/tokenizer_config.json) over a set of conversations, against the renderings
/// of @huggingface/jinja (golden.json, written by generate.mjs and cross-checked with Python's Jinja2 by
/// crosscheck.py): every rendering must be byte-identical, and every template refusal must be one here too.
/// </summary>
public sealed class ChatTemplateGoldenTests
{
    static readonly string DataDir = Path.Combine(AppContext.BaseDirectory, "Hosting", "Data", "ChatTemplates");

    public static TheoryData<string> TemplateNames()
    {
        var data = new TheoryData<string>();
        foreach (var dir in Directory.GetDirectories(DataDir).Order(StringComparer.Ordinal)) data.Add(Path.GetFileName(dir));
        return data;
    }

    [Theory]
    [MemberData(nameof(TemplateNames))]
    public void RendersEveryConversationExactlyAsHuggingFaceJinja(string name)
    {
        var template = ChatTemplate.FromTokenizerConfig(Path.Combine(DataDir, name, "tokenizer_config.json"));
        Assert.False(template.IsChatMl);
        using var conversations = JsonDocument.Parse(File.ReadAllText(Path.Combine(DataDir, "conversations.json")));
        var byName = conversations.RootElement.EnumerateArray().ToDictionary(
            c => c.GetProperty("name").GetString()!,
            c => c.GetProperty("messages").EnumerateArray().Select(m => new ChatTurn(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList());
        using var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(DataDir, "golden.json")));
        int checkedCases = 0;
        foreach (var c in golden.RootElement.GetProperty("cases").EnumerateArray().Where(c => c.GetProperty("template").GetString() == name))
        {
            var messages = byName[c.GetProperty("conversation").GetString()!];
            bool generation = c.GetProperty("add_generation_prompt").GetBoolean();
            var variables = c.GetProperty("variables").EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
            string label = $"{name} / {c.GetProperty("conversation").GetString()} / add_generation_prompt={generation} / {c.GetProperty("variables")}";
            if (c.TryGetProperty("error", out var error))
            {
                var e = Assert.Throws<ArgumentException>(() => template.Render(messages, generation, variables));
                Assert.True(e.Message.Contains(error.GetString()!, StringComparison.Ordinal), $"{label}: expected the template's refusal '{error.GetString()}', got '{e.Message}'");
            }
            else
            {
                string expected = c.GetProperty("output").GetString()!;
                string actual = template.Render(messages, generation, variables);
                if (expected != actual)
                {
                    int at = 0;
                    while (at < Math.Min(expected.Length, actual.Length) && expected[at] == actual[at]) at++;
                    Assert.Fail($"{label}: first difference at char {at}\nexpected: {JsonSerializer.Serialize(expected)}\nactual:   {JsonSerializer.Serialize(actual)}");
                }
            }
            checkedCases++;
        }
        Assert.True(checkedCases >= 18, $"{name}: only {checkedCases} golden cases");
    }
}
