using System.Text;

namespace Ponder.Hosting;

/// <summary>
/// A Jinja2 interpreter for chat templates, configured as Hugging Face's <c>apply_chat_template</c> configures Jinja2
/// (trim_blocks, lstrip_blocks, a final newline dropped) and evaluating with Python's semantics (str(), ==, slicing,
/// string methods, <c>tojson</c> as json.dumps without ASCII escaping).
/// Statements: if/elif/else, for (tuple targets, <c>if</c> filter, else, <c>loop.*</c>, break/continue), set (names,
/// tuples, <c>ns.attr</c>, block set), macro, generation (transparent), comments and whitespace control.
/// Expressions: literals (lists, tuples, dicts), attribute/item access, slices with steps, calls with keyword
/// arguments, filters with arguments, tests (<c>is [not] x</c>), arithmetic, <c>~</c>, comparisons, <c>in</c>,
/// <c>and/or/not</c>, conditional expressions; globals <c>namespace</c>, <c>range</c>, <c>dict</c>,
/// <c>raise_exception</c>, <c>strftime_now</c>. Anything else fails at compile time (or, for a method name, when
/// called) with a <see cref="ChatTemplateException"/> naming the construct and its line and column.
/// </summary>
internal static partial class Jinja
{
    /// <summary>Compiles <paramref name="source"/>; throws <see cref="ChatTemplateException"/> on syntax errors and unsupported constructs.</summary>
    public static Template Compile(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var lines = new LineMap(source);
        var tokens = Lex(source, lines);
        var parser = new Parser(tokens);
        return new Template(parser.ParseTemplate());
    }

    /// <summary>A compiled template: renders a context of variables (already Jinja values, see <see cref="FromClr"/>).</summary>
    internal sealed class Template(List<Jinja.Node> body)
    {
        public string Render(IReadOnlyDictionary<string, object?> variables)
        {
            var globals = new Scope(null);
            foreach (var (name, value) in Globals) globals.Set(name, value);
            var scope = new Scope(globals);
            foreach (var (name, value) in variables) scope.Set(name, value);
            var sb = new StringBuilder();
            RenderAll(body, sb, scope);
            return sb.ToString();
        }
    }

    /// <summary>raise_exception(message) in a template: the template refused its input.</summary>
    internal sealed class RaisedException(string message) : Exception(message);

    // ================================================================= source positions

    internal readonly record struct Loc(int Line, int Column);

    sealed class LineMap
    {
        readonly List<int> _starts = [0];
        public LineMap(string s)
        {
            for (int i = 0; i < s.Length; i++) if (s[i] == '\n') _starts.Add(i + 1);
        }
        public Loc At(int offset)
        {
            int line = _starts.BinarySearch(offset);
            if (line < 0) line = ~line - 1;
            return new Loc(line + 1, offset - _starts[line] + 1);
        }
    }

    static ChatTemplateException Error(Loc at, string message, Exception? inner = null) => new(message, at.Line, at.Column, inner);

    // ================================================================= lexer

    enum T { Text, BlockOpen, BlockClose, VarOpen, VarClose, Name, String, Int, Float, Op, End }

    sealed record Tok(T Kind, string Value, Loc At)
    {
        public bool Is(T kind, string value) => Kind == kind && Value == value;
        public bool IsOp(string op) => Kind == T.Op && Value == op;
        public bool IsName(string name) => Kind == T.Name && Value == name;
        public override string ToString() => Kind switch
        {
            T.End => "end of template",
            T.BlockClose => "'%}'",
            T.VarClose => "'}}'",
            T.String => $"string '{Value}'",
            _ => $"'{Value}'",
        };
    }

    // Whitespace handling follows Jinja2 with trim_blocks and lstrip_blocks (as Hugging Face's apply_chat_template
    // and @huggingface/jinja): spaces and tabs from a line start up to a block or comment tag are dropped, the first
    // newline after a block or comment tag is dropped, '-' strips all whitespace on its side, and a single trailing
    // newline of the template is dropped.
    static List<Tok> Lex(string s, LineMap lines)
    {
        var tokens = new List<Tok>();
        int n = s.EndsWith('\n') ? s.Length - 1 : s.Length;
        int i = 0;
        bool dropNewline = false, skipWhitespace = false;
        while (i < n)
        {
            int open = NextTag(s, i, n);
            int textEnd = open < 0 ? n : open;
            int start = i;
            if (skipWhitespace) while (start < textEnd && char.IsWhiteSpace(s[start])) start++;
            else if (dropNewline && start < textEnd && s[start] == '\n') start++;
            skipWhitespace = dropNewline = false;
            string text = s[start..textEnd];
            if (open >= 0)
            {
                char kind = s[open + 1];
                bool minus = open + 2 < n && s[open + 2] == '-';
                if (minus) text = text.TrimEnd();
                else if (kind is '%' or '#')
                {
                    int p = textEnd;
                    while (p > i && s[p - 1] is ' ' or '\t') p--;
                    bool lineStart = p == 0 || s[p - 1] is '\n' or '\r';
                    if (lineStart) text = text[..Math.Max(0, text.Length - (textEnd - p))];
                }
            }
            if (text.Length > 0) tokens.Add(new Tok(T.Text, text, lines.At(start)));
            if (open < 0) break;

            char k = s[open + 1];
            i = open + 2;
            if (i < n && s[i] == '-') i++;
            if (k == '#')
            {
                int close = s.IndexOf("#}", i, StringComparison.Ordinal);
                if (close < 0 || close + 2 > n) throw Error(lines.At(open), "comment '{#' is never closed with '#}'");
                skipWhitespace = close > i && s[close - 1] == '-';
                dropNewline = true;
                i = close + 2;
                continue;
            }
            tokens.Add(new Tok(k == '%' ? T.BlockOpen : T.VarOpen, k == '%' ? "{%" : "{{", lines.At(open)));
            i = LexInside(s, n, i, k == '%', tokens, lines, open, out skipWhitespace);
            dropNewline = k == '%';
        }
        tokens.Add(new Tok(T.End, "", lines.At(n)));
        return tokens;
    }

