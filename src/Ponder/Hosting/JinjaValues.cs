using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Ponder.Hosting;

// Values and operations of the Jinja interpreter, with Python's semantics. Values are: null (None), Undefined, bool,
// long, double, string, List<object?> (list), PyTuple, Dictionary<string, object?> (dict, insertion-ordered as
// nothing is ever removed), Namespace, LoopInfo and ICallable.
internal static partial class Jinja
{
    /// <summary>A missing variable, key or attribute: prints as "", is falsy, iterates as empty; most operations on it fail (Jinja2's Undefined).</summary>
    internal sealed class Undefined(string name)
    {
        public string Name => name;
    }

    internal sealed class PyTuple(List<object?> items)
    {
        public List<object?> Items => items;
    }

    internal sealed class Namespace
    {
        public Dictionary<string, object?> Values { get; } = new(StringComparer.Ordinal);
    }

    internal interface ICallable
    {
        object? Call(List<object?> args, Dictionary<string, object?> kwargs, Loc at);
    }

    sealed class Builtin(string name, Func<List<object?>, Dictionary<string, object?>, Loc, object?> body) : ICallable
    {
        public string Name => name;
        public object? Call(List<object?> args, Dictionary<string, object?> kwargs, Loc at) => body(args, kwargs, at);
    }

    sealed class LoopInfo(List<object?> items, int index)
    {
        public object? Get(string name, Loc at) => name switch
        {
            "index0" => (long)index,
            "index" => (long)index + 1,
            "revindex0" => (long)(items.Count - 1 - index),
            "revindex" => (long)(items.Count - index),
            "first" => index == 0,
            "last" => index == items.Count - 1,
            "length" => (long)items.Count,
            "depth" => 1L,
            "depth0" => 0L,
            "previtem" => index > 0 ? items[index - 1] : new Undefined("loop.previtem"),
            "nextitem" => index + 1 < items.Count ? items[index + 1] : new Undefined("loop.nextitem"),
            "cycle" => new Builtin("loop.cycle", (args, _, a) => args.Count == 0 ? throw Error(a, "loop.cycle() needs at least one value") : args[index % args.Count]),
            _ => throw Error(at, $"loop.{name} is not supported"),
        };
    }

    // ---- globals ----

    static readonly (string Name, object? Value)[] Globals =
    [
        ("namespace", new Builtin("namespace", (args, kwargs, at) =>
        {
            var ns = new Namespace();
            if (args.Count > 1) throw Error(at, $"namespace() takes at most one positional argument, {args.Count} given");
            if (args.Count == 1)
            {
                if (args[0] is not Dictionary<string, object?> d) throw Error(at, $"namespace() takes a mapping, not {TypeName(args[0])}");
                foreach (var (k, v) in d) ns.Values[k] = v;
            }
            foreach (var (k, v) in kwargs) ns.Values[k] = v;
            return ns;
        })),
        ("dict", new Builtin("dict", (args, kwargs, at) =>
        {
            var d = new Dictionary<string, object?>(StringComparer.Ordinal);
            if (args.Count > 0)
            {
                if (args.Count > 1 || args[0] is not Dictionary<string, object?> src) throw Error(at, "dict() takes at most one mapping");
                foreach (var (k, v) in src) d[k] = v;
            }
            foreach (var (k, v) in kwargs) d[k] = v;
            return d;
        })),
        ("range", new Builtin("range", (args, _, at) =>
        {
            long start = 0, stop, step = 1;
            switch (args.Count)
            {
                case 1: stop = Int(args[0], at); break;
                case 2: start = Int(args[0], at); stop = Int(args[1], at); break;
                case 3: start = Int(args[0], at); stop = Int(args[1], at); step = Int(args[2], at); break;
                default: throw Error(at, $"range() takes 1 to 3 arguments, {args.Count} given");
            }
            if (step == 0) throw Error(at, "range() step must not be zero");
            var list = new List<object?>();
            for (long v = start; step > 0 ? v < stop : v > stop; v += step)
            {
                if (list.Count >= 100_000) throw Error(at, "range() of more than 100,000 items");
                list.Add(v);
            }
            return list;
        })),
        ("raise_exception", new Builtin("raise_exception", (args, _, _) => throw new RaisedException(args.Count > 0 ? Str(args[0]) : "raise_exception()"))),
        ("strftime_now", new Builtin("strftime_now", (args, _, at) =>
            args.Count == 1 && args[0] is string f ? Strftime(DateTime.Now, f, at) : throw Error(at, "strftime_now(format) takes one string"))),
    ];

