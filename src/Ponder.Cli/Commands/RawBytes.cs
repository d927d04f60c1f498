using Ponder.Models;
using Ponder.Tokenization;

namespace Ponder.Cli.Commands;

/// <summary>Random models have no tokenizer file: text goes in and out as raw bytes (ids 0..255).</summary>
static class RandomModelTokenizer
{
    public static ITokenizer For(ModelConfig config) => new RawByteTokenizer(config);

    sealed class RawByteTokenizer(ModelConfig config) : ITokenizer
    {
        public int VocabSize => config.Vocab;
        public int? BosId => null;
        public IReadOnlyList<int> EosIds => config.EosTokenIds;
        public bool AddBos => false;
        public int[] Encode(string text, bool addSpecialTokens = true) => System.Text.Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();
        public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false) =>
            System.Text.Encoding.UTF8.GetString(ids.ToArray().Where(i => i < 256).Select(i => (byte)i).ToArray());
        public byte[] TokenBytes(int id) => id < 256 ? [(byte)id] : [];
    }
}