    static int NextTag(string s, int from, int n)
    {
        for (int i = s.IndexOf('{', from); i >= 0 && i + 1 < n; i = s.IndexOf('{', i + 1))
            if (s[i + 1] is '%' or '{' or '#') return i;
        return -1;
    }

    static readonly string[] Operators = ["**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "="];

    // Lexes the inside of {% %} or {{ }} from i; returns the index after the closing delimiter.
    static int LexInside(string s, int n, int i, bool block, List<Tok> tokens, LineMap lines, int open, out bool skipAfter)
    {
        string close = block ? "%}" : "}}";
        int braces = 0;
        while (true)
        {
            while (i < n && char.IsWhiteSpace(s[i])) i++;
            if (i >= n) throw Error(lines.At(open), $"'{(block ? "{%" : "{{")}' is never closed with '{close}'");
            if (braces == 0 || block)
            {
                if (s[i] == '-' && string.CompareOrdinal(s, i + 1, close, 0, 2) == 0)
                {
                    tokens.Add(new Tok(block ? T.BlockClose : T.VarClose, close, lines.At(i)));
                    skipAfter = true;
                    return i + 3;
                }
                if (string.CompareOrdinal(s, i, close, 0, 2) == 0 && i + 2 <= n)
                {
                    tokens.Add(new Tok(block ? T.BlockClose : T.VarClose, close, lines.At(i)));
                    skipAfter = false;
                    return i + 2;
                }
            }
            char c = s[i];
            var at = lines.At(i);
            if (c is '\'' or '"')
            {
                var sb = new StringBuilder();
                int j = i + 1;
                while (true)
                {
                    if (j >= n) throw Error(at, "string literal is never closed");
                    char d = s[j++];
                    if (d == c) break;
                    if (d != '\\') { sb.Append(d); continue; }
                    if (j >= n) throw Error(at, "string literal is never closed");
                    char e = s[j++];
                    switch (e)
                    {
                        case 'n': sb.Append('\n'); break;
                        case 't': sb.Append('\t'); break;
                        case 'r': sb.Append('\r'); break;
                        case 'b': sb.Append('\b'); break;
                        case 'f': sb.Append('\f'); break;
                        case 'v': sb.Append('\v'); break;
                        case '\\' or '\'' or '"': sb.Append(e); break;
                        case 'x' or 'u':
                        {
                            int len = e == 'x' ? 2 : 4;
                            if (j + len > n || !int.TryParse(s.AsSpan(j, len), System.Globalization.NumberStyles.HexNumber, null, out int code))
                                throw Error(lines.At(j - 2), $"invalid escape '\\{e}' in a string literal");
                            sb.Append((char)code);
                            j += len;
                            break;
                        }
                        // Python keeps unknown escapes as written.
                        default: sb.Append('\\').Append(e); break;
                    }
                }
                tokens.Add(new Tok(T.String, sb.ToString(), at));
                i = j;
                continue;
            }
            if (char.IsAsciiDigit(c))
            {
                int j = i;
                while (j < n && (char.IsAsciiDigit(s[j]) || s[j] == '_')) j++;
                bool isFloat = false;
                if (j + 1 < n && s[j] == '.' && char.IsAsciiDigit(s[j + 1]) && !(tokens.Count > 0 && tokens[^1].IsOp(".")))
                {
                    isFloat = true;
                    j++;
                    while (j < n && char.IsAsciiDigit(s[j])) j++;
                }
                tokens.Add(new Tok(isFloat ? T.Float : T.Int, s[i..j].Replace("_", ""), at));
                i = j;
                continue;
            }
            if (char.IsLetter(c) || c == '_')
            {
                int j = i;
                while (j < n && (char.IsLetterOrDigit(s[j]) || s[j] == '_')) j++;
                tokens.Add(new Tok(T.Name, s[i..j], at));
                i = j;
                continue;
            }
            string? op = null;
            foreach (string o in Operators)
                if (string.CompareOrdinal(s, i, o, 0, o.Length) == 0) { op = o; break; }
            if (op is null) throw Error(at, $"unexpected character '{c}'");
            if (op == "{") braces++;
            else if (op == "}") braces--;
            tokens.Add(new Tok(T.Op, op, at));
            i += op.Length;
        }
    }

    // ================================================================= AST

    internal abstract class Node(Loc at)
    {
        public Loc At { get; } = at;
        public abstract void Render(StringBuilder sb, Scope scope);
    }

    abstract class Expr(Loc at)
    {
        public Loc At { get; } = at;
        public abstract object? Eval(Scope scope);
    }

    static void RenderAll(List<Node> body, StringBuilder sb, Scope scope)
    {
        foreach (var node in body) node.Render(sb, scope);
    }

    /// <summary>Variables of one frame; lookups walk to the enclosing frames.</summary>
    internal sealed class Scope(Scope? parent)
    {
        readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);
        public Scope? Parent => parent;
        public void Set(string name, object? value) => _vars[name] = value;
        public object? Get(string name)
        {
            for (var s = this; s is not null; s = s.Parent)
                if (s._vars.TryGetValue(name, out var v)) return v;
            return new Undefined(name);
        }
    }

    sealed class BreakSignal : Exception;
    sealed class ContinueSignal : Exception;

    sealed class TextNode(Loc at, string text) : Node(at)
    {
        public override void Render(StringBuilder sb, Scope scope) => sb.Append(text);
    }

    sealed class OutputNode(Loc at, Expr e) : Node(at)
    {
        public override void Render(StringBuilder sb, Scope scope) => sb.Append(Str(e.Eval(scope)));
    }

    sealed class IfNode(Loc at, List<(Expr Test, List<Node> Body)> branches, List<Node>? otherwise) : Node(at)
    {
        public override void Render(StringBuilder sb, Scope scope)
        {
            foreach (var (test, body) in branches)
                if (Truthy(test.Eval(scope))) { RenderAll(body, sb, scope); return; }
            if (otherwise is not null) RenderAll(otherwise, sb, scope);
        }
    }

    sealed class ForNode(Loc at, List<string> targets, Expr iterable, Expr? filter, List<Node> body, List<Node>? otherwise) : Node(at)
    {
        public override void Render(StringBuilder sb, Scope scope)
        {
            var items = Iterate(iterable.Eval(scope), iterable.At);
            if (filter is not null)
            {
                var kept = new List<object?>();
                foreach (var item in items)
                {
                    var probe = new Scope(scope);
                    Bind(probe, item);
                    if (Truthy(filter.Eval(probe))) kept.Add(item);
                }
                items = kept;
            }
            if (items.Count == 0)
            {
                if (otherwise is not null) RenderAll(otherwise, sb, scope);
                return;
            }
            for (int i = 0; i < items.Count; i++)
            {
                // Each iteration is its own frame: a {% set %} in the body does not leak out of the loop (Jinja2 scoping).
                var frame = new Scope(scope);
                Bind(frame, items[i]);
                frame.Set("loop", new LoopInfo(items, i));
                try { RenderAll(body, sb, frame); }
                catch (BreakSignal) { break; }
                catch (ContinueSignal) { }
            }
        }

        void Bind(Scope frame, object? item)
        {
            if (targets.Count == 1) { frame.Set(targets[0], item); return; }
            var parts = Iterate(item, At);
            if (parts.Count != targets.Count)
                throw Error(At, $"cannot unpack {parts.Count} values into {targets.Count} loop variables");
            for (int k = 0; k < targets.Count; k++) frame.Set(targets[k], parts[k]);
        }
    }

    sealed class SetNode(Loc at, List<string> names, string? attribute, Expr value) : Node(at)
    {
        public override void Render(StringBuilder sb, Scope scope)
        {
            var v = value.Eval(scope);
            if (attribute is not null)
            {
                if (scope.Get(names[0]) is not Namespace ns) throw Error(At, $"cannot set attribute '{attribute}' on '{names[0]}': only a namespace() object takes attributes");
                ns.Values[attribute] = v;
                return;
            }
            if (names.Count == 1) { scope.Set(names[0], v); return; }
            var parts = Iterate(v, At);
            if (parts.Count != names.Count) throw Error(At, $"cannot unpack {parts.Count} values into {names.Count} names");
            for (int k = 0; k < names.Count; k++) scope.Set(names[k], parts[k]);
        }
    }

    sealed class SetBlockNode(Loc at, string name, List<Node> body) : Node(at)
    {
        public override void Render(StringBuilder sb, Scope scope)
        {
            var inner = new StringBuilder();
            RenderAll(body, inner, scope);
            scope.Set(name, inner.ToString());
        }
    }

    sealed class MacroNode(Loc at, string name, List<(string Name, Expr? Default)> parameters, List<Node> body) : Node(at)
    {
        public override void Render(StringBuilder sb, Scope scope) => scope.Set(name, new Macro(name, parameters, body, scope, At));
    }

    sealed class SignalNode(Loc at, bool isBreak) : Node(at)
    {
        public override void Render(StringBuilder sb, Scope scope) => throw (isBreak ? new BreakSignal() : new ContinueSignal());
    }

    sealed class BlockNode(Loc at, List<Node> body) : Node(at)
    {
        public override void Render(StringBuilder sb, Scope scope) => RenderAll(body, sb, scope);
    }

    /// <summary>A template macro: a callable rendering its body in a frame of its own over the defining scope.</summary>
    sealed class Macro(string name, List<(string Name, Expr? Default)> parameters, List<Node> body, Scope closure, Loc at) : ICallable
    {
        public string Name => name;
        public object? Call(List<object?> args, Dictionary<string, object?> kwargs, Loc callAt)
        {
            if (args.Count > parameters.Count) throw Error(callAt, $"macro '{name}' takes {parameters.Count} arguments, {args.Count} given");
            var frame = new Scope(closure);
            for (int k = 0; k < parameters.Count; k++)
            {
                var (p, dflt) = parameters[k];
                object? v = k < args.Count ? args[k]
                    : kwargs.Remove(p, out var kv) ? kv
                    : dflt is not null ? dflt.Eval(frame)
                    : new Undefined(p);
                frame.Set(p, v);
            }
            if (kwargs.Count > 0) throw Error(callAt, $"macro '{name}' has no parameter '{kwargs.Keys.First()}'");
            var sb = new StringBuilder();
            RenderAll(body, sb, frame);
            return sb.ToString();
        }
        public Loc DefinedAt => at;
    }

    // ---- expressions ----

    sealed class Const(Loc at, object? value) : Expr(at)
    {
        public object? Value => value;
        public override object? Eval(Scope scope) => value;
    }

    sealed class NameExpr(Loc at, string name) : Expr(at)
    {
        public string Name => name;
        public override object? Eval(Scope scope) => scope.Get(name);
    }

    sealed class ListExpr(Loc at, List<Expr> items, bool tuple) : Expr(at)
    {
        public override object? Eval(Scope scope)
        {
            var values = items.Select(e => e.Eval(scope)).ToList();
            return tuple ? new PyTuple(values) : values;
        }
    }

    sealed class DictExpr(Loc at, List<(Expr Key, Expr Value)> pairs) : Expr(at)
    {
        public override object? Eval(Scope scope)
        {
            var d = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (k, v) in pairs)
            {
                if (k.Eval(scope) is not string key) throw Error(k.At, "dictionary keys must be strings");
                d[key] = v.Eval(scope);
            }
            return d;
        }
    }

    sealed class AttrExpr(Loc at, Expr target, string name) : Expr(at)
    {
        public Expr Target => target;
        public string Name => name;
        public override object? Eval(Scope scope) => GetAttr(target.Eval(scope), name, At);
    }

    sealed class ItemExpr(Loc at, Expr target, Expr key) : Expr(at)
    {
        public override object? Eval(Scope scope) => GetItem(target.Eval(scope), key.Eval(scope), At);
    }

    sealed class SliceExpr(Loc at, Expr target, Expr? start, Expr? stop, Expr? step) : Expr(at)
    {
        public override object? Eval(Scope scope) => Slice(target.Eval(scope), start?.Eval(scope), stop?.Eval(scope), step?.Eval(scope), At);
    }

    sealed class CallExpr(Loc at, Expr callee, List<Expr> args, List<(string Name, Expr Value)> kwargs) : Expr(at)
    {
        public override object? Eval(Scope scope)
        {
            var positional = args.Select(a => a.Eval(scope)).ToList();
            var named = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (k, v) in kwargs) named[k] = v.Eval(scope);
            // obj.method(...): Python's str and dict methods, the loop's cycle().
            if (callee is AttrExpr attr)
            {
                var target = attr.Target.Eval(scope);
                if (TryCallMethod(target, attr.Name, positional, named, attr.At, out var result)) return result;
                var member = GetAttr(target, attr.Name, attr.At);
                if (member is ICallable c) return c.Call(positional, named, At);
                throw Error(attr.At, $"method '{attr.Name}' of {TypeName(target)} is not supported");
            }
            var fn = callee.Eval(scope);
            if (fn is ICallable callable) return callable.Call(positional, named, At);
            if (fn is Undefined u) throw Error(callee.At, $"'{u.Name}' is undefined: no such function");
            throw Error(callee.At, $"{TypeName(fn)} is not callable");
        }
    }

    sealed class FilterExpr(Loc at, Expr operand, string name, List<Expr> args, List<(string Name, Expr Value)> kwargs) : Expr(at)
    {
        public override object? Eval(Scope scope)
        {
            var value = operand.Eval(scope);
            var positional = args.Select(a => a.Eval(scope)).ToList();
            var named = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (k, v) in kwargs) named[k] = v.Eval(scope);
            return ApplyFilter(name, value, positional, named, At);
        }
    }

