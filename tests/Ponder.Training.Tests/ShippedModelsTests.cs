using System.Text;
using System.Text.Json.Nodes;
using Ponder.Tasks;
using Ponder.Models;
using Ponder.Sampling;

namespace Ponder.Training.Tests;

/// <summary>
/// The models in weights/ load through the engine's public API and are what their cards say: the policies solve the
/// first (easiest) questions of the fixed test split greedily, so a corrupt or mismatched file fails here.
/// </summary>
public sealed class ShippedModelsTests
{
    static string Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return dir.FullName;
        throw new InvalidOperationException("Engine.sln not found above the test assembly");
    }

    /// <summary>
    /// Greedy decoding through the engine gets exactly the per-question outcomes the model card's pass@1 measurement
    /// (the trainer's own sampler) recorded on the 40 easiest test questions, and most of them right.
    /// </summary>
    [Theory]
    [InlineData("policy-small", "policy-small")]
    [InlineData("policy-medium", "policy-medium")]
    [InlineData("policy-small-vh", "policy-small")]   // the same policy plus a value row: the same tokens
    public async Task Shipped_policy_solves_the_easiest_test_questions_as_its_card_recorded(string name, string card)
    {
        await using var model = await PonderModel.LoadAsync(Path.Combine(Root(), "weights", name), new ModelOptions { KvCacheTokens = 4096 });
        Assert.Equal(HeadKind.LanguageModel, model.Config.Head);
        var recorded = JsonNode.Parse(File.ReadAllText(Path.Combine(Root(), "weights", card, "pass_at_1.json")))!["greedy"]!["PerQuestion"]!.AsArray();
        var task = new ArithmeticChainTask();
        var problems = ArithmeticChainSplits.ReadJsonl(Path.Combine(Root(), "weights", "policy-small", "test.jsonl")).Take(40).ToList();
        int solved = 0;
        for (int i = 0; i < problems.Count; i++)
        {
            var text = new StringBuilder();
            await foreach (var t in model.GenerateAsync(task.Prompt(problems[i].Question), SamplingOptions.Greedy with { MaxNewTokens = 96 }))
                text.Append(t.Text);
            bool correct = task.Grade(problems[i].Question, text.ToString());
            Assert.True(correct == ((double)recorded[i]! == 1), $"{name}: '{problems[i].Question}' -> '{text}', the card recorded {recorded[i]}");
            if (correct) solved++;
        }
        Assert.True(solved >= 34, $"{name} solved {solved} of the 40 easiest test questions");
    }

    [Theory]
    [InlineData("prm-small", HeadKind.Value)]
    [InlineData("revision-small", HeadKind.LanguageModel)]
    public async Task Shipped_prm_and_revision_model_load_with_the_policy_vocabulary(string name, HeadKind head)
    {
        await using var model = await PonderModel.LoadAsync(Path.Combine(Root(), "weights", name), new ModelOptions { KvCacheTokens = 1024 });
        await using var policy = await PonderModel.LoadAsync(Path.Combine(Root(), "weights", "policy-small"), new ModelOptions { KvCacheTokens = 1024 });
        Assert.Equal(head, model.Config.Head);
        Assert.Equal(policy.Config.Vocab, model.Config.Vocab);
        Assert.Equal(policy.Tokenizer!.Encode("Q: 6+3\n", addSpecialTokens: true), model.Tokenizer!.Encode("Q: 6+3\n", addSpecialTokens: true));
    }

    /// <summary>The shipped tokenizer_config.json files are what the trainer's export writes (TrainedChatTemplates), byte for byte.</summary>
    [Theory]
    [InlineData("policy-small", true)]
    [InlineData("policy-medium", true)]
    [InlineData("policy-small-vh", true)]
    [InlineData("revision-small", false)]
    public void Shipped_chat_templates_are_the_trainers(string name, bool policy)
    {
        string dir = Path.Combine(Path.GetTempPath(), "ponder-chat-template-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            TrainedChatTemplates.Write(dir, policy ? TrainedChatTemplates.Policy : TrainedChatTemplates.Revision);
            Assert.Equal(File.ReadAllText(Path.Combine(dir, "tokenizer_config.json")), File.ReadAllText(Path.Combine(Root(), "weights", name, "tokenizer_config.json")));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
