using Microsoft.Extensions.AI;
using Ponder.Hosting;
using Ponder.Sampling;
using Ponder.Search;

namespace Ponder.Tests.Hosting;

/// <summary>
/// The shipped models' tokenizer_config.json templates give chat requests the plain prompts the models were trained on
/// ("Q: &lt;expr&gt;\n"; the reviser's attempts and "Revision:\n"), not ChatML markup they never saw.
/// </summary>
public sealed class ShippedModelChatTests
{
    static string Weights(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return Path.Combine(dir.FullName, "weights", name);
        throw new InvalidOperationException($"no Engine.sln above {AppContext.BaseDirectory}");
    }

    [Fact]
    public async Task AChatQuestionReachesPolicySmallAsItsTrainingPromptAndIsAnsweredAsAPlainPromptIs()
    {
        await using var model = await PonderModel.LoadAsync(Weights("policy-small"), new ModelOptions { KvCacheTokens = 1024 });
        using var chat = model.AsChatClient();
        Assert.False(chat.Template.IsChatMl);
        Assert.Null(chat.Template.FallbackReason);

        var response = await chat.GetResponseAsync([new ChatMessage(ChatRole.User, "Q: 2+3*4")], new ChatOptions { Temperature = 0, MaxOutputTokens = 40 });

        // The independent reference: the model's own generation on the training-format prompt.
        const string trainingPrompt = "Q: 2+3*4\n";
        var expected = new System.Text.StringBuilder();
        await foreach (var t in model.GenerateAsync(trainingPrompt, SamplingOptions.Greedy with { MaxNewTokens = 40 })) expected.Append(t.Text);
        Assert.Equal(expected.ToString(), response.Text);
        Assert.Equal(model.Tokenizer!.Encode(trainingPrompt).Length, response.Usage!.InputTokenCount);
        Assert.EndsWith("A: 14\n", response.Text);   // 3*4=12, 2+12=14: the card's easiest fifth is 91 % right greedily
    }

    [Theory]
    [InlineData("policy-small")]
    [InlineData("policy-medium")]
    [InlineData("policy-small-vh")]
    public void PolicyTemplatesWriteQuestionsAndSolutionsAsTrainedAndRefuseOtherRoles(string name)
    {
        var t = ChatTemplate.ForModelFolder(Weights(name));
        Assert.Equal("Q: 17+4*9-6\n", t.Render([new("user", "Q: 17+4*9-6")]));
        Assert.Equal("Q: 17+4*9-6\n", t.Render([new("user", " 17+4*9-6\n")]));
        Assert.Equal("Q: 6+3\n6+3=9\nA: 9\nQ: 1-3\n", t.Render([new("user", "Q: 6+3"), new("assistant", "6+3=9\nA: 9\n"), new("user", "1-3")]));
        var e = Assert.Throws<ArgumentException>(() => t.Render([new("system", "Be brief."), new("user", "Q: 1+1")]));
        Assert.Contains("no 'system' role", e.Message);
    }

    [Fact]
    public void RevisionTemplateWritesTheRevisionPromptOfTheSearch()
    {
        var t = ChatTemplate.ForModelFolder(Weights("revision-small"));
        string[] attempts = ["17+4=21\n21*9=189\n189-6=183\nA: 183\n", "4*9=36\nA: 36", "", "1\n", "4*9=36\n17+36=53\n53-6=46\nA: 46\n", "x\n\n"];
        for (int k = 0; k <= attempts.Length; k++)
        {
            var turns = new List<ChatTurn> { new("user", "Q: 17+4*9-6") };
            turns.AddRange(attempts.Take(k).Select(a => new ChatTurn("assistant", a)));
            Assert.Equal(RevisionPrompt.Format("Q: 17+4*9-6\n", attempts.Take(k).ToList()), t.Render(turns));
        }
        Assert.Throws<ArgumentException>(() => t.Render([new("assistant", "A: 1")]));
    }
}
