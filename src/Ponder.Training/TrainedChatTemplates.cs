using System.Text.Json;
using System.Text.Json.Nodes;

namespace Ponder.Training;

/// <summary>
/// The chat templates of the models Ponder trains (written as <c>tokenizer_config.json</c> beside their weights), so a
/// chat request reaches a model as the plain prompt it was trained on rather than chat markup it never saw.
/// </summary>
public static class TrainedChatTemplates
{
    /// <summary>The policies' format: each user turn "Q: &lt;expr&gt;\n", each earlier assistant turn its solution lines; no other roles.</summary>
    public const string Policy = """
{#- Ponder's arithmetic-chain policies are trained on the plain prompt "Q: <expr>\n" followed by solution lines and "A: n\n" (no chat markup, no system prompt). A user turn is the question (the "Q: " prefix is added when missing); an earlier assistant turn is written back as the model wrote it. #}
{%- for message in messages %}
    {%- if message.role == 'user' %}
        {%- set question = message.content | trim %}
        {{- ('' if question.startswith('Q:') else 'Q: ') + question + '\n' }}
    {%- elif message.role == 'assistant' %}
        {{- message.content | trim + '\n' }}
    {%- else %}
        {{- raise_exception("this model was trained on questions and solutions only (roles user and assistant); it has no '" + message.role + "' role") }}
    {%- endif %}
{%- endfor %}
""";

    /// <summary>The revision model's format (<c>RevisionPrompt</c>): the question, the last four attempts, "Revision:\n".</summary>
    public const string Revision = """
{#- Ponder's revision model is trained on "Q: <expr>\n", then "Attempt:\n<attempt>\n" for each of the last (up to 4) previous attempts, oldest first, then "Revision:\n" (see RevisionPrompt). The user turn is the question; the assistant turns after it are the attempts so far. #}
{%- set ns = namespace(question=none, attempts=[]) %}
{%- for message in messages %}
    {%- if message.role == 'user' %}
        {%- set ns.question = message.content | trim %}
        {%- set ns.attempts = [] %}
    {%- elif message.role == 'assistant' %}
        {%- set ns.attempts = ns.attempts + [message.content.rstrip('\n')] %}
    {%- else %}
        {{- raise_exception("this model was trained on a question and its attempts only (roles user and assistant); it has no '" + message.role + "' role") }}
    {%- endif %}
{%- endfor %}
{%- if ns.question is none %}
    {{- raise_exception("the revision model needs a user turn with the question") }}
{%- endif %}
{{- ('' if ns.question.startswith('Q:') else 'Q: ') + ns.question + '\n' }}
{%- for attempt in ns.attempts[-4:] %}
    {{- 'Attempt:\n' + attempt + ('\n' if attempt else '') }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- 'Revision:\n' }}
{%- endif %}
""";

    /// <summary>Writes <c>tokenizer_config.json</c> holding <paramref name="chatTemplate"/> into <paramref name="dir"/>.</summary>
    public static void Write(string dir, string chatTemplate)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        ArgumentException.ThrowIfNullOrEmpty(chatTemplate);
        var root = new JsonObject { ["chat_template"] = chatTemplate };
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n");
    }
}
