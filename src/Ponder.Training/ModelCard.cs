using System.Globalization;
using System.Text;

namespace Ponder.Training;

/// <summary>
/// The model card (README.md) every trainer writes beside its weights: a title, then lines and sections. Interpolated
/// lines format with the invariant culture, so a card reads the same on every machine.
/// </summary>
sealed class ModelCard
{
    readonly StringBuilder _text = new();

    /// <summary>Starts a card titled <paramref name="name"/> (the model's name).</summary>
    public ModelCard(string name)
    {
        Text($"# {name}");
        Blank();
    }

    /// <summary>One line, formatted with the invariant culture.</summary>
    public ModelCard Line(FormattableString line)
    {
        _text.AppendLine(line.ToString(CultureInfo.InvariantCulture));
        return this;
    }

    /// <summary>One line of plain text (may hold '\n').</summary>
    public ModelCard Text(string line)
    {
        _text.AppendLine(line);
        return this;
    }

    /// <summary>Text as it is, with no line end added (a Markdown file appended whole).</summary>
    public ModelCard Append(string text)
    {
        _text.Append(text);
        return this;
    }

    /// <summary>An empty line.</summary>
    public ModelCard Blank()
    {
        _text.AppendLine();
        return this;
    }

    /// <inheritdoc/>
    public override string ToString() => _text.ToString();
}