    sealed class TestExpr(Loc at, Expr operand, string name, List<Expr> args, bool negate) : Expr(at)
    {
        public override object? Eval(Scope scope)
        {
            var value = operand.Eval(scope);
            var positional = args.Select(a => a.Eval(scope)).ToList();
            return ApplyTest(name, value, positional, At) ^ negate;
        }
    }

    sealed class UnaryExpr(Loc at, string op, Expr operand) : Expr(at)
    {
        public override object? Eval(Scope scope)
        {
            var v = operand.Eval(scope);
            return op switch
            {
                "not" => !Truthy(v),
                "-" => v switch { long l => (object)-l, double d => -d, bool b => b ? -1L : 0L, _ => throw Error(At, $"bad operand type for unary -: {TypeName(v)}") },
                _ => v is long or double ? v : v is bool b2 ? (b2 ? 1L : 0L) : throw Error(At, $"bad operand type for unary +: {TypeName(v)}"),
            };
        }
    }

    sealed class BinaryExpr(Loc at, string op, Expr left, Expr right) : Expr(at)
    {
        public override object? Eval(Scope scope)
        {
            var l = left.Eval(scope);
            switch (op)
            {
                case "and": return Truthy(l) ? right.Eval(scope) : l;
                case "or": return Truthy(l) ? l : right.Eval(scope);
            }
            var r = right.Eval(scope);
            try { return Binary(op, l, r, At); }
            catch (OverflowException e) { throw Error(At, $"integer overflow in '{op}'", e); }
        }
    }

