using System.Globalization;
using System.Text;

namespace Ponder.Hosting;

/// <summary>
/// The subset of Jinja2 that chat templates (Llama 3, Qwen2, ChatML, Mistral-style) use, evaluated the way Hugging Face's
/// <c>apply_chat_template</c> does (trim_blocks and lstrip_blocks on): text, <c>{{ expr }}</c>, <c>{# #}</c>,
/// <c>{% if/elif/else/endif %}</c>, <c>{% for x in xs %}</c> with <c>loop.index0/index/first/last/length</c>,
/// <c>{% set %}</c>, whitespace control (<c>-</c>), and expressions: literals, names, <c>a.b</c>, <c>a['b']</c>,
/// <c>a[i]</c>, slices, <c>+ - * / % ~</c>, comparisons, <c>in</c>, <c>and/or/not</c>, <c>x if c else y</c>,
/// <c>is [not] defined/none/string/number/mapping/sequence</c>, filters <c>trim, length, upper, lower, string, tojson</c>
/// and <c>raise_exception(msg)</c>. Anything else (macros, namespace(), call blocks) throws <see cref="NotSupportedException"/>
/// at parse time, so a caller can fall back to a known format.
/// </summary>
internal static class Jinja
{
    /// <summary>Parses <paramref name="source"/> into a template; throws <see cref="NotSupportedException"/> on constructs outside the subset.</summary>
    public static Func<IReadOnlyDictionary<string, object?>, string> Compile(string source)
    {
        var tokens = Lex(source);
        int pos = 0;
        var body = ParseBlock(tokens, ref pos, []);
        if (pos != tokens.Count) throw new NotSupportedException($"chat template: unexpected {{% {tokens[pos].Text} %}}");
        return vars =>
        {
            var sb = new StringBuilder();
            var scope = new Scope(null);
            foreach (var (k, v) in vars) scope.Vars[k] = v;
            foreach (var n in body) n.Render(sb, scope);
            return sb.ToString();
        };
    }

    // ---- lexing: text / output / statement pieces, with whitespace control applied ----

    enum Kind { Text, Output, Statement }
    sealed record Piece(Kind Kind, string Text);

    static List<Piece> Lex(string s)
    {
        var pieces = new List<Piece>();
        int i = 0;
        bool trimNextLeading = false, trimNextNewline = false;
        while (i < s.Length)
        {
            int open = NextOpen(s, i);
            string text = s[i..(open < 0 ? s.Length : open)];
            if (trimNextLeading) text = text.TrimStart();
            else if (trimNextNewline) text = text.StartsWith("\r\n", StringComparison.Ordinal) ? text[2..] : text.StartsWith('\n') ? text[1..] : text;
            trimNextLeading = trimNextNewline = false;
            if (open < 0) { if (text.Length > 0) pieces.Add(new Piece(Kind.Text, text)); break; }
            char kind = s[open + 1];
            bool trimLeft = open + 2 < s.Length && s[open + 2] == '-';
            string close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
            int end = s.IndexOf(close, open + 2, StringComparison.Ordinal);
            if (end < 0) throw new NotSupportedException($"chat template: unclosed '{s.Substring(open, 2)}' at offset {open}");
            bool trimRight = s[end - 1] == '-' && end - 1 > open + 2;
            string inner = s[(open + 2 + (trimLeft ? 1 : 0))..(end - (trimRight ? 1 : 0))].Trim();
            if (trimLeft) text = text.TrimEnd();
            else if (kind == '%') text = LstripBlock(text);
            if (text.Length > 0) pieces.Add(new Piece(Kind.Text, text));
            if (kind == '{') pieces.Add(new Piece(Kind.Output, inner));
            else if (kind == '%') pieces.Add(new Piece(Kind.Statement, inner));
            i = end + 2;
            trimNextLeading = trimRight;
            trimNextNewline = !trimRight && kind != '{';
        }
        return pieces;
    }

