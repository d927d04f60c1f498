namespace Ponder.Hosting;

/// <summary>
/// A chat template Ponder cannot compile or evaluate: a syntax error, or a Jinja construct outside what
/// <see cref="ChatTemplate"/> implements (named in the message), at <see cref="Line"/> and <see cref="Column"/>
/// of the template text (1-based).
/// </summary>
public sealed class ChatTemplateException : Exception
{
    /// <summary>Creates the exception; the message is prefixed with the location.</summary>
    public ChatTemplateException(string message, int line, int column, Exception? innerException = null)
        : base($"chat template, line {line}, column {column}: {message}", innerException)
    {
        Line = line;
        Column = column;
        Problem = message;
    }

    /// <summary>1-based line in the template text.</summary>
    public int Line { get; }

    /// <summary>1-based column in the template text.</summary>
    public int Column { get; }

    /// <summary>The problem without the location (e.g. "filter 'wordwrap' is not supported").</summary>
    public string Problem { get; }
}