    sealed class CondExpr(Loc at, Expr test, Expr then, Expr? otherwise) : Expr(at)
    {
        public override object? Eval(Scope scope) =>
            Truthy(test.Eval(scope)) ? then.Eval(scope) : otherwise is null ? new Undefined("else") : otherwise.Eval(scope);
    }

    // ================================================================= parser

    sealed class Parser(List<Tok> tokens)
    {
        int _pos;
        Tok Cur => tokens[_pos];
        Tok Peek(int k = 1) => tokens[Math.Min(_pos + k, tokens.Count - 1)];
        Tok Next() => tokens[_pos++];

        bool AcceptOp(string op)
        {
            if (!Cur.IsOp(op)) return false;
            _pos++;
            return true;
        }

        bool AcceptName(string name)
        {
            if (!Cur.IsName(name)) return false;
            _pos++;
            return true;
        }

        Tok ExpectOp(string op) => Cur.IsOp(op) ? Next() : throw Error(Cur.At, $"expected '{op}', found {Cur}");

        string ExpectName()
        {
            if (Cur.Kind != T.Name) throw Error(Cur.At, $"expected a name, found {Cur}");
            return Next().Value;
        }

        void ExpectBlockEnd()
        {
            if (Cur.Kind != T.BlockClose) throw Error(Cur.At, $"expected the end of the statement ('%}}'), found {Cur}");
            _pos++;
        }