    static int NextOpen(string s, int from)
    {
        for (int i = s.IndexOf('{', from); i >= 0 && i + 1 < s.Length; i = s.IndexOf('{', i + 1))
            if (s[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    // lstrip_blocks: spaces and tabs between the start of a line and a block tag are removed.
    static string LstripBlock(string text)
    {
        int j = text.Length;
        while (j > 0 && text[j - 1] is ' ' or '\t') j--;
        return j == 0 || text[j - 1] == '\n' ? text[..j] : text;
    }

    // ---- statements ----

    abstract class Node { public abstract void Render(StringBuilder sb, Scope scope); }

    sealed class TextNode(string text) : Node { public override void Render(StringBuilder sb, Scope scope) => sb.Append(text); }

    sealed class OutputNode(Expr e) : Node { public override void Render(StringBuilder sb, Scope scope) => sb.Append(Str(e.Eval(scope))); }

    sealed class SetNode(string name, Expr e) : Node { public override void Render(StringBuilder sb, Scope scope) => scope.Vars[name] = e.Eval(scope); }

    sealed class IfNode(List<(Expr Cond, List<Node> Body)> branches, List<Node>? otherwise) : Node
    {
        public override void Render(StringBuilder sb, Scope scope)
        {
            foreach (var (cond, body) in branches)
                if (Truthy(cond.Eval(scope))) { foreach (var n in body) n.Render(sb, scope); return; }
            if (otherwise is not null) foreach (var n in otherwise) n.Render(sb, scope);
        }
    }

    sealed class ForNode(string name, Expr items, List<Node> body, List<Node>? otherwise) : Node
    {
        public override void Render(StringBuilder sb, Scope scope)
        {
            var list = Items(items.Eval(scope));
            if (list.Count == 0 && otherwise is not null) { foreach (var n in otherwise) n.Render(sb, scope); return; }
            for (int i = 0; i < list.Count; i++)
            {
                var inner = new Scope(scope);
                inner.Vars[name] = list[i];
                inner.Vars["loop"] = new Dictionary<string, object?>
                {
                    ["index0"] = (long)i, ["index"] = (long)i + 1, ["first"] = i == 0, ["last"] = i == list.Count - 1,
                    ["length"] = (long)list.Count, ["revindex0"] = (long)(list.Count - 1 - i), ["revindex"] = (long)(list.Count - i),
                    ["previtem"] = i > 0 ? list[i - 1] : null, ["nextitem"] = i + 1 < list.Count ? list[i + 1] : null,
                };
                foreach (var n in body) n.Render(sb, inner);
            }
        }

        static List<object?> Items(object? v) => v switch
        {
            null => [],
            List<object?> l => l,
            Dictionary<string, object?> d => [.. d.Keys],
            string s => [.. s.Select(c => (object?)c.ToString())],
            _ => throw new InvalidOperationException($"chat template: cannot iterate over {TypeName(v)}"),
        };
    }

    sealed class Scope(Scope? parent)
    {
        public readonly Dictionary<string, object?> Vars = [];
        public bool TryGet(string name, out object? value)
        {
            for (var s = this; s is not null; s = s.Parent)
                if (s.Vars.TryGetValue(name, out value)) return true;
            value = null;
            return false;
        }
        Scope? Parent => parent;
    }

    static List<Node> ParseBlock(List<Piece> pieces, ref int pos, string[] terminators)
    {
        var nodes = new List<Node>();
        while (pos < pieces.Count)
        {
            var p = pieces[pos];
            if (p.Kind == Kind.Text) { nodes.Add(new TextNode(p.Text)); pos++; continue; }
            if (p.Kind == Kind.Output) { nodes.Add(new OutputNode(ParseExpr(p.Text))); pos++; continue; }
            string keyword = FirstWord(p.Text);
            if (terminators.Contains(keyword)) return nodes;
            pos++;
            string rest = p.Text[keyword.Length..].Trim();
            switch (keyword)
            {
                case "set":
                {
                    int eq = rest.IndexOf('=');
                    if (eq < 0) throw new NotSupportedException("chat template: block {% set %} is not supported");
                    string name = rest[..eq].Trim();
                    if (!IsIdentifier(name)) throw new NotSupportedException($"chat template: cannot set '{name}' (only plain names)");
                    nodes.Add(new SetNode(name, ParseExpr(rest[(eq + 1)..])));
                    break;
                }
                case "if":
                {
                    var branches = new List<(Expr, List<Node>)>();
                    List<Node>? otherwise = null;
                    var cond = ParseExpr(rest);
                    while (true)
                    {
                        var body = ParseBlock(pieces, ref pos, ["elif", "else", "endif"]);
                        if (pos >= pieces.Count) throw new NotSupportedException("chat template: {% if %} without {% endif %}");
                        branches.Add((cond, body));
                        string k = FirstWord(pieces[pos].Text);
                        string r = pieces[pos].Text[k.Length..].Trim();
                        pos++;
                        if (k == "elif") { cond = ParseExpr(r); continue; }
                        if (k == "else")
                        {
                            otherwise = ParseBlock(pieces, ref pos, ["endif"]);
                            if (pos >= pieces.Count) throw new NotSupportedException("chat template: {% if %} without {% endif %}");
                            pos++;
                        }
                        break;
                    }
                    nodes.Add(new IfNode(branches, otherwise));
                    break;
                }
                case "for":
                {
                    int inAt = rest.IndexOf(" in ", StringComparison.Ordinal);
                    if (inAt < 0) throw new NotSupportedException($"chat template: malformed {{% for {rest} %}}");
                    string name = rest[..inAt].Trim();
                    if (!IsIdentifier(name)) throw new NotSupportedException($"chat template: for-loop target '{name}' is not supported (only one name)");
                    var items = ParseExpr(rest[(inAt + 4)..]);
                    var body = ParseBlock(pieces, ref pos, ["else", "endfor"]);
                    if (pos >= pieces.Count) throw new NotSupportedException("chat template: {% for %} without {% endfor %}");
                    List<Node>? otherwise = null;
                    if (FirstWord(pieces[pos].Text) == "else")
                    {
                        pos++;
                        otherwise = ParseBlock(pieces, ref pos, ["endfor"]);
                        if (pos >= pieces.Count) throw new NotSupportedException("chat template: {% for %} without {% endfor %}");
                    }
                    pos++;
                    nodes.Add(new ForNode(name, items, body, otherwise));
                    break;
                }
                default:
                    throw new NotSupportedException($"chat template: statement '{keyword}' is not supported");
            }
        }
        if (terminators.Length > 0) throw new NotSupportedException($"chat template: missing {{% {terminators[^1]} %}}");
        return nodes;
    }

    static string FirstWord(string s)
    {
        int i = 0;
        while (i < s.Length && (char.IsLetterOrDigit(s[i]) || s[i] == '_')) i++;
        return s[..i];
    }

    static bool IsIdentifier(string s) => s.Length > 0 && (char.IsLetter(s[0]) || s[0] == '_') && s.All(c => char.IsLetterOrDigit(c) || c == '_');

    // ---- expressions ----

    abstract class Expr { public abstract object? Eval(Scope scope); }
    sealed class Const(object? v) : Expr { public override object? Eval(Scope scope) => v; }
    sealed class Name(string n) : Expr
    {
        public readonly string Id = n;
        public override object? Eval(Scope scope) => scope.TryGet(Id, out var v) ? v : Undefined.Value;
    }
    sealed class ListLit(List<Expr> items) : Expr { public override object? Eval(Scope scope) => items.Select(e => e.Eval(scope)).ToList(); }
    sealed class Fn(Func<Scope, object?> f) : Expr { public override object? Eval(Scope scope) => f(scope); }

    /// <summary>What a missing name or key evaluates to: falsy, prints as "", fails `is defined`.</summary>
    sealed class Undefined { public static readonly Undefined Value = new(); }

    static Expr ParseExpr(string text)
    {
        var p = new ExprParser(text);
        var e = p.Conditional();
        if (!p.AtEnd) throw new NotSupportedException($"chat template: cannot parse expression '{text}' at '{p.Rest}'");
        return e;
    }

    sealed class ExprParser(string s)
    {
        int _i;
        public bool AtEnd { get { Skip(); return _i >= s.Length; } }
        public string Rest => s[_i..];

        void Skip() { while (_i < s.Length && char.IsWhiteSpace(s[_i])) _i++; }

        bool Peek(string token, bool word = false)
        {
            Skip();
            if (string.CompareOrdinal(s, _i, token, 0, token.Length) != 0) return false;
            return !word || _i + token.Length >= s.Length || !(char.IsLetterOrDigit(s[_i + token.Length]) || s[_i + token.Length] == '_');
        }

        bool Accept(string token, bool word = false)
        {
            if (!Peek(token, word)) return false;
            _i += token.Length;
            return true;
        }

        void Expect(string token)
        {
            if (!Accept(token)) throw new NotSupportedException($"chat template: expected '{token}' in '{s}' at '{Rest}'");
        }

        public Expr Conditional()
        {
            var then = Or();
            if (!Accept("if", word: true)) return then;
            var cond = Or();
            Expr? otherwise = Accept("else", word: true) ? Conditional() : null;
            return new Fn(sc => Truthy(cond.Eval(sc)) ? then.Eval(sc) : otherwise?.Eval(sc) ?? Undefined.Value);
        }

        Expr Or()
        {
            var l = And();
            while (Accept("or", word: true)) { var a = l; var b = And(); l = new Fn(sc => { var x = a.Eval(sc); return Truthy(x) ? x : b.Eval(sc); }); }
            return l;
        }

        Expr And()
        {
            var l = Not();
            while (Accept("and", word: true)) { var a = l; var b = Not(); l = new Fn(sc => { var x = a.Eval(sc); return !Truthy(x) ? x : b.Eval(sc); }); }
            return l;
        }

        Expr Not()
        {
            if (Accept("not", word: true)) { var e = Not(); return new Fn(sc => !Truthy(e.Eval(sc))); }
            return Compare();
        }

        Expr Compare()
        {
            var l = Additive();
            while (true)
            {
                var a = l;
                if (Accept("==")) { var b = Additive(); l = new Fn(sc => Equal(a.Eval(sc), b.Eval(sc))); }
                else if (Accept("!=")) { var b = Additive(); l = new Fn(sc => !Equal(a.Eval(sc), b.Eval(sc))); }
                else if (Accept("<=")) { var b = Additive(); l = new Fn(sc => Order(a.Eval(sc), b.Eval(sc)) <= 0); }
                else if (Accept(">=")) { var b = Additive(); l = new Fn(sc => Order(a.Eval(sc), b.Eval(sc)) >= 0); }
                else if (Accept("<")) { var b = Additive(); l = new Fn(sc => Order(a.Eval(sc), b.Eval(sc)) < 0); }
                else if (Accept(">")) { var b = Additive(); l = new Fn(sc => Order(a.Eval(sc), b.Eval(sc)) > 0); }
                else if (Accept("in", word: true)) { var b = Additive(); l = new Fn(sc => Contains(b.Eval(sc), a.Eval(sc))); }
                else if (Peek("not", word: true) && LooksLikeNotIn()) { _i += 3; Expect("in"); var b = Additive(); l = new Fn(sc => !Contains(b.Eval(sc), a.Eval(sc))); }
                else if (Accept("is", word: true))
                {
                    bool negate = Accept("not", word: true);
                    string test = Identifier();
                    l = new Fn(sc => Test(test, a.Eval(sc)) ^ negate);
                }
                else return l;
            }
        }

        bool LooksLikeNotIn()
        {
            int save = _i;
            _i += 3;
            bool r = Peek("in", word: true);
            _i = save;
            return r;
        }

        Expr Additive()
        {
            var l = Multiplicative();
            while (true)
            {
                var a = l;
                if (Accept("+")) { var b = Multiplicative(); l = new Fn(sc => Add(a.Eval(sc), b.Eval(sc))); }
                else if (Peek("-") && !Peek("-}") && !Peek("-%")) { _i++; var b = Multiplicative(); l = new Fn(sc => Arith(a.Eval(sc), b.Eval(sc), '-')); }
                else if (Accept("~")) { var b = Multiplicative(); l = new Fn(sc => Str(a.Eval(sc)) + Str(b.Eval(sc))); }
                else return l;
            }
        }

        Expr Multiplicative()
        {
            var l = Unary();
            while (true)
            {
                var a = l;
                if (Accept("*")) { var b = Unary(); l = new Fn(sc => Arith(a.Eval(sc), b.Eval(sc), '*')); }
                else if (Accept("//")) { var b = Unary(); l = new Fn(sc => (long)Math.Floor(Num(a.Eval(sc)) / Num(b.Eval(sc)))); }
                else if (Accept("/")) { var b = Unary(); l = new Fn(sc => Num(a.Eval(sc)) / Num(b.Eval(sc))); }
                else if (Accept("%")) { var b = Unary(); l = new Fn(sc => Arith(a.Eval(sc), b.Eval(sc), '%')); }
                else return l;
            }
        }

        Expr Unary()
        {
            if (Accept("-")) { var e = Unary(); return new Fn(sc => e.Eval(sc) is long l ? -l : (object)-Num(e.Eval(sc))); }
            return Postfix();
        }

        Expr Postfix()
        {
            var e = Primary();
            while (true)
            {
                var target = e;
                if (Accept("."))
                {
                    string key = Identifier();
                    e = new Fn(sc => Member(target.Eval(sc), key));
                }
                else if (Accept("["))
                {
                    Expr? start = Peek(":") ? null : Conditional();
                    if (Accept(":"))
                    {
                        Expr? stop = Peek("]") ? null : Conditional();
                        Expect("]");
                        e = new Fn(sc => Slice(target.Eval(sc), start?.Eval(sc), stop?.Eval(sc)));
                    }
                    else
                    {
                        Expect("]");
                        e = new Fn(sc => Index(target.Eval(sc), start!.Eval(sc)));
                    }
                }
                else if (Accept("|"))
                {
                    string filter = Identifier();
                    if (Accept("(")) throw new NotSupportedException($"chat template: filter arguments ({filter}(...)) are not supported");
                    e = new Fn(sc => Filter(filter, target.Eval(sc)));
                }
                else return e;
            }
        }

        Expr Primary()
        {
            Skip();
            if (_i >= s.Length) throw new NotSupportedException($"chat template: expression '{s}' ends early");
            char c = s[_i];
            if (c is '\'' or '"') return new Const(StringLiteral());
            if (char.IsDigit(c))
            {
                int start = _i;
                while (_i < s.Length && (char.IsDigit(s[_i]) || s[_i] == '.')) _i++;
                string n = s[start.._i];
                return new Const(n.Contains('.') ? double.Parse(n, CultureInfo.InvariantCulture) : (object)long.Parse(n, CultureInfo.InvariantCulture));
            }
            if (Accept("("))
            {
                var e = Conditional();
                Expect(")");
                return e;
            }
            if (Accept("["))
            {
                var items = new List<Expr>();
                while (!Accept("]"))
                {
                    items.Add(Conditional());
                    if (!Accept(",")) { Expect("]"); break; }
                }
                return new ListLit(items);
            }
            string id = Identifier();
            switch (id)
            {
                case "true" or "True": return new Const(true);
                case "false" or "False": return new Const(false);
                case "none" or "None": return new Const(null);
            }
            if (Accept("("))
            {
                if (id != "raise_exception") throw new NotSupportedException($"chat template: function '{id}' is not supported");
                var message = Conditional();
                Expect(")");
                return new Fn(sc => throw new ArgumentException($"the chat template refused the messages: {Str(message.Eval(sc))}"));
            }
            return new Name(id);
        }

        string Identifier()
        {
            Skip();
            int start = _i;
            while (_i < s.Length && (char.IsLetterOrDigit(s[_i]) || s[_i] == '_')) _i++;
            if (_i == start) throw new NotSupportedException($"chat template: expected a name in '{s}' at '{Rest}'");
            return s[start.._i];
        }

        string StringLiteral()
        {
            char quote = s[_i++];
            var sb = new StringBuilder();
            while (_i < s.Length && s[_i] != quote)
            {
                char c = s[_i++];
                if (c == '\\' && _i < s.Length)
                {
                    char e = s[_i++];
                    sb.Append(e switch { 'n' => '\n', 't' => '\t', 'r' => '\r', _ => e });
                }
                else sb.Append(c);
            }
            if (_i >= s.Length) throw new NotSupportedException($"chat template: unterminated string in '{s}'");
            _i++;
            return sb.ToString();
        }
    }

    // ---- values ----

    static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        string s => s.Length > 0,
        long l => l != 0,
        double d => d != 0,
        List<object?> l => l.Count > 0,
        Dictionary<string, object?> d => d.Count > 0,
        _ => true,
    };

    static string Str(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        bool b => b ? "True" : "False",
        double d => d.ToString(CultureInfo.InvariantCulture),
        long l => l.ToString(CultureInfo.InvariantCulture),
        _ => ToJson(v),
    };

    static double Num(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new InvalidOperationException($"chat template: {TypeName(v)} is not a number"),
    };

    // Integers stay integers (so computed indexes work); anything else is float arithmetic.
    static object Arith(object? a, object? b, char op) => (a, b, op) switch
    {
        (long x, long y, '-') => x - y,
        (long x, long y, '*') => x * y,
        (long x, long y, '%') when y != 0 => ((x % y) + y) % y,
        (_, _, '-') => Num(a) - Num(b),
        (_, _, '*') => Num(a) * Num(b),
        _ => Num(a) % Num(b),
    };

    static object? Add(object? a, object? b) => (a, b) switch
    {
        (long x, long y) => x + y,
        (long or double, long or double) => Num(a) + Num(b),
        (List<object?> x, List<object?> y) => new List<object?>([.. x, .. y]),
        (string x, string y) => x + y,
        _ => throw new InvalidOperationException($"chat template: cannot add {TypeName(a)} and {TypeName(b)}"),
    };

    static bool Equal(object? a, object? b) => (a, b) switch
    {
        (long or double, long or double) => Num(a) == Num(b),
        (Undefined, _) or (_, Undefined) => false,
        _ => Equals(a, b),
    };

    static int Order(object? a, object? b) => (a, b) switch
    {
        (string x, string y) => string.CompareOrdinal(x, y),
        _ => Num(a).CompareTo(Num(b)),
    };

    static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string t && s.Contains(t, StringComparison.Ordinal),
        List<object?> l => l.Any(x => Equal(x, item)),
        Dictionary<string, object?> d => item is string k && d.ContainsKey(k),
        _ => false,
    };

    static bool Test(string test, object? v) => test switch
    {
        "defined" => v is not Undefined,
        "undefined" => v is Undefined,
        "none" => v is null,
        "string" => v is string,
        "number" => v is long or double,
        "mapping" => v is Dictionary<string, object?>,
        "sequence" or "iterable" => v is List<object?> or string,
        "true" => v is true,
        "false" => v is false,
        _ => throw new NotSupportedException($"chat template: test 'is {test}' is not supported"),
    };

    static object? Member(object? target, string key) => target is Dictionary<string, object?> d && d.TryGetValue(key, out var v) ? v : Undefined.Value;

    static object? Index(object? target, object? key) => (target, key) switch
    {
        (Dictionary<string, object?> d, string k) => d.TryGetValue(k, out var v) ? v : Undefined.Value,
        (List<object?> l, long i) => i >= -l.Count && i < l.Count ? l[(int)(i < 0 ? i + l.Count : i)] : Undefined.Value,
        (string s, long i) => i >= -s.Length && i < s.Length ? s[(int)(i < 0 ? i + s.Length : i)].ToString() : Undefined.Value,
        _ => Undefined.Value,
    };

    static object? Slice(object? target, object? start, object? stop)
    {
        int count = target switch { List<object?> l => l.Count, string s => s.Length, _ => throw new InvalidOperationException($"chat template: cannot slice {TypeName(target)}") };
        int Clamp(object? v, int dflt) => v is null ? dflt : Math.Clamp((int)(Num(v) < 0 ? Num(v) + count : Num(v)), 0, count);
        int a = Clamp(start, 0), b = Math.Max(a, Clamp(stop, count));
        return target is string str ? str[a..b] : ((List<object?>)target!).GetRange(a, b - a);
    }

    static object? Filter(string name, object? v) => name switch
    {
        "trim" => Str(v).Trim(),
        "upper" => Str(v).ToUpperInvariant(),
        "lower" => Str(v).ToLowerInvariant(),
        "string" => Str(v),
        "length" or "count" => (long)(v switch { string s => s.Length, List<object?> l => l.Count, Dictionary<string, object?> d => d.Count, _ => 0 }),
        "tojson" => ToJson(v),
        _ => throw new NotSupportedException($"chat template: filter '{name}' is not supported"),
    };

    static string ToJson(object? v) => v switch
    {
        null or Undefined => "null",
        string s => System.Text.Json.JsonSerializer.Serialize(s),
        bool b => b ? "true" : "false",
        long or double => Str(v),
        List<object?> l => "[" + string.Join(", ", l.Select(ToJson)) + "]",
        Dictionary<string, object?> d => "{" + string.Join(", ", d.Select(kv => ToJson(kv.Key) + ": " + ToJson(kv.Value))) + "}",
        _ => ToJson(v.ToString()),
    };

    static string TypeName(object? v) => v switch
    {
        null => "none",
        Undefined => "an undefined value",
        _ => v.GetType().Name,
    };
}