    static string Strftime(DateTime t, string format, Loc at)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length) { sb.Append(format[i]); continue; }
            char c = format[++i];
            sb.Append(c switch
            {
                'd' => t.ToString("dd", CultureInfo.InvariantCulture),
                'm' => t.ToString("MM", CultureInfo.InvariantCulture),
                'Y' => t.ToString("yyyy", CultureInfo.InvariantCulture),
                'y' => t.ToString("yy", CultureInfo.InvariantCulture),
                'b' => t.ToString("MMM", CultureInfo.InvariantCulture),
                'B' => t.ToString("MMMM", CultureInfo.InvariantCulture),
                'a' => t.ToString("ddd", CultureInfo.InvariantCulture),
                'A' => t.ToString("dddd", CultureInfo.InvariantCulture),
                'H' => t.ToString("HH", CultureInfo.InvariantCulture),
                'M' => t.ToString("mm", CultureInfo.InvariantCulture),
                'S' => t.ToString("ss", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => throw Error(at, $"strftime_now: format code '%{c}' is not supported"),
            });
        }
        return sb.ToString();
    }

    // ---- conversion from .NET / JSON ----

    /// <summary>A .NET value (string, bool, integer, floating point, JsonElement, dictionary, sequence) as a template value.</summary>
    public static object? FromClr(object? v) => v switch
    {
        null => null,
        string or bool or long or double => v,
        int or short or byte or sbyte or uint or ushort => Convert.ToInt64(v, CultureInfo.InvariantCulture),
        ulong u => u <= long.MaxValue ? (long)u : (object)(double)u,
        float or decimal => Convert.ToDouble(v, CultureInfo.InvariantCulture),
        JsonElement e => FromJson(e),
        IReadOnlyDictionary<string, object?> d => d.ToDictionary(kv => kv.Key, kv => FromClr(kv.Value), StringComparer.Ordinal),
        IDictionary<string, object?> d => d.ToDictionary(kv => kv.Key, kv => FromClr(kv.Value), StringComparer.Ordinal),
        System.Collections.IEnumerable seq => seq.Cast<object?>().Select(FromClr).ToList(),
        _ => throw new ArgumentException($"a chat template variable cannot hold a {v.GetType().Name}"),
    };

    static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        JsonValueKind.Number => e.TryGetInt64(out long l) ? l : (object)e.GetDouble(),
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        _ => e.EnumerateObject().ToDictionary(p => p.Name, p => FromJson(p.Value), StringComparer.Ordinal),
    };

    // ---- Python semantics ----

    static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        PyTuple t => t.Items.Count > 0,
        Dictionary<string, object?> d => d.Count > 0,
        _ => true,
    };

    static string TypeName(object? v) => v switch
    {
        null => "None",
        Undefined u => $"undefined '{u.Name}'",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        PyTuple => "tuple",
        Dictionary<string, object?> => "dict",
        Namespace => "namespace",
        LoopInfo => "loop",
        _ => "function",
    };

    /// <summary>Python's str().</summary>
    static string Str(object? v) => v switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(v),
    };

    /// <summary>Python's repr() (str() of containers uses it for their items).</summary>
    static string Repr(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatRepr(d),
        string s => StringRepr(s),
        List<object?> l => "[" + string.Join(", ", l.Select(Repr)) + "]",
        PyTuple t => t.Items.Count == 1 ? "(" + Repr(t.Items[0]) + ",)" : "(" + string.Join(", ", t.Items.Select(Repr)) + ")",
        Dictionary<string, object?> d => "{" + string.Join(", ", d.Select(kv => StringRepr(kv.Key) + ": " + Repr(kv.Value))) + "}",
        Namespace ns => "<Namespace " + Repr(ns.Values) + ">",
        Macro m => $"<Macro '{m.Name}'>",
        _ => "<function>",
    };

    static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == Math.Floor(d) && Math.Abs(d) < 1e16) return d.ToString("0.0", CultureInfo.InvariantCulture);
        string r = d.ToString("R", CultureInfo.InvariantCulture);
        int e = r.IndexOf('E');
        if (e < 0) return r;
        // Python writes 1e+16 / 1e-05 (at least two exponent digits).
        string mantissa = r[..e], exp = r[(e + 1)..];
        char sign = exp[0] == '-' ? '-' : '+';
        exp = exp.TrimStart('+', '-');
        return mantissa + "e" + sign + (exp.Length < 2 ? "0" + exp : exp);
    }

    static string StringRepr(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder().Append(quote);
        foreach (char c in s)
        {
            if (c == quote || c == '\\') sb.Append('\\').Append(c);
            else if (c == '\n') sb.Append("\\n");
            else if (c == '\r') sb.Append("\\r");
            else if (c == '\t') sb.Append("\\t");
            else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        return sb.Append(quote).ToString();
    }

    static long Int(object? v, Loc at) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw Error(at, $"an integer is required, not {TypeName(v)}"),
    };

    static bool IsNumber(object? v) => v is long or double or bool;

    static double Num(object? v) => v switch { long l => l, double d => d, bool b => b ? 1 : 0, _ => double.NaN };

    static bool PyEquals(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b)) return a is double || b is double ? Num(a) == Num(b) : Int(a, default) == Int(b, default);
        return (a, b) switch
        {
            (null, null) => true,
            (Undefined, Undefined) => true,
            (string x, string y) => string.Equals(x, y, StringComparison.Ordinal),
            (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => PyEquals(p.First, p.Second)),
            (PyTuple x, PyTuple y) => x.Items.Count == y.Items.Count && x.Items.Zip(y.Items).All(p => PyEquals(p.First, p.Second)),
            (Dictionary<string, object?> x, Dictionary<string, object?> y) => x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var w) && PyEquals(kv.Value, w)),
            _ => ReferenceEquals(a, b),
        };
    }

    static int Compare(object? a, object? b, string op, Loc at)
    {
        if (IsNumber(a) && IsNumber(b)) return Num(a).CompareTo(Num(b));
        if (a is string x && b is string y) return string.CompareOrdinal(x, y);
        if (a is List<object?> l1 && b is List<object?> l2)
        {
            for (int i = 0; i < Math.Min(l1.Count, l2.Count); i++)
                if (!PyEquals(l1[i], l2[i])) return Compare(l1[i], l2[i], op, at);
            return l1.Count.CompareTo(l2.Count);
        }
        throw Error(at, $"'{op}' is not supported between {TypeName(a)} and {TypeName(b)}");
    }

    static bool Contains(object? container, object? item, Loc at) => container switch
    {
        string s => item is string t ? s.Contains(t, StringComparison.Ordinal) : throw Error(at, $"'in <string>' requires a string on the left, not {TypeName(item)}"),
        List<object?> l => l.Any(x => PyEquals(x, item)),
        PyTuple t => t.Items.Any(x => PyEquals(x, item)),
        Dictionary<string, object?> d => item is string k && d.ContainsKey(k),
        Undefined => false,
        _ => throw Error(at, $"argument of type {TypeName(container)} is not iterable"),
    };

    static object? Binary(string op, object? l, object? r, Loc at)
    {
        switch (op)
        {
            case "==": return PyEquals(l, r);
            case "!=": return !PyEquals(l, r);
            case "<": return Compare(l, r, op, at) < 0;
            case ">": return Compare(l, r, op, at) > 0;
            case "<=": return Compare(l, r, op, at) <= 0;
            case ">=": return Compare(l, r, op, at) >= 0;
            case "in": return Contains(r, l, at);
            case "not in": return !Contains(r, l, at);
            case "~": return Str(l) + Str(r);
        }
        if (l is Undefined ul) throw Error(at, $"'{ul.Name}' is undefined (operand of '{op}')");
        if (r is Undefined ur) throw Error(at, $"'{ur.Name}' is undefined (operand of '{op}')");
        bool ints = l is long or bool && r is long or bool;
        switch (op)
        {
            case "+":
                if (IsNumber(l) && IsNumber(r)) return ints ? checked(Int(l, at) + Int(r, at)) : (object)(Num(l) + Num(r));
                if (l is string s1 && r is string s2) return s1 + s2;
                if (l is List<object?> a1 && r is List<object?> a2) return new List<object?>([.. a1, .. a2]);
                if (l is PyTuple t1 && r is PyTuple t2) return new PyTuple([.. t1.Items, .. t2.Items]);
                break;
            case "-":
                if (IsNumber(l) && IsNumber(r)) return ints ? checked(Int(l, at) - Int(r, at)) : (object)(Num(l) - Num(r));
                break;
            case "*":
                if (IsNumber(l) && IsNumber(r)) return ints ? checked(Int(l, at) * Int(r, at)) : (object)(Num(l) * Num(r));
                if (l is string s && r is long or bool) return string.Concat(Enumerable.Repeat(s, (int)Math.Max(0, Int(r, at))));
                if (l is List<object?> la && r is long or bool) return Enumerable.Range(0, (int)Math.Max(0, Int(r, at))).SelectMany(_ => la).ToList();
                break;
            case "/":
                if (IsNumber(l) && IsNumber(r)) return Num(r) == 0 ? throw Error(at, "division by zero") : Num(l) / Num(r);
                break;
            case "//":
                if (IsNumber(l) && IsNumber(r))
                {
                    if (Num(r) == 0) throw Error(at, "integer division by zero");
                    return ints ? (long)Math.Floor((double)Int(l, at) / Int(r, at)) : (object)Math.Floor(Num(l) / Num(r));
                }
                break;
            case "%":
                if (IsNumber(l) && IsNumber(r))
                {
                    if (Num(r) == 0) throw Error(at, "modulo by zero");
                    if (ints) { long x = Int(l, at), y = Int(r, at); return ((x % y) + y) % y; }
                    double m = Num(l) % Num(r);
                    return m != 0 && (m < 0) != (Num(r) < 0) ? m + Num(r) : m;
                }
                if (l is string) throw Error(at, "printf-style string formatting ('...' % x) is not supported");
                break;
            case "**":
                if (IsNumber(l) && IsNumber(r))
                    return ints && Int(r, at) >= 0 ? (long)Math.Pow(Int(l, at), Int(r, at)) : (object)Math.Pow(Num(l), Num(r));
                break;
        }
        throw Error(at, $"unsupported operand types for {op}: {TypeName(l)} and {TypeName(r)}");
    }

    /// <summary>Code points of a string (Python indexes strings by code point).</summary>
    static List<string> CodePoints(string s)
    {
        var list = new List<string>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { list.Add(s.Substring(i, 2)); i++; }
            else list.Add(s[i].ToString());
        }
        return list;
    }

    static List<object?> Iterate(object? v, Loc at) => v switch
    {
        List<object?> l => l,
        PyTuple t => t.Items,
        Dictionary<string, object?> d => [.. d.Keys],
        string s => [.. CodePoints(s)],
        Undefined => [],
        _ => throw Error(at, $"{TypeName(v)} is not iterable"),
    };

    static long Length(object? v, Loc at) => v switch
    {
        string s => CodePoints(s).Count,
        List<object?> l => l.Count,
        PyTuple t => t.Items.Count,
        Dictionary<string, object?> d => d.Count,
        Namespace ns => ns.Values.Count,
        Undefined => 0,
        _ => throw Error(at, $"{TypeName(v)} has no length"),
    };

    // Jinja2's getattr: for a mapping, a key; a str or dict method name gives the bound method (called by CallExpr).
    static object? GetAttr(object? target, string name, Loc at) => target switch
    {
        Undefined u => throw Error(at, $"'{u.Name}' is undefined (reading its attribute '{name}')"),
        Namespace ns => ns.Values.TryGetValue(name, out var v) ? v : new Undefined(name),
        LoopInfo loop => loop.Get(name, at),
        Dictionary<string, object?> d => d.TryGetValue(name, out var v) ? v : new Undefined(name),
        _ => new Undefined(name),
    };

    static object? GetItem(object? target, object? key, Loc at)
    {
        switch (target)
        {
            case Undefined u: throw Error(at, $"'{u.Name}' is undefined (reading item {Repr(key)})");
            case Dictionary<string, object?> d:
                return key is string k && d.TryGetValue(k, out var v) ? v : new Undefined(Str(key));
            case Namespace ns:
                return key is string nk && ns.Values.TryGetValue(nk, out var nv) ? nv : new Undefined(Str(key));
            case LoopInfo loop when key is string lk:
                return loop.Get(lk, at);
        }
        if (key is long or bool)
        {
            long i = Int(key, at);
            IList<object?>? list = target switch { List<object?> l => l, PyTuple t => t.Items, _ => null };
            if (list is not null) return i >= -list.Count && i < list.Count ? list[(int)(i < 0 ? i + list.Count : i)] : new Undefined($"[{i}]");
            if (target is string s)
            {
                var cps = CodePoints(s);
                return i >= -cps.Count && i < cps.Count ? cps[(int)(i < 0 ? i + cps.Count : i)] : new Undefined($"[{i}]");
            }
        }
        return new Undefined(Str(key));
    }

    static object? Slice(object? target, object? start, object? stop, object? step, Loc at)
    {
        List<object?> items = target switch
        {
            List<object?> l => l,
            PyTuple t => t.Items,
            string s => [.. CodePoints(s)],
            Undefined u => throw Error(at, $"'{u.Name}' is undefined (slicing it)"),
            _ => throw Error(at, $"{TypeName(target)} cannot be sliced"),
        };
        long n = items.Count;
        long st = step is null or Undefined ? 1 : Int(step, at);
        if (st == 0) throw Error(at, "slice step cannot be zero");
        long Bound(object? v, long dflt)
        {
            if (v is null or Undefined) return dflt;
            long x = Int(v, at);
            if (x < 0) x += n;
            return st > 0 ? Math.Clamp(x, 0, n) : Math.Clamp(x, -1, n - 1);
        }
        long a = Bound(start, st > 0 ? 0 : n - 1), b = Bound(stop, st > 0 ? n : -1);
        var result = new List<object?>();
        for (long i = a; st > 0 ? i < b : i > b; i += st) result.Add(items[(int)i]);
        return target switch
        {
            string => string.Concat(result.Cast<string>()),
            PyTuple => new PyTuple(result),
            _ => result,
        };
    }

    // ---- methods of str and dict (Python's) ----

    static bool TryCallMethod(object? target, string name, List<object?> args, Dictionary<string, object?> kwargs, Loc at, out object? result)
    {
        result = null;
        object? Arg(int i, string kw, object? dflt) => i < args.Count ? args[i] : kwargs.TryGetValue(kw, out var v) ? v : dflt;
        if (target is string s)
        {
            switch (name)
            {
                case "strip": result = Strip(s, Arg(0, "chars", null), true, true, at); return true;
                case "lstrip": result = Strip(s, Arg(0, "chars", null), true, false, at); return true;
                case "rstrip": result = Strip(s, Arg(0, "chars", null), false, true, at); return true;
                case "upper": result = s.ToUpperInvariant(); return true;
                case "lower": result = s.ToLowerInvariant(); return true;
                case "title": result = Title(s); return true;
                case "capitalize": result = s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant(); return true;
                case "startswith" or "endswith":
                {
                    var prefixes = Arg(0, "prefix", null) switch
                    {
                        string p => [p],
                        PyTuple t => t.Items.Select(x => x as string ?? throw Error(at, $"{name}() takes strings")).ToList(),
                        List<object?> l => l.Select(x => x as string ?? throw Error(at, $"{name}() takes strings")).ToList(),
                        var other => throw Error(at, $"{name}() takes a string or a tuple of strings, not {TypeName(other)}"),
                    };
                    result = prefixes.Any(p => name == "startswith" ? s.StartsWith(p, StringComparison.Ordinal) : s.EndsWith(p, StringComparison.Ordinal));
                    return true;
                }
                case "split": result = Split(s, Arg(0, "sep", null), Arg(1, "maxsplit", -1L), at); return true;
                case "replace":
                {
                    if (Arg(0, "old", null) is not string old || Arg(1, "new", null) is not string @new) throw Error(at, "replace() takes two strings");
                    long count = Int(Arg(2, "count", -1L), at);
                    result = Replace(s, old, @new, count);
                    return true;
                }
                case "find":
                    result = Arg(0, "sub", null) is string sub ? (long)s.IndexOf(sub, StringComparison.Ordinal) : throw Error(at, "find() takes a string");
                    return true;
                case "count":
                    result = Arg(0, "sub", null) is string c && c.Length > 0 ? (long)((s.Length - s.Replace(c, "", StringComparison.Ordinal).Length) / c.Length) : throw Error(at, "count() takes a non-empty string");
                    return true;
                case "join": result = string.Join(s, Iterate(Arg(0, "iterable", null), at).Select(Str)); return true;
                case "isdigit": result = s.Length > 0 && s.All(char.IsDigit); return true;
                case "isspace": result = s.Length > 0 && s.All(char.IsWhiteSpace); return true;
            }
            throw Error(at, $"method '{name}' of str is not supported");
        }
        if (target is Dictionary<string, object?> d)
        {
            switch (name)
            {
                case "items": result = d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList(); return true;
                case "keys": result = d.Keys.Select(k => (object?)k).ToList(); return true;
                case "values": result = d.Values.ToList(); return true;
                case "get": result = Arg(0, "key", null) is string k && d.TryGetValue(k, out var v) ? v : Arg(1, "default", null); return true;
            }
            if (d.ContainsKey(name)) return false; // a callable stored under that key
            throw Error(at, $"method '{name}' of dict is not supported");
        }
        if (target is List<object?> && name is "append" or "extend" or "pop" or "insert" or "remove" or "clear" or "sort" or "reverse")
            throw Error(at, $"list.{name}() modifies a list, which Hugging Face's sandboxed Jinja forbids");
        return false;
    }

    static string Strip(string s, object? chars, bool left, bool right, Loc at)
    {
        Func<char, bool> strip = chars switch
        {
            null or Undefined => char.IsWhiteSpace,
            string set => set.Contains,
            _ => throw Error(at, $"strip() takes a string, not {TypeName(chars)}"),
        };
        int a = 0, b = s.Length;
        if (left) while (a < b && strip(s[a])) a++;
        if (right) while (b > a && strip(s[b - 1])) b--;
        return s[a..b];
    }

    static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool previousCased = false;
        foreach (char c in s)
        {
            bool cased = char.IsUpper(c) || char.IsLower(c);
            sb.Append(cased ? previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c) : c);
            previousCased = cased;
        }
        return sb.ToString();
    }

    static List<object?> Split(string s, object? sep, object? maxsplit, Loc at)
    {
        long max = Int(maxsplit, at);
        var parts = new List<object?>();
        if (sep is null or Undefined)
        {
            int i = 0;
            while (true)
            {
                while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
                if (i >= s.Length) break;
                if (max >= 0 && parts.Count == max) { parts.Add(s[i..].TrimEnd()); break; }
                int j = i;
                while (j < s.Length && !char.IsWhiteSpace(s[j])) j++;
                parts.Add(s[i..j]);
                i = j;
            }
            return parts;
        }
        if (sep is not string separator) throw Error(at, $"split() separator must be a string, not {TypeName(sep)}");
        if (separator.Length == 0) throw Error(at, "split() separator is empty");
        int from = 0;
        while (max < 0 || parts.Count < max)
        {
            int k = s.IndexOf(separator, from, StringComparison.Ordinal);
            if (k < 0) break;
            parts.Add(s[from..k]);
            from = k + separator.Length;
        }
        parts.Add(s[from..]);
        return parts;
    }

    static string Replace(string s, string old, string @new, long count)
    {
        if (count < 0) return old.Length == 0 ? string.Join(@new, [string.Empty, .. CodePoints(s), string.Empty]) : s.Replace(old, @new, StringComparison.Ordinal);
        var sb = new StringBuilder();
        int from = 0;
        for (long done = 0; done < count; done++)
        {
            int k = old.Length == 0 ? (from <= s.Length ? from : -1) : s.IndexOf(old, from, StringComparison.Ordinal);
            if (k < 0) break;
            sb.Append(s, from, k - from).Append(@new);
            from = k + old.Length;
            if (old.Length == 0) { if (from < s.Length) sb.Append(s[from]); from++; }
        }
        if (from < s.Length) sb.Append(s, from, s.Length - from);
        return sb.ToString();
    }

    // ---- JSON (transformers' tojson: json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...)) ----

    static string ToJson(object? v, long? indent, bool sortKeys, Loc at)
    {
        var sb = new StringBuilder();
        WriteJson(sb, v, indent, sortKeys, 0, at);
        return sb.ToString();
    }

    static void WriteJson(StringBuilder sb, object? v, long? indent, bool sortKeys, int depth, Loc at)
    {
        string item = indent is null ? ", " : ",";
        void NewLine(int d)
        {
            if (indent is not null) sb.Append('\n').Append(' ', (int)indent.Value * d);
        }
        switch (v)
        {
            case null: sb.Append("null"); return;
            case bool b: sb.Append(b ? "true" : "false"); return;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); return;
            case double d: sb.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : FloatRepr(d)); return;
            case string s: JsonString(sb, s); return;
            case List<object?> or PyTuple:
            {
                var items = v is PyTuple t ? t.Items : (List<object?>)v;
                if (items.Count == 0) { sb.Append("[]"); return; }
                sb.Append('[');
                for (int i = 0; i < items.Count; i++)
                {
                    if (i > 0) sb.Append(item);
                    NewLine(depth + 1);
                    WriteJson(sb, items[i], indent, sortKeys, depth + 1, at);
                }
                NewLine(depth);
                sb.Append(']');
                return;
            }
            case Dictionary<string, object?> or Namespace:
            {
                var dict = v is Namespace ns ? ns.Values : (Dictionary<string, object?>)v;
                if (dict.Count == 0) { sb.Append("{}"); return; }
                IEnumerable<KeyValuePair<string, object?>> pairs = sortKeys ? dict.OrderBy(kv => kv.Key, StringComparer.Ordinal) : dict;
                sb.Append('{');
                bool first = true;
                foreach (var (k, value) in pairs)
                {
                    if (!first) sb.Append(item);
                    first = false;
                    NewLine(depth + 1);
                    JsonString(sb, k);
                    sb.Append(": ");
                    WriteJson(sb, value, indent, sortKeys, depth + 1, at);
                }
                NewLine(depth);
                sb.Append('}');
                return;
            }
            default: throw Error(at, $"{TypeName(v)} is not JSON serializable");
        }
    }

    static void JsonString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    // ---- filters ----

    static readonly HashSet<string> Filters =
    [
        "abs", "capitalize", "count", "d", "default", "dictsort", "first", "float", "indent", "int", "items", "join", "last",
        "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select",
        "selectattr", "sort", "string", "sum", "title", "tojson", "trim", "unique", "upper", "wordcount",
    ];

    static object? ApplyFilter(string name, object? v, List<object?> args, Dictionary<string, object?> kwargs, Loc at)
    {
        object? Arg(int i, string kw, object? dflt) => i < args.Count ? args[i] : kwargs.TryGetValue(kw, out var a) ? a : dflt;
        switch (name)
        {
            case "safe": return v;
            case "string": return Str(v);
            case "trim": return Strip(Str(v), Arg(0, "chars", null), true, true, at);
            case "upper": return Str(v).ToUpperInvariant();
            case "lower": return Str(v).ToLowerInvariant();
            case "title": return Title(Str(v));
            case "capitalize": { string s = Str(v); return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant(); }
            case "length" or "count": return Length(v, at);
            case "wordcount": return (long)Split(Str(v), null, -1L, at).Count;
            case "tojson":
            {
                var indent = Arg(0, "indent", null);
                return ToJson(v, indent is null ? null : Int(indent, at), Truthy(Arg(2, "sort_keys", false)), at);
            }
            case "d" or "default":
            {
                var dflt = Arg(0, "default_value", "");
                bool boolean = Truthy(Arg(1, "boolean", false));
                return v is Undefined || (boolean && !Truthy(v)) ? dflt : v;
            }
            case "join":
            {
                var items = Iterate(v, at);
                if (Arg(1, "attribute", null) is string attr) items = items.Select(x => GetAttrPath(x, attr, at)).ToList();
                return string.Join(Str(Arg(0, "d", "")), items.Select(Str));
            }
            case "list": return Iterate(v, at).ToList();
            case "first": { var items = Iterate(v, at); return items.Count > 0 ? items[0] : new Undefined("first"); }
            case "last": { var items = Iterate(v, at); return items.Count > 0 ? items[^1] : new Undefined("last"); }
            case "reverse":
                if (v is string rs) { var cps = CodePoints(rs); cps.Reverse(); return string.Concat(cps); }
                { var items = Iterate(v, at).ToList(); items.Reverse(); return items; }
            case "items":
                return v switch
                {
                    Undefined => new List<object?>(),
                    Dictionary<string, object?> d => d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList(),
                    _ => throw Error(at, $"filter 'items' needs a mapping, not {TypeName(v)}"),
                };
            case "dictsort":
            {
                if (v is not Dictionary<string, object?> d) throw Error(at, $"filter 'dictsort' needs a mapping, not {TypeName(v)}");
                bool caseSensitive = Truthy(Arg(0, "case_sensitive", false));
                bool byValue = Arg(1, "by", "key") is "value";
                bool reverse = Truthy(Arg(2, "reverse", false));
                var pairs = d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList();
                return SortValues(pairs, x => ((PyTuple)x!).Items[byValue ? 1 : 0], caseSensitive, reverse, at);
            }
            case "sort":
            {
                bool reverse = Truthy(Arg(0, "reverse", false));
                bool caseSensitive = Truthy(Arg(1, "case_sensitive", false));
                var attr = Arg(2, "attribute", null) as string;
                return SortValues(Iterate(v, at).ToList(), x => attr is null ? x : GetAttrPath(x, attr, at), caseSensitive, reverse, at);
            }
            case "unique":
            {
                var result = new List<object?>();
                foreach (var x in Iterate(v, at))
                    if (!result.Any(y => PyEquals(SortKey(x, false), SortKey(y, false)))) result.Add(x);
                return result;
            }
            case "max" or "min":
            {
                var items = Iterate(v, at);
                if (items.Count == 0) return new Undefined(name);
                var sorted = SortValues(items.ToList(), x => x, false, false, at);
                return name == "min" ? sorted[0] : sorted[^1];
            }
            case "sum":
            {
                object? total = Arg(1, "start", 0L);
                var attr = Arg(0, "attribute", null) as string;
                foreach (var x in Iterate(v, at)) total = Binary("+", total, attr is null ? x : GetAttrPath(x, attr, at), at);
                return total;
            }
            case "abs": return v switch { long l => (object)Math.Abs(l), double dd => Math.Abs(dd), bool b => b ? 1L : 0L, _ => throw Error(at, $"filter 'abs' needs a number, not {TypeName(v)}") };
            case "int":
                return v switch
                {
                    long or bool => (object)Int(v, at),
                    double dd => (long)Math.Truncate(dd),
                    string s when long.TryParse(s.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l) => l,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double dd) => (long)Math.Truncate(dd),
                    _ => Arg(0, "default", 0L),
                };
            case "float":
                return v switch
                {
                    long or bool or double => (object)Num(v),
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double dd) => dd,
                    _ => Arg(0, "default", 0.0),
                };
            case "round":
            {
                long precision = Int(Arg(0, "precision", 0L), at);
                string method = Str(Arg(1, "method", "common"));
                double x = Num(v), scale = Math.Pow(10, precision);
                return method switch
                {
                    "ceil" => Math.Ceiling(x * scale) / scale,
                    "floor" => Math.Floor(x * scale) / scale,
                    _ => Math.Round(x * scale, MidpointRounding.AwayFromZero) / scale,
                };
            }
            case "replace":
                return Replace(Str(v), Str(Arg(0, "old", "")), Str(Arg(1, "new", "")), Arg(2, "count", null) is null ? -1 : Int(Arg(2, "count", null), at));
            case "indent":
            {
                var width = Arg(0, "width", 4L);
                string pad = width is string ws ? ws : new string(' ', (int)Int(width, at));
                bool first = Truthy(Arg(1, "first", false)), blank = Truthy(Arg(2, "blank", false));
                var lines = Str(v).Split('\n');
                var sb = new StringBuilder();
                for (int i = 0; i < lines.Length; i++)
                {
                    if (i > 0) sb.Append('\n');
                    if ((i > 0 || first) && (blank || lines[i].Length > 0)) sb.Append(pad);
                    sb.Append(lines[i]);
                }
                return sb.ToString();
            }
            case "map":
            {
                var items = Iterate(v, at);
                if (kwargs.TryGetValue("attribute", out var attr))
                {
                    var dflt = kwargs.GetValueOrDefault("default");
                    return items.Select(x =>
                    {
                        var r = GetAttrPath(x, Str(attr), at);
                        return r is Undefined && kwargs.ContainsKey("default") ? dflt : r;
                    }).ToList();
                }
                if (args.Count == 0 || args[0] is not string filter) throw Error(at, "filter 'map' needs a filter name or attribute=...");
                if (!Filters.Contains(filter)) throw Error(at, $"filter '{filter}' (in map) is not supported");
                return items.Select(x => ApplyFilter(filter, x, args.Skip(1).ToList(), [], at)).ToList();
            }
            case "select" or "reject":
            {
                var test = args.Count > 0 ? Str(args[0]) : null;
                if (test is not null && !Tests.Contains(test)) throw Error(at, $"test '{test}' (in {name}) is not supported");
                bool keep = name == "select";
                return Iterate(v, at).Where(x => (test is null ? Truthy(x) : ApplyTest(test, x, args.Skip(1).ToList(), at)) == keep).ToList();
            }
            case "selectattr" or "rejectattr":
            {
                if (args.Count == 0 || args[0] is not string attr) throw Error(at, $"filter '{name}' needs an attribute name");
                var test = args.Count > 1 ? Str(args[1]) : null;
                if (test is not null && !Tests.Contains(test)) throw Error(at, $"test '{test}' (in {name}) is not supported");
                bool keep = name == "selectattr";
                return Iterate(v, at).Where(x =>
                {
                    var a = GetAttrPath(x, attr, at);
                    return (test is null ? Truthy(a) : ApplyTest(test, a, args.Skip(2).ToList(), at)) == keep;
                }).ToList();
            }
        }
        throw Error(at, $"filter '{name}' is not supported");
    }

    static object? GetAttrPath(object? v, string path, Loc at)
    {
        foreach (string part in path.Split('.'))
        {
            if (v is Undefined) return v;
            v = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out long i) ? GetItem(v, i, at) : GetItem(v, part, at);
        }
        return v;
    }

    static object? SortKey(object? v, bool caseSensitive) => !caseSensitive && v is string s ? s.ToLowerInvariant() : v;

    static List<object?> SortValues(List<object?> items, Func<object?, object?> key, bool caseSensitive, bool reverse, Loc at)
    {
        // A stable sort, as Python's sorted().
        var keyed = items.Select((x, i) => (Item: x, Key: SortKey(key(x), caseSensitive), Index: i)).ToList();
        keyed.Sort((a, b) =>
        {
            int c = Compare(a.Key, b.Key, "<", at);
            if (reverse) c = -c;
            return c != 0 ? c : a.Index.CompareTo(b.Index);
        });
        return keyed.Select(x => x.Item).ToList();
    }

    // ---- tests ----

    static readonly HashSet<string> Tests =
    [
        "defined", "undefined", "none", "boolean", "true", "false", "integer", "float", "number", "string", "mapping",
        "iterable", "sequence", "callable", "odd", "even", "divisibleby", "eq", "equalto", "==", "ne", "!=", "lt", "<",
        "le", "<=", "gt", ">", "ge", ">=", "lessthan", "greaterthan", "in", "lower", "upper", "sameas",
    ];

    static bool ApplyTest(string name, object? v, List<object?> args, Loc at)
    {
        object? Other() => args.Count > 0 ? args[0] : throw Error(at, $"test '{name}' needs an argument");
        return name switch
        {
            "defined" => v is not Undefined,
            "undefined" => v is Undefined,
            "none" => v is null,
            "boolean" => v is bool,
            "true" => v is true,
            "false" => v is false,
            "integer" => v is long,
            "float" => v is double,
            "number" => v is long or double or bool,
            "string" => v is string,
            "mapping" => v is Dictionary<string, object?>,
            "iterable" => v is string or List<object?> or PyTuple or Dictionary<string, object?> or Undefined,
            "sequence" => v is string or List<object?> or PyTuple or Dictionary<string, object?>,
            "callable" => v is ICallable,
            "odd" => Int(v, at) % 2 != 0,
            "even" => Int(v, at) % 2 == 0,
            "divisibleby" => Int(v, at) % Int(Other(), at) == 0,
            "eq" or "equalto" or "==" => PyEquals(v, Other()),
            "ne" or "!=" => !PyEquals(v, Other()),
            "lt" or "<" or "lessthan" => Compare(v, Other(), "<", at) < 0,
            "le" or "<=" => Compare(v, Other(), "<=", at) <= 0,
            "gt" or ">" or "greaterthan" => Compare(v, Other(), ">", at) > 0,
            "ge" or ">=" => Compare(v, Other(), ">=", at) >= 0,
            "in" => Contains(Other(), v, at),
            "lower" => v is string ls && ls == ls.ToLowerInvariant(),
            "upper" => v is string us && us == us.ToUpperInvariant(),
            "sameas" => ReferenceEquals(v, Other()) || (v is null && Other() is null) || (v is bool b && Other() is bool c && b == c),
            _ => throw Error(at, $"test 'is {name}' is not supported"),
        };
    }
}