        public List<Node> ParseTemplate()
        {
            var body = ParseBody([], out _);
            return body;
        }

        // Parses nodes until a block statement whose keyword is in endKeywords (left unconsumed after '{%', keyword returned).
        List<Node> ParseBody(string[] endKeywords, out Tok? end)
        {
            var nodes = new List<Node>();
            while (true)
            {
                var t = Cur;
                switch (t.Kind)
                {
                    case T.End:
                        if (endKeywords.Length > 0) throw Error(t.At, $"missing '{{% {endKeywords[^1]} %}}' before the end of the template");
                        end = null;
                        return nodes;
                    case T.Text:
                        nodes.Add(new TextNode(t.At, t.Value));
                        _pos++;
                        break;
                    case T.VarOpen:
                    {
                        _pos++;
                        var e = ParseTuple(withCondexpr: true);
                        if (Cur.Kind != T.VarClose) throw Error(Cur.At, $"expected '}}}}', found {Cur}");
                        _pos++;
                        nodes.Add(new OutputNode(t.At, e));
                        break;
                    }
                    case T.BlockOpen:
                    {
                        var kw = Peek();
                        if (kw.Kind != T.Name) throw Error(kw.At, $"expected a statement name after '{{%', found {kw}");
                        if (endKeywords.Contains(kw.Value))
                        {
                            _pos += 2;
                            end = kw;
                            return nodes;
                        }
                        _pos += 2;
                        nodes.Add(ParseStatement(kw));
                        break;
                    }
                    default:
                        throw Error(t.At, $"unexpected {t}");
                }
            }
        }

