namespace Ponder.Tokenization;

/// <summary>
/// Text to token ids and back, as the model's own files define it (tokenizer.json, tokenizer.model, or a GGUF vocabulary).
/// </summary>
public interface ITokenizer
{
    /// <summary>Number of ids the tokenizer can produce (including special tokens).</summary>
    int VocabSize { get; }
    /// <summary>Beginning-of-sequence id, when the model uses one.</summary>
    int? BosId { get; }
    /// <summary>Ids that end generation (end-of-sequence, end-of-turn...).</summary>
    IReadOnlyList<int> EosIds { get; }
    /// <summary>Whether <see cref="Encode"/> prepends BOS when asked to add special tokens (Llama 2/3 do; GPT-2-style BPE usually does not).</summary>
    bool AddBos { get; }

    /// <summary>Encodes text. Special-token strings in the text (e.g. "&lt;|im_end|&gt;") map to their ids.</summary>
    int[] Encode(string text, bool addSpecialTokens = true);

    /// <summary>
    /// The control tokens whose text <see cref="Encode"/> matches whole (e.g. "&lt;|im_start|&gt;"): what a chat
    /// template may write but a user's text must not produce. Empty for a tokenizer that never matches special text.
    /// </summary>
    IReadOnlyList<AddedToken> SpecialTokens => [];

    /// <summary>
    /// Encodes text in which control-token text is ordinary text (as Hugging Face's <c>split_special_tokens</c> and
    /// llama.cpp's <c>parse_special = false</c> do): "&lt;|im_start|&gt;" in a user's message becomes the tokens of
    /// those characters, never the control id. No BOS. A tokenizer with <see cref="SpecialTokens"/> must override this.
    /// </summary>
    int[] EncodeOrdinary(string text) => Encode(text, addSpecialTokens: false);

    /// <summary>Decodes ids to text; special tokens are kept unless <paramref name="skipSpecialTokens"/>.</summary>
    string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false);

    /// <summary>The raw bytes a single token stands for (for streaming: a token can end mid-UTF-8 character).</summary>
    byte[] TokenBytes(int id);
}