        Node ParseStatement(Tok kw)
        {
            switch (kw.Value)
            {
                case "if": return ParseIf(kw);
                case "for": return ParseFor(kw);
                case "set": return ParseSet(kw);
                case "macro": return ParseMacro(kw);
                case "break" or "continue":
                    ExpectBlockEnd();
                    return new SignalNode(kw.At, kw.Value == "break");
                case "generation":
                {
                    // Marks the assistant's part for return_assistant_tokens_mask; renders its body unchanged.
                    ExpectBlockEnd();
                    var body = ParseBody(["endgeneration"], out _);
                    ExpectBlockEnd();
                    return new BlockNode(kw.At, body);
                }
                case "elif" or "else" or "endif" or "endfor" or "endset" or "endmacro" or "endgeneration":
                    throw Error(kw.At, $"'{{% {kw.Value} %}}' without a matching opening statement");
                default:
                    throw Error(kw.At, $"statement '{{% {kw.Value} %}}' is not supported");
            }
        }

        Node ParseIf(Tok kw)
        {
            var branches = new List<(Expr, List<Node>)>();
            var test = ParseTuple(withCondexpr: false);
            while (true)
            {
                ExpectBlockEnd();
                var body = ParseBody(["elif", "else", "endif"], out var end);
                branches.Add((test, body));
                if (end!.Value == "elif") { test = ParseTuple(withCondexpr: false); continue; }
                if (end.Value == "else")
                {
                    ExpectBlockEnd();
                    var otherwise = ParseBody(["endif"], out _);
                    ExpectBlockEnd();
                    return new IfNode(kw.At, branches, otherwise);
                }
                ExpectBlockEnd();
                return new IfNode(kw.At, branches, null);
            }
        }

        Node ParseFor(Tok kw)
        {
            var targets = ParseTargets();
            if (!AcceptName("in")) throw Error(Cur.At, $"expected 'in' in the for statement, found {Cur}");
            var iterable = ParseTuple(withCondexpr: false);
            Expr? filter = AcceptName("if") ? ParseExpression() : null;
            if (Cur.IsName("recursive")) throw Error(Cur.At, "recursive for loops are not supported");
            ExpectBlockEnd();
            var body = ParseBody(["else", "endfor"], out var end);
            List<Node>? otherwise = null;
            if (end!.Value == "else")
            {
                ExpectBlockEnd();
                otherwise = ParseBody(["endfor"], out _);
            }
            ExpectBlockEnd();
            return new ForNode(kw.At, targets, iterable, filter, body, otherwise);
        }

        List<string> ParseTargets()
        {
            bool paren = AcceptOp("(");
            var names = new List<string> { ExpectName() };
            while (AcceptOp(","))
            {
                if (Cur.Kind != T.Name || Cur.Value == "in") break;
                names.Add(ExpectName());
            }
            if (paren) ExpectOp(")");
            return names;
        }

        Node ParseSet(Tok kw)
        {
            var nameTok = Cur;
            if (nameTok.Kind == T.Name && Peek().IsOp("."))
            {
                string ns = ExpectName();
                _pos++;
                string attr = ExpectName();
                ExpectOp("=");
                var v = ParseTuple(withCondexpr: true);
                ExpectBlockEnd();
                return new SetNode(kw.At, [ns], attr, v);
            }
            var names = ParseTargets();
            if (AcceptOp("="))
            {
                var value = ParseTuple(withCondexpr: true);
                ExpectBlockEnd();
                return new SetNode(kw.At, names, null, value);
            }
            if (Cur.IsOp("|")) throw Error(Cur.At, "filters on block assignments ({% set x | f %}) are not supported");
            if (names.Count != 1) throw Error(nameTok.At, "a block assignment sets exactly one name");
            ExpectBlockEnd();
            var body = ParseBody(["endset"], out _);
            ExpectBlockEnd();
            return new SetBlockNode(kw.At, names[0], body);
        }

        Node ParseMacro(Tok kw)
        {
            string name = ExpectName();
            ExpectOp("(");
            var parameters = new List<(string, Expr?)>();
            while (!AcceptOp(")"))
            {
                if (parameters.Count > 0) ExpectOp(",");
                if (Cur.IsOp(")")) { _pos++; break; }
                string p = ExpectName();
                Expr? dflt = AcceptOp("=") ? ParseExpression() : null;
                parameters.Add((p, dflt));
            }
            ExpectBlockEnd();
            var body = ParseBody(["endmacro"], out _);
            if (Cur.Kind == T.Name) _pos++; // {% endmacro name %}
            ExpectBlockEnd();
            return new MacroNode(kw.At, name, parameters, body);
        }

        // ---- expressions (Jinja2's grammar and precedence) ----

        Expr ParseTuple(bool withCondexpr)
        {
            var at = Cur.At;
            var first = withCondexpr ? ParseExpression() : ParseOr();
            if (!Cur.IsOp(",")) return first;
            var items = new List<Expr> { first };
            while (AcceptOp(","))
            {
                if (!StartsExpression(Cur)) break;
                items.Add(withCondexpr ? ParseExpression() : ParseOr());
            }
            return new ListExpr(at, items, tuple: true);
        }

        static bool StartsExpression(Tok t) =>
            t.Kind is T.Name or T.String or T.Int or T.Float || t.IsOp("(") || t.IsOp("[") || t.IsOp("{") || t.IsOp("-") || t.IsOp("+");

        Expr ParseExpression()
        {
            var e = ParseOr();
            while (Cur.IsName("if"))
            {
                var at = Next().At;
                var test = ParseOr();
                Expr? otherwise = AcceptName("else") ? ParseExpression() : null;
                e = new CondExpr(at, test, e, otherwise);
            }
            return e;
        }

        Expr ParseOr()
        {
            var e = ParseAnd();
            while (Cur.IsName("or")) { var at = Next().At; e = new BinaryExpr(at, "or", e, ParseAnd()); }
            return e;
        }

        Expr ParseAnd()
        {
            var e = ParseNot();
            while (Cur.IsName("and")) { var at = Next().At; e = new BinaryExpr(at, "and", e, ParseNot()); }
            return e;
        }

        Expr ParseNot()
        {
            if (Cur.IsName("not")) { var at = Next().At; return new UnaryExpr(at, "not", ParseNot()); }
            return ParseCompare();
        }

        static readonly string[] CompareOps = ["==", "!=", "<", ">", "<=", ">="];

        Expr ParseCompare()
        {
            var e = ParseMath1();
            while (true)
            {
                var t = Cur;
                if (t.Kind == T.Op && CompareOps.Contains(t.Value)) { _pos++; e = new BinaryExpr(t.At, t.Value, e, ParseMath1()); }
                else if (t.IsName("in")) { _pos++; e = new BinaryExpr(t.At, "in", e, ParseMath1()); }
                else if (t.IsName("not") && Peek().IsName("in")) { _pos += 2; e = new BinaryExpr(t.At, "not in", e, ParseMath1()); }
                else return e;
            }
        }

        Expr ParseMath1()
        {
            var e = ParseConcat();
            while (Cur.IsOp("+") || Cur.IsOp("-")) { var t = Next(); e = new BinaryExpr(t.At, t.Value, e, ParseConcat()); }
            return e;
        }

        Expr ParseConcat()
        {
            var e = ParseMath2();
            while (Cur.IsOp("~")) { var t = Next(); e = new BinaryExpr(t.At, "~", e, ParseMath2()); }
            return e;
        }

        Expr ParseMath2()
        {
            var e = ParsePow();
            while (Cur.IsOp("*") || Cur.IsOp("/") || Cur.IsOp("//") || Cur.IsOp("%")) { var t = Next(); e = new BinaryExpr(t.At, t.Value, e, ParsePow()); }
            return e;
        }

        Expr ParsePow()
        {
            var e = ParseUnary(withFilter: true);
            while (Cur.IsOp("**")) { var t = Next(); e = new BinaryExpr(t.At, "**", e, ParseUnary(withFilter: true)); }
            return e;
        }

        Expr ParseUnary(bool withFilter)
        {
            Expr e;
            if (Cur.IsOp("-") || Cur.IsOp("+")) { var t = Next(); e = new UnaryExpr(t.At, t.Value, ParseUnary(withFilter: false)); }
            else e = ParsePrimary();
            e = ParsePostfix(e);
            return withFilter ? ParseFilterExpr(e) : e;
        }

        Expr ParsePrimary()
        {
            var t = Next();
            switch (t.Kind)
            {
                case T.Name:
                    return t.Value switch
                    {
                        "true" or "True" => new Const(t.At, true),
                        "false" or "False" => new Const(t.At, false),
                        "none" or "None" => new Const(t.At, null),
                        _ => new NameExpr(t.At, t.Value),
                    };
                case T.String:
                {
                    var sb = new StringBuilder(t.Value);
                    while (Cur.Kind == T.String) sb.Append(Next().Value); // adjacent literals concatenate
                    return new Const(t.At, sb.ToString());
                }
                case T.Int:
                    return long.TryParse(t.Value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long l)
                        ? new Const(t.At, l) : throw Error(t.At, $"integer literal {t.Value} is out of range");
                case T.Float:
                    return new Const(t.At, double.Parse(t.Value, System.Globalization.CultureInfo.InvariantCulture));
            }
            if (t.IsOp("("))
            {
                if (AcceptOp(")")) return new ListExpr(t.At, [], tuple: true);
                var first = ParseExpression();
                if (AcceptOp(")")) return first;
                var items = new List<Expr> { first };
                while (AcceptOp(","))
                {
                    if (Cur.IsOp(")")) break;
                    items.Add(ParseExpression());
                }
                ExpectOp(")");
                return new ListExpr(t.At, items, tuple: true);
            }
            if (t.IsOp("["))
            {
                var items = new List<Expr>();
                while (!AcceptOp("]"))
                {
                    if (items.Count > 0) { ExpectOp(","); if (AcceptOp("]")) break; }
                    items.Add(ParseExpression());
                }
                return new ListExpr(t.At, items, tuple: false);
            }
            if (t.IsOp("{"))
            {
                var pairs = new List<(Expr, Expr)>();
                while (!AcceptOp("}"))
                {
                    if (pairs.Count > 0) { ExpectOp(","); if (AcceptOp("}")) break; }
                    var k = ParseExpression();
                    ExpectOp(":");
                    pairs.Add((k, ParseExpression()));
                }
                return new DictExpr(t.At, pairs);
            }
            throw Error(t.At, $"unexpected {t} in an expression");
        }

        Expr ParsePostfix(Expr e)
        {
            while (true)
            {
                var t = Cur;
                if (t.IsOp("."))
                {
                    _pos++;
                    var name = Next();
                    if (name.Kind == T.Name) e = new AttrExpr(name.At, e, name.Value);
                    else if (name.Kind == T.Int) e = new ItemExpr(name.At, e, new Const(name.At, long.Parse(name.Value, System.Globalization.CultureInfo.InvariantCulture)));
                    else throw Error(name.At, $"expected an attribute name after '.', found {name}");
                }
                else if (t.IsOp("[")) { _pos++; e = ParseSubscript(t.At, e); }
                else if (t.IsOp("(")) { _pos++; e = ParseCall(t.At, e); }
                else return e;
            }
        }

        Expr ParseSubscript(Loc at, Expr target)
        {
            Expr? start = null, stop = null, step = null;
            bool slice = false;
            if (!Cur.IsOp(":")) start = ParseExpression();
            if (AcceptOp(":"))
            {
                slice = true;
                if (!Cur.IsOp("]") && !Cur.IsOp(":")) stop = ParseExpression();
                if (AcceptOp(":") && !Cur.IsOp("]")) step = ParseExpression();
            }
            ExpectOp("]");
            return slice ? new SliceExpr(at, target, start, stop, step) : new ItemExpr(at, target, start!);
        }

        (List<Expr>, List<(string, Expr)>) ParseArgs()
        {
            var args = new List<Expr>();
            var kwargs = new List<(string, Expr)>();
            while (!AcceptOp(")"))
            {
                if (args.Count + kwargs.Count > 0) { ExpectOp(","); if (AcceptOp(")")) break; }
                if (Cur.IsOp("*") || Cur.IsOp("**")) throw Error(Cur.At, "argument unpacking (*args, **kwargs) is not supported");
                if (Cur.Kind == T.Name && Peek().IsOp("="))
                {
                    string key = Next().Value;
                    _pos++;
                    kwargs.Add((key, ParseExpression()));
                }
                else
                {
                    if (kwargs.Count > 0) throw Error(Cur.At, "a positional argument follows a keyword argument");
                    args.Add(ParseExpression());
                }
            }
            return (args, kwargs);
        }

        Expr ParseCall(Loc at, Expr callee)
        {
            var (args, kwargs) = ParseArgs();
            return new CallExpr(at, callee, args, kwargs);
        }

        Expr ParseFilterExpr(Expr e)
        {
            while (true)
            {
                var t = Cur;
                if (t.IsOp("|"))
                {
                    _pos++;
                    var nameTok = Cur;
                    string name = ExpectName();
                    while (AcceptOp(".")) name += "." + ExpectName();
                    if (!Filters.Contains(name)) throw Error(nameTok.At, $"filter '{name}' is not supported");
                    List<Expr> args = [];
                    List<(string, Expr)> kwargs = [];
                    if (AcceptOp("(")) (args, kwargs) = ParseArgs();
                    e = new FilterExpr(nameTok.At, e, name, args, kwargs);
                }
                else if (t.IsName("is"))
                {
                    _pos++;
                    bool negate = AcceptName("not");
                    var nameTok = Cur;
                    string name;
                    if (nameTok.Kind == T.Name) name = Next().Value;
                    else if (nameTok.Kind == T.Op && CompareOps.Contains(nameTok.Value)) name = Next().Value;
                    else throw Error(nameTok.At, $"expected a test name after 'is', found {nameTok}");
                    if (!Tests.Contains(name)) throw Error(nameTok.At, $"test 'is {name}' is not supported");
                    var args = new List<Expr>();
                    if (AcceptOp("("))
                    {
                        var (a, kw) = ParseArgs();
                        if (kw.Count > 0) throw Error(nameTok.At, $"keyword arguments to test '{name}' are not supported");
                        args = a;
                    }
                    else if ((Cur.Kind is T.Name or T.String or T.Int or T.Float || Cur.IsOp("(") || Cur.IsOp("[") || Cur.IsOp("{"))
                             && !(Cur.Kind == T.Name && Cur.Value is "else" or "or" or "and" or "if" or "is" or "in" or "not"))
                    {
                        args.Add(ParsePostfix(ParsePrimary()));
                    }
                    e = new TestExpr(nameTok.At, e, name, args, negate);
                }
                else if (t.IsOp("(")) { _pos++; e = ParseCall(t.At, e); }
                else return e;
            }
        }
    }
}
